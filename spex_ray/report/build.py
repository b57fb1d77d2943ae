"""write_report(): a run (and optionally a baseline) to one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path

from spex_ray.outputs import is_uri
from spex_ray.report.compare import compare, latency_scatter
from spex_ray.report.page import figure_html, render_page
from spex_ray.report.run import RunData, load_run
from spex_ray.report.summary import summarize
from spex_ray.report.timeline import timeline_figure
from spex_ray.report.tree import tree_figure

REPORT_FILE = "report.html"


def default_report_path(run_dir: str | Path) -> Path:
    """<run dir>/report.html for a local run; ./report.html for a URI."""
    return Path(REPORT_FILE) if is_uri(run_dir) else Path(run_dir) / REPORT_FILE


def write_report(
    run_dir: str | Path, baseline_dir: str | Path | None = None, output: str | Path | None = None
) -> Path:
    """Write the report of the run in `run_dir` (against `baseline_dir`, if given) to
    `output` (default: default_report_path); returns the file's path."""
    run = load_run(run_dir)
    baseline = load_run(baseline_dir) if baseline_dir is not None else None
    path = Path(output) if output is not None else default_report_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(run, baseline))
    return path


def report_html(run: RunData, baseline: RunData | None = None) -> str:
    """The report page of `run` (and its comparison with `baseline`)."""
    summary = summarize(run.solutions, run.trace, run.max_batch_size)
    figures = []
    if run.trace:
        figures.append(("Engine timeline", figure_html(timeline_figure(run.trace, run.modeled), "timeline")))
    tree = tree_figure(run.solutions, run.trace)
    if tree is not None:
        figures.append(("Search trees", figure_html(tree, "trees")))
    comparison, clocks_differ = None, False
    if baseline is not None:
        base_summary = summarize(baseline.solutions, baseline.trace, baseline.max_batch_size)
        comparison = compare(run, summary, baseline, base_summary)
        clocks_differ = run.modeled != baseline.modeled
        figures.append(
            ("Latency against the baseline", figure_html(latency_scatter(run, baseline), "latency"))
        )
    return render_page(run, summary, figures, comparison, clocks_differ)
