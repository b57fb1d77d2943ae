"""REBASE (Wu et al., "Inference Scaling Laws", 2024): reward-balanced BFS.

Layer by layer, the remaining budget B (paths still to finish) is shared among the open
nodes of the layer in proportion to softmax(reward / T); a node given width w gets w
children. A child that reaches an answer (or a limit) finishes a path and uses one unit
of budget. The final answer is the reward-weighted majority vote over finished paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from spex_ray.tree.algorithms.base import SearchDriver
from spex_ray.tree.node import Node


def allocate_widths(rewards: Sequence[float], budget: int, temperature: float) -> list[int]:
    """Split `budget` into integer widths by softmax(rewards / temperature).

    Floors of the exact shares first, then the remainder by largest fractional part (ties
    to the earlier node), so the widths always sum to `budget`.
    """
    if budget <= 0 or not rewards:
        return [0] * len(rewards)
    top = max(rewards)
    weights = [math.exp((r - top) / temperature) for r in rewards]
    total = sum(weights)
    shares = [budget * w / total for w in weights]
    widths = [math.floor(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - widths[i]), i))
    for i in by_remainder[: budget - sum(widths)]:
        widths[i] += 1
    return widths


class Rebase:
    """Reward-balanced search with a total budget of `search.width` finished paths."""

    def __init__(self, config) -> None:
        self.width = config.width
        self.temperature = config.softmax_temperature
        self.budget = self.width  # paths still to finish, as of the current layer's start

    async def run(self, search: SearchDriver) -> None:
        self.budget = self.width
        frontier: list[tuple[Node, int]] = [(search.tree.root, self.budget)]
        while frontier:
            layer = await search.expand_many([(node, range(width)) for node, width in frontier])
            self.budget -= sum(1 for child in layer if child.terminal)
            open_nodes = [child for child in layer if not child.terminal]
            if self.budget <= 0 or not open_nodes or search.should_stop(self.budget):
                return
            widths = allocate_widths([n.reward for n in open_nodes], self.budget, self.temperature)
            frontier = [(node, w) for node, w in zip(open_nodes, widths, strict=True) if w > 0]

    def candidates(self, search: SearchDriver) -> list[tuple[str | None, float]]:
        return [(node.answer, node.path_reward) for node in search.tree.terminals()]
