"""EngineActor: one LLM engine (one per GPU, or one CPU engine) behind an async Ray actor."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import ray

from spex_ray.config import PolicyConfig
from spex_ray.engines import EngineLoad, GenRequest, GenResult, build_engine
from spex_ray.engines.hf_settings import HFSettings
from spex_ray.progress import LiveStats


@ray.remote
class EngineActor:
    """Hosts one engine; every method is async so requests from many queries interleave."""

    def __init__(self, policy: PolicyConfig, name: str = "engine-0") -> None:
        self.name = name
        self.policy = policy
        self.cpu_threads = _use_all_cpu_threads(policy)
        self.engine = build_engine(policy, name)
        self._reporter: asyncio.Task | None = None
        self._steps_done = 0

    async def start(self) -> dict[str, Any]:
        await self.engine.start()
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """Name, backend, model, and the torch threads of a CPU engine (0 otherwise)."""
        return {
            "name": self.name,
            "backend": self.policy.backend,
            "model": self.policy.model,
            "cpu_threads": self.cpu_threads,
        }

    async def generate(self, request: GenRequest) -> GenResult:
        result = await self.engine.generate(request)
        self._steps_done += 1
        return result

    async def progress(self) -> tuple[EngineLoad, int]:
        """The engine's load and the requests it has finished, for the live status line."""
        return self.engine.load(), self._steps_done

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
            if (main, load.spec_capacity) != last:
                await allocator.report_main.remote(self.name, main, load.spec_capacity)
                last = (main, load.spec_capacity)
            await asyncio.sleep(interval_s)


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


class EngineMonitor:
    """Polls the engine actors' progress() without blocking the batch loop: at most one poll
    in flight, a new one every `every_s` seconds."""

    def __init__(self, engines: list[Any], every_s: float = 2.0) -> None:
        self.engines = engines
        self.every_s = every_s
        self._pending: list[Any] = []
        self._asked = float("-inf")

    def poll(self, now: float) -> LiveStats | None:
        """The engines' summed counters if a poll came back since the last call, else None."""
        fresh = None
        if self._pending and self._answered():
            fresh = self._collect()
        if not self._pending and now - self._asked >= self.every_s:
            self._pending = [engine.progress.remote() for engine in self.engines]
            self._asked = now
        return fresh

    def _collect(self) -> LiveStats | None:
        pending, self._pending = self._pending, []
        try:
            reports = ray.get(pending)
        except ray.exceptions.RayError:  # a dead engine fails its queries, not the status line
            return None
        return LiveStats(
            steps_done=sum(steps for _, steps in reports),
            tokens_per_second=sum(load.tokens_per_second for load, _ in reports),
        )

    def _answered(self) -> bool:
        ready, _ = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
        return len(ready) == len(self._pending)
