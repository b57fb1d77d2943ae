"""`spex-ray report`: a real simulated run (spex_ray.sim.simulate, saved as solve() saves a
run) rendered to HTML, its figures checked against the run's rows, and the page loaded in
headless Chromium. SPEX_RAY_REPORT_SCREENSHOT=docs/report.png keeps the browser's screenshot
(the README's)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
from browser import Chromium, find_chromium

from spex_ray.cli import main
from spex_ray.config import Config
from spex_ray.io import RunWriter, TraceRow, read_trace
from spex_ray.report import load_run, report_html, save_sim_run, write_report
from spex_ray.report.summary import busy_seconds, percentile, summarize
from spex_ray.report.timeline import CATEGORIES, category, lanes, running_counts, timeline_figure
from spex_ray.report.tree import answer_path, layout
from spex_ray.sim.cluster import simulate
from spex_ray.sim.workload import sim_problems

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sim_a6000.yaml"
SMALL = ["search.width=4", "search.max_depth=6", "run.concurrency=4"]
SPEX = ["spex.speculate=true", "spex.early_stop=true"]
PROBLEMS = 6


def sim_run(directory: Path, overrides: list[str]) -> Path:
    config = Config.load(CONFIG, [*SMALL, *overrides])
    return save_sim_run(simulate(config, sim_problems(PROBLEMS), gpus=2), config, directory)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(SPEX run, baseline run) of the same problems on two simulated A6000s."""
    root = tmp_path_factory.mktemp("runs")
    return sim_run(root / "spex", SPEX), sim_run(root / "baseline", [])


def request(node: str, start: float, end: float, kind: str = "main", outcome: str = "used") -> TraceRow:
    return TraceRow(
        query="q", node=node, depth=node.count("."), terminal=False, answered=False, request_id=node,
        kind=kind, outcome=outcome, seed=1, finish_reason="stop", prompt_tokens=1, cached_tokens=0,
        completion_tokens=2, enqueue_time=start, start_time=start, end_time=end, enqueue_s=start,
        start_s=start, end_s=end, engine="engine-0", reward=0.5,
    )  # fmt: skip


def test_the_trace_names_each_requests_engine_and_reward(runs):
    trace = read_trace(runs[0])
    assert {row.engine for row in trace} == {"engine-0", "engine-1"}
    assert all((row.reward is None) == (row.outcome == "aborted") for row in trace)
    assert all(s.answer_node is not None for s in load_run(runs[0]).solutions if s.answer is not None)


def test_the_summary_adds_up_the_runs_rows(runs):
    run = load_run(runs[0])
    summary = summarize(run.solutions, run.trace, run.max_batch_size)
    assert run.modeled and not run.in_progress and not run.from_journals
    assert summary.problems == PROBLEMS and summary.errors == 0
    assert summary.tokens_spec == sum(r.completion_tokens for r in run.trace if r.kind == "spec") > 0
    assert sum(e.requests for e in summary.engines) == len(run.trace)
    assert all(0 < e.busy <= 1 and e.mean_running > 0 for e in summary.engines)
    assert summary.latency_p50_s <= summary.latency_p99_s <= max(s.latency_s for s in run.solutions)
    assert summary.questions_per_minute > 0 and 0 <= summary.hit_rate <= 1


def test_interval_helpers():
    assert busy_seconds([(0, 2), (1, 3), (5, 6)]) == 4
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([], 50) is None
    rows = [request("0.0", 0, 2), request("0.1", 1, 3), request("0.2", 2, 4)]
    assert lanes(rows) == [0, 1, 0]  # the third starts when the first ends: its lane is free
    assert running_counts(rows, "main") == ([0.0, 1, 2, 3, 4], [1, 2, 2, 1, 0])
    spec = [request("0.3", 0, 1, "spec", "wasted"), request("0.4", 0, 1, "spec", "aborted")]
    assert [category(r) for r in rows[:1] + spec] == ["main", "spec wasted", "aborted"]


def test_the_timeline_has_two_plots_per_engine_however_many_engines():
    engines = 14  # 28 plots: more than a fixed 4% spacing between them leaves room for
    trace = [
        dataclasses.replace(request(f"0.{i}", i, i + 1), engine=f"engine-{i:02d}") for i in range(engines)
    ]
    fig = timeline_figure(trace, modeled=False)
    assert len(fig.data) == engines * (len(CATEGORIES) + 2)  # the bars by category, running main and spec
    assert fig.layout[f"xaxis{2 * engines}"].title.text == "wall seconds since the first request"


