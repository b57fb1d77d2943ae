"""A query's search tree, picked from a list: nodes by depth, coloured by step reward, marked
by how they were made (main, speculative promoted, speculative wasted, aborted), the chosen
answer's path highlighted. The tree is rebuilt from the trace: child k of node n has id
"n.k", so a node's parent is its id less the last part."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from spex_ray.io import Solution, TraceRow
from spex_ray.report.timeline import CATEGORIES, category
from spex_ray.tree.node import ROOT_ID

MAX_TREES = 100  # queries in the list (the first ones by id)
ROW_PX, MIN_HEIGHT_PX, MAX_HEIGHT_PX = 14, 480, 1400  # the height: a row per leaf of the widest tree
SYMBOLS = {"main": "circle", "spec promoted": "diamond", "spec wasted": "x", "aborted": "circle-open"}
_KEEP_ORDER = {"used": 0, "promoted": 1, "wasted": 2, "aborted": 3}  # which request of a node id to show


@dataclass(frozen=True)
class TreeNode:
    """A node placed for drawing: `x` its depth, `y` its row (leaves in order, a parent at
    the middle of its children)."""

    id: str
    parent: str | None
    x: int
    y: float
    row: TraceRow | None  # the request that made it (None: the root, the prompt)

    @property
    def category(self) -> str:
        return "prompt" if self.row is None else category(self.row)


def parent_id(node_id: str) -> str | None:
    return node_id.rsplit(".", 1)[0] if "." in node_id else None


def layout(requests: Sequence[TraceRow]) -> dict[str, TreeNode]:
    """The tree of one query's requests, placed; a node requested twice (speculated, then
    made) is drawn as the request that made it."""
    made: dict[str, TraceRow] = {}
    for row in sorted(requests, key=lambda r: _KEEP_ORDER.get(r.outcome, len(_KEEP_ORDER))):
        made.setdefault(row.node, row)
    children: dict[str, list[str]] = defaultdict(list)
    for node_id in made:
        children[_nearest_known(node_id, made)].append(node_id)
    placed: dict[str, TreeNode] = {}
    _place(ROOT_ID, None, 0, children, made, placed, [0])
    return placed


def answer_path(answer_node: str | None, nodes: dict[str, TreeNode]) -> list[str]:
    """The ids from the root down to `answer_node` (empty when it is not in the tree)."""
    if answer_node is None or answer_node not in nodes:
        return []
    path: list[str] = []
    node: str | None = answer_node
    while node is not None:
        path.append(node)
        node = nodes[node].parent
    return path[::-1]


def tree_figure(solutions: Sequence[Solution], trace: Sequence[TraceRow]) -> go.Figure | None:
    """The trees of the first MAX_TREES queries (by id) with requests, one shown at a time
    (a dropdown picks it); None when no query has requests."""
    requests: dict[str, list[TraceRow]] = defaultdict(list)
    for row in trace:
        requests[row.query].append(row)
    shown = sorted((s for s in solutions if requests.get(s.id)), key=lambda s: _natural(s.id))[:MAX_TREES]
    if not shown:
        return None
    rewards = [r.reward for r in trace if r.reward is not None]
    fig = go.Figure()
    spans, heights = [], []
    for solution in shown:
        first = len(fig.data)
        nodes = layout(requests[solution.id])
        for item in _query_traces(solution, nodes):
            fig.add_trace(item)
        spans.append((first, len(fig.data)))
        heights.append(_height(nodes))
    for index, (first, last) in enumerate(spans):
        for item in fig.data[first:last]:
            item.visible = index == 0
    fig.update_layout(
        title={
            "text": f"the tree of the query picked in the list ({len(shown)} of {len(solutions)} queries)",
            "x": 0.25,
        },
        height=max(heights),  # one for all: the page does not resize a plot's <div>
        template="plotly_white",
        xaxis={"title": "depth", "dtick": 1},
        yaxis={"visible": False},
        coloraxis={
            "colorscale": "Viridis",
            "cmin": min(rewards, default=0.0),
            "cmax": max(rewards, default=1.0),
            "colorbar": {"title": "step reward"},
        },
        updatemenus=[_picker(shown, spans, len(fig.data))],
        legend={"orientation": "h", "y": -0.12},
    )
    return fig


def _natural(text: str) -> tuple:
    """A sort key that orders "sim-2" before "sim-10"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


def _short(answer: str | None, chars: int = 24) -> str:
    text = str(answer)
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _height(nodes: dict[str, TreeNode]) -> int:
    leaves = 1 + max((node.y for node in nodes.values()), default=0)
    return int(min(MAX_HEIGHT_PX, max(MIN_HEIGHT_PX, ROW_PX * leaves + 200)))


