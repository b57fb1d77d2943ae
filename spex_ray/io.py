"""Run outputs: results.parquet (one row per problem) and trace.parquet (one row per
engine request), journaled as JSON lines first so a crash loses no finished result and a
restarted run resumes where it stopped."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

RESULTS_JOURNAL = "results.jsonl"
TRACE_JOURNAL = "trace.jsonl"
RESULTS_FILE = "results.parquet"
TRACE_FILE = "trace.parquet"
CONFIG_FILE = "config.yaml"


@dataclass
class TraceRow:
    """One engine request of a search: a row of trace.parquet (the trace schema, written once).

    `node` is the child the request generated; `depth`, `terminal` and `answered` describe
    that child once scored (None when the request produced no child: failed or aborted
    before it finished), which workload calibration reads. `kind` is main or spec;
    `outcome` is used (primary), promoted (speculative, kept), wasted (speculative,
    finished but dropped) or aborted. Times are the engine's (wall, or modeled on sim).
    """

    query: str
    node: str
    depth: int
    terminal: bool | None
    answered: bool | None
    request_id: str
    kind: str
    outcome: str
    seed: int | None
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    enqueue_time: float
    start_time: float
    end_time: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TRACE_COLUMNS = tuple(f.name for f in dataclasses.fields(TraceRow))


@dataclass
class SearchStats:
    """What one query's search cost and built; shared by the search outcome and the result row.

    `hit_rate` is the share of resolved speculative children the search kept (promoted /
    (promoted + wasted + aborted)); the usefulness EMA that speculation reports to the
    allocator is another number, called usefulness.
    """

    tokens_main: int = 0
    tokens_spec: int = 0
    tokens_wasted: int = 0
    requests: int = 0
    spec_requests: int = 0
    hit_rate: float = 0.0
    nodes: int = 0
    depth: int = 0
    leaves: int = 0
    early_stopped: bool = False


class RunWriter:
    """Appends finished rows durably and rewrites the Parquet files from the journals.

    With `resume`, rows already journaled with status "ok" are kept and their problem ids
    reported by `done_ids()` so the caller skips them; failed rows are retried.
    """

    def __init__(self, output_dir: str | Path, resume: bool = True) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            for name in (RESULTS_JOURNAL, TRACE_JOURNAL, RESULTS_FILE, TRACE_FILE):
                (self.dir / name).unlink(missing_ok=True)
        self._rows = _drop_failed(_read_journal(self.dir / RESULTS_JOURNAL))
        done = {row["id"] for row in self._rows}
        traces = [t for t in _read_journal(self.dir / TRACE_JOURNAL) if t.get("query") in done]
        _rewrite_journal(self.dir / RESULTS_JOURNAL, self._rows)
        _rewrite_journal(self.dir / TRACE_JOURNAL, traces)
        self._results = open(self.dir / RESULTS_JOURNAL, "a")  # noqa: SIM115 - held for the run
        self._trace = open(self.dir / TRACE_JOURNAL, "a")  # noqa: SIM115

    @property
    def results_path(self) -> Path:
        return self.dir / RESULTS_FILE

    @property
    def trace_path(self) -> Path:
        return self.dir / TRACE_FILE

    def done_ids(self) -> set[str]:
        return {row["id"] for row in self._rows}

    def previous_rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def write(self, row: dict[str, Any], trace: list[dict[str, Any]]) -> None:
        """Journal one finished problem and its requests; durable when this returns."""
        for record in trace:
            self._trace.write(json.dumps(record, default=str) + "\n")
        _flush(self._trace)
        self._results.write(json.dumps(row, default=str) + "\n")
        _flush(self._results)
        self._rows.append(row)

    def finalize(self) -> None:
        """Write results.parquet and trace.parquet from the journals."""
        _write_parquet(self.results_path, _read_journal(self.dir / RESULTS_JOURNAL))
        _write_parquet(self.trace_path, _read_journal(self.dir / TRACE_JOURNAL))

    def close(self) -> None:
        self._results.close()
        self._trace.close()


def read_results(output_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of a finished run's results.parquet."""
    return pq.read_table(Path(output_dir) / RESULTS_FILE).to_pylist()


def _flush(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a journal; a torn last line (crash mid-write) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _drop_failed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest = {row["id"]: row for row in rows if "id" in row}
    return [row for row in latest.values() if row.get("status") == "ok"]


def _rewrite_journal(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    tmp.replace(path)


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
