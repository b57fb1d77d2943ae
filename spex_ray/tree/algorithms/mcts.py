"""MCTS in the rStar / REST-MCTS* style: depth-first rollouts guided by UCT.

Each rollout descends from the root by UCT (an unvisited child first, the one with the
highest step reward), expands a node without children into `expand_width` children,
and keeps descending until a terminal node; the terminal's path reward is backed up
along the path. A fixed number of rollouts; the final answer is the vote over the
terminals the rollouts reached.
"""

from __future__ import annotations

import math

from spex_ray.tree.algorithms.base import SearchDriver
from spex_ray.tree.node import Node


def uct_score(child: Node, parent_visits: int, exploration: float) -> float:
    """Q/N + c * sqrt(ln N_parent / N); infinite for an unvisited child."""
    if child.visits == 0:
        return math.inf
    explore = exploration * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)
    return child.value_sum / child.visits + explore


def select_child(node: Node, exploration: float) -> Node:
    """The UCT choice among `node`'s children; unvisited ones by reward, ties to the lowest k."""
    unvisited = [child for child in node.children if child.visits == 0]
    if unvisited:
        return max(unvisited, key=lambda child: child.reward)
    return max(node.children, key=lambda child: uct_score(child, node.visits, exploration))


def backup(leaf: Node, value: float) -> None:
    """Add one visit and `value` to every node from `leaf` up to the root."""
    node: Node | None = leaf
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent


class MCTS:
    """`rollouts` UCT rollouts, each expanding `expand_width` children per new node."""

    def __init__(self, config) -> None:
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
        node = search.tree.root
        while not node.terminal:
            if not node.children:
                await search.expand(node, range(self.expand_width))
            node = select_child(node, self.exploration)
        return node

    def candidates(self, search: SearchDriver) -> list[tuple[str | None, float]]:
        return [(node.answer, node.path_reward) for node in self.finals]
