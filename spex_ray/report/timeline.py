"""Per engine: a Gantt chart of its requests, coloured by kind and outcome, over the number of
sequences it was running, so reward barriers (the dips) and the speculation filling them
show. Requests are stacked in lanes: a request takes the lowest lane free when it starts."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from spex_ray.io import TraceRow
from spex_ray.report.summary import by_engine

MAX_BARS = 20_000  # requests drawn as bars (the earliest); the running counts cover all of them
CATEGORIES = {  # category: colour
    "main": "#1f77b4",
    "spec promoted": "#2ca02c",
    "spec wasted": "#ff7f0e",
    "aborted": "#d62728",
}
GANTT_ROW_PX, MIN_GANTT_PX, MAX_GANTT_PX, RUNNING_PX = 6, 120, 420, 140
SPACING_PX, MARGINS_PX = 48, 180  # between plots (a subplot title), and around them all


def category(row: TraceRow) -> str:
    """main | spec promoted | spec wasted | aborted (any request the engine stopped)."""
    if row.outcome == "aborted" or row.finish_reason == "abort":
        return "aborted"
    if row.kind == "main":
        return "main"
    return "spec promoted" if row.outcome == "promoted" else "spec wasted"


def lanes(rows: Sequence[TraceRow]) -> list[int]:
    """The lane of each request (rows in start order): the lowest lane free at its start."""
    free: list[int] = []  # lanes whose last request ended, as a heap
    busy: list[tuple[float, int]] = []  # (end, lane) of running requests, as a heap
    assigned = []
    for row in rows:
        while busy and busy[0][0] <= row.start_s:
            heapq.heappush(free, heapq.heappop(busy)[1])
        lane = heapq.heappop(free) if free else len(busy)
        heapq.heappush(busy, (row.end_s, lane))
        assigned.append(lane)
    return assigned


def running_counts(rows: Sequence[TraceRow], kind: str) -> tuple[list[float], list[int]]:
    """The step function of `kind` requests running: (times, counts), counts[i] from times[i]."""
    events = sorted(
        [(row.start_s, 1) for row in rows if row.kind == kind]
        + [(row.end_s, -1) for row in rows if row.kind == kind]
    )
    times, counts, running = [0.0], [0], 0
    for time, step in events:
        running += step
        if times[-1] == time:
            counts[-1] = running
        else:
            times.append(time)
            counts.append(running)
    return times, counts


def timeline_figure(trace: Sequence[TraceRow], modeled: bool) -> go.Figure:
    """The timeline of every engine, one Gantt and one running-sequences plot each."""
    drawn = _drawn(trace)
    engines = {name: sorted(rows, key=_start) for name, rows in by_engine(trace).items()}
    lanes_of = {name: lanes(rows) for name, rows in engines.items()}
    heights = []
    for lane in lanes_of.values():
        heights += [
            min(MAX_GANTT_PX, max(MIN_GANTT_PX, GANTT_ROW_PX * (max(lane, default=0) + 1))),
            RUNNING_PX,
        ]
    titles = [t for name in engines for t in (f"{name}: requests", f"{name}: running sequences")]
    plots_px = sum(heights) + SPACING_PX * (len(heights) - 1)
    fig = make_subplots(
        rows=len(heights),
        cols=1,
        shared_xaxes=True,
        row_heights=heights,
        subplot_titles=titles,
        vertical_spacing=SPACING_PX / plots_px,
    )
    for index, (name, rows) in enumerate(engines.items()):
        _add_gantt(fig, rows, lanes_of[name], drawn, row=2 * index + 1, legend=index == 0)
        _add_running(fig, rows, row=2 * index + 2, legend=index == 0)
    clock = "modeled seconds (simulated engine)" if modeled else "wall seconds"
    fig.update_xaxes(title_text=f"{clock} since the first request", row=len(heights), col=1)
    note = f"bars: the first {MAX_BARS} of {len(trace)} requests" if len(trace) > MAX_BARS else None
    fig.update_layout(
        title=note,
        height=plots_px + MARGINS_PX,
        barmode="overlay",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        template="plotly_white",
    )
    return fig


def _start(row: TraceRow) -> float:
    return row.start_s


def _drawn(trace: Sequence[TraceRow]) -> set[str]:
    """The request ids drawn as bars: all, or the MAX_BARS that started first."""
    first = sorted(trace, key=_start)[:MAX_BARS]
    return {row.request_id for row in first}


def _add_gantt(
    fig: go.Figure, rows: list[TraceRow], lane: list[int], drawn: set[str], row: int, legend: bool
) -> None:
    """The bars of one engine's requests (`rows` in start order, `lane` of each)."""
    for name, colour in CATEGORIES.items():
        chosen = [
            (r, n) for r, n in zip(rows, lane, strict=True) if category(r) == name and r.request_id in drawn
        ]
        fig.add_trace(
            go.Bar(
                orientation="h",
                base=[r.start_s for r, _ in chosen],
                x=[r.end_s - r.start_s for r, _ in chosen],
                y=[n for _, n in chosen],
                marker={"color": colour, "line": {"width": 0}},
                name=name,
                legendgroup=name,
                showlegend=legend,
                hovertext=[_hover(r) for r, _ in chosen],
                hoverinfo="text",
            ),
            row=row,
            col=1,
        )
    fig.update_yaxes(title_text="lane", row=row, col=1, showticklabels=False)


def _add_running(fig: go.Figure, rows: list[TraceRow], row: int, legend: bool) -> None:
    for kind, colour in (("main", CATEGORIES["main"]), ("spec", CATEGORIES["spec promoted"])):
        times, counts = running_counts(rows, kind)
        fig.add_trace(
            go.Scatter(
                x=times,
                y=counts,
                mode="lines",
                line={"shape": "hv", "color": colour, "width": 1},
                stackgroup=f"running-{row}",
                name=f"running {kind}",
                legendgroup=f"running {kind}",
                showlegend=legend,
            ),
            row=row,
            col=1,
        )
    fig.update_yaxes(title_text="sequences", row=row, col=1)


def _hover(row: TraceRow) -> str:
    return (
        f"{row.query} node {row.node}<br>{row.kind} {row.outcome} ({row.finish_reason})<br>"
        f"{row.completion_tokens} tokens, {row.start_s:.3f}-{row.end_s:.3f} s"
    )
