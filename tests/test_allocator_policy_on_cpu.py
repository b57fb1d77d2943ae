"""The speculative budget policy, the BudgetBook invariant and the roofline knee (no Ray)."""

from __future__ import annotations

import random

import pytest

from spex_ray.allocator.policy import USEFULNESS_FLOOR, BudgetBook, Demand, share_slots, utility
from spex_ray.hardware.roofline import decode_step_time, knee_concurrency, knee_from_measurements
from spex_ray.hardware.specs import GPUS, MODELS, GPUSpec, gpu_spec, model_spec
from spex_ray.tree.budget import NoBudget, SpecBudget, StaticBudget


def d(qid: str, eligible: int, useful: float = 0.5, kv: float = 0.0, order: int = 0, engine: str = "e0"):
    return Demand(qid, engine, eligible, useful, kv, order)


def random_demands(rng: random.Random, n: int) -> list[Demand]:
    return [d(f"q{i}", rng.randint(0, 12), rng.random(), rng.random(), order=i) for i in range(n)]


# ---- share_slots ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["utility", "fifo"])
@pytest.mark.parametrize("tau", [0.01, 1.0, 100.0])
def test_shares_sum_to_at_most_free_and_cap_at_eligible(mode, tau):
    rng = random.Random(7)
    for _ in range(300):
        demands = random_demands(rng, rng.randint(0, 10))
        free = rng.randint(0, 60)
        shares = share_slots(free, demands, mode, tau)
        assert set(shares) == {x.query_id for x in demands}
        assert sum(shares.values()) == min(free, sum(x.eligible for x in demands))
        for x in demands:
            assert 0 <= shares[x.query_id] <= x.eligible


def test_higher_utility_gets_more():
    # utilities 2 and 9, relative 0.22 and 1: tau=0.5 gives weights 1 : e^1.56
    shares = share_slots(10, [d("lo", 10, useful=0.2), d("hi", 10, useful=0.9)], tau=0.5)
    assert shares["hi"] > shares["lo"] > 0
    shares = share_slots(10, [d("cold", 10, kv=0.0), d("cached", 10, kv=1.0)], tau=0.5)
    assert shares["cached"] > shares["cold"]


def test_tau_large_is_even_and_tau_small_is_winner_takes_its_demand():
    demands = [d("a", 10, useful=0.9), d("b", 10, useful=0.5, order=1), d("c", 10, useful=0.2, order=2)]
    even = share_slots(12, demands, tau=1e6)
    assert sorted(even.values()) == [4, 4, 4]
    greedy = share_slots(12, demands, tau=0.01)
    assert greedy == {"a": 10, "b": 2, "c": 0}  # a saturates, the rest spills to b


def test_ties_round_to_earlier_arrival():
    demands = [d("late", 5, order=3), d("early", 5, order=1), d("mid", 5, order=2)]
    assert share_slots(4, demands, tau=1.0) == {"early": 2, "late": 1, "mid": 1}


def test_fifo_serves_in_arrival_order():
    demands = [d("second", 4, order=2), d("first", 3, order=1), d("third", 9, order=3)]
    assert share_slots(10, demands, "fifo") == {"first": 3, "second": 4, "third": 3}


def test_zero_eligible_gets_zero_and_zero_usefulness_is_not_starved():
    shares = share_slots(10, [d("none", 0, useful=1.0), d("new", 6, useful=0.0)], tau=1.0)
    assert shares == {"none": 0, "new": 6}
    assert utility(d("new", 6, useful=0.0)) == pytest.approx(6 * USEFULNESS_FLOOR)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        share_slots(4, [d("a", 1)], "lottery")
    with pytest.raises(ValueError):
        share_slots(4, [d("a", 1)], tau=0)
    with pytest.raises(ValueError):
        share_slots(4, [d("a", 1), d("a", 2)])
    with pytest.raises(ValueError):
        d("a", -1)
    with pytest.raises(ValueError):
        d("a", 1, useful=float("nan"))


# ---- BudgetBook ----------------------------------------------------------------------------


