"""EngineActor: one LLM engine (one per GPU, or one CPU engine) behind an async Ray actor."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import ray

from spex_ray.config import PolicyConfig
from spex_ray.engines import EngineLoad, GenRequest, GenResult, build_engine
from spex_ray.engines.hf_settings import HFSettings


@ray.remote
class EngineActor:
    """Hosts one engine; every method is async so requests from many queries interleave."""

    def __init__(self, policy: PolicyConfig, name: str = "engine-0") -> None:
        self.name = name
        self.policy = policy
        _use_all_cpu_threads(policy)
        self.engine = build_engine(policy, name)
        self._reporter: asyncio.Task | None = None

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

    async def knee(self) -> int:
        """Concurrency up to which this engine decodes at no extra cost per step: policy.knee
        if set (e.g. from `spex-ray calibrate`), else the engine's own (Engine.knee)."""
        return self.policy.knee or self.engine.knee()

    async def attach_allocator(self, allocator: Any, interval_s: float = 0.02) -> None:
        """Report MAIN requests in flight to the BudgetAllocator whenever they change."""
        if self._reporter is None:
            self._reporter = asyncio.get_running_loop().create_task(self._report_main(allocator, interval_s))

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        await self.engine.close()

    async def _report_main(self, allocator: Any, interval_s: float) -> None:
        last = -1
        while True:
            load = self.engine.load()
            main = load.running_main + load.queued_main
            if main != last:
                await allocator.report_main.remote(self.name, main)
                last = main
            await asyncio.sleep(interval_s)


def _use_all_cpu_threads(policy: PolicyConfig) -> None:
    """Ray pins OMP_NUM_THREADS to the actor's num_cpus; a CPU engine wants every core."""
    if policy.backend != "hf" or HFSettings.of(policy).device != "cpu":
        return
    import torch

    threads = os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
