"""The interface between a search algorithm and the QuerySearch that runs it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from spex_ray.tree.node import Node
    from spex_ray.tree.tree import QueryTree


class SearchDriver(Protocol):
    """What an algorithm may call on the search that hosts it."""

    tree: QueryTree

    async def expand(self, node: Node, ks: Sequence[int]) -> list[Node]: ...

    async def expand_many(self, work: Sequence[tuple[Node, Sequence[int]]]) -> list[Node]: ...

    def should_stop(self, remaining: int) -> bool: ...


class Algorithm(Protocol):
    """Builds the tree by expanding nodes; names the (answer, weight) candidates to vote on."""

    async def run(self, search: SearchDriver) -> None: ...

    def candidates(self, search: SearchDriver) -> list[tuple[str | None, float]]: ...
