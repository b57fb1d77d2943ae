"""Intra-query speculative path selection (SPEX technique 1).

While a query waits at its reward barrier, speculation expands the children the search
is predicted to ask for next, at priority SPEC and within the query's granted slots.
Child k of node n carries the same seed whether issued speculatively or for real, so
when the real search asks for (n, k) the speculative child is promoted as is: never
recomputed, never different (speculation is lossless). What the real search drops is
aborted in the engine and its slot released.

Which children to speculate is the algorithm's business: a `SpeculationPolicy` per
search family proposes (parent, k) pairs in order of preference:
  * BFS (REBASE): the algorithm's own width rule over the part of the frontier already
    scored, up to `lookahead` layers ahead;
  * DFS (MCTS): the predicted descent of the current rollout (the best child scored so
    far, then its best scored speculative child, `lookahead` deep, then the runners-up)
    and of the next `lookahead` selections, predicted by replaying UCT with virtual visits.
A usefulness EMA (fraction of speculative children the real search kept) narrows the
speculative width when speculation is mostly wasted and slots are contended.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from spex_ray.engines.base import FinishReason, GenRequest, GenResult
from spex_ray.tree.algorithms.rebase import allocate_widths
from spex_ray.tree.budget import SpecBudget
from spex_ray.tree.node import Node

if TYPE_CHECKING:
    from spex_ray.tree.search import QuerySearch

PENDING, DONE, PROMOTED, ABORTED = "pending", "done", "promoted", "aborted"
MIN_GATE = 0.25  # speculative width never shrinks below a quarter: the EMA must be able to recover


@dataclass(eq=False)
class SpecEntry:
    """One speculative child (parent, k) and its fate."""

    parent: Node
    k: int
    request: GenRequest
    state: str = PENDING
    promoted_pending: bool = False  # claimed by the real search before it finished
    result: GenResult | None = None
    node: Node | None = None  # the detached child, once scored
    task: asyncio.Task | None = field(default=None, repr=False)

    @property
    def child_id(self) -> str:
        return self.parent.child_id(self.k)


class SpeculationPolicy(Protocol):
    """Proposes speculative children, best first, and drops the ones a barrier made useless."""

    def propose(self, search: QuerySearch, scale: float) -> list[tuple[Node, int]]: ...

    def barrier(self, speculation: Speculation, requested: set[str]) -> None: ...


class Speculation:
    """The speculative children of one query: issue, promote, abort, account."""

    def __init__(
        self,
        search: QuerySearch,
        policy: SpeculationPolicy,
        budget: SpecBudget,
        score_child: Callable[[Node, int, GenResult], Awaitable[Node]],
        ema_decay: float = 0.8,
    ) -> None:
        self.search = search
        self.policy = policy
        self.budget = budget
        self._score_child = score_child
        self.ema_decay = ema_decay
        self.usefulness = 1.0
        self.live: dict[str, SpecEntry] = {}  # child id -> entry not yet promoted or dropped
        self.history: list[SpecEntry] = []
        self._aborts: list[asyncio.Task] = []
        self.max_in_flight = 0
        self.closed = False
        if hasattr(budget, "on_grant"):  # a lease: use new slots the moment they arrive
            budget.on_grant = lambda _slots: self.fill()

    # -- the real search's side -----------------------------------------------------------

    def claim(self, parent: Node, k: int) -> SpecEntry | None:
        """The speculative child (parent, k), promoted to primary, or None."""
        entry = self.live.get(parent.child_id(k))
        if entry is None:
            return None
        del self.live[entry.child_id]
        entry.promoted_pending = entry.state == PENDING
        entry.state = PROMOTED
        self._learn(True)
        return entry

    async def promoted_child(self, entry: SpecEntry) -> Node | None:
        """Wait for a claimed entry; None if its request failed (then the caller reissues)."""
        if entry.task is not None:
            await asyncio.shield(entry.task)
        return entry.node

    def barrier(self, requested: set[str]) -> None:
        """The real search asked for `requested`: let the policy drop what became useless."""
        self.policy.barrier(self, requested)

    def drop_unrequested(self, requested: set[str], only_expanded: bool) -> None:
        """At a barrier: abort live children of real nodes that the search did not ask for.

        BFS expands every real node at one barrier only, so anything left under a real
        node is dead; DFS may still expand a real leaf later (`only_expanded`).
        """
        for entry in list(self.live.values()):
            parent = entry.parent
            if self.search.tree.nodes.get(parent.id) is not parent or entry.child_id in requested:
                continue
            if not only_expanded or parent.children or parent in self.search.expanding:
                self._drop(entry)

    def fill(self) -> None:
        """Issue proposed children while the query holds free speculative slots.

        The usefulness gate narrows the proposals only when they outnumber the free slots:
        speculation that fits in capacity nobody else wants costs nothing, so it is never
        held back; under contention the narrower, likelier proposals go first.
        """
        if self.closed:
            return
        free = self.budget.granted() - self.in_flight
        wanted = self._new(self.policy.propose(self.search, 1.0))
        fresh = set(self.search.layer_done)
        hot = sum(1 for parent, _ in wanted if self._is_hot(parent, fresh)) / len(wanted) if wanted else 0.0
        proposals = wanted
        if len(wanted) > free and self.gate < 1.0:
            proposals = self._new(self.policy.propose(self.search, self.gate))
        for parent, k in proposals[: max(0, free)]:
            self._issue(parent, k)
        # the demand is the ungated want: the allocator weighs it by the hit rate itself
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

    # -- accounting ------------------------------------------------------------------------

    @property
    def gate(self) -> float:
        return max(MIN_GATE, self.usefulness)

    @property
    def in_flight(self) -> int:
        return sum(1 for e in self.live.values() if e.state == PENDING)

    def stats(self) -> dict[str, float]:
        tokens = [e.result.completion_tokens if e.result else 0 for e in self.history]
        used = [t for t, e in zip(tokens, self.history, strict=True) if e.state == PROMOTED]
        resolved = [e for e in self.history if e.state in (PROMOTED, ABORTED, DONE)]
        promoted = sum(1 for e in self.history if e.state == PROMOTED)
        return {
            "spec_requests": len(self.history),
            "spec_promoted": promoted,
            "tokens_spec": sum(tokens),
            "tokens_wasted": sum(tokens) - sum(used),
            "hit_rate": promoted / len(resolved) if resolved else 0.0,
        }

    def trace_rows(self) -> list[dict]:
        outcome = {PROMOTED: "promoted", DONE: "wasted", ABORTED: "aborted", PENDING: "aborted"}
        return [
            self.search.trace_row(e.request, e.result, e.child_id, outcome[e.state], e.node)
            for e in self.history
            if e.result is not None
        ]

    # -- internals ---------------------------------------------------------------------------

    def _is_hot(self, parent: Node, fresh: set[Node]) -> bool:
        """Whether the parent's KV is fresh in the engine's prefix cache (S_kv): it was just
        generated, at this barrier (`fresh`) or speculatively, so its children skip that prefill."""
        return parent in fresh or self.search.tree.nodes.get(parent.id) is not parent

    def _new(self, proposals: list[tuple[Node, int]]) -> list[tuple[Node, int]]:
        """The proposals not already live or requested for real."""
        return [(p, k) for p, k in proposals if p.child_id(k) not in self.live and not self._known_real(p, k)]

    def _known_real(self, parent: Node, k: int) -> bool:
        return parent.child_id(k) in self.search.tree.nodes or parent.child_id(k) in self.search.in_flight

    def _issue(self, parent: Node, k: int) -> None:
        entry = SpecEntry(parent, k, self.search.request(parent, k, speculative=True))
        self.live[entry.child_id] = entry
        self.history.append(entry)
        entry.task = asyncio.get_running_loop().create_task(self._run(entry))
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def _run(self, entry: SpecEntry) -> None:
        result = await self.search.engine.generate(entry.request)
        entry.result = result
        if result.finish_reason in (FinishReason.ABORT, FinishReason.ERROR):
            if entry.state != PROMOTED:
                entry.state = ABORTED
            self.live.pop(entry.child_id, None)
            return
        entry.node = await self._score_child(entry.parent, entry.k, result)
        if entry.state == PENDING:
            entry.state = DONE
        self.fill()  # lookahead: a scored speculative child may be worth expanding too

    def _drop(self, entry: SpecEntry) -> None:
        self.live.pop(entry.child_id, None)
        if entry.state == PENDING:
            self._aborts.append(
                asyncio.get_running_loop().create_task(self.search.engine.abort(entry.request.request_id))
            )
        if entry.state in (PENDING, DONE):
            entry.state = ABORTED if entry.state == PENDING else DONE
            self._learn(False)
        for other in list(self.live.values()):  # its speculative children; recursion takes the rest
            if other.parent.id == entry.child_id:
                self._drop(other)

    def _learn(self, useful: bool) -> None:
        self.usefulness = self.ema_decay * self.usefulness + (1 - self.ema_decay) * float(useful)


def scaled(width: int, scale: float) -> int:
    return math.ceil(width * scale) if width > 0 else 0


class RebasePolicy:
    """BFS: REBASE's own width rule on the part of the layer already scored, `lookahead` deep."""

    def __init__(self, algorithm, lookahead: int) -> None:
        self.algorithm = algorithm
        self.lookahead = lookahead

    def propose(self, search: QuerySearch, scale: float) -> list[tuple[Node, int]]:
        wanted: list[tuple[Node, int]] = []
        level, budget = list(search.layer_done), self.algorithm.budget
        for _ in range(self.lookahead):
            budget -= sum(1 for node in level if node.terminal)
            open_nodes = [node for node in level if not node.terminal]
            if budget <= 0 or not open_nodes:
                break
            widths = allocate_widths([n.reward for n in open_nodes], budget, self.algorithm.temperature)
            ranked = sorted(zip(open_nodes, widths, strict=True), key=lambda pair: -pair[0].reward)
            level = []
            for node, width in ranked:
                for k in range(scaled(width, scale)):
                    wanted.append((node, k))
                    level += _scored_child(search, node, k)
        return wanted

    def barrier(self, speculation: Speculation, requested: set[str]) -> None:
        speculation.drop_unrequested(requested, only_expanded=False)


