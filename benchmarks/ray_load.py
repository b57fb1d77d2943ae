"""Load through Ray: a large batch on many simulated engines, every row back, driver memory flat.

    .venv/bin/python benchmarks/ray_load.py                                  # 1,000 queries, 16 engines
    .venv/bin/python benchmarks/ray_load.py --queries 200 --engines 8 --concurrency 32

spex_ray.solve() on the sim backend (policy.num_engines engine actors, each a SimEngine
pacing modeled time at `--time-scale` wall seconds per modeled second, the tree actors, the
BudgetAllocator actor with SPEX on), on a local Ray instance with enough logical CPUs for
every actor. A thread samples the driver's resident memory (RSS) and the rows journaled so
far every `--sample-s` seconds. Prints the times (Ray and actor start, first row, all rows),
the memory curve, and the memory growth per 100 rows after the first tenth of the batch
(imports, Ray's client state and the first queries settle by then) until the last row; a
driver whose memory grew with the batch would show it there. The end figure includes
writing results.parquet and trace.parquet (pyarrow), after the last row. Measured, wall-clock: the machine's load shows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import ray

from spex_ray.api import solve
from spex_ray.sim.workload import sim_problems

SEARCH = [
    "policy.backend=sim", "reward.kind=sim", "policy.max_batch_size=256", "policy.max_new_tokens=128",
    "search.algorithm=rebase", "search.width=4", "search.max_depth=6", "search.max_path_tokens=1024",
    "spex.speculate=true", "spex.allocator=utility", "spex.lookahead=2", "run.progress=off",
]  # fmt: skip


class Sampler(threading.Thread):
    """(seconds since start, driver RSS in MiB, rows journaled) every `every_s` seconds."""

    def __init__(self, results: Path, every_s: float) -> None:
        super().__init__(daemon=True)
        self.results, self.every_s = results, every_s
        self.samples: list[tuple[float, float, int]] = []
        self.started = time.perf_counter()
        self._halt = threading.Event()
        self._process = psutil.Process()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every_s)

    def sample(self) -> None:
        rows = sum(1 for _ in self.results.open()) if self.results.exists() else 0
        rss = self._process.memory_info().rss / 2**20
        self.samples.append((time.perf_counter() - self.started, rss, rows))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def load_test(
    queries: int, engines: int, concurrency: int, time_scale: float, every_s: float
) -> dict[str, Any]:
    """Run the batch; the figures of one run (see the module docstring)."""
    problems = sim_problems(queries)
    out = Path(tempfile.mkdtemp(prefix="spex-ray-load-"))
    overrides = [
        *SEARCH,
        f"policy.num_engines={engines}",
        f"policy.sim.time_scale={time_scale}",
        f"run.concurrency={concurrency}",
        f"run.output={out}",
    ]
    began = time.perf_counter()
    ray.init(address="local", num_cpus=engines + 4, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - began
    sampler = Sampler(out / "results.jsonl", every_s)
    sampler.start()
    try:
        run = solve(problems, None, overrides)
    finally:
        sampler.stop()
        ray.shutdown()
    total_s = time.perf_counter() - began
    ids = {s.id for s in run.solutions}
    failed = [s.id for s in run.solutions if s.status != "ok"]
    return {
        "queries": queries,
        "engines": engines,
        "concurrency": concurrency,
        "time_scale": time_scale,
        "rows": len(run.solutions),
        "every_row": ids == {p["id"] for p in problems},
        "failed_rows": len(failed),
        "ray_start_s": ray_start_s,
        "first_row_s": next((t for t, _, rows in sampler.samples if rows), None),
        "solve_s": run.elapsed_s,
        "total_s": total_s,
        "queries_per_s": queries / (total_s - ray_start_s),
        **memory_figures(sampler.samples, queries),
        "samples": sampler.samples,
    }


def memory_figures(samples: list[tuple[float, float, int]], queries: int) -> dict[str, float]:
    """RSS at the start, peak and end (after the Parquet files are written), and the growth
    per 100 rows while the batch runs, once a tenth of the rows are in."""
    settled = [(rss, rows) for _, rss, rows in samples if queries / 10 <= rows < queries]
    growth = 0.0
    if len(settled) >= 2 and settled[-1][1] > settled[0][1]:
        growth = (settled[-1][0] - settled[0][0]) / (settled[-1][1] - settled[0][1]) * 100
    return {
        "rss_start_mib": samples[0][1],
        "rss_peak_mib": max(rss for _, rss, _ in samples),
        "rss_end_mib": samples[-1][1],
        "rss_settled_mib": settled[0][0] if settled else samples[0][1],
        "rss_growth_mib_per_100_rows": growth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--engines", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--time-scale", type=float, default=0.01, help="wall seconds per modeled second")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = load_test(args.queries, args.engines, args.concurrency, args.time_scale, args.sample_s)
    for key, value in figures.items():
        if key != "samples":
            print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    print("memory curve (s, driver RSS MiB, rows):")
    print(", ".join(f"({t:.0f}, {rss:.0f}, {rows})" for t, rss, rows in figures["samples"]))
    if args.json:
        args.json.write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
