"""The step-level searches (beam, best-of-N, DVTS) and ETS: their selection rules on
hand-made trees, their speculation policies on hand-made barriers, and whole searches on
the FakeEngine (a seeded stand-in for an LLM, tree logic only)."""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field

import pytest
from fake_engine import FakeEngine

from spex_ray.config import Config, ConfigError
from spex_ray.rewards.confidence import ConfidenceReward
from spex_ray.tree.algorithms.beam import BeamSearch, beam_cut, next_beam
from spex_ray.tree.algorithms.best_of_n import BestOfN
from spex_ray.tree.algorithms.dvts import DVTS, split_subtrees, subtree_pick
from spex_ray.tree.algorithms.ets import ETSWeights, ets_frontier, retained, step_clusters
from spex_ray.tree.algorithms.rebase import allocate_widths, next_frontier
from spex_ray.tree.barrier import Barrier
from spex_ray.tree.node import Node
from spex_ray.tree.search import QuerySearch
from spex_ray.tree.settings import SearchSettings
from spex_ray.tree.tree import QueryTree
from spex_ray.tree.vote import aggregate


def grow(tree: QueryTree, parent: Node, rewards: list[float], **fields) -> list[Node]:
    """Children of `parent` with these rewards (path reward = reward), k in order."""
    return [tree.add_child(parent, k, reward=r, path_reward=r, **fields) for k, r in enumerate(rewards)]


def run_search(seed: int = 1, **search) -> QuerySearch:
    config = Config()
    for key, value in search.items():
        setattr(config.search, key, value)
    config.validate()
    query = QuerySearch(
        "q",
        "problem",
        "PROMPT\n",
        SearchSettings.from_config(config),
        FakeEngine(answer_rate=0.3),
        ConfidenceReward(config.reward),
        seed,
    )
    query.outcome = asyncio.run(query.run())
    return query


@dataclass
class HandDriver:
    """The search as an algorithm's answers see it: just the tree."""

    tree: QueryTree


@dataclass
class HandView:
    """A SpeculationView over a hand-made tree: the barrier and the scored speculative children."""

    tree: QueryTree
    barrier: Barrier
    speculative: dict[str, Node] = field(default_factory=dict)

    def scored_child(self, parent: Node, k: int) -> Node | None:
        return self.speculative.get(parent.child_id(k))


def detached(parent: Node, k: int, reward: float, terminal: bool = False) -> Node:
    """A scored speculative child (not in the tree)."""
    return Node(
        parent.child_id(k),
        parent,
        depth=parent.depth + 1,
        reward=reward,
        path_reward=reward,
        terminal=terminal,
    )


# --- beam search ---------------------------------------------------------------------------


def test_beam_cut_keeps_the_best_open_nodes_ties_to_the_earlier():
    tree = QueryTree()
    a, b, c, d, e = grow(tree, tree.root, [0.5, 0.9, 0.7, 0.95, 0.7])
    d.terminal = True  # finished: never in the beam, however good
    assert beam_cut([a, b, c, d, e], 2) == [b, c]
    assert beam_cut([e, c, b], 2) == [b, c]  # the order scored in does not matter
    assert beam_cut([a, b, c, d, e], 10) == [b, c, e, a]
    assert next_beam([a, b, c, d, e], 0, 2, target=4) == (1, [b, c])
    assert next_beam([a, b, c, d, e], 3, 2, target=4) == (4, [])  # N solutions finished: stop


def test_beam_search_keeps_beam_width_and_expands_each_with_expand_width():
    query = run_search(algorithm="beam", beam_width=3, expand_width=2, max_depth=5)
    tree, algorithm = query.tree, query.algorithm
    assert len(tree.root.children) == 6
    for depth in range(1, tree.depth):
        expanded = [n for n in tree.layer(depth) if n.children]
        assert len(expanded) <= 3 and all(len(n.children) == 2 for n in expanded)
        open_nodes = [n for n in tree.layer(depth) if not n.terminal]
        assert set(expanded) <= set(beam_cut(open_nodes, 3))
    assert algorithm.finished == len(tree.terminals())
    assert algorithm.finished >= 6 or not beam_cut(tree.layer(tree.depth), 3)  # N finished, or none open
    assert query.outcome.candidates == [(n.answer, n.path_reward) for n in tree.terminals() if n.answer]


