"""The simulated engine: roofline physics, prefix cache, abort, priority, determinism, the
synthetic workload, speculative decoding, and a whole tree search against it (in-process)."""

from __future__ import annotations

import asyncio
import math
import statistics

import pytest

from spex_ray.config import Config, PolicyConfig, RewardConfig
from spex_ray.engines.base import Engine, FinishReason, GenRequest, Priority
from spex_ray.hardware.roofline import MEM_FRACTION, kv_capacity_tokens
from spex_ray.rewards.base import StepContext
from spex_ray.sim.cache import PrefixCache
from spex_ray.sim.engine import SimClock, SimEngine
from spex_ray.sim.reward import SimReward
from spex_ray.sim.settings import SimSettings
from spex_ray.sim.timing import IterationWork
from spex_ray.sim.workload import (
    WorkloadParams,
    extract_problem,
    gold_answer,
    plan_step,
    render_chat,
    sim_problems,
    tokenize,
)
from spex_ray.tasks import build_messages, extract_answer
from spex_ray.tasks.answers import answer_key
from spex_ray.tree.search import QuerySearch
from spex_ray.tree.settings import SearchSettings

# Fixed-length steps that never answer: every request writes exactly 300 tokens.
LONG_STEPS = WorkloadParams(step_tokens_mean=300, step_tokens_sigma=0.0, answer_scale=1e6)


def make_engine(workload: WorkloadParams | None = None, **settings) -> SimEngine:
    """A SimEngine at time_scale 0; `settings` are PolicyConfig or policy.sim (SimSettings) keys."""
    policy = PolicyConfig(backend="sim")
    sim = SimSettings.of(policy)
    sim.time_scale = 0.0
    for key, value in settings.items():
        setattr(policy if hasattr(policy, key) else sim, key, value)
    return SimEngine(policy, workload=workload)


def chat_prompt(problem: str) -> str:
    return render_chat(build_messages(problem))


def long_prompt(tag: str, words: int = 1000) -> str:
    return chat_prompt(f"{tag} " + " ".join(f"w{i % 97}" for i in range(words)))


def request(prompt: str, seed: int = 1, **kwargs) -> GenRequest:
    kwargs.setdefault("max_new_tokens", 1000)
    return GenRequest(prompt=prompt, seed=seed, stop=("\n\n",), **kwargs)


async def until(condition, limit: int = 100_000) -> None:
    """Yield to the engine loop until `condition()` holds (time_scale 0: one iteration a yield)."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# --- physics ------------------------------------------------------------------------------


def test_decode_step_is_flat_below_the_knee_and_linear_past_it():
    timing = SimSettings(gpu="h100", overhead_s=0.0).timing(PolicyConfig(model="llama-3-8b"))
    ctx = 128
    knee = timing.knee(ctx)  # at the achievable compute and memory rates the model times with
    t1, t8 = timing.decode_step_time(1, ctx), timing.decode_step_time(8, ctx)
    assert t8 / t1 < 1.03  # memory-bound: more sequences ride along almost for free
    ratio = timing.decode_step_time(4 * knee, ctx) / timing.decode_step_time(2 * knee, ctx)
    assert abs(ratio - 2.0) < 0.2  # compute-bound: linear in the batch
    crossing = next(
        b
        for b in range(1, 10 * knee)
        if timing.compute_time(IterationWork(decode_seqs=b, decode_context=b * ctx))
        >= timing.memory_time(IterationWork(decode_seqs=b, decode_context=b * ctx))
    )
    assert abs(crossing - knee) / knee < 0.1
    assert 250 < knee < 600  # H100 bf16: peak / bandwidth ~ 295 at zero context


def test_settings_from_policy_and_tensor_parallel():
    policy = PolicyConfig(model="embedded", max_batch_size=64)
    settings = SimSettings.of(policy)
    timing = settings.timing(policy)
    assert (settings.gpu, timing.model.name, policy.tp, SimEngine(policy).load().max_batch_size) == (
        "h100",
        "llama-3-8b",
        1,
        64,
    )
    settings.gpu, policy.model, policy.tp = "a6000", "llemma-34b", 2
    timing = SimSettings.of(policy).timing(policy)
    assert timing.gpu.memory_bytes == 2 * 48e9 and timing.kv_capacity_tokens > 0
    policy.tp = 1
    with pytest.raises(ValueError, match="tensor-parallel"):
        SimSettings.of(policy).timing(policy)  # 34B weights do not fit one A6000
    engine = make_engine(max_batch_size=1000)
    assert engine.knee() == engine.timing.knee()
    assert make_engine(max_batch_size=8).knee() == 8
    assert isinstance(engine, Engine)


def test_one_memory_fraction_sizes_the_kv_cache_and_caps_the_knee():
    """policy.mem_fraction_static is the one memory fraction: the sim's KV cache and the
    knee's KV cap are the same memory (what fits next to the weights in that share)."""
    policy = PolicyConfig(backend="sim", model="llemma-7b", max_batch_size=4096)
    SimSettings.of(policy).gpu = "a6000"  # multi-head KV: the knee is KV-bound
    for fraction in (0.0, 0.6):
        policy.mem_fraction_static = fraction
        timing = SimSettings.of(policy).timing(policy)
        share = fraction or MEM_FRACTION
        assert timing.kv_capacity_tokens == kv_capacity_tokens(timing.gpu, timing.model, share)
        assert timing.knee(1024) == timing.kv_capacity_tokens // 1024  # KV-bound: the cap
    smaller = SimSettings.of(policy).timing(policy)
    policy.mem_fraction_static = 0.0
    assert smaller.kv_capacity_tokens < SimSettings.of(policy).timing(policy).kv_capacity_tokens


