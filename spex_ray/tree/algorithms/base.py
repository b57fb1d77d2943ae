"""The interfaces between a search algorithm, the QuerySearch that runs it and the
speculation that predicts it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from spex_ray.tree.barrier import Barrier
    from spex_ray.tree.node import Node
    from spex_ray.tree.tree import QueryTree

S = TypeVar("S")  # what a layered speculation rule carries from one level to the next


class SearchDriver(Protocol):
    """What an algorithm may call on the search that hosts it."""

    tree: QueryTree

    async def expand(self, node: Node, ks: Sequence[int]) -> list[Node]: ...

    async def expand_many(self, work: Sequence[tuple[Node, Sequence[int]]]) -> list[Node]: ...

    def should_stop(self, remaining: int) -> bool: ...


class SpeculationView(Protocol):
    """What a speculation policy sees: the tree, the current barrier, and the speculative
    children already scored (which a prediction may descend into)."""

    @property
    def tree(self) -> QueryTree: ...

    @property
    def barrier(self) -> Barrier: ...

    def scored_child(self, parent: Node, k: int) -> Node | None: ...


class SpeculationPolicy(Protocol):
    """An algorithm's prediction of the children its search will ask for next."""

    def propose(self, view: SpeculationView, scale: float) -> list[tuple[Node, int]]:
        """(parent, k) pairs, best first; `scale` in (0, 1] narrows the widths."""
        ...

    def may_expand_later(self, parent: Node, barrier: Barrier) -> bool:
        """Whether the search may still ask for children of the tree node `parent`, which
        `barrier` did not ask for; if not, its speculative children are dropped."""
        ...


class Algorithm(Protocol):
    """Builds the tree by expanding nodes; names the (answer, weight) candidates to vote on."""

    async def run(self, search: SearchDriver) -> None: ...

    def candidates(self, search: SearchDriver) -> list[tuple[str | None, float]]:
        """(answer, path reward) of each node of `answer_nodes`, in that order."""
        ...

    def answer_nodes(self, search: SearchDriver) -> list[Node]:
        """The terminal nodes whose answers are voted on (a node may repeat: one vote each)."""
        ...

    def speculation(self, lookahead: int) -> SpeculationPolicy:
        """The policy that predicts this algorithm, `lookahead` steps ahead."""
        ...


def scaled_width(width: int, scale: float) -> int:
    """A speculative width narrowed by `scale`, never to 0 unless it was 0."""
    return math.ceil(width * scale) if width > 0 else 0


def id_key(node: Node) -> tuple[int, ...]:
    """A node's place in the tree (its id as numbers): the order ties are broken in, the same
    whatever order the nodes were scored in (so speculation predicts the search's choice)."""
    return tuple(int(part) for part in node.id.split("."))


def ranked(nodes: Iterable[Node]) -> list[Node]:
    """`nodes` by path reward, best first; ties to the node earlier in the tree."""
    return sorted(nodes, key=lambda node: (-node.path_reward, id_key(node)))


def layered_proposals(
    view: SpeculationView,
    lookahead: int,
    rule: Callable[[list[Node], S], tuple[S, list[tuple[Node, int]]]],
    state: S,
) -> list[tuple[Node, int]]:
    """Layer-by-layer speculation: `rule(level, state)` picks (node, width) pairs from a level
    and carries its state to the next, first on the scored part of the barrier, then on the
    scored speculative children of what it picked, `lookahead` levels deep; children k < width
    of every pick, in the rule's order."""
    wanted: list[tuple[Node, int]] = []
    level = list(view.barrier.scored)
    for _ in range(lookahead):
        state, picks = rule(level, state)
        level = []
        for node, width in picks:
            for k in range(width):
                wanted.append((node, k))
                child = view.scored_child(node, k)
                if child is not None:
                    level.append(child)
    return wanted


class TerminalVote:
    """The answers of an algorithm that votes on every terminal of its tree (one that votes on
    others overrides `answer_nodes`): each node's answer with its path reward."""

    def candidates(self, search: SearchDriver) -> list[tuple[str | None, float]]:
        return [(node.answer, node.path_reward) for node in self.answer_nodes(search)]

    def answer_nodes(self, search: SearchDriver) -> list[Node]:
        """Every terminal of the tree."""
        return search.tree.terminals()
