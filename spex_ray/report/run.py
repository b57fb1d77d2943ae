"""A run as the report reads it: its result rows, its requests and its config.

`load_run(path)` reads a run directory (or URI). A finished run is read from its Parquet
files; a run still in progress (or one stopped before they were written) from its journals,
which hold every row finished so far. `save_sim_run` writes an in-process simulated batch
(`spex_ray.sim.simulate`) as such a directory, so the same report shows it.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spex_ray.io import (
    CONFIG_FILE,
    RESULTS_FILE,
    RESULTS_JOURNAL,
    TRACE_FILE,
    RunWriter,
    Solution,
    TraceRow,
    read_journals,
    read_results,
    read_trace,
    with_relative_times,
)
from spex_ray.outputs import is_uri

LOCK_FILE = ".lock"  # outputs.RunLock's lock, held while a run writes the directory


@dataclass
class RunData:
    """What a report shows of one run.

    `solutions` and `trace` are its rows and requests (relative times filled in);
    `config` the run's config.yaml as a mapping ({} when absent); `modeled` whether its
    times are a simulated engine's modeled clock; `in_progress` whether a run is writing it
    now; `from_journals` whether the rows came from the journals (no Parquet files yet).
    """

    name: str
    solutions: list[Solution]
    trace: list[TraceRow]
    config: dict[str, Any] = field(default_factory=dict)
    modeled: bool = False
    in_progress: bool = False
    from_journals: bool = False

    @property
    def backend(self) -> str:
        return str(self.config.get("policy", {}).get("backend", ""))

    @property
    def max_batch_size(self) -> int:
        return int(self.config.get("policy", {}).get("max_batch_size", 0) or 0)

    def requests_of(self, query: str) -> list[TraceRow]:
        return [row for row in self.trace if row.query == query]


def load_run(path: str | Path) -> RunData:
    """The run in directory (or URI) `path`; FileNotFoundError when it holds no run."""
    name = str(path).rstrip("/")
    if is_uri(path):
        config = _read_config_uri(name)
        return _run_data(name, [Solution.from_row(r) for r in read_results(name)], read_trace(name), config)
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"no run directory {name}")
    config = _read_config(directory / CONFIG_FILE)
    in_progress = _is_locked(directory / LOCK_FILE)
    if _journals_are_newer(directory):
        rows, trace = read_journals(directory)
        solutions = [Solution.from_row(row) for row in rows]
        return _run_data(name, solutions, trace, config, in_progress=in_progress, from_journals=True)
    if not (directory / RESULTS_FILE).exists():
        raise FileNotFoundError(f"{name} holds no run ({RESULTS_FILE} or {RESULTS_JOURNAL})")
    solutions = [Solution.from_row(row) for row in read_results(directory)]
    return _run_data(name, solutions, read_trace(directory), config, in_progress=in_progress)


def save_sim_run(run: Any, config: Any, output: str | Path) -> Path:
    """Write a `spex_ray.sim.simulate` batch (a SimRun) and its Config into the run
    directory `output`, as solve() writes one; returns the directory."""
    from spex_ray.resume import search_identity

    writer = RunWriter(output, resume=False, identity=search_identity(config))
    try:
        writer.write_text(CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
        for solution in run.solutions:
            writer.write(solution, run.traces.get(solution.id, []))
        writer.finalize()
    finally:
        writer.close()
    return Path(output)


def _run_data(
    name: str, solutions: list[Solution], trace: list[TraceRow], config: dict, **flags: bool
) -> RunData:
    from spex_ray.solution import MODELED_CLOCK_BACKENDS

    backend = config.get("policy", {}).get("backend", "")
    return RunData(
        name, solutions, _relative(trace), config, modeled=backend in MODELED_CLOCK_BACKENDS, **flags
    )


def _relative(trace: list[TraceRow]) -> list[TraceRow]:
    """The requests with enqueue_s/start_s/end_s (rows read from an older trace may lack them)."""
    if all(row.start_s is not None for row in trace):
        return trace
    return [TraceRow.from_dict(row) for row in with_relative_times([row.to_dict() for row in trace])]


def _journals_are_newer(directory: Path) -> bool:
    """Whether the journals hold rows the Parquet files do not (yet): no results.parquet, or
    a journal written after it."""
    journal, parquet = directory / RESULTS_JOURNAL, directory / RESULTS_FILE
    if not journal.exists():
        return False
    if not parquet.exists() or not (directory / TRACE_FILE).exists():
        return True
    return journal.stat().st_mtime > parquet.stat().st_mtime


def _is_locked(lock: Path) -> bool:
    """Whether a run holds the directory's lock now (it is writing there)."""
    if not lock.exists():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _read_config(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _read_config_uri(uri: str) -> dict[str, Any]:
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(uri)
    try:
        with fs.open_input_stream(f"{base}/{CONFIG_FILE}") as stream:
            return yaml.safe_load(stream.read().decode()) or {}
    except (FileNotFoundError, OSError):
        return {}
