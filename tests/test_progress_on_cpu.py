"""The live status line and the per-problem lines of spex_ray.progress."""

from __future__ import annotations

import io
import logging

import pytest

from spex_ray.engines.base import EngineLoad, GenRequest, GenResult, Priority
from spex_ray.io import Solution
from spex_ray.progress import (
    LOG_STATUS_EVERY_S,
    Console,
    ConsoleLogHandler,
    LiveStats,
    Progress,
    RequestCounters,
    Status,
    format_clock,
    format_count,
    format_status,
)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _solution(correct: bool | None = True, spec_requests: int = 0, hit_rate: float = 0.0) -> Solution:
    return Solution(
        id="q1", problem="p", answer="7", correct=correct, latency_s=1.5,
        spec_requests=spec_requests, hit_rate=hit_rate,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (12.7, "0:12"), (754, "12:34"), (3754, "1:02:34")]
)
def test_clock(seconds, text):
    assert format_clock(seconds) == text


def test_status_line_shows_running_steps_rate_hit_rate_accuracy_and_clock():
    status = Status(done=3, total=10, running=4, elapsed_s=65, live=LiveStats(152, 84.4), hit_rate=0.61,
                    correct=2, graded=3)  # fmt: skip
    assert (
        format_status(status) == "[1:05] 3/10 done, 4 running | 152 steps, 84 tok/s | spec hit 61% | acc 2/3"
    )


def test_status_line_shows_the_engines_live_speculation():
    live = LiveStats(152, 84.4, tokens=4000, spec_tokens=1234, spec_running=6)
    status = Status(done=3, total=10, running=4, elapsed_s=65, live=live, hit_rate=0.61)
    assert format_status(status).endswith("| spec hit 61%, 1.2k tok (31%), 6 running")
    early = Status(done=0, total=10, running=4, elapsed_s=5, live=live)  # no query done: no hit rate yet
    assert format_status(early).endswith("| spec 1.2k tok (31%), 6 running")
    assert [format_count(n) for n in (950, 12_345, 4_200_000)] == ["950", "12.3k", "4.2M"]


def test_live_stats_sum_what_each_engine_counted():
    reports = []
    for spec_tokens in (5, 7):
        counters = RequestCounters()
        counters.count(GenRequest(prompt="p"), GenResult("a", completion_tokens=3))
        spec = GenRequest(prompt="p", priority=Priority.SPEC)
        counters.count(spec, GenResult("b", completion_tokens=spec_tokens))
        reports.append((EngineLoad(running_spec=2, tokens_per_second=10.0), counters))
    live = LiveStats.of(reports)
    assert (live.steps_done, live.tokens, live.spec_tokens, live.spec_running) == (4, 18, 12, 4)
    assert live.tokens_per_second == 20.0


def test_status_line_without_speculation_or_grades_leaves_them_out():
    line = format_status(Status(done=0, total=2, running=2, elapsed_s=3))
    assert line == "[0:03] 0/2 done, 2 running | 0 steps, 0 tok/s"


def test_hit_rate_is_weighted_by_speculative_requests():
    progress = Progress(3, "off")
    progress.update(_solution(spec_requests=30, hit_rate=0.5))
    progress.update(_solution(spec_requests=10, hit_rate=0.9))
    progress.update(_solution(spec_requests=0))
    assert progress.status().hit_rate == pytest.approx(0.6)
    assert (progress.status().correct, progress.status().graded) == (3, 3)


def test_bar_mode_redraws_one_line_and_prints_results_above_it():
    stream = _Tty()
    progress = Progress(2, "auto", console=Console(stream))
    assert progress.mode == "bar"
    progress.set_live(2, LiveStats(steps_done=5, tokens_per_second=10))
    progress.tick()
    progress.update(_solution())
    progress.close()
    text = stream.getvalue()
    assert "\r\x1b[2K[0:00] 0/2 done, 2 running | 5 steps, 10 tok/s" in text
    assert "[1/2 0:00] q1: answer='7' (correct) 1.5s acc 1/1\n" in text
    assert "1/2 done, 1 running" in text
    assert text.endswith("\r\x1b[2K")  # close() leaves no status line behind


def test_log_mode_prints_the_status_only_after_a_quiet_while():
    stream = io.StringIO()
    progress = Progress(1, "auto", console=Console(stream))
    assert progress.mode == "log"
    progress.tick(progress.started + 1)
    assert stream.getvalue() == ""
    progress.tick(progress.started + LOG_STATUS_EVERY_S + 1)
    assert stream.getvalue() == "[0:31] 0/1 done, 0 running | 0 steps, 0 tok/s\n"
    assert "\x1b" not in stream.getvalue()


def test_off_mode_prints_nothing():
    stream = _Tty()
    progress = Progress(1, "off", console=Console(stream))
    progress.update(_solution())
    progress.tick(progress.started + 100)
    assert stream.getvalue() == ""


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="progress mode 'fancy'"):
        Progress(1, "fancy")


def test_log_records_do_not_tear_the_status_line():
    stream = _Tty()
    console = Console(stream)
    logger = logging.getLogger("spex_ray.test_progress")
    logger.addHandler(ConsoleLogHandler(console))
    logger.setLevel(logging.INFO)
    try:
        console.show("[0:01] status")
        logger.info("engines ready")
    finally:
        logger.handlers.clear()
    assert stream.getvalue().endswith("\r\x1b[2Kspex-ray: engines ready\n[0:01] status")
