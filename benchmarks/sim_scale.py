"""Scale: 1, 4 and 16 simulated GPUs with 32 queries per GPU (sim_suite.py scale).

Two measurements per GPU count, on the same problems and seeds:

* modeled throughput, baseline vs SPEX, on the discrete-event simulation (no orchestration
  cost at all), and
* the same SPEX batch through the real Ray path (spex_ray.solve: EngineActors with
  SimEngines pacing modeled time at `--time-scale` wall seconds per modeled second, the
  TreeActor, the BudgetAllocator actor and leases). Orchestration overhead = the modeled
  query latency on Ray over the discrete-event one, minus 1: everything the Python trees,
  Ray calls and lease staleness add on top of engine time. Allocator decision latency
  is the BudgetAllocator's own update() time (mean / p99).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections import defaultdict
from typing import Any

import ray
from sim_common import compare, markdown_table, problems_for, save, sim_config

from spex_ray.allocator.budget import ALLOCATOR_NAME
from spex_ray.api import solve
from spex_ray.io import TraceRow, read_trace

TARGET = "H100 + Llama-3-8B"


def scale(args: argparse.Namespace, command: str) -> None:
    per_gpu = args.concurrency[0]
    rows: list[dict[str, Any]] = []
    ray.init(address="local", num_cpus=2, log_to_driver=False)
    for search in args.searches:
        for gpus in args.gpus:
            problems = problems_for(per_gpu * gpus, per_slot=1)
            cell = compare(
                TARGET, search, per_gpu, ["spec+alloc"], gpus=gpus, problems=problems, extra=args.set
            )
            ray_row = _on_ray(search, per_gpu, gpus, problems, args.time_scale)
            spex = cell[1]
            spex["ray_latency_s"] = ray_row["latency_s"]
            spex["ray_vs_des_latency"] = ray_row["latency_s"] / spex["mean_latency_s"] - 1
            spex["overhead"] = ray_row["outside_engine"]
            spex.update({k: v for k, v in ray_row.items() if k.startswith("alloc")})
            spex["time_scale"] = args.time_scale
            print(f"  Ray: {ray_row}; query latency vs the simulation {spex['ray_vs_des_latency']:+.1%}")
            rows += cell
    ray.shutdown()
    table = markdown_table(
        [r for r in rows if r["variant"] == "spec+alloc"],
        {
            "search": lambda r: r["search"],
            "GPUs": lambda r: str(r["gpus"]),
            "queries": lambda r: str(r["gpus"] * r["concurrency"]),
            "baseline q/min": lambda r: f"{_baseline(rows, r)['qpm']:.0f}",
            "SPEX q/min": lambda r: f"{r['qpm']:.0f}",
            "SPEX / baseline": lambda r: f"{r['speedup']:.2f}x",
            "time outside the engine (Ray)": lambda r: f"{r['overhead']:.1%}",
            "query latency, Ray vs simulation": lambda r: f"{r['ray_vs_des_latency']:+.1%}",
            "allocator update mean / p99": lambda r: f"{r['alloc_mean_us']:.0f} / {r['alloc_p99_us']:.0f} µs",
        },
    )

    def plot(rows, ax):
        for variant in ("baseline", "spec+alloc"):
            for search in dict.fromkeys(r["search"] for r in rows):
                points = sorted(
                    (r["gpus"], r["qpm"]) for r in rows if r["variant"] == variant and r["search"] == search
                )
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=f"{search} {'SPEX' if variant != 'baseline' else variant}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("simulated GPUs (32 queries each)")
        ax.set_ylabel("questions / minute")
        ax.legend(fontsize=8)

    save(
        args.name or "scale",
        rows,
        title=f"Scale on {TARGET}",
        command=command,
        table=table,
        plot=plot,
        notes=SCALE_NOTES.format(time_scale=args.time_scale),
    )


def _on_ray(search: str, per_gpu: int, gpus: int, problems: list[dict], time_scale: float) -> dict[str, Any]:
    _fresh_allocator()
    overrides = [
        f"policy.num_engines={gpus}",
        "policy.num_cpus=0",
        "policy.num_gpus=0",
        f"policy.sim.time_scale={time_scale}",
        "run.resume=false",
        f"run.output={tempfile.mkdtemp(prefix='spex_scale_')}",
    ]
    config = sim_config(TARGET, search, per_gpu * gpus, overrides, variant="spec+alloc")
    result = solve(problems, config)
    failed = [s.error for s in result.solutions if s.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} queries failed on Ray, e.g. {failed[0]}")
    latency = sum(s.latency_s for s in result.solutions) / len(result.solutions) / time_scale
    stats = result.allocator_stats["latency"]
    outside, span = time_outside_engine(read_trace(result.output_dir))
    return {
        "latency_s": latency,
        "outside_engine": outside / span if span else 0.0,
        "alloc_updates": stats["count"],
        "alloc_mean_us": stats["mean_us"],
        "alloc_p99_us": stats["p99_us"],
    }


def time_outside_engine(trace: list[TraceRow]) -> tuple[float, float]:
    """(modeled seconds a query had no request in its engine, modeled seconds from its first
    request to its last), summed over queries: what the tree, Ray calls and leases add."""
    by_query: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in trace:
        by_query[row.query].append((row.enqueue_time, row.end_time))
    outside = span = 0.0
    for intervals in by_query.values():
        intervals.sort()
        first, last = intervals[0][0], max(hi for _, hi in intervals)
        covered, (start, end) = 0.0, intervals[0]
        for lo, hi in intervals[1:]:
            if lo > end:
                covered, start, end = covered + end - start, lo, hi
            else:
                end = max(end, hi)
        covered += end - start
        span += last - first
        outside += (last - first) - covered
    return outside, span


def _fresh_allocator() -> None:
    with contextlib.suppress(ValueError):  # none yet
        ray.kill(ray.get_actor(ALLOCATOR_NAME))


def _baseline(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    keys = ("search", "gpus")
    return next(r for r in rows if r["variant"] == "baseline" and all(r[k] == row[k] for k in keys))


SCALE_NOTES = """
q/min and SPEX / baseline are modeled on the discrete-event simulation (no orchestration
cost). The Ray columns run the same SPEX batch through the real path on this machine (2
CPU cores for all trees, engines and the allocator) with engines pacing modeled time at
{time_scale} wall seconds per modeled second. Time outside the engine = the share of each
query's span (first request to last, modeled) in which none of its requests was queued or
running in its engine: tree code, Ray calls, lease refreshes; it is zero in the simulation
by construction. Query latency Ray vs simulation compares mean modeled query latency; it
also moves with the speculation decisions that lease timing changes. Both are properties
of this 2-core machine as much as of the code: the trees of every query share one Python
process here.
"""
