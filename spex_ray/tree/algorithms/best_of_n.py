"""Best-of-N with a verifier, generated stepwise, and its speculation.

N = search.width independent solutions: the root gets N children, and every solution then
grows one step at a time (child 0 of its last step) until it ends (an answer, the model's
end, a depth or token limit). The solutions never interact, but they are generated
stepwise so that every step is scored by the reward (step rewards, a path reward per
reward.path_score) and early termination can stop the search between steps, with the
unfinished solutions as the width still to be spent. The final answer is search.aggregate
over the N solutions: weighted_vote (weighted majority vote by path reward), best (the
PRM-best solution) or majority (plain majority).

Generating stepwise puts a reward barrier between steps that independent sampling does
not have: every solution waits for the slowest one at each step. Speculation removes it:
the next step of a solution whose step is scored is certain to be asked for (unless early
termination ends the search), so it is issued at once, and below it the next, `lookahead`
steps ahead of the barrier. Each solution then runs ahead on its own, as N independent
samples would, and (early termination off) every speculative step is promoted.
"""

from __future__ import annotations

from spex_ray.config import SearchConfig
from spex_ray.tree.algorithms.base import SearchDriver, SpeculationView, TerminalVote, layered_proposals
from spex_ray.tree.barrier import Barrier
from spex_ray.tree.node import Node


def open_heads(heads: list[Node]) -> list[Node]:
    """The solutions still growing: the last steps that did not end their path."""
    return [node for node in heads if not node.terminal]


class BestOfN(TerminalVote):
    """`search.width` independent solutions, one step of each per barrier."""

    def __init__(self, config: SearchConfig) -> None:
        self.n = config.width

    async def run(self, search: SearchDriver) -> None:
        heads = open_heads(await search.expand(search.tree.root, range(self.n)))
        while heads and not search.should_stop(len(heads)):
            heads = open_heads(await search.expand_many([(node, range(1)) for node in heads]))

    def speculation(self, lookahead: int) -> BestOfNSpeculation:
        return BestOfNSpeculation(lookahead)


class BestOfNSpeculation:
    """Predicts best-of-N: the next `lookahead` steps of every solution whose step is scored."""

    def __init__(self, lookahead: int) -> None:
        self.lookahead = lookahead

    def propose(self, view: SpeculationView, scale: float) -> list[tuple[Node, int]]:
        """Level by level: the next step of each scored solution, then the one after (a
        solution has one child, so `scale` cannot narrow it)."""

        def rule(level: list[Node], state: None) -> tuple[None, list[tuple[Node, int]]]:
            return state, [(node, 1) for node in open_heads(level)]

        return layered_proposals(view, self.lookahead, rule, None)

    def may_expand_later(self, parent: Node, barrier: Barrier) -> bool:
        """Never: an open solution grows at every barrier."""
        return False
