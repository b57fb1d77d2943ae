"""EngineActor: an EngineHost (runtime/host.py) made remote, one per GPU or one CPU engine.

The host starts its engine on first use, so when Ray restarts a crashed actor
(max_restarts) the new one reloads its model and rejoins the allocator by itself.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from spex_ray.actors.proxy import ActorProxy
from spex_ray.config import PolicyConfig
from spex_ray.engines.hf_settings import HFSettings
from spex_ray.runtime.host import EngineHost


@ray.remote
class EngineActor(EngineHost):
    """One engine behind an async actor; every method is async so requests interleave."""

    def __init__(self, policy: PolicyConfig, name: str = "engine-0", allocator: Any = None) -> None:
        self.cpu_threads = _use_all_cpu_threads(policy)
        super().__init__(policy, name, ActorProxy(allocator) if allocator is not None else None)

    def describe(self) -> dict[str, Any]:
        """Name, backend, model, process id, and the torch threads of a CPU engine (0 otherwise)."""
        return {**super().describe(), "pid": os.getpid(), "cpu_threads": self.cpu_threads}


def _use_all_cpu_threads(policy: PolicyConfig) -> int:
    """Ray pins OMP_NUM_THREADS to the actor's num_cpus; a CPU engine wants every core.
    Returns the torch threads set (0: not a CPU engine); start() reports them to the driver."""
    if policy.backend != "hf" or HFSettings.of(policy).device != "cpu":
        return 0
    import torch

    threads = os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return threads
