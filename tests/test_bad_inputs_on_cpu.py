"""The bad-input matrix: each bad input is a clear one-line error naming its row or field, no
traceback, and the rest of the batch goes on.

The CLI runs in-process. Where an input fails before Ray, `_ensure_ray` raises, so the test
proves the error comes first. Where rows are solved, the batch runs in this process on
simulated engines (tests/inprocess.py), so the output files and the summary are the real ones.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from inprocess import solve_in_process

from spex_ray import api, cli
from spex_ray.config import Config
from spex_ray.rewards import REWARDS
from spex_ray.sim.engine import SimEngine
from spex_ray.sim.loop import run_virtual
from spex_ray.solution import solve_problem
from spex_ray.tasks import Problem, load_problems

SIM = ["policy.backend=sim", "reward.kind=sim", "search.width=2", "search.max_depth=4", "run.progress=off"]
GOOD = {"id": "good", "problem": "What is 2 + 2?", "answer": "4"}


@pytest.fixture(autouse=True)
def _restore_loggers():
    """cli.main configures the spex_ray logger; leave it as other tests found it."""
    import logging

    package = logging.getLogger("spex_ray")
    saved = (package.level, package.propagate, list(package.handlers))
    yield
    package.setLevel(saved[0])
    package.propagate = saved[1]
    package.handlers[:] = saved[2]


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the CLI gets as far as starting Ray."""

    def ensure_ray(address):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(api, "_ensure_ray", ensure_ray)


@pytest.fixture
def in_process(monkeypatch):
    """solve() without Ray: the batch left after resume runs on simulated engines in-process."""
    solve_in_process(monkeypatch)


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def _error_line(err: str) -> str:
    """The CLI's error: exactly one line."""
    assert err.count("\n") == 1 and err.startswith("spex-ray: error: "), err
    return err.removeprefix("spex-ray: error: ").strip()


def _dataset(tmp_path: Path, rows: list, name: str = "rows.jsonl") -> str:
    lines = [row if isinstance(row, bytes) else json.dumps(row).encode() for row in rows]
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def _solve_cli(capsys, tmp_path: Path, rows: list, *extra: str) -> tuple[int, dict[str, str], list[dict]]:
    """`spex-ray solve` of `rows`; (exit code, summary line by id, results.parquet rows)."""
    out_dir = tmp_path / "out"
    argv = ["solve", "--dataset", _dataset(tmp_path, rows), "--output", str(out_dir)]
    code, out, _ = _cli(capsys, *argv, *[f"--set={item}" for item in SIM], *extra)
    lines = dict(re.findall(r"^(\S+): (.*)$", out, re.M))  # "<id>: <answer or error>"
    return code, lines, pq.read_table(out_dir / "results.parquet").to_pylist()


# --------------------------------------------------------------------------- rows that fail alone


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"id": "bad", "problem": ""}, "row 0: field 'problem' is empty"),
        ({"id": "bad", "problem": "   \n"}, "row 0: field 'problem' is empty"),
        ({"id": "bad", "problem": 17}, "row 0: field 'problem' is not a string (got int)"),
        ({"id": "bad", "problem": None}, "row 0: missing field 'problem' (looked for problem, question)"),
        ({"id": "bad", "problem": ["a", "b"]}, "row 0: field 'problem' is not a string (got list)"),
        ({"id": "bad", "problem": "x" * 1_000_001}, "row 0: field 'problem' is 1,000,001 characters long"),
        (b'{"id": "bad", "problem": ', "row 0: invalid JSON on line 1: Expecting value at column 26"),
        (b'{"id": "bad", "problem": "caf\xff"}', "row 0: invalid UTF-8 on line 1: byte 0xff at column 30"),
        (b"[1, 2]", "row 0: expected a JSON object or a string, got list"),
    ],
    ids=["empty", "blank", "number", "null", "list", "oversized", "json", "utf8", "not-an-object"],
)
def test_a_bad_row_fails_alone_with_one_line_naming_it(capsys, tmp_path, in_process, row, error):
    code, lines, results = _solve_cli(capsys, tmp_path, [row, GOOD])
    assert code == 1
    assert lines["0"].startswith(f"ERROR {error}")
    assert lines["good"].startswith("answer ")  # the rest of the batch went on
    by_id = {r["id"]: r for r in results}
    assert by_id["0"]["status"] == "error" and by_id["0"]["error"].startswith(error)
    assert by_id["good"]["status"] == "ok"


