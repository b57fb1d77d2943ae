"""The BudgetAllocator actor and LeaseBudget clients on a local Ray session."""

from __future__ import annotations

import asyncio
import random

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def allocator(ray_session):
    """The named allocator, killed at the end of this module so other tests start fresh."""
    from spex_ray.allocator import get_or_create_allocator

    handle = get_or_create_allocator(mode="utility", tau=1.0, default_knee=8)
    yield handle
    ray_session.kill(handle)


async def settle(*leases, rounds: int = 3) -> None:
    """Let every lease's pending update land (refresh_s of the leases here is small)."""
    for _ in range(rounds):
        await asyncio.sleep(0.08)
        while any(lease._task is not None and not lease._task.done() for lease in leases):
            await asyncio.sleep(0.01)


def test_get_or_create_returns_the_same_actor(allocator, ray_session):
    from spex_ray.allocator import ALLOCATOR_NAME, get_or_create_allocator

    again = get_or_create_allocator(mode="utility", tau=1.0, default_knee=8)
    assert again._actor_id == allocator._actor_id
    assert ray_session.get_actor(ALLOCATOR_NAME)._actor_id == allocator._actor_id


def test_policy_switch_on_reuse(allocator, ray_session):
    from spex_ray.allocator import get_or_create_allocator

    fifo = get_or_create_allocator(mode="fifo", tau=2.0, default_knee=8)
    assert fifo._actor_id == allocator._actor_id
    assert ray_session.get(allocator.config.remote()) == {"mode": "fifo", "tau": 2.0, "default_knee": 8}
    get_or_create_allocator(mode="utility", tau=1.0, default_knee=8)
    assert ray_session.get(allocator.config.remote())["mode"] == "utility"


def test_many_leases_never_exceed_the_budget(allocator, ray_session):
    from spex_ray.allocator import LeaseBudget

    engine, knee, n_clients, seconds = "hammer", 32, 20, 3.0
    ray_session.get(allocator.register_engine.remote(engine, knee))

    async def client(lease: LeaseBudget, rng: random.Random, stop: asyncio.Event) -> None:
        while not stop.is_set():
            lease.report(rng.randint(0, 16), rng.random(), rng.random())
            await asyncio.sleep(rng.uniform(0, 0.01))

    async def main_load(rng: random.Random, stop: asyncio.Event) -> int:
        checks = 0
        while not stop.is_set():
            await allocator.report_main.remote(engine, rng.randint(0, knee + 8))
            snap = await allocator.snapshot.remote()
            info = snap["engines"][engine]
            assert info["granted"] <= info["budget"] == max(0, knee - info["main"])
            on_engine = [x["query_id"] for x in snap["demands"] if x["engine_id"] == engine]
            assert sum(snap["grants"][q] for q in on_engine) <= info["budget"]
            checks += 1
            await asyncio.sleep(0.02)
        return checks

    async def run() -> tuple[int, list[LeaseBudget]]:
        rng = random.Random(0)
        stop = asyncio.Event()
        leases = [LeaseBudget(allocator, f"h{i}", engine, order=i, refresh_s=0.01) for i in range(n_clients)]
        tasks = [asyncio.create_task(client(lease, random.Random(i), stop)) for i, lease in enumerate(leases)]
        load = asyncio.create_task(main_load(rng, stop))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        checks = await load
        await asyncio.gather(*(lease.close() for lease in leases))
        return checks, leases

    checks, leases = asyncio.run(run())
    assert checks >= 20
    assert sum(lease.updates_sent for lease in leases) >= 10 * n_clients
    assert all(lease.errors == 0 and lease.granted() == 0 for lease in leases)
    snap = ray_session.get(allocator.snapshot.remote())
    assert not any(x["engine_id"] == engine for x in snap["demands"])  # all released
    usage = snap["usage"][engine]
    assert 0 < usage["mean_budget"] <= usage["max_budget"] <= knee and usage["max_granted"] <= knee
    assert 0 <= usage["mean_granted"] <= usage["mean_budget"]


def test_close_returns_slots_and_shares_follow_utility(allocator, ray_session):
    from spex_ray.allocator import LeaseBudget
    from spex_ray.tree.budget import SpecBudget

    ray_session.get(allocator.register_engine.remote("shared", 20))

    async def run() -> None:
        seen: list[int] = []
        hot = LeaseBudget(allocator, "hot", "shared", order=0, refresh_s=0.01, on_grant=seen.append)
        cold = LeaseBudget(allocator, "cold", "shared", order=1, refresh_s=0.01)
        assert isinstance(hot, SpecBudget)
        assert hot.granted() == 0  # nothing before the first grant
        hot.report(20, 0.5, 0.0)
        cold.report(20, 0.1, 0.0)
        await settle(hot, cold)
        hot.report(20, 0.5, 0.0)  # refresh after the other's demand landed
        await settle(hot, cold)
        assert hot.granted() > cold.granted()
        assert seen and seen[-1] == hot.granted()
        assert hot.granted() + cold.granted() <= 20
        before = cold.granted()
        await hot.close()
        cold.report(20, 0.1, 0.0)
        await settle(cold)
        assert cold.granted() == 20 > before
        await cold.close()

    asyncio.run(run())


def test_decision_latency_is_reported(allocator, ray_session):
    latency = ray_session.get(allocator.snapshot.remote())["latency"]
    print(f"\nallocator update(): {latency}")
    assert latency["count"] > 0
    assert 0 < latency["mean_us"] <= latency["p99_us"] <= latency["max_us"]
    assert latency["p99_us"] < 10_000
