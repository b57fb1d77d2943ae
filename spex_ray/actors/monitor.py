"""EngineMonitor: the driver's view of its engine actors, polled without blocking the batch.

Each engine's progress() is asked at most once at a time, a new ask every `every_s`. From
the answers: the summed live stats for the status line, when each engine last had work
(for shrinking an elastic pool), and which engines are frozen: an ask unanswered for
`freeze_timeout_s`, or work on hand and no request finished for that long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

from spex_ray.engines import EngineLoad
from spex_ray.progress import LiveStats, RequestCounters

DEAD_AFTER_FAILURES = 3  # progress() failing this many times in a row: the actor is dead for good


@dataclass
class _Watch:
    handle: Any
    since: float  # when the engine joined the monitor
    asked: float = float("-inf")
    pending: Any = None
    load: EngineLoad | None = None
    counters: RequestCounters | None = None
    finished_at: float = 0.0  # last time its finished count grew (or it was idle)
    idle_since: float | None = None
    failures: int = 0


class EngineMonitor:
    """Polls engine actors' progress() (see the module docstring)."""

    def __init__(self, every_s: float = 2.0, freeze_timeout_s: float = 300.0) -> None:
        self.every_s = every_s
        self.freeze_timeout_s = freeze_timeout_s
        self._watches: dict[str, _Watch] = {}

    def watch(self, name: str, handle: Any, now: float) -> None:
        self._watches[name] = _Watch(handle, since=now, finished_at=now, idle_since=now)

    def forget(self, name: str) -> None:
        self._watches.pop(name, None)

    def poll(self, now: float) -> LiveStats | None:
        """Collect answers, send new asks; the engines' summed stats when any answer came."""
        fresh = False
        for watch in self._watches.values():
            fresh |= self._collect(watch, now)
            if watch.pending is None and now - watch.asked >= self.every_s:
                watch.pending, watch.asked = watch.handle.progress.remote(), now
        if not fresh:
            return None
        return LiveStats.of((w.load, w.counters) for w in self._watches.values() if w.counters is not None)

    def idle_for(self, name: str, now: float) -> float:
        """Seconds the engine has had no request running or queued (0 while busy)."""
        watch = self._watches.get(name)
        return 0.0 if watch is None or watch.idle_since is None else now - watch.idle_since

    def frozen(self, now: float) -> list[str]:
        """Engines that stopped answering or stopped finishing work (see the module docstring)."""
        limit = self.freeze_timeout_s
        return [
            name
            for name, w in self._watches.items()
            if (w.pending is not None and now - w.asked > limit)
            or (w.load is not None and w.load.running + w.load.queued > 0 and now - w.finished_at > limit)
        ]

    def dead(self) -> list[str]:
        """Engines whose progress() failed DEAD_AFTER_FAILURES times in a row."""
        return [name for name, w in self._watches.items() if w.failures >= DEAD_AFTER_FAILURES]

    def _collect(self, watch: _Watch, now: float) -> bool:
        if watch.pending is None:
            return False
        ready, _ = ray.wait([watch.pending], timeout=0)
        if not ready:
            return False
        pending, watch.pending = watch.pending, None
        try:
            load, counters = ray.get(pending)
        except ray.exceptions.RayError:  # dead or restarting: its queries move, not the status line
            watch.failures += 1
            return False
        watch.failures = 0
        done = watch.counters.steps_done if watch.counters is not None else -1
        if counters.steps_done != done or load.running + load.queued == 0:
            watch.finished_at = now
        watch.load, watch.counters = load, counters
        busy = load.running + load.queued > 0
        if busy:
            watch.idle_since = None
        elif watch.idle_since is None:
            watch.idle_since = now
        return True
