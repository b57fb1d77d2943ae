"""solve() and the CLI without Ray, for tests of what surrounds the batch (loading, output
files, resume, the summary): the batch solve() would hand to Ray runs through the real
per-query pipeline on simulated engines in this process (sim.simulate), row by row into the
run's writer. Never a stand-in for the Ray path itself (tests/test_*_on_ray.py run that)."""

from __future__ import annotations

from spex_ray import api
from spex_ray.sim import simulate


def solve_in_process(monkeypatch) -> None:
    """Make api.solve() run its batch in this process on simulated engines."""

    def run_batch(todo, config, writer, already_done):
        run = simulate(config, todo)
        for solution in run.solutions:
            writer.write(solution, run.traces.get(solution.id, []))
        return [], {}

    monkeypatch.setattr(api, "_ensure_ray", lambda address: None)
    monkeypatch.setattr(api, "_run_batch", run_batch)
