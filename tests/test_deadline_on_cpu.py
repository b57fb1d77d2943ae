"""run.query_timeout_s: a search ends at its deadline with its best answer so far, status
timeout, and nothing left running in the engine; on the simulator the deadline is modeled."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine
from inprocess import solve_in_process

from spex_ray import cli
from spex_ray.config import Config, ConfigError
from spex_ray.engines.chat import ChatTemplate
from spex_ray.io import Solution
from spex_ray.progress import Status, format_solution
from spex_ray.rewards.confidence import ConfidenceReward
from spex_ray.sim import simulate
from spex_ray.sim.loop import run_virtual
from spex_ray.solution import solve_problem
from spex_ray.tasks import Problem
from spex_ray.tree.search import QuerySearch
from spex_ray.tree.settings import SearchSettings


def _config(*overrides: str) -> Config:
    return Config.load(None, ["search.width=4", "search.max_depth=6", *overrides])


def _search(engine: FakeEngine, config: Config) -> QuerySearch:
    settings = SearchSettings.from_config(config)
    return QuerySearch("q", "problem", "PROMPT\n", settings, engine, ConfidenceReward(config.reward), seed=3)


@pytest.mark.parametrize("spex", [[], ["spex.speculate=true", "spex.spec_slots=4"]], ids=["plain", "spex"])
def test_a_search_past_its_deadline_ends_with_what_it_has(spex):
    config = _config("run.query_timeout_s=2.5", *spex)
    engine = FakeEngine(answer_rate=0.4, latency=1.0)  # up to 1 s (virtual) per request
    search = _search(engine, config)
    outcome = run_virtual(search.run())
    unbounded = run_virtual(_search(FakeEngine(answer_rate=0.4, latency=1.0), _config(*spex)).run())
    assert outcome.timed_out and not unbounded.timed_out
    assert 0 < outcome.stats.nodes < unbounded.stats.nodes
    finished = {row.request_id for row in outcome.trace if row.finish_reason != "abort"}
    cut = {r.request_id for r in engine.requests} - finished
    assert cut and cut <= set(engine.aborted), "every request cut by the deadline is aborted"
    answers = {node.answer for node in search.tree.terminals() if node.answer is not None}
    assert outcome.answer is None or outcome.answer in answers


def test_timeout_row_keeps_its_answer_and_says_why():
    problem = Problem(id="p", problem="What is 3 + 4?", gold="7")
    config = _config("run.query_timeout_s=2.5")
    solution, trace = run_virtual(
        solve_problem(
            problem,
            config,
            FakeEngine(answer_rate=0.4, latency=1.0),
            ChatTemplate(),
            ConfidenceReward(config.reward),
        )
    )
    assert solution.status == "timeout"
    assert solution.error.startswith("the search reached run.query_timeout_s (2.5 s)")
    assert solution.correct is (solution.answer == "7") and trace
    done, _ = run_virtual(
        solve_problem(
            problem,
            _config(),
            FakeEngine(answer_rate=0.4, latency=1.0),
            ChatTemplate(),
            ConfidenceReward(config.reward),
        )
    )
    assert (done.status, done.error) == ("ok", None)


def test_simulated_deadline_is_modeled_seconds():
    overrides = ["policy.backend=sim", "reward.kind=sim", "search.width=4", "run.concurrency=2"]
    problems = [
        {"id": f"sim-{i}", "problem": f"Add {i} and {i + 1}.", "answer": str(2 * i + 1)} for i in range(3)
    ]
    free = simulate(Config.load(None, overrides), problems)
    bound = simulate(Config.load(None, [*overrides, "run.query_timeout_s=1.0"]), problems)
    assert all(s.status == "ok" for s in free.solutions)
    assert [s.status for s in bound.solutions] == ["timeout"] * 3
    assert all(
        s.latency_s <= 1.0 + 1e-6 < f.latency_s for s, f in zip(bound.solutions, free.solutions, strict=True)
    )


@pytest.mark.parametrize("value", ["-1", ".inf", ".nan", "abc"])
def test_query_timeout_must_be_finite_seconds(value):
    with pytest.raises(ConfigError, match=r"^run.query_timeout_s: "):
        Config.load(None, [f"run.query_timeout_s={value}"])


def test_the_summary_and_the_exit_code_say_timeout(capsys, monkeypatch, tmp_path):
    solve_in_process(monkeypatch)
    overrides = ["policy.backend=sim", "reward.kind=sim", "run.query_timeout_s=1", "run.progress=off"]
    argv = [
        "solve",
        "--problem",
        "What is 2 + 2?",
        "--output",
        str(tmp_path),
        *[f"--set={o}" for o in overrides],
    ]
    assert cli.main(argv) == 1
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("0: ")]
    assert line.startswith("0: answer ") and line.endswith(
        "; TIMEOUT: the best answer at run.query_timeout_s"
    )
    assert format_solution(
        Solution(id="q", problem="p", status="timeout", answer="4"), Status(1, 1, 0, 2.0)
    ) == ("[1/1 0:02] q: answer='4' (ungraded) 0.0s TIMEOUT")
