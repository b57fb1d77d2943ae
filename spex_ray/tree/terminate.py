"""Adaptive early termination (SPEX technique 3).

Finished answers are grouped into equivalence classes and weighted by their path reward.
The search stops when the leading class is out of reach and confident:

    W1 - W2 > alpha * remaining * mean weight of the runner-up class
    and median weight of the leading class >= min_confidence

where W1, W2 are the summed weights of the two leading classes and `remaining` is the
width still to be spent (REBASE: paths left in the budget; MCTS: rollouts left). With a
single class the runner-up weight is the mean weight of all answers: the margin must
survive the remaining paths all going to one typical rival.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from spex_ray.tasks import answer_key


@dataclass
class StopDecision:
    stop: bool
    leader: str | None = None
    margin: float = 0.0
    needed: float = 0.0
    confidence: float = 0.0


@dataclass
class EarlyStop:
    """The stopping rule; `alpha` scales the margin required, `min_confidence` the median weight."""

    alpha: float = 1.0
    min_confidence: float = 0.5
    min_answers: int = 2

    def decide(self, answers: Sequence[tuple[str | None, float]], remaining: int) -> StopDecision:
        classes = _classes(answers)
        if sum(len(weights) for _, weights in classes) < self.min_answers:
            return StopDecision(False)
        (leader, top), *rest = classes
        runner_up = rest[0][1] if rest else []
        margin = sum(top) - sum(runner_up)
        rival_weight = statistics.fmean(runner_up or [w for _, ws in classes for w in ws])
        needed = self.alpha * remaining * rival_weight
        confidence = statistics.median(top)
        stop = margin > needed and confidence >= self.min_confidence
        return StopDecision(stop, leader, margin, needed, confidence)


def _classes(answers: Sequence[tuple[str | None, float]]) -> list[tuple[str, list[float]]]:
    """Answer classes with their weights, heaviest first (ties: first reached)."""
    grouped: dict[str, tuple[str, list[float]]] = {}
    for answer, weight in answers:
        if answer:
            grouped.setdefault(answer_key(answer), (answer, []))[1].append(weight)
    return sorted(grouped.values(), key=lambda item: -sum(item[1]))
