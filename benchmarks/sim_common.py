"""Shared parts of the simulator benchmarks (sim_suite.py): configs, measured rows, outputs.

Every figure runs the baseline and the SPEX variants on the same problems and seeds, one
after the other in one process, on the discrete-event simulation (spex_ray.sim.cluster), so
the ratios are modeled and exactly reproducible. A cell (target, search, reward, queries)
runs once per seed: seed s draws its own problem set (sim_problems(n, seed=s), the same at
every concurrency level) and its own query seeds (run.seed=s); the tables show the mean
over the seeds with the min and max. Outputs per figure: a Parquet file in
benchmarks/results/ (one row per seed and variant), a PNG in benchmarks/figures/, and a
Markdown section in BENCHMARKS.md (replaced in place when the figure is run again).

Configs are built in layers: BASE, then the presets of the target, search, reward and
variant, then the command line's --set. A preset owns the keys it sets: a --set that gives
one of them another value is refused (ConflictError), since it would silently change what
the row's label says (e.g. `spex.speculate` is what makes a variant the baseline or SPEX;
`run.seed` and `run.concurrency` are the --seeds and --concurrency options). Any other
--set applies to every run, after the presets (so `--set spex.lookahead=2` reaches SPEX).
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from spex_ray.config import Config
from spex_ray.sim import SimRun, oracle, simulate
from spex_ray.sim.settings import SimSettings
from spex_ray.sim.workload import sim_problems

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "benchmarks" / "figures"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

TARGETS = {  # name -> (gpu, model)
    "H100 + Llama-3-8B": ("h100", "llama-3-8b"),
    "A6000 + Llemma-7B": ("a6000", "llemma-7b"),
}
SEARCHES = {
    "REBASE-8": ["search.algorithm=rebase", "search.width=8"],
    "REBASE-16": ["search.algorithm=rebase", "search.width=16"],
    "MCTS-5": ["search.algorithm=mcts", "search.rollouts=5", "search.expand_width=2"],
    "MCTS-10": ["search.algorithm=mcts", "search.rollouts=10", "search.expand_width=2"],
}
# The step reward: the policy's confidence (free), or a 7B PRM (Math-Shepherd's Mistral-7B)
# whose forward pass over every scored path is modeled (spex_ray/sim/prm.py), on a GPU of
# its own of the policy's type, or sharing the policy's GPU (time and memory split).
REWARDS = {
    "confidence": ["reward.kind=confidence"],
    "free PRM": ["reward.kind=sim"],  # the PRM's scores at no cost: what the PRM rows pay for
    "PRM": ["reward.kind=sim_prm", "reward.num_gpus=1"],
    "PRM shared": [
        "reward.kind=sim_prm",
        "reward.num_gpus=0.5",
        "policy.mem_fraction_static=0.55",
        "reward.mem_fraction_static=0.35",
    ],
}
VARIANTS = {
    "baseline": ["spex.speculate=false", "spex.early_stop=false"],
    # static slots: max_batch_size / concurrency
    "speculate": ["spex.speculate=true", "spex.allocator=off", "spex.early_stop=false"],
    "spec+alloc": ["spex.speculate=true", "spex.allocator=utility", "spex.early_stop=false"],
    "early stop": ["spex.speculate=false", "spex.early_stop=true"],
    "SPEX (all)": ["spex.speculate=true", "spex.allocator=utility", "spex.early_stop=true"],
}
BASE = [
    "policy.backend=sim",
    "policy.max_batch_size=1024",  # SGLang-like: KV memory, not a fixed cap, bounds the batch
    "policy.max_new_tokens=256",
    "search.max_depth=12",
    "search.max_path_tokens=2048",
    "spex.lookahead=4",  # read only when speculating
    "run.progress=off",
]
SEEDS = 5
PROBLEMS = 16  # per cell and seed, the same at every concurrency level


class ConflictError(ValueError):
    """A --set gives a key that a preset (target, search, reward, variant) owns another value."""


def sim_config(
    target: str,
    search: str,
    concurrency: int,
    overrides: Sequence[str] = (),
    *,
    variant: str = "baseline",
    reward: str = "confidence",
    seed: int = 0,
) -> Config:
    """BASE, the presets of target, search, reward and variant, then `overrides` (see the
    module docstring: an override may not change a key a preset owns)."""
    gpu, model = TARGETS[target]
    owned = [
        f"policy.sim.gpu={gpu}", f"policy.model={model}", f"run.concurrency={concurrency}",
        f"run.seed={seed}", *SEARCHES[search], *REWARDS[reward], *VARIANTS[variant],
    ]  # fmt: skip
    check_overrides(owned, overrides, f"{target} / {search} / {reward} / {variant}")
    return Config.load(None, [*BASE, *owned, *overrides])


def check_overrides(owned: Sequence[str], overrides: Sequence[str], label: str) -> None:
    """Raise ConflictError when an override gives an owned key another value."""
    values = dict(_assignment(item) for item in owned)
    for item in overrides:
        key, value = _assignment(item)
        if key in values and values[key] != value:
            raise ConflictError(
                f"--set {item} conflicts with {label}, which sets {key}={values[key]}; "
                f"the presets own {', '.join(sorted(values))}"
            )


def _assignment(item: str) -> tuple[str, Any]:
    key, _, raw = item.partition("=")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw.strip()


def problems_for(concurrency: int, minimum: int = 8, per_slot: int = 2) -> list[dict[str, str]]:
    """Enough problems that every concurrency slot runs `per_slot` queries (at least `minimum`)."""
    return sim_problems(max(minimum, per_slot * concurrency))


def roofline_tokens_per_s(config: Config, context_tokens: float = 1024) -> float:
    """Decode tokens/s of the engine at its knee for sequences of `context_tokens`: the
    rate where decoding stops being memory-bound (or KV memory runs out), the roofline's best."""
    timing = SimSettings.of(config.policy).timing(config.policy)
    context = max(1, round(context_tokens))
    knee = max(1, timing.knee(context))
    return knee / timing.decode_step_time(knee, context)


