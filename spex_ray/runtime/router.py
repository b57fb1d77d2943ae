"""Router: which engine serves a query, and which engines may serve at all.

A query sticks to one engine (its prefix stays in that engine's cache) until that engine
stops serving; then it moves to the serving engine with the fewest live queries. Engines
are SERVING, DRAINING (no new queries; the queries on it move at their next request) or
DOWN (a request to it failed; probed with ping() until it answers again, e.g. after an
actor restart). With no engine serving, acquire() waits for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

PROBE_EVERY_S = 1.0  # how often a down engine is pinged
PROBE_TIMEOUT_S = 30.0  # a ping that takes longer counts as a failed probe


class EngineUnavailable(ConnectionError):
    """The engine cannot serve (its process died, restarts or was removed); the transport
    raises it in place of its own error, so the runtime needs no Ray."""


class NoEngine(RuntimeError):
    """No engine is serving and none will be (every one was removed)."""


class EngineState(StrEnum):
    SERVING = "serving"
    DRAINING = "draining"
    DOWN = "down"


@dataclass(eq=False)
class _Entry:
    name: str
    engine: Any  # async generate/abort/ping
    state: EngineState = EngineState.SERVING
    queries: set[str] = field(default_factory=set)
    probe: asyncio.Task | None = None


class Router:
    """The engines of one process (a tree actor, or the simulation) and the queries on each."""

    def __init__(
        self,
        engines: dict[str, Any] | None = None,
        probe_every_s: float = PROBE_EVERY_S,
        wait_timeout_s: float = 600.0,
    ) -> None:
        self.probe_every_s = probe_every_s
        self.wait_timeout_s = wait_timeout_s  # acquire() gives up after this long with no engine
        self._entries: dict[str, _Entry] = {}
        self._pinned: dict[str, _Entry] = {}  # query -> the engine it runs on
        self._serving: asyncio.Event | None = None  # made inside the event loop, on first wait
        self.moves = 0  # queries moved off an engine that stopped serving
        for name, engine in (engines or {}).items():
            self.add(name, engine)

    # -- membership (the pool's side) --------------------------------------------------------

    def add(self, name: str, engine: Any) -> None:
        """A new (or restarted and re-added) engine starts serving."""
        old = self._entries.get(name)
        if old is not None and old.probe is not None:
            old.probe.cancel()
        self._entries[name] = _Entry(name, engine, queries=old.queries if old else set())
        self._wake()

    def drain(self, name: str) -> None:
        """No new queries on `name`; its queries move at their next request."""
        entry = self._entries.get(name)
        if entry is not None:
            entry.state = EngineState.DRAINING

    def remove(self, name: str) -> None:
        """`name` is gone for good."""
        entry = self._entries.pop(name, None)
        if entry is not None and entry.probe is not None:
            entry.probe.cancel()

    def engine_named(self, name: str) -> Any | None:
        entry = self._entries.get(name)
        return entry.engine if entry is not None else None

    def states(self) -> dict[str, EngineState]:
        return {name: entry.state for name, entry in self._entries.items()}

    def live_queries(self) -> dict[str, int]:
        return {name: len(entry.queries) for name, entry in self._entries.items()}

    # -- routing (the queries' side) ---------------------------------------------------------

    def engine_for(self, query_id: str) -> tuple[str, Any]:
        """The engine serving `query_id`: its own while that one serves, else the serving
        engine with the fewest live queries. Raises NoEngine if none serves now."""
        entry = self._pinned.get(query_id)
        if entry is None or entry.state != EngineState.SERVING or self._entries.get(entry.name) is not entry:
            entry = self._repin(query_id, entry)
        return entry.name, entry.engine

    async def acquire(self, query_id: str) -> tuple[str, Any]:
        """engine_for(), waiting up to wait_timeout_s while no engine serves (the only one
        restarts, or the pool has not told this router of any yet); NoEngine after that."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout_s
        while True:
            try:
                return self.engine_for(query_id)
            except NoEngine:
                left = deadline - loop.time()
                if left <= 0:
                    raise NoEngine(f"no engine served for {self.wait_timeout_s:.0f} s") from None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._wait_serving()

    def release(self, query_id: str) -> None:
        """The query is done."""
        entry = self._pinned.pop(query_id, None)
        if entry is not None:
            entry.queries.discard(query_id)

    def mark_down(self, name: str, reason: BaseException | str) -> None:
        """A request to `name` failed for want of the engine: stop routing to it and probe it."""
        entry = self._entries.get(name)
        if entry is None or entry.state == EngineState.DOWN:
            return
        log.warning("%s is unavailable (%s); its queries go on on other engines", name, reason)
        entry.state = EngineState.DOWN
        entry.probe = asyncio.get_running_loop().create_task(self._probe(entry))

    # -- internals ---------------------------------------------------------------------------

    def _repin(self, query_id: str, old: _Entry | None) -> _Entry:
        serving = [e for e in self._entries.values() if e.state == EngineState.SERVING]
        if not serving:
            raise NoEngine("no engine is serving")
        entry = min(serving, key=lambda e: len(e.queries))
        if old is not None:
            old.queries.discard(query_id)
            self.moves += 1
        entry.queries.add(query_id)
        self._pinned[query_id] = entry
        return entry

    async def _probe(self, entry: _Entry) -> None:
        while self._entries.get(entry.name) is entry:
            await asyncio.sleep(self.probe_every_s)
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await entry.engine.ping()
            except Exception:  # noqa: BLE001 - still down (restarting, or dead for good)
                continue
            log.warning("%s is back", entry.name)
            entry.state, entry.probe = EngineState.SERVING, None
            self._wake()
            return

    def _event(self) -> asyncio.Event:
        if self._serving is None:
            self._serving = asyncio.Event()
        return self._serving

    def _wake(self) -> None:
        if self._serving is not None:
            self._serving.set()

    async def _wait_serving(self) -> None:
        event = self._event()
        event.clear()
        if any(e.state == EngineState.SERVING for e in self._entries.values()):
            return
        await event.wait()
