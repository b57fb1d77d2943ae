"""MCTS in the rStar / REST-MCTS* style: depth-first rollouts guided by UCT, and its speculation.

Each rollout descends from the root by UCT (an unvisited child first, the one with the
highest step reward), expands a node without children into `expand_width` children,
and keeps descending until a terminal node; the terminal's path reward is backed up
along the path. A fixed number of rollouts; the final answer is the vote over the
terminals the rollouts reached.

Speculation predicts the current rollout's descent (the best child scored so far, then
its best scored speculative child, `lookahead` deep, then the runners-up) and the next
`lookahead` selections, by the same UCT descent with virtual visits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from spex_ray.config import SearchConfig
from spex_ray.tree.algorithms.base import SearchDriver, SpeculationView, TerminalVote, scaled_width
from spex_ray.tree.barrier import Barrier
from spex_ray.tree.node import Node

NO_VIRTUAL: Mapping[str, int] = {}


def uct_score(child: Node, parent_visits: int, exploration: float, virtual: int = 0) -> float:
    """Q + c * sqrt(ln N_parent / N); infinite for an unvisited child.

    `virtual` visits (a prediction's) add to the count N but keep Q, the mean value of the
    real visits (the step reward before the first).
    """
    visits = child.visits + virtual
    if visits == 0:
        return math.inf
    explore = exploration * math.sqrt(math.log(max(parent_visits, 1)) / visits)
    return child.value + explore


def select_child(node: Node, exploration: float, virtual: Mapping[str, int] = NO_VIRTUAL) -> Node:
    """The UCT choice among `node`'s children; unvisited ones by reward, ties to the lowest k."""

    def visits(n: Node) -> int:
        return n.visits + virtual.get(n.id, 0)

    unvisited = [child for child in node.children if visits(child) == 0]
    if unvisited:
        return max(unvisited, key=lambda child: child.reward)
    return max(
        node.children,
        key=lambda child: uct_score(child, visits(node), exploration, virtual.get(child.id, 0)),
    )


def descend(node: Node, exploration: float, virtual: Mapping[str, int] = NO_VIRTUAL) -> Node:
    """Select by UCT from `node` down to a terminal node or one without children yet."""
    while node.children and not node.terminal:
        node = select_child(node, exploration, virtual)
    return node


def backup(leaf: Node, value: float) -> None:
    """Add one visit and `value` to every node from `leaf` up to the root."""
    node: Node | None = leaf
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent


class MCTS(TerminalVote):
    """`rollouts` UCT rollouts, each expanding `expand_width` children per new node."""

    def __init__(self, config: SearchConfig) -> None:
        self.rollouts = config.rollouts
        self.expand_width = config.expand_width
        self.exploration = config.exploration
        self.finals: list[Node] = []

    async def run(self, search: SearchDriver) -> None:
        for done in range(1, self.rollouts + 1):
            leaf = await self.rollout(search)
            backup(leaf, leaf.path_reward)
            self.finals.append(leaf)
            if done < self.rollouts and search.should_stop(self.rollouts - done):
                return

    async def rollout(self, search: SearchDriver) -> Node:
        node = descend(search.tree.root, self.exploration)
        while not node.terminal:
            await search.expand(node, range(self.expand_width))
            node = descend(node, self.exploration)
        return node

    def answer_nodes(self, search: SearchDriver) -> list[Node]:
        """Each rollout's leaf, in rollout order."""
        return list(self.finals)

    def speculation(self, lookahead: int) -> MCTSSpeculation:
        return MCTSSpeculation(self.expand_width, self.exploration, lookahead)


class MCTSSpeculation:
    """Predicts MCTS: the current rollout's descent, then that of the next selections,
    predicted by UCT on the tree with virtual visits (each prediction adds one)."""

    def __init__(self, expand_width: int, exploration: float, lookahead: int) -> None:
        self.expand_width = expand_width
        self.exploration = exploration
        self.lookahead = lookahead

    def propose(self, view: SpeculationView, scale: float) -> list[tuple[Node, int]]:
        width = scaled_width(self.expand_width, scale)
        chains = [self._descent(view, [n for n in view.barrier.scored if not n.terminal])]
        chains += [self._descent(view, [node]) for node in self._next_selections(view)]
        return [(node, k) for chain in chains for node in chain for k in range(width)]

    def may_expand_later(self, parent: Node, barrier: Barrier) -> bool:
        """A leaf of the tree that this barrier does not expand may be selected later."""
        return not parent.children and parent not in barrier.expanding

    def _descent(self, view: SpeculationView, scored: list[Node]) -> list[Node]:
        """The rollout the search is predicted to take from `scored` (the first candidates):
        the best-rewarded one, then the best of its scored speculative children, and so on,
        `lookahead` nodes deep (a rollout descends to an unvisited child by reward)."""
        chain: list[Node] = []
        runners_up: list[Node] = []  # the siblings not taken: the prediction if the best is beaten
        while scored and len(chain) < self.lookahead:
            ranked = sorted(scored, key=lambda n: -n.reward)
            chain.append(ranked[0])
            runners_up += ranked[1:]
            children = (view.scored_child(ranked[0], k) for k in range(self.expand_width))
            scored = [c for c in children if c is not None and not c.terminal]
        return chain + runners_up

    def _next_selections(self, view: SpeculationView) -> list[Node]:
        """The leaves the next `lookahead` rollouts are predicted to expand."""
        expanding = view.barrier.expanding
        virtual: dict[str, int] = {}
        for node in expanding:
            _visit(virtual, node)
        picks: list[Node] = []
        for _ in range(self.lookahead):
            node = descend(view.tree.root, self.exploration, virtual)
            _visit(virtual, node)
            if not node.terminal and node not in expanding and node not in picks:
                picks.append(node)
        return picks


def _visit(virtual: dict[str, int], node: Node) -> None:
    """One virtual visit to `node` and every node above it."""
    current: Node | None = node
    while current is not None:
        virtual[current.id] = virtual.get(current.id, 0) + 1
        current = current.parent
