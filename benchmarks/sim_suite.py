"""The simulator benchmark suite: SPEX vs baseline at GPU scale, one command per figure.

    .venv/bin/python benchmarks/sim_suite.py throughput   # {H100, A6000} x {REBASE-16, MCTS-10} x {1, 4, 16} queries
                                                          # x {confidence, PRM, PRM shared}: SPEX, oracle, share of gain
    .venv/bin/python benchmarks/sim_suite.py ablation     # speculation alone, + allocator, + early termination
    .venv/bin/python benchmarks/sim_suite.py specdecode   # SPEX x EAGLE / MTP token-level speculation
    .venv/bin/python benchmarks/sim_suite.py occupancy    # decode throughput over the roofline at the knee
    .venv/bin/python benchmarks/sim_suite.py sensitivity  # SPEX and the oracle vs step-length spread and answer depth
    .venv/bin/python benchmarks/sim_suite.py scale        # 1/4/16 simulated GPUs, 32 queries per GPU

Each writes benchmarks/results/<figure>.parquet (one row per seed and variant),
benchmarks/figures/<figure>.png and its section of BENCHMARKS.md. Every cell runs
`--seeds` seeds (default 5) on `--problems` problems (default 16, the same at every
concurrency level); tables show the mean with the min and max over the seeds.

`--set section.key=value` applies to every run after the presets of the target, search,
reward and variant; a --set that changes a key a preset owns (spex.speculate,
spex.allocator, spex.early_stop, reward.kind, search.width, run.seed, ...) is refused with
the preset named, since the row's label would no longer say what ran (see sim_common.py).
`--name` writes the figure under another name. All figures are modeled (see sim_common.py);
`scale` also runs the Ray path (sim_scale.py) to measure orchestration overhead and
allocator latency.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import defaultdict
from typing import Any

from sim_common import (
    REWARDS,
    SEARCHES,
    TARGETS,
    ConflictError,
    add_gain_share,
    compare_seeds,
    gain_share,
    markdown_table,
    save,
    spread,
    summarize,
)

from spex_ray.sim.workload import WorkloadParams

H100 = "H100 + Llama-3-8B"
SPEX = "spec+alloc"
GRID_REWARDS = ["confidence", "PRM", "PRM shared"]  # the throughput figure's rewards
SPREADS = (0.4, 0.5, 0.6, 0.7, 0.82)  # step_tokens_sigma values of the sensitivity figure
ANSWER_SCALES = (3.0, 5.0, 8.0)  # answer_scale values of the sensitivity figure


def _command() -> str:
    return ".venv/bin/python benchmarks/sim_suite.py " + shlex.join(sys.argv[1:])


def _title(args: argparse.Namespace, text: str) -> str:
    """The figure's title, with the --set overrides it ran under."""
    return f"{text} [{', '.join(args.set)}]" if args.set else text


def _rewards(args: argparse.Namespace) -> str:
    """', free PRM' in a throughput title when it ran other rewards than the grid's."""
    return "" if args.rewards == GRID_REWARDS else ", " + ", ".join(args.rewards)


def _num(key: str, digits: int = 1):
    return lambda row: f"{row[key]:.{digits}f}"


def _cells(args: argparse.Namespace, targets: list[str] | None = None):
    """(target, search, reward, concurrency) of every cell the arguments name."""
    for target in targets or args.targets:
        for search in args.searches:
            for reward in args.rewards:
                for concurrency in args.concurrency:
                    yield target, search, reward, concurrency


def _runs(args: argparse.Namespace, cell, variants: list[str], **options: Any) -> list[dict[str, Any]]:
    target, search, reward, concurrency = cell
    return compare_seeds(
        target,
        search,
        concurrency,
        variants,
        seeds=args.seeds,
        problems=args.problems,
        reward=reward,
        extra=options.pop("extra", args.set),
        **options,
    )


