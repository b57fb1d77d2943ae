"""Search algorithms: each decides which nodes to expand and which answers to vote on.

An algorithm drives a QuerySearch through `await search.expand(node, ks)` (generate and
score children k of node) and the tree it builds. The search owns the engine, rewards,
seeds and accounting, so speculation works beneath `expand` without the algorithm knowing;
what speculation should expand is predicted by the algorithm's own policy
(`algorithm.speculation(lookahead)`), defined next to it with the same rules.
"""

from spex_ray.registry import Registry
from spex_ray.tree.algorithms.base import Algorithm

ALGORITHMS = Registry("search algorithm")
ALGORITHMS.register("rebase", "spex_ray.tree.algorithms.rebase:Rebase")
ALGORITHMS.register("mcts", "spex_ray.tree.algorithms.mcts:MCTS")

__all__ = ["ALGORITHMS", "Algorithm"]
