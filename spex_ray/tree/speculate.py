"""The lifecycle of speculative children (SPEX technique 1): issue, claim, promote, abort,
cascade, account.

While a query waits at its reward barrier, speculation requests the children its
algorithm predicts the search will ask for next (the algorithm's SpeculationPolicy, which
lives next to the algorithm), at priority SPEC and within the query's granted slots. A
speculative child is the very request the search would issue (tree/expand.py), so when
the search asks for (n, k) the speculative child is promoted as is: never recomputed,
never different (speculation is lossless). What the search will not ask for is aborted
in the engine, with the speculative children below it, and its slot released.

A usefulness EMA (the fraction of speculative children the search kept) narrows the
speculative width when speculation is mostly wasted and slots are contended; the
allocator weighs the query's demand by it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from spex_ray.engines.base import FinishReason, GenRequest, GenResult
from spex_ray.io import TraceRow
from spex_ray.tree.algorithms.base import SpeculationPolicy
from spex_ray.tree.barrier import Barrier
from spex_ray.tree.budget import SpecBudget
from spex_ray.tree.expand import StepGenerator
from spex_ray.tree.node import Node
from spex_ray.tree.tree import QueryTree

MIN_GATE = 0.25  # speculative width never shrinks below a quarter: the EMA must be able to recover


class SpecState(StrEnum):
    PENDING = "pending"  # requested, not finished
    DONE = "done"  # finished and scored, not claimed (yet)
    PROMOTED = "promoted"  # claimed by the search
    ABORTED = "aborted"  # dropped before it finished, or its request failed


TRACE_OUTCOMES = {
    SpecState.PROMOTED: "promoted",
    SpecState.DONE: "wasted",
    SpecState.ABORTED: "aborted",
    SpecState.PENDING: "aborted",
}


@dataclass(eq=False)
class SpecEntry:
    """One speculative child (parent, k) and its fate."""

    parent: Node
    k: int
    request: GenRequest
    state: SpecState = SpecState.PENDING
    result: GenResult | None = None
    node: Node | None = None  # the detached child, once scored
    task: asyncio.Task | None = field(default=None, repr=False)

    @property
    def child_id(self) -> str:
        return self.parent.child_id(self.k)


@dataclass(frozen=True)
class SpeculationStats:
    """What speculation cost and how much of it the search kept."""

    spec_requests: int = 0
    tokens_spec: int = 0
    tokens_wasted: int = 0
    hit_rate: float = 0.0  # promoted / resolved (promoted, wasted or aborted)


class SpeculationHost(Protocol):
    """What speculation sees of the search it serves: the tree and the step generator."""

    @property
    def tree(self) -> QueryTree: ...

    @property
    def steps(self) -> StepGenerator: ...


class Speculation:
    """The speculative children of one query: issue, promote, abort, account."""

    def __init__(
        self, host: SpeculationHost, policy: SpeculationPolicy, budget: SpecBudget, ema_decay: float = 0.8
    ) -> None:
        self._host = host
        self.policy = policy
        self.budget = budget
        self.ema_decay = ema_decay
        self.usefulness = 1.0
        self.barrier = Barrier()  # the search's current (or last) barrier
        self.live: dict[str, SpecEntry] = {}  # child id -> entry not yet promoted or dropped
        self.history: list[SpecEntry] = []
        self._aborts: list[asyncio.Task] = []
        self._pending = 0  # entries in state PENDING (all of them live): read at every fill
        self.max_in_flight = 0
        self.closed = False
        budget.on_grant = lambda _slots: self.fill()  # use new slots the moment they arrive

    @property
    def tree(self) -> QueryTree:
        return self._host.tree

    # -- the search's side -------------------------------------------------------------------

    def claim(self, parent: Node, k: int) -> SpecEntry | None:
        """The speculative child (parent, k), promoted to primary, or None."""
        entry = self.live.pop(parent.child_id(k), None)
        if entry is not None:
            self._set_state(entry, SpecState.PROMOTED)
            self._learn(True)
        return entry

    async def promoted_child(self, entry: SpecEntry) -> Node | None:
        """Wait for a claimed entry; None if its request failed (then the caller reissues)."""
        if entry.task is not None:
            await asyncio.shield(entry.task)
        return entry.node

    def on_barrier(self, barrier: Barrier) -> None:
        """The search expands `barrier` (after claiming what it could): drop the live children
        of tree nodes it did not ask for, unless the policy says it may still ask."""
        self.barrier = barrier
        for entry in list(self.live.values()):
            parent = entry.parent
            if not self._in_tree(parent) or entry.child_id in barrier.requested:
                continue
            if not self.policy.may_expand_later(parent, barrier):
                self._drop(entry)

    def on_scored(self, child: Node) -> None:
        """A child of the current barrier is scored: it may be worth speculating below."""
        self.barrier.scored.append(child)
        self.fill()

    def fill(self) -> None:
        """Issue proposed children while the query holds free speculative slots.

        The usefulness gate narrows the proposals only when they outnumber the free slots:
        speculation that fits in capacity nobody else wants costs nothing, so it is never
        held back; under contention the narrower, likelier proposals go first.
        """
        if self.closed:
            return
        free = self.budget.granted() - self.in_flight
        wanted = self._new(self.policy.propose(self, 1.0))
        fresh = set(self.barrier.scored)
        hot = sum(1 for parent, _ in wanted if self._is_hot(parent, fresh)) / len(wanted) if wanted else 0.0
        proposals = wanted
        if len(wanted) > free and self.gate < 1.0:
            proposals = self._new(self.policy.propose(self, self.gate))
        for parent, k in proposals[: max(0, free)]:
            self._issue(parent, k)
        # the demand is the ungated want: the allocator weighs it by the usefulness itself
        self.budget.report(len(wanted) + self.in_flight, self.usefulness, hot)

    async def finish(self) -> None:
        """The search is over: abort everything still live and wait for the aborts."""
        self.closed = True
        for entry in list(self.live.values()):
            self._drop(entry)
        if self._aborts:
            await asyncio.gather(*self._aborts, return_exceptions=True)
        tasks = [e.task for e in self.history if e.task is not None and not e.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.budget.close()

    # -- the policy's side (a SpeculationView) -----------------------------------------------

    def scored_child(self, parent: Node, k: int) -> Node | None:
        """The live speculative child (parent, k), if it has been scored."""
        entry = self.live.get(parent.child_id(k))
        return entry.node if entry is not None else None

    # -- accounting --------------------------------------------------------------------------

    @property
    def gate(self) -> float:
        return max(MIN_GATE, self.usefulness)

    @property
    def in_flight(self) -> int:
        return self._pending

    def stats(self) -> SpeculationStats:
        tokens = [e.result.completion_tokens if e.result else 0 for e in self.history]
        used = [t for t, e in zip(tokens, self.history, strict=True) if e.state == SpecState.PROMOTED]
        resolved = [e for e in self.history if e.state != SpecState.PENDING]
        return SpeculationStats(
            spec_requests=len(self.history),
            tokens_spec=sum(tokens),
            tokens_wasted=sum(tokens) - sum(used),
            hit_rate=len(used) / len(resolved) if resolved else 0.0,
        )

    def trace_rows(self) -> list[TraceRow]:
        """The speculative requests that came back, in the order they were issued."""
        row = self._host.steps.row
        return [
            row(e.request, e.result, e.child_id, TRACE_OUTCOMES[e.state], e.node)
            for e in self.history
            if e.result is not None
        ]

    # -- internals ---------------------------------------------------------------------------

    def _in_tree(self, node: Node) -> bool:
        return self.tree.nodes.get(node.id) is node

    def _is_hot(self, parent: Node, fresh: set[Node]) -> bool:
        """Whether the parent's KV is fresh in the engine's prefix cache (S_kv): it was just
        generated, at this barrier (`fresh`) or speculatively, so its children skip that prefill."""
        return parent in fresh or not self._in_tree(parent)

    def _new(self, proposals: list[tuple[Node, int]]) -> list[tuple[Node, int]]:
        """The proposals not already live or requested for real."""
        return [(p, k) for p, k in proposals if p.child_id(k) not in self.live and not self._known_real(p, k)]

    def _known_real(self, parent: Node, k: int) -> bool:
        child_id = parent.child_id(k)
        return child_id in self.tree.nodes or child_id in self.barrier.requested

    def _issue(self, parent: Node, k: int) -> None:
        entry = SpecEntry(parent, k, self._host.steps.request(parent, k, "spec"))
        self.live[entry.child_id] = entry
        self.history.append(entry)
        self._pending += 1
        entry.task = asyncio.get_running_loop().create_task(self._run(entry))
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def _run(self, entry: SpecEntry) -> None:
        steps = self._host.steps
        result = await steps.generate(entry.request)
        entry.result = result
        if result.finish_reason in (FinishReason.ABORT, FinishReason.ERROR):
            if entry.state != SpecState.PROMOTED:
                self._set_state(entry, SpecState.ABORTED)
            self.live.pop(entry.child_id, None)
            return
        entry.node = await steps.score(entry.parent, entry.k, result)
        if entry.state == SpecState.PENDING:
            self._set_state(entry, SpecState.DONE)
        self.fill()  # lookahead: a scored speculative child may be worth expanding too

    def _drop(self, entry: SpecEntry) -> None:
        """Abort or discard `entry`, then its speculative children (recursion takes the rest)."""
        self.live.pop(entry.child_id, None)
        if entry.state == SpecState.PENDING:
            self._set_state(entry, SpecState.ABORTED)
            abort = self._host.steps.abort(entry.request.request_id)
            self._aborts.append(asyncio.get_running_loop().create_task(abort))
            self._learn(False)
        elif entry.state == SpecState.DONE:
            self._learn(False)
        for other in list(self.live.values()):
            if other.parent.id == entry.child_id:
                self._drop(other)

    def _set_state(self, entry: SpecEntry, state: SpecState) -> None:
        self._pending -= (entry.state == SpecState.PENDING) - (state == SpecState.PENDING)
        entry.state = state

    def _learn(self, useful: bool) -> None:
        self.usefulness = self.ema_decay * self.usefulness + (1 - self.ema_decay) * float(useful)


class NoSpeculation:
    """Speculation off: nothing is claimed, issued or accounted."""

    def claim(self, parent: Node, k: int) -> SpecEntry | None:
        return None

    async def promoted_child(self, entry: SpecEntry) -> Node | None:
        return None

    def on_barrier(self, barrier: Barrier) -> None:
        return None

    def on_scored(self, child: Node) -> None:
        return None

    async def finish(self) -> None:
        return None

    def stats(self) -> SpeculationStats:
        return SpeculationStats()

    def trace_rows(self) -> list[TraceRow]:
        return []