def test_an_empty_problem_given_on_the_command_line_fails_alone(capsys, tmp_path, in_process):
    argv = ["solve", "--problem", "", "--problem", "What is 2 + 2?", "--output", str(tmp_path / "o")]
    code, out, _ = _cli(capsys, *argv, *[f"--set={item}" for item in SIM])
    assert code == 1
    assert "\n0: ERROR row 0: empty problem text\n" in out and "\n1: answer " in out


def test_a_row_without_an_answer_is_solved_and_graded_unknown(capsys, tmp_path, in_process):
    code, lines, results = _solve_cli(capsys, tmp_path, [{"id": "open", "problem": "What is 5 + 5?"}, GOOD])
    assert code == 0
    assert lines["open"].startswith("answer ") and "(no gold)" in lines["open"]
    graded = {r["id"]: (r["status"], r["gold"], r["correct"]) for r in results}
    assert graded["open"] == ("ok", None, None)


def test_a_duplicated_id_is_rejected_at_load_and_named(capsys, tmp_path, in_process):
    rows = [GOOD, {"id": "good", "problem": "What is 3 + 3?", "answer": "6"}, {"id": "2", "problem": "Hi?"}]
    problems = load_problems(_dataset(tmp_path, rows))
    assert [(p.id, p.ok) for p in problems] == [("good", True), ("1", False), ("2", True)]
    assert problems[1].error == "row 1: duplicate id 'good' (first on row 0)"
    code, lines, results = _solve_cli(capsys, tmp_path, rows)
    assert code == 1 and lines["1"] == "ERROR row 1: duplicate id 'good' (first on row 0)"
    assert sorted(r["id"] for r in results) == ["1", "2", "good"]  # one row each, no id twice


def test_an_error_row_never_takes_the_id_of_another_row(tmp_path):
    rows = [
        {"problem": None},
        {"id": "0", "problem": "a"},
        {"id": "0", "problem": "b"},
        {"id": "row-2", "problem": "c"},
    ]
    problems = load_problems(_dataset(tmp_path, rows))
    assert [p.id for p in problems] == ["row-0", "0", "2", "row-2"]
    assert [p.ok for p in problems] == [False, True, False, True]


def test_duplicate_problems_passed_to_solve_are_rejected_too(tmp_path, in_process):
    problems = [Problem(id="a", problem="What is 1 + 1?"), Problem(id="a", problem="What is 2 + 2?")]
    result = api.solve(problems, overrides=[*SIM, f"run.output={tmp_path}"])
    assert [(s.id, s.status) for s in result.solutions] == [("a", "ok"), ("1", "error")]
    assert result.solutions[1].error == "row 1: duplicate id 'a' (first on row 0)"


def test_a_bare_string_is_one_problem(tmp_path, in_process):
    result = api.solve("What is 17 * 23?", overrides=[*SIM, f"run.output={tmp_path}"])
    assert [(s.id, s.problem, s.status) for s in result.solutions] == [("0", "What is 17 * 23?", "ok")]


def test_a_problem_longer_than_the_engine_can_hold_fails_before_any_generation():
    config = Config.load(
        None, [*SIM, "policy.sim.gpu=a6000", "policy.model=llemma-7b", "policy.mem_fraction_static=0.3"]
    )
    long_problem = Problem(id="long", problem="word " * 20_000)  # 100,000 characters

    async def run():
        engine = SimEngine(config.policy)
        reward = REWARDS.build(config.reward.kind, config.reward)
        try:
            row, trace = await solve_problem(long_problem, config, engine, engine.chat_template(), reward)
            return row, trace, engine.generated_total
        finally:
            await engine.close()

    row, trace, generated = run_virtual(run())
    assert row.status == "error" and trace == [] and generated == 0
    assert row.error.splitlines()[0].startswith("SearchError: engine failed the request for node 0.0: prompt")
    assert "exceed the KV cache" in row.error.splitlines()[0]


