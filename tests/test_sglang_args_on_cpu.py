"""The SGLang translation (engines/sglang_args.py) and SGLangEngine's glue, without sglang or a GPU.

The glue tests drive SGLangEngine against a stand-in `sglang` module that mimics the 0.5.23
surface the engine uses (Engine(**server_args), async_generate, async_score,
tokenizer_manager.abort_request / rid_to_state / context_len / tokenizer, shutdown).
"""

from __future__ import annotations

import asyncio
import sys
import types

import pytest

from spex_ray.config import Config, ConfigError, PolicyConfig
from spex_ray.engines.base import FinishReason, GenRequest, Priority
from spex_ray.engines.sglang_args import (
    DEFAULT_NCCL_PORT_BASE,
    NCCL_PORT_BLOCK,
    SGLANG_PRIORITY,
    finish_reason,
    generate_kwargs,
    nccl_port,
    result_meta,
    score_rows,
    server_args,
    to_gen_result,
)
from spex_ray.engines.sglang_settings import SGLangSettings


def sglang_policy(**fields) -> PolicyConfig:
    """An sglang policy; `fields` are PolicyConfig or policy.sglang (SGLangSettings) keys."""
    policy = PolicyConfig(backend="sglang", dtype="bfloat16", max_batch_size=4)
    sglang = SGLangSettings.of(policy)
    for key, value in fields.items():
        setattr(policy if hasattr(policy, key) else sglang, key, value)
    return policy


# --- GenRequest -> async_generate ------------------------------------------------------------


def test_generate_kwargs_carry_ids_rid_seed_priority_and_stop():
    request = GenRequest(
        prompt="ignored when ids are given",
        max_new_tokens=32,
        temperature=0.6,
        top_p=0.9,
        stop=("\n\n", "Step"),
        seed=2**63 + 5,
        priority=Priority.SPEC,
    )
    kwargs = generate_kwargs(request, [1, 2, 3])
    assert kwargs["input_ids"] == [1, 2, 3] and "prompt" not in kwargs
    assert kwargs["rid"] == request.request_id
    assert kwargs["return_logprob"] is True and kwargs["stream"] is False
    assert kwargs["sampling_params"] == {
        "max_new_tokens": 32,
        "temperature": 0.6,
        "top_p": 0.9,
        "stop": ["\n\n", "Step"],
        "sampling_seed": 5,  # folded into SGLang's int64 range
    }
    main = generate_kwargs(GenRequest(prompt="p", priority=Priority.MAIN, logprobs=False))
    assert main["priority"] > kwargs["priority"]  # larger runs first under enable_priority_scheduling
    assert main["prompt"] == "p" and "input_ids" not in main and main["return_logprob"] is False
    assert "stop" not in main["sampling_params"] and "sampling_seed" not in main["sampling_params"]
    assert generate_kwargs(GenRequest(input_ids=[7, 8]))["input_ids"] == [7, 8]


# --- PolicyConfig -> ServerArgs ----------------------------------------------------------------


def test_server_args_priority_determinism_memory_and_passthrough():
    policy = sglang_policy(
        tp=2, mem_fraction_static=0.7, context_length=4096, server_args={"chunked_prefill_size": 4096}
    )
    args = server_args(policy, "/models/x", nccl_port=20016, seed=3)
    assert args["model_path"] == "/models/x" and args["tp_size"] == 2 and args["dtype"] == "bfloat16"
    assert args["nccl_port"] == 20016 and args["random_seed"] == 3
    assert args["mem_fraction_static"] == 0.7 and args["context_length"] == 4096
    assert args["max_running_requests"] == 4
    assert args["enable_priority_scheduling"] is True and args["schedule_low_priority_values_first"] is False
    assert args["schedule_policy"] == "fcfs"  # SGLang requires fcfs or lof with priorities
    # MAIN preempts SPEC: SGLang preempts when the difference exceeds the threshold
    gap = SGLANG_PRIORITY[Priority.MAIN] - SGLANG_PRIORITY[Priority.SPEC]
    assert gap > args["priority_scheduling_preemption_threshold"]
    assert args["enable_deterministic_inference"] is True  # sampling_seed is honoured only then
    assert args["chunked_prefill_size"] == 4096
    assert "speculative_algorithm" not in args
    plain = server_args(sglang_policy(deterministic=False), "m", nccl_port=1, seed=None)
    assert "mem_fraction_static" not in plain and "context_length" not in plain and "random_seed" not in plain
    assert plain["enable_deterministic_inference"] is False
    override = server_args(sglang_policy(server_args={"max_running_requests": 9}), "m", nccl_port=1)
    assert override["max_running_requests"] == 9  # server_args win


