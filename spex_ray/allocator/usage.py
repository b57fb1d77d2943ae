"""BudgetUsage: what each engine's speculative budget and grants were over a run, for its report.

Per engine, since it registered: the time-weighted mean and the maximum of its budget and of
the slots granted on it, and the mean speculative capacity it offered at each MAIN load (what
explains the budget: e.g. a CPU engine offering nothing beside more than one MAIN sequence).
Pure Python, no Ray; the BudgetAllocator actor (budget.py) feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class _EngineUsage:
    since: float
    last: float
    budget: int = 0
    granted: int = 0
    budget_area: float = 0.0  # integral of the budget over time
    granted_area: float = 0.0
    max_budget: int = 0
    max_granted: int = 0
    offers: dict[int, list[int]] = field(default_factory=dict)  # MAIN load -> [reports, capacity sum]

    def advance(self, now: float) -> None:
        elapsed = max(0.0, now - self.last)
        self.budget_area += self.budget * elapsed
        self.granted_area += self.granted * elapsed
        self.last = max(self.last, now)


class BudgetUsage:
    """Time-weighted budget and grant figures per engine (see the module docstring)."""

    def __init__(self) -> None:
        self._engines: dict[str, _EngineUsage] = {}

    def start(self, engine_id: str, now: float) -> None:
        """Count the engine from `now` on (a registration starts its figures afresh)."""
        self._engines[engine_id] = _EngineUsage(since=now, last=now)

    def record(self, engine_id: str, budget: int, granted: int, now: float) -> None:
        """The engine's budget and the slots granted on it from `now` on."""
        usage = self._engines.get(engine_id)
        if usage is None:
            usage = self._engines[engine_id] = _EngineUsage(since=now, last=now)
        usage.advance(now)
        usage.budget, usage.granted = budget, granted
        usage.max_budget = max(usage.max_budget, budget)
        usage.max_granted = max(usage.max_granted, granted)

    def offered(self, engine_id: str, main: int, capacity: int | None) -> None:
        """The engine reported `capacity` SPEC sequences beside `main` MAIN ones."""
        usage = self._engines.get(engine_id)
        if usage is not None and capacity is not None:
            tally = usage.offers.setdefault(int(main), [0, 0])
            tally[0] += 1
            tally[1] += int(capacity)

    def summary(self, now: float) -> dict[str, dict[str, Any]]:
        """Per engine: seconds counted, mean and max budget and granted, mean offer by MAIN load."""
        out = {}
        for engine_id, usage in sorted(self._engines.items()):
            usage.advance(now)
            seconds = usage.last - usage.since
            out[engine_id] = {
                "seconds": seconds,
                "mean_budget": usage.budget_area / seconds if seconds > 0 else float(usage.budget),
                "max_budget": usage.max_budget,
                "mean_granted": usage.granted_area / seconds if seconds > 0 else float(usage.granted),
                "max_granted": usage.max_granted,
                "offer_by_main": {main: total / n for main, (n, total) in sorted(usage.offers.items())},
            }
        return out
