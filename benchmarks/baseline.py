"""Baseline throughput: REBASE and MCTS (SPEX off) on the first N GSM8K problems.

    .venv/bin/python benchmarks/baseline.py --limit 10

Runs each search in one process on the same engine settings, problems and seeds, and
prints a Markdown table (accuracy, questions/minute, generated tokens/s, mean engine
batch occupancy) to paste into BENCHMARKS.md. Extra `--set` overrides apply to all runs.
"""

from __future__ import annotations

import argparse
import platform
import time

import ray

from spex_ray.api import solve
from spex_ray.config import Config

SEARCHES = {
    "REBASE w4": ["search.algorithm=rebase", "search.width=4"],
    "MCTS 4 rollouts": ["search.algorithm=mcts", "search.rollouts=4", "search.expand_width=2"],
}


def run(name: str, overrides: list[str], args: argparse.Namespace) -> dict:
    out = f"runs/bench/baseline-{name.split()[0].lower()}"
    config = Config.load(
        args.config,
        [*overrides, f"task.dataset={args.dataset}", f"task.limit={args.limit}", f"run.output={out}",
         "run.resume=false", f"run.concurrency={args.concurrency}", "run.progress=log", *args.set],
    )  # fmt: skip
    result = solve(None, config)
    tokens = sum(s.tokens_main + s.tokens_spec for s in result.solutions)
    stats = result.engine_stats[0]
    return {
        "search": name,
        "accuracy": result.accuracy or 0.0,
        "errors": sum(s.status != "ok" for s in result.solutions),
        "qpm": result.questions_per_minute,
        "tokens_per_s": tokens / result.elapsed_s,
        "occupancy": stats["mean_batch_occupancy"],
        "elapsed_s": result.elapsed_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    ray.init(log_to_driver=False)
    rows = [run(name, overrides, args) for name, overrides in SEARCHES.items()]
    print(f"\n{time.strftime('%Y-%m-%d')} on {platform.node()} ({ray.cluster_resources().get('CPU', 0):.0f} CPUs), "
          f"{args.limit} problems of {args.dataset}, concurrency {args.concurrency}\n")  # fmt: skip
    print("| search | accuracy | questions/min | tokens/s | mean batch occupancy | errors | wall s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['search']} | {r['accuracy']:.0%} | {r['qpm']:.2f} | {r['tokens_per_s']:.1f} "
            f"| {r['occupancy']:.2f} | {r['errors']} | {r['elapsed_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
