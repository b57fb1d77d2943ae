"""HFEngine on the real embedded model (CPU): batching, stop strings, abort, priority, errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from spex_ray.config import PolicyConfig
from spex_ray.engines.base import Engine, FinishReason, GenRequest, Priority
from spex_ray.engines.hf import HFEngine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop():
    """One event loop for the module: the engine's callbacks are bound to the loop that submits."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def engine(loop):
    eng = HFEngine(PolicyConfig(max_batch_size=4, temperature=0.7))
    loop.run_until_complete(eng.start())
    yield eng
    loop.run_until_complete(eng.close())
    loop.run_until_complete(eng.close())  # idempotent


def _prompt(engine: HFEngine, question: str) -> str:
    return engine.chat_template().render([{"role": "user", "content": question}])


async def _wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def test_protocol_and_chat(engine):
    assert isinstance(engine, Engine)
    text = _prompt(engine, "Hi")
    assert "Hi" in text and text.rstrip().endswith("assistant")


def test_concurrent_requests_share_the_batch(engine, loop):
    questions = ["What is 2+2?", "Name a color.", "Say hello.", "What is the capital of France?"]

    async def run():
        max_running = 0
        tasks = [
            asyncio.ensure_future(engine.generate(GenRequest(prompt=_prompt(engine, q), max_new_tokens=12)))
            for q in questions
        ]
        while not all(t.done() for t in tasks):
            max_running = max(max_running, engine.load().running)
            await asyncio.sleep(0.01)
        return [t.result() for t in tasks], max_running

    results, max_running = loop.run_until_complete(run())
    assert max_running > 1
    for r in results:
        assert r.error is None and r.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
        assert r.text and r.token_ids and 1 <= r.completion_tokens == len(r.token_ids) <= 12
        assert len(r.logprobs) == len(r.token_ids) and all(lp <= 0 for lp in r.logprobs)
        assert r.prompt_tokens > 0 and r.enqueue_time <= r.start_time <= r.end_time
        assert "<|im_end|>" not in r.text
        if r.finish_reason == FinishReason.LENGTH:
            assert len(r.token_ids) == 12
        else:  # EOS: kept in the tokens, not in the text
            assert r.token_ids[-1] in engine._eos_ids
    load = engine.load()
    assert load.running == load.queued == 0 and load.max_batch_size == 4
    assert load.tokens_per_second > 0 and 0 < load.mean_batch_occupancy <= 1
    assert engine.step_costs.observed > 0 and 0 <= load.spec_capacity <= 4  # decode steps were timed


def test_stop_string(engine, loop):
    prompt = _prompt(engine, "Describe the ocean in two long sentences.")
    result = loop.run_until_complete(
        engine.generate(GenRequest(prompt=prompt, max_new_tokens=24, stop=(" ",)))
    )
    assert result.finish_reason == FinishReason.STOP and result.stop_matched == " "
    assert " " not in result.text
    assert result.token_ids and len(result.logprobs) == len(result.token_ids)
    decoded = engine._decode(result.token_ids)  # the tokens cover the text and complete the stop match
    assert decoded.startswith(result.text + " ")


def test_input_ids_and_max_new_tokens(engine, loop):
    ids = engine._tokenizer(_prompt(engine, "Tell me a long story."), add_special_tokens=False)["input_ids"]
    result = loop.run_until_complete(engine.generate(GenRequest(input_ids=ids, max_new_tokens=5)))
    assert result.prompt_tokens == len(ids)
    assert result.finish_reason in (FinishReason.LENGTH, FinishReason.STOP) and len(result.token_ids) <= 5


