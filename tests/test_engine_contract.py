"""One contract for every Engine (engines/base.py), run against each engine this machine can run:
the simulated accelerator always, the CPU transformers engine on the embedded model (slow), and
SGLang where CUDA and sglang are installed (gpu).

The contract: concurrent requests share the engine and come back matched to their ids; stop
strings end a request and are cut from the text; abort resolves queued and running requests at
once with finish "abort" and frees their slots; MAIN requests are admitted before SPEC ones;
the same seed gives the same output whatever else runs (engines that honour seeds); logprobs
come one per token (none when not asked for); an over-long prompt is a prompt error, not a
hang or a crash. Engines differ only in the Case below (what counts as a long request, which
stop string their text can contain, how to measure an over-long prompt).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from spex_ray.config import PolicyConfig
from spex_ray.engines.base import Engine, FinishReason, GenRequest, Priority


@dataclass
class Case:
    """What differs between engines; the assertions do not."""

    make: Callable[[], Any]
    tokenize: Callable[[Any, str], list[int]]
    over_long: Callable[[Any], int]  # a prompt length no request of this engine can hold
    long_tokens: int  # max_new_tokens of a request that runs for seconds
    stop: str  # a stop string this engine's text reaches quickly
    stop_budget: int  # max_new_tokens within which it does
    seeds: str | None = None  # why per-request seeds are not honoured; None = they are


def _sim_case() -> Case:
    from spex_ray.sim.engine import SimEngine
    from spex_ray.sim.settings import SimSettings
    from spex_ray.sim.workload import WorkloadParams, tokenize

    def make():
        # real time; 21.64% of an H100's memory leaves a KV cache of ~10k tokens next to the weights
        policy = PolicyConfig(backend="sim", max_batch_size=4, mem_fraction_static=0.2164)
        sim = SimSettings(time_scale=0.5)
        policy = policy.with_settings("sim", sim)
        steps = WorkloadParams(step_tokens_mean=300, step_tokens_sigma=0.0, answer_scale=1e6)
        return SimEngine(policy, workload=steps)  # every step is 300 tokens: long enough to abort

    return Case(
        make=make,
        tokenize=lambda engine, text: tokenize(text),
        over_long=lambda engine: engine.timing.kv_capacity_tokens + 1,
        long_tokens=400,
        stop="\n\n",  # the simulated workload ends its steps at the search's step delimiter only
        stop_budget=400,
    )


def _hf_case() -> Case:
    from spex_ray.engines.hf import HFEngine

    return Case(
        make=lambda: HFEngine(PolicyConfig(max_batch_size=4, temperature=0.7)),
        tokenize=lambda engine, text: engine._tokenizer(text, add_special_tokens=False)["input_ids"],
        over_long=lambda engine: engine._context_limit + 1,
        long_tokens=400,
        stop=" ",
        stop_budget=24,
    )


def _sglang_case() -> Case:
    from spex_ray.engines.sglang import SGLangEngine

    def make():
        policy = PolicyConfig(backend="sglang", dtype="bfloat16", max_batch_size=4, temperature=0.7)
        policy.model = os.environ.get("SPEX_RAY_SGLANG_MODEL", "embedded")
        policy.mem_fraction_static = 0.3
        return SGLangEngine(policy)

    return Case(
        make=make,
        tokenize=lambda engine, text: engine.tokenizer().encode(text, add_special_tokens=False),
        over_long=lambda engine: engine.context_length + 1,
        long_tokens=2000,
        stop=" ",
        stop_budget=64,
    )


CASES = {"sim": _sim_case, "hf": _hf_case, "sglang": _sglang_case}
SGLANG_MISSING = importlib.util.find_spec("sglang") is None


@pytest.fixture(scope="module")
def loop():
    """One event loop for the module: engines bind to the loop that starts them."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(
    scope="module",
    params=[
        "sim",
        pytest.param("hf", marks=pytest.mark.slow),
        pytest.param(
            "sglang",
            marks=[pytest.mark.gpu, pytest.mark.skipif(SGLANG_MISSING, reason="sglang is not installed")],
        ),
    ],
)
def case(request) -> Case:
    return CASES[request.param]()


