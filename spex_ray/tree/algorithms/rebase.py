"""REBASE (Wu et al., "Inference Scaling Laws", 2024): reward-balanced BFS, and its speculation.

Layer by layer, the remaining budget B (paths still to finish) is shared among the open
nodes of the layer in proportion to softmax(reward / T); a node given width w gets w
children. A child that reaches an answer (or a limit) finishes a path and uses one unit
of budget. The final answer is the reward-weighted majority vote over finished paths.

Speculation applies the same frontier rule to the part of the layer already scored, and
to the speculative children scored below it, `lookahead` layers ahead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from spex_ray.config import SearchConfig
from spex_ray.tree.algorithms.base import (
    SearchDriver,
    SpeculationView,
    TerminalVote,
    layered_proposals,
    scaled_width,
)
from spex_ray.tree.barrier import Barrier
from spex_ray.tree.node import Node

Frontier = list[tuple[Node, int]]  # (open node, its width > 0)


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


def next_frontier(layer: Sequence[Node], budget: int, temperature: float) -> tuple[int, Frontier]:
    """REBASE's rule: the budget left once `layer`'s terminals finished their paths, and the
    open nodes of `layer` with their widths (empty when nothing is left to expand)."""
    budget -= sum(1 for node in layer if node.terminal)
    open_nodes = [node for node in layer if not node.terminal]
    if budget <= 0 or not open_nodes:
        return budget, []
    widths = allocate_widths([n.reward for n in open_nodes], budget, temperature)
    return budget, [(node, w) for node, w in zip(open_nodes, widths, strict=True) if w > 0]


class Rebase(TerminalVote):
    """Reward-balanced search with a total budget of `search.width` finished paths."""

    def __init__(self, config: SearchConfig) -> None:
        self.width = config.width
        self.temperature = config.softmax_temperature
        self.budget = self.width  # paths still to finish, as of the current layer's start

    async def run(self, search: SearchDriver) -> None:
        self.budget = self.width
        frontier: Frontier = [(search.tree.root, self.budget)]
        while frontier:
            layer = await search.expand_many([(node, range(width)) for node, width in frontier])
            self.budget, frontier = self.select(layer, self.budget)
            if frontier and search.should_stop(self.budget):
                return

    def select(self, layer: Sequence[Node], budget: int) -> tuple[int, Frontier]:
        """The layer rule (REBASE's `next_frontier`); the one speculation predicts with too."""
        return next_frontier(layer, budget, self.temperature)

    def speculation(self, lookahead: int) -> RebaseSpeculation:
        return RebaseSpeculation(self, lookahead)


class RebaseSpeculation:
    """Predicts REBASE: its frontier rule on the scored part of the layer, `lookahead` deep,
    the likeliest (highest reward) nodes first."""

    def __init__(self, rebase: Rebase, lookahead: int) -> None:
        self.rebase = rebase
        self.lookahead = lookahead

    def propose(self, view: SpeculationView, scale: float) -> list[tuple[Node, int]]:
        def rule(level: list[Node], budget: int) -> tuple[int, list[tuple[Node, int]]]:
            budget, frontier = self.rebase.select(level, budget)
            likeliest = sorted(frontier, key=lambda pair: -pair[0].reward)
            return budget, [(node, scaled_width(width, scale)) for node, width in likeliest]

        return layered_proposals(view, self.lookahead, rule, self.rebase.budget)

    def may_expand_later(self, parent: Node, barrier: Barrier) -> bool:
        """Never: BFS expands every node of the tree at one barrier only."""
        return False
