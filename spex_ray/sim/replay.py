"""`oracle(config, problems, baseline)` replays the trees of a baseline run with perfect
foresight: every node the search will keep is requested the moment its parent's step is
generated, with no barrier and no slot limit, the upper bound of what speculation can gain.

The replay uses the search's own step generator (tree/expand.py), so each node is the very
request, score and trace row of the baseline's search.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from spex_ray.config import Config
from spex_ray.engines.chat import ChatTemplate
from spex_ray.io import TraceRow
from spex_ray.rewards.base import Reward
from spex_ray.sim.cluster import SimRun, as_problems, run_batch, sim_config
from spex_ray.sim.loop import run_virtual
from spex_ray.solution import Solution, query_seed, render_prompt
from spex_ray.tasks import Problem
from spex_ray.tree.expand import EngineClient, Query, StepGenerator
from spex_ray.tree.node import Node
from spex_ray.tree.settings import SearchSettings
from spex_ray.tree.tree import QueryTree


def oracle(
    config: Config, problems: Sequence[Problem | dict[str, Any]], baseline: SimRun, gpus: int = 1
) -> SimRun:
    """Replay `baseline`'s trees with perfect foresight (see the module docstring)."""
    return run_virtual(_oracle(sim_config(config), as_problems(problems), baseline, gpus))


def kept_nodes(trace: list[TraceRow]) -> list[str]:
    """The ids of the nodes a search put in its tree (primary or promoted requests)."""
    return [row.node for row in trace if row.outcome in ("used", "promoted")]


async def _oracle(config: Config, problems: list[Problem], baseline: SimRun, gpus: int) -> SimRun:
    config = dataclasses.replace(config, spex=dataclasses.replace(config.spex, speculate=False))

    async def solve(problem, config, client, chat, reward, budget):
        return await _replay(problem, config, client, chat, reward, kept_nodes(baseline.traces[problem.id]))

    run = await run_batch(config, problems, gpus, solve)
    graded = {s.id: s for s in baseline.solutions}
    for solution in run.solutions:  # the same tree as the baseline's, so the same answer
        solution.answer, solution.correct = graded[solution.id].answer, graded[solution.id].correct
    return run


async def _replay(
    problem: Problem,
    config: Config,
    client: EngineClient,
    chat: ChatTemplate,
    reward: Reward,
    node_ids: list[str],
) -> tuple[Solution, list[TraceRow]]:
    """Generate exactly the nodes `node_ids`, each as soon as its parent exists."""
    seed = query_seed(config.run.seed, problem.id)
    prompt = render_prompt(problem, config, chat)
    query = Query(problem.id, problem.problem, prompt, seed)
    steps = StepGenerator(query, SearchSettings.from_config(config), client, reward)
    tree = QueryTree()
    children: dict[str, list[int]] = defaultdict(list)
    for node_id in node_ids:
        parent_id, _, k = node_id.rpartition(".")
        children[parent_id].append(int(k))

    async def grow(node: Node) -> None:
        await asyncio.gather(*(expand(node, k) for k in sorted(children.get(node.id, []))))

    async def expand(parent: Node, k: int) -> None:
        child = await steps.step(parent, k)
        tree.attach(child)
        await grow(child)

    await grow(tree.root)
    solution = Solution(id=problem.id, problem=problem.problem, gold=problem.gold, seed=seed)
    solution.tokens_main = steps.tokens_main
    solution.nodes = len(tree) - 1
    solution.requests = len(steps.trace)
    return solution, steps.trace