def test_speculative_decoding_arguments():
    eagle = sglang_policy(
        spec_decode="eagle3", spec_draft_model="d/eagle3", draft_steps=3, spec_topk=1, spec_draft_tokens=4
    )
    args = server_args(eagle, "m", nccl_port=1)
    assert args["speculative_algorithm"] == "EAGLE3"
    assert args["speculative_draft_model_path"] == "d/eagle3"
    assert (
        args["speculative_num_steps"],
        args["speculative_eagle_topk"],
        args["speculative_num_draft_tokens"],
    ) == (3, 1, 4)
    mtp = server_args(sglang_policy(spec_decode="mtp"), "m", nccl_port=1)
    assert mtp["speculative_algorithm"] == "NEXTN" and "speculative_draft_model_path" not in mtp
    assert (
        server_args(sglang_policy(spec_decode="ngram"), "m", nccl_port=1)["speculative_algorithm"] == "NGRAM"
    )
    with pytest.raises(ValueError, match="spec_draft_model"):
        server_args(sglang_policy(spec_decode="eagle3"), "m", nccl_port=1)


def test_nccl_ports_are_unique_per_engine_and_skip_busy_ones():
    names = [f"engine-{i}" for i in range(4)] + [f"reward-{i}" for i in range(4)]
    ports = [nccl_port(name) for name in names]
    assert len(set(ports)) == len(ports) and min(ports) == DEFAULT_NCCL_PORT_BASE
    blocks = {p // NCCL_PORT_BLOCK for p in ports}
    assert len(blocks) == len(ports)  # whole blocks apart: skipping busy ports never collides
    assert nccl_port("engine-1", base=30000) == 30000 + 2 * NCCL_PORT_BLOCK
    busy = {DEFAULT_NCCL_PORT_BASE, DEFAULT_NCCL_PORT_BASE + 1}
    assert nccl_port("engine-0", is_free=lambda p: p not in busy) == DEFAULT_NCCL_PORT_BASE + 2
    with pytest.raises(RuntimeError, match="no free NCCL port"):
        nccl_port("engine-0", is_free=lambda p: False)


def test_sglang_config_validation():
    base = ["policy.backend=sglang"]
    assert Config.load(None, [*base, "policy.tp=2", "policy.num_gpus=2"]).policy.tp == 2
    assert Config.load(None, [*base, "policy.num_gpus=0.5"]).policy.num_gpus == 0.5
    config = Config.load(None, [*base, "policy.sglang.server_args={enable_metrics: true}"])
    assert SGLangSettings.of(config.policy).server_args == {"enable_metrics": True}
    for bad, key in [
        ("policy.num_gpus=1", "policy.num_gpus"),  # tp 2 needs 2 GPUs (or 0 = auto)
        ("policy.sglang.spec_decode=eagle3", "policy.sglang.spec_draft_model"),
        ("policy.sglang.spec_decode=medusa", "policy.sglang.spec_decode"),
        ("policy.mem_fraction_static=1.5", "policy.mem_fraction_static"),
        ("policy.sglang.server_args=3", "policy.sglang.server_args"),
        ("policy.sglang.mem_fraction_static=0.5", "policy.sglang.mem_fraction_static"),  # one memory fraction
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            Config.load(None, [*base, "policy.tp=2", bad])


# --- async_generate output -> GenResult ------------------------------------------------------


def output(reason, ids=(5, 6, 7), text="two steps", **meta):
    info = {
        "id": "r",
        "finish_reason": reason,
        "prompt_tokens": 10,
        "completion_tokens": len(ids),
        "cached_tokens": 8,
        "output_token_logprobs": [(-0.5, t, None) for t in ids],
        **meta,
    }
    return {"text": text, "output_ids": list(ids), "meta_info": info}


def convert(out, request=None, aborted=False):
    request = request or GenRequest(prompt="p", stop=("\n\n",))
    return to_gen_result(out, request, prompt_tokens=10, enqueue_time=100.0, end_time=101.5, aborted=aborted)


def test_stop_string_eos_and_length():
    stop = convert(output({"type": "stop", "matched": "\n\n"}))
    assert (stop.finish_reason, stop.stop_matched, stop.error) == (FinishReason.STOP, "\n\n", None)
    assert stop.text == "two steps" and stop.token_ids == [5, 6, 7] and stop.logprobs == [-0.5] * 3
    assert (stop.prompt_tokens, stop.cached_tokens, stop.completion_tokens) == (10, 8, 3)
    assert stop.enqueue_time == stop.start_time == 100.0 and stop.end_time == 101.5
    eos = convert(output({"type": "stop", "matched": 2}))  # FINISH_MATCHED_TOKEN: the EOS id
    assert eos.finish_reason == FinishReason.STOP and eos.stop_matched is None
    length = convert(output({"type": "length", "length": 3}))
    assert length.finish_reason == FinishReason.LENGTH
    quiet = convert(output({"type": "length", "length": 3}), GenRequest(prompt="p", logprobs=False))
    assert quiet.logprobs == []


def test_abort_is_ours_or_an_error():
    queued = {
        "meta_info": {"id": "r", "finish_reason": {"type": "abort", "message": "Abort in waiting queue"}}
    }
    ours = convert(queued, aborted=True)  # no output, no token counts in meta_info
    assert ours.finish_reason == FinishReason.ABORT and ours.token_ids == [] and ours.error is None
    assert ours.prompt_tokens == 10 and ours.completion_tokens == 0
    theirs = convert(output({"type": "abort", "message": "out of memory", "status_code": None}))
    assert theirs.finish_reason == FinishReason.ERROR and "out of memory" in theirs.error
    assert finish_reason(None)[0] == FinishReason.ERROR


def test_spec_decoding_stats_and_timing_go_into_meta():
    out = output(
        {"type": "stop", "matched": "\n\n"},
        spec_verify_ct=4,
        spec_accept_length=2.75,
        spec_accept_rate=0.58,
        spec_correct_drafts_histogram=[1, 2],
        e2e_latency=1.4,
        num_retractions=1,
        forward_entry_time=100.25,
    )
    result = convert(out)
    assert result.meta == {
        "spec_verify_ct": 4.0,
        "spec_accept_length": 2.75,
        "spec_accept_rate": 0.58,
        "e2e_latency": 1.4,
        "num_retractions": 1.0,
        "accept_len": 2.75,  # the simulator's name for it
    }
    assert result.start_time == 100.25 and result.queue_seconds == 0.25
    assert result_meta({"spec_accept_length": float("nan"), "weight_version": "default"}) == {}


def test_score_rows_accept_both_result_shapes():
    assert score_rows([[0.9, 0.1]]) == [[0.9, 0.1]]
    assert score_rows(types.SimpleNamespace(scores=[[0.25, 0.75]], prompt_tokens=12)) == [[0.25, 0.75]]


# --- SGLangEngine against a stand-in sglang -----------------------------------------------------


class FakeTokenizer:
    chat_template = "{{ messages }}"

    def encode(self, text, add_special_tokens=True):
        return [len(word) for word in text.split()]

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return " ".join(m["content"] for m in messages) + " <assistant>"


class FakeTokenizerManager:
    """What SGLangEngine touches: rid_to_state, abort_request(rid=...), context_len, tokenizer."""

    def __init__(self):
        self.rid_to_state: dict[str, asyncio.Future] = {}
        self.context_len = 64
        self.tokenizer = FakeTokenizer()
        self.aborts: list[str] = []

    def abort_request(self, rid: str = "", abort_all: bool = False):
        self.aborts.append(rid)
        future = self.rid_to_state.get(rid)
        if future is not None and not future.done():
            future.set_result(
                {"meta_info": {"id": rid, "finish_reason": {"type": "abort", "message": "Aborted"}}}
            )


class FakeEngine:
    instances: list[FakeEngine] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.tokenizer_manager = FakeTokenizerManager()
        self.calls: list[dict] = []
        self.hold = False  # True: requests wait until aborted
        self.shut = False
        FakeEngine.instances.append(self)

    async def async_generate(self, **kwargs):
        self.calls.append(kwargs)
        rid = kwargs["rid"]
        if len(kwargs["input_ids"]) > 1000:
            raise ValueError("The input is longer than the model's context length")
        future = asyncio.get_running_loop().create_future()
        self.tokenizer_manager.rid_to_state[rid] = future
        if not self.hold:
            n = kwargs["sampling_params"]["max_new_tokens"]
            out = output({"type": "length", "length": n}, ids=range(n), text="x" * n)
            out["meta_info"]["prompt_tokens"] = len(kwargs["input_ids"])
            future.set_result(out)
        try:
            return await future
        finally:
            self.tokenizer_manager.rid_to_state.pop(rid, None)

    async def async_score(self, query, items, label_token_ids, apply_softmax):
        return types.SimpleNamespace(scores=[[0.8, 0.2] for _ in items])

    def shutdown(self):
        self.shut = True


@pytest.fixture
def fake_sglang(monkeypatch):
    module = types.ModuleType("sglang")
    module.Engine = FakeEngine
    module.__spec__ = types.SimpleNamespace(name="sglang")
    monkeypatch.setitem(sys.modules, "sglang", module)  # find_spec("sglang") now finds it
    FakeEngine.instances.clear()
    return module


def test_missing_sglang_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sglang", None)  # find_spec("sglang") is None: not installed
    from spex_ray.engines import build_engine

    with pytest.raises(ImportError, match=r'pip install "spex-ray\[sglang\]"'):
        build_engine(sglang_policy())


def test_engine_glue_generate_abort_load_score_close(fake_sglang):
    from spex_ray.engines.sglang import SGLangEngine

    engine = SGLangEngine(sglang_policy(model="org/model", max_batch_size=2), name="engine-1")

    async def main():
        await engine.start()
        fake = FakeEngine.instances[0]
        assert fake.kwargs["model_path"] == "org/model" and fake.kwargs["nccl_port"] >= DEFAULT_NCCL_PORT_BASE
        done = await engine.generate(GenRequest(prompt="three word prompt", max_new_tokens=4, seed=9))
        sent = fake.calls[-1]
        assert sent["input_ids"] == [5, 4, 6] and sent["sampling_params"]["sampling_seed"] == 9
        too_long = await engine.generate(GenRequest(input_ids=[1] * 60, max_new_tokens=8))
        fake.hold = True
        requests = [
            GenRequest(input_ids=[1, 2], max_new_tokens=4, priority=p)
            for p in (Priority.SPEC, Priority.MAIN, Priority.MAIN)
        ]
        tasks = [asyncio.ensure_future(engine.generate(r)) for r in requests]
        await asyncio.sleep(0.01)
        load = engine.load()
        await engine.abort("unknown")  # no-op
        await engine.abort(requests[0].request_id)
        aborted = await asyncio.wait_for(tasks[0], 1)
        scores = await engine.score_labels("q", ["a", "b"], [1, 2], apply_softmax=True)
        await engine.close()
        rest = await asyncio.gather(*tasks[1:])
        after = await engine.generate(GenRequest(prompt="p", max_new_tokens=4))
        return fake, done, too_long, load, aborted, scores, rest, after

    fake, done, too_long, load, aborted, scores, rest, after = asyncio.run(main())
    assert (
        done.finish_reason == FinishReason.LENGTH and done.completion_tokens == 4 and done.prompt_tokens == 3
    )
    assert too_long.finish_reason == FinishReason.ERROR and "too long" in too_long.error
    assert (load.running_main, load.running_spec, load.queued_spec, load.max_batch_size) == (2, 0, 1, 2)
    assert aborted.finish_reason == FinishReason.ABORT and aborted.error is None
    assert fake.tokenizer_manager.aborts[0] == aborted.request_id
    assert scores == [[0.8, 0.2], [0.8, 0.2]]
    assert all(r.finish_reason == FinishReason.ABORT for r in rest)  # close() aborts what is in flight
    assert fake.shut and after.finish_reason == FinishReason.ERROR and "closed" in after.error
    assert engine.load().running == 0


def test_engine_reports_sglang_failures_as_errors(fake_sglang):
    from spex_ray.engines.sglang import SGLangEngine

    engine = SGLangEngine(sglang_policy(model="org/model"))

    async def main():
        await engine.start()
        FakeEngine.instances[0].tokenizer_manager.context_len = 0  # unknown: SGLang checks itself
        return await engine.generate(GenRequest(input_ids=[1] * 2000, max_new_tokens=4))

    result = asyncio.run(main())
    assert result.finish_reason == FinishReason.ERROR and "ValueError" in result.error


def test_chat_knee_and_gpu_names(fake_sglang):
    from spex_ray.engines.chat import ChatTemplate, plain_chat
    from spex_ray.engines.sglang import SGLangEngine, split_running
    from spex_ray.hardware.devices import gpu_key, model_key

    engine = SGLangEngine(sglang_policy(model="org/model", max_batch_size=16))
    engine._tokenizer = FakeTokenizer()
    assert engine.chat_template() == ChatTemplate("{{ messages }}")
    engine._tokenizer.chat_template = None
    assert engine.chat_template() == ChatTemplate()
    assert (
        ChatTemplate().render([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}])
        == "S\n\nQ\n\n"
    )
    assert plain_chat([]) == ""
    assert gpu_key("NVIDIA H100 80GB HBM3") == "h100" and gpu_key("NVIDIA H200") == "h200"
    assert gpu_key("NVIDIA A100-SXM4-80GB") == "a100-80g" and gpu_key("NVIDIA A100-SXM4-40GB") is None
    assert gpu_key("NVIDIA RTX A6000") == "a6000" and gpu_key(None) is None
    assert (
        model_key("meta-llama/Llama-3-8B-Instruct") == "llama-3-8b"
        and model_key("EleutherAI/llemma_7b") == "llemma-7b"
    )
    assert model_key("Qwen/Qwen2.5-72B-Instruct") is None  # no spec for it
    assert engine.knee() == 16  # no GPU here: the batch size
    assert split_running(5, 3, 4) == (4, 0) and split_running(1, 3, 4) == (1, 3)
