"""Fit the simulated workload to the trace.parquet of real runs and write it as YAML.

    .venv/bin/python benchmarks/calibrate_workload.py runs/bench/*/trace.parquet \
        --out configs/workloads/smollm2_gsm8k.yaml

Prints the fitted step-length distribution and answer-depth hazard (see
spex_ray/sim/calibrate.py); the YAML is what `policy.sim.workload` reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from spex_ray.sim.calibrate import calibrate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("traces", nargs="+", help="trace.parquet files of real runs")
    parser.add_argument("--out", default="", help="write the fitted WorkloadParams overrides here (YAML)")
    args = parser.parse_args()
    rows = [row for path in args.traces for row in pq.read_table(path).to_pylist()]
    params, steps, depth = calibrate(rows)
    print(
        f"{len(args.traces)} traces, {steps.n} primary requests, {steps.censored:.0%} cut at max_new_tokens"
    )
    print(
        f"step tokens: median {steps.median:.1f}, mean {steps.mean:.1f}, log-sd {steps.sigma:.2f} (lognormal MLE)"
    )
    if depth is None:
        print("answer depth: not fitted (traces without `answered`, or answers at fewer than two depths)")
    else:
        hazard = ", ".join(f"d{d}: {h:.2f} of {depth.nodes[d]}" for d, h in depth.hazard.items())
        print(f"answer hazard by depth: {hazard} (mean {depth.mean_hazard:.3f})")
        print(f"answer depth: Weibull scale {depth.scale:.2f}, shape {depth.shape:.2f}")
        if not depth.has_trend:
            print(
                "answer depth: no rise with depth in these traces; the sim keeps its answer-depth parameters"
            )
    print(yaml.safe_dump(params, sort_keys=False).strip())
    if args.out:
        sources = ", ".join(args.traces)
        text = f"# WorkloadParams fitted by benchmarks/calibrate_workload.py from: {sources}\n"
        Path(args.out).write_text(text + yaml.safe_dump(params, sort_keys=False))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
