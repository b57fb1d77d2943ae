"""The speculative capacity an engine offers (engines/capacity.py): the step-time fit, the
slowdown rule, the overrides, the simulated engine's figure and the hf pause hooks (no Ray)."""

from __future__ import annotations

import random
from collections import deque
from types import SimpleNamespace

import pytest

from spex_ray.config import ConfigError, PolicyConfig
from spex_ray.engines.capacity import StepCostFit, extra_within, fit_steps, spec_capacity
from spex_ray.engines.hf_scheduler import HeldRequests, install_scheduler_hooks
from spex_ray.sim.engine import SimEngine
from spex_ray.sim.settings import SimSettings


def linear(base: float, per_sequence: float):
    return lambda batch: base + per_sequence * batch


def no_knee() -> int:
    raise AssertionError("the static knee must not be asked for")


# ---- the rule ---------------------------------------------------------------------------------


def test_extra_within_finds_the_largest_batch_within_the_slowdown():
    step = linear(0.080, 0.010)  # 90 ms at one sequence, +10 ms per sequence
    assert extra_within(step, 1, 0.25, 100) == 2  # 110 ms <= 112.5 ms < 120 ms
    assert extra_within(step, 4, 0.3, 100) == 3  # 120 ms * 1.3 = 156 ms
    assert extra_within(step, 4, 0.3, 1) == 1  # capped by the free slots
    assert extra_within(step, 4, 0.0, 100) == 0
    assert extra_within(linear(0.010, 0.0), 1, 0.0, 50) == 50  # free sequences: all of them


def test_spec_capacity_uses_the_knee_override_then_the_step_time_then_the_static_knee():
    policy = PolicyConfig(max_batch_size=8, max_slowdown=0.3)
    step = linear(0.080, 0.010)
    assert spec_capacity(policy, 4, step, no_knee) == 3
    assert spec_capacity(policy, 0, step, no_knee) == 2  # measured against one primary sequence
    assert spec_capacity(policy, 7, step, no_knee) == 1  # one slot left
    assert spec_capacity(policy, 9, step, no_knee) == 0
    assert spec_capacity(policy, 4, step, no_knee, room=2) == 2  # the engine's KV room
    assert spec_capacity(policy, 4, None, lambda: 6) == 2  # nothing measured yet: static knee - MAIN
    policy.knee = 7
    assert spec_capacity(policy, 4, step, no_knee, room=0) == 3  # knee - MAIN, whatever else


def test_max_slowdown_is_validated():
    for bad in (-0.1, 11.0, float("nan")):
        with pytest.raises(ConfigError, match="policy.max_slowdown"):
            PolicyConfig(max_slowdown=bad).validate()
    PolicyConfig(max_slowdown=0.0).validate()


# ---- the fit -----------------------------------------------------------------------------------


def test_fit_recovers_the_cost_of_a_sequence_and_of_its_context():
    rng = random.Random(1)
    steps = []
    for _ in range(400):
        batch, context = rng.randint(1, 8), rng.randint(100, 900)
        seconds = 0.05 + 0.004 * batch + 2e-5 * batch * context
        steps.append((batch, float(batch * context), seconds * rng.uniform(0.98, 1.02)))
    cost = fit_steps(steps)
    assert cost.base_s == pytest.approx(0.05, rel=0.1)
    assert cost.per_sequence_s == pytest.approx(0.004, rel=0.2)
    assert cost.per_token_s == pytest.approx(2e-5, rel=0.1)
    assert cost.marginal_s(500) == pytest.approx(0.014, rel=0.05)
    assert cost.step_time(500)(4) == pytest.approx(0.05 + 4 * 0.014, rel=0.05)


def test_fit_without_context_spread_and_without_batch_spread():
    same_context = [(b, 300.0 * b, 0.05 + 0.01 * b) for b in (1, 2, 3, 4) * 5]
    cost = fit_steps(same_context)
    assert cost.per_token_s == 0.0 and cost.per_sequence_s == pytest.approx(0.01)
    assert cost.mean_context == pytest.approx(300.0)
    assert fit_steps([(4, 1200.0, 0.1)] * 20) is None  # one batch size: no slope to measure


def test_step_cost_fit_needs_enough_steps_and_keeps_a_recent_window():
    fit = StepCostFit(window=20, min_steps=8)
    for b in (1, 2, 3):
        fit.observe(b, 100.0 * b, 0.1 * b)
    fit.observe(0, 0.0, 0.1)  # ignored: no sequences
    fit.observe(2, 200.0, float("nan"))  # ignored
    assert fit.cost() is None and fit.observed == 3
    for _ in range(10):
        for b in (1, 2):
            fit.observe(b, 100.0 * b, 0.1 * b)
    assert fit.cost().marginal_s(100) == pytest.approx(0.1)
    for _ in range(10):  # the step got dearer: the window forgets the old steps
        for b in (1, 2):
            fit.observe(b, 100.0 * b, 0.05 + 0.3 * b)
    assert fit.cost().marginal_s(100) == pytest.approx(0.3)


def test_a_cpu_like_engine_grants_nothing_and_a_flat_one_grants_its_slots():
    """About 90 ms at one sequence and 180 ms at eight (the 2-core container, BENCHMARKS.md):
    at the default 25% nothing beside one primary sequence, one beside four."""
    policy = PolicyConfig(max_batch_size=8)
    cpu = linear(0.077, 0.013)
    assert spec_capacity(policy, 1, cpu, no_knee) == 1
    assert spec_capacity(policy, 4, cpu, no_knee) == 2
    policy.max_slowdown = 0.1
    assert spec_capacity(policy, 1, cpu, no_knee) == 0
    assert spec_capacity(policy, 4, linear(0.010, 1e-5), no_knee) == 4


