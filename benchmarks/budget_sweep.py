"""The speculative budget's knob on the simulator: SPEX at several policy.max_slowdown values
against the old fixed-context roofline knee, mean over seeds (modeled).

    .venv/bin/python benchmarks/budget_sweep.py --searches REBASE-16 MCTS-10 --concurrency 4 16 \\
        --budgets knee 0.15 0.25 0.5 --seeds 0 1 2

For each cell (engine x search x concurrent queries) and seed, the baseline runs once on the
seed's problems, then SPEX (speculation + the utility allocator) once per budget: a number is a
policy.max_slowdown (the budget from marginal cost, engines/capacity.py), `knee` the engine's
roofline knee fixed with policy.knee (the budget before the marginal-cost one). Prints, per
cell, the oracle's speedup and each budget's mean SPEX speedup with its share of the oracle's
gain, (SPEX - 1) / (oracle - 1), and the min and max over the seeds.
"""

from __future__ import annotations

import argparse
import statistics

from sim_common import SEARCHES, TARGETS, VARIANTS, measure, sim_config

from spex_ray.sim import oracle, simulate
from spex_ray.sim.engine import SimEngine
from spex_ray.sim.workload import sim_problems


def budget_overrides(budget: str, target: str, search: str, concurrency: int) -> list[str]:
    if budget == "knee":
        knee = SimEngine(sim_config(target, search, concurrency).policy).knee()
        return [f"policy.knee={knee}"]
    return [f"policy.max_slowdown={float(budget)}"]


def cell(target: str, search: str, concurrency: int, budgets: list[str], seeds: list[int]) -> str:
    speedups: dict[str, list[float]] = {b: [] for b in budgets}
    oracles = []
    for seed in seeds:
        problems = sim_problems(max(8, 2 * concurrency), seed=seed)
        base_config = sim_config(target, search, concurrency, [f"run.seed={seed}"])
        baseline = simulate(base_config, problems)
        oracles.append(
            oracle(base_config, problems, baseline).questions_per_minute / baseline.questions_per_minute
        )
        for budget in budgets:
            overrides = [f"run.seed={seed}", *budget_overrides(budget, target, search, concurrency)]
            config = sim_config(target, search, concurrency, [*overrides, *VARIANTS["spec+alloc"]])
            speedups[budget].append(measure(simulate(config, problems), baseline, config)["speedup"])
    best = statistics.mean(oracles)
    columns = [f"{best:.2f}x"]
    for budget in budgets:
        mean = statistics.mean(speedups[budget])
        share = (mean - 1) / (best - 1) if best > 1 else float("nan")
        columns.append(f"{mean:.2f}x ({share:.0%}; {min(speedups[budget]):.2f}-{max(speedups[budget]):.2f})")
    return f"| {target} | {search} | {concurrency} | " + " | ".join(columns) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--searches", nargs="+", default=["REBASE-16", "MCTS-10"], choices=list(SEARCHES))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--budgets", nargs="+", default=["knee", "0.15", "0.25", "0.5"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    names = ["knee (policy.knee)" if b == "knee" else f"max_slowdown {b}" for b in args.budgets]
    print(f"\nSPEX / baseline, mean over seeds {args.seeds} (share of the oracle's gain; min-max), modeled\n")
    print("| engine | search | queries | oracle | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for target in args.targets:
        for search in args.searches:
            for concurrency in args.concurrency:
                print(cell(target, search, concurrency, args.budgets, args.seeds), flush=True)


if __name__ == "__main__":
    main()
