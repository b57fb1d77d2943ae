"""ETS (Hooper et al., "ETS: Efficient Tree Search for Inference-Time Scaling", arXiv
2502.13575): REBASE's layer with a selection that trades KV sharing against diversity.

Each layer, before REBASE shares the remaining budget out, a small integer program picks
which open nodes of the layer to retain:

    maximize   sum_i O_i x_i  -  lambda_c / (M + N) * (sum_j y_j + sum_i x_i)  +  lambda_s / K * sum_k z_k
    subject to y_j >= x_i       for every ancestor j of open node i   (a kept path keeps its KV)
               y_j <= sum x_i   over the open nodes below j
               z_k <= sum x_i   over the open nodes of step cluster k  (cluster k is covered)
               sum_i x_i >= 1,  x, y, z binary

x_i: open node i (of N) is retained; y_j: ancestor j (of M, the root included) stays in the
KV cache; z_k: step cluster k (of K) is covered. O_i is node i's share of the budget under
REBASE's own allocation (tree/algorithms/rebase.py `allocate_widths`), so the first term is
REBASE's preference; the second is the KV cost, one unit per retained node (the uniform
node cost 1 / (M + N) of the authors' code); the third rewards semantic diversity. REBASE's
softmax then splits the whole remaining budget among the retained nodes only. It is solved
exactly with scipy.optimize.milp (HiGHS). A tie-break of 1e-6 per retained node keeps a
node the objective is indifferent to, so with both weights 0 ETS is REBASE.

The weights: lambda_c = 1.0 (search.ets_cost_weight) and lambda_s = 1.5
(search.ets_coverage_weight) are the authors' released settings for width 16 on MATH500
with Llemma-7B policy and reward (1.4 at width 64, 1.45 at width 256, lambda_c 1.0
throughout). Clusters are average-linkage hierarchical clusters of the steps, cut at cosine
distance 0.05 (search.ets_cluster_distance), as in the authors' code. Their step embedding
is a math-similarity BERT; here it is the step's word counts (no embedding model to load),
so only lexically near-identical steps share a cluster. As in their code, the coverage term
is dropped when the layer has one open node or one distinct step text.

Speculation is REBASE's (RebaseSpeculation) with this selection: the program on the scored
part of the layer, `lookahead` layers deep. Each selection is cached by its node ids.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import Bounds, LinearConstraint, milp

from spex_ray.config import SearchConfig
from spex_ray.tree.algorithms.base import id_key
from spex_ray.tree.algorithms.rebase import Frontier, Rebase, allocate_widths
from spex_ray.tree.node import Node

TIE_BREAK = 1e-6  # per retained node: keep what the objective is indifferent to
CACHE_SIZE = 512  # program answers kept per query (speculation asks for the same ones again)
_WORD_RE = re.compile(r"\w+")


@dataclass(frozen=True)
class ETSWeights:
    """lambda_c (KV cost), lambda_s (coverage) and the clustering distance of the program."""

    cost: float = 1.0
    coverage: float = 1.5
    cluster_distance: float = 0.05


def step_clusters(steps: Sequence[str], distance: float) -> list[int]:
    """Cluster labels 0..K-1 of `steps` (in order of first appearance): average-linkage
    clusters of their word-count vectors, merged while the cosine distance is at most `distance`."""
    if len(steps) < 2:
        return [0] * len(steps)
    vectors = [_word_vector(step) for step in steps]
    condensed = [_cosine_distance(a, b) for a, b in itertools.combinations(vectors, 2)]
    labels = fcluster(linkage(np.array(condensed), method="average"), distance, criterion="distance")
    order: dict[int, int] = {}
    return [order.setdefault(int(label), len(order)) for label in labels]


def retained(open_nodes: Sequence[Node], budget: int, temperature: float, weights: ETSWeights) -> list[bool]:
    """The ETS program (module docstring) over `open_nodes`: which of them to retain.

    It is solved in an equivalent smaller form: the ancestors above the same open nodes
    share one variable (a chain is kept or dropped whole), one above a single open node is
    folded into that node's cost, and one above all of them is a constant (one is kept).
    """
    n = len(open_nodes)
    if n == 1:
        return [True]  # at least one is kept
    shares = np.array(allocate_widths([node.reward for node in open_nodes], budget, temperature)) / budget
    ancestors = _ancestors(open_nodes)
    node_cost = weights.cost / (len(ancestors) + n)
    own_cost = np.full(n, node_cost)  # each open node's own KV, and that of the ancestors only it needs
    shared: dict[frozenset[int], int] = {}  # open nodes below -> how many ancestors are above exactly them
    for below in ancestors.values():
        if len(below) == 1:
            own_cost[below[0]] += node_cost
        elif len(below) < n:
            shared[frozenset(below)] = shared.get(frozenset(below), 0) + 1
    clusters = _clusters(open_nodes, weights)
    k = max(clusters, default=-1) + 1
    branches = list(shared.items())
    m = len(branches)
    # variables: x (n open nodes retained), y (m shared ancestor groups kept), z (k clusters covered)
    objective = np.concatenate(
        [
            -(shares - own_cost + TIE_BREAK),
            [count * node_cost for _, count in branches],
            np.full(k, -weights.coverage / max(k, 1)),
        ]
    )
    rows = sum(len(below) for below, _ in branches) + m + k + 1
    matrix, lower, upper = np.zeros((rows, n + m + k)), np.full(rows, -np.inf), np.zeros(rows)
    row = 0
    for j, (below, _) in enumerate(branches):
        for i in below:  # y_j >= x_i
            matrix[row, [n + j, i]] = 1.0, -1.0
            lower[row], upper[row] = 0.0, np.inf
            row += 1
        matrix[row, n + j], matrix[row, list(below)] = 1.0, -1.0  # y_j <= sum x_i
        row += 1
    for cluster in range(k):  # z_k <= sum x_i over the cluster
        matrix[row, n + m + cluster] = 1.0
        matrix[row, [i for i, label in enumerate(clusters) if label == cluster]] = -1.0
        row += 1
    matrix[row, :n], lower[row], upper[row] = 1.0, 1.0, np.inf  # keep at least one
    result = milp(
        objective,
        constraints=LinearConstraint(matrix, lower, upper),
        integrality=np.ones(n + m + k),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 0.0},
    )
    if not result.success:
        raise RuntimeError(f"the ETS selection program failed: {result.message}")
    return [bool(value > 0.5) for value in result.x[:n]]


def ets_frontier(
    layer: Sequence[Node],
    budget: int,
    temperature: float,
    weights: ETSWeights,
    cache: OrderedDict[tuple, list[bool]] | None = None,
) -> tuple[int, Frontier]:
    """REBASE's rule (`next_frontier`) over the open nodes the ETS program retains: the budget
    left once `layer`'s terminals finished their paths, and the retained nodes with widths.
    `cache` keeps the program's answers by (budget, open node ids)."""
    budget -= sum(1 for node in layer if node.terminal)
    open_nodes = sorted((node for node in layer if not node.terminal), key=id_key)  # one program per set
    if budget <= 0 or not open_nodes:
        return budget, []
    key = (budget, tuple(node.id for node in open_nodes))
    keep = cache.get(key) if cache is not None else None
    if keep is None:
        keep = retained(open_nodes, budget, temperature, weights)
        if cache is not None:
            cache[key] = keep
            if len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
    kept = [node for node, kept in zip(open_nodes, keep, strict=True) if kept]
    widths = allocate_widths([node.reward for node in kept], budget, temperature)
    return budget, [(node, w) for node, w in zip(kept, widths, strict=True) if w > 0]


