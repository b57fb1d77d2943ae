"""How many speculative requests a query may hold: the interface its search uses.

The search reads granted() before issuing speculation (a local read, never I/O) and
report()s its demand whenever it changes; a cluster allocator (spex_ray.allocator.lease)
answers asynchronously and calls on_grant when new slots arrive. No Ray in here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class SpecBudget(Protocol):
    """A query's share of the speculative budget."""

    on_grant: Callable[[int], None] | None  # called with the new grant when it grows; set by the search

    def granted(self) -> int:
        """Speculative slots this query may hold now (local read, no I/O)."""
        ...

    def report(self, eligible: int, usefulness: float, reusable_kv: float) -> None:
        """Tell the allocator the current demand; non-blocking, refreshes the grant later.

        `usefulness` is the EMA of the fraction of speculative children the search kept.
        """
        ...

    def move(self, engine_id: str) -> None:
        """The query now runs on `engine_id` (its engine went away): draw slots there."""
        ...

    async def close(self) -> None:
        """Return the slots; the query is done."""
        ...


class StaticBudget:
    """A fixed cap of speculative slots (spex.allocator=off, and tests); never calls on_grant."""

    def __init__(self, slots: int) -> None:
        if slots < 0:
            raise ValueError("slots must be >= 0")
        self.slots = int(slots)
        self.on_grant: Callable[[int], None] | None = None

    def granted(self) -> int:
        return self.slots

    def report(self, eligible: int, usefulness: float, reusable_kv: float) -> None:
        return None  # a fixed cap does not depend on the demand

    def move(self, engine_id: str) -> None:
        return None  # a fixed cap is the same on every engine

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"StaticBudget({self.slots})"


class NoBudget(StaticBudget):
    """No speculation at all."""

    def __init__(self) -> None:
        super().__init__(0)

    def __repr__(self) -> str:
        return "NoBudget()"
