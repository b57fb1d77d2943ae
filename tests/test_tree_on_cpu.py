"""Tree logic on a FakeEngine: REBASE widths and vote, MCTS selection and backup, seeds."""

from __future__ import annotations

import asyncio
import math

import pytest
from fake_engine import FakeEngine

from spex_ray.config import Config
from spex_ray.engines.base import GenRequest, Priority
from spex_ray.rewards.confidence import ConfidenceReward
from spex_ray.tree.algorithms import ALGORITHMS
from spex_ray.tree.algorithms.mcts import backup, descend, select_child, uct_score
from spex_ray.tree.algorithms.rebase import allocate_widths, next_frontier
from spex_ray.tree.expand import Query, SearchError, StepGenerator
from spex_ray.tree.node import Node
from spex_ray.tree.search import QuerySearch, chosen_path, is_final_answer
from spex_ray.tree.seeds import child_seed
from spex_ray.tree.settings import SearchSettings
from spex_ray.tree.tree import QueryTree
from spex_ray.tree.vote import aggregate


def run_search(engine: FakeEngine, seed: int = 1, **search) -> QuerySearch:
    config = Config()
    for key, value in search.items():
        setattr(config.search, key, value)
    config.validate()
    settings = SearchSettings.from_config(config)
    query = QuerySearch("q", "problem", "PROMPT\n", settings, engine, ConfidenceReward(config.reward), seed)
    query.outcome = asyncio.run(query.run())
    return query


# --- REBASE width allocation --------------------------------------------------------------


def test_widths_sum_to_budget_and_follow_softmax():
    widths = allocate_widths([0.9, 0.5, 0.1], budget=8, temperature=0.2)
    assert sum(widths) == 8
    assert widths[0] > widths[1] >= widths[2]
    exact = [8 * math.exp(r / 0.2) / sum(math.exp(x / 0.2) for x in (0.9, 0.5, 0.1)) for r in (0.9, 0.5, 0.1)]
    assert all(abs(w - e) < 1 for w, e in zip(widths, exact, strict=True))


def test_widths_high_temperature_is_even_and_ties_go_first():
    assert allocate_widths([0.3, 0.9, 0.1, 0.5], budget=4, temperature=1e6) == [1, 1, 1, 1]
    assert allocate_widths([0.5, 0.5, 0.5], budget=2, temperature=0.2) == [1, 1, 0]


def test_widths_low_temperature_is_greedy():
    assert allocate_widths([0.2, 0.8, 0.4], budget=5, temperature=1e-3) == [0, 5, 0]
    assert allocate_widths([], budget=3, temperature=0.2) == []
    assert allocate_widths([1.0], budget=0, temperature=0.2) == [0]


# --- vote ---------------------------------------------------------------------------------


def test_weighted_vote_sums_rewards_over_equivalent_answers():
    candidates = [("72", 0.3), ("72.0", 0.3), ("5", 0.5), (None, 0.9)]
    answer, weight = aggregate(candidates, "weighted_vote")
    assert answer == "72"
    assert weight == pytest.approx(0.6 / 1.1)


def test_majority_and_best_aggregations():
    candidates = [("1", 0.1), ("1", 0.1), ("2", 0.9)]
    assert aggregate(candidates, "majority")[0] == "1"
    assert aggregate(candidates, "best") == ("2", 0.9)
    assert aggregate([(None, 1.0)], "weighted_vote") == (None, 0.0)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(candidates, "median")


# --- MCTS rules on hand-made trees --------------------------------------------------------


def make_children(parent: Node, rewards: list[float], tree: QueryTree) -> list[Node]:
    return [tree.add_child(parent, k, reward=r, path_reward=r) for k, r in enumerate(rewards)]


def test_select_prefers_unvisited_by_reward_then_uct():
    tree = QueryTree()
    a, b, c = make_children(tree.root, [0.2, 0.9, 0.5], tree)
    assert select_child(tree.root, 1.4) is b
    backup(b, 0.9)
    assert select_child(tree.root, 1.4) is c
    backup(c, 0.5)
    backup(a, 0.2)
    # all visited once: exploitation decides (equal exploration terms)
    assert select_child(tree.root, 1.4) is b
    assert uct_score(a, tree.root.visits, 0.0) == pytest.approx(0.2)


