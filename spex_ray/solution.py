"""Solving one problem end to end, Ray-free: prompt, tree search, grading, result row."""

from __future__ import annotations

import time
import traceback

from spex_ray.config import Config
from spex_ray.engines.chat import ChatTemplate
from spex_ray.io import Solution, TraceRow, exception_message
from spex_ray.rewards.base import Reward
from spex_ray.tasks import Problem, build_messages, is_correct
from spex_ray.tree.budget import SpecBudget
from spex_ray.tree.search import EngineClient, QuerySearch
from spex_ray.tree.seeds import child_seed
from spex_ray.tree.settings import SearchSettings

MODELED_CLOCK_BACKENDS = frozenset({"sim"})  # engines whose request times are modeled, not wall


def engine_span(trace: list[TraceRow]) -> float:
    """Seconds on the engine's clock from the first request's enqueue to the last one's end."""
    if not trace:
        return 0.0
    return max(row.end_time for row in trace) - min(row.enqueue_time for row in trace)


def query_seed(run_seed: int, problem_id: str) -> int:
    """A query's seed: fixed by the run seed and the problem id, whatever the batch order."""
    return child_seed(run_seed, f"query:{problem_id}", 0)


def render_prompt(problem: Problem, config: Config, chat: ChatTemplate) -> str:
    """The chat prompt of `problem` in the engine's template, asking for steps separated by
    search.step_delimiter (the string the search splits steps on)."""
    return chat.render(build_messages(problem.problem, config.search.step_delimiter))


async def solve_problem(
    problem: Problem,
    config: Config,
    engine: EngineClient,
    chat: ChatTemplate,
    reward: Reward,
    budget: SpecBudget | None = None,
) -> tuple[Solution, list[TraceRow]]:
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
        return Solution.failed(problem, problem.error, algorithm=solution.algorithm, seed=seed), []
    started = time.time()
    try:
        prompt = render_prompt(problem, config, chat)
        settings = SearchSettings.from_config(config)
        search = QuerySearch(problem.id, problem.problem, prompt, settings, engine, reward, seed, budget)
        outcome = await search.run()
    except Exception as exc:  # one bad problem fails its row, not the batch
        detail = traceback.format_exc()
        return Solution.failed(
            problem, exception_message(exc), detail, algorithm=solution.algorithm, seed=seed
        ), []
    solution.latency_s = time.time() - started
    if config.policy.backend in MODELED_CLOCK_BACKENDS:  # the engine's modeled seconds, not wall
        solution.latency_s = engine_span(outcome.trace)
    solution.answer = outcome.answer
    solution.answer_weight = outcome.answer_weight
    solution.candidates = [answer for answer, _ in outcome.candidates]
    solution.path = outcome.path
    solution.step_rewards = outcome.step_rewards
    solution.answer_node = outcome.answer_node
    solution.correct = is_correct(outcome.answer, problem.gold) if problem.gold is not None else None
    solution.set_stats(outcome.stats)
    if outcome.timed_out:
        solution.status = "timeout"
        solution.error = (
            f"the search reached run.query_timeout_s ({config.run.query_timeout_s:g} s); "
            "the answer is the best it had by then"
        )
    return solution, outcome.trace


__all__ = [
    "MODELED_CLOCK_BACKENDS",
    "Solution",
    "engine_span",
    "query_seed",
    "render_prompt",
    "solve_problem",
]
