"""Shared parts of the simulator benchmarks (sim_suite.py): configs, measured rows, outputs.

Every figure runs the baseline and the SPEX variants on the same problems and seeds, one
after the other in one process, on the discrete-event simulation (spex_ray.sim.cluster), so
the ratios are modeled and exactly reproducible. Outputs per figure: a Parquet file in
benchmarks/results/, a PNG in benchmarks/figures/, and a Markdown section in BENCHMARKS.md
(replaced in place when the figure is run again).
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
SPECULATE = ["spex.speculate=true", "spex.lookahead=4"]
VARIANTS = {
    "baseline": [],
    "speculate": [*SPECULATE, "spex.allocator=off"],  # static slots: max_batch_size / concurrency
    "spec+alloc": [*SPECULATE, "spex.allocator=utility"],
    "early stop": ["spex.early_stop=true"],
    "SPEX (all)": [*SPECULATE, "spex.allocator=utility", "spex.early_stop=true"],
}
BASE = [
    "policy.backend=sim",
    "reward.kind=sim",
    "policy.max_batch_size=1024",  # SGLang-like: KV memory, not a fixed cap, bounds the batch
    "policy.max_new_tokens=256",
    "search.max_depth=12",
    "search.max_path_tokens=2048",
    "run.progress=off",
]


def sim_config(target: str, search: str, concurrency: int, overrides: Sequence[str] = ()) -> Config:
    gpu, model = TARGETS[target]
    return Config.load(
        None,
        [*BASE, f"policy.sim.gpu={gpu}", f"policy.model={model}", f"run.concurrency={concurrency}",
         *SEARCHES[search], *overrides],
    )  # fmt: skip


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
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Baseline, then each variant (and the oracle), on the same problems and seeds."""
    problems = problems or problems_for(concurrency * gpus)
    labels = {"target": target, "search": search, "concurrency": concurrency, "gpus": gpus}
    base_config = sim_config(target, search, concurrency * gpus, extra)
    baseline = simulate(base_config, problems, gpus)
    rows = [measure(baseline, baseline, base_config, variant="baseline", **labels)]
    for name in variants:
        if name == "baseline":
            continue
        config = sim_config(target, search, concurrency * gpus, [*extra, *VARIANTS.get(name, [])])
        rows.append(measure(simulate(config, problems, gpus), baseline, config, variant=name, **labels))
    if with_oracle:
        rows.append(
            measure(
                oracle(base_config, problems, baseline, gpus),
                baseline,
                base_config,
                variant="oracle",
                **labels,
            )
        )
    for row in rows:
        log(
            f"{target} | {search} | c{concurrency} x{gpus} | {row['variant']}: {row['qpm']:.1f} q/min, "
            f"{row['speedup']:.2f}x, acc {_percent(row['accuracy'])}"
        )
    return rows


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
    import pyarrow as pa
    import pyarrow.parquet as pq

    RESULTS.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), RESULTS / f"{name}.parquet")
    _plot(name, rows, title, plot)
    section = _section(name, title, command, table, notes)
    _replace_section(name, section)
    print(
        f"wrote benchmarks/results/{name}.parquet, benchmarks/figures/{name}.png, BENCHMARKS.md section {name}"
    )


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
