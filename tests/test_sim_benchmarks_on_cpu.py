"""The simulator benchmark helpers run, and their rows say what the figures claim."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from sim_common import (  # noqa: E402
    ConflictError,
    add_gain_share,
    as_table,
    compare,
    compare_seeds,
    markdown_table,
    roofline_tokens_per_s,
    sim_config,
    spread,
    summarize,
)

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
    assert all(r["reward"] == "confidence" and r["seed"] == 0 for r in rows)
    assert base["speedup"] == 1.0 and base["spec_tokens"] == 0
    assert spex["accuracy"] == base["accuracy"] == best["accuracy"]  # lossless: the same trees
    assert best["speedup"] >= spex["speedup"] > 1.0
    assert 0 < spex["occupancy"] <= 1.0 and spex["hit_rate"] > 0


def test_command_line_overrides_apply_after_the_presets_and_may_not_contradict_them():
    spex = sim_config("H100 + Llama-3-8B", "REBASE-16", 4, ["spex.lookahead=2"], variant="spec+alloc")
    assert (spex.spex.speculate, spex.spex.lookahead, spex.search.width) == (True, 2, 16)
    base = sim_config("H100 + Llama-3-8B", "REBASE-16", 4, ["spex.lookahead=2"])
    assert not base.spex.speculate and base.reward.kind == "confidence"
    prm = sim_config("A6000 + Llemma-7B", "MCTS-10", 1, ["reward.model=qwen2.5-math-prm-7b"], reward="PRM")
    assert (prm.reward.kind, prm.reward.model) == ("sim_prm", "qwen2.5-math-prm-7b")
    same = sim_config("H100 + Llama-3-8B", "REBASE-16", 1, ["spex.speculate=true"], variant="spec+alloc")
    assert same.spex.speculate  # repeating a preset's own value is no conflict
    for override, variant in (
        ("spex.speculate=true", "baseline"),
        ("spex.allocator=fifo", "spec+alloc"),
        ("search.width=32", "baseline"),
        ("run.seed=3", "baseline"),
    ):
        with pytest.raises(ConflictError, match=override.split("=")[0]):
            sim_config("H100 + Llama-3-8B", "REBASE-16", 1, [override], variant=variant)


def test_seeds_summaries_and_share_of_gain():
    rows = compare_seeds(
        "H100 + Llama-3-8B",
        "MCTS-5",
        2,
        ["spec+alloc"],
        seeds=2,
        problems=2,
        with_oracle=True,
        log=lambda _: None,
    )
    assert [(r["seed"], r["variant"]) for r in rows][:3] == [
        (0, "baseline"),
        (0, "spec+alloc"),
        (0, "oracle"),
    ]
    assert {r["seed"] for r in rows} == {0, 1} and all(r["problems"] == 2 for r in rows)
    add_gain_share(rows, "spec+alloc")
    spex = [r for r in rows if r["variant"] == "spec+alloc"]
    assert all(r["gain_share"] == (r["speedup"] - 1) / (r["oracle_speedup"] - 1) for r in spex)
    summary = {r["variant"]: r for r in summarize(rows)}
    mean = summary["spec+alloc"]
    assert mean["seeds"] == 2 and mean["speedup_min"] <= mean["speedup"] <= mean["speedup_max"]
    assert mean["speedup"] == pytest.approx(sum(r["speedup"] for r in spex) / 2)
    assert spread({"x": 1.5, "x_min": 1.25, "x_max": 2.0}, "x") == "1.50x (1.25-2.00x)"
    table = as_table(rows)  # the oracle and share-of-gain columns survive a baseline first row
    assert {"oracle_speedup", "gain_share", "seed"} <= set(table.column_names)
    assert table.column("gain_share").to_pylist()[:2] == [None, spex[0]["gain_share"]]


def test_roofline_and_table_helpers():
    config = sim_config("A6000 + Llemma-7B", "REBASE-8", 1)
    assert SimSettings.of(config.policy).gpu == "a6000" and config.search.width == 8
    assert roofline_tokens_per_s(config) > 0
    lines = markdown_table([{"a": 1.5}], {"A": lambda r: f"{r['a']:.1f}"})
    assert lines == ["| A |", "|---|", "| 1.5 |"]


def test_the_figure_check_reads_every_recorded_command_and_names_each_difference():
    from check_figures import differences, figure_commands

    commands = figure_commands()
    assert commands["ablation"] == ("sim_suite", ["ablation"])
    assert {"throughput", "sensitivity", "specdecode", "occupancy", "scale"} <= set(commands)
    assert commands["algorithms"][0] == "sim_algorithms"
    committed = [{"qpm": 1.0, "variant": "baseline"}, {"qpm": float("nan"), "variant": "spex"}]
    same = [{"qpm": 1.0, "variant": "baseline", "extra": 3}, {"qpm": float("nan"), "variant": "spex"}]
    assert differences(same, committed) == []
    moved = [{"qpm": 1.0, "variant": "baseline"}, {"qpm": 2.0, "variant": "spex"}]
    assert differences(moved, committed) == ["row 1 qpm: 2.0 (committed nan)"]
    assert differences(moved[:1], committed) == ["1 rows, 2 committed"]


def test_the_suite_refuses_a_conflicting_set_in_one_line(monkeypatch, capsys):
    import sim_suite

    monkeypatch.setattr(
        sys, "argv", ["sim_suite.py", "ablation", "--set", "spex.speculate=true", "--seeds", "1"]
    )
    with pytest.raises(SystemExit) as stop:
        sim_suite.main()
    assert stop.value.code == 2
    assert "--set spex.speculate=true conflicts with" in capsys.readouterr().err


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