# --- prefix cache ------------------------------------------------------------------------


def test_prefix_cache_lru_evicts_leaves_before_their_prefixes():
    cache = PrefixCache(capacity_tokens=64, block_size=4)
    base = list(range(16))  # 4 blocks
    cache.insert([*base, 100, 101, 102, 103])
    assert cache.match([*base, 100, 101, 102, 103, 7]) == 20  # whole blocks only
    cache.insert([*base, 200, 201, 202, 203])  # shares the 4 base blocks
    cache.insert(list(range(50, 62)))  # 3 blocks of another prompt, the most recent
    assert len(cache) == 9 * 4
    cache.resize(20)  # keep 5 blocks: the newest prompt and the first 2 base blocks
    assert cache.match(list(range(50, 62)), touch=False) == 12
    assert cache.match([*base, 100, 101, 102, 103], touch=False) == 8  # a prefix survives, leaves went first
    assert cache.match([999] * 8) == 0 and 0 < cache.hit_rate < 1


def test_prefix_hits_shorten_prefill_and_outputs_are_cached():
    async def main():
        engine = make_engine()
        prompt = long_prompt("cache")
        first = await engine.generate(request(prompt, seed=1))
        second = await engine.generate(request(prompt, seed=2))
        child = await engine.generate(request(prompt + first.text + "\n\n", seed=3))
        await engine.close()
        return first, second, child

    first, second, child = asyncio.run(main())
    assert first.cached_tokens == 0 and first.prompt_tokens > 1000
    assert second.cached_tokens >= second.prompt_tokens - 16
    assert second.meta["prefill_s"] < first.meta["prefill_s"]
    assert child.prompt_tokens == first.prompt_tokens + first.completion_tokens - 1  # the delimiter token
    assert child.cached_tokens >= child.prompt_tokens - 16


# --- abort and priority ----------------------------------------------------------------------


def test_aborted_requests_stop_costing_time():
    async def run(abort_others: bool):
        engine = make_engine(LONG_STEPS, gpu="a6000", model="llemma-7b")
        requests = [request(long_prompt(f"abort{i}"), seed=i) for i in range(8)]
        tasks = [asyncio.ensure_future(engine.generate(r)) for r in requests]
        last = requests[-1].request_id
        await until(lambda: engine.generated_tokens(last) >= 20)
        if abort_others:
            for r in requests[:-1]:
                await engine.abort(r.request_id)
        results = await asyncio.gather(*tasks)
        await engine.close()
        return results

    kept = asyncio.run(run(False))
    aborted = asyncio.run(run(True))
    assert all(r.finish_reason == FinishReason.STOP and r.completion_tokens == 300 for r in kept)
    for r in aborted[:-1]:
        assert r.finish_reason == FinishReason.ABORT and 0 < r.completion_tokens < 300
        assert r.text == " ".join(r.text.split()) and len(r.token_ids) == len(r.logprobs)
    survivor, baseline = aborted[-1], kept[-1]
    assert survivor.text == baseline.text  # same request, same output
    assert survivor.end_time - survivor.enqueue_time < 0.9 * (baseline.end_time - baseline.enqueue_time)