def test_backup_updates_the_whole_path():
    tree = QueryTree()
    (child,) = make_children(tree.root, [0.4], tree)
    (grandchild,) = make_children(child, [0.6], tree)
    backup(grandchild, 0.6)
    backup(grandchild, 0.2)
    assert [n.visits for n in (tree.root, child, grandchild)] == [2, 2, 2]
    assert grandchild.value == pytest.approx(0.4)
    assert tree.root.value_sum == pytest.approx(0.8)


def test_exploration_revisits_a_less_visited_child():
    tree = QueryTree()
    a, b = make_children(tree.root, [0.5, 0.5], tree)
    for _ in range(5):
        backup(a, 0.6)
    backup(b, 0.5)
    assert select_child(tree.root, 0.0) is a
    assert select_child(tree.root, 2.0) is b


def test_virtual_visits_steer_uct_but_keep_the_mean():
    tree = QueryTree()
    a, b = make_children(tree.root, [0.5, 0.5], tree)
    backup(a, 0.6)
    backup(b, 0.6)
    assert select_child(tree.root, 1.4) is a  # a tie goes to the lowest k
    assert select_child(tree.root, 1.4, {tree.root.id: 3, a.id: 3}) is b
    assert uct_score(a, 5, 0.0, virtual=3) == pytest.approx(0.6)
    assert descend(tree.root, 1.4) is a


def test_next_frontier_spends_terminals_and_splits_the_rest():
    tree = QueryTree()
    done, x, y = make_children(tree.root, [0.9, 0.8, 0.1], tree)
    done.terminal = True
    budget, frontier = next_frontier([done, x, y], 4, 0.2)
    assert budget == 3 and sum(w for _, w in frontier) == 3 and frontier[0][0] is x
    assert next_frontier([done], 1, 0.2) == (0, [])


def test_every_algorithm_has_its_speculation_policy():
    for name in ALGORITHMS.names():
        policy = ALGORITHMS.build(name, Config().search).speculation(2)
        assert callable(policy.propose) and callable(policy.may_expand_later)


def test_a_speculative_request_is_the_primary_one_but_its_priority():
    config = Config()
    settings = SearchSettings.from_config(config)
    steps = StepGenerator(
        Query("q", "p", "PROMPT\n", 5), settings, FakeEngine(), ConfidenceReward(config.reward)
    )
    parent = QueryTree().root
    main, spec = steps.request(parent, 2), steps.request(parent, 2, "spec")
    assert (main.priority, spec.priority) == (Priority.MAIN, Priority.SPEC)
    assert {**main.tags, "kind": "spec"} == spec.tags

    def sampled(r: GenRequest) -> tuple:
        return r.prompt, r.max_new_tokens, r.temperature, r.top_p, r.stop, r.seed

    assert sampled(main) == sampled(spec)


# --- searches on the FakeEngine -----------------------------------------------------------


def test_rebase_finishes_exactly_width_paths():
    query = run_search(FakeEngine(answer_rate=0.4), width=6, max_depth=5)
    terminals = query.tree.terminals()
    assert len(terminals) == 6
    assert query.outcome.answer in ("7", "8")
    assert query.outcome.stats.requests == query.outcome.stats.nodes == len(query.tree) - 1


def test_children_are_seeded_by_query_node_and_index():
    engine = FakeEngine()
    query = run_search(engine, seed=11, width=4)
    for request in engine.requests:
        parent, _, k = request.tags["node"].rpartition(".")
        assert request.seed == child_seed(11, parent, int(k))
    assert len({r.seed for r in engine.requests}) == len(engine.requests)
    assert child_seed(11, "0", 0) != child_seed(12, "0", 0)
    assert query.outcome.stats.tokens_main == sum(
        n.path_tokens - n.parent.path_tokens for n in query.tree if n.parent is not None
    )


def test_same_seed_same_tree_other_seed_other_tree():
    first = run_search(FakeEngine(), seed=3, width=4)
    again = run_search(FakeEngine(), seed=3, width=4)
    other = run_search(FakeEngine(), seed=4, width=4)
    assert first.tree.signature() == again.tree.signature()
    assert first.tree.signature() != other.tree.signature()