def _nearest_known(node_id: str, made: dict[str, TraceRow]) -> str:
    """The parent of `node_id`, or its nearest ancestor in the trace (the root at worst)."""
    parent = parent_id(node_id)
    while parent is not None and parent != ROOT_ID and parent not in made:
        parent = parent_id(parent)
    return parent or ROOT_ID


def _child_order(node_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in node_id.split("."))


def _place(
    node_id: str,
    parent: str | None,
    depth: int,
    children: dict[str, list[str]],
    made: dict[str, TraceRow],
    placed: dict[str, TreeNode],
    next_leaf: list[int],
) -> float:
    """Place `node_id` and its subtree (leaves on successive rows); returns its row."""
    ys = [
        _place(child, node_id, depth + 1, children, made, placed, next_leaf)
        for child in sorted(children.get(node_id, []), key=_child_order)
    ]
    if ys:
        y = sum(ys) / len(ys)
    else:
        y, next_leaf[0] = float(next_leaf[0]), next_leaf[0] + 1
    placed[node_id] = TreeNode(node_id, parent, depth, y, made.get(node_id))
    return y


def _query_traces(solution: Solution, nodes: dict[str, TreeNode]) -> list[go.Scatter]:
    path = answer_path(solution.answer_node, nodes)
    items = [
        _edges(
            nodes,
            [n for n in nodes.values() if n.category in ("main", "spec promoted")],
            "tree",
            "#999999",
            1.2,
        ),
        _edges(
            nodes,
            [n for n in nodes.values() if n.category in ("spec wasted", "aborted")],
            "dropped",
            "#dddddd",
            1.0,
        ),
        _edges(
            nodes, [nodes[i] for i in path[1:]], f"answer path ({_short(solution.answer)})", "#e377c2", 4.0
        ),
    ]
    root = nodes[ROOT_ID]
    items.append(
        go.Scatter(
            x=[root.x],
            y=[root.y],
            mode="markers",
            name="prompt",
            marker={"symbol": "square", "size": 10, "color": "black"},
            hovertext=[solution.problem[:200]],
            hoverinfo="text",
        )  # fmt: skip
    )
    for name in CATEGORIES:
        items.append(_markers([n for n in nodes.values() if n.category == name], name))
    return items


def _edges(
    nodes: dict[str, TreeNode], children: list[TreeNode], name: str, colour: str, width: float
) -> go.Scatter:
    xs: list[float | None] = []
    ys: list[float | None] = []
    for child in children:
        parent = nodes[child.parent or ROOT_ID]
        xs += [parent.x, child.x, None]
        ys += [parent.y, child.y, None]
    return go.Scatter(
        x=xs, y=ys, mode="lines", name=name, line={"color": colour, "width": width}, hoverinfo="skip"
    )


def _markers(nodes: list[TreeNode], name: str) -> go.Scatter:
    rewarded = name != "aborted"
    marker = {"symbol": SYMBOLS[name], "size": 9, "line": {"width": 1, "color": "#333333"}}
    if rewarded:
        marker.update(color=[n.row.reward for n in nodes], coloraxis="coloraxis")
    else:
        marker.update(color="#888888")
    return go.Scatter(
        x=[n.x for n in nodes],
        y=[n.y for n in nodes],
        mode="markers",
        name=name,
        marker=marker,
        hovertext=[_hover(n) for n in nodes],
        hoverinfo="text",
    )


def _hover(node: TreeNode) -> str:
    row = node.row
    reward = "none" if row.reward is None else f"{row.reward:.3f}"
    end = " (terminal, answered)" if row.answered else " (terminal)" if row.terminal else ""
    return f"node {node.id}: {row.kind} {row.outcome}<br>reward {reward}, {row.completion_tokens} tokens{end}"


def _picker(shown: Sequence[Solution], spans: list[tuple[int, int]], total: int) -> dict:
    """The dropdown listing the queries; each entry shows that query's traces only."""
    buttons = []
    for solution, (first, last) in zip(shown, spans, strict=True):
        visible = [first <= i < last for i in range(total)]
        verdict = {True: "correct", False: "wrong", None: "ungraded"}[solution.correct]
        label = f"{solution.id}: {_short(solution.answer)} ({verdict})"
        buttons.append({"label": label, "method": "update", "args": [{"visible": visible}]})
    return {
        "buttons": buttons,
        "direction": "down",
        "x": 0.0,
        "xanchor": "left",
        "y": 1.14,
        "yanchor": "bottom",
    }
