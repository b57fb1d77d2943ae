"""What `spex-ray solve`/`demo` print after a run: modeled times on the simulator (and when
orchestration overhead dominates them), the chosen reasoning path of each problem."""

from __future__ import annotations

import yaml

from spex_ray.api import RunResult, _config_yaml
from spex_ray.cli import _print_paths, _print_summary
from spex_ray.config import Config
from spex_ray.io import CONFIG_FILE, RunWriter, Solution, TraceRow


def request(query: str, enqueue: float, start: float, end: float) -> TraceRow:
    return TraceRow(
        query=query, node="0.0", depth=1, terminal=True, answered=True, request_id=f"{query}-{start}",
        kind="main", outcome="used", seed=1, finish_reason="stop", prompt_tokens=5, cached_tokens=0,
        completion_tokens=4, enqueue_time=enqueue, start_time=start, end_time=end,
    )  # fmt: skip


def finished_run(tmp_path, overrides: list[str], trace: list[TraceRow]) -> tuple[RunResult, Config]:
    config = Config.load(None, overrides)
    (tmp_path / CONFIG_FILE).write_text(_config_yaml(config))
    solution = Solution(id="a", problem="What is 3 + 4?", gold="7", answer="7", correct=True, latency_s=2.5)
    solution.path, solution.step_rewards = ["3 plus 4\nmakes 7.", "The answer is \\boxed{7}."], [0.5, 0.9]
    writer = RunWriter(tmp_path)
    writer.write(solution, trace)
    writer.finalize()
    writer.close()
    return RunResult([solution], tmp_path, elapsed_s=30.0), config


SIM = ["policy.backend=sim", "reward.kind=sim", "policy.sim.time_scale=0.05"]


def test_a_sim_run_reports_modeled_time_and_overhead(tmp_path, capsys):
    busy_half = [request("a", 100.0, 100.0, 101.0), request("a", 101.0, 103.0, 104.0)]
    _print_summary(*finished_run(tmp_path, SIM, busy_half))
    out = capsys.readouterr().out
    assert "2.5s modeled" in out
    assert "15.00 questions/min modeled (4.0 s on the simulated engine's clock; 30.0 s wall)" in out
    assert "orchestration overhead dominates" in out and "idled 50%" in out and "20x" in out


def test_a_busy_sim_run_has_no_overhead_note(tmp_path, capsys):
    busy = [request("a", 100.0, 100.0, 102.0), request("a", 101.0, 101.5, 104.0)]
    _print_summary(*finished_run(tmp_path, SIM, busy))
    out = capsys.readouterr().out
    assert "questions/min modeled (4.0 s" in out and "overhead" not in out


def test_a_wall_clock_run_reports_wall_time(tmp_path, capsys):
    _print_summary(*finished_run(tmp_path, [], [request("a", 1.0, 1.0, 3.0)]))
    out = capsys.readouterr().out
    assert "2.5s;" not in out and "2.5s\n" in out and "modeled" not in out
    assert "2.00 questions/min" in out and "generated for 2.0 s of the 30.0 s wall" in out
    assert out.endswith(f"report:  spex-ray report {tmp_path}\n")  # the command that shows the run
    assert yaml.safe_load((tmp_path / CONFIG_FILE).read_text())["policy"]["backend"] == "hf"


def test_the_demo_prints_each_chosen_path_with_its_step_rewards(tmp_path, capsys):
    _print_paths(finished_run(tmp_path, [], [])[0])
    out = capsys.readouterr().out
    assert "a: What is 3 + 4?" in out
    assert "  1. [0.50] 3 plus 4 makes 7.\n  2. [0.90] The answer is \\boxed{7}." in out


def test_a_uri_output_and_reused_rows_are_reported(tmp_path, capsys):
    result, config = finished_run(tmp_path, [], [request("a", 1.0, 1.0, 3.0)])
    result.output_dir, result.reused = f"file://{tmp_path}", 1  # a URI output, as under a job
    _print_summary(result, config)
    out = capsys.readouterr().out
    assert f"1 reused from file://{tmp_path}" in out and "generated for 2.0 s" in out
