"""The per-query runtime without Ray: routing, health, failover with the same seeds."""

from __future__ import annotations

import asyncio

import pytest

from spex_ray.allocator.local import LocalAllocator
from spex_ray.config import Config
from spex_ray.engines.base import FinishReason, GenRequest, Priority
from spex_ray.registries import REWARDS
from spex_ray.runtime import EngineHost, EngineUnavailable, NoEngine, QueryRuntime, RoutedClient, Router
from spex_ray.runtime.sizing import PoolSizing
from spex_ray.sim.cluster import kept_nodes
from spex_ray.sim.loop import run_virtual
from spex_ray.sim.workload import sim_problems
from spex_ray.tasks import problems_from_items


class Toy:
    """A stand-in engine for routing tests: answers with its name; can go down."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.requests: list[GenRequest] = []

    async def generate(self, request: GenRequest):
        from spex_ray.engines.base import GenResult

        self.requests.append(request)
        await asyncio.sleep(0)
        if self.down:
            raise EngineUnavailable(f"{self.name} died")
        return GenResult(request.request_id, text=self.name)

    async def abort(self, request_id: str) -> None:
        return None

    async def ping(self) -> str:
        if self.down:
            raise EngineUnavailable(f"{self.name} died")
        return self.name


def test_a_query_sticks_to_its_engine_and_new_ones_go_to_the_least_loaded():
    router = Router({"a": Toy("a"), "b": Toy("b")})
    assert router.engine_for("q1")[0] == "a"
    assert router.engine_for("q2")[0] == "b"
    assert router.engine_for("q1")[0] == "a"  # affinity
    router.release("q1")
    assert router.engine_for("q3")[0] == "a"
    assert router.live_queries() == {"a": 1, "b": 1}


def test_draining_moves_queries_at_their_next_request_and_removing_forgets_the_engine():
    router = Router({"a": Toy("a"), "b": Toy("b")})
    router.engine_for("q1")
    router.drain("a")
    assert router.engine_for("q1")[0] == "b" and router.moves == 1
    assert router.engine_for("q2")[0] == "b"
    router.remove("a")
    assert set(router.states()) == {"b"}
    router.remove("b")
    with pytest.raises(NoEngine):
        router.engine_for("q3")


def test_acquire_waits_for_an_engine_and_gives_up_after_its_timeout():
    async def main():
        router = Router(wait_timeout_s=5.0)
        waiting = asyncio.ensure_future(router.acquire("q"))
        await asyncio.sleep(1.0)
        router.add("late", Toy("late"))
        assert (await waiting)[0] == "late"
        router.remove("late")
        with pytest.raises(NoEngine, match="no engine served for 5 s"):
            await router.acquire("q2")

    run_virtual(main())


def test_a_main_request_moves_with_its_id_and_seed_and_a_spec_one_comes_back_aborted():
    async def main():
        a, b = Toy("a"), Toy("b")
        router = Router({"a": a, "b": b}, probe_every_s=1.0)
        moved = []
        client = RoutedClient(router, "q", on_move=moved.append)
        a.down = True
        main_request = GenRequest(prompt="p", seed=7)
        result = await client.generate(main_request)
        assert (result.text, result.engine, result.attempts, client.retries) == ("b", "b", 2, 1)
        assert [r.request_id for r in a.requests + b.requests] == [main_request.request_id] * 2
        assert moved == ["b"] and router.states()["a"] == "down"
        b.down = True
        spec = await client.generate(GenRequest(prompt="p", seed=8, priority=Priority.SPEC))
        assert spec.finish_reason == FinishReason.ABORT and "b unavailable" in spec.error
        a.down = False  # a restarted: the probe brings it back
        await asyncio.sleep(2.0)
        assert router.states()["a"] == "serving"

    run_virtual(main())


def test_the_pool_wants_engines_for_the_queries_left_within_its_bounds():
    config = Config.load(
        None, ["policy.max_batch_size=8", "search.width=4", "run.concurrency=8", "policy.max_engines=3"]
    )
    sizing = PoolSizing.of(config)
    assert sizing.queries_per_engine == 2
    assert [sizing.wanted(n) for n in (0, 1, 2, 3, 5, 100)] == [0, 1, 1, 2, 3, 3]
    assert PoolSizing.of(Config.load(None, ["policy.min_engines=1", "policy.max_engines=3"])).wanted(0) == 1


class DiesAfter:
    """An EngineHost that dies (for good) once it has finished `n` requests: later and
    in-flight requests raise EngineUnavailable, as the actor proxy does for a dead actor."""

    def __init__(self, host: EngineHost, n: int) -> None:
        self.host, self.n, self.done = host, n, 0

    async def generate(self, request):
        if self.done >= self.n:
            raise EngineUnavailable("killed")
        result = await self.host.generate(request)
        self.done += 1
        if self.done > self.n:
            raise EngineUnavailable("killed while it ran")
        return result

    async def abort(self, request_id):
        await self.host.abort(request_id)

    async def ping(self):
        raise EngineUnavailable("killed")


def _solve_all(config: Config, problems, die_after: int | None):
    async def main():
        allocator = LocalAllocator(config.spex.allocator, config.spex.tau, config.policy.max_batch_size)
        hosts = [EngineHost(config.policy, f"engine-{i}", allocator) for i in range(2)]
        engines = {h.name: h for h in hosts}
        if die_after is not None:
            engines["engine-0"] = DiesAfter(hosts[0], die_after)
        runtime = QueryRuntime(
            config, Router(engines), hosts[0].chat_template(), REWARDS.build("sim", config.reward), allocator
        )
        results = await asyncio.gather(*(runtime.solve(p, i) for i, p in enumerate(problems)))
        for host in hosts:
            await host.close()
        return results

    return run_virtual(main())


def test_queries_on_an_engine_that_dies_finish_on_the_other_with_the_same_trees():
    config = Config.load(
        None,
        ["policy.backend=sim", "reward.kind=sim", "search.width=8", "search.max_depth=8",
         "spex.speculate=true", "spex.allocator=utility", "spex.lookahead=2"],
    )  # fmt: skip
    problems = problems_from_items(sim_problems(4))
    healthy = _solve_all(config, problems, None)
    faulty = _solve_all(config, problems, die_after=6)
    assert all(s.status == "ok" for s, _ in faulty)
    assert [s.answer for s, _ in faulty] == [s.answer for s, _ in healthy]
    for (_, trace), (_, reference) in zip(faulty, healthy, strict=True):
        assert sorted(kept_nodes(trace)) == sorted(kept_nodes(reference))  # lossless
    moved = [s for s, _ in faulty if s.retries]
    assert moved and all(s.engine == "engine-1" for s, _ in faulty)
    retried = [row for _, trace in faulty for row in trace if row.attempts > 1]
    assert retried and all(row.engine == "engine-1" for row in retried)


def test_default_spec_slots_share_one_engines_batch_among_the_queries_on_it():
    from spex_ray.tree.settings import default_spec_slots

    def slots(*overrides):
        return default_spec_slots(
            Config.load(None, ["policy.max_batch_size=64", "run.concurrency=16", *overrides])
        )

    assert slots() == 4  # 16 queries on one engine
    assert slots("policy.num_engines=4") == 16  # 4 queries on each of 4 engines
    assert slots("policy.max_engines=8") == 32
    assert slots("run.concurrency=100") == 1


class FailsFirst(Toy):
    """Fails its first `n` requests with an engine error (as out of memory would)."""

    def __init__(self, name: str, n: int) -> None:
        super().__init__(name)
        self.n = n

    async def generate(self, request: GenRequest):
        from spex_ray.engines.base import failed_result

        self.requests.append(request)
        if len(self.requests) <= self.n:
            return failed_result(request, 0.0, "CUDA out of memory")
        return await super().generate(request)


def test_a_failed_main_request_is_retried_with_backoff_then_its_error_stands():
    async def main():
        flaky = FailsFirst("a", n=2)
        client = RoutedClient(Router({"a": flaky}), "q")
        result = await client.generate(GenRequest(prompt="p", seed=1))
        assert (result.finish_reason, result.text, client.retries) == (FinishReason.STOP, "a", 2)
        broken = FailsFirst("b", n=100)
        client = RoutedClient(Router({"b": broken}), "q")
        result = await client.generate(GenRequest(prompt="p", seed=1))
        assert result.finish_reason == FinishReason.ERROR and result.error == "CUDA out of memory"
        assert len(broken.requests) == 4 and client.retries == 3
        spec = FailsFirst("c", n=100)
        client = RoutedClient(Router({"c": spec}), "q")
        await client.generate(GenRequest(prompt="p", seed=1, priority=Priority.SPEC))
        assert len(spec.requests) == 1  # speculation is not worth a retry

    run_virtual(main())