def measure(run: SimRun, baseline: SimRun | None, config: Config, **labels: Any) -> dict[str, Any]:
    """One result row: labels, modeled throughput, ratio to the baseline, SPEX accounting."""
    solutions = run.solutions
    spec_queries = [s for s in solutions if s.spec_requests]
    decode_rate = run.decode_tokens / run.makespan_s if run.makespan_s else 0.0
    qpm = run.questions_per_minute
    return {
        **labels,
        "problems": len(solutions),
        "qpm": qpm,
        "speedup": qpm / baseline.questions_per_minute if baseline else 1.0,
        "accuracy": run.accuracy,  # None only when nothing was graded (sim problems all have gold)
        "hit_rate": sum(s.hit_rate for s in spec_queries) / len(spec_queries) if spec_queries else 0.0,
        "spec_tokens": run.total("tokens_spec"),
        "wasted_tokens": run.total("tokens_wasted"),
        "early_stops": int(run.total("early_stopped")),
        "makespan_s": run.makespan_s,
        "mean_latency_s": sum(run.latencies_s.values()) / max(1, len(run.latencies_s)),
        "decode_tokens_per_s": decode_rate,
        "mean_context": run.mean_decode_context,
        "occupancy": decode_rate
        / (roofline_tokens_per_s(config, run.mean_decode_context) * len(run.engine_busy_s)),
    }


def compare(
    target: str,
    search: str,
    concurrency: int,
    variants: Sequence[str],
    *,
    extra: Sequence[str] = (),
    gpus: int = 1,
    with_oracle: bool = False,
    problems: list[dict[str, str]] | None = None,
    reward: str = "confidence",
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Baseline, then each variant (and the oracle), on the same problems and seeds."""
    problems = problems or problems_for(concurrency * gpus)
    labels = {
        "target": target, "search": search, "reward": reward, "concurrency": concurrency,
        "gpus": gpus, "seed": seed,
    }  # fmt: skip

    def config(variant: str) -> Config:
        return sim_config(
            target, search, concurrency * gpus, extra, variant=variant, reward=reward, seed=seed
        )

    base_config = config("baseline")
    baseline = simulate(base_config, problems, gpus)
    rows = [measure(baseline, baseline, base_config, variant="baseline", **labels)]
    for name in variants:
        if name == "baseline":
            continue
        run_config = config(name)
        rows.append(
            measure(simulate(run_config, problems, gpus), baseline, run_config, variant=name, **labels)
        )
    if with_oracle:
        best = oracle(base_config, problems, baseline, gpus)
        rows.append(measure(best, baseline, base_config, variant="oracle", **labels))
    for row in rows:
        log(
            f"{target} | {search} | {reward} | c{concurrency} x{gpus} | seed {seed} | {row['variant']}: "
            f"{row['qpm']:.1f} q/min, {row['speedup']:.2f}x, acc {_percent(row['accuracy'])}"
        )
    return rows


def compare_seeds(
    target: str,
    search: str,
    concurrency: int,
    variants: Sequence[str],
    *,
    seeds: int = SEEDS,
    problems: int = PROBLEMS,
    **options: Any,
) -> list[dict[str, Any]]:
    """compare() once per seed s, on the problem set of seed s (the same at every concurrency)."""
    rows = []
    for seed in range(seeds):
        rows += compare(
            target,
            search,
            concurrency,
            variants,
            problems=sim_problems(problems, seed=seed),
            seed=seed,
            **options,
        )
    return rows


CELL = ("target", "search", "reward", "concurrency", "gpus")  # what a table row is about
_SUMMARIZED = ("qpm", "speedup", "accuracy", "hit_rate", "spec_tokens", "wasted_tokens", "early_stops",
               "problems", "makespan_s", "mean_latency_s", "decode_tokens_per_s", "mean_context",
               "occupancy", "gain_share")  # fmt: skip


def summarize(rows: Sequence[dict[str, Any]], by: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per cell and variant (and the extra keys `by`): the mean of every figure over
    the seeds, `<figure>_min` and `<figure>_max`, and `seeds`. Cells keep their first order."""
    keys = (*CELL, *by, "variant")
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k) for k in keys)].append(row)
    summaries = []
    for key, group in groups.items():
        summary: dict[str, Any] = dict(zip(keys, key, strict=True))
        summary["seeds"] = len(group)
        for column in _SUMMARIZED:
            values = [r[column] for r in group if r.get(column) is not None]
            if values:
                summary[column] = statistics.fmean(values)
                summary[f"{column}_min"], summary[f"{column}_max"] = min(values), max(values)
        summaries.append(summary)
    return summaries