def test_abort_running_and_queued(engine, loop):
    prompt = _prompt(engine, "Write a very long essay about the history of Rome.")

    async def run():
        await engine.abort("no-such-request")  # unknown id: no-op
        requests = [GenRequest(prompt=prompt, max_new_tokens=400) for _ in range(5)]  # 4 slots: one waits
        tasks = [asyncio.ensure_future(engine.generate(r)) for r in requests]
        await _wait_until(lambda: engine.load().running == 4 and engine.load().queued == 1)
        queued = requests[-1]
        await engine.abort(queued.request_id)
        queued_result = await asyncio.wait_for(tasks[-1], 1)
        await asyncio.sleep(0.5)  # let the running ones produce a few tokens
        began = time.monotonic()
        for r in requests[:-1]:
            await engine.abort(r.request_id)
        running_results = await asyncio.wait_for(asyncio.gather(*tasks[:-1]), 5)
        await engine.abort(requests[0].request_id)  # finished id: no-op
        return queued_result, running_results, time.monotonic() - began

    queued_result, running_results, elapsed = loop.run_until_complete(run())
    assert queued_result.finish_reason == FinishReason.ABORT and queued_result.token_ids == []
    assert queued_result.run_seconds == 0
    assert elapsed < 2
    for r in running_results:
        assert r.finish_reason == FinishReason.ABORT and r.completion_tokens < 400
        assert len(r.logprobs) == len(r.token_ids)
    assert engine.load().running == 0
    # the engine still serves afterwards
    after = loop.run_until_complete(engine.generate(GenRequest(prompt=prompt, max_new_tokens=4)))
    assert after.error is None and after.token_ids


def test_cancelled_generate_frees_its_slot(engine, loop):
    async def run():
        prompt = _prompt(engine, "Write a very long essay about the history of Rome.")
        task = asyncio.ensure_future(engine.generate(GenRequest(prompt=prompt, max_new_tokens=400)))
        await _wait_until(lambda: engine.load().running == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return engine.load()

    assert loop.run_until_complete(run()).running == 0


def test_over_long_prompt_is_an_error(engine, loop):
    too_long = GenRequest(input_ids=[42] * 8190, max_new_tokens=8)
    result = loop.run_until_complete(engine.generate(too_long))
    assert result.finish_reason == FinishReason.ERROR and "too long" in result.error
    ok = loop.run_until_complete(engine.generate(GenRequest(prompt=_prompt(engine, "Hi"), max_new_tokens=4)))
    assert ok.error is None and ok.token_ids


def test_main_preempts_running_spec_which_resumes_where_it_stopped(loop):
    """One slot: a running SPEC request is paused (held in the manager, not stepped) when a
    MAIN one arrives, resumes before the waiting SPEC one once MAIN is done, and gives the
    same tokens as when it runs alone (its KV cache and sampler state were kept)."""
    eng = HFEngine(PolicyConfig(max_batch_size=1, temperature=0.7))

    def first_request() -> GenRequest:
        return GenRequest(prompt=prompt, max_new_tokens=24, priority=Priority.SPEC, seed=5)

    async def run():
        await eng.start()
        alone = await eng.generate(first_request())
        first = first_request()
        spec = GenRequest(prompt=prompt, max_new_tokens=4, priority=Priority.SPEC, seed=6)
        main = GenRequest(prompt=prompt, max_new_tokens=4, priority=Priority.MAIN, seed=7)
        t_first = asyncio.ensure_future(eng.generate(first))
        await _wait_until(lambda: len(getattr(eng._running.get(first.request_id), "token_ids", [])) >= 4)
        t_spec = asyncio.ensure_future(eng.generate(spec))
        await asyncio.sleep(0)
        t_main = asyncio.ensure_future(eng.generate(main))
        await _wait_until(lambda: eng.load().running_main == 1)
        load = eng.load()
        results = await asyncio.gather(t_first, t_spec, t_main)
        await eng.close()
        after_close = await eng.generate(GenRequest(prompt=prompt, max_new_tokens=4))
        return alone, load, results, after_close

    prompt = _prompt(eng, "Write a poem about the sea.")
    alone, load, (r_first, r_spec, r_main), after_close = loop.run_until_complete(run())
    assert after_close.finish_reason == FinishReason.ERROR and "closed" in after_close.error
    assert (load.running_main, load.running_spec, load.queued_spec, load.queued_main) == (1, 0, 2, 0)
    assert load.spec_capacity == 0  # one slot, held by MAIN
    assert all(r.error is None for r in (r_first, r_spec, r_main))
    assert r_first.start_time < r_main.start_time and r_main.end_time <= r_first.end_time  # paused for MAIN
    assert r_first.end_time <= r_spec.start_time  # the paused one resumes before the waiting one
    assert r_first.token_ids == alone.token_ids and r_first.text == alone.text  # lossless pause