def _bars(rows: list[dict[str, Any]], ax, group: str, series: str, value: str = "speedup") -> None:
    """Bars of `value` per group and series, with min-max error bars where rows have them."""
    groups = list(dict.fromkeys(str(r[group]) for r in rows))
    names = list(dict.fromkeys(str(r[series]) for r in rows))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        by_group = {str(r[group]): r for r in rows if str(r[series]) == name}
        xs = [g + i * width for g in range(len(groups))]
        heights = [by_group[g][value] if g in by_group else 0.0 for g in groups]
        errors = None
        if all(f"{value}_min" in by_group.get(g, {}) for g in groups):
            errors = [
                [by_group[g][value] - by_group[g][f"{value}_min"] for g in groups],
                [by_group[g][f"{value}_max"] - by_group[g][value] for g in groups],
            ]
        ax.bar(xs, heights, width, yerr=errors, capsize=2, label=name)
    crowded = len(groups) > 12  # many cells: upright labels, a taller figure
    ticks = [g + width * (len(names) - 1) / 2 for g in range(len(groups))]
    ax.set_xticks(ticks, groups, fontsize=7, rotation=90 if crowded else 0)
    ax.figure.set_size_inches(max(9.0, 0.45 * len(groups)), 6.5 if crowded else 4.5)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel(f"{value} (vs baseline)" if value == "speedup" else value)
    ax.legend(fontsize=8)


def _variants_by_cell(rows: list[dict[str, Any]], ax) -> None:
    """Speedup bars (mean, min-max) of every non-baseline variant, grouped by (search, queries)."""
    cells = [
        dict(r, cell=f"{r['search']} c{r['concurrency']}")
        for r in summarize(rows)
        if r["variant"] != "baseline"
    ]
    _bars(cells, ax, "cell", "variant")


def _same_cell(rows, row, variant: str, by: tuple[str, ...] = ()) -> dict[str, Any]:
    keys = ("target", "search", "reward", "concurrency", "gpus", *by)
    return next(r for r in rows if r["variant"] == variant and all(r[k] == row[k] for k in keys))


def _gain_columns(summary: list[dict[str, Any]], by: tuple[str, ...] = ()) -> dict[str, Any]:
    """The SPEX / oracle / share-of-gain columns of a table of summarized SPEX rows."""

    def best(row):
        return _same_cell(summary, row, "oracle", by)

    return {
        "SPEX / baseline": lambda r: spread(r, "speedup"),
        "oracle / baseline": lambda r: spread(best(r), "speedup"),
        "SPEX of oracle": lambda r: f"{r['speedup'] / best(r)['speedup']:.0%}",
        "share of gain": lambda r: (
            f"{gain_share(r['speedup'], best(r)['speedup']):.0%} "
            f"({r['gain_share_min'] * 100:.0f} to {r['gain_share_max']:.0%})"
        ),
    }


# ----------------------------------------------------------------------------- figures


def throughput(args: argparse.Namespace) -> None:
    rows = []
    for cell in _cells(args):
        rows += _runs(args, cell, [SPEX], with_oracle=True)
    add_gain_share(rows, SPEX)
    summary = summarize(rows)
    table = markdown_table(
        [r for r in summary if r["variant"] == SPEX],
        {
            "engine": lambda r: r["target"],
            "search": lambda r: r["search"],
            "reward": lambda r: r["reward"],
            "queries": lambda r: str(r["concurrency"]),
            "baseline q/min": lambda r: f"{_same_cell(summary, r, 'baseline')['qpm']:.1f}",
            **_gain_columns(summary),
            "accuracy": lambda r: f"{r['accuracy']:.0%}",
            "hit rate": _num("hit_rate", 2),
        },
    )

    save(
        args.name or "throughput",
        rows,
        title=_title(
            args, "Throughput: SPEX (speculation + allocator) vs baseline and the oracle" + _rewards(args)
        ),
        command=_command(),
        table=table,
        plot=_throughput_plot,
        notes=THROUGHPUT_NOTES.format(seeds=args.seeds, problems=args.problems),
    )


