"""QuerySearch: the event loop of one query's tree search.

The algorithm (REBASE, MCTS, ...) decides what to expand; the search turns each child
(node n, index k) into an engine request seeded by child_seed(query seed, n, k), scores
the step, adds the child to the tree and keeps the accounts and the request trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from spex_ray.config import Config
from spex_ray.engines.base import FinishReason, GenRequest, GenResult, Priority
from spex_ray.rewards.base import Reward, StepContext
from spex_ray.tasks import extract_answer
from spex_ray.tree.algorithms import ALGORITHMS
from spex_ray.tree.node import Node
from spex_ray.tree.seeds import child_seed
from spex_ray.tree.tree import QueryTree
from spex_ray.tree.vote import aggregate


class EngineClient(Protocol):
    """The engine as a search sees it (an Engine in-process, or an actor client)."""

    async def generate(self, request: GenRequest) -> GenResult: ...

    async def abort(self, request_id: str) -> None: ...


class SearchError(RuntimeError):
    """The search could not go on (an engine failed a request)."""


@dataclass
class SearchOutcome:
    """What one query's search produced."""

    answer: str | None
    answer_weight: float
    candidates: list[tuple[str | None, float]]
    nodes: int
    depth: int
    leaves: int
    tokens_main: int
    tokens_spec: int
    tokens_wasted: int
    requests: int
    trace: list[dict[str, Any]] = field(default_factory=list)
    tree: QueryTree | None = None


class QuerySearch:
    """Runs one algorithm on one problem against an engine and a reward."""

    def __init__(
        self,
        query_id: str,
        problem: str,
        prompt: str,
        config: Config,
        engine: EngineClient,
        reward: Reward,
        seed: int,
    ) -> None:
        self.query_id = query_id
        self.problem = problem
        self.prompt = prompt
        self.config = config
        self.engine = engine
        self.reward = reward
        self.seed = seed
        self.tree = QueryTree()
        self.algorithm = ALGORITHMS.build(config.search.algorithm, config.search)
        self.trace: list[dict[str, Any]] = []
        self.tokens_main = 0

    async def run(self) -> SearchOutcome:
        await self.algorithm.run(self)
        candidates = self.algorithm.candidates(self)
        answer, weight = aggregate(candidates, self.config.search.aggregate)
        return SearchOutcome(
            answer=answer,
            answer_weight=weight,
            candidates=candidates,
            nodes=len(self.tree) - 1,
            depth=self.tree.depth,
            leaves=len(self.tree.terminals()),
            tokens_main=self.tokens_main,
            tokens_spec=0,
            tokens_wasted=0,
            requests=len(self.trace),
            trace=self.trace,
            tree=self.tree,
        )

    async def expand(self, node: Node, ks: Sequence[int]) -> list[Node]:
        """Generate and score children k of `node` concurrently; add them in k order."""
        return await self.expand_many([(node, ks)])

    async def expand_many(self, work: Sequence[tuple[Node, Sequence[int]]]) -> list[Node]:
        """Expand several nodes at once (one BFS layer); children come back in work order.

        Child k of a node that already has children gets index len(children) + k, so a
        node expanded twice never reuses a seed.
        """
        jobs = [(node, len(node.children) + k) for node, ks in work for k in ks]
        results = await asyncio.gather(*(self._step(node, k) for node, k in jobs))
        return [self._add_child(node, k, *outcome) for (node, k), outcome in zip(jobs, results, strict=True)]

    async def _step(self, node: Node, k: int) -> tuple[GenResult, float]:
        request = self._request(node, k)
        result = await self.engine.generate(request)
        self._record(request, result, node.child_id(k))
        if result.finish_reason == FinishReason.ERROR:
            raise SearchError(f"engine failed the request for node {node.child_id(k)}: {result.error}")
        steps = [*node.steps(), result.text]
        context = StepContext(self.problem, self.prompt, steps, result, dict(request.tags))
        return result, await self.reward.score(context)

    def _request(self, node: Node, k: int) -> GenRequest:
        search, policy = self.config.search, self.config.policy
        budget = max(1, search.max_path_tokens - node.path_tokens)
        prefix = "".join(step + search.step_delimiter for step in node.steps())
        return GenRequest(
            prompt=self.prompt + prefix,
            max_new_tokens=min(policy.max_new_tokens, budget),
            temperature=policy.temperature,
            top_p=policy.top_p,
            stop=(search.step_delimiter,),
            seed=child_seed(self.seed, node.id, k),
            priority=Priority.MAIN,
            tags={"query": self.query_id, "node": node.child_id(k), "kind": "main"},
        )

    def _add_child(self, parent: Node, k: int, result: GenResult, reward: float) -> Node:
        search = self.config.search
        step = result.text.rstrip()
        depth = parent.depth + 1
        path_tokens = parent.path_tokens + result.completion_tokens
        answer = extract_answer(step)
        ended = result.finish_reason == FinishReason.STOP and result.stop_matched is None  # EOS
        at_limit = depth >= search.max_depth or path_tokens >= search.max_path_tokens
        terminal = answer is not None or ended or at_limit
        if terminal and answer is None:
            answer = extract_answer("\n".join([*parent.steps(), step]))
        return self.tree.add_child(
            parent,
            k,
            step=step,
            reward=reward,
            path_reward=self._path_reward(parent, reward, depth),
            path_tokens=path_tokens,
            terminal=terminal,
            answer=answer,
        )

    def _path_reward(self, parent: Node, reward: float, depth: int) -> float:
        how = self.config.reward.path_score
        if parent.is_root or how == "last":
            return reward
        if how == "min":
            return min(parent.path_reward, reward)
        return parent.path_reward + (reward - parent.path_reward) / depth  # running mean

    def _record(self, request: GenRequest, result: GenResult, node_id: str) -> None:
        self.tokens_main += result.completion_tokens
        self.trace.append(
            {
                "query": self.query_id,
                "node": node_id,
                "request_id": request.request_id,
                "kind": request.tags.get("kind", "main"),
                "outcome": "used",
                "seed": request.seed,
                "finish_reason": result.finish_reason,
                "prompt_tokens": result.prompt_tokens,
                "cached_tokens": result.cached_tokens,
                "completion_tokens": result.completion_tokens,
                "enqueue_time": result.enqueue_time,
                "start_time": result.start_time,
                "end_time": result.end_time,
            }
        )
