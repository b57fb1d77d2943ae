"""RewardActor: one process reward model (an SGLang engine or a transformers scorer) behind an
async Ray actor, and ActorScorer, the StepScorer a search uses to reach the reward actors."""

from __future__ import annotations

import zlib
from typing import Any

import ray

from spex_ray.actors.pool import reward_resources, start_actors
from spex_ray.config import RewardConfig
from spex_ray.registries import REWARDS, SCORERS
from spex_ray.rewards.prm import PRMReward


@ray.remote
class RewardActor:
    """Hosts one PRM scorer (reward.scorer); every method is async so paths of many queries
    are scored concurrently (SGLang batches them; the transformers scorer micro-batches)."""

    def __init__(self, reward: RewardConfig, name: str = "reward-0") -> None:
        self.name = name
        self.reward = reward
        self.scorer = SCORERS.build(reward.scorer, reward, name=name)

    async def start(self) -> dict[str, Any]:
        await self.scorer.start()
        return {"name": self.name, "scorer": self.reward.scorer, "model": self.reward.model}

    async def score(self, problem: str, steps: list[str]) -> float:
        return await self.scorer.score(problem, steps)

    async def close(self) -> None:
        await self.scorer.close()


class ActorScorer:
    """The StepScorer over reward actors: all paths of one problem go to the same actor, whose
    cache then holds their shared prefixes."""

    def __init__(self, actors: list[Any]) -> None:
        if not actors:
            raise ValueError("ActorScorer needs at least one reward actor")
        self.actors = list(actors)

    def index(self, problem: str) -> int:
        return zlib.crc32(problem.encode()) % len(self.actors)

    async def score(self, problem: str, steps: list[str]) -> float:
        return await self.actors[self.index(problem)].score.remote(problem, steps)

    async def close(self) -> None:
        return None  # the driver closes the actors


def needs_reward_actors(reward: RewardConfig) -> bool:
    """Whether reward.kind scores through a model of its own (a PRMReward: needs_scorer)."""
    reward_class = REWARDS.get(reward.kind)
    return (
        isinstance(reward_class, type) and issubclass(reward_class, PRMReward) and reward_class.needs_scorer
    )


def build_reward(reward: RewardConfig, actors: list[Any] | None = None) -> Any:
    """The Reward of a search; rewards that need a model get the reward actors' client."""
    if needs_reward_actors(reward):
        if not actors:
            raise RuntimeError(f"reward.kind {reward.kind!r} needs reward actors (start_reward_actors)")
        return REWARDS.build(reward.kind, reward, scorer=ActorScorer(actors))
    return REWARDS.build(reward.kind, reward)


def start_reward_actors(reward: RewardConfig) -> tuple[list[Any], list[Any]]:
    """Start reward.num_engines reward actors when reward.kind needs them; returns (actors,
    placement groups), both empty otherwise."""
    if not needs_reward_actors(reward):
        return [], []
    return start_actors(RewardActor, reward, reward_resources(reward), "reward", reward.num_engines)
