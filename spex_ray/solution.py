"""Solving one problem end to end, Ray-free: prompt, tree search, grading, result row."""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Protocol

from spex_ray.config import Config
from spex_ray.rewards.base import Reward
from spex_ray.tasks import Problem, build_messages, is_correct
from spex_ray.tree.budget import SpecBudget
from spex_ray.tree.search import EngineClient, QuerySearch
from spex_ray.tree.seeds import child_seed
from spex_ray.tree.settings import SearchSettings


@dataclass
class Solution:
    """The result row of one problem (the columns of results.parquet)."""

    id: str
    problem: str
    gold: str | None = None
    answer: str | None = None
    correct: bool | None = None
    status: str = "ok"  # ok | error
    error: str | None = None
    algorithm: str = ""
    seed: int = 0
    tokens_main: int = 0
    tokens_spec: int = 0
    tokens_wasted: int = 0
    requests: int = 0
    spec_requests: int = 0
    hit_rate: float = 0.0
    latency_s: float = 0.0
    nodes: int = 0
    depth: int = 0
    leaves: int = 0
    early_stopped: bool = False
    answer_weight: float = 0.0
    candidates: list[str] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Solution:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


class ChatEngineClient(EngineClient, Protocol):
    """What a search needs from an engine, plus chat rendering."""

    async def render_chat(self, messages: list[dict[str, str]]) -> str: ...


def query_seed(run_seed: int, problem_id: str) -> int:
    """A query's seed: fixed by the run seed and the problem id, whatever the batch order."""
    return child_seed(run_seed, f"query:{problem_id}", 0)


async def solve_problem(
    problem: Problem,
    config: Config,
    engine: ChatEngineClient,
    reward: Reward,
    budget: SpecBudget | None = None,
) -> tuple[Solution, list[dict[str, Any]]]:
    """Search one problem and grade it; any failure becomes an error row, never an exception."""
    seed = query_seed(config.run.seed, problem.id)
    solution = Solution(
        id=problem.id,
        problem=problem.problem,
        gold=problem.gold,
        algorithm=config.search.algorithm,
        seed=seed,
    )
    if problem.error:
        return _failed(solution, problem.error), []
    started = time.time()
    try:
        prompt = await engine.render_chat(build_messages(problem.problem))
        settings = SearchSettings.from_config(config)
        search = QuerySearch(problem.id, problem.problem, prompt, settings, engine, reward, seed, budget)
        outcome = await search.run()
    except Exception as exc:  # one bad problem fails its row, not the batch
        return _failed(solution, f"{type(exc).__name__}: {exc}", traceback.format_exc()), []
    solution.latency_s = time.time() - started
    solution.answer = outcome.answer
    solution.answer_weight = outcome.answer_weight
    solution.candidates = [answer for answer, _ in outcome.candidates]
    solution.correct = is_correct(outcome.answer, problem.gold) if problem.gold is not None else None
    stats = outcome.stats
    solution.tokens_main = stats.tokens_main
    solution.tokens_spec = stats.tokens_spec
    solution.tokens_wasted = stats.tokens_wasted
    solution.requests = stats.requests
    solution.spec_requests = stats.spec_requests
    solution.hit_rate = stats.hit_rate
    solution.early_stopped = stats.early_stopped
    solution.nodes = stats.nodes
    solution.depth = stats.depth
    solution.leaves = stats.leaves
    return solution, [row.to_dict() for row in outcome.trace]


def _failed(solution: Solution, message: str, detail: str = "") -> Solution:
    solution.status = "error"
    solution.error = message if not detail else f"{message}\n{detail[-2000:]}"
    return solution


__all__ = ["ChatEngineClient", "Solution", "query_seed", "solve_problem"]
