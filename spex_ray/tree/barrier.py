"""A reward barrier: the nodes a search expands at once, as speculation is told of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from spex_ray.tree.node import Node


@dataclass(eq=False)
class Barrier:
    """One barrier of the search: the nodes it expands, the ids of the children it
    requested, and the children scored so far, in the order they finished."""

    expanding: list[Node] = field(default_factory=list)
    requested: set[str] = field(default_factory=set)
    scored: list[Node] = field(default_factory=list)
