"""Progress of a batch on stderr: one line per finished problem, and a live status line.

On a terminal the status line (queries running, steps done, tokens/s, speculative hit
rate, a clock) is redrawn in place about once a second; elsewhere it is printed every
LOG_STATUS_EVERY_S seconds. Log records of spex_ray go through the same console
(`ConsoleLogHandler`), so they never tear the status line.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from spex_ray.engines.base import EngineLoad, GenRequest, GenResult, Priority
from spex_ray.io import Solution

MODES = ("auto", "bar", "log", "off")
LOG_STATUS_EVERY_S = 30.0  # in log mode, a status line this often while nothing finishes
_CLEAR_LINE = "\r\x1b[2K"


@dataclass
class RequestCounters:
    """What one engine has served so far, counted by its actor as each request finishes."""

    steps_done: int = 0  # requests finished (each is one reasoning step)
    tokens: int = 0  # completion tokens of those requests
    spec_steps: int = 0  # of them, speculative ones
    spec_tokens: int = 0

    def count(self, request: GenRequest, result: GenResult) -> None:
        self.steps_done += 1
        self.tokens += result.completion_tokens
        if request.priority == Priority.SPEC:
            self.spec_steps += 1
            self.spec_tokens += result.completion_tokens


@dataclass(frozen=True)
class LiveStats:
    """What the engines report while a batch runs (all engines summed)."""

    steps_done: int = 0  # engine requests finished (each is one reasoning step)
    tokens_per_second: float = 0.0
    tokens: int = 0  # completion tokens generated so far, speculative ones included
    spec_tokens: int = 0  # of them, by speculative requests (promoted or not)
    spec_running: int = 0  # speculative sequences running now

    @classmethod
    def of(cls, reports: Iterable[tuple[EngineLoad, RequestCounters]]) -> LiveStats:
        """The sum of the engines' (load, counters) reports (EngineActor.progress())."""
        reports = list(reports)
        return cls(
            steps_done=sum(counters.steps_done for _, counters in reports),
            tokens_per_second=sum(load.tokens_per_second for load, _ in reports),
            tokens=sum(counters.tokens for _, counters in reports),
            spec_tokens=sum(counters.spec_tokens for _, counters in reports),
            spec_running=sum(load.running_spec for load, _ in reports),
        )


@dataclass(frozen=True)
class Status:
    """Everything the status line shows."""

    done: int
    total: int
    running: int
    elapsed_s: float
    live: LiveStats = LiveStats()
    hit_rate: float | None = None  # None: no speculation yet
    correct: int = 0
    graded: int = 0


