"""Search algorithms: each decides which nodes to expand and which answers to vote on.

An algorithm drives a QuerySearch through `await search.expand(node, ks)` (generate and
score children k of node) and the tree it builds. The search owns the engine, rewards,
seeds and accounting, so speculation works beneath `expand` without the algorithm knowing;
what speculation should expand is predicted by the algorithm's own policy
(`algorithm.speculation(lookahead)`), defined next to it with the same rules.
"""

from spex_ray.registries import ALGORITHMS  # registered there, so the config reads names without this package
from spex_ray.tree.algorithms.base import Algorithm

__all__ = ["ALGORITHMS", "Algorithm"]
