"""What simulate() itself costs: CPU seconds per query with SPEX on and off, and peak memory
with and without the request traces kept.

    .venv/bin/python benchmarks/sim_cost.py                      # 64 queries, REBASE-16, H100 + Llama-3-8B
    .venv/bin/python benchmarks/sim_cost.py --queries 512 --search MCTS-10 --repeats 1

Each cell runs in a fresh Python process (so its peak RSS is its own): a 4-query warm-up run
first (imports, math-verify), then the measured batch of `--queries` at run.concurrency =
queries (one engine). CPU time is the process's (time.process_time), which a loaded machine
disturbs less than wall time; the cells run one after the other, `--repeats` times, and
the table gives the min and max. Peak RSS is ru_maxrss of the process. SPEX = speculation
(lookahead 4) + the utility allocator.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from sim_common import VARIANTS, sim_config

from spex_ray.sim import simulate
from spex_ray.sim.workload import sim_problems

TARGET = "H100 + Llama-3-8B"
CELLS = [("baseline", False), ("spec+alloc", False), ("baseline", True), ("spec+alloc", True)]


def one(search: str, queries: int, variant: str, keep_traces: bool) -> dict:
    """Run one cell in this process; its figures."""
    config = sim_config(TARGET, search, queries, VARIANTS[variant])
    problems = sim_problems(queries)
    simulate(sim_config(TARGET, search, 4, VARIANTS[variant]), problems[:4])  # warm-up
    started = time.process_time()
    run = simulate(config, problems, keep_traces=keep_traces)
    cpu = time.process_time() - started
    return {
        "variant": variant,
        "keep_traces": keep_traces,
        "cpu_s_per_query": cpu / queries,
        "requests": sum(s.requests for s in run.solutions),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "makespan_s": run.makespan_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--search", default="REBASE-16")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "KEEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.search, args.queries, args.one[0], args.one[1] == "1")))
        return
    rows = []
    for _ in range(args.repeats):
        for variant, keep in CELLS:
            command = [sys.executable, __file__, "--search", args.search, "--queries", str(args.queries)]
            out = subprocess.run(
                [*command, "--one", variant, str(int(keep))], check=True, capture_output=True
            )
            rows.append(json.loads(out.stdout.decode().strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    print(f"| {args.search}, {args.queries} queries | CPU s/query | requests | peak RSS MiB |")
    print("|---|---|---|---|")
    for variant, keep in CELLS:
        cell = [r for r in rows if r["variant"] == variant and r["keep_traces"] == keep]
        cpu = [r["cpu_s_per_query"] for r in cell]
        rss = [r["peak_rss_mib"] for r in cell]
        print(
            f"| {variant}, keep_traces={keep} | {min(cpu):.4f}-{max(cpu):.4f} | {cell[0]['requests']} "
            f"| {min(rss):.0f}-{max(rss):.0f} |"
        )


if __name__ == "__main__":
    main()