class MCTSPolicy:
    """DFS: the current rollout's predicted descent, then that of the next selections,
    predicted by replaying UCT on the tree with virtual visits (each prediction adds one)."""

    def __init__(self, algorithm, lookahead: int) -> None:
        self.algorithm = algorithm
        self.lookahead = lookahead

    def propose(self, search: QuerySearch, scale: float) -> list[tuple[Node, int]]:
        width = scaled(self.algorithm.expand_width, scale)
        chains = [self._descent(search, [n for n in search.layer_done if not n.terminal])]
        chains += [self._descent(search, [node]) for node in self._next_selections(search)]
        return [(node, k) for chain in chains for node in chain for k in range(width)]

    def barrier(self, speculation: Speculation, requested: set[str]) -> None:
        speculation.drop_unrequested(requested, only_expanded=True)

    def _descent(self, search: QuerySearch, scored: list[Node]) -> list[Node]:
        """The rollout the search is predicted to take from `scored` (the first candidates):
        the best-rewarded one, then the best of its scored speculative children, and so on,
        `lookahead` nodes deep (a rollout descends to an unvisited child by reward)."""
        chain: list[Node] = []
        runners_up: list[Node] = []  # the siblings not taken: the prediction if the best is beaten
        while scored and len(chain) < self.lookahead:
            ranked = sorted(scored, key=lambda n: -n.reward)
            chain.append(ranked[0])
            runners_up += ranked[1:]
            k_range = range(self.algorithm.expand_width)
            scored = [c for k in k_range for c in _scored_child(search, ranked[0], k) if not c.terminal]
        return chain + runners_up

    def _next_selections(self, search: QuerySearch) -> list[Node]:
        virtual: dict[str, int] = {}
        for node in search.expanding:
            _visit(virtual, node)
        picks: list[Node] = []
        for _ in range(self.lookahead):
            node = search.tree.root
            while node.children and not node.terminal:
                node = _select_virtual(node, virtual, self.algorithm.exploration)
            _visit(virtual, node)
            if not node.terminal and node not in search.expanding and node not in picks:
                picks.append(node)
        return picks


