"""EngineHost: one engine and what a cluster needs around it, Ray-free.

The EngineActor is this class made remote (actors/engine.py); the simulation hosts its
engines with it directly. The host starts its engine on first use, so an actor that Ray
restarts after a crash reloads its model by itself; it registers with the allocator when
the engine is up and reports the engine's MAIN requests in flight whenever they change.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Protocol

from spex_ray.config import PolicyConfig
from spex_ray.engines import EngineLoad, GenRequest, GenResult, build_engine
from spex_ray.engines.chat import ChatTemplate
from spex_ray.progress import RequestCounters

log = logging.getLogger(__name__)

MAIN_REPORT_S = 0.02  # how often the host looks at its MAIN load (it reports only changes)


class AllocatorPort(Protocol):
    """What a host tells the allocator; methods may be sync (in-process) or async (an actor)."""

    def register_engine(self, engine_id: str, knee: int) -> Any: ...

    def report_main(self, engine_id: str, main_in_flight: int, spec_capacity: int | None = None) -> Any: ...


async def _call(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class EngineHost:
    """Hosts one engine; every method is async so requests from many queries interleave."""

    def __init__(
        self,
        policy: PolicyConfig,
        name: str = "engine-0",
        allocator: AllocatorPort | None = None,
        report_every_s: float = MAIN_REPORT_S,
    ) -> None:
        self.name = name
        self.policy = policy
        self.engine = build_engine(policy, name)
        self.allocator = allocator
        self.report_every_s = report_every_s
        self.counters = RequestCounters()  # what it has served: the monitor's liveness and live stats
        self._started: asyncio.Future | None = None
        self._reporter: asyncio.Task | None = None

    async def start(self) -> dict[str, Any]:
        """Load the model (once; later calls wait for the first) and join the allocator."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)
        return self.describe()

    async def ping(self) -> str:
        """The host's name, once its engine is up (a router's health probe)."""
        await self.start()
        return self.name

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.policy.backend, "model": self.policy.model}

    async def generate(self, request: GenRequest) -> GenResult:
        await self.start()
        result = await self.engine.generate(request)
        self.counters.count(request, result)
        return result

    async def abort(self, request_id: str) -> None:
        if self._started is not None and self._started.done():
            await self.engine.abort(request_id)

    def load(self) -> EngineLoad:
        return self.engine.load()

    def progress(self) -> tuple[EngineLoad, RequestCounters]:
        """The engine's load and what it has served so far (the monitor's feed)."""
        return self.engine.load(), self.counters

    def knee(self) -> int:
        """Concurrency up to which this engine decodes at no extra cost per step: policy.knee
        if set (e.g. from `spex-ray calibrate`), else the engine's own (Engine.knee)."""
        return self.policy.knee or self.engine.knee()

    def chat_template(self) -> ChatTemplate:
        return self.engine.chat_template()

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        if self._started is not None:
            await self.engine.close()

    async def _start(self) -> None:
        await self.engine.start()
        if self.allocator is not None:
            await _call(self.allocator.register_engine(self.name, self.knee()))
            self._reporter = asyncio.get_running_loop().create_task(self._report_main())

    async def _report_main(self) -> None:
        """Report MAIN in flight and the speculative capacity offered beside it
        (EngineLoad.spec_capacity) on change; after a failed report (the allocator
        restarting) register again first, so a restarted allocator relearns this engine."""
        last: tuple[int, int | None] | None = None
        registered = True
        while True:
            load = self.engine.load()
            report = (load.running_main + load.queued_main, load.spec_capacity)
            try:
                if not registered:
                    await _call(self.allocator.register_engine(self.name, self.knee()))
                    registered, last = True, None
                if report != last:
                    await _call(self.allocator.report_main(self.name, *report))
                    last = report
            except Exception as exc:  # noqa: BLE001 - the allocator is down: keep serving
                if registered:
                    log.warning("%s: MAIN report to the allocator failed: %s", self.name, exc)
                registered = False
            await asyncio.sleep(self.report_every_s)
