"""Run outputs: results.parquet (one Solution per problem) and trace.parquet (one TraceRow
per engine request), their record types defined once here, journaled as JSON lines first so
a crash loses no finished result and a restarted run resumes where it stopped."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spex_ray.outputs import OutputError, OutputLocation, RunLock, is_uri, unusable_output
from spex_ray.tasks import Problem

RESULTS_JOURNAL = "results.jsonl"
TRACE_JOURNAL = "trace.jsonl"
RESULTS_FILE = "results.parquet"
TRACE_FILE = "trace.parquet"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "run.json"  # the search identity the rows were solved with
OUTPUT_FILES = (RESULTS_JOURNAL, TRACE_JOURNAL, RESULTS_FILE, TRACE_FILE, MANIFEST_FILE, CONFIG_FILE)
ERROR_TAIL_CHARS = 2000  # of a traceback (or a remote error's message) an error row keeps


@dataclass
class TraceRow:
    """One engine request of a search: a row of trace.parquet (the trace schema, written once).

    `node` is the child the request generated; `depth`, `terminal` and `answered` describe
    that child once scored (None when the request produced no child: failed or aborted
    before it finished), which workload calibration reads. `kind` is main or spec;
    `outcome` is used (primary), promoted (speculative, kept), wasted (speculative,
    finished but dropped) or aborted. Times are the engine's (wall, or modeled on sim):
    `enqueue_time`, `start_time`, `end_time` absolute; `enqueue_s`, `start_s`, `end_s` the
    same in seconds since the batch's first request was enqueued (filled when the run's
    trace.parquet is written; None before; a resumed run counts from its first run's start).
    `engine` served the request ("engine-0"); `attempts` > 1 says its first engine went away
    while it ran and it was re-issued (same id and seed) on `engine`; `reward` is the child's
    step reward (None when the request produced no child).
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
    engine: str = ""
    attempts: int = 1
    reward: float | None = None
    enqueue_s: float | None = None
    start_s: float | None = None
    end_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> TraceRow:
        """The record of a trace.parquet (or journal) row, read column by column (the
        columns with a default may be missing: the relative times of rows journaled before
        the trace was written, the engine and reward of older runs)."""
        return cls(**{name: row[name] for name in TRACE_COLUMNS if name in row or name not in _DEFAULTED})


TRACE_COLUMNS = tuple(f.name for f in dataclasses.fields(TraceRow))
_DEFAULTED = frozenset(f.name for f in dataclasses.fields(TraceRow) if f.default is not dataclasses.MISSING)
_RELATIVE = {"enqueue_s": "enqueue_time", "start_s": "start_time", "end_s": "end_time"}


