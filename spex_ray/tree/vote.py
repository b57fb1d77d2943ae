"""Final-answer aggregation over the answers the search reached."""

from __future__ import annotations

from collections.abc import Sequence

from spex_ray.tasks import answer_key

AGGREGATIONS = ("weighted_vote", "majority", "best")


def aggregate(
    candidates: Sequence[tuple[str | None, float]], how: str = "weighted_vote"
) -> tuple[str | None, float]:
    """Pick the final answer from (answer, path reward) pairs; returns (answer, its weight).

    weighted_vote sums rewards per equivalence class (REBASE's reward-weighted majority),
    majority counts, best takes the single highest reward. Candidates without an answer
    never win. The weight is the winner's share of the total (0 when nothing answered).
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")
    answered = [(answer, weight) for answer, weight in candidates if answer]
    if not answered:
        return None, 0.0
    if how == "best":
        answer, weight = max(answered, key=lambda item: item[1])
        return answer, weight
    scores: dict[str, float] = {}
    first: dict[str, str] = {}
    for answer, weight in answered:
        key = answer_key(answer)
        first.setdefault(key, answer)
        scores[key] = scores.get(key, 0.0) + (weight if how == "weighted_vote" else 1.0)
    # ties go to the class reached first, so the result does not depend on dict order
    best_key = max(first, key=lambda key: scores[key])
    total = sum(scores.values())
    return first[best_key], (scores[best_key] / total if total > 0 else 0.0)
