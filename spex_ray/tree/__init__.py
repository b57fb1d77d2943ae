"""Per-query tree search: the tree, the algorithms, seeds, the vote and the event loop.

No Ray in here: a QuerySearch talks to its engine and reward through small async
interfaces, so tests drive it in-process.
"""

from spex_ray.tree.node import Node
from spex_ray.tree.seeds import child_seed
from spex_ray.tree.tree import QueryTree
from spex_ray.tree.vote import aggregate

__all__ = ["Node", "QueryTree", "aggregate", "child_seed"]