def with_relative_times(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Trace rows with enqueue_s/start_s/end_s: their times in seconds since the earliest
    enqueue_time among them (the batch's start)."""
    if not rows:
        return []
    origin = min(row["enqueue_time"] for row in rows)
    return [{**row, **{rel: row[absolute] - origin for rel, absolute in _RELATIVE.items()}} for row in rows]


@dataclass(kw_only=True)
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


STATS_COLUMNS = tuple(f.name for f in dataclasses.fields(SearchStats))


@dataclass(kw_only=True)
class Solution(SearchStats):
    """The result row of one problem: the stats of its search (SearchStats) plus what was
    asked, answered and graded; a row of results.parquet, columns in RESULT_COLUMNS order.

    `status` is ok, timeout (the search reached run.query_timeout_s: `answer` is the best it
    had by then, graded as usual; `error` says so) or error (`error` says why; no answer). A
    resumed run keeps only ok rows and solves the others again. `latency_s` is wall seconds from the
    search's start on Ray, modeled seconds from admission in the simulator. `candidates`
    are the answers voted on (one per answered path, only real answers: no None, no
    sentence fragment); `path` is the chosen path's steps (the best-rewarded path whose
    answer is in the winning class) and `step_rewards` the reward of each of its steps;
    `answer_node` is the id of that path's last node (None when nothing answered).
    """

    id: str
    problem: str
    gold: str | None = None
    answer: str | None = None
    correct: bool | None = None
    status: str = "ok"
    error: str | None = None
    algorithm: str = ""
    seed: int = 0
    latency_s: float = 0.0
    answer_weight: float = 0.0
    candidates: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    step_rewards: list[float] = field(default_factory=list)
    engine: str = ""  # the engine the query ended on
    retries: int = 0  # its requests re-issued: their engine went away or failed them (then retried)
    attempts: int = 1  # times the query was started: > 1 after its tree actor died
    answer_node: str | None = None

    @classmethod
    def failed(
        cls, problem: Problem, message: str, detail: str = "", *, algorithm: str = "", seed: int = 0
    ) -> Solution:
        """The error row of `problem`: `message` whole, then on a line of its own the last
        ERROR_TAIL_CHARS characters of `detail` (a traceback) when there is one."""
        error = f"{message}\n{detail[-ERROR_TAIL_CHARS:]}" if detail else message
        return cls(
            id=problem.id,
            problem=problem.problem,
            gold=problem.gold,
            algorithm=algorithm,
            seed=seed,
            status="error",
            error=error,
        )

    def set_stats(self, stats: SearchStats) -> None:
        """Take every field of the search's stats."""
        for name in STATS_COLUMNS:
            setattr(self, name, getattr(stats, name))

    def to_row(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {name: values[name] for name in RESULT_COLUMNS}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Solution:
        """The Solution of a results row; columns it does not know are ignored, missing ones
        take their defaults (journals of older runs read as they were written)."""
        return cls(**{name: value for name, value in row.items() if name in _RESULT_NAMES})


RESULT_COLUMNS = (  # the column order of results.parquet
    "id", "problem", "gold", "answer", "correct", "status", "error", "algorithm", "seed",
    "tokens_main", "tokens_spec", "tokens_wasted", "requests", "spec_requests", "hit_rate",
    "latency_s", "nodes", "depth", "leaves", "early_stopped", "answer_weight", "candidates",
    "path", "step_rewards", "answer_node", "engine", "retries", "attempts",
)  # fmt: skip
_RESULT_NAMES = frozenset(RESULT_COLUMNS)


def exception_message(exc: BaseException, tail: int | None = None) -> str:
    """`Type: message` of an exception; with `tail`, only the last `tail` characters of the
    message (a Ray error's message carries the whole remote traceback)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message[-tail:] if tail else message}"


class RunWriter:
    """Appends finished rows durably and rewrites the Parquet files from the journals.

    `output` is a directory or a URI (outputs.py: how a URI is staged and synced). The
    writer holds the output's lock until `close()`: a second run into it fails at once.
    `identity` is the search identity of the run (resume.search_identity), kept in the
    output's run.json. With `resume`, rows already journaled with status "ok" are kept when
    the stored identity is this run's (else OutputError: another config wrote them) and
    `reusable_ids(problems)` says which problems they answer; failed rows are retried.
    Without `resume` the output's journals and Parquet files are removed first.
    """

    def __init__(
        self, output: str | Path, resume: bool = True, identity: Mapping[str, Any] | None = None
    ) -> None:
        self.location = OutputLocation(output)
        self.dir = self.location.dir
        try:
            self._lock = RunLock(self.location)
        except BaseException:
            self.location.cleanup(keep_unsynced=False)
            raise
        try:
            self._open(resume, dict(identity or {}))
        except BaseException as exc:
            self._lock.release()
            self.location.cleanup(keep_unsynced=False)  # nothing of this run in it yet
            if isinstance(exc, OSError):
                raise unusable_output(self.location.name, exc) from None
            raise

    def _open(self, resume: bool, identity: dict[str, Any]) -> None:
        if resume:
            self.location.fetch(OUTPUT_FILES)
        else:
            self.location.remove(OUTPUT_FILES)
        self._rows = _drop_failed(_read_journal(self.dir / RESULTS_JOURNAL))
        _check_identity(self.location.name, self.dir / MANIFEST_FILE, identity, has_rows=bool(self._rows))
        _write_json(self.dir / MANIFEST_FILE, {"identity": identity})
        done = {row["id"] for row in self._rows}
        traces = [t for t in _read_journal(self.dir / TRACE_JOURNAL) if t.get("query") in done]
        _rewrite_journal(self.dir / RESULTS_JOURNAL, self._rows)
        _rewrite_journal(self.dir / TRACE_JOURNAL, traces)
        self.location.sync()  # a URI that cannot be written fails now, before any work
        self._results = open(self.dir / RESULTS_JOURNAL, "a")  # noqa: SIM115 - held for the run
        self._trace = open(self.dir / TRACE_JOURNAL, "a")  # noqa: SIM115

    @property
    def output(self) -> Path | str:
        """Where the run's files end up: the local directory, or the URI."""
        return self.location.path

    @property
    def results_path(self) -> Path | str:
        return output_file(self.output, RESULTS_FILE)

    @property
    def trace_path(self) -> Path | str:
        return output_file(self.output, TRACE_FILE)

    def done_ids(self) -> set[str]:
        return {row["id"] for row in self._rows}

    def reusable_ids(self, problems: Sequence[Problem]) -> set[str]:
        """The ids of `problems` answered by a kept row solved for the same text and gold.

        A kept row with a problem's id but another text or gold is an OutputError: its answer
        belongs to another problem, and the batch must not mix with it.
        """
        rows = {row["id"]: row for row in self._rows}
        reusable = set()
        for problem in problems:
            row = rows.get(problem.id)
            if row is None:
                continue
            if (row.get("problem"), row.get("gold")) != (problem.problem, problem.gold):
                raise OutputError(
                    f"{self.location.name} holds problem id {problem.id!r} solved for another "
                    f"problem ({_short(row.get('problem'))}, gold {row.get('gold')!r}); "
                    "give a new --output or --no-resume"
                )
            reusable.add(problem.id)
        return reusable

    def solutions(self) -> list[Solution]:
        """The rows journaled so far (kept from before a resume, then written), in order."""
        return [Solution.from_row(row) for row in self._rows]

    def write_text(self, name: str, text: str) -> None:
        """Write a small file of the run (e.g. config.yaml) into the output."""
        (self.dir / name).write_text(text)

    def write(self, solution: Solution, trace: Sequence[TraceRow]) -> None:
        """Journal one finished problem and its requests; durable when this returns (for a
        URI output: at the URI within SYNC_INTERVAL_S)."""
        for record in trace:
            self._trace.write(_json_line(record.to_dict()))
        _flush(self._trace)
        row = solution.to_row()
        self._results.write(_json_line(row))
        _flush(self._results)
        self._rows.append(row)
        self.location.sync(force=False)

    def finalize(self) -> None:
        """Write results.parquet and trace.parquet from the journals (and copy every file to
        a URI output)."""
        _write_parquet(self.dir / RESULTS_FILE, _read_journal(self.dir / RESULTS_JOURNAL))
        _write_parquet(self.dir / TRACE_FILE, with_relative_times(_read_journal(self.dir / TRACE_JOURNAL)))
        self.location.sync()

    def close(self) -> None:
        """Close the journals, release the lock, remove a URI output's staging directory."""
        self._results.close()
        self._trace.close()
        self._lock.release()
        self.location.cleanup()


def output_file(output: str | Path, name: str) -> Path | str:
    """The path (or URI) of the file `name` of an output directory (or URI)."""
    return f"{str(output).rstrip('/')}/{name}" if is_uri(output) else Path(output) / name


def read_results(output_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of a finished run's results.parquet (a directory or a URI)."""
    return _read_parquet(output_dir, RESULTS_FILE).to_pylist()


def read_trace(output_dir: str | Path) -> list[TraceRow]:
    """Requests of a finished run's trace.parquet (a directory or a URI)."""
    return [TraceRow.from_dict(row) for row in _read_parquet(output_dir, TRACE_FILE).to_pylist()]


def read_journals(output_dir: str | Path) -> tuple[list[dict[str, Any]], list[TraceRow]]:
    """The rows and requests a local run has journaled so far (a run still in progress, or
    one stopped before its Parquet files were written): one row per problem, the latest (a
    retried problem's new row replaces its failed one), and the requests with relative times."""
    directory = Path(output_dir)
    rows = {row["id"]: row for row in _read_journal(directory / RESULTS_JOURNAL) if "id" in row}
    trace = with_relative_times(_read_journal(directory / TRACE_JOURNAL))
    return list(rows.values()), [TraceRow.from_dict(row) for row in trace]


def _read_parquet(output_dir: str | Path, name: str) -> pa.Table:
    if not is_uri(output_dir):
        return pq.read_table(Path(output_dir) / name)
    fs, base = pafs.FileSystem.from_uri(str(output_dir))
    return pq.read_table(f"{base}/{name}", filesystem=fs)


def _check_identity(output: str, manifest: Path, identity: dict[str, Any], has_rows: bool) -> None:
    """Refuse to resume rows another search config wrote (or rows of unknown config)."""
    if not has_rows:
        return
    if not manifest.exists():
        raise OutputError(
            f"{output} holds results with no record of their config (an older spex-ray); "
            "give a new --output or --no-resume"
        )
    stored = json.loads(manifest.read_text()).get("identity", {})
    if stored != identity:
        raise OutputError(
            f"{output} holds results of another config ({_identity_changes(stored, identity)}); "
            "give a new --output or --no-resume"
        )


def _identity_changes(before: Mapping[str, Any], after: Mapping[str, Any], shown: int = 4) -> str:
    """`key: old -> new` for the first `shown` keys that differ, e.g. for an error message."""
    keys = sorted(set(before) | set(after))
    changed = [k for k in keys if before.get(k) != after.get(k)]
    parts = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed[:shown]]
    more = f" and {len(changed) - shown} more" if len(changed) > shown else ""
    return "; ".join(parts) + more


def _short(text: Any, chars: int = 40) -> str:
    text = str(text)
    return repr(text if len(text) <= chars else text[: chars - 3] + "...")


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def _json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, default=str) + "\n"


def _flush(handle: IO[str]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a journal. A line that is not a whole JSON object (the torn last
    line of a driver killed mid-write) is skipped: the rows before it are intact, as each
    write is flushed and fsync'd before the next begins."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _drop_failed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest = {row["id"]: row for row in rows if "id" in row}
    return [row for row in latest.values() if row.get("status") == "ok"]


def _rewrite_journal(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(_json_line(row) for row in rows))
    tmp.replace(path)


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