# --------------------------------------------------------------------------- inputs that stop the run


def test_a_missing_dataset_is_one_line_before_ray(capsys, tmp_path, no_ray):
    code, _, err = _cli(capsys, "solve", "--dataset", str(tmp_path / "absent.jsonl"))
    assert code == 2 and _error_line(err).startswith(f"dataset {str(tmp_path / 'absent.jsonl')!r} not found")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs /proc (a file no one can read)")
def test_an_unreadable_dataset_is_one_line_before_ray(capsys, tmp_path, no_ray):
    unreadable = tmp_path / "rows.jsonl"
    os.symlink("/proc/self/mem", unreadable)  # a file that exists and cannot be read, even by root
    code, _, err = _cli(capsys, "solve", "--dataset", str(unreadable))
    assert code == 2 and _error_line(err).startswith(f"dataset {str(unreadable)!r} cannot be read: ")


def test_a_corrupt_parquet_dataset_is_one_line_naming_the_file(capsys, tmp_path, no_ray):
    corrupt = tmp_path / "rows.parquet"
    corrupt.write_bytes(b"not parquet at all")
    code, _, err = _cli(capsys, "solve", "--dataset", str(corrupt))
    assert code == 2 and _error_line(err).startswith(
        f"dataset {str(corrupt)!r} is not a readable Parquet file"
    )


def test_invalid_utf8_in_a_json_array_file_names_the_line(capsys, tmp_path, no_ray):
    path = tmp_path / "rows.json"
    path.write_bytes(b'[\n{"problem": "a"},\n{"problem": "caf\xff"}\n]\n')
    code, _, err = _cli(capsys, "solve", "--dataset", str(path))
    assert code == 2 and _error_line(err) == f"dataset {str(path)!r}: invalid UTF-8 on line 3"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["search.widht=3"], "unknown config key 'search.widht'; known keys: algorithm, width"),
        (["search.width=abc"], "search.width: expected an integer, got 'abc'"),
        (["search.width=-1"], "search.width: must be in [1, 4,096] (got -1)"),
        (["search.width=0"], "search.width: must be in [1, 4,096] (got 0)"),
        (["search.width=1000000000"], "search.width: must be in [1, 4,096] (got 1,000,000,000)"),
        (["policy.max_new_tokens=10000000"], "policy.max_new_tokens: must be in [1, 1,048,576]"),
        (["run.tree_actors=100000"], "run.tree_actors: must be in [1, 1,024] (got 100,000)"),
        (["search.width=4096", "search.max_depth=1024"], "search: up to 4,194,304 engine requests per query"),
    ],
)
def test_a_bad_config_value_is_one_line_naming_the_key(capsys, no_ray, settings, message):
    overrides = [f"--set={item}" for item in settings]
    code, _, err = _cli(capsys, "solve", "--problem", "What is 2 + 2?", *overrides)
    assert code == 2 and _error_line(err).startswith(message)


def test_an_output_that_is_a_file_is_one_line_before_ray(capsys, tmp_path, no_ray):
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    for output in (taken, taken / "below"):
        code, _, err = _cli(capsys, "solve", "--problem", "What is 2 + 2?", "--output", str(output))
        assert code == 2
        assert _error_line(err) == (
            f"run.output {str(output)!r} cannot be used ({taken} is a file, not a directory); give another --output"
        )


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs sysfs")
def test_an_output_that_cannot_be_written_is_one_line_before_ray(capsys, no_ray):
    output = "/sys/spex_ray_output"  # sysfs refuses new directories, even to root
    code, _, err = _cli(capsys, "solve", "--problem", "What is 2 + 2?", "--output", output)
    assert code == 2 and _error_line(err).startswith(f"run.output {output!r} cannot be used (")