def format_clock(seconds: float) -> str:
    """12 -> "0:12", 754 -> "12:34", 3754 -> "1:02:34"."""
    minutes, secs = divmod(int(max(seconds, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_count(count: int) -> str:
    """950 -> "950", 12_345 -> "12.3k", 4_200_000 -> "4.2M"."""
    if count < 1000:
        return str(count)
    return f"{count / 1000:.1f}k" if count < 1_000_000 else f"{count / 1_000_000:.1f}M"


def format_status(status: Status) -> str:
    """The one-line status, e.g. "[1:05] 3/10 done, 4 running | 152 steps, 84 tok/s |
    spec hit 61%, 1.2k tok (40%), 6 running | acc 2/3": the speculative hit rate of the
    queries done, then the engines' speculative tokens so far (their share of all tokens)
    and speculative sequences running now."""
    parts = [
        f"[{format_clock(status.elapsed_s)}] {status.done}/{status.total} done, {status.running} running",
        f"{status.live.steps_done} steps, {status.live.tokens_per_second:.0f} tok/s",
    ]
    speculation = _speculation_text(status)
    if speculation:
        parts.append(speculation)
    if status.graded:
        parts.append(f"acc {status.correct}/{status.graded}")
    return " | ".join(parts)


def _speculation_text(status: Status) -> str:
    live, bits = status.live, []
    if status.hit_rate is not None:
        bits.append(f"hit {status.hit_rate:.0%}")
    if live.spec_tokens:
        bits.append(f"{format_count(live.spec_tokens)} tok ({live.spec_tokens / max(live.tokens, 1):.0%})")
    if live.spec_running:
        bits.append(f"{live.spec_running} running")
    return "spec " + ", ".join(bits) if bits else ""


def format_solution(solution: Solution, status: Status) -> str:
    """The line of a finished problem: "[3/10 0:42] gsm8k-2: answer='18' (correct) 4.1s acc 2/3"."""
    if solution.status == "error":
        first_line = (solution.error or "").splitlines()[:1]
        outcome = f"ERROR {first_line[0] if first_line else ''}"
    else:
        mark = {True: "correct", False: "wrong", None: "ungraded"}[solution.correct]
        outcome = f"answer={solution.answer!r} ({mark}) {solution.latency_s:.1f}s"
        outcome += " TIMEOUT" if solution.status == "timeout" else ""
    accuracy = f" acc {status.correct}/{status.graded}" if status.graded else ""
    clock = format_clock(status.elapsed_s)
    return f"[{status.done}/{status.total} {clock}] {solution.id}: {outcome}{accuracy}"


class Console:
    """stderr with at most one live status line at the bottom (redrawn in place on a tty)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._status = ""

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up late: pytest swaps sys.stderr

    def is_tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def print(self, text: str) -> None:
        """A permanent line, above the status line."""
        if self._status:
            self.stream.write(_CLEAR_LINE)
        self.stream.write(text + "\n")
        if self._status:
            self.stream.write(self._status)
        self.stream.flush()

    def show(self, status: str) -> None:
        """Replace the status line (terminals only)."""
        self._status = status
        self.stream.write(_CLEAR_LINE + status)
        self.stream.flush()

    def clear(self) -> None:
        if self._status:
            self.stream.write(_CLEAR_LINE)
            self.stream.flush()
            self._status = ""


CONSOLE = Console()


class ConsoleLogHandler(logging.Handler):
    """A logging handler that prints through CONSOLE ("spex-ray: message")."""

    def __init__(self, console: Console = CONSOLE) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(logging.Formatter("spex-ray: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


class Progress:
    """Reports a batch. mode: auto (live line on a tty, else log) | bar (live line) | log | off."""

    def __init__(
        self, total: int, mode: str = "auto", already_done: int = 0, console: Console = CONSOLE
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: use one of {', '.join(MODES)}")
        self.console = console
        if mode == "auto":
            mode = "bar" if console.is_tty() else "log"
        self.mode = mode
        self.total = total
        self.done = already_done
        self.running = 0
        self.correct = 0
        self.graded = 0
        self.live = LiveStats()
        self.started = time.time()
        self._kept = 0.0  # speculative hit rate, weighted by speculative requests
        self._spec_requests = 0
        self._last_log = self.started

    def update(self, solution: Solution) -> None:
        """One problem finished."""
        self.done += 1
        self.running = max(self.running - 1, 0)
        if solution.correct is not None:
            self.graded += 1
            self.correct += bool(solution.correct)
        if solution.spec_requests:
            self._spec_requests += solution.spec_requests
            self._kept += solution.hit_rate * solution.spec_requests
        if self.mode != "off":
            self.console.print(format_solution(solution, self.status()))
            self._last_log = time.time()
        self.tick()

    def set_live(self, running: int, live: LiveStats | None = None) -> None:
        """Queries in flight now, and the engines' latest counters (None: unchanged)."""
        self.running = running
        if live is not None:
            self.live = live

    def status(self, now: float | None = None) -> Status:
        hit_rate = self._kept / self._spec_requests if self._spec_requests else None
        elapsed = (now or time.time()) - self.started
        return Status(
            self.done, self.total, self.running, elapsed, self.live, hit_rate, self.correct, self.graded
        )

    def tick(self, now: float | None = None) -> None:
        """Redraw the status line (bar), or print it if LOG_STATUS_EVERY_S passed quietly (log)."""
        now = now or time.time()
        if self.mode == "bar":
            self.console.show(format_status(self.status(now)))
        elif self.mode == "log" and now - self._last_log >= LOG_STATUS_EVERY_S:
            self.console.print(format_status(self.status(now)))
            self._last_log = now

    def close(self) -> None:
        self.console.clear()
