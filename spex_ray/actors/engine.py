"""EngineActor: one LLM engine (one per GPU, or one CPU engine) behind an async Ray actor."""

from __future__ import annotations

import os
from typing import Any

import ray

from spex_ray.config import PolicyConfig
from spex_ray.engines import ENGINES, EngineLoad, GenRequest, GenResult


@ray.remote
class EngineActor:
    """Hosts one engine; every method is async so requests from many queries interleave."""

    def __init__(self, policy: PolicyConfig, name: str = "engine-0") -> None:
        self.name = name
        self.policy = policy
        _use_all_cpu_threads(policy)
        self.engine = ENGINES.build(policy.backend, policy)

    async def start(self) -> dict[str, Any]:
        await self.engine.start()
        return {"name": self.name, "backend": self.policy.backend, "model": self.policy.model}

    async def generate(self, request: GenRequest) -> GenResult:
        return await self.engine.generate(request)

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    async def load(self) -> EngineLoad:
        return self.engine.load()

    async def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.engine.render_chat(messages)

    async def close(self) -> None:
        await self.engine.close()


def _use_all_cpu_threads(policy: PolicyConfig) -> None:
    """Ray pins OMP_NUM_THREADS to the actor's num_cpus; a CPU engine wants every core."""
    if policy.device != "cpu":
        return
    import torch

    threads = os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
