"""LLM engine backends behind one async interface (see base.py). No Ray in here.

A backend is its settings dataclass, registered in registries.BACKENDS, naming its engine.
"""

from spex_ray.config import PolicyConfig
from spex_ray.engines.base import (
    Engine,
    EngineLoad,
    FinishReason,
    GenRequest,
    GenResult,
    Priority,
)
from spex_ray.registry import load_target


def build_engine(policy: PolicyConfig, name: str = "engine-0") -> Engine:
    """The engine of policy.backend, called `name` (an actor's; sglang picks NCCL ports by it)."""
    engine_class = load_target(policy.settings().engine)
    return engine_class(policy, name=name)


__all__ = [
    "Engine",
    "EngineLoad",
    "FinishReason",
    "GenRequest",
    "GenResult",
    "Priority",
    "build_engine",
]
