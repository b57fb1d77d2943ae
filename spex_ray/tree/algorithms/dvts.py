"""DVTS, diverse verifier tree search (as in HF search-and-learn), and its speculation.

N = search.width, M = search.expand_width: N / M independent subtrees, each a beam search
of width M in search-and-learn's sense (M candidates per step, the best one kept). The root
gets N children, M per subtree (children k*M .. k*M+M-1 start subtree k). At every step
each subtree keeps the best of its latest M children by path reward; if that child ended
its path, it is the subtree's solution and the subtree stops, else it gets M children.
All open subtrees step together, at one reward barrier. The final answer is
search.aggregate over the subtrees' solutions (pooled; early termination counts the open
subtrees as the width still to be spent).

Speculation works per subtree: the best child of a subtree scored so far is either the one
it will keep or is beaten by a child not scored yet, so its M children are the subtree's
likeliest next requests; then the best of their scored speculative children, and so on,
`lookahead` steps deep. A subtree whose best scored child ended its path is predicted done.
"""

from __future__ import annotations

from collections.abc import Sequence

from spex_ray.config import SearchConfig
from spex_ray.tree.algorithms.base import SearchDriver, SpeculationView, TerminalVote, ranked, scaled_width
from spex_ray.tree.barrier import Barrier
from spex_ray.tree.node import Node


def split_subtrees(root_children: Sequence[Node], width: int) -> list[list[Node]]:
    """The root's children, `width` per subtree: children k*width .. k*width+width-1 of the
    root start subtree k."""
    subtrees: dict[int, list[Node]] = {}
    for node in root_children:
        subtrees.setdefault(int(node.id.rpartition(".")[2]) // width, []).append(node)
    return [subtrees[k] for k in sorted(subtrees)]


def subtree_pick(candidates: Sequence[Node]) -> Node:
    """The child a subtree keeps: the best by path reward, whether or not it ended its path."""
    return ranked(candidates)[0]


class DVTS(TerminalVote):
    """`search.width / search.expand_width` greedy subtrees, `search.expand_width` candidates each per step."""

    def __init__(self, config: SearchConfig) -> None:
        self.expand_width = config.expand_width
        self.subtrees = config.width // config.expand_width
        self.solutions: list[Node] = []  # each finished subtree's solution, in the order they finished

    async def run(self, search: SearchDriver) -> None:
        self.solutions = []
        root = search.tree.root
        groups = split_subtrees(
            await search.expand(root, range(self.subtrees * self.expand_width)), self.expand_width
        )
        while True:
            picks = [subtree_pick(group) for group in groups]
            self.solutions += [pick for pick in picks if pick.terminal]
            growing = [pick for pick in picks if not pick.terminal]
            if not growing or search.should_stop(len(growing)):
                return
            layer = await search.expand_many([(pick, range(self.expand_width)) for pick in growing])
            groups = [list(layer[i : i + self.expand_width]) for i in range(0, len(layer), self.expand_width)]

    def answer_nodes(self, search: SearchDriver) -> list[Node]:
        """Each finished subtree's solution."""
        return list(self.solutions)

    def speculation(self, lookahead: int) -> DVTSSpeculation:
        return DVTSSpeculation(self.expand_width, lookahead)


class DVTSSpeculation:
    """Predicts DVTS subtree by subtree: the best scored child's children, `lookahead` deep."""

    def __init__(self, expand_width: int, lookahead: int) -> None:
        self.expand_width = expand_width
        self.lookahead = lookahead

    def propose(self, view: SpeculationView, scale: float) -> list[tuple[Node, int]]:
        """Level by level over the subtrees (the best-scored subtree first at each level)."""
        width = scaled_width(self.expand_width, scale)
        wanted: list[tuple[Node, int]] = []
        groups = self._scored_groups(view)
        for _ in range(self.lookahead):
            picks = ranked(subtree_pick(group) for group in groups if group)
            groups = []
            for pick in picks:
                if pick.terminal:
                    continue
                wanted += [(pick, k) for k in range(width)]
                groups.append(
                    [c for c in (view.scored_child(pick, k) for k in range(width)) if c is not None]
                )
        return wanted

    def may_expand_later(self, parent: Node, barrier: Barrier) -> bool:
        """Never: a subtree expands its pick at the next step or stops."""
        return False

    def _scored_groups(self, view: SpeculationView) -> list[list[Node]]:
        """The scored children of the current barrier, grouped by subtree (by parent, or at
        the root by child index)."""
        scored = view.barrier.scored
        if view.barrier.expanding == [view.tree.root]:
            return split_subtrees(scored, self.expand_width)
        groups: dict[str, list[Node]] = {}
        for node in scored:
            groups.setdefault(node.parent.id if node.parent else "", []).append(node)
        return list(groups.values())