# ---- the simulated engine ----------------------------------------------------------------------


def sim_engine(gpu: str, model: str, **policy) -> SimEngine:
    config = PolicyConfig(backend="sim", model=model, max_batch_size=1024, **policy)
    return SimEngine(config.with_settings("sim", SimSettings(gpu=gpu, time_scale=0.0)))


def test_the_simulated_engine_offers_what_its_timing_model_allows():
    h100 = sim_engine("h100", "llama-3-8b")
    a6000 = sim_engine("a6000", "llemma-7b")
    on_h100, on_a6000 = h100.spec_capacity(16), a6000.spec_capacity(16)
    assert on_a6000 < on_h100 < h100.knee() - 16  # below the old fixed-context knee
    # the offer is the rule applied to the engine's own iteration times at 1024 tokens (idle engine)
    step = h100.timing.decode_step_time
    assert step(16 + on_h100, 1024) <= 1.25 * step(16, 1024) < step(17 + on_h100, 1024)
    assert h100.load().spec_capacity == h100.spec_capacity(0) > 0
    generous = sim_engine("h100", "llama-3-8b", max_slowdown=1.0)
    assert generous.spec_capacity(16) > on_h100
    assert sim_engine("h100", "llama-3-8b", knee=100).spec_capacity(16) == 84


def test_the_simulated_offer_follows_the_context():
    engine = sim_engine("a6000", "llemma-7b")
    short = engine.spec_capacity(4)
    engine._mean_context = lambda: 4096.0  # long contexts: each sequence reads more KV
    assert engine.spec_capacity(4) < short


# ---- the hf pause hooks, on a stand-in scheduler ---------------------------------------------


class _Scheduler:
    """The attributes of transformers' scheduler that the hooks touch."""

    def __init__(self) -> None:
        self.active_requests = {"a": "A", "b": "B"}
        self.waiting_requests = {"c": "C", "d": "D"}
        self.waiting_requests_order = deque(["c", "d"])
        self.seen: list[tuple[list[str], list[str]]] = []

    def schedule_batch(self, token_budget, cache_budget):
        self.seen.append((sorted(self.active_requests), list(self.waiting_requests_order)))
        state = SimpleNamespace(position_offset=99)
        return [SimpleNamespace(query_length=1, has_new_token=True, state=state)] * 2, True, 2, 0


def test_held_requests_are_hidden_from_one_schedule_and_restored_in_place():
    scheduler = _Scheduler()
    processor = SimpleNamespace(scheduler=scheduler, update_batch=lambda: None)
    held, steps = HeldRequests(), []
    install_scheduler_hooks(SimpleNamespace(batch_processor=processor), held, lambda *a: steps.append(a))
    held.hold("a")
    held.hold("c")
    scheduler.schedule_batch(256, 1024)
    processor.update_batch()
    assert scheduler.seen[-1] == (["b"], ["d"])
    assert scheduler.active_requests.keys() == {"a", "b"}
    assert list(scheduler.waiting_requests_order) == ["c", "d"] and "c" in scheduler.waiting_requests
    held.release("a")
    held.release("c")
    held.release("zzz")  # unknown: no-op
    scheduler.schedule_batch(256, 1024)
    assert scheduler.seen[-1] == (["a", "b"], ["c", "d"])
    assert len(steps) == 1 and steps[0][:2] == (2, 200.0) and steps[0][2] > 0  # one timed decode step


def test_a_step_with_a_prefill_chunk_is_not_timed():
    scheduler = _Scheduler()
    prefill = SimpleNamespace(query_length=64, has_new_token=False, state=SimpleNamespace(position_offset=0))
    scheduler.schedule_batch = lambda *budgets: ([prefill], False, 64, 0)
    processor = SimpleNamespace(scheduler=scheduler, update_batch=lambda: None)
    steps = []
    install_scheduler_hooks(
        SimpleNamespace(batch_processor=processor), HeldRequests(), lambda *a: steps.append(a)
    )
    scheduler.schedule_batch(256, 1024)
    processor.update_batch()
    assert steps == []


def test_held_ids_are_replaced_not_mutated():
    """The generation thread reads one frozenset per step; the loop swaps in a new one."""
    held = HeldRequests()
    before = held.ids
    held.hold("x")
    assert before == frozenset() and held.ids == {"x"} and isinstance(held.ids, frozenset)


def test_fit_drops_stalled_steps_and_refuses_negative_costs():
    rng = random.Random(4)
    steps = [(b, 100.0 * b, 0.08 + 0.01 * b + rng.uniform(-1e-3, 1e-3)) for b in (1, 2, 4, 8) * 10]
    steps[5] = (steps[5][0], steps[5][1], 3.0)  # the OS stalled this one
    cost = fit_steps(steps)
    assert cost.per_sequence_s == pytest.approx(0.01, rel=0.1) and cost.base_s == pytest.approx(0.08, rel=0.1)
    falling = [(b, 100.0 * b, 0.2 - 0.01 * b) for b in (1, 2, 4, 8) * 5]  # faster with more: noise
    assert fit_steps(falling) is None
