"""TreeActor: hosts many query searches of one batch as asyncio tasks in one process."""

from __future__ import annotations

from typing import Any

import ray

from spex_ray.actors.pool import EnginePool
from spex_ray.actors.reward import build_reward
from spex_ray.allocator.lease import LeaseBudget
from spex_ray.config import Config
from spex_ray.io import Solution, TraceRow
from spex_ray.solution import solve_problem
from spex_ray.tasks import Problem


@ray.remote(num_cpus=0)
class TreeActor:
    """Runs QuerySearches concurrently against the engine actors it is given (and the reward
    actors, for a reward with a model of its own)."""

    def __init__(
        self, config: Config, engines: list[Any], allocator: Any = None, rewards: list[Any] | None = None
    ) -> None:
        self.config = config
        self.pool = EnginePool(engines)
        self.reward = build_reward(config.reward, rewards)
        self.allocator = allocator

    async def solve(self, problem: Problem, order: int = 0) -> tuple[Solution, list[TraceRow]]:
        """Search and grade one problem; returns its result row and its request trace.

        `order` is the query's admission order in the batch (fifo allocation uses it).
        """
        client = self.pool.client()
        budget = None
        if self.allocator is not None:
            budget = LeaseBudget(self.allocator, problem.id, client.engine_name, order)
        try:
            return await solve_problem(problem, self.config, client, self.reward, budget)
        finally:
            client.release()

    async def close(self) -> None:
        await self.reward.close()