def check_invariant(book: BudgetBook, engines: list[str]) -> None:
    grants = book.grants()
    for e in engines:
        on_engine = [x for x in book.demands() if x.engine_id == e]
        assert sum(grants[x.query_id] for x in on_engine) <= book.budget(e)
        for x in on_engine:
            assert 0 <= grants[x.query_id] <= x.eligible


@pytest.mark.parametrize("mode", ["utility", "fifo"])
def test_book_invariant_under_random_operations(mode):
    rng = random.Random(2026)
    engines = ["e0", "e1", "e2"]
    book = BudgetBook(mode, tau=1.0, default_knee=8)
    for _ in range(2000):
        op = rng.random()
        if op < 0.05:
            book.set_engine(rng.choice(engines), rng.randint(0, 40))
        elif op < 0.25:
            capacity = rng.choice([None, rng.randint(0, 40)])
            book.report_main(rng.choice(engines), rng.randint(0, 45), capacity)
        elif op < 0.85:
            q = rng.randrange(30)
            demand = Demand(f"q{q}", rng.choice(engines), rng.randint(0, 16), rng.random(), rng.random(), q)
            assert book.update(demand) == book.grant(demand.query_id)
        else:
            book.release(f"q{rng.randrange(30)}")
        check_invariant(book, engines)


def test_book_release_returns_slots_and_main_load_shrinks_budget():
    book = BudgetBook(default_knee=8)
    book.set_engine("gpu", 10)
    assert book.update(d("a", 10, engine="gpu")) == 10
    assert book.update(d("b", 10, engine="gpu", order=1)) == 5
    assert book.grant("a") == 5
    book.report_main("gpu", 6)
    assert book.budget("gpu") == 4 and book.grant("a") + book.grant("b") == 4
    book.release("a")
    assert book.grants() == {"b": 4}
    book.report_main("gpu", 12)
    assert book.budget("gpu") == 0 and book.grant("b") == 0


def test_reported_capacity_is_the_budget_until_the_next_report():
    book = BudgetBook(default_knee=8)
    book.set_engine("gpu", 100)
    book.update(d("a", 50, engine="gpu"))
    book.report_main("gpu", 10)
    assert book.budget("gpu") == 90 and book.engines()["gpu"]["capacity"] == -1  # none yet: knee - MAIN
    book.report_main("gpu", 10, spec_capacity=12)
    assert book.budget("gpu") == 12 == book.grant("a") and book.engines()["gpu"]["capacity"] == 12
    book.report_main("gpu", 40)  # no figure this time: the last one stands
    assert book.budget("gpu") == 12
    book.report_main("gpu", 40, spec_capacity=0)
    assert book.grant("a") == 0
    with pytest.raises(ValueError, match="spec_capacity"):
        book.report_main("gpu", 1, spec_capacity=-1)


def test_book_moves_query_between_engines_and_uses_default_knee():
    book = BudgetBook(default_knee=3)
    assert book.update(d("a", 5, engine="x")) == 3  # unknown engine: default knee
    book.set_engine("y", 9)
    assert book.update(d("a", 5, engine="y")) == 5
    assert book.engines()["y"]["granted"] == 5
    assert "x" not in book.engines()


# ---- tree/budget.py ------------------------------------------------------------------------


def test_static_and_no_budget_are_spec_budgets():
    import asyncio

    fixed, none = StaticBudget(3), NoBudget()
    assert isinstance(fixed, SpecBudget) and isinstance(none, SpecBudget)
    fixed.report(10, 0.5, 0.0)
    assert fixed.granted() == 3 and none.granted() == 0
    asyncio.run(fixed.close())


# ---- specs and roofline --------------------------------------------------------------------


def test_spec_lookups_are_case_insensitive_and_list_known_names():
    assert gpu_spec("H100") is GPUS["h100"]
    assert model_spec(" Llama-3-8B ") is MODELS["llama-3-8b"]
    with pytest.raises(KeyError, match="h200"):
        gpu_spec("tpu-v5")
    assert MODELS["llama-3-8b"].kv_bytes_per_token == 2 * 32 * 8 * 128 * 2


