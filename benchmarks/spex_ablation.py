"""SPEX vs baseline, technique by technique, in one process on the same problems and seeds.

    .venv/bin/python benchmarks/spex_ablation.py --limit 10 --concurrency 1 4

For each search (REBASE w4, MCTS 4 rollouts) and each concurrency, runs the baseline and
the SPEX variants alternately (`--repeats` rounds, order rotated each round) and prints
questions/minute relative to the baseline (the mean over rounds, and the min and max of the
rounds' own ratios), accuracy, hit rate, wasted tokens, and for variants with the allocator
the speculative budget the engine offered (time-weighted mean and max of the budget and of
the slots granted) with the mean offer at each MAIN load, which says why.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import ray
from common import add_common_args, header, run_once

SEARCHES = {
    "REBASE w4": ["search.algorithm=rebase", "search.width=4"],
    "MCTS 4": ["search.algorithm=mcts", "search.rollouts=4", "search.expand_width=2"],
}
VARIANTS = {
    "baseline": [],
    "speculate": ["spex.speculate=true"],
    "spec+alloc": ["spex.speculate=true", "spex.allocator=utility"],
    "early stop": ["spex.early_stop=true"],
    "all": ["spex.speculate=true", "spex.allocator=utility", "spex.early_stop=true"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=list(SEARCHES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    ray.init(log_to_driver=False)
    print(f"\n{header(args)}\n")
    print(
        "| search | conc | variant | q/min | vs baseline (min-max) | accuracy | hit rate | spec requests "
        "| spec tokens | wasted | early stops | budget mean / max | granted mean / max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    offers = []
    for search in args.searches:
        for concurrency in args.concurrency:
            rows = _alternate(search, concurrency, args)
            for line in _table(search, concurrency, rows, args.variants):
                print(line, flush=True)
            offers += _offers(search, concurrency, rows)
    print("\nMean speculative capacity offered at each MAIN load (MAIN sequences: SPEC offered):")
    print("\n".join(offers))


def _alternate(search: str, concurrency: int, args: argparse.Namespace) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = defaultdict(list)
    names = list(args.variants)
    for round_ in range(args.repeats):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            label = f"{search} {name}"
            rows[name].append(run_once(label, SEARCHES[search] + VARIANTS[name], args, concurrency))
    return rows


def _table(search: str, concurrency: int, rows: dict[str, list[dict]], names: list[str]) -> list[str]:
    def mean(name: str, key: str) -> float:
        return sum(r[key] for r in rows[name]) / len(rows[name])

    base = mean("baseline", "qpm") if "baseline" in rows else 0.0
    lines = []
    for name in names:
        ratio = mean(name, "qpm") / base if base else float("nan")
        rounds = _round_ratios(rows, name)
        spread = f" ({min(rounds):.2f}-{max(rounds):.2f})" if rounds else ""
        lines.append(
            f"| {search} | {concurrency} | {name} | {mean(name, 'qpm'):.2f} | {ratio:.2f}x{spread} "
            f"| {mean(name, 'accuracy'):.0%} | {mean(name, 'hit_rate'):.2f} | {mean(name, 'spec_requests'):.0f} "
            f"| {mean(name, 'spec_tokens'):.0f} | {mean(name, 'wasted_tokens'):.0f} | {mean(name, 'early_stops'):.1f} "
            f"| {mean(name, 'mean_budget'):.2f} / {max(r['max_budget'] for r in rows[name])} "
            f"| {mean(name, 'mean_granted'):.2f} / {max(r['max_granted'] for r in rows[name])} |"
        )
    return lines


def _round_ratios(rows: dict[str, list[dict]], name: str) -> list[float]:
    """Each round's q/min of `name` over the same round's baseline (empty without a baseline)."""
    pairs = zip(rows[name], rows.get("baseline", []), strict=False)
    return [r["qpm"] / b["qpm"] for r, b in pairs if b["qpm"]]


def _offers(search: str, concurrency: int, rows: dict[str, list[dict]]) -> list[str]:
    """One line per variant with an allocator: its mean offer by MAIN load over the rounds."""
    lines = []
    for name, runs in rows.items():
        by_main: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            for main, offer in run["offer_by_main"].items():
                by_main[int(main)].append(offer)
        if by_main:
            text = ", ".join(f"{m}: {sum(v) / len(v):.1f}" for m, v in sorted(by_main.items()))
            lines.append(f"- {search}, {concurrency} queries, {name}: {text}")
    return lines


if __name__ == "__main__":
    main()