def test_beam_speculation_expands_the_likeliest_survivors_first():
    tree = QueryTree()
    beam = BeamSearch(Config.load(None, ["search.beam_width=2", "search.expand_width=2"]).search)
    a, b, c, t = grow(tree, tree.root, [0.5, 0.9, 0.7, 0.99])
    t.terminal = True
    view = HandView(tree, Barrier([tree.root], scored=[a, b, t, c]))
    policy = beam.speculation(lookahead=2)
    assert policy.propose(view, 1.0) == [(b, 0), (b, 1), (c, 0), (c, 1)]
    view.speculative = {
        "0.1.0": detached(b, 0, 0.3),
        "0.1.1": detached(b, 1, 0.8),
        "0.2.0": detached(c, 0, 0.6),
    }
    deeper = policy.propose(view, 1.0)[4:]
    assert [(p.id, k) for p, k in deeper] == [("0.1.1", 0), ("0.1.1", 1), ("0.2.0", 0), ("0.2.0", 1)]
    assert policy.propose(view, 0.5)[:2] == [(b, 0), (c, 0)]  # narrowed widths, same order
    assert not policy.may_expand_later(a, view.barrier)


# --- best-of-N -----------------------------------------------------------------------------


def test_best_of_n_votes_weighted_majority_or_prm_best():
    tree = QueryTree()
    finals = [("1", 0.3), ("1", 0.3), ("1", 0.3), ("2", 0.95), ("3", 0.5), ("3", 0.5)]
    for k, (answer, reward) in enumerate(finals):  # N solutions of two steps each
        first = tree.add_child(tree.root, k, reward=0.5, path_reward=0.5)
        grow(tree, first, [reward], terminal=True, answer=answer)
    candidates = BestOfN(Config().search).candidates(HandDriver(tree))
    assert sorted(candidates) == sorted(finals)
    assert aggregate(candidates, "weighted_vote")[0] == "3"  # 1.0 beats 0.95 and 0.9
    assert aggregate(candidates, "majority")[0] == "1"  # three votes
    assert aggregate(candidates, "best") == ("2", 0.95)  # the PRM-best solution


def test_best_of_n_grows_n_independent_solutions_one_step_at_a_time():
    query = run_search(algorithm="best_of_n", width=5, max_depth=4)
    tree = query.tree
    assert len(tree.root.children) == 5 and len(tree.terminals()) == 5
    assert all(len(n.children) <= 1 for n in tree if not n.is_root)
    requests = [row.node for row in query.outcome.trace]
    assert all(r.endswith(".0") for r in requests if r.count(".") > 1)  # one child per step


def test_best_of_n_speculation_runs_every_scored_solution_ahead():
    tree = QueryTree()
    a, b, c = grow(tree, tree.root, [0.2, 0.9, 0.5])
    c.terminal = True
    policy = BestOfN(Config().search).speculation(lookahead=2)
    view = HandView(tree, Barrier([tree.root], scored=[b, a, c]), {"0.1.0": detached(b, 0, 0.4)})
    proposals = policy.propose(view, 0.25)
    assert [(p.id, k) for p, k in proposals] == [("0.1", 0), ("0.0", 0), ("0.1.0", 0)]


# --- DVTS ----------------------------------------------------------------------------------


