"""LocalAllocator: the BudgetBook in the caller's process, for in-process simulation.

The same policy as the BudgetAllocator actor (policy.py), without Ray: queries read their
grant straight from the book, so a grant is never stale. spex_ray.sim.cluster uses it to
model a cluster in modeled time; the Ray actor path (budget.py, lease.py) is what real
runs use, and its costs (lease staleness, actor latency) are measured separately.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from spex_ray.allocator.policy import BudgetBook, Demand, Mode


class LocalAllocator:
    """Shares each engine's speculative slots among the queries on it; use from one event loop."""

    def __init__(self, mode: Mode = "utility", tau: float = 1.0, default_knee: int = 8) -> None:
        self.book = BudgetBook(mode, tau, default_knee)
        self._budgets: dict[str, dict[str, LocalBudget]] = {}  # engine -> query -> budget
        self._changed: set[str] = set()  # engines whose shares changed since the last notify
        self._reported: dict[str, tuple[int, int | None]] = {}  # engine -> its last MAIN report

    def register_engine(self, engine_id: str, knee: int) -> None:
        self.book.set_engine(engine_id, knee)

    def deregister_engine(self, engine_id: str) -> None:
        self.book.remove_engine(engine_id)

    def report_main(self, engine_id: str, main_in_flight: int, spec_capacity: int | None = None) -> None:
        """The engine's MAIN requests in flight (and the speculative capacity it offers,
        EngineLoad.spec_capacity) changed: re-share and wake queries that gained."""
        report = (main_in_flight, spec_capacity)
        if self._reported.get(engine_id) != report:
            self._reported[engine_id] = report
            self.book.report_main(engine_id, main_in_flight, spec_capacity)
            self._schedule_notify(engine_id)

    def budget(self, query_id: str, engine_id: str, order: int) -> LocalBudget:
        """A SpecBudget for one query on one engine."""
        budget = LocalBudget(self, query_id, engine_id, order)
        self._budgets.setdefault(engine_id, {})[query_id] = budget
        return budget

    def _release(self, budget: LocalBudget) -> None:
        self._budgets.get(budget.engine_id, {}).pop(budget.query_id, None)
        self.book.release(budget.query_id)
        self._schedule_notify(budget.engine_id)

    def _schedule_notify(self, engine_id: str) -> None:
        """Call on_grant of the engine's queries whose grant grew, after the current callback."""
        if not self._changed:
            asyncio.get_running_loop().call_soon(self._notify)
        self._changed.add(engine_id)

    def _notify(self) -> None:
        changed, self._changed = self._changed, set()
        for engine_id in changed:
            for budget in list(self._budgets.get(engine_id, {}).values()):
                budget.check_grant()


class LocalBudget:
    """SpecBudget over a LocalAllocator: granted() reads the book, report() updates it."""

    def __init__(self, allocator: LocalAllocator, query_id: str, engine_id: str, order: int) -> None:
        self.allocator = allocator
        self.query_id = query_id
        self.engine_id = engine_id
        self.order = order
        self.on_grant: Callable[[int], None] | None = None
        self._seen = 0
        self._closed = False

    def granted(self) -> int:
        return 0 if self._closed else self.allocator.book.grant(self.query_id)

    def report(self, eligible: int, usefulness: float, reusable_kv: float) -> None:
        if self._closed:
            return
        demand = Demand(
            self.query_id,
            self.engine_id,
            max(0, int(eligible)),
            min(1.0, max(0.0, usefulness)),
            min(1.0, max(0.0, reusable_kv)),
            self.order,
        )
        self.allocator.book.record(demand)
        self.allocator._schedule_notify(self.engine_id)  # others on the engine may have gained slots

    def move(self, engine_id: str) -> None:
        """The query moved to `engine_id`: its demand is re-shared there."""
        budgets = self.allocator._budgets
        budgets.get(self.engine_id, {}).pop(self.query_id, None)
        self.allocator.book.release(self.query_id)
        self.allocator._schedule_notify(self.engine_id)
        self.engine_id = engine_id
        budgets.setdefault(engine_id, {})[self.query_id] = self

    def check_grant(self) -> None:
        """Wake the search if the grant grew since it last looked."""
        slots = self.granted()
        grew, self._seen = slots > self._seen, slots
        if grew and self.on_grant is not None:
            self.on_grant(slots)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.allocator._release(self)
