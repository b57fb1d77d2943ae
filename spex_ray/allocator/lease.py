"""LeaseBudget: a query's SpecBudget backed by the BudgetAllocator actor.

granted() reads a cached grant; report() records the latest demand and, at most once per
`refresh_s` and with at most one call in flight, sends it with update.remote(); the reply
refreshes the cache. Reports that arrive meanwhile are coalesced into the next send. A
request on the search's hot path therefore never waits for a Ray round trip; the price
is a grant up to about refresh_s + one round trip stale.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from spex_ray.allocator.policy import Demand, Grant

log = logging.getLogger(__name__)


class LeaseBudget:
    """SpecBudget over the BudgetAllocator actor; use from the query's asyncio event loop.

    `on_grant(slots)`, if given, is called on the event loop whenever the cached grant
    changes, so the search can issue speculation as soon as slots arrive instead of at its
    next event.
    """

    def __init__(
        self,
        allocator: Any,
        query_id: str,
        engine_id: str,
        order: int,
        refresh_s: float = 0.05,
        on_grant: Callable[[int], None] | None = None,
    ) -> None:
        self.allocator = allocator
        self.on_grant = on_grant
        self.query_id = query_id
        self.engine_id = engine_id  # move() reassigns it; the next report carries it
        self.order = order
        self.refresh_s = refresh_s
        self.updates_sent = 0
        self.errors = 0
        self._grant = 0
        self._version = -1
        self._demand: Demand | None = None
        self._dirty = False
        self._in_rpc = False
        self._last_send = -math.inf
        self._task: asyncio.Task | None = None
        self._closed = False

    def granted(self) -> int:
        """Cached speculative slots (0 before the first grant arrives and after close)."""
        return self._grant

    def report(self, eligible: int, usefulness: float, reusable_kv: float) -> None:
        """Record the demand and schedule a refresh; never blocks. Needs a running event loop."""
        if self._closed:
            return
        self._demand = Demand(
            self.query_id,
            self.engine_id,
            max(0, int(eligible)),
            _unit(usefulness),
            _unit(reusable_kv),
            self.order,
        )
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sync())

    def move(self, engine_id: str) -> None:
        """The query moved to `engine_id`: no slots until that engine's book grants some."""
        self.engine_id = engine_id
        self._grant = 0
        if self._demand is not None:
            demand = self._demand
            self.report(demand.eligible, demand.usefulness, demand.reusable_kv)

    async def close(self) -> None:
        """Stop refreshing, wait out an update in flight, then release the slots."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            if not self._in_rpc:
                task.cancel()  # only sleeping: nothing sent yet
            await asyncio.gather(task, return_exceptions=True)
        self._grant = 0
        if self._demand is None:
            return  # never reported, nothing recorded at the allocator
        try:  # after the last update finished: an async actor may reorder calls in flight
            await self.allocator.release.remote(self.query_id)
        except Exception as err:  # the allocator is gone: nothing to return
            log.warning("release of %s failed: %s", self.query_id, err)

    async def _sync(self) -> None:
        while self._dirty and not self._closed:
            wait = self._last_send + self.refresh_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if self._closed:
                    return
            self._dirty = False
            self._last_send = time.monotonic()
            await self._send(self._demand)

    async def _send(self, demand: Demand) -> None:
        self._in_rpc = True
        self.updates_sent += 1
        try:
            grant: Grant = await self.allocator.update.remote(demand)
        except Exception as err:  # allocator unreachable: do not speculate
            self.errors += 1
            self._grant = 0
            if self.errors == 1:
                log.warning("budget update for %s failed: %s", self.query_id, err)
            return
        finally:
            self._in_rpc = False
        if self._closed or grant.version <= self._version:
            return
        changed = grant.slots != self._grant
        self._grant, self._version = grant.slots, grant.version
        if changed and self.on_grant is not None:
            try:
                self.on_grant(grant.slots)
            except Exception:
                log.exception("on_grant callback of %s failed", self.query_id)

    def __repr__(self) -> str:
        return f"LeaseBudget({self.query_id!r}, engine={self.engine_id!r}, granted={self._grant})"


def _unit(x: float) -> float:
    """Clamp to [0, 1]; NaN becomes 0."""
    x = float(x)
    return 0.0 if math.isnan(x) else min(1.0, max(0.0, x))


class LeaseSource:
    """Makes LeaseBudgets over one BudgetAllocator actor (a runtime BudgetSource)."""

    def __init__(self, allocator: Any) -> None:
        self.allocator = allocator

    def budget(self, query_id: str, engine_id: str, order: int) -> LeaseBudget:
        return LeaseBudget(self.allocator, query_id, engine_id, order)
