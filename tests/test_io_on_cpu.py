"""Run outputs: the record types, journal, Parquet, resume after a crash."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from spex_ray.api import ClusterConnectError, RunResult, _collect, _ensure_ray, _output
from spex_ray.config import Config
from spex_ray.engines.chat import ChatTemplate
from spex_ray.io import (
    RESULT_COLUMNS,
    STATS_COLUMNS,
    TRACE_COLUMNS,
    RunWriter,
    SearchStats,
    Solution,
    TraceRow,
    exception_message,
    read_results,
    read_trace,
)
from spex_ray.outputs import OutputError
from spex_ray.resume import default_output, search_identity
from spex_ray.sim.calibrate import TRACE_COLUMNS_READ
from spex_ray.sim.cluster import SimRun
from spex_ray.solution import solve_problem
from spex_ray.tasks import Problem

# The columns of results.parquet and trace.parquet as runs have always written them.
RESULTS_PARQUET_COLUMNS = [
    "id", "problem", "gold", "answer", "correct", "status", "error", "algorithm", "seed",
    "tokens_main", "tokens_spec", "tokens_wasted", "requests", "spec_requests", "hit_rate",
    "latency_s", "nodes", "depth", "leaves", "early_stopped", "answer_weight", "candidates",
    "path", "step_rewards", "answer_node", "engine", "retries", "attempts",
]  # fmt: skip
TRACE_PARQUET_COLUMNS = [
    "query", "node", "depth", "terminal", "answered", "request_id", "kind", "outcome", "seed",
    "finish_reason", "prompt_tokens", "cached_tokens", "completion_tokens", "enqueue_time",
    "start_time", "end_time", "engine", "attempts", "reward", "enqueue_s", "start_s", "end_s",
]  # fmt: skip


def row(pid: str, status: str = "ok") -> Solution:
    return Solution(id=pid, problem=f"problem {pid}", status=status, answer="1", tokens_main=3)


def request(query: str, node: str = "0.0", completion_tokens: int = 3) -> TraceRow:
    return TraceRow(
        query=query, node=node, depth=node.count("."), terminal=False, answered=False,
        request_id=f"{query}-{node}", kind="main", outcome="used", seed=7, finish_reason="stop",
        prompt_tokens=10, cached_tokens=0, completion_tokens=completion_tokens, enqueue_time=1.0,
        start_time=1.5, end_time=2.0,
    )  # fmt: skip


def test_rows_and_traces_land_in_parquet(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [request("a")])
    writer.write(row("b", "error"), [])
    writer.finalize()
    writer.close()
    assert [r["id"] for r in read_results(tmp_path)] == ["a", "b"]
    assert pq.read_table(tmp_path / "trace.parquet").num_rows == 1


def test_resume_keeps_finished_rows_and_retries_failed_ones(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [request("a")])
    writer.write(row("b", "error"), [request("b")])
    writer.close()  # no finalize: a crash mid-batch
    with open(tmp_path / "results.jsonl", "a") as handle:
        handle.write('{"id": "c", "sta')  # torn last line
    resumed = RunWriter(tmp_path)
    assert resumed.done_ids() == {"a"}
    resumed.write(row("b"), [])
    resumed.finalize()
    resumed.close()
    assert sorted(r["id"] for r in read_results(tmp_path)) == ["a", "b"]
    assert pq.read_table(tmp_path / "trace.parquet").column("query").to_pylist() == ["a"]
    assert [s.id for s in resumed.solutions()] == ["a", "b"]


def test_resume_solves_timeout_rows_again_and_skips_any_torn_line(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [request("a")])
    writer.write(row("t", "timeout"), [request("t")])
    writer.close()
    with open(tmp_path / "results.jsonl", "ab") as handle:
        handle.write(b'{"id": "x", "problem": "caf\xc3')  # torn in the middle of a character
    with open(tmp_path / "trace.jsonl", "ab") as handle:
        handle.write(b'[1, 2]\n{"query": "a"')  # not a row, then a torn one
    resumed = RunWriter(tmp_path)
    assert resumed.done_ids() == {"a"}
    resumed.close()
    kept = (tmp_path / "trace.jsonl").read_text().splitlines()
    assert [json.loads(line)["query"] for line in kept] == ["a"]


def test_no_resume_starts_over(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [])
    writer.close()
    fresh = RunWriter(tmp_path, resume=False)
    assert fresh.done_ids() == set()
    fresh.close()


# ----------------------------------------------------------------------------- resume, lock, URIs


IDENTITY = search_identity(Config.load(None))


def problem(pid: str, text: str | None = None, gold: str | None = "1") -> Problem:
    return Problem(id=pid, problem=text or f"problem {pid}", gold=gold)


def solved(p: Problem) -> Solution:
    return Solution(id=p.id, problem=p.problem, gold=p.gold, answer="1")


def test_a_row_is_reused_only_for_the_same_problem_text_gold_and_search(tmp_path):
    writer = RunWriter(tmp_path, identity=IDENTITY)
    writer.write(solved(problem("a")), [])
    writer.write(solved(problem("b")), [])
    writer.close()
    resumed = RunWriter(tmp_path, identity=IDENTITY)
    assert resumed.reusable_ids([problem("a"), problem("c")]) == {"a"}
    with pytest.raises(OutputError, match=r"problem id 'a' solved for another problem .*--no-resume"):
        resumed.reusable_ids([problem("a", "What is 17 * 23?")])
    with pytest.raises(OutputError, match="problem id 'b'"):
        resumed.reusable_ids([problem("b", gold="2")])
    resumed.close()


def test_another_search_config_refuses_to_resume_and_names_what_changed(tmp_path):
    writer = RunWriter(tmp_path, identity=IDENTITY)
    writer.write(solved(problem("a")), [])
    writer.close()
    a6000 = search_identity(Config.load("configs/sim_a6000.yaml"))
    h100 = search_identity(Config.load("configs/sim_h100.yaml"))
    assert a6000 != h100
    with pytest.raises(
        OutputError, match=r"another config \(.*policy.*\); give a new --output or --no-resume"
    ):
        RunWriter(tmp_path, identity=h100)
    fresh = RunWriter(tmp_path, resume=False, identity=h100)  # starting over is allowed
    assert fresh.done_ids() == set()
    fresh.close()


def test_rows_without_a_recorded_config_are_not_resumed(tmp_path):
    writer = RunWriter(tmp_path, identity=IDENTITY)
    writer.write(solved(problem("a")), [])
    writer.close()
    (tmp_path / "run.json").unlink()  # as an older spex-ray left it
    with pytest.raises(OutputError, match="no record of their config"):
        RunWriter(tmp_path, identity=IDENTITY)


def test_the_search_identity_leaves_out_how_fast_a_batch_runs():
    base = Config.load(None)
    faster = Config.load(None, ["run.concurrency=9", "run.output=x", "policy.num_engines=3", "task.limit=5"])
    assert search_identity(faster) == search_identity(base)
    for change in ("search.width=8", "run.seed=1", "policy.temperature=0.5", "policy.hf.device=cuda",
                   "spex.speculate=true", "reward.path_score=last"):  # fmt: skip
        assert search_identity(Config.load(None, [change])) != search_identity(base), change
    base.policy.settings("sim")  # another backend's section looked up: not part of this search
    assert search_identity(base) == search_identity(Config.load(None))


def test_the_default_output_is_one_per_batch_and_search():
    a, b = [problem("0", "x")], [problem("0", "What is 17 * 23?")]
    assert default_output(IDENTITY, a) == default_output(IDENTITY, list(a))
    assert default_output(IDENTITY, a) != default_output(IDENTITY, b)
    other = search_identity(Config.load(None, ["search.width=8"]))
    assert default_output(IDENTITY, a) != default_output(other, a)
    assert default_output(IDENTITY, a).startswith("runs/")


def test_a_second_writer_on_the_same_output_refuses(tmp_path):
    first = RunWriter(tmp_path)
    with pytest.raises(OutputError, match=rf"another run is writing to {tmp_path} \(pid {os.getpid()}\)"):
        RunWriter(tmp_path)
    first.write(row("a"), [])
    first.close()
    second = RunWriter(tmp_path)  # released on close
    assert second.done_ids() == {"a"}
    second.close()


def test_a_file_uri_output_is_staged_synced_and_resumed(tmp_path):
    uri = f"file://{tmp_path}/cloud/run"
    writer = RunWriter(uri, identity=IDENTITY)
    staging = writer.dir
    assert writer.results_path == f"{uri}/results.parquet"
    writer.write(solved(problem("a")), [request("a")])
    writer.write_text("config.yaml", "run: {}\n")
    writer.finalize()
    writer.close()
    assert not staging.exists()
    assert [r["id"] for r in read_results(uri)] == ["a"]
    assert read_trace(uri) == [dataclasses.replace(request("a"), enqueue_s=0.0, start_s=0.5, end_s=1.0)]
    assert (tmp_path / "cloud/run/config.yaml").exists() and (tmp_path / "cloud/run/run.json").exists()
    resumed = RunWriter(uri, identity=IDENTITY)
    assert resumed.reusable_ids([problem("a")]) == {"a"}
    with pytest.raises(OutputError, match="another run is writing to file://"):
        RunWriter(uri, identity=IDENTITY)
    resumed.close()
    fresh = RunWriter(uri, resume=False, identity=IDENTITY)  # starting over clears the URI too
    assert fresh.done_ids() == set() and not (tmp_path / "cloud/run/results.parquet").exists()
    fresh.close()


def test_a_uri_output_gets_the_journals_while_rows_arrive(tmp_path, monkeypatch):
    monkeypatch.setattr("spex_ray.outputs.SYNC_INTERVAL_S", 0.0)
    writer = RunWriter(f"file://{tmp_path}/run", identity=IDENTITY)
    writer.write(solved(problem("a")), [request("a")])
    journal = (tmp_path / "run" / "results.jsonl").read_text().splitlines()  # before finalize: a crash
    assert [json.loads(line)["id"] for line in journal] == ["a"]
    writer.close()


def test_a_uri_pyarrow_cannot_open_is_a_clear_error():
    with pytest.raises(OutputError, match=r"run.output 'nosuch://bucket/x'"):
        RunWriter("nosuch://bucket/x")


def test_under_a_submitted_job_a_relative_output_is_refused(monkeypatch, tmp_path):
    batch = [problem("a")]
    assert _output(Config.load(None), IDENTITY, batch) == default_output(IDENTITY, batch)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    for relative in ("", "runs/x"):
        with pytest.raises(OutputError, match="under `ray job submit`.*absolute path.*s3://"):
            _output(Config.load(None, [f"run.output={relative}"]), IDENTITY, batch)
    for kept in (str(tmp_path), "gs://bucket/run"):
        assert _output(Config.load(None, [f"run.output={kept}"]), IDENTITY, batch) == kept


def test_a_cluster_that_refuses_the_client_says_what_to_set(monkeypatch):
    def refuse(**_):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr("spex_ray.api.ray.init", refuse)
    monkeypatch.setattr("spex_ray.api.ray.is_initialized", lambda: False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(ClusterConnectError, match=r"10.0.0.1:6379; .*set RAY_AUTH_MODE=token.*auth_token"):
        _ensure_ray("10.0.0.1:6379")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # then the cause is elsewhere: Ray's own error
    with pytest.raises(ConnectionError, match=r"^Failed to connect"):
        _ensure_ray("10.0.0.1:6379")


def test_an_unwritable_uri_fails_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(
        OutputError, match=r"could not copy the run to file://.*/file/run \(.*\); its files are in "
    ):
        RunWriter(f"file://{tmp_path}/file/run")


# ----------------------------------------------------------------------------- the schemas


def test_parquet_columns_are_the_record_fields_in_their_old_order(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [request("a"), request("a", "0.1")])
    writer.finalize()
    writer.close()
    assert pq.read_table(tmp_path / "results.parquet").column_names == RESULTS_PARQUET_COLUMNS
    assert pq.read_table(tmp_path / "trace.parquet").column_names == TRACE_PARQUET_COLUMNS
    assert list(RESULT_COLUMNS) == RESULTS_PARQUET_COLUMNS
    assert list(TRACE_COLUMNS) == TRACE_PARQUET_COLUMNS
    assert set(RESULT_COLUMNS) == {f.name for f in dataclasses.fields(Solution)}
    assert set(STATS_COLUMNS) < set(RESULT_COLUMNS)


def test_rows_round_trip_through_the_files(tmp_path):
    solution = row("a")
    solution.candidates = ["1", "2"]
    writer = RunWriter(tmp_path)
    writer.write(solution, [request("a"), request("a", "0.1", completion_tokens=5)])
    writer.finalize()
    writer.close()
    assert [Solution.from_row(r) for r in read_results(tmp_path)] == [solution]
    absolute = [
        dataclasses.replace(t, enqueue_s=None, start_s=None, end_s=None) for t in read_trace(tmp_path)
    ]
    assert absolute == [request("a"), request("a", "0.1", completion_tokens=5)]  # relative times: below
    journal = Path(tmp_path / "results.jsonl").read_text().splitlines()
    assert list(json.loads(journal[0])) == RESULTS_PARQUET_COLUMNS


def test_from_row_reads_an_old_journal_row():
    old = {"id": "q1", "problem": "2 + 2?", "answer": "4", "correct": True, "tokens_main": 9,
           "hit_rate": 0.5, "retired_column": 1}  # fmt: skip
    solution = Solution.from_row(old)
    assert (solution.id, solution.answer, solution.correct) == ("q1", "4", True)
    assert (solution.tokens_main, solution.hit_rate, solution.status) == (9, 0.5, "ok")
    assert solution.candidates == [] and solution.answer_weight == 0.0


def test_a_solution_takes_the_stats_of_its_search():
    stats = SearchStats(tokens_main=5, tokens_spec=3, requests=4, hit_rate=0.25, depth=2, early_stopped=True)
    solution = Solution(id="a", problem="p")
    solution.set_stats(stats)
    assert SearchStats(**{name: getattr(solution, name) for name in STATS_COLUMNS}) == stats


def test_calibration_reads_trace_columns():
    assert set(TRACE_COLUMNS_READ) <= set(TRACE_COLUMNS)


# ----------------------------------------------------------------------------- error rows


PROBLEM = Problem(id="p1", problem="What is 1 + 1?", gold="2")


def test_an_error_row_keeps_the_message_and_the_tail_of_the_detail():
    assert Solution.failed(PROBLEM, "row 2: no problem text").error == "row 2: no problem text"
    failed = Solution.failed(PROBLEM, "ValueError: bad", "x" * 2500 + "END", algorithm="mcts", seed=4)
    assert failed.error == "ValueError: bad\n" + "x" * 1997 + "END"
    assert (failed.status, failed.id, failed.problem, failed.gold) == ("error", "p1", PROBLEM.problem, "2")
    assert (failed.algorithm, failed.seed, failed.answer, failed.correct) == ("mcts", 4, None, None)


def test_an_exception_message_is_type_and_message_optionally_cut():
    assert exception_message(KeyError("k")) == "KeyError: 'k'"
    assert exception_message(RuntimeError("y" * 3000 + "!"), tail=2000) == "RuntimeError: " + "y" * 1999 + "!"


class _BrokenEngine:
    async def generate(self, request):
        raise RuntimeError("engine down")

    async def abort(self, request_id):
        return None


def test_solve_problem_turns_a_bad_problem_and_a_failure_into_error_rows():
    config = Config.load(None, ["search.algorithm=mcts"])
    bad = Problem(id="p2", problem="", error="row 2: no problem text")
    solution, trace = asyncio.run(solve_problem(bad, config, _BrokenEngine(), ChatTemplate(), None))
    assert (solution.status, solution.error, solution.algorithm, trace) == (
        "error", "row 2: no problem text", "mcts", [],
    )  # fmt: skip
    solution, trace = asyncio.run(solve_problem(PROBLEM, config, _BrokenEngine(), ChatTemplate(), None))
    assert solution.status == "error" and trace == []
    assert solution.error.startswith("RuntimeError: engine down\nTraceback (most recent call last)")
    assert solution.error.endswith("RuntimeError: engine down\n")
    assert solution.algorithm == "mcts" and solution.seed != 0


_RENDERED: list = []


def record_messages(messages):
    """A chat renderer that records the messages it is asked to render, then fails the search."""
    _RENDERED.append(messages)
    raise RuntimeError("stop after the prompt")


def test_the_system_prompt_names_the_search_step_delimiter():
    config = Config()
    config.search.step_delimiter = "\n"
    chat = ChatTemplate(renderer=f"{__name__}:record_messages")
    asyncio.run(solve_problem(PROBLEM, config, _BrokenEngine(), chat, None))
    assert "a line break" in _RENDERED[-1][0]["content"]


def test_a_crashed_actor_call_becomes_the_problems_error_row(monkeypatch):
    def crash(ref):
        raise RuntimeError("actor died: " + "t" * 3000)

    monkeypatch.setattr("spex_ray.api.ray.get", crash)
    solution, trace = _collect(object(), PROBLEM)
    assert solution.error == "RuntimeError: " + ("actor died: " + "t" * 3000)[-2000:]
    assert (solution.status, solution.id, solution.gold, solution.algorithm, trace) == (
        "error", "p1", "2", "", [],
    )  # fmt: skip


# ----------------------------------------------------------------------------- batch results


def _solutions(*correct: bool | None) -> list[Solution]:
    return [Solution(id=str(i), problem="p", correct=c) for i, c in enumerate(correct)]


@pytest.mark.parametrize(
    "make",
    [
        lambda solutions, seconds: RunResult(solutions, Path("out"), seconds),
        lambda solutions, seconds: SimRun(solutions, {}, seconds, [seconds], 0),
    ],
    ids=["ray", "sim"],
)
def test_a_batch_result_means_the_same_by_accuracy_and_throughput(make):
    assert make(_solutions(True, False, None, True), 30.0).accuracy == pytest.approx(2 / 3)
    assert make(_solutions(None, None), 30.0).accuracy is None
    assert make(_solutions(), 30.0).accuracy is None
    assert make(_solutions(True, None, None), 30.0).questions_per_minute == 6.0
    assert make(_solutions(True), 0.0).questions_per_minute == 0.0
    assert make(_solutions(True, None, None), 30.0).solved_count == 3
    solutions = _solutions(True, False)
    solutions[0].tokens_spec, solutions[1].tokens_spec = 3, 4
    assert make(solutions, 1.0).total("tokens_spec") == 7.0


def test_resumed_rows_do_not_count_toward_throughput():
    result = RunResult(_solutions(True, True, False), Path("out"), 30.0, reused=2)
    assert (result.solved_count, result.questions_per_minute) == (1, 2.0)
    assert RunResult(_solutions(True), Path("out"), 30.0, reused=1).questions_per_minute == 0.0
    assert RunResult([], "s3://bucket/run", 1.0).results_path == "s3://bucket/run/results.parquet"


# ----------------------------------------------------------------------------- chosen path, relative times


def test_chosen_path_and_step_rewards_round_trip_through_parquet(tmp_path):
    solution = row("a")
    solution.path, solution.step_rewards = ["Step one.", "The answer is 1."], [0.5, 0.75]
    writer = RunWriter(tmp_path)
    writer.write(solution, [])
    writer.finalize()
    writer.close()
    (stored,) = read_results(tmp_path)
    assert stored["path"] == ["Step one.", "The answer is 1."]
    assert stored["step_rewards"] == [0.5, 0.75]
    assert Solution.from_row(stored).path == solution.path


def test_trace_times_are_relative_to_the_batch_start_too(tmp_path):
    late = request("b", completion_tokens=4)
    late.enqueue_time, late.start_time, late.end_time = 3.0, 3.25, 4.0
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [request("a")])
    writer.write(row("b"), [late])
    writer.finalize()
    writer.close()
    first, second = read_trace(tmp_path)
    assert (first.enqueue_s, first.start_s, first.end_s) == (0.0, 0.5, 1.0)
    assert (second.enqueue_s, second.start_s, second.end_s) == (2.0, 2.25, 3.0)
    assert (second.enqueue_time, second.end_time) == (3.0, 4.0)  # absolute times kept


def test_a_journaled_trace_row_without_relative_times_reads():
    stored = request("a").to_dict()
    for name in ("enqueue_s", "start_s", "end_s"):
        del stored[name]
    assert TraceRow.from_dict(stored).enqueue_s is None


def test_a_sim_row_has_modeled_latency_a_chosen_path_and_clean_candidates():
    from spex_ray.registries import REWARDS
    from spex_ray.sim.engine import SimEngine
    from spex_ray.sim.workload import sim_problems
    from spex_ray.solution import engine_span
    from spex_ray.tasks import problems_from_items

    overrides = ["policy.backend=sim", "reward.kind=sim", "policy.sim.time_scale=0", "search.width=4"]
    config = Config.load(None, overrides)

    async def run():
        engine = SimEngine(config.policy)
        try:
            return await solve_problem(
                problems_from_items(sim_problems(1))[0],
                config,
                engine,
                engine.chat_template(),
                REWARDS.build("sim", config.reward),
            )
        finally:
            await engine.close()

    solution, trace = asyncio.run(run())
    assert solution.status == "ok", solution.error
    assert solution.latency_s == engine_span(trace) > 0
    assert solution.candidates and all(solution.candidates)
    assert solution.path and len(solution.path) == len(solution.step_rewards) <= solution.depth
    assert solution.answer in solution.candidates
