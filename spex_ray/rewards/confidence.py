"""Confidence reward: a step's score from the policy's own token logprobs.

This is what SPEX uses for models without a process reward model: no extra model call,
the score is read off the GenResult of the step itself.
"""

from __future__ import annotations

import math

from spex_ray.config import RewardConfig
from spex_ray.rewards.base import StepContext

STEP_SCORES = ("mean_logprob", "min_logprob")


class ConfidenceReward:
    """exp(mean token logprob) (the step's geometric-mean token probability) or exp(min)."""

    def __init__(self, config: RewardConfig | None = None) -> None:
        self.step_score = config.step_score if config is not None else "mean_logprob"
        if self.step_score not in STEP_SCORES:
            raise ValueError(f"reward.step_score must be one of {', '.join(STEP_SCORES)}")

    async def score(self, context: StepContext) -> float:
        return self.score_logprobs(context.result.logprobs)

    def score_logprobs(self, logprobs: list[float]) -> float:
        """A score in [0, 1]; a step with no tokens carries no evidence and scores 0."""
        if not logprobs:
            return 0.0
        if self.step_score == "min_logprob":
            return math.exp(min(logprobs))
        return math.exp(sum(logprobs) / len(logprobs))

    async def close(self) -> None:
        return None
