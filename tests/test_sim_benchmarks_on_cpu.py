"""The simulator benchmark helpers run, and their rows say what the figures claim."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from sim_common import compare, markdown_table, roofline_tokens_per_s, sim_config  # noqa: E402

from spex_ray.sim.settings import SimSettings  # noqa: E402
from spex_ray.sim.workload import sim_problems  # noqa: E402


def test_compare_runs_baseline_variants_and_oracle_on_the_same_problems():
    rows = compare(
        "H100 + Llama-3-8B",
        "MCTS-5",
        2,
        ["spec+alloc"],
        with_oracle=True,
        problems=sim_problems(3),
        log=lambda _: None,
    )
    base, spex, best = rows
    assert [r["variant"] for r in rows] == ["baseline", "spec+alloc", "oracle"]
    assert base["speedup"] == 1.0 and base["spec_tokens"] == 0
    assert spex["accuracy"] == base["accuracy"] == best["accuracy"]  # lossless: the same trees
    assert best["speedup"] >= spex["speedup"] > 1.0
    assert 0 < spex["occupancy"] <= 1.0 and spex["hit_rate"] > 0


def test_roofline_and_table_helpers():
    config = sim_config("A6000 + Llemma-7B", "REBASE-8", 1)
    assert SimSettings.of(config.policy).gpu == "a6000" and config.search.width == 8
    assert roofline_tokens_per_s(config) > 0
    lines = markdown_table([{"a": 1.5}], {"A": lambda r: f"{r['a']:.1f}"})
    assert lines == ["| A |", "|---|", "| 1.5 |"]


def test_the_figure_check_reads_every_recorded_command_and_names_each_difference():
    from check_figures import differences, figure_commands

    commands = figure_commands()
    assert commands["ablation"] == ("sim_suite", ["ablation", "--searches", "REBASE-16", "MCTS-10"])
    assert {"throughput", "oracle", "specdecode", "scale"} <= set(commands)
    assert commands["algorithms"][0] == "sim_algorithms"
    committed = [{"qpm": 1.0, "variant": "baseline"}, {"qpm": float("nan"), "variant": "spex"}]
    same = [{"qpm": 1.0, "variant": "baseline", "extra": 3}, {"qpm": float("nan"), "variant": "spex"}]
    assert differences(same, committed) == []
    moved = [{"qpm": 1.0, "variant": "baseline"}, {"qpm": 2.0, "variant": "spex"}]
    assert differences(moved, committed) == ["row 1 qpm: 2.0 (committed nan)"]
    assert differences(moved[:1], committed) == ["1 rows, 2 committed"]


def test_the_algorithm_figure_summarizes_each_cell_over_its_seeds():
    from sim_algorithms import summarize, table

    def run(seed, variant, speedup, accuracy=0.5):
        return dict(search="beam-4x4", concurrency=1, seed=seed, variant=variant, speedup=speedup,
                    accuracy=accuracy, hit_rate=0.5, early_stops=1, problems=8)  # fmt: skip

    rows = []
    for seed, (spex, best) in enumerate([(1.5, 2.0), (1.2, 1.4)]):
        rows += [run(seed, "baseline", 1.0), run(seed, "spec+alloc", spex), run(seed, "oracle", best)]
        rows.append(run(seed, "SPEX (all)", spex + 0.1, accuracy=0.25))
    (summary,) = summarize(rows)
    assert summary["share"] == pytest.approx([0.5, 0.5]) and summary["lossless"]  # (1.2 - 1) / (1.4 - 1)
    assert summary["early_stops"] == 2 and summary["problems"] == 16
    line = table([summary])[2]
    assert "| 1.35x (1.20x-1.50x) | 1.70x (1.40x-2.00x) | 50% (50%-50%) |" in line
    assert "| 50% (50%-50%) | 25% (25%-25%) |" in line
