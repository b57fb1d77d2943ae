"""Shared parts of the benchmarks: one solve() run turned into a row of metrics."""

from __future__ import annotations

import argparse
import platform
import time

import ray

from spex_ray.api import solve
from spex_ray.config import Config


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--config", default=None, help="base YAML config (default: the CPU defaults)")
    parser.add_argument("--set", action="append", default=[], help="override applied to every run")
    parser.add_argument("--out", default="runs/bench", help="where each run's Parquet files go")


def run_once(label: str, overrides: list[str], args: argparse.Namespace, concurrency: int) -> dict:
    """Solve the benchmark problems once with `overrides`; returns the run's metrics."""
    out = f"{args.out}/{label.replace(' ', '_').replace('+', 'p')}-c{concurrency}"
    config = Config.load(
        args.config,
        [f"task.dataset={args.dataset}", f"task.limit={args.limit}", f"task.offset={args.offset}",
         f"run.output={out}", "run.resume=false", f"run.concurrency={concurrency}", "run.progress=off",
         *args.set, *overrides],
    )  # fmt: skip
    result = solve(None, config)
    solutions = result.solutions
    useful = sum(s.tokens_main + s.tokens_spec - s.tokens_wasted for s in solutions)
    spec = sum(s.tokens_spec for s in solutions)
    stats = result.engine_stats[0] if result.engine_stats else {}
    return {
        "label": label,
        "concurrency": concurrency,
        "accuracy": result.accuracy or 0.0,
        "errors": sum(s.status != "ok" for s in solutions),
        "qpm": result.questions_per_minute,
        "tokens_per_s": (useful + sum(s.tokens_wasted for s in solutions)) / result.elapsed_s,
        "useful_tokens": useful,
        "spec_tokens": spec,
        "wasted_tokens": sum(s.tokens_wasted for s in solutions),
        "hit_rate": _mean([s.hit_rate for s in solutions if s.spec_requests]),
        "early_stops": sum(s.early_stopped for s in solutions),
        "occupancy": stats.get("mean_batch_occupancy", 0.0),
        "elapsed_s": result.elapsed_s,
        "answers": [s.answer for s in solutions],
        "spec_requests": sum(s.spec_requests for s in solutions),
        **budget_usage(result.allocator_stats),
    }


def budget_usage(allocator_stats: dict) -> dict:
    """The speculative budget over the run (BudgetAllocator usage of engine-0; zeros without one):
    time-weighted mean and max of the budget and of the slots granted, and the mean capacity the
    engine offered at each MAIN load."""
    usage = allocator_stats.get("usage", {}).get("engine-0", {})
    return {
        "mean_budget": usage.get("mean_budget", 0.0),
        "max_budget": usage.get("max_budget", 0),
        "mean_granted": usage.get("mean_granted", 0.0),
        "max_granted": usage.get("max_granted", 0),
        "offer_by_main": usage.get("offer_by_main", {}),
    }


def header(args: argparse.Namespace) -> str:
    cpus = ray.cluster_resources().get("CPU", 0)
    return (
        f"{time.strftime('%Y-%m-%d')}, {platform.node()} ({cpus:.0f} CPUs), "
        f"{args.limit} problems of {args.dataset} from {args.offset}"
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
