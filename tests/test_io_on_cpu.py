"""Run outputs: journal, Parquet, resume after a crash."""

from __future__ import annotations

import pyarrow.parquet as pq

from spex_ray.io import RunWriter, read_results


def row(pid: str, status: str = "ok") -> dict:
    return {"id": pid, "status": status, "answer": "1", "tokens_main": 3}


def test_rows_and_traces_land_in_parquet(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [{"query": "a", "node": "0.0", "completion_tokens": 3}])
    writer.write(row("b", "error"), [])
    writer.finalize()
    writer.close()
    assert [r["id"] for r in read_results(tmp_path)] == ["a", "b"]
    assert pq.read_table(tmp_path / "trace.parquet").num_rows == 1


def test_resume_keeps_finished_rows_and_retries_failed_ones(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [{"query": "a", "node": "0.0"}])
    writer.write(row("b", "error"), [{"query": "b", "node": "0.0"}])
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


def test_no_resume_starts_over(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write(row("a"), [])
    writer.close()
    fresh = RunWriter(tmp_path, resume=False)
    assert fresh.done_ids() == set()
    fresh.close()
