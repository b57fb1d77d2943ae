"""Baseline throughput: REBASE and MCTS with SPEX off on the first N GSM8K problems.

    .venv/bin/python benchmarks/baseline.py --limit 10

Prints a Markdown table (accuracy, questions/minute, generated tokens/s, mean engine batch
occupancy) for BENCHMARKS.md. Extra `--set` overrides apply to every run.
"""

from __future__ import annotations

import argparse

import ray
from common import add_common_args, header, run_once

SEARCHES = {
    "REBASE w4": ["search.algorithm=rebase", "search.width=4"],
    "MCTS 4 rollouts": ["search.algorithm=mcts", "search.rollouts=4", "search.expand_width=2"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    ray.init(log_to_driver=False)
    rows = [run_once(name, overrides, args, args.concurrency) for name, overrides in SEARCHES.items()]
    print(f"\n{header(args)}, concurrency {args.concurrency}\n")
    print("| search | accuracy | questions/min | tokens/s | mean batch occupancy | errors | wall s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['label']} | {r['accuracy']:.0%} | {r['qpm']:.2f} | {r['tokens_per_s']:.1f} "
            f"| {r['occupancy']:.2f} | {r['errors']} | {r['elapsed_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