def policy_for(algorithm, spex) -> SpeculationPolicy:
    """The speculation policy of an algorithm family."""
    from spex_ray.tree.algorithms.mcts import MCTS
    from spex_ray.tree.algorithms.rebase import Rebase

    if isinstance(algorithm, Rebase):
        return RebasePolicy(algorithm, spex.lookahead)
    if isinstance(algorithm, MCTS):
        return MCTSPolicy(algorithm, spex.lookahead)
    raise ValueError(f"no speculation policy for {type(algorithm).__name__}")


def _scored_child(search: QuerySearch, node: Node, k: int) -> list[Node]:
    """The speculative child (node, k) if it has been scored, as a one-element list."""
    entry = search.speculation.live.get(node.child_id(k)) if search.speculation else None
    return [entry.node] if entry is not None and entry.node is not None else []


def _visit(virtual: dict[str, int], node: Node) -> None:
    current: Node | None = node
    while current is not None:
        virtual[current.id] = virtual.get(current.id, 0) + 1
        current = current.parent


def _select_virtual(node: Node, virtual: dict[str, int], exploration: float) -> Node:
    """UCT with virtual visits that keep a node's mean value (they only add count)."""

    def visits(n: Node) -> int:
        return n.visits + virtual.get(n.id, 0)

    unvisited = [c for c in node.children if visits(c) == 0]
    if unvisited:
        return max(unvisited, key=lambda c: c.reward)
    parent_visits = max(visits(node), 1)
    return max(
        node.children,
        key=lambda c: c.value + exploration * math.sqrt(math.log(parent_visits) / visits(c)),
    )