def _throughput_plot(rows: list[dict[str, Any]], ax) -> None:
    """SPEX and oracle speedup bars (mean, min-max over the seeds) per cell."""
    bars = [
        dict(
            r,
            cell=f"{r['target'].split(' ')[0]} {r['search']} {r['reward']} c{r['concurrency']}",
            series="SPEX" if r["variant"] == SPEX else r["variant"],
        )
        for r in summarize(rows)
        if r["variant"] != "baseline"
    ]
    _bars(bars, ax, "cell", "series")


def ablation(args: argparse.Namespace) -> None:
    variants = ["speculate", "spec+alloc", "early stop", "SPEX (all)"]
    rows = []
    for cell in _cells(args, [H100]):
        rows += _runs(args, cell, variants)
    table = markdown_table(
        summarize(rows),
        {
            "search": lambda r: r["search"],
            "reward": lambda r: r["reward"],
            "queries": lambda r: str(r["concurrency"]),
            "variant": lambda r: r["variant"],
            "q/min": _num("qpm"),
            "vs baseline": lambda r: spread(r, "speedup"),
            "accuracy": lambda r: f"{r['accuracy']:.0%}",
            "hit rate": _num("hit_rate", 2),
            "spec tokens": _num("spec_tokens", 0),
            "wasted": _num("wasted_tokens", 0),
            "early stops": lambda r: f"{r['early_stops']:.1f}/{r['problems']:.0f}",
        },
    )
    save(
        args.name or "ablation",
        rows,
        title=_title(args, f"Ablation on {H100}"),
        command=_command(),
        table=table,
        plot=_variants_by_cell,
        notes=ABLATION_NOTES,
    )


def specdecode(args: argparse.Namespace) -> None:
    rows = []
    for cell in _cells(args, [H100]):
        plain = _runs(args, cell, [SPEX])
        base = {r["seed"]: r for r in plain if r["variant"] == "baseline"}
        for row in plain:
            row["variant"] = "SPEX" if row["variant"] == SPEX else row["variant"]
        rows += plain
        for method in args.methods:
            token_level = _runs(args, cell, [SPEX], extra=[*args.set, f"policy.sim.spec_decode={method}"])
            for row in token_level:
                row["variant"] = (
                    method.upper() if row["variant"] == "baseline" else f"SPEX + {method.upper()}"
                )
                row["speedup"] = row["qpm"] / base[row["seed"]]["qpm"]
            rows += token_level
    table = markdown_table(
        summarize(rows),
        {
            "search": lambda r: r["search"],
            "reward": lambda r: r["reward"],
            "queries": lambda r: str(r["concurrency"]),
            "variant": lambda r: r["variant"],
            "q/min": _num("qpm"),
            "vs baseline": lambda r: spread(r, "speedup"),
            "accuracy": lambda r: f"{r['accuracy']:.0%}",
        },
    )
    save(
        args.name or "specdecode",
        rows,
        title=_title(args, f"SPEX x token-level speculative decoding on {H100}"),
        command=_command(),
        table=table,
        plot=_variants_by_cell,
        notes=SPECDECODE_NOTES,
    )


def occupancy(args: argparse.Namespace) -> None:
    rows = []
    for cell in _cells(args):
        rows += _runs(args, cell, [SPEX])
    table = markdown_table(
        summarize(rows),
        {
            "engine": lambda r: r["target"],
            "search": lambda r: r["search"],
            "reward": lambda r: r["reward"],
            "queries": lambda r: str(r["concurrency"]),
            "variant": lambda r: r["variant"],
            "decode tokens/s": _num("decode_tokens_per_s", 0),
            "mean context": _num("mean_context", 0),
            "of roofline at knee": lambda r: spread(r, "occupancy", "{:.0%}"),
        },
    )

    def plot(rows, ax):
        series = defaultdict(list)
        for r in summarize(rows):
            series[(r["target"].split(" ")[0], r["search"], r["variant"])].append(
                (r["concurrency"], r["occupancy"])
            )
        for (gpu, search, variant), points in series.items():
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(
                xs,
                ys,
                marker="o",
                linestyle="-" if variant == "baseline" else "--",
                label=f"{gpu} {search} {variant}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent queries")
        ax.set_ylabel("decode throughput / roofline at knee")
        ax.legend(fontsize=6, ncol=2)

    save(
        args.name or "occupancy",
        rows,
        title=_title(args, "Engine occupancy: decode throughput over the roofline at the knee"),
        command=_command(),
        table=table,
        plot=plot,
        notes=OCCUPANCY_NOTES,
    )


