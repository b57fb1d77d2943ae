"""QuerySearch: the event loop of one query's tree search.

The algorithm (REBASE, MCTS, ...) decides what to expand; the step generator (expand.py)
turns each child (node n, index k) into its seeded engine request, scores it and traces
it. With SPEX on, speculation (speculate.py) fills the waits at each reward barrier with
the children the algorithm's own policy predicts, and early termination (terminate.py)
may end the search before its budget is spent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from spex_ray.io import SearchStats, TraceRow
from spex_ray.rewards.base import Reward
from spex_ray.tasks import answer_key
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

__all__ = ["EngineClient", "QuerySearch", "SearchOutcome", "chosen_path", "is_final_answer"]

_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_MAX_ANSWER_WORDS = 3  # an answer with more plain words than this is a sentence fragment


@dataclass
class SearchOutcome:
    """What one query's search produced: the voted answer, the candidates, the stats and
    the request trace (primary requests first, then speculative ones).

    `candidates` are the (answer, path reward) pairs voted on: only real answers (no None,
    no sentence fragment). `path` and `step_rewards` are the steps and step rewards of the
    chosen path: the terminal with the highest path reward among those whose answer is in
    the winning class (the first such terminal on a tie); empty when nothing answered.
    `answer_node` is the id of that terminal.
    A search that `timed_out` reports what its tree held at the deadline.
    """

    answer: str | None
    answer_weight: float
    candidates: list[tuple[str, float]]
    stats: SearchStats
    trace: list[TraceRow]
    path: list[str] = field(default_factory=list)
    step_rewards: list[float] = field(default_factory=list)
    answer_node: str | None = None
    timed_out: bool = False  # the deadline (run.query_timeout_s) ended the search


def is_final_answer(answer: str | None) -> bool:
    """Whether an extracted answer is one (a number, an expression, a short name), not None,
    empty or a sentence fragment ("the number of apples Tom has")."""
    if answer is None or not answer.strip():
        return False
    prose = re.sub(r"\\[A-Za-z]+", " ", answer)  # LaTeX commands are not words
    return len(_WORD_RE.findall(prose)) <= _MAX_ANSWER_WORDS


def chosen_path(nodes: Sequence[Node], answer: str | None) -> Node | None:
    """The best-weighted terminal among `nodes` whose answer is in `answer`'s class."""
    if answer is None:
        return None
    key = answer_key(answer)
    matching = [node for node in nodes if node.answer is not None and answer_key(node.answer) == key]
    return max(matching, key=lambda node: node.path_reward, default=None)


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
        self.timed_out = False

    async def run(self) -> SearchOutcome:
        try:
            await self._search()
        finally:
            await self.speculation.finish()
        return self._outcome()

    async def _search(self) -> None:
        """The algorithm's search, ended at the query's deadline (settings.query_timeout_s,
        seconds on the loop's clock): the nodes attached by then are the outcome, and every
        request still in the engine is aborted."""
        if not self.settings.query_timeout_s:
            await self.algorithm.run(self)
            return
        deadline = asyncio.timeout(self.settings.query_timeout_s)
        try:
            async with deadline:
                await self.algorithm.run(self)
        except TimeoutError:
            if not deadline.expired():
                raise
            self.timed_out = True
            await self.steps.abort_in_flight()

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
        nodes = [n for n in self.algorithm.answer_nodes(self) if is_final_answer(n.answer)]
        candidates = [(node.answer, node.path_reward) for node in nodes]
        answer, weight = aggregate(candidates, self.settings.search.aggregate)
        trace = [*self.steps.trace, *self.speculation.trace_rows()]
        outcome = SearchOutcome(answer, weight, candidates, self._stats(len(trace)), trace)
        outcome.timed_out = self.timed_out
        chosen = chosen_path(nodes, answer)
        if chosen is not None:
            outcome.path = chosen.steps()
            outcome.step_rewards = [node.reward for node in chosen.path()]
            outcome.answer_node = chosen.id
        return outcome

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
