"""SimReward: a process reward model for the simulated engine's synthetic workload.

A sim step carries its latent quality z in a marker ("Step 3 [z=0.734]: ..."); the reward
is that z plus Gaussian noise of sd `noise`, seeded by the step text, clipped to [0, 1].
The same step therefore always gets the same reward (stable across MCTS rollouts and
between speculative and primary requests). A step without a marker (not from the sim)
falls back to the confidence score of its token logprobs.
"""

from __future__ import annotations

import hashlib
import random

from spex_ray.config import RewardConfig
from spex_ray.rewards.base import StepContext
from spex_ray.rewards.confidence import ConfidenceReward
from spex_ray.sim.workload import parse_z

DEFAULT_NOISE = 0.1


class SimReward:
    """score = clip(z of the newest step + N(0, noise) seeded by the step text, 0, 1).

    `config` is the RewardConfig (reward.noise sets the noise sd); None means the default noise.
    """

    def __init__(self, config: RewardConfig | None = None) -> None:
        self.noise = DEFAULT_NOISE if config is None else float(config.noise)
        if self.noise < 0:
            raise ValueError("reward.noise must be >= 0")
        self._fallback = ConfidenceReward()

    async def score(self, context: StepContext) -> float:
        step = context.steps[-1] if context.steps else context.result.text
        return self.score_step(step, context.result.logprobs)

    def score_step(self, step: str, logprobs: list[float] | None = None) -> float:
        """The reward of one step's text (logprobs only matter for a step with no marker)."""
        z = parse_z(step)
        if z is None:
            return self._fallback.score_logprobs(list(logprobs or []))
        seed = int.from_bytes(hashlib.blake2b(step.encode(), digest_size=8).digest(), "big")
        noisy = z + random.Random(seed).gauss(0.0, self.noise) if self.noise else z
        return min(1.0, max(0.0, noisy))

    async def close(self) -> None:
        return None
