"""The simulator benchmark suite: SPEX vs baseline at GPU scale, one command per figure.

    .venv/bin/python benchmarks/sim_suite.py throughput   # REBASE-8/16, MCTS-5/10 x 1/4/8/16 queries, 2 GPUs
    .venv/bin/python benchmarks/sim_suite.py ablation     # speculation alone, + allocator, + early termination
    .venv/bin/python benchmarks/sim_suite.py specdecode   # SPEX x EAGLE / MTP token-level speculation
    .venv/bin/python benchmarks/sim_suite.py oracle       # SPEX's speedup as a fraction of perfect foresight
    .venv/bin/python benchmarks/sim_suite.py occupancy    # decode throughput over the roofline at the knee
    .venv/bin/python benchmarks/sim_suite.py scale        # 1/4/16 simulated GPUs, 32 queries per GPU

Each writes benchmarks/results/<figure>.parquet, benchmarks/figures/<figure>.png and its
section of BENCHMARKS.md. `--set section.key=value` applies to every run (e.g.
`--set policy.knee=200`); `--name` writes the figure under another name. All figures are modeled (see sim_common.py); `scale` also runs
the Ray path (sim_scale.py) to measure orchestration overhead and allocator latency.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import defaultdict
from typing import Any

from sim_common import SEARCHES, TARGETS, compare, markdown_table, save

H100 = "H100 + Llama-3-8B"


def _command() -> str:
    return ".venv/bin/python benchmarks/sim_suite.py " + shlex.join(sys.argv[1:])


def _title(args: argparse.Namespace, text: str) -> str:
    """The figure's title, with the --set overrides it ran under."""
    return f"{text} [{', '.join(args.set)}]" if args.set else text


def _x(key: str):
    return lambda row: f"{row[key]:.2f}x"


def _pct(key: str):
    return lambda row: f"{row[key]:.0%}"


def _num(key: str, digits: int = 1):
    return lambda row: f"{row[key]:.{digits}f}"


def _bars(rows: list[dict[str, Any]], ax, group: str, series: str, value: str = "speedup") -> None:
    groups = list(dict.fromkeys(str(r[group]) for r in rows))
    names = list(dict.fromkeys(str(r[series]) for r in rows))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = {str(r[group]): r[value] for r in rows if str(r[series]) == name}
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, [values.get(g, 0.0) for g in groups], width, label=name)
    ax.set_xticks([g + width * (len(names) - 1) / 2 for g in range(len(groups))], groups, fontsize=8)
    ax.figure.set_size_inches(max(9.0, 0.85 * len(groups)), 4.5)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel(f"{value} (vs baseline)" if value == "speedup" else value)
    ax.legend(fontsize=8)


def _variants_by_cell(rows: list[dict[str, Any]], ax) -> None:
    """Speedup bars of every non-baseline variant, grouped by (search, queries)."""
    cells = [dict(r, cell=f"{r['search']} c{r['concurrency']}") for r in rows if r["variant"] != "baseline"]
    _bars(cells, ax, "cell", "variant")


# ----------------------------------------------------------------------------- figures


def throughput(args: argparse.Namespace) -> None:
    rows = []
    for target in args.targets:
        for search in args.searches:
            for concurrency in args.concurrency:
                cell = compare(target, search, concurrency, ["spec+alloc"], with_oracle=True, extra=args.set)
                base, spex, best = cell
                spex["oracle_speedup"] = best["speedup"]
                spex["of_oracle"] = spex["speedup"] / best["speedup"]
                rows += [base, spex, best]
    table = markdown_table(
        [r for r in rows if r["variant"] == "spec+alloc"],
        {
            "engine": lambda r: r["target"],
            "search": lambda r: r["search"],
            "queries": lambda r: str(r["concurrency"]),
            "baseline q/min": lambda r: f"{_base(rows, r)['qpm']:.1f}",
            "SPEX q/min": _num("qpm"),
            "SPEX / baseline": _x("speedup"),
            "oracle / baseline": _x("oracle_speedup"),
            "SPEX of oracle": _pct("of_oracle"),
            "accuracy (both)": lambda r: f"{_base(rows, r)['accuracy']:.0%} / {r['accuracy']:.0%}",
            "hit rate": _num("hit_rate", 2),
        },
    )

    def plot(rows, ax):
        bars = [
            dict(
                r,
                cell=f"{r['search']}\nc{r['concurrency']}",
                series=f"{r['target'].split(' ')[0]} {_name(r)}",
            )
            for r in rows
            if r["variant"] != "baseline"
        ]
        _bars(bars, ax, "cell", "series")

    save(
        args.name or "throughput",
        rows,
        title=_title(args, "Throughput: SPEX (speculation + allocator) vs baseline"),
        command=_command(),
        table=table,
        plot=plot,
        notes=THROUGHPUT_NOTES,
    )