def sensitivity(args: argparse.Namespace) -> None:
    """SPEX and the oracle as the workload's step-length spread and answer depth vary."""
    knobs = [("step_tokens_sigma", v) for v in args.spreads] + [
        ("answer_scale", v) for v in args.answer_scales
    ]
    rows, default_rows = [], []
    for parameter, value in knobs:
        is_default = value == getattr(WorkloadParams(), parameter)
        if not (is_default and default_rows):  # the default workload runs once, for both knobs
            workload = [] if is_default else [f"policy.sim.workload={{{parameter}: {value}}}"]
            cell_rows = [
                row
                for cell in _cells(args, [H100])
                for row in _runs(args, cell, [SPEX], with_oracle=True, extra=[*args.set, *workload])
            ]
            default_rows = cell_rows if is_default else default_rows
        else:
            cell_rows = [dict(row) for row in default_rows]
        rows += [dict(row, parameter=parameter, value=value) for row in cell_rows]
    by = ("parameter", "value")
    add_gain_share(rows, SPEX, by)
    summary = summarize(rows, by)
    table = markdown_table(
        [r for r in summary if r["variant"] == SPEX],
        {
            "workload": lambda r: f"{PARAMETER_NAMES[r['parameter']]} {r['value']:g}",
            "search": lambda r: r["search"],
            "queries": lambda r: str(r["concurrency"]),
            **_gain_columns(summary, by),
        },
    )

    def plot(rows, ax):
        for (parameter, search, concurrency), points in _sensitivity_series(rows).items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=f"{search} c{concurrency} vs {PARAMETER_NAMES[parameter]}")
        ax.set_xlabel("step-length log-sd / answer-depth Weibull scale")
        ax.set_ylabel("SPEX speedup (mean over seeds)")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.legend(fontsize=7)

    save(
        args.name or "sensitivity",
        rows,
        title=_title(args, f"Sensitivity of SPEX and the oracle to the workload on {H100}"),
        command=_command(),
        table=table,
        plot=plot,
        notes=SENSITIVITY_NOTES,
    )


def _sensitivity_series(rows: list[dict[str, Any]]) -> dict[tuple, list[tuple[float, float]]]:
    series: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for r in summarize(rows, ("parameter", "value")):
        if r["variant"] == SPEX:
            series[(r["parameter"], r["search"], r["concurrency"])].append((r["value"], r["speedup"]))
    return {key: sorted(points) for key, points in series.items()}


PARAMETER_NAMES = {"step_tokens_sigma": "step log-sd", "answer_scale": "answer scale"}

