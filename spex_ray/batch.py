"""What a finished batch reports, on Ray (api.RunResult) or simulated (sim.cluster.SimRun)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from spex_ray.io import Solution


@dataclass
class BatchResult(ABC):
    """The solutions of a batch, in input order, and the figures both kinds of run derive."""

    solutions: list[Solution]

    @property
    @abstractmethod
    def duration_s(self) -> float:
        """The seconds the batch took, the span questions_per_minute is over."""

    @property
    def solved_count(self) -> int:
        """How many of the solutions this run computed (a resumed run reuses the others)."""
        return len(self.solutions)

    @property
    def questions_per_minute(self) -> float:
        """Problems solved in this run per minute of duration_s (reused rows do not count)."""
        return 60.0 * self.solved_count / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def accuracy(self) -> float | None:
        """The share of graded solutions that are correct; None when none was graded."""
        graded = [s.correct for s in self.solutions if s.correct is not None]
        return sum(graded) / len(graded) if graded else None

    def total(self, name: str) -> float:
        """The sum of the result column `name` (e.g. tokens_spec) over the solutions."""
        return float(sum(getattr(s, name) for s in self.solutions))