def add_gain_share(rows: Sequence[dict[str, Any]], variant: str, by: Sequence[str] = ()) -> None:
    """On each `variant` row, the oracle's speedup of its cell and seed (and keys `by`) and
    the share of the possible gain (speedup - 1) / (oracle - 1) that the variant takes."""
    keys = (*CELL, *by, "seed")
    best = {tuple(r[k] for k in keys): r["speedup"] for r in rows if r["variant"] == "oracle"}
    for row in rows:
        if row["variant"] == variant:
            row["oracle_speedup"] = best[tuple(row[k] for k in keys)]
            row["gain_share"] = gain_share(row["speedup"], row["oracle_speedup"])


def gain_share(speedup: float, oracle_speedup: float) -> float:
    """(speedup - 1) / (oracle - 1): the share of the oracle's gain (1 when the oracle gains nothing)."""
    return (speedup - 1) / (oracle_speedup - 1) if oracle_speedup > 1 + 1e-9 else 1.0


def spread(row: dict[str, Any], column: str, fmt: str = "{:.2f}x") -> str:
    """'mean (min-max)' of a summarized figure."""
    low, high = row[f"{column}_min"], row[f"{column}_max"]
    return f"{fmt.format(row[column])} ({fmt.format(low).rstrip('x%')}-{fmt.format(high)})"


def _percent(share: float | None) -> str:
    return f"{share:.0%}" if share is not None else "ungraded"


# ----------------------------------------------------------------------------- outputs


def save(
    name: str,
    rows: list[dict[str, Any]],
    *,
    title: str,
    command: str,
    table: list[str],
    plot: Callable[[list[dict[str, Any]], Any], None],
    notes: str = "",
) -> None:
    """Write results/<name>.parquet, figures/<name>.png and the BENCHMARKS.md section <name>."""
    import pyarrow.parquet as pq

    RESULTS.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    pq.write_table(as_table(rows), RESULTS / f"{name}.parquet")
    _plot(name, rows, title, plot)
    section = _section(name, title, command, table, notes)
    _replace_section(name, section)
    print(
        f"wrote benchmarks/results/{name}.parquet, benchmarks/figures/{name}.png, BENCHMARKS.md section {name}"
    )


def as_table(rows: Sequence[dict[str, Any]]):
    """The rows as one pyarrow Table over the union of their columns (first seen first), so a
    column only later rows have (the oracle's, SPEX's share of gain) is kept; missing = null."""
    import pyarrow as pa

    columns = list(dict.fromkeys(column for row in rows for column in row))
    return pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])


def markdown_table(
    rows: list[dict[str, Any]], columns: dict[str, Callable[[dict[str, Any]], str]]
) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row) for fmt in columns.values()) + " |" for row in rows]
    return lines


def _plot(name: str, rows: list[dict[str, Any]], title: str, plot: Callable) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    plot(rows, ax)
    ax.set_title(f"{title} (modeled)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(FIGURES / f"{name}.png", dpi=110)
    plt.close(fig)


def _section(name: str, title: str, command: str, table: list[str], notes: str) -> str:
    machine = f"{platform.node()}, {platform.machine()}, Python {platform.python_version()}"
    lines = [
        f"<!-- sim:{name} -->",
        f"### {title} (modeled)",
        "",
        "```",
        command,
        "```",
        "",
        f"{time.strftime('%Y-%m-%d')}, run on {machine}; simulated engines in modeled time. "
        f"Data: `benchmarks/results/{name}.parquet`; plot: `benchmarks/figures/{name}.png`.",
        "",
        f"![{title}](benchmarks/figures/{name}.png)",
        "",
        *table,
    ]
    if notes:
        lines += ["", notes.strip()]
    lines.append(f"<!-- /sim:{name} -->")
    return "\n".join(lines)


def _replace_section(name: str, section: str) -> None:
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- sim:{re.escape(name)} -->.*?<!-- /sim:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS_MD.write_text(text)
