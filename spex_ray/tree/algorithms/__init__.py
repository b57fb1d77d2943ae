"""Search algorithms: each decides which nodes to expand and which answers to vote on.

An algorithm drives a QuerySearch through two calls: `await search.expand(node, ks)`
(generate and score children k of node) and the tree it builds. The search owns the
engine, rewards, seeds and accounting, so speculation can be added beneath `expand`
without an algorithm knowing.
"""

from spex_ray.registries import ALGORITHMS  # registered there, so the config reads names without this package
from spex_ray.tree.algorithms.base import Algorithm

__all__ = ["ALGORITHMS", "Algorithm"]
