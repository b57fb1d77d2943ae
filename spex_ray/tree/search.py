"""QuerySearch: the event loop of one query's tree search.

The algorithm (REBASE, MCTS, ...) decides what to expand; the search turns each child
(node n, index k) into an engine request seeded by child_seed(query seed, n, k), scores
the step, adds the child to the tree and keeps the accounts and the request trace.
With SPEX on, speculation (speculate.py) fills the waits at each reward barrier and
early termination (terminate.py) may end the search before its budget is spent.
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
from spex_ray.tree.budget import SpecBudget, StaticBudget
from spex_ray.tree.node import Node
from spex_ray.tree.seeds import child_seed
from spex_ray.tree.speculate import SpecEntry, Speculation, policy_for
from spex_ray.tree.terminate import EarlyStop
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
    tokens_spec: int = 0
    tokens_wasted: int = 0
    requests: int = 0
    spec_requests: int = 0
    hit_rate: float = 0.0
    early_stopped: bool = False
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
        budget: SpecBudget | None = None,
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
        self.in_flight: set[str] = set()  # children requested for real, not yet in the tree
        self.layer_done: list[Node] = []  # children of the current barrier scored so far
        self.expanding: list[Node] = []  # nodes whose children the current barrier waits for
        self.speculation = self._speculation(budget) if config.spex.speculate else None
        spex = config.spex
        self.early_stop = EarlyStop(spex.alpha, spex.stop_confidence) if spex.early_stop else None
        self.early_stopped = False

    async def run(self) -> SearchOutcome:
        try:
            await self.algorithm.run(self)
        finally:
            if self.speculation is not None:
                await self.speculation.finish()
        return self._outcome()

    # -- what algorithms call ----------------------------------------------------------------

    async def expand(self, node: Node, ks: Sequence[int]) -> list[Node]:
        """Generate and score children k of `node` concurrently; add them in k order."""
        return await self.expand_many([(node, ks)])

    async def expand_many(self, work: Sequence[tuple[Node, Sequence[int]]]) -> list[Node]:
        """Expand several nodes at once (one reward barrier); children come back in work order.

        Child k of a node that already has children gets index len(children) + k, so a
        node expanded twice never reuses a seed.
        """
        jobs = [(node, len(node.children) + k) for node, ks in work for k in ks]
        ids = {node.child_id(k) for node, k in jobs}
        self.layer_done, self.expanding = [], [node for node, _ in work]
        self.in_flight |= ids
        claimed = [self._claim(node, k) for node, k in jobs]
        if self.speculation is not None:
            self.speculation.barrier(ids)
        children = await asyncio.gather(
            *(self._child(n, k, e) for (n, k), e in zip(jobs, claimed, strict=True))
        )
        for child in children:
            self.tree.attach(child)
        self.in_flight -= ids
        return children

    def should_stop(self, remaining: int) -> bool:
        """Adaptive early termination, asked by the algorithm between barriers."""
        if self.early_stop is None:
            return False
        self.early_stopped = self.early_stop.decide(self.algorithm.candidates(self), remaining).stop
        return self.early_stopped

    # -- requests, scoring, trace ------------------------------------------------------------

    def request(self, node: Node, k: int, speculative: bool = False) -> GenRequest:
        """The request for child k of `node`: identical for a speculative and a primary child
        except for priority, so a promoted speculative child is exactly the primary one."""
        search, policy = self.config.search, self.config.policy
        budget = max(1, search.max_path_tokens - node.path_tokens)
        prefix = "".join(step + search.step_delimiter for step in node.steps())
        kind = "spec" if speculative else "main"
        return GenRequest(
            prompt=self.prompt + prefix,
            max_new_tokens=min(policy.max_new_tokens, budget),
            temperature=policy.temperature,
            top_p=policy.top_p,
            stop=(search.step_delimiter,),
            seed=child_seed(self.seed, node.id, k),
            priority=Priority.SPEC if speculative else Priority.MAIN,
            tags={"query": self.query_id, "node": node.child_id(k), "kind": kind},
        )

    async def score_child(self, parent: Node, k: int, result: GenResult) -> Node:
        """Score the step in `result` and build child k of `parent`, not yet in the tree."""
        steps = [*parent.steps(), result.text]
        context = StepContext(self.problem, self.prompt, steps, result, {"node": parent.child_id(k)})
        reward = await self.reward.score(context)
        return self._make_child(parent, k, result, reward)

    def trace_row(
        self, request: GenRequest, result: GenResult, node_id: str, outcome: str, child: Node | None = None
    ) -> dict[str, Any]:
        """One request of the trace; `child` (the scored node, if any) adds its depth and whether
        it ended a path (terminal) with an answer (answered), which workload calibration reads."""
        return {
            "query": self.query_id,
            "node": node_id,
            "depth": node_id.count("."),
            "terminal": child.terminal if child is not None else None,
            "answered": child.answer is not None if child is not None else None,
            "request_id": request.request_id,
            "kind": request.tags.get("kind", "main"),
            "outcome": outcome,
            "seed": request.seed,
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
            "cached_tokens": result.cached_tokens,
            "completion_tokens": result.completion_tokens,
            "enqueue_time": result.enqueue_time,
            "start_time": result.start_time,
            "end_time": result.end_time,
        }

    # -- internals -----------------------------------------------------------------------------

    def _speculation(self, budget: SpecBudget | None) -> Speculation:
        if budget is None:
            budget = StaticBudget(self.config.spex.spec_slots or self._auto_slots())
        return Speculation(self, policy_for(self.algorithm, self.config.spex), budget, self.score_child)

    def _auto_slots(self) -> int:
        return max(1, self.config.policy.max_batch_size // self.config.run.concurrency)

    def _claim(self, node: Node, k: int) -> SpecEntry | None:
        return self.speculation.claim(node, k) if self.speculation is not None else None

    async def _child(self, parent: Node, k: int, claimed: SpecEntry | None) -> Node:
        child = await self.speculation.promoted_child(claimed) if claimed is not None else None
        if child is None:
            request = self.request(parent, k)
            result = await self.engine.generate(request)
            self.tokens_main += result.completion_tokens
            if result.finish_reason == FinishReason.ERROR:
                self.trace.append(self.trace_row(request, result, parent.child_id(k), "used"))
                raise SearchError(f"engine failed the request for node {parent.child_id(k)}: {result.error}")
            child = await self.score_child(parent, k, result)
            self.trace.append(self.trace_row(request, result, parent.child_id(k), "used", child))
        self.layer_done.append(child)
        if self.speculation is not None:
            self.speculation.fill()
        return child

    def _make_child(self, parent: Node, k: int, result: GenResult, reward: float) -> Node:
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
        return Node(
            id=parent.child_id(k),
            parent=parent,
            step=step,
            depth=depth,
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

    def _outcome(self) -> SearchOutcome:
        candidates = self.algorithm.candidates(self)
        answer, weight = aggregate(candidates, self.config.search.aggregate)
        outcome = SearchOutcome(
            answer=answer,
            answer_weight=weight,
            candidates=candidates,
            nodes=len(self.tree) - 1,
            depth=self.tree.depth,
            leaves=len(self.tree.terminals()),
            tokens_main=self.tokens_main,
            early_stopped=self.early_stopped,
            trace=self.trace,
            tree=self.tree,
        )
        if self.speculation is not None:
            stats = self.speculation.stats()
            outcome.tokens_spec = stats["tokens_spec"]
            outcome.tokens_wasted = stats["tokens_wasted"]
            outcome.spec_requests = stats["spec_requests"]
            outcome.hit_rate = stats["hit_rate"]
            outcome.trace = self.trace + self.speculation.trace_rows()
        outcome.requests = len(outcome.trace)
        return outcome