def test_prompts_carry_the_path_steps():
    engine = FakeEngine(answer_rate=0.0)
    query = run_search(engine, width=2, max_depth=3)
    deepest = max(query.tree, key=lambda n: n.depth)
    request = next(r for r in engine.requests if r.tags["node"] == deepest.id)
    assert request.prompt == "PROMPT\n" + "".join(s + "\n\n" for s in deepest.parent.steps())
    assert request.stop == ("\n\n",)


def test_depth_limit_ends_paths_without_answer():
    query = run_search(FakeEngine(answer_rate=0.0), width=3, max_depth=2)
    assert query.tree.depth == 2
    assert all(n.terminal and n.answer is None for n in query.tree.layer(2))
    assert query.outcome.answer is None


def test_mcts_runs_the_rollout_count_and_backs_up():
    query = run_search(
        FakeEngine(answer_rate=0.35), algorithm="mcts", rollouts=5, expand_width=3, max_depth=6
    )
    assert query.tree.root.visits == 5
    assert len(query.algorithm.finals) == 5
    assert all(f.terminal for f in query.algorithm.finals)
    for node in query.tree:
        assert len(node.children) in (0, 3)
        assert node.visits == sum(c.visits for c in node.children) + sum(
            f is node for f in query.algorithm.finals
        )


def test_engine_error_stops_the_search():
    with pytest.raises(SearchError, match="node 0.1"):
        run_search(FakeEngine(fail_node="0.1"), width=4)


def test_confidence_reward_scores():
    reward = ConfidenceReward()
    assert reward.score_logprobs([0.0, 0.0]) == 1.0
    assert reward.score_logprobs([-1.0, -3.0]) == pytest.approx(math.exp(-2.0))
    assert reward.score_logprobs([]) == 0.0
    config = Config()
    config.reward.step_score = "min_logprob"
    assert ConfidenceReward(config.reward).score_logprobs([-1.0, -3.0]) == pytest.approx(math.exp(-3.0))


# --- the outcome: clean candidates, the chosen path ---------------------------------------

FRAGMENT = "the number of apples Tom has"


def test_final_answers_are_answers_not_fragments():
    for answer in ("42", "-3.5", "\\frac{1}{2}", "\\text{Evelyn}", "5 dollars", "(3, \\frac{\\pi}{2})"):
        assert is_final_answer(answer), answer
    for answer in (None, "", "  ", FRAGMENT, "to find out how many eggs there are"):
        assert not is_final_answer(answer), answer


@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_candidates_hold_only_extracted_answers(algorithm):
    wide = {"expand_width": 1} if algorithm == "dvts" else {}  # 8 subtrees, so one of them reaches a 7
    query = run_search(
        FakeEngine(answer_rate=0.4, answers=("7", FRAGMENT)),
        algorithm=algorithm,
        width=8,
        max_depth=3,
        **wide,
    )
    reached = {node.answer for node in query.tree.terminals()}
    assert None in reached and FRAGMENT in reached  # the tree has both kinds of terminal
    voted = query.algorithm.answer_nodes(query)
    assert {node.answer for node in voted} > {"7"}  # fragments or no answer among the voted too
    assert query.outcome.candidates == [(n.answer, n.path_reward) for n in voted if n.answer == "7"]
    assert query.outcome.answer == "7"


@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_the_chosen_path_is_the_best_terminal_of_the_winning_answer(algorithm):
    query = run_search(FakeEngine(answer_rate=0.35), algorithm=algorithm, width=6, max_depth=5)
    outcome = query.outcome
    winners = [n for n in query.tree.terminals() if n.answer == outcome.answer]
    best = max(winners, key=lambda node: node.path_reward)
    assert outcome.path == best.steps() and outcome.path[-1].endswith(f"\\boxed{{{outcome.answer}}}.")
    assert outcome.step_rewards == [node.reward for node in best.path()]
    assert chosen_path(winners, outcome.answer) is best and chosen_path(winners, None) is None


def test_no_answer_no_chosen_path():
    outcome = run_search(FakeEngine(answer_rate=0.0), width=3, max_depth=2).outcome
    assert (outcome.answer, outcome.candidates, outcome.path, outcome.step_rewards) == (None, [], [], [])
