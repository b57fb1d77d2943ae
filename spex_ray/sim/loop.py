"""VirtualTimeLoop: an asyncio event loop on modeled time (discrete-event simulation).

When no callback is ready, the loop does not wait for its next timer: it moves its clock
there at once. A coroutine that sleeps t seconds therefore resumes t modeled seconds later
in no wall time, and everything that runs in between takes zero modeled time. SimEngines
pace their iterations on `loop.time()`, so on this loop (with time_scale 1) a cluster of
simulated engines and the real tree searches that drive them run in one process, in
modeled time, deterministically, and as fast as the Python allows.

Only for in-process work: there is no real I/O to wait for, so a loop with nothing ready
and no timer pending is a deadlock and raises instead of hanging.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlockError(RuntimeError):
    """Nothing is ready, no timer is pending: the simulation can never make progress."""


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; where the loop would block until a timer, jumps the clock."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None):
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise DeadlockError("virtual-time loop: no callback ready and no timer pending")
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose time() is a virtual clock that jumps to the next timer."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on a fresh VirtualTimeLoop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