@pytest.fixture(scope="module")
def engine(case, loop):
    eng = case.make()
    loop.run_until_complete(eng.start())
    yield eng
    loop.run_until_complete(eng.close())
    loop.run_until_complete(eng.close())  # idempotent


def prompt(engine, question: str) -> str:
    return engine.chat_template().render([{"role": "user", "content": question}])


LONG_ESSAY = "Write a very long essay about the history of Rome."


async def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def assert_valid(result, request: GenRequest) -> None:
    assert result.request_id == request.request_id
    assert result.error is None and result.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert 1 <= result.completion_tokens == len(result.token_ids) <= request.max_new_tokens
    assert len(result.logprobs) == len(result.token_ids) and all(lp <= 0 for lp in result.logprobs)
    assert result.prompt_tokens > 0 and result.enqueue_time <= result.start_time <= result.end_time


# --- the contract --------------------------------------------------------------------------------


def test_protocol_and_chat(engine):
    assert isinstance(engine, Engine)
    assert "What is 2+2?" in prompt(engine, "What is 2+2?")
    assert 1 <= engine.knee() <= engine.load().max_batch_size


def test_concurrent_requests_share_the_engine(engine, loop):
    questions = ["What is 2+2?", "Name a color.", "Say hello.", "What is the capital of France?"]
    requests = [
        GenRequest(prompt=prompt(engine, q), max_new_tokens=12, seed=i) for i, q in enumerate(questions)
    ]

    async def run():
        max_running = 0
        tasks = [asyncio.ensure_future(engine.generate(r)) for r in reversed(requests)]
        while not all(t.done() for t in tasks):
            max_running = max(max_running, engine.load().running)
            await asyncio.sleep(0.005)
        return [t.result() for t in reversed(tasks)], max_running

    results, max_running = loop.run_until_complete(run())
    assert max_running > 1
    for result, request in zip(results, requests, strict=True):
        assert_valid(result, request)
    load = engine.load()
    assert load.running == load.queued == 0 and load.max_batch_size == 4


def test_stop_string_ends_the_request_and_is_cut(engine, case, loop):
    request = GenRequest(
        prompt=prompt(engine, "Describe the ocean in two long sentences."),
        max_new_tokens=case.stop_budget,
        stop=(case.stop,),
        seed=1,
    )
    result = loop.run_until_complete(engine.generate(request))
    assert result.finish_reason == FinishReason.STOP and result.stop_matched == case.stop
    assert case.stop not in result.text and result.token_ids
    assert len(result.logprobs) == len(result.token_ids)


def test_input_ids_and_logprobs_on_request(engine, case, loop):
    ids = case.tokenize(engine, prompt(engine, "Tell me a long story."))
    with_lp = GenRequest(input_ids=list(ids), max_new_tokens=5, seed=3)
    without = GenRequest(input_ids=list(ids), max_new_tokens=5, seed=3, logprobs=False)

    async def both():
        return await asyncio.gather(engine.generate(with_lp), engine.generate(without))

    a, b = loop.run_until_complete(both())
    assert_valid(a, with_lp)
    assert a.prompt_tokens == b.prompt_tokens == len(ids)
    assert b.token_ids and b.logprobs == []


def test_abort_running_and_queued(engine, case, loop):
    capacity = engine.load().max_batch_size
    text = prompt(engine, LONG_ESSAY)

    async def run():
        await engine.abort("no-such-request")  # unknown id: no-op
        requests = [
            GenRequest(prompt=text, max_new_tokens=case.long_tokens, seed=i) for i in range(capacity + 1)
        ]
        tasks = [asyncio.ensure_future(engine.generate(r)) for r in requests]
        await wait_until(lambda: engine.load().running == capacity and engine.load().queued == 1)
        began = time.monotonic()
        await engine.abort(requests[-1].request_id)
        queued = await asyncio.wait_for(tasks[-1], 5)
        queued_s = time.monotonic() - began
        await asyncio.sleep(0.5)  # the running ones produce a few tokens
        began = time.monotonic()
        for r in requests[:-1]:
            await engine.abort(r.request_id)
        running = await asyncio.wait_for(asyncio.gather(*tasks[:-1]), 10)
        running_s = time.monotonic() - began
        await engine.abort(requests[0].request_id)  # finished id: no-op
        return queued, queued_s, running, running_s

    queued, queued_s, running, running_s = loop.run_until_complete(run())
    assert queued.finish_reason == FinishReason.ABORT and queued.token_ids == [] and queued_s < 2
    assert running_s < 5
    for result in running:
        assert result.finish_reason == FinishReason.ABORT and result.completion_tokens < case.long_tokens
        assert len(result.logprobs) == len(result.token_ids)
    assert engine.load().running == 0
    after = loop.run_until_complete(engine.generate(GenRequest(prompt=text, max_new_tokens=4)))
    assert after.error is None and after.token_ids  # the engine still serves


