"""QueryRuntime: one query end to end, on whichever engine the router gives it.

Route the query (affinity, then least loaded), give it its speculative budget on that
engine (moved with it if the engine goes away), solve it (solution.solve_problem: prompt,
search, grading), release engine and budget. The tree actor and the simulation both run
their queries through this class; only their engines and allocators differ in transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from spex_ray.config import Config
from spex_ray.engines.chat import ChatTemplate
from spex_ray.io import Solution, TraceRow
from spex_ray.rewards.base import Reward
from spex_ray.runtime.client import RoutedClient
from spex_ray.runtime.router import Router
from spex_ray.solution import solve_problem
from spex_ray.tasks import Problem
from spex_ray.tree.budget import SpecBudget

# solve_problem's signature: (problem, config, client, chat, reward, budget) -> (row, trace)
Solver = Callable[..., Awaitable[tuple[Solution, list[TraceRow]]]]


class BudgetSource(Protocol):
    """Makes a query's SpecBudget on an engine (LocalAllocator in-process, LeaseSource on Ray)."""

    def budget(self, query_id: str, engine_id: str, order: int) -> SpecBudget: ...


class QueryRuntime:
    """Solves queries against the engines of `router` (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        router: Router,
        chat: ChatTemplate,
        reward: Reward,
        budgets: BudgetSource | None = None,
        solver: Solver = solve_problem,
    ) -> None:
        self.config = config
        self.router = router
        self.chat = chat
        self.reward = reward
        self.budgets = budgets
        self.solver = solver  # the oracle replay solves its own way

    async def solve(self, problem: Problem, order: int = 0) -> tuple[Solution, list[TraceRow]]:
        """Search and grade `problem`; `order` is its admission order (fifo allocation uses it)."""
        await self.router.acquire(problem.id)
        client = RoutedClient(self.router, problem.id)
        budget = self.budgets.budget(problem.id, client.engine_name, order) if self.budgets else None
        if budget is not None:
            client.on_move = budget.move
        try:
            solution, trace = await self.solver(problem, self.config, client, self.chat, self.reward, budget)
        finally:
            client.release()
        solution.engine, solution.retries = client.engine_name, client.retries
        return solution, trace