def test_knee_h100_llama3_8b():
    gpu, model = gpu_spec("h100"), model_spec("llama-3-8b")
    assert 100 <= knee_concurrency(gpu, model, context_tokens=64) <= 400
    rule_of_thumb = gpu.peak_flops / gpu.mem_bandwidth * model.bytes_per_param / 2  # ~295
    assert knee_concurrency(gpu, model, context_tokens=1) == pytest.approx(rule_of_thumb, rel=0.1)


def test_knee_is_capped_by_memory_when_kv_dominates():
    gpu, model = gpu_spec("a6000"), model_spec("llemma-7b")  # MHA: 0.5 MB of KV per token
    knee = knee_concurrency(gpu, model, context_tokens=4096)
    free = gpu.memory_bytes * 0.9 - model.weight_bytes
    assert knee == int(free / (4096 * model.kv_bytes_per_token)) >= 1
    with pytest.raises(ValueError, match="times"):
        knee_concurrency(gpu, model_spec("llemma-34b"))
    assert knee_concurrency(gpu.times(2), model_spec("llemma-34b"), context_tokens=64) >= 1


def test_decode_step_time_is_flat_below_the_knee_and_linear_above():
    gpu, model = gpu_spec("h100"), model_spec("llama-3-8b")
    ctx = 64
    knee = knee_concurrency(gpu, model, ctx)
    t1 = decode_step_time(gpu, model, 1, ctx)
    assert decode_step_time(gpu, model, knee // 4, ctx) == pytest.approx(t1, rel=0.1)
    ratio = decode_step_time(gpu, model, 4 * knee, ctx) / decode_step_time(gpu, model, 2 * knee, ctx)
    assert ratio == pytest.approx(2.0, rel=0.05)


def test_knee_from_measurements():
    gpu = GPUSpec("toy", 100e12, 1e12, 80e9)
    model = model_spec("llama-3-8b")
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    times = [decode_step_time(gpu, model, b, 1) for b in batches]
    calibrated = knee_from_measurements(batches, times)
    assert calibrated.knee == 64  # roofline knee ~50: 64 is within 10%, 128 is not
    assert calibrated.base_step_s == pytest.approx(times[0])
    noisy = knee_from_measurements([1, 1, 1, 8, 16, 32], [1.0, 5.0, 1.02, 1.05, 1.5, 1.08])
    assert noisy.knee == 8  # median of the batch-1 repeats; stops at the first slow point
    assert knee_from_measurements([1, 2], [1.0, 1.0], tolerance=0.0).knee == 2


def test_stale_leases_expire():
    book = BudgetBook(default_knee=8)
    book.update(d("alive", 8), now=100.0)
    book.update(d("dead", 8), now=10.0)
    assert book.grant("dead") > 0
    assert book.expire(now=100.0, ttl=60.0) == ["dead"]
    assert book.grant("dead") == 0 and book.grant("alive") == 8
    assert book.expire(now=100.0, ttl=60.0) == []


def test_budget_usage_is_time_weighted_since_registration():
    from spex_ray.allocator.usage import BudgetUsage

    usage = BudgetUsage()
    usage.record("gpu", 10, 0, now=0.0)  # before registration: forgotten by start()
    usage.start("gpu", now=100.0)
    usage.record("gpu", 4, 2, now=100.0)
    usage.offered("gpu", main=1, capacity=4)
    usage.record("gpu", 0, 0, now=103.0)
    usage.offered("gpu", main=3, capacity=0)
    usage.offered("gpu", main=1, capacity=2)
    usage.offered("gpu", main=1, capacity=None)  # no figure: not counted
    summary = usage.summary(now=104.0)["gpu"]
    assert summary["seconds"] == 4.0
    assert summary["mean_budget"] == 3.0 and summary["max_budget"] == 4  # 4 for 3 s, 0 for 1 s
    assert summary["mean_granted"] == 1.5 and summary["max_granted"] == 2
    assert summary["offer_by_main"] == {1: 3.0, 3: 0.0}