def test_queued_request_aborts_at_once():
    async def main():
        engine = make_engine(LONG_STEPS, max_batch_size=1)
        running, queued = request(long_prompt("run"), seed=1), request(long_prompt("wait"), seed=2)
        t_run = asyncio.ensure_future(engine.generate(running))
        await until(lambda: engine.generated_tokens(running.request_id) > 0)
        t_wait = asyncio.ensure_future(engine.generate(queued))
        await until(lambda: engine.load().queued_main == 1)
        before = engine.clock()
        await engine.abort(queued.request_id)
        await asyncio.sleep(0)
        assert t_wait.done()
        waited = t_wait.result()
        await engine.abort(running.request_id)
        ran = await t_run
        await engine.abort("no-such-request")  # a no-op
        await engine.close()
        return before, waited, ran

    before, waited, ran = asyncio.run(main())
    assert waited.finish_reason == FinishReason.ABORT and waited.completion_tokens == 0
    assert waited.end_time == before  # no iteration ran in between
    assert ran.finish_reason == FinishReason.ABORT and 0 < ran.completion_tokens < 300


def test_main_is_admitted_before_spec():
    async def main():
        engine = make_engine(max_batch_size=1)
        blocker = request(long_prompt("blocker"), seed=1)
        spec = request(long_prompt("spec"), seed=2, priority=Priority.SPEC)
        main_ = request(long_prompt("main"), seed=3, priority=Priority.MAIN)
        t_block = asyncio.ensure_future(engine.generate(blocker))
        await until(lambda: engine.load().running_main == 1)
        t_spec = asyncio.ensure_future(engine.generate(spec))
        await asyncio.sleep(0)
        t_main = asyncio.ensure_future(engine.generate(main_))
        await until(lambda: engine.load().queued == 2)
        load = engine.load()
        results = await asyncio.gather(t_block, t_spec, t_main)
        final = engine.load()
        await engine.close()
        return load, results, final

    load, (block, spec, main_), final = asyncio.run(main())
    assert (load.running_main, load.queued_main, load.queued_spec) == (1, 1, 1)
    assert block.end_time <= main_.start_time < spec.start_time
    assert main_.end_time <= spec.start_time  # one slot: SPEC ran last
    assert final.tokens_per_second > 0 and 0 < final.mean_batch_occupancy <= 1


# --- determinism -----------------------------------------------------------------------------


def test_output_is_a_function_of_prompt_and_seed_only():
    prompt = chat_prompt(sim_problems(1)[0]["problem"])

    async def alone():
        engine = make_engine()
        result = await engine.generate(request(prompt, seed=42))
        await engine.close()
        return result

    async def crowded():
        engine = make_engine(max_batch_size=3)
        others = [request(long_prompt(f"other{i}", 50 * i), seed=i) for i in range(6)]
        results = await asyncio.gather(
            *(engine.generate(r) for r in [*others[:3], request(prompt, seed=42), *others[3:]])
        )
        await engine.close()
        return results[3]

    a, b = asyncio.run(alone()), asyncio.run(crowded())
    assert (a.text, a.token_ids, a.logprobs, a.finish_reason) == (
        b.text,
        b.token_ids,
        b.logprobs,
        b.finish_reason,
    )
    assert a.end_time != b.end_time  # only the timing depends on the batch
    other = plan_step(prompt, 43, 1000)
    assert other.text != a.text


# --- workload --------------------------------------------------------------------------------


def test_problems_and_chat_round_trip():
    rows = sim_problems(5)
    assert [r["id"] for r in rows] == [f"sim-{i}" for i in range(5)]
    assert rows == sim_problems(5) and rows != sim_problems(5, seed=1)
    prompt = chat_prompt(rows[2]["problem"]) + "Step 1 [z=0.500]: foo\n\n"
    assert extract_problem(prompt) == rows[2]["problem"]
    assert str(gold_answer(rows[2]["problem"])) == rows[2]["answer"]
    assert tokenize(prompt)[: len(tokenize(chat_prompt(rows[2]["problem"])))] == tokenize(
        chat_prompt(rows[2]["problem"])
    )
    plan = plan_step(prompt, 7, 1000)
    assert plan.depth == 2 and plan.text.startswith("Step 2 [z=")
    short = plan_step(prompt, 7, 5)
    assert short.finish_reason == "length" and len(short.token_ids) == 5 and short.stop_matched is None
    assert (
        plan_step(prompt, 7, 1000, temperature=0.0).text == plan_step(prompt, 8, 1000, temperature=0.0).text
    )


