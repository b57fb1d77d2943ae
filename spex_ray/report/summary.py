"""The figures of a run's summary table: throughput, accuracy, latency, tokens, speculation,
and each engine's occupancy, computed from its rows and requests (no plotting here)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from spex_ray.io import Solution, TraceRow
from spex_ray.solution import engine_span

DEFAULT_ENGINE = "engine"  # the lane of requests whose client had no engine name


@dataclass(frozen=True)
class EngineSummary:
    """One engine's share of the run: `busy` is the share of the run's span in which it ran
    at least one request, `mean_running` the time-averaged number of running sequences
    (and `occupancy` that over policy.max_batch_size, None when unknown)."""

    name: str
    requests: int
    spec_requests: int
    busy: float
    mean_running: float
    occupancy: float | None


@dataclass(frozen=True)
class RunSummary:
    """The headline figures of a run. Times are in the run's clock (modeled on a simulated
    engine); `span_s` runs from the first request's enqueue to the last one's end."""

    problems: int
    errors: int
    correct: int
    graded: int
    span_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    tokens_main: int
    tokens_spec: int
    tokens_wasted: int
    spec_requests: int
    hit_rate: float | None
    early_stops: int
    engines: tuple[EngineSummary, ...]

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    @property
    def questions_per_minute(self) -> float | None:
        solved = self.problems - self.errors
        return 60.0 * solved / self.span_s if self.span_s > 0 else None


def engine_of(row: TraceRow) -> str:
    return row.engine or DEFAULT_ENGINE


def summarize(
    solutions: Sequence[Solution], trace: Sequence[TraceRow], max_batch_size: int = 0
) -> RunSummary:
    """The summary of a run's rows and requests (max_batch_size: the engines' batch limit, 0
    when unknown)."""
    ok = [s for s in solutions if s.status == "ok"]
    graded = [s for s in ok if s.correct is not None]
    latencies = sorted(s.latency_s for s in ok)
    spec_requests = sum(s.spec_requests for s in ok)
    kept = sum(s.hit_rate * s.spec_requests for s in ok)
    span = engine_span(list(trace))
    return RunSummary(
        problems=len(solutions),
        errors=len(solutions) - len(ok),
        correct=sum(bool(s.correct) for s in graded),
        graded=len(graded),
        span_s=span,
        latency_p50_s=percentile(latencies, 50),
        latency_p99_s=percentile(latencies, 99),
        tokens_main=sum(s.tokens_main for s in ok),
        tokens_spec=sum(s.tokens_spec for s in ok),
        tokens_wasted=sum(s.tokens_wasted for s in ok),
        spec_requests=spec_requests,
        hit_rate=kept / spec_requests if spec_requests else None,
        early_stops=sum(s.early_stopped for s in ok),
        engines=tuple(
            _engine_summary(name, rows, span, max_batch_size) for name, rows in by_engine(trace).items()
        ),
    )


def by_engine(trace: Iterable[TraceRow]) -> dict[str, list[TraceRow]]:
    """The requests of each engine, engines in name order."""
    groups: dict[str, list[TraceRow]] = defaultdict(list)
    for row in trace:
        groups[engine_of(row)].append(row)
    return dict(sorted(groups.items()))


def busy_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """The length of the union of (start, end) intervals: the time something was running."""
    busy, high = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > high:
            busy += end - max(start, high)
            high = end
    return busy


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation) of ascending values; None when empty."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def _engine_summary(name: str, rows: list[TraceRow], span: float, max_batch_size: int) -> EngineSummary:
    running_area = sum(row.end_time - row.start_time for row in rows)
    mean_running = running_area / span if span > 0 else 0.0
    return EngineSummary(
        name=name,
        requests=len(rows),
        spec_requests=sum(row.kind == "spec" for row in rows),
        busy=busy_seconds((row.start_time, row.end_time) for row in rows) / span if span > 0 else 0.0,
        mean_running=mean_running,
        occupancy=mean_running / max_batch_size if max_batch_size else None,
    )