THROUGHPUT_NOTES = """
SPEX here = speculative path selection (lookahead 4) + the utility allocator; early
termination off, so the trees and answers are identical to the baseline's (lossless;
accuracy equal by construction). Oracle = the baseline's own trees replayed with perfect
foresight (every node issued the moment its parent exists, no barriers, unlimited slots):
no speculation scheme can beat it on these trees. Share of gain = (SPEX - 1) / (oracle - 1)
of the mean speedups, with the range of the per-seed shares. Each cell: mean of {seeds}
seeds (min-max), {problems} problems per seed, the same problems at every concurrency level.
Rewards: confidence = the policy's own token confidence (free); PRM = a 7B PRM
(Math-Shepherd's Mistral-7B) whose forward pass over every scored path, speculative ones
included, is modeled on a GPU of its own of the same type; PRM shared = the same PRM on the
policy's GPU, time-sharing it, with memory split 0.55 (policy) / 0.35 (PRM).
"""
ABLATION_NOTES = """
speculate = speculative path selection with static per-query slots (max_batch_size /
queries); spec+alloc = with the cluster allocator sharing the engine's budget;
early stop = adaptive early termination alone (alpha 1, stop_confidence 0.5);
SPEX (all) = all three. Only early termination changes the search (and so accuracy).
Each row: mean (min-max) over the seeds; early stops are per seed.
"""
SPECDECODE_NOTES = """
Token-level speculative decoding is modeled by its mean accepted tokens per verify step
(EAGLE 3.0, MTP 2.5 by default) and a draft pass costing 0.1 of a decode pass per draft
token (3 draft tokens). All ratios are against the plain baseline (no SPEX, no token-level
speculation) of the same cell and seed.
"""
OCCUPANCY_NOTES = """
Roofline at the knee = knee concurrency / decode-step time at the knee, for sequences of
the run's mean decode context: the decode rate at which the engine stops being
memory-bound (for Llemma-7B's full multi-head KV on an A6000, where KV memory runs out
first). Achieved = all generated tokens (speculative and wasted included) over the run's
makespan, so it can pass 100% slightly past the knee, where throughput still creeps up
as the fixed per-iteration overhead is shared by more sequences.
"""
SENSITIVITY_NOTES = """
One workload parameter moves at a time (policy.sim.workload), the rest at their defaults
(step log-sd 0.6, answer-depth Weibull scale 5, shape 2). Step log-sd = the spread of
step lengths (lognormal); answer scale = the depth around which answers appear (a larger
scale: deeper trees, more MCTS rollout steps, more barriers). Confidence reward, mean
(min-max) over the seeds.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    figures = {
        "throughput": throughput,
        "ablation": ablation,
        "specdecode": specdecode,
        "occupancy": occupancy,
        "sensitivity": sensitivity,
    }
    parser.add_argument("figure", choices=[*figures, "scale"])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--searches", nargs="+", default=None, choices=list(SEARCHES))
    parser.add_argument("--rewards", nargs="+", default=None, choices=list(REWARDS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per cell (0..N-1)")
    parser.add_argument("--problems", type=int, default=16, help="problems per cell and seed")
    parser.add_argument("--methods", nargs="+", default=["eagle", "mtp"], choices=["eagle", "mtp"])
    parser.add_argument("--spreads", type=float, nargs="+", default=list(SPREADS))
    parser.add_argument("--answer-scales", type=float, nargs="+", default=list(ANSWER_SCALES))
    parser.add_argument(
        "--set", action="append", default=[], help="config override for every run, e.g. policy.knee=200"
    )
    parser.add_argument("--name", default="", help="write the figure under this name (default: the figure's)")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 4, 16], help="scale: simulated GPU counts")
    parser.add_argument("--time-scale", type=float, default=10.0, help="scale: wall s per modeled s on Ray")
    args = parser.parse_args()
    defaults = {"throughput": [1, 4, 16], "occupancy": [1, 4, 16], "sensitivity": [1, 16], "scale": [32]}
    args.concurrency = args.concurrency or defaults.get(args.figure, [1, 16])
    args.searches = args.searches or (["REBASE-8"] if args.figure == "scale" else ["REBASE-16", "MCTS-10"])
    args.rewards = args.rewards or (GRID_REWARDS if args.figure == "throughput" else ["confidence"])
    try:
        if args.figure == "scale":
            from sim_scale import scale

            scale(args, _command())
            return
        figures[args.figure](args)
    except ConflictError as exc:
        parser.exit(2, f"sim_suite.py: {exc}\n")


if __name__ == "__main__":
    main()
