"""TreeActor: a QueryRuntime (runtime/query.py) made remote; many queries of a batch run in
it as asyncio tasks. The driver's EngineFleet tells it which engines serve."""

from __future__ import annotations

from typing import Any

import ray

from spex_ray.actors.proxy import ActorProxy
from spex_ray.actors.reward import build_reward
from spex_ray.allocator.lease import LeaseSource
from spex_ray.config import Config
from spex_ray.engines.chat import ChatTemplate
from spex_ray.io import Solution, TraceRow
from spex_ray.runtime import QueryRuntime, Router
from spex_ray.tasks import Problem


@ray.remote(num_cpus=0)
class TreeActor:
    """Runs QuerySearches concurrently against the engines it is told of (and the reward
    actors, for a reward with a model of its own). `chat` is the engines' chat template,
    rendered here, once per query, with no call to an engine."""

    def __init__(
        self, config: Config, chat: ChatTemplate, allocator: Any = None, rewards: list[Any] | None = None
    ) -> None:
        self.router = Router(wait_timeout_s=config.policy.start_timeout_s)
        budgets = LeaseSource(allocator) if allocator is not None else None
        self.runtime = QueryRuntime(config, self.router, chat, build_reward(config.reward, rewards), budgets)

    async def solve(self, problem: Problem, order: int = 0) -> tuple[Solution, list[TraceRow]]:
        """Search and grade one problem; its result row and its request trace."""
        return await self.runtime.solve(problem, order)

    async def add_engine(self, name: str, handle: Any) -> None:
        self.router.add(name, ActorProxy(handle))

    async def drain_engine(self, name: str) -> None:
        self.router.drain(name)

    async def remove_engine(self, name: str) -> None:
        self.router.remove(name)

    async def close(self) -> None:
        await self.runtime.reward.close()
