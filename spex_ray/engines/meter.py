"""LoadMeter: batch occupancy and generation rate of an engine, for EngineLoad."""

from __future__ import annotations

import time
from collections import deque

from spex_ray.engines.base import EngineLoad

RATE_WINDOW_S = 10.0  # tokens_per_second is measured over this recent window


class LoadMeter:
    """Time-weighted batch occupancy since start, and generated tokens over a recent window."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.reset(time.time())

    def reset(self, now: float) -> None:
        self._since = self._last = now
        self._running = 0
        self._area = 0.0  # integral of running requests over time
        self._tokens: deque[tuple[float, int]] = deque()

    def set_running(self, running: int, now: float) -> None:
        self._area += self._running * (now - self._last)
        self._last, self._running = now, running

    def add_tokens(self, count: int, now: float) -> None:
        if count > 0:
            self._tokens.append((now, count))

    def area(self, now: float) -> float:
        """Integral of running requests over time since the start (request-seconds)."""
        return self._area + self._running * (now - self._last)

    def occupancy(self, now: float) -> float:
        elapsed = now - self._since
        return self.area(now) / (elapsed * self.capacity) if elapsed > 0 else 0.0

    def tokens_per_second(self, now: float) -> float:
        while self._tokens and self._tokens[0][0] < now - RATE_WINDOW_S:
            self._tokens.popleft()
        window = min(RATE_WINDOW_S, now - self._since)
        return sum(n for _, n in self._tokens) / window if window > 0 else 0.0

    def snapshot(
        self,
        *,
        running_main: int,
        running_spec: int,
        queued_main: int,
        queued_spec: int,
        now: float,
        spec_capacity: int | None = None,
    ) -> EngineLoad:
        """The EngineLoad of these request counts at `now`, with this meter's rates."""
        return EngineLoad(
            running_main=running_main,
            running_spec=running_spec,
            queued_main=queued_main,
            queued_spec=queued_spec,
            max_batch_size=self.capacity,
            tokens_per_second=self.tokens_per_second(now),
            mean_batch_occupancy=self.occupancy(now),
            time=now,
            spec_capacity=spec_capacity,
        )
