"""The report's HTML: one self-contained page (plotly.js inline, no network) with a header
saying what run it shows and on which clock, the summary tables, and the figures."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

import plotly.graph_objects as go
import plotly.offline

from spex_ray import __version__
from spex_ray.report.compare import Comparison
from spex_ray.report.run import RunData
from spex_ray.report.summary import RunSummary

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1280px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 4px; } h2 { font-size: 1.2em; margin-top: 32px; }
.labels span { display: inline-block; padding: 2px 8px; margin-right: 6px; border-radius: 4px;
  background: #eef; font-size: 0.9em; }
.labels .warn { background: #fed; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f6f6f6; }
"""


def figure_html(fig: go.Figure, div_id: str) -> str:
    """A figure as a <div> (as tall as the figure's layout says) and its script, without
    plotly.js (the page carries it once)."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def render_page(
    run: RunData,
    summary: RunSummary,
    figures: Sequence[tuple[str, str]],
    comparison: Comparison | None = None,
    clocks_differ: bool = False,
) -> str:
    """The whole page: `figures` are (heading, figure_html) pairs, in order."""
    sections = [_section("Summary", _summary_table(summary, run) + _engine_table(summary))]
    if comparison is not None:
        sections.append(
            _section(
                f"Against the baseline: {comparison.baseline}", _comparison_table(comparison, clocks_differ)
            )
        )
    sections += [_section(heading, body) for heading, body in figures]
    title = f"spex-ray report: {run.name}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{_labels(run)}{''.join(sections)}"
        f"<p><small>spex-ray {__version__}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</small></p>"
        "</body></html>\n"
    )


def _labels(run: RunData) -> str:
    labels = [("modeled time: a simulated engine's clock" if run.modeled else "wall-clock time", "")]
    if run.backend:
        model = run.config.get("policy", {}).get("model", "")
        labels.append((f"backend {run.backend}, model {model}", ""))
    search = run.config.get("search", {})
    if search:
        spex = run.config.get("spex", {})
        labels.append(
            (f"{search.get('algorithm')} width {search.get('width')}, speculate {spex.get('speculate')}", "")
        )
    if run.in_progress:
        labels.append((f"in progress: {len(run.solutions)} rows so far, read from the journals", "warn"))
    elif run.from_journals:
        labels.append((f"unfinished: {len(run.solutions)} rows, read from the journals", "warn"))
    spans = "".join(f"<span class='{cls}'>{html.escape(text)}</span>" for text, cls in labels)
    return f"<p class='labels'>{spans}</p>"


def _section(heading: str, body: str) -> str:
    return f"<section><h2>{html.escape(heading)}</h2>{body}</section>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_table(summary: RunSummary, run: RunData) -> str:
    unit = " modeled" if run.modeled else ""
    rows = [
        ("problems", f"{summary.problems}" + (f" ({summary.errors} failed)" if summary.errors else "")),
        ("accuracy", _share(summary.accuracy) + (f" ({summary.correct}/{summary.graded})" if summary.graded else "")),
        ("questions / min", _number(summary.questions_per_minute, "{:.2f}") + unit),
        ("span", f"{summary.span_s:.2f} s{unit} (first request to last)"),
        ("latency p50 / p99", f"{_number(summary.latency_p50_s, '{:.2f}')} / {_number(summary.latency_p99_s, '{:.2f}')} s{unit}"),
        ("tokens main / spec / wasted", f"{summary.tokens_main} / {summary.tokens_spec} / {summary.tokens_wasted}"),
        ("speculative requests, hit rate", f"{summary.spec_requests}, {_share(summary.hit_rate)}"),
        ("early stops", f"{summary.early_stops}"),
    ]  # fmt: skip
    return _table(("figure", "value"), rows)


def _engine_table(summary: RunSummary) -> str:
    rows = [
        (
            e.name,
            f"{e.requests}",
            f"{e.spec_requests}",
            f"{e.busy:.0%}",
            f"{e.mean_running:.1f}",
            _share(e.occupancy),
        )
        for e in summary.engines
    ]
    header = ("engine", "requests", "speculative", "busy", "mean running sequences", "batch occupancy")
    return _table(header, rows)


def _comparison_table(comparison: Comparison, clocks_differ: bool) -> str:
    diff = comparison.accuracy_diff
    rows = [
        ("queries in both", f"{comparison.shared}"),
        ("speedup, questions / min", _number(comparison.throughput_speedup, "{:.2f}x")),
        ("speedup, median latency", _number(comparison.latency_speedup, "{:.2f}x")),
        ("accuracy difference", "n/a" if diff is None else f"{100 * diff:+.1f} points"),
    ]
    note = (
        "<p class='labels'><span class='warn'>the two runs keep different clocks (modeled vs wall)</span></p>"
    )
    return (note if clocks_differ else "") + _table(("figure", "value"), rows)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _number(value: float | None, form: str) -> str:
    return "n/a" if value is None else form.format(value)