def test_workload_shape():
    params = WorkloadParams()
    correct_by_depth: dict[int, list[bool]] = {}
    correct_by_z: dict[bool, list[bool]] = {True: [], False: []}
    lengths, z_and_logprob = [], []
    for row in sim_problems(100):
        base = chat_prompt(row["problem"])
        for chain in range(4):
            prompt = base
            for depth in range(1, 11):
                plan = plan_step(prompt, 1000 * chain + depth, 10**6, params=params)
                lengths.append(len(plan.token_ids))
                z_and_logprob.append((plan.z, statistics.fmean(plan.logprobs)))
                if plan.answer is not None:
                    answer = extract_answer(plan.text)
                    assert answer == plan.answer
                    ok = answer_key(answer) == answer_key(row["answer"])
                    correct_by_depth.setdefault(depth, []).append(ok)
                    correct_by_z[plan.z >= 0.6].append(ok)
                    break
                prompt += plan.text + "\n\n"

    def accuracy(groups):
        flat = [ok for group in groups for ok in group]
        return sum(flat) / len(flat)

    shallow = accuracy(v for d, v in correct_by_depth.items() if d <= 3)
    deep = accuracy(v for d, v in correct_by_depth.items() if d >= 5)
    assert shallow > deep + 0.15
    assert accuracy([correct_by_z[True]]) > accuracy([correct_by_z[False]]) + 0.3
    assert abs(statistics.fmean(lengths) - params.step_tokens_mean) < 0.1 * params.step_tokens_mean
    zs, lps = zip(*z_and_logprob, strict=True)
    assert statistics.correlation(zs, lps) > 0.5  # confidence tracks quality


def test_sim_reward_is_stable_and_tracks_z():
    reward = SimReward()
    good, bad = "Step 2 [z=0.900]: so we add", "Step 2 [z=0.100]: so we add"

    def score(step: str) -> float:
        return asyncio.run(reward.score(StepContext("p", "p", ["Step 1 [z=0.5]: x", step], _result())))

    assert score(good) == score(good) and 0 <= score(bad) < score(good) <= 1
    exact = SimReward(RewardConfig(kind="sim", noise=0.0))
    assert exact.score_step(good) == 0.9
    assert math.isclose(exact.score_step("no marker", [-1.0, -1.0]), math.exp(-1.0))


def _result():
    from spex_ray.engines.base import GenResult

    return GenResult("r", logprobs=[-0.5])


# --- speculative decoding ---------------------------------------------------------------------


def test_eagle_lowers_time_per_token_by_accept_len_over_draft_cost():
    async def per_token(**settings):
        engine = make_engine(LONG_STEPS, overhead_s=0.0, **settings)
        result = await engine.generate(request(chat_prompt("spec decode"), seed=1))
        await engine.close()
        decode = result.end_time - result.enqueue_time - result.meta["ttft_s"]
        return decode / (result.completion_tokens - 1), result

    plain, _ = asyncio.run(per_token())
    eagle, result = asyncio.run(per_token(spec_decode="eagle", draft_cost=0.1))
    settings = make_engine(spec_decode="eagle").settings
    expected = settings.mean_accepted() / (1 + settings.draft_cost * settings.draft_passes())
    assert abs(plain / eagle - expected) / expected < 0.1
    assert abs(result.meta["accept_len"] - settings.mean_accepted()) < 0.05
    assert result.completion_tokens == 300


# --- a whole search --------------------------------------------------------------------------


def test_rebase_search_on_the_sim_is_reproducible_and_lossless():
    problems = sim_problems(3)

    def run(speculate: bool):
        config = Config()
        config.search.algorithm = "rebase"
        config.search.width = 4
        config.spex.speculate = speculate

        async def main():
            engine = make_engine(max_batch_size=16)
            clock_start = engine.clock()
            out = []
            for row in problems:
                prompt = engine.chat_template().render(build_messages(row["problem"]))
                settings = SearchSettings.from_config(config)
                search = QuerySearch(
                    row["id"], row["problem"], prompt, settings, engine, SimReward(config.reward), 7
                )
                outcome = await search.run()
                out.append((outcome.answer, search.tree.signature(), outcome))
            elapsed = engine.clock() - clock_start
            await engine.close()
            return out, elapsed

        return asyncio.run(main())

    first, t_first = run(False)
    again, _ = run(False)
    spec, _ = run(True)
    assert [sig for _, sig, _ in first] == [sig for _, sig, _ in again]
    assert all(answer is not None for answer, _, _ in first)
    assert all(outcome.stats.leaves >= 1 and outcome.stats.tokens_main > 0 for _, _, outcome in first)
    assert t_first > 0
    assert [sig for _, sig, _ in spec] == [sig for _, sig, _ in first]  # speculation is lossless
    assert [a for a, _, _ in spec] == [a for a, _, _ in first]


def test_shared_clock_reads_modeled_time():
    clock = SimClock(epoch=0.0)
    engine = SimEngine(PolicyConfig(), clock=clock)
    engine.settings.time_scale = 0.0

    async def main():
        result = await engine.generate(request(chat_prompt("clock"), seed=1))
        await engine.close()
        return result

    result = asyncio.run(main())
    assert clock.now() == engine.clock() == result.end_time > 0
    assert result.meta["wall_end"] >= result.meta["wall_start"] > 1e9