def ablation(args: argparse.Namespace) -> None:
    variants = ["speculate", "spec+alloc", "early stop", "SPEX (all)"]
    rows = []
    for search in args.searches:
        for concurrency in args.concurrency:
            rows += compare(H100, search, concurrency, variants, extra=args.set)
    table = markdown_table(
        rows,
        {
            "search": lambda r: r["search"],
            "queries": lambda r: str(r["concurrency"]),
            "variant": lambda r: r["variant"],
            "q/min": _num("qpm"),
            "vs baseline": _x("speedup"),
            "accuracy": _pct("accuracy"),
            "hit rate": _num("hit_rate", 2),
            "spec tokens": _num("spec_tokens", 0),
            "wasted": _num("wasted_tokens", 0),
            "early stops": lambda r: f"{r['early_stops']}/{r['problems']}",
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
    for method in args.methods:
        token_level = [f"policy.sim.spec_decode={method}"]
        for search in args.searches:
            for concurrency in args.concurrency:
                base, spex = compare(H100, search, concurrency, ["spec+alloc"], extra=args.set)
                tl_base, tl_spex = compare(
                    H100, search, concurrency, ["spec+alloc"], extra=[*args.set, *token_level]
                )
                for row, variant in (
                    (spex, "SPEX"),
                    (tl_base, method.upper()),
                    (tl_spex, f"SPEX + {method.upper()}"),
                ):
                    row["variant"] = variant
                    row["speedup"] = row["qpm"] / base["qpm"]
                rows += [base, tl_base, spex, tl_spex]
    table = markdown_table(
        rows,
        {
            "search": lambda r: r["search"],
            "queries": lambda r: str(r["concurrency"]),
            "variant": lambda r: r["variant"],
            "q/min": _num("qpm"),
            "vs baseline": _x("speedup"),
            "accuracy": _pct("accuracy"),
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


def oracle_figure(args: argparse.Namespace) -> None:
    rows = []
    for search in args.searches:
        for concurrency in args.concurrency:
            base, spex, best = compare(
                H100, search, concurrency, ["spec+alloc"], with_oracle=True, extra=args.set
            )
            spex["of_oracle"] = spex["speedup"] / best["speedup"]
            spex["gain_of_oracle"] = (spex["speedup"] - 1) / max(1e-9, best["speedup"] - 1)
            rows += [base, spex, best]
    spex_rows = [r for r in rows if r["variant"] == "spec+alloc"]
    table = markdown_table(
        spex_rows,
        {
            "search": lambda r: r["search"],
            "queries": lambda r: str(r["concurrency"]),
            "SPEX / baseline": _x("speedup"),
            "oracle / baseline": lambda r: f"{_oracle(rows, r)['speedup']:.2f}x",
            "SPEX speedup / oracle speedup": _pct("of_oracle"),
            "SPEX gain / oracle gain": _pct("gain_of_oracle"),
            "hit rate": _num("hit_rate", 2),
        },
    )

    save(
        args.name or "oracle",
        rows,
        title=_title(args, f"SPEX vs the oracle (perfect foresight, unlimited slots) on {H100}"),
        command=_command(),
        table=table,
        plot=_variants_by_cell,
        notes=ORACLE_NOTES,
    )


def occupancy(args: argparse.Namespace) -> None:
    rows = []
    for target in args.targets:
        for search in args.searches:
            for concurrency in args.concurrency:
                rows += compare(target, search, concurrency, ["spec+alloc"], extra=args.set)
    table = markdown_table(
        rows,
        {
            "engine": lambda r: r["target"],
            "search": lambda r: r["search"],
            "queries": lambda r: str(r["concurrency"]),
            "variant": lambda r: r["variant"],
            "decode tokens/s": _num("decode_tokens_per_s", 0),
            "mean context": _num("mean_context", 0),
            "of roofline at knee": _pct("occupancy"),
        },
    )

    def plot(rows, ax):
        series = defaultdict(list)
        for r in rows:
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


def _name(row: dict[str, Any]) -> str:
    return "SPEX" if row["variant"] == "spec+alloc" else row["variant"]


def _base(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    return _same_cell(rows, row, "baseline")


def _oracle(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    return _same_cell(rows, row, "oracle")


def _same_cell(rows, row, variant: str) -> dict[str, Any]:
    keys = ("target", "search", "concurrency", "gpus")
    return next(r for r in rows if r["variant"] == variant and all(r[k] == row[k] for k in keys))


THROUGHPUT_NOTES = """
SPEX here = speculative path selection (lookahead 4) + the utility allocator (knee from
the roofline); early termination off, so the trees and answers are identical to the
baseline's (lossless; accuracy equal by construction). Oracle = the baseline's own trees
replayed with perfect foresight (every node issued the moment its parent exists, no
barriers, unlimited slots): no speculation scheme can beat it on these trees.
"""
ABLATION_NOTES = """
speculate = speculative path selection with static per-query slots (max_batch_size /
queries); spec+alloc = with the cluster allocator sharing the engine's knee budget;
early stop = adaptive early termination alone (alpha 1, stop_confidence 0.5);
SPEX (all) = all three. Only early termination changes the search (and so accuracy).
"""
SPECDECODE_NOTES = """
Token-level speculative decoding is modeled by its mean accepted tokens per verify step
(EAGLE 3.0, MTP 2.5 by default) and a draft pass costing 0.1 of a decode pass per draft
token (3 draft tokens). All ratios are against the plain baseline (no SPEX, no token-level
speculation) of the same cell.
"""
ORACLE_NOTES = """
SPEX speedup / oracle speedup is the fraction of the oracle's throughput SPEX reaches;
SPEX gain / oracle gain = (SPEX - 1) / (oracle - 1) is the share of the possible gain.
"""
OCCUPANCY_NOTES = """
Roofline at the knee = knee concurrency / decode-step time at the knee, for sequences of
the run's mean decode context: the decode rate at which the engine stops being
memory-bound (for Llemma-7B's full multi-head KV on an A6000, where KV memory runs out
first). Achieved = all generated tokens (speculative and wasted included) over the run's
makespan, so it can pass 100% slightly past the knee, where throughput still creeps up
as the fixed per-iteration overhead is shared by more sequences.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "figure", choices=["throughput", "ablation", "specdecode", "oracle", "occupancy", "scale"]
    )
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--searches", nargs="+", default=None, choices=list(SEARCHES))
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=["eagle", "mtp"], choices=["eagle", "mtp"])
    parser.add_argument(
        "--set", action="append", default=[], help="config override for every run, e.g. policy.knee=200"
    )
    parser.add_argument("--name", default="", help="write the figure under this name (default: the figure's)")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 4, 16], help="scale: simulated GPU counts")
    parser.add_argument("--time-scale", type=float, default=10.0, help="scale: wall s per modeled s on Ray")
    args = parser.parse_args()
    defaults = {"throughput": [1, 4, 8, 16], "occupancy": [1, 4, 8, 16], "scale": [32]}
    args.concurrency = args.concurrency or defaults.get(args.figure, [1, 8])
    args.searches = args.searches or (["REBASE-8"] if args.figure == "scale" else list(SEARCHES))
    if args.figure == "scale":
        from sim_scale import scale

        scale(args, _command())
        return
    figures = {
        "throughput": throughput,
        "ablation": ablation,
        "specdecode": specdecode,
        "oracle": oracle_figure,
        "occupancy": occupancy,
    }
    figures[args.figure](args)


if __name__ == "__main__":
    main()
