"""StepTagScorer: a generative PRM (Math-Shepherd style step tags) on an SGLang engine.

Hosted by a reward actor on its GPU(s). Each call scores the newest step of a path with one
`Engine.async_score` request: query = problem + earlier steps (tagged), item = the newest
step + tag, labels = [good, bad] (normalised) or [good] (its probability). See prm.py.
"""

from __future__ import annotations

from typing import Any

from spex_ray.config import RewardConfig
from spex_ray.rewards.prm import label_step_score, label_token_ids, reward_engine_policy, step_tag_query_item


class StepTagScorer:
    """Scores steps with the PRM `config.model` (a RewardConfig) on an SGLang engine.

    `engine` defaults to an SGLangEngine built from the reward config; tests pass a fake.
    """

    @staticmethod
    def needs_gpu(config: RewardConfig) -> bool:
        """SGLang runs on GPUs only."""
        return True

    def __init__(self, config: RewardConfig, *, name: str = "reward-0", engine: Any = None) -> None:
        self.config = config
        if engine is None:
            from spex_ray.engines.sglang import SGLangEngine

            engine = SGLangEngine(reward_engine_policy(config), name=name)
        self.engine = engine
        self._labels: list[int] = []

    async def start(self) -> None:
        """Start the engine and resolve the label token ids with the PRM's tokenizer."""
        await self.engine.start()
        config = self.config
        self._labels = label_token_ids(
            self.engine.tokenizer(), config.good_token, config.bad_token, config.label_token_ids
        )

    async def score(self, problem: str, steps: list[str]) -> float:
        if not self._labels:
            await self.start()
        query, item = step_tag_query_item(problem, steps, self.config.step_tag)
        rows = await self.engine.score_labels(
            query, [item], self._labels, apply_softmax=len(self._labels) > 1
        )
        return label_step_score(rows[0])

    async def close(self) -> None:
        await self.engine.close()