def test_dvts_splits_the_root_children_into_subtrees_and_picks_greedily():
    tree = QueryTree()
    children = grow(tree, tree.root, [0.1, 0.8, 0.3, 0.6, 0.6, 0.2])
    subtrees = split_subtrees(children[::-1], 3)  # any order: grouped by child index
    assert subtrees == [children[2::-1], children[:2:-1]]
    assert subtree_pick(children[:3]) is children[1]
    assert subtree_pick(children[3:]) is children[3]  # a tie goes to the earlier node
    children[5].terminal, children[5].reward, children[5].path_reward = True, 0.9, 0.9
    assert subtree_pick(children[3:]) is children[5]  # a finished best child ends the subtree


def test_dvts_runs_width_over_expand_width_greedy_subtrees():
    query = run_search(algorithm="dvts", width=6, expand_width=3, max_depth=5)
    tree, solutions = query.tree, query.algorithm.answer_nodes(query)
    assert len(tree.root.children) == 6
    assert len(solutions) == 2 and all(node.terminal for node in solutions)
    assert {node.path()[0].id for node in solutions} <= {c.id for c in tree.root.children}
    assert sorted(int(node.path()[0].id.split(".")[1]) // 3 for node in solutions) == [0, 1]
    subtrees = split_subtrees(tree.root.children, 3)
    for node in tree:
        if node.children and not node.is_root:  # a kept node: the best of its group of 3
            group = next(g for g in subtrees if node in g) if node.depth == 1 else node.parent.children
            assert len(node.children) == 3 and node is subtree_pick(group)
    with pytest.raises(ConfigError, match="search.width: dvts needs a multiple of search.expand_width"):
        Config.load(None, ["search.algorithm=dvts", "search.width=7", "search.expand_width=3"])


def test_dvts_speculation_follows_each_subtree_pick():
    tree = QueryTree()
    children = grow(tree, tree.root, [0.1, 0.8, 0.3, 0.6, 0.9, 0.2])
    children[4].terminal = True  # subtree 1's best so far finished: predicted done
    policy = DVTS(Config.load(None, ["search.width=6", "search.expand_width=3"]).search).speculation(2)
    view = HandView(tree, Barrier([tree.root], scored=children[:5]))
    assert [(p.id, k) for p, k in policy.propose(view, 1.0)] == [("0.1", 0), ("0.1", 1), ("0.1", 2)]
    view.speculative = {"0.1.0": detached(children[1], 0, 0.4), "0.1.2": detached(children[1], 2, 0.7)}
    assert [(p.id, k) for p, k in policy.propose(view, 1.0)][3:] == [("0.1.2", 0), ("0.1.2", 1), ("0.1.2", 2)]
    later = grow(tree, children[1], [0.2, 0.7])  # a later barrier: grouped by parent
    view = HandView(tree, Barrier([children[1]], scored=later))
    assert [(p.id, k) for p, k in policy.propose(view, 1.0)][:1] == [("0.1.1", 0)]


# --- ETS -----------------------------------------------------------------------------------


def ets_layer() -> tuple[QueryTree, list[Node]]:
    """Two siblings a1, a2 under p1 and b1 alone under p2; rewards 0.9, 0.8, 0.85."""
    tree = QueryTree()
    p1, p2 = grow(tree, tree.root, [0.5, 0.5])
    a1, a2 = grow(tree, p1, [0.9, 0.8])
    (b1,) = grow(tree, p2, [0.85])
    return tree, [a1, a2, b1]


def test_ets_program_keeps_the_siblings_that_share_their_kv():
    # budget 3, T 0.2: REBASE shares 1/3 each. With lambda_c 1.5 a node costs 1.5 / (3 + 3)
    # = 0.25: {a1, a2} = 2/3 - 4 * 0.25 = -1/3 beats {a1} or {b1} (-5/12), all three (-1/2)
    # and {a1, b1} (-7/12): b1 is dropped although it outscores a2.
    _, (a1, a2, b1) = ets_layer()
    assert allocate_widths([0.9, 0.8, 0.85], 3, 0.2) == [1, 1, 1]
    no_coverage = ETSWeights(cost=1.5, coverage=0.0)
    assert retained([a1, a2, b1], 3, 0.2, no_coverage) == [True, True, False]
    assert ets_frontier([a1, a2, b1], 3, 0.2, no_coverage) == (3, [(a1, 2), (a2, 1)])


def test_ets_coverage_keeps_a_distinct_step():
    # a1 and a2 say the same, b1 something else: two clusters, lambda_s 1 gives 0.5 each;
    # all three = -1/2 + 1 beats {a1, b1} = -7/12 + 1 and {a1, a2} = -1/3 + 1/2.
    _, (a1, a2, b1) = ets_layer()
    a1.step = a2.step = "so x equals 4"
    b1.step = "the area is 12"
    assert step_clusters([a1.step, a2.step, b1.step], 0.05) == [0, 0, 1]
    assert retained([a1, a2, b1], 3, 0.2, ETSWeights(cost=1.5, coverage=1.0)) == [True, True, True]


def program_value(layer: list[Node], keep: list[bool], weights: ETSWeights, clusters: list[int]) -> float:
    """The ETS objective of retaining `keep` of `layer` (budget = len(layer), T = 0.2)."""
    shares = [w / len(layer) for w in allocate_widths([n.reward for n in layer], len(layer), 0.2)]
    ancestors = {"0"} | {a.id for n in layer for a in n.path()[:-1]}
    cost = weights.cost / (len(ancestors) + len(layer))
    kept = [n for n, x in zip(layer, keep, strict=True) if x]
    kv = {"0"} | {a.id for n in kept for a in n.path()[:-1]}
    covered = {clusters[i] for i, x in enumerate(keep) if x and clusters}
    coverage = weights.coverage / len(set(clusters)) * len(covered) if clusters else 0.0
    return sum(s for s, x in zip(shares, keep, strict=True) if x) - cost * (len(kv) + len(kept)) + coverage


@pytest.mark.parametrize("seed", range(4))
def test_ets_program_reaches_the_enumerated_optimum(seed):
    rng = random.Random(seed)
    tree = QueryTree()
    layer = [tree.root]
    for _ in range(3):  # a random tree three levels deep; its last level is the open layer
        layer = [
            c for node in layer for c in grow(tree, node, [rng.random() for _ in range(rng.randint(1, 2))])
        ]
    for node in layer:
        node.step = rng.choice(["add both sides", "divide by two", "take the root"])
    weights = ETSWeights(cost=rng.choice([0.5, 1.0, 2.0]), coverage=1.5 if seed % 2 else 0.0)
    distinct = weights.coverage and len({n.step for n in layer}) > 1
    clusters = step_clusters([n.step for n in layer], 0.05) if distinct else []
    keep = retained(layer, len(layer), 0.2, weights)
    choices = [list(c) for c in itertools.product([False, True], repeat=len(layer)) if any(c)]
    optimum = max(program_value(layer, choice, weights, clusters) for choice in choices)
    assert program_value(layer, keep, weights, clusters) == pytest.approx(optimum, abs=1e-5)


def test_ets_without_weights_is_rebase():
    tree = QueryTree()
    layer = grow(tree, tree.root, [0.9, 0.2, 0.6, 0.6, 0.1])
    layer[4].terminal = True
    budget, frontier = ets_frontier(layer, 8, 0.2, ETSWeights(cost=0.0, coverage=0.0))
    assert (budget, sorted(frontier, key=lambda p: p[0].id)) == next_frontier(layer, 8, 0.2)


def test_ets_runs_and_is_validated():
    query = run_search(algorithm="ets", width=6, max_depth=4)
    assert len(query.tree.terminals()) == 6
    for key, value in (("ets_cost_weight", -1), ("ets_coverage_weight", -0.5), ("ets_cluster_distance", 2)):
        with pytest.raises(ConfigError, match=f"search.{key}"):
            Config.load(None, [f"search.{key}={value}"])
