"""SPEX speculation on a seeded FakeEngine: lossless (same tree, answers, rewards as the
baseline), promotes and aborts for real, respects its slot budget."""

from __future__ import annotations

import asyncio

import pytest
from fake_engine import FakeEngine

from spex_ray.config import Config
from spex_ray.rewards.confidence import ConfidenceReward
from spex_ray.tree.budget import StaticBudget
from spex_ray.tree.search import QuerySearch
from spex_ray.tree.settings import SearchSettings

REBASE = ["search.algorithm=rebase", "search.width=6", "search.max_depth=6"]
MCTS = ["search.algorithm=mcts", "search.rollouts=5", "search.expand_width=3", "search.max_depth=6"]
ETS = ["search.algorithm=ets", "search.width=6", "search.max_depth=6"]
BEAM = ["search.algorithm=beam", "search.beam_width=3", "search.expand_width=2", "search.max_depth=6"]
BEST_OF_N = ["search.algorithm=best_of_n", "search.width=6", "search.max_depth=6"]
DVTS = ["search.algorithm=dvts", "search.width=6", "search.expand_width=3", "search.max_depth=6"]
SEARCHES = {"rebase": REBASE, "mcts": MCTS, "ets": ETS, "beam": BEAM, "best_of_n": BEST_OF_N, "dvts": DVTS}


def search(overrides: list[str], seed: int, engine: FakeEngine, budget=None) -> QuerySearch:
    config = Config.load(None, overrides)
    settings = SearchSettings.from_config(config)
    query = QuerySearch(
        f"q{seed}", "p", "PROMPT\n", settings, engine, ConfidenceReward(config.reward), seed, budget
    )
    query.outcome = asyncio.run(query.run())
    return query


def fingerprint(query: QuerySearch):
    outcome = query.outcome
    return query.tree.signature(), outcome.answer, outcome.candidates


@pytest.mark.parametrize("algorithm", list(SEARCHES.values()), ids=list(SEARCHES))
@pytest.mark.parametrize("lookahead", [1, 2])
def test_speculation_is_lossless(algorithm, lookahead):
    hits = 0
    for seed in range(6):
        base = search(algorithm, seed, FakeEngine(answer_rate=0.25, latency=0.004))
        engine = FakeEngine(answer_rate=0.25, latency=0.004)
        spex = search(
            [*algorithm, "spex.speculate=true", f"spex.lookahead={lookahead}", "spex.spec_slots=6"],
            seed,
            engine,
        )
        assert fingerprint(spex) == fingerprint(base), f"seed {seed}"
        stats = spex.outcome.stats
        useful = stats.tokens_main + stats.tokens_spec - stats.tokens_wasted
        assert useful == base.outcome.stats.tokens_main
        hits += stats.hit_rate > 0
    assert hits >= 3  # speculation actually got used, not just tolerated


def test_rebase_speculation_aborts_dropped_branches_in_the_engine():
    aborted = 0
    for seed in range(6):
        engine = FakeEngine(answer_rate=0.2, latency=0.01)
        query = search([*REBASE, "search.width=8", "spex.speculate=true", "spex.spec_slots=8"], seed, engine)
        kinds = {row.outcome for row in query.outcome.trace if row.kind == "spec"}
        assert kinds <= {"promoted", "wasted", "aborted"}
        aborted += sum(row.outcome == "aborted" for row in query.outcome.trace)
        assert set(engine.aborted) >= {
            row.request_id for row in query.outcome.trace if row.outcome == "aborted"
        }
    assert aborted > 0


class CountingBudget(StaticBudget):
    """A StaticBudget that checks the speculation never holds more requests than granted."""

    def __init__(self, slots: int) -> None:
        super().__init__(slots)
        self.reports: list[int] = []

    def report(self, eligible: int, usefulness: float, reusable_kv: float) -> None:
        self.reports.append(eligible)


def test_speculation_stays_within_its_slots():
    for slots in (0, 1, 3):
        engine = FakeEngine(answer_rate=0.2, latency=0.005)
        budget = CountingBudget(slots)
        config = [*REBASE, "spex.speculate=true", "spex.lookahead=2"]
        query = search(config, 3, engine, budget)
        spec = query.speculation
        assert spec.max_in_flight <= slots
        if slots == 0:  # no slots at all: the primary search runs exactly as the baseline
            assert query.outcome.stats.spec_requests == 0
            base = search(REBASE, 3, FakeEngine(answer_rate=0.2, latency=0.005))
            assert fingerprint(query) == fingerprint(base)
        assert budget.reports, "demand was reported"


def test_early_stop_ends_the_search_sooner():
    full = search(REBASE + ["search.width=12"], 5, FakeEngine(answer_rate=0.5, answers=("7",)))
    stopped = search(
        [*REBASE, "search.width=12", "spex.early_stop=true", "spex.alpha=0.5", "spex.stop_confidence=0.1"],
        5,
        FakeEngine(answer_rate=0.5, answers=("7",)),
    )
    assert stopped.outcome.stats.early_stopped and not full.outcome.stats.early_stopped
    assert stopped.outcome.answer == full.outcome.answer == "7"
    assert stopped.outcome.stats.nodes < full.outcome.stats.nodes
