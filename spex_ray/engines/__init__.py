"""LLM engine backends behind one async interface (see base.py). No Ray in here."""

from spex_ray.engines.base import (
    Engine,
    EngineLoad,
    FinishReason,
    GenRequest,
    GenResult,
    Priority,
)
from spex_ray.registry import Registry

ENGINES = Registry("engine backend")
ENGINES.register("hf", "spex_ray.engines.hf:HFEngine")
ENGINES.register("sglang", "spex_ray.engines.sglang:SGLangEngine")
ENGINES.register("sim", "spex_ray.sim.engine:SimEngine")

__all__ = [
    "ENGINES",
    "Engine",
    "EngineLoad",
    "FinishReason",
    "GenRequest",
    "GenResult",
    "Priority",
]
