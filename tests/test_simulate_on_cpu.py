"""The in-process cluster simulation: virtual time, local allocator, calibration, oracle."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from spex_ray.allocator.local import LocalAllocator
from spex_ray.config import Config
from spex_ray.sim.calibrate import calibrate, fit_answer_depth, fit_step_lengths
from spex_ray.sim.cluster import kept_nodes, simulate
from spex_ray.sim.loop import DeadlockError, run_virtual
from spex_ray.sim.replay import oracle
from spex_ray.sim.workload import sim_problems


def test_virtual_loop_jumps_to_timers_in_no_wall_time():
    async def main():
        loop = asyncio.get_running_loop()
        order = []

        async def sleeper(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            order.append((name, loop.time()))

        await asyncio.gather(sleeper("late", 3600.0), sleeper("early", 60.0))
        return order

    import time

    start = time.monotonic()
    order = run_virtual(main())
    assert time.monotonic() - start < 1.0
    assert order == [("early", 60.0), ("late", 3600.0)]


def test_virtual_loop_reports_a_deadlock():
    async def main():
        await asyncio.get_running_loop().create_future()  # nobody will ever resolve it

    with pytest.raises(DeadlockError):
        run_virtual(main())


def test_local_allocator_shares_an_engine_and_wakes_queries_that_gain():
    async def main():
        allocator = LocalAllocator("utility", tau=1.0, default_knee=8)
        allocator.register_engine("e0", 8)
        a, b = allocator.budget("a", "e0", 0), allocator.budget("b", "e0", 1)
        woken = []
        b.on_grant = woken.append
        a.report(8, 1.0, 0.0)
        b.report(8, 1.0, 0.0)
        assert a.granted() + b.granted() <= 8 and b.granted() > 0
        await asyncio.sleep(0)
        before = b.granted()
        await a.close()  # a's slots go to b
        await asyncio.sleep(0)
        assert b.granted() == 8 > before and woken[-1] == 8
        allocator.report_main("e0", 6)  # primary work shrinks the budget
        assert b.granted() == 2
        await asyncio.sleep(0)
        allocator.report_main("e0", 6, spec_capacity=5)  # the engine's own figure replaces knee - MAIN
        await asyncio.sleep(0)
        assert b.granted() == 5 and woken[-1] == 5

    asyncio.run(main())


def test_step_length_fit_recovers_a_censored_lognormal():
    rng = random.Random(3)
    lengths = [round(rng.lognormvariate(math.log(40), 0.8)) for _ in range(3000)]
    cut = [x >= 96 for x in lengths]
    fit = fit_step_lengths([min(x, 96) for x in lengths], cut)
    assert abs(fit.median - 40) / 40 < 0.08
    assert abs(fit.sigma - 0.8) < 0.08
    assert 0.1 < fit.censored < 0.2


def test_answer_depth_fit_recovers_a_weibull_hazard():
    rng = random.Random(5)
    depths, answered = [], []
    for d in range(1, 9):
        h = 1 - math.exp(-((d / 4.0) ** 2.0))
        for _ in range(2000):
            depths.append(d)
            answered.append(rng.random() < h)
    fit = fit_answer_depth(depths, answered)
    assert fit is not None
    assert abs(fit.scale - 4.0) < 0.3 and abs(fit.shape - 2.0) < 0.25
    assert fit_answer_depth([1, 2, 3], [False, False, False]) is None


def test_calibrate_reads_trace_rows_and_skips_speculation():
    rows = [
        {
            "kind": "main",
            "finish_reason": "stop",
            "completion_tokens": 20 + i % 40,
            "node": "0.1",
            "answered": False,
        }
        for i in range(100)
    ] + [{"kind": "spec", "finish_reason": "stop", "completion_tokens": 999, "node": "0.2"}]
    params, steps, depth = calibrate(rows)
    assert steps.n == 100 and 20 <= params["step_tokens_mean"] <= 60
    assert depth is None and "answer_scale" not in params


def _config(algorithm: str, **spex) -> Config:
    overrides = [
        "policy.backend=sim", "reward.kind=sim", "run.concurrency=2", "policy.max_new_tokens=256",
        "search.max_depth=10", "search.max_path_tokens=2048", f"search.algorithm={algorithm}",
        "search.width=8", "search.rollouts=5", *(f"spex.{k}={v}" for k, v in spex.items()),
    ]  # fmt: skip
    return Config.load(None, overrides)


# not best_of_n: its speculation issues what the oracle does (each step once the previous one
# exists), so the two differ only in the engine's scheduling order, and either may end first
@pytest.mark.parametrize("algorithm", ["rebase", "mcts", "ets", "beam", "dvts"])
def test_simulated_spex_is_lossless_faster_and_below_the_oracle(algorithm):
    problems = sim_problems(4)
    base = simulate(_config(algorithm), problems, keep_traces=True)
    again = simulate(_config(algorithm), problems)
    spex = simulate(
        _config(algorithm, speculate="true", allocator="utility", lookahead=4), problems, keep_traces=True
    )
    best = oracle(_config(algorithm), problems, base, keep_traces=True)
    assert base.makespan_s == again.makespan_s > 0  # deterministic
    assert [s.answer for s in spex.solutions] == [s.answer for s in base.solutions]
    for problem in problems:  # the same trees
        assert sorted(kept_nodes(spex.traces[problem["id"]])) == sorted(
            kept_nodes(base.traces[problem["id"]])
        )
        assert sorted(kept_nodes(best.traces[problem["id"]])) == sorted(
            kept_nodes(base.traces[problem["id"]])
        )
    assert spex.total("tokens_spec") > 0
    assert base.makespan_s > spex.makespan_s >= best.makespan_s * 0.999


def test_a_flat_answer_hazard_is_not_taken_as_a_depth_model():
    rng = random.Random(9)
    depths = [d for d in range(1, 9) for _ in range(500)]
    answered = [rng.random() < 0.05 for _ in depths]
    fit = fit_answer_depth(depths, answered)
    assert fit is not None and not fit.has_trend and abs(fit.mean_hazard - 0.05) < 0.01
    rows = [
        {"kind": "main", "finish_reason": "stop", "completion_tokens": 30, "depth": d, "answered": a}
        for d, a in zip(depths, answered, strict=True)
    ]
    params, _, _ = calibrate(rows)
    assert "answer_scale" not in params


def test_simulate_keeps_traces_only_when_asked_and_the_oracle_needs_none():
    problems = sim_problems(2)
    plain = simulate(_config("rebase"), problems)
    traced = simulate(_config("rebase"), problems, keep_traces=True)
    assert plain.traces == {} and not plain.traces_kept and traced.traces_kept
    for problem in problems:  # the node ids outlive the query either way
        assert plain.tree_nodes[problem["id"]] == kept_nodes(traced.traces[problem["id"]])
    assert (
        oracle(_config("rebase"), problems, plain).makespan_s
        == oracle(_config("rebase"), problems, traced).makespan_s
    )