def test_tree_layout_places_leaves_in_order_and_parents_between_them():
    rows = [request("0.0", 0, 1), request("0.1", 0, 1), request("0.0.0", 1, 2), request("0.0.1", 1, 2)]
    rows.append(request("0.0.1", 0.5, 1, "spec", "aborted"))  # speculated first, then made: made wins
    nodes = layout(rows)
    assert {n: (p.x, p.y) for n, p in nodes.items()} == {
        "0.0.0": (2, 0.0), "0.0.1": (2, 1.0), "0.0": (1, 0.5), "0.1": (1, 2.0), "0": (0, 1.25),
    }  # fmt: skip
    assert nodes["0.0.1"].category == "main"
    assert answer_path("0.0.1", nodes) == ["0", "0.0", "0.0.1"] and answer_path("9.9", nodes) == []


def test_a_run_in_progress_is_read_from_its_journals(runs, tmp_path):
    done = load_run(runs[0])
    writer = RunWriter(tmp_path / "live")
    try:
        for solution in done.solutions[:2]:
            writer.write(solution, done.requests_of(solution.id))
        live = load_run(tmp_path / "live")
        assert live.in_progress and live.from_journals and len(live.solutions) == 2
        assert len(live.trace) == sum(len(done.requests_of(s.id)) for s in done.solutions[:2])
        assert "in progress: 2 rows so far" in report_html(live)
    finally:
        writer.close()
    assert not load_run(tmp_path / "live").in_progress  # the lock is gone; still unfinished
    assert "unfinished: 2 rows" in report_html(load_run(tmp_path / "live"))


def test_the_cli_writes_the_report_and_prints_its_path(runs, tmp_path, capsys):
    output = tmp_path / "out" / "spex.html"
    assert main(["report", str(runs[0]), "--baseline", str(runs[1]), "--output", str(output)]) == 0
    assert capsys.readouterr().out.strip() == str(output)
    page = output.read_text()
    assert "modeled time" in page and "speedup, questions / min" in page and "<script src" not in page
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run directory" in capsys.readouterr().err


def test_the_report_renders_in_headless_chromium(runs, tmp_path, monkeypatch):
    executable = find_chromium()
    if executable is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    keep = os.environ.get("SPEX_RAY_REPORT_SCREENSHOT")
    keep = Path(keep).resolve() if keep else None
    monkeypatch.chdir(runs[0].parent)  # the runs are named as a user names them: spex, baseline
    page = write_report(runs[0].name, runs[1].name, tmp_path / "report.html")
    run = load_run(runs[0])
    with Chromium(executable, width=1280, height=900) as browser:
        browser.open(page)
        count = browser.evaluate
        assert browser.console_errors() == []
        assert [url for url in browser.requested_urls() if not url.startswith(("file:", "data:"))] == []
        assert count("document.querySelectorAll('.js-plotly-plot').length") == 3
        assert count("document.querySelectorAll('.js-plotly-plot svg.main-svg').length") >= 6
        assert count("document.querySelectorAll('#timeline .barlayer .point').length") == len(run.trace)
        listed = count("document.getElementById('trees').layout.updatemenus[0].buttons.map(b => b.label)")
        first, second = (label.split(":")[0] for label in listed[:2])
        assert sorted(label.split(":")[0] for label in listed) == sorted(s.id for s in run.solutions)
        tree_points = "document.querySelectorAll('#trees .scatterlayer .point').length"
        assert count(tree_points) == len(layout(run.requests_of(first)))
        assert count("document.querySelectorAll('#latency .scatterlayer .point').length") >= PROBLEMS
        shot = browser.screenshot(tmp_path / "report.png")
        pick_second = (
            "(async () => { const el = document.getElementById('trees');"
            " await Plotly.update(el, ...el.layout.updatemenus[0].buttons[1].args); })()"
        )
        browser.send("Runtime.evaluate", {"expression": pick_second, "awaitPromise": True}, session=True)
        assert count(tree_points) == len(layout(run.requests_of(second)))
        assert browser.console_errors() == []
    assert _distinct_colours(shot) > 50, "the screenshot shows the charts, not a blank page"
    if keep:
        shutil.copyfile(shot, keep)


def _distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 24))