def test_cancelled_generate_frees_its_slot(engine, case, loop):
    async def run():
        task = asyncio.ensure_future(
            engine.generate(GenRequest(prompt=prompt(engine, LONG_ESSAY), max_new_tokens=case.long_tokens))
        )
        await wait_until(lambda: engine.load().running == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: engine.load().running == 0, timeout=5)

    loop.run_until_complete(run())


def test_main_is_admitted_before_spec(engine, case, loop):
    """The batch is full; a SPEC request and then a MAIN one wait. When one slot frees, MAIN
    runs, and finishes while SPEC still waits."""
    capacity = engine.load().max_batch_size
    text = prompt(engine, LONG_ESSAY)

    async def run():
        blockers = [GenRequest(prompt=text, max_new_tokens=case.long_tokens, seed=i) for i in range(capacity)]
        blocking = [asyncio.ensure_future(engine.generate(r)) for r in blockers]
        await wait_until(lambda: engine.load().running == capacity)
        spec = asyncio.ensure_future(
            engine.generate(GenRequest(prompt=text, max_new_tokens=16, priority=Priority.SPEC, seed=7))
        )
        await asyncio.sleep(0.05)
        main = asyncio.ensure_future(
            engine.generate(GenRequest(prompt=text, max_new_tokens=4, priority=Priority.MAIN, seed=8))
        )
        await wait_until(lambda: engine.load().queued == 2)
        await engine.abort(blockers[0].request_id)
        main_result = await asyncio.wait_for(main, 60)
        spec_waited = not spec.done()
        for r in blockers[1:]:
            await engine.abort(r.request_id)
        spec_result = await asyncio.wait_for(spec, 60)
        await asyncio.gather(*blocking)
        return main_result, spec_waited, spec_result

    main_result, spec_waited, spec_result = loop.run_until_complete(run())
    assert main_result.error is None and main_result.token_ids
    assert spec_waited, "SPEC ran before MAIN"
    assert spec_result.error is None and main_result.end_time <= spec_result.end_time


def test_seeds_are_reproducible(engine, case, loop):
    if case.seeds:
        pytest.skip(f"per-request seeds are not honoured: {case.seeds}")
    text = prompt(engine, "Write a short poem about the sea.")

    def request(seed: int) -> GenRequest:
        return GenRequest(prompt=text, max_new_tokens=16, temperature=0.8, seed=seed)

    async def run():
        alone = await engine.generate(request(7))
        others = [
            GenRequest(prompt=prompt(engine, f"Count to {n}."), max_new_tokens=24, seed=n) for n in (5, 9)
        ]
        crowded = await asyncio.gather(*(engine.generate(r) for r in [others[0], request(7), others[1]]))
        other_seed = await engine.generate(request(8))
        return alone, crowded[1], other_seed

    alone, crowded, other_seed = loop.run_until_complete(run())
    assert (alone.token_ids, alone.text) == (crowded.token_ids, crowded.text)
    assert other_seed.token_ids != alone.token_ids


def test_over_long_prompt_is_a_prompt_error(engine, case, loop):
    too_long = GenRequest(input_ids=[42] * case.over_long(engine), max_new_tokens=8)
    began = time.monotonic()
    result = loop.run_until_complete(asyncio.wait_for(engine.generate(too_long), 60))
    assert time.monotonic() - began < 30
    assert result.finish_reason == FinishReason.ERROR and result.token_ids == []
    assert re.search("too long|exceed", result.error or "")
    ok = loop.run_until_complete(engine.generate(GenRequest(prompt=prompt(engine, "Hi"), max_new_tokens=4)))
    assert ok.error is None and ok.token_ids
