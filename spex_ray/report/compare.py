"""A run against a baseline run: speedup, accuracy difference, and per-query latencies."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from spex_ray.report.run import RunData
from spex_ray.report.summary import RunSummary, percentile


@dataclass(frozen=True)
class Comparison:
    """`throughput_speedup`: questions/min of the run over the baseline's; `latency_speedup`:
    the baseline's median latency over the run's, on the queries both solved (`shared`);
    `accuracy_diff`: the run's accuracy minus the baseline's (None where either is unknown)."""

    baseline: str
    shared: int
    throughput_speedup: float | None
    latency_speedup: float | None
    accuracy_diff: float | None


def compare(run: RunData, summary: RunSummary, baseline: RunData, baseline_summary: RunSummary) -> Comparison:
    pairs = latency_pairs(run, baseline)
    run_p50 = percentile(sorted(b for _, _, b in pairs), 50)
    base_p50 = percentile(sorted(a for _, a, _ in pairs), 50)
    qpm, base_qpm = summary.questions_per_minute, baseline_summary.questions_per_minute
    acc, base_acc = summary.accuracy, baseline_summary.accuracy
    return Comparison(
        baseline=baseline.name,
        shared=len(pairs),
        throughput_speedup=qpm / base_qpm if qpm and base_qpm else None,
        latency_speedup=base_p50 / run_p50 if run_p50 and base_p50 is not None else None,
        accuracy_diff=acc - base_acc if acc is not None and base_acc is not None else None,
    )


def latency_pairs(run: RunData, baseline: RunData) -> list[tuple[str, float, float]]:
    """(query id, baseline latency, run latency) of each query both runs solved."""
    base = {s.id: s.latency_s for s in baseline.solutions if s.status == "ok"}
    return [(s.id, base[s.id], s.latency_s) for s in run.solutions if s.status == "ok" and s.id in base]


def latency_scatter(run: RunData, baseline: RunData) -> go.Figure:
    """Each shared query's latency in the baseline (x) and in the run (y); below the
    diagonal the run was faster."""
    pairs = latency_pairs(run, baseline)
    correct = {s.id: s.correct for s in run.solutions}
    top = max((max(a, b) for _, a, b in pairs), default=1.0)
    clock = "modeled s" if run.modeled else "s"
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, top],
            y=[0, top],
            mode="lines",
            name="same latency",
            line={"dash": "dot", "color": "#999999"},
        )
    )
    for verdict, colour in ((True, "#2ca02c"), (False, "#d62728"), (None, "#7f7f7f")):
        chosen = [p for p in pairs if correct.get(p[0]) is verdict]
        if not chosen:
            continue
        fig.add_trace(
            go.Scatter(
                x=[a for _, a, _ in chosen],
                y=[b for _, _, b in chosen],
                mode="markers",
                name={True: "correct", False: "wrong", None: "ungraded"}[verdict] + " in this run",
                marker={"color": colour, "size": 8},
                hovertext=[f"{q}: {a:.2f} -> {b:.2f} {clock}" for q, a, b in chosen],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=f"Per-query latency: {run.name} vs {baseline.name}",
        xaxis={"title": f"baseline latency ({clock})", "rangemode": "tozero"},
        yaxis={"title": f"this run's latency ({clock})", "rangemode": "tozero"},
        height=520,
        template="plotly_white",
    )
    return fig
