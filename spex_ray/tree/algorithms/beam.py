"""Step-level beam search (as in HF search-and-learn and Snell et al., 2024), and its speculation.

N = beam_width * expand_width. The root gets N children; at every step the open children
of the step are ranked by path reward (reward.path_score over the step rewards) and the
top `beam_width` survive (the beam cut); each survivor gets `expand_width` children, so
every step generates up to N children. A child that ends a path (an answer, the model's
end, a depth or token limit) is a finished solution and leaves the beam. The search stops
when no open partial solution is left or when N solutions have finished (search-and-learn's
stop); the final answer is search.aggregate over the finished solutions.

Speculation predicts the cut from the part of the step already scored: a node that will
survive is either among the top `beam_width` of the scored part or not scored yet, so the
children of the scored part's top `beam_width` (best first) are the likeliest next
requests; then the same cut on their scored speculative children, `lookahead` steps deep.
"""

from __future__ import annotations

from collections.abc import Sequence

from spex_ray.config import SearchConfig
from spex_ray.tree.algorithms.base import (
    SearchDriver,
    SpeculationView,
    TerminalVote,
    layered_proposals,
    ranked,
    scaled_width,
)
from spex_ray.tree.barrier import Barrier
from spex_ray.tree.node import Node


def beam_cut(layer: Sequence[Node], beam_width: int) -> list[Node]:
    """The open nodes of `layer` that survive the cut: the top `beam_width` by path reward,
    best first (ties to the node earlier in the tree)."""
    return [node for node in ranked(layer) if not node.terminal][:beam_width]


def next_beam(layer: Sequence[Node], finished: int, beam_width: int, target: int) -> tuple[int, list[Node]]:
    """The beam rule: the solutions finished once `layer`'s terminals are counted, and the
    survivors to expand (none when `target` solutions have finished or nothing is open)."""
    finished += sum(1 for node in layer if node.terminal)
    if finished >= target:
        return finished, []
    return finished, beam_cut(layer, beam_width)


class BeamSearch(TerminalVote):
    """Keeps `search.beam_width` partial solutions, each expanded with `search.expand_width`
    children per step, until beam_width * expand_width solutions finish."""

    def __init__(self, config: SearchConfig) -> None:
        self.beam_width = config.beam_width
        self.expand_width = config.expand_width
        self.target = self.beam_width * self.expand_width
        self.finished = 0  # solutions finished, as of the current step's start

    async def run(self, search: SearchDriver) -> None:
        self.finished = 0
        layer = await search.expand(search.tree.root, range(self.target))
        while True:
            self.finished, survivors = next_beam(layer, self.finished, self.beam_width, self.target)
            if not survivors or search.should_stop(self.target - self.finished):
                return
            layer = await search.expand_many([(node, range(self.expand_width)) for node in survivors])

    def speculation(self, lookahead: int) -> BeamSpeculation:
        return BeamSpeculation(self, lookahead)


class BeamSpeculation:
    """Predicts the beam: the cut on the scored part of the step, `lookahead` steps deep,
    the best-scored survivors first."""

    def __init__(self, beam: BeamSearch, lookahead: int) -> None:
        self.beam = beam
        self.lookahead = lookahead

    def propose(self, view: SpeculationView, scale: float) -> list[tuple[Node, int]]:
        beam = self.beam
        width = scaled_width(beam.expand_width, scale)

        def rule(level: list[Node], finished: int) -> tuple[int, list[tuple[Node, int]]]:
            finished, survivors = next_beam(level, finished, beam.beam_width, beam.target)
            return finished, [(node, width) for node in survivors]

        return layered_proposals(view, self.lookahead, rule, beam.finished)

    def may_expand_later(self, parent: Node, barrier: Barrier) -> bool:
        """Never: a node is expanded at the step after its own or not at all."""
        return False
