"""Fit the simulated workload (workload.WorkloadParams) to the trace of real runs.

Two things of a real policy shape what SPEX can gain: how much step lengths vary (the
slowest branch sets the pace of a reward barrier) and how deep answers appear (the number
of barriers). From trace.parquet rows (primary requests):

* step lengths: completion tokens, lognormal, fitted by maximum likelihood with the
  requests cut at max_new_tokens (finish "length") as right-censored observations;
* answer depth: the hazard of an answer at depth d (answered nodes / generated nodes at
  depth d, from the trace's `depth` and `answered` columns), fitted to the sim's Weibull
  hazard 1 - exp(-(d/scale)^shape) by least squares on log(-log(1 - h)) vs log d.

Pure numpy; benchmarks/calibrate_workload.py is the command line.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_ROWS = 20  # fewer primary requests than this cannot calibrate anything
# The trace.parquet columns (io.TraceRow fields) calibration reads; traces of older runs may
# lack kind, depth and answered, which then default to main, the node id's depth and unknown.
TRACE_COLUMNS_READ = ("kind", "finish_reason", "completion_tokens", "node", "depth", "answered")


@dataclass(frozen=True)
class StepFit:
    mean: float  # mean completion tokens of the fitted lognormal
    sigma: float  # its log-sd
    median: float
    n: int
    censored: float  # share of requests cut at max_new_tokens


MIN_SHAPE = 0.3  # a flatter hazard shows no depth trend for the sim's Weibull to take


@dataclass(frozen=True)
class DepthFit:
    scale: float
    shape: float
    hazard: dict[int, float]  # observed answer hazard by depth
    nodes: dict[int, int]  # generated nodes by depth

    @property
    def mean_hazard(self) -> float:
        total = sum(self.nodes.values())
        return sum(self.hazard[d] * n for d, n in self.nodes.items()) / total if total else 0.0

    @property
    def has_trend(self) -> bool:
        """Whether answers get likelier with depth (the shape the sim's hazard assumes)."""
        return self.shape >= MIN_SHAPE


def fit_step_lengths(lengths: Iterable[int], censored: Iterable[bool]) -> StepFit:
    """Lognormal MLE of step lengths; `censored[i]` marks a length that is only a lower bound."""
    x = np.asarray(list(lengths), dtype=float)
    cut = np.asarray(list(censored), dtype=bool)
    if len(x) < MIN_ROWS or len(x) != len(cut):
        raise ValueError(f"need at least {MIN_ROWS} step lengths (with a censored flag each), got {len(x)}")
    logs = np.log(np.maximum(x, 1.0))
    mus = np.linspace(logs.min(), logs.max() + 2.0, 240)[:, None]
    sigmas = np.linspace(0.05, 2.5, 240)[None, :]
    best = (-math.inf, 0.0, 0.0)
    cut_values, cut_counts = np.unique(logs[cut], return_counts=True)  # usually one: max_new_tokens
    for mu in mus[:, 0]:
        z_obs = (logs[~cut, None] - mu) / sigmas
        z_cut = (cut_values[:, None] - mu) / sigmas
        ll = (-0.5 * z_obs**2 - np.log(sigmas)).sum(axis=0) + (
            cut_counts[:, None] * _log_normal_sf(z_cut)
        ).sum(axis=0)
        i = int(np.argmax(ll))
        if ll[i] > best[0]:
            best = (float(ll[i]), float(mu), float(sigmas[0, i]))
    _, mu, sigma = best
    return StepFit(
        mean=math.exp(mu + sigma * sigma / 2),
        sigma=sigma,
        median=math.exp(mu),
        n=len(x),
        censored=float(cut.mean()),
    )


def fit_answer_depth(depths: Iterable[int], answered: Iterable[bool]) -> DepthFit | None:
    """Weibull answer hazard by depth; None when fewer than two depths have 0 < hazard < 1.

    A fit whose shape is below MIN_SHAPE (`has_trend` False) found no rise with depth."""
    nodes = Counter()
    hits = Counter()
    for depth, ok in zip(depths, answered, strict=True):
        nodes[int(depth)] += 1
        hits[int(depth)] += bool(ok)
    hazard = {d: hits[d] / nodes[d] for d in sorted(nodes)}
    usable = [d for d, h in hazard.items() if 0 < h < 1 and d > 0]
    if len(usable) < 2:
        return None
    xs = np.log(np.asarray(usable, dtype=float))
    ys = np.log(-np.log1p(-np.asarray([hazard[d] for d in usable])))
    weights = np.asarray([nodes[d] for d in usable], dtype=float)
    shape, intercept = np.polyfit(xs, ys, 1, w=np.sqrt(weights))
    shape = max(0.01, float(shape))
    scale = min(1e6, math.exp(-intercept / shape))
    return DepthFit(scale=scale, shape=shape, hazard=hazard, nodes=dict(nodes))


def calibrate(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, float], StepFit, DepthFit | None]:
    """WorkloadParams overrides from trace rows (primary requests only; errors and aborts skipped)."""
    main = [
        r for r in rows if r.get("kind", "main") == "main" and r.get("finish_reason") in ("stop", "length")
    ]
    steps = fit_step_lengths(
        [r["completion_tokens"] for r in main], [r["finish_reason"] == "length" for r in main]
    )
    params: dict[str, float] = {
        "step_tokens_mean": round(steps.mean, 1),
        "step_tokens_sigma": round(steps.sigma, 3),
    }
    labelled = [r for r in main if r.get("answered") is not None]
    depth = None
    if labelled:
        depth = fit_answer_depth([_depth(r) for r in labelled], [bool(r["answered"]) for r in labelled])
    if depth is not None and depth.has_trend:
        params["answer_scale"] = round(depth.scale, 2)
        params["answer_shape"] = round(depth.shape, 2)
    return params, steps, depth


def _depth(row: Mapping[str, Any]) -> int:
    depth = row.get("depth")
    return int(depth) if depth is not None else str(row["node"]).count(".")


def _log_normal_sf(z: np.ndarray) -> np.ndarray:
    """log P(Z > z) for a standard normal, stable in the tails."""
    from math import erfc

    vec = np.vectorize(lambda v: math.log(max(erfc(v / math.sqrt(2)) / 2, 1e-300)))
    return vec(z) if z.size else np.zeros((0, z.shape[1]))
