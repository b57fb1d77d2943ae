"""Scaling efficiency, modeled: questions per minute per GPU at 1, 2, 4, 8 and 16 simulated GPUs.

    .venv/bin/python benchmarks/sim_scaling.py                    # REBASE-16, MCTS-10 x 1-16 GPUs x seeds 0-4
    .venv/bin/python benchmarks/sim_scaling.py --searches REBASE-16 --gpus 1 4 --seeds 0

The number of queries per GPU is fixed (`--per-gpu` in flight on each GPU, run.concurrency =
per_gpu * N, each slot running `--per-slot` queries one after the other), so a perfectly
scaling cluster keeps questions/min per GPU constant. For each search, GPU count and seed
(run.seed) the baseline and SPEX (speculation + utility allocator, lookahead 4) run on the
same problems, one after the other, in the discrete-event simulation (spex_ray.sim.simulate:
the runtime's Router, EngineHosts and QueryRuntime, no orchestration cost). Efficiency at N =
(q/min per GPU at N) / (q/min per GPU at 1), per seed; the table gives mean, min and max
over the seeds. To see where efficiency goes, each run also records how evenly the router
spread the work (busiest engine's modeled busy time over the mean) and how busy the engines
were over the makespan (mean busy / makespan: below 1 is the tail of the batch, when the
last queries finish on a few engines while the others idle).

Writes benchmarks/results/sim_scaling.parquet and prints the Markdown table of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from sim_common import RESULTS, VARIANTS, measure, sim_config

from spex_ray.sim import SimRun, simulate
from spex_ray.sim.workload import sim_problems

TARGET = "H100 + Llama-3-8B"
SPEX = "spec+alloc"


def run_cell(search: str, gpus: int, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Baseline and SPEX for one search, GPU count and seed, on the same problems."""
    problems = sim_problems(args.per_gpu * gpus * args.per_slot)
    rows, baseline = [], None
    for variant in ("baseline", SPEX):
        extra = [f"run.seed={seed}", *VARIANTS[variant], *args.set]
        config = sim_config(TARGET, search, args.per_gpu * gpus, extra)
        run = simulate(config, problems, gpus)
        baseline = baseline or run
        row = measure(
            run, baseline, config, target=TARGET, search=search, gpus=gpus, seed=seed, variant=variant
        )
        rows.append({**row, **_spread(run), "qpm_per_gpu": row["qpm"] / gpus})
        print(
            f"{search} x{gpus} seed {seed} {variant}: {row['qpm']:.1f} q/min ({row['qpm'] / gpus:.1f} per GPU), "
            f"{row['speedup']:.2f}x, busiest engine {rows[-1]['busy_max_over_mean']:.3f} of mean, "
            f"engines busy {rows[-1]['busy_over_makespan']:.1%} of the makespan",
            flush=True,
        )
    return rows


def _spread(run: SimRun) -> dict[str, float]:
    busy = run.engine_busy_s
    mean = statistics.fmean(busy)
    return {
        "busy_max_over_mean": max(busy) / mean if mean else 1.0,
        "busy_over_makespan": mean / run.makespan_s if run.makespan_s else 0.0,
        "latency_max_over_mean": max(run.latencies_s.values()) / statistics.fmean(run.latencies_s.values()),
    }


def with_efficiency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's efficiency: its q/min per GPU over the same search, variant and seed at 1 GPU."""
    single = {(r["search"], r["variant"], r["seed"]): r["qpm_per_gpu"] for r in rows if r["gpus"] == 1}
    return [
        {**r, "efficiency": r["qpm_per_gpu"] / single[(r["search"], r["variant"], r["seed"])]} for r in rows
    ]


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """One table line per search and GPU count: mean [min-max] over the seeds."""
    lines = [
        "| search | GPUs | queries | baseline q/min/GPU | baseline efficiency | SPEX q/min/GPU "
        "| SPEX efficiency | SPEX / baseline | busiest engine / mean (SPEX) | engines busy / makespan (SPEX) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for search in dict.fromkeys(r["search"] for r in rows):
        for gpus in sorted({r["gpus"] for r in rows if r["search"] == search}):
            cell = [r for r in rows if r["search"] == search and r["gpus"] == gpus]
            base = [r for r in cell if r["variant"] == "baseline"]
            spex = [r for r in cell if r["variant"] == SPEX]
            lines.append(
                f"| {search} | {gpus} | {base[0]['problems']} | {_spread_of(base, 'qpm_per_gpu', '{:.1f}')} "
                f"| {_spread_of(base, 'efficiency', '{:.1%}')} | {_spread_of(spex, 'qpm_per_gpu', '{:.1f}')} "
                f"| {_spread_of(spex, 'efficiency', '{:.1%}')} | {_spread_of(spex, 'speedup', '{:.2f}x')} "
                f"| {_spread_of(spex, 'busy_max_over_mean', '{:.3f}')} "
                f"| {_spread_of(spex, 'busy_over_makespan', '{:.1%}')} |"
            )
    return lines


def _spread_of(rows: Sequence[dict[str, Any]], column: str, fmt: str) -> str:
    values = [r[column] for r in rows]
    show: Callable[[float], str] = fmt.format
    return f"{show(statistics.fmean(values))} [{show(min(values))}-{show(max(values))}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--searches", nargs="+", default=["REBASE-16", "MCTS-10"])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--per-gpu", type=int, default=8, help="queries in flight per GPU")
    parser.add_argument("--per-slot", type=int, default=1, help="queries each slot runs in turn")
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    parser.add_argument("--name", default="sim_scaling", help="results/<name>.parquet")
    args = parser.parse_args()
    if 1 not in args.gpus:
        parser.error("--gpus must include 1: efficiency is relative to one GPU")
    rows = [
        row
        for search in args.searches
        for seed in args.seeds
        for gpus in args.gpus
        for row in run_cell(search, gpus, seed, args)
    ]
    rows = with_efficiency(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    RESULTS.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), RESULTS / f"{args.name}.parquet")
    print("\n".join(summary(rows)))
    print(f"wrote benchmarks/results/{args.name}.parquet")


if __name__ == "__main__":
    main()
