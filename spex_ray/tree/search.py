"""QuerySearch: the event loop of one query's tree search.

The algorithm (REBASE, MCTS, ...) decides what to expand; the step generator (expand.py)
turns each child (node n, index k) into its seeded engine request, scores it and traces
it. With SPEX on, speculation (speculate.py) fills the waits at each reward barrier with
the children the algorithm's own policy predicts, and early termination (terminate.py)
may end the search before its budget is spent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from spex_ray.io import SearchStats, TraceRow
from spex_ray.rewards.base import Reward
from spex_ray.tree.algorithms import ALGORITHMS, Algorithm
from spex_ray.tree.barrier import Barrier
from spex_ray.tree.budget import SpecBudget, StaticBudget
from spex_ray.tree.expand import EngineClient, Query, StepGenerator
from spex_ray.tree.node import Node
from spex_ray.tree.settings import SearchSettings
from spex_ray.tree.speculate import NoSpeculation, SpecEntry, Speculation
from spex_ray.tree.terminate import EarlyStop
from spex_ray.tree.tree import QueryTree
from spex_ray.tree.vote import aggregate

__all__ = ["EngineClient", "QuerySearch", "SearchOutcome"]


@dataclass
class SearchOutcome:
    """What one query's search produced: the voted answer, the candidates, the stats and
    the request trace (primary requests first, then speculative ones)."""

    answer: str | None
    answer_weight: float
    candidates: list[tuple[str | None, float]]
    stats: SearchStats
    trace: list[TraceRow]


class QuerySearch:
    """Runs one algorithm on one problem against an engine and a reward.

    Each barrier the algorithm asks for is expanded in three moves: claim the children
    speculation already has, generate the rest, attach them all in order.
    """

    def __init__(
        self,
        query_id: str,
        problem: str,
        prompt: str,
        settings: SearchSettings,
        engine: EngineClient,
        reward: Reward,
        seed: int,
        budget: SpecBudget | None = None,
    ) -> None:
        self.settings = settings
        self.tree = QueryTree()
        self.steps = StepGenerator(Query(query_id, problem, prompt, seed), settings, engine, reward)
        self.algorithm: Algorithm = ALGORITHMS.build(settings.search.algorithm, settings.search)
        self.speculation = self._speculation(budget)
        spex = settings.spex
        self.early_stop = EarlyStop(spex.alpha, spex.stop_confidence) if spex.early_stop else None
        self.early_stopped = False

    async def run(self) -> SearchOutcome:
        try:
            await self.algorithm.run(self)
        finally:
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
        barrier = Barrier([node for node, _ in work], {node.child_id(k) for node, k in jobs})
        claims = [self.speculation.claim(node, k) for node, k in jobs]
        self.speculation.on_barrier(barrier)
        children = await asyncio.gather(
            *(self._child(node, k, claim) for (node, k), claim in zip(jobs, claims, strict=True))
        )
        for child in children:
            self.tree.attach(child)
        return children

    def should_stop(self, remaining: int) -> bool:
        """Adaptive early termination, asked by the algorithm between barriers."""
        if self.early_stop is None:
            return False
        self.early_stopped = self.early_stop.decide(self.algorithm.candidates(self), remaining).stop
        return self.early_stopped

    # -- internals -----------------------------------------------------------------------------

    def _speculation(self, budget: SpecBudget | None) -> Speculation | NoSpeculation:
        spex = self.settings.spex
        if not spex.speculate:
            return NoSpeculation()
        if budget is None:
            budget = StaticBudget(self.settings.spec_slots)
        return Speculation(self, self.algorithm.speculation(spex.lookahead), budget)

    async def _child(self, parent: Node, k: int, claim: SpecEntry | None) -> Node:
        """Child k of `parent`: the claimed speculative one if it came back, else generated now."""
        child = await self.speculation.promoted_child(claim) if claim is not None else None
        if child is None:
            child = await self.steps.step(parent, k)
        self.speculation.on_scored(child)
        return child

    def _outcome(self) -> SearchOutcome:
        candidates = self.algorithm.candidates(self)
        answer, weight = aggregate(candidates, self.settings.search.aggregate)
        trace = [*self.steps.trace, *self.speculation.trace_rows()]
        return SearchOutcome(answer, weight, candidates, self._stats(len(trace)), trace)

    def _stats(self, requests: int) -> SearchStats:
        spec = self.speculation.stats()
        return SearchStats(
            tokens_main=self.steps.tokens_main,
            tokens_spec=spec.tokens_spec,
            tokens_wasted=spec.tokens_wasted,
            requests=requests,
            spec_requests=spec.spec_requests,
            hit_rate=spec.hit_rate,
            nodes=len(self.tree) - 1,
            depth=self.tree.depth,
            leaves=len(self.tree.terminals()),
            early_stopped=self.early_stopped,
        )