class ETS(Rebase):
    """REBASE with the ETS selection at every layer (and so in its speculation)."""

    def __init__(self, config: SearchConfig) -> None:
        super().__init__(config)
        self.weights = ETSWeights(
            config.ets_cost_weight, config.ets_coverage_weight, config.ets_cluster_distance
        )
        self._programs: OrderedDict[tuple, list[bool]] = OrderedDict()  # by id: speculation repeats them

    def select(self, layer: Sequence[Node], budget: int) -> tuple[int, Frontier]:
        return ets_frontier(layer, budget, self.temperature, self.weights, self._programs)


def _ancestors(open_nodes: Sequence[Node]) -> dict[str, list[int]]:
    """Every ancestor of the open nodes (the root included), with the open nodes below it."""
    below: dict[str, list[int]] = {}
    for i, node in enumerate(open_nodes):
        parent = node.parent
        while parent is not None:
            below.setdefault(parent.id, []).append(i)
            parent = parent.parent
    return below


@lru_cache(maxsize=4096)
def _word_vector(step: str) -> tuple[dict[str, int], float]:
    """A step's word counts and their Euclidean norm (a step without words is one empty word)."""
    counts = Counter(_WORD_RE.findall(step.lower()) or [""])
    return counts, math.sqrt(sum(c * c for c in counts.values()))


def _cosine_distance(a: tuple[dict[str, int], float], b: tuple[dict[str, int], float]) -> float:
    (counts_a, norm_a), (counts_b, norm_b) = a, b
    dot = sum(count * counts_b.get(word, 0) for word, count in counts_a.items())
    return max(0.0, 1.0 - dot / (norm_a * norm_b))


def _clusters(open_nodes: Sequence[Node], weights: ETSWeights) -> list[int]:
    """Each open node's step cluster; none (no coverage term) when the term cannot matter."""
    steps = [node.step for node in open_nodes]
    if weights.coverage <= 0 or len(steps) < 2 or len(set(steps)) < 2:
        return []
    return step_clusters(steps, weights.cluster_distance)
