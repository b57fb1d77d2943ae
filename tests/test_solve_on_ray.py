"""End to end on Ray with the real embedded model: solve(), bad rows, resume."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from spex_ray.config import Config
from spex_ray.outputs import OutputError
from spex_ray.tasks import load_problems, resolve_dataset

pytestmark = pytest.mark.slow

TINY = [
    "policy.max_new_tokens=24",
    "policy.max_batch_size=8",
    "search.width=2",
    "search.max_depth=3",
    "search.max_path_tokens=72",
    "run.concurrency=2",
    "run.progress=log",
]


# Used only where the GSM8K file is not on the machine: two problems in GSM8K's format.
GSM8K_STYLE = [
    {"question": "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?",
     "answer": "3 * 4 = 12 apples. 12 - 2 = 10.\n#### 10"},
    {"question": "A book costs $7. How much do 6 books cost in dollars?", "answer": "6 * 7 = 42\n#### 42"},
]  # fmt: skip


def gsm8k_rows(tmp_path, n: int = 2) -> str:
    """The first n GSM8K rows (GSM8K-style ones without the file) plus one malformed row."""
    try:
        rows = [json.loads(line) for line in resolve_dataset("gsm8k").read_text().splitlines()[:n]]
    except FileNotFoundError:
        rows = GSM8K_STYLE[:n]
    rows.append({"question": None, "answer": "#### 3"})
    path = tmp_path / "gsm8k_small.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_solve_gsm8k_on_ray(ray_session, tmp_path):
    from spex_ray.api import solve

    dataset = gsm8k_rows(tmp_path)
    out = tmp_path / "run"
    config = Config.load(None, [*TINY, f"task.dataset={dataset}", f"run.output={out}"])
    result = solve(None, config)

    ok, bad = result.solutions[:2], result.solutions[2]
    assert [s.status for s in ok] == ["ok", "ok"]
    assert all(s.nodes >= 2 and s.tokens_main > 0 and s.correct in (True, False) for s in ok)
    assert [s.gold for s in ok] == [p.gold for p in load_problems(dataset, limit=2)]
    assert bad.status == "error" and "row 2" in bad.error
    rows = pq.read_table(result.results_path).to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(s.id for s in result.solutions)
    trace = pq.read_table(result.trace_path).to_pylist()
    assert len(trace) == sum(s.requests for s in ok)
    assert {t["kind"] for t in trace} == {"main"}
    assert all(t["end_time"] >= t["start_time"] >= t["enqueue_time"] > 0 for t in trace)
    assert result.engine_stats[0]["tokens_per_second"] > 0

    again = solve(None, Config.load(None, [*TINY, f"task.dataset={dataset}", f"run.output={out}"]))
    assert [s.to_row() for s in again.solutions[:2]] == [s.to_row() for s in ok]  # resumed, not redone
    assert (again.reused, again.solved_count) == (2, 1)  # only the bad row was tried again
    wider = Config.load(None, [*TINY, "search.width=3", f"task.dataset={dataset}", f"run.output={out}"])
    with pytest.raises(OutputError, match=r"another config \(search.width: 2 -> 3\)"):
        solve(None, wider)


def test_mcts_from_a_python_driver(ray_session, tmp_path, capsys):
    from spex_ray.api import solve

    overrides = [*TINY, "search.algorithm=mcts", "search.rollouts=2", f"run.output={tmp_path}"]
    result = solve(["What is 2 + 3? Answer with a number."], overrides=overrides)
    (solution,) = result.solutions
    assert solution.status == "ok", solution.error
    assert solution.requests == solution.nodes >= 2
    assert f"see the run: spex-ray report {tmp_path}" in capsys.readouterr().err  # solve() ends saying so


def test_spex_on_ray_with_the_allocator(ray_session, tmp_path):
    from spex_ray.api import solve

    overrides = [
        *TINY,
        "search.width=4",
        "spex.speculate=true",
        "spex.allocator=utility",
        "spex.early_stop=true",
        "run.concurrency=1",  # MAIN stays at or under the width, leaving slots for speculation
        f"run.output={tmp_path}",
    ]
    result = solve(["What is 6 * 7? Answer with a number.", "What is 9 + 10?"], overrides=overrides)
    assert [s.status for s in result.solutions] == ["ok", "ok"], [s.error for s in result.solutions]
    trace = pq.read_table(result.trace_path).to_pylist()
    spec = [t for t in trace if t["kind"] == "spec"]
    assert spec, "speculation issued requests"
    assert {t["outcome"] for t in spec} <= {"promoted", "wasted", "aborted"}
    assert sum(s.tokens_spec for s in result.solutions) == sum(t["completion_tokens"] for t in spec)
    snapshot = result.allocator_stats  # taken once the queries finished, before the allocator ended
    assert snapshot["engines"] and sum(snapshot["grants"].values()) == 0, (
        "finished queries returned their slots"
    )
