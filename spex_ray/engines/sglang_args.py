"""Pure translation between spex_ray and SGLang 0.5.x: no sglang import, no Ray.

* generate_kwargs(): a GenRequest -> keyword arguments of `sglang.Engine.async_generate`
  (input_ids, rid, sampling_params with sampling_seed, priority, return_logprob);
* server_args(): a PolicyConfig (and its policy.sglang section) -> keyword arguments of `sglang.Engine(...)` (ServerArgs);
* to_gen_result(): the dict async_generate returns -> a GenResult.

Checked against the SGLang 0.5.23 source: GenerateReqInput (managers/io_struct.py),
SamplingParams (sampling/sampling_params.py), the finish reasons of managers/schedule_batch.py
(FINISH_MATCHED_STR / FINISH_MATCHED_TOKEN -> {"type": "stop", "matched": str | int},
FINISH_LENGTH -> "length", FINISH_ABORT -> "abort"), the meta_info keys that
TokenizerManager writes (prompt_tokens, completion_tokens, cached_tokens,
output_token_logprobs as (logprob, token_id, text) tuples, spec_verify_ct, spec_accept_*),
and the ServerArgs fields (arg_groups/fields/*.py).

Priorities: with enable_priority_scheduling SGLang runs larger priority values first
(unless schedule_low_priority_values_first), and a waiting request preempts a running one
when its priority exceeds the running one's by more than
priority_scheduling_preemption_threshold. MAIN is therefore 1, SPEC 0, threshold 0: MAIN is
admitted first and may preempt running SPEC requests, never the reverse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from spex_ray.config import PolicyConfig
from spex_ray.engines.base import FinishReason, GenRequest, GenResult, Priority
from spex_ray.engines.sglang_settings import SPEC_ALGORITHMS, SGLangSettings

SGLANG_PRIORITY = {Priority.MAIN: 1, Priority.SPEC: 0}
PREEMPTION_THRESHOLD = 0  # MAIN - SPEC = 1 > 0: MAIN preempts SPEC
SEED_RANGE = 2**63  # SamplingParams.verify: sampling_seed in [-2**63, 2**63 - 1]
DEFAULT_NCCL_PORT_BASE = 20000  # below the Linux ephemeral range (32768-60999)
NCCL_PORT_BLOCK = 8  # ports tried per engine; engine i of a role starts at base + block * (2i + role)
_META_NUMBERS = ("e2e_latency", "num_retractions")


def sampling_params(request: GenRequest) -> dict[str, Any]:
    """SGLang sampling_params of a request (stop strings are trimmed from the text by SGLang)."""
    params: dict[str, Any] = {
        "max_new_tokens": request.max_new_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    if request.stop:
        params["stop"] = list(request.stop)
    if request.seed is not None:
        params["sampling_seed"] = request.seed % SEED_RANGE
    return params


def generate_kwargs(request: GenRequest, input_ids: list[int] | None = None) -> dict[str, Any]:
    """Keyword arguments of `Engine.async_generate` for one non-streaming request.

    `input_ids` (else request.input_ids) are sent as token ids so that prefixes match the
    radix cache exactly; the prompt text is sent only when neither is given.
    """
    ids = input_ids if input_ids is not None else request.input_ids
    kwargs: dict[str, Any] = {
        "sampling_params": sampling_params(request),
        "rid": request.request_id,
        "priority": SGLANG_PRIORITY[request.priority],
        "return_logprob": request.logprobs,
        "stream": False,
    }
    if ids is not None:
        kwargs["input_ids"] = list(ids)
    else:
        kwargs["prompt"] = request.prompt
    return kwargs


def speculative_args(settings: SGLangSettings) -> dict[str, Any]:
    """ServerArgs of token-level speculative decoding (EAGLE3, NEXTN/MTP, ...); {} when off."""
    if not settings.spec_decode:
        return {}
    args: dict[str, Any] = {"speculative_algorithm": SPEC_ALGORITHMS[settings.spec_decode]}
    if settings.spec_draft_model:
        args["speculative_draft_model_path"] = settings.spec_draft_model
    for theirs, value in (
        ("speculative_num_steps", settings.draft_steps),
        ("speculative_eagle_topk", settings.spec_topk),
        ("speculative_num_draft_tokens", settings.spec_draft_tokens),
    ):
        if value:
            args[theirs] = int(value)
    return args


def server_args(
    policy: PolicyConfig, model_path: str, *, nccl_port: int, seed: int | None = 0
) -> dict[str, Any]:
    """Keyword arguments of `sglang.Engine(**kwargs)` for a policy and its sglang section.

    The section is validated first (a ConfigError names the bad key). Zero-valued options
    (policy.mem_fraction_static, context_length, draft settings) are left to SGLang's defaults.
    `server_args` of the section are passed through last and win.
    """
    settings = SGLangSettings.of(policy)
    settings.validate(policy)
    args: dict[str, Any] = {
        "model_path": model_path,
        "tp_size": policy.tp,
        "dtype": policy.dtype,
        "nccl_port": nccl_port,
        "max_running_requests": policy.max_batch_size,
        "schedule_policy": "fcfs",  # priority scheduling needs fcfs or lof
        "enable_priority_scheduling": True,
        "schedule_low_priority_values_first": False,
        "priority_scheduling_preemption_threshold": PREEMPTION_THRESHOLD,
        "default_priority_value": SGLANG_PRIORITY[Priority.MAIN],
        "enable_deterministic_inference": settings.deterministic,
        "log_level": "error",
    }
    if seed is not None:
        args["random_seed"] = seed
    if policy.mem_fraction_static:
        args["mem_fraction_static"] = policy.mem_fraction_static
    if settings.context_length:
        args["context_length"] = settings.context_length
    if settings.trust_remote_code:
        args["trust_remote_code"] = True
    args.update(speculative_args(settings))
    args.update(settings.server_args)
    return args


def nccl_port(name: str, base: int = 0, is_free: Any = None) -> int:
    """A NCCL port for the engine called `name` ("engine-<i>" or "reward-<i>").

    Engines of one run get disjoint blocks of NCCL_PORT_BLOCK ports from `base` (0 = 20000),
    so engines starting at once on one node never pick the same port; within its block an
    engine takes the first port `is_free(port)` accepts (default: any).
    """
    role = 1 if name.startswith("reward") else 0
    index = _trailing_int(name)
    start = (base or DEFAULT_NCCL_PORT_BASE) + NCCL_PORT_BLOCK * (2 * index + role)
    for port in range(start, start + NCCL_PORT_BLOCK):
        if is_free is None or is_free(port):
            return port
    raise RuntimeError(f"no free NCCL port in {start}..{start + NCCL_PORT_BLOCK - 1} for {name}")


def _trailing_int(name: str) -> int:
    digits = ""
    for char in reversed(name):
        if not char.isdigit():
            break
        digits = char + digits
    return int(digits) if digits else 0


def to_gen_result(
    output: Mapping[str, Any],
    request: GenRequest,
    *,
    prompt_tokens: int,
    enqueue_time: float,
    end_time: float,
    aborted: bool = False,
) -> GenResult:
    """A GenResult from the dict `async_generate` returned (text, output_ids, meta_info).

    `aborted` says whether we asked SGLang to abort this request: only then is an abort
    finish reported as "abort"; an abort SGLang decided on its own is an error.
    """
    meta = output.get("meta_info") or {}
    token_ids = [int(t) for t in output.get("output_ids") or []]
    reason, stop_matched, error = finish_reason(meta.get("finish_reason"), aborted)
    logprobs = token_logprobs(meta.get("output_token_logprobs")) if request.logprobs else []
    return GenResult(
        request_id=request.request_id,
        text=output.get("text") or "",
        token_ids=token_ids,
        logprobs=logprobs[: len(token_ids)],
        finish_reason=reason,
        stop_matched=stop_matched,
        prompt_tokens=int(meta.get("prompt_tokens") or prompt_tokens),
        cached_tokens=int(meta.get("cached_tokens") or 0),
        completion_tokens=int(meta.get("completion_tokens") or len(token_ids)),
        enqueue_time=enqueue_time,
        start_time=start_time(meta, enqueue_time),
        end_time=end_time,
        error=error,
        meta=result_meta(meta),
    )


def finish_reason(reason: Any, aborted: bool = False) -> tuple[str, str | None, str | None]:
    """(our finish reason, matched stop string, error) from SGLang's finish_reason dict."""
    if not isinstance(reason, Mapping):
        return FinishReason.ERROR, None, f"SGLang returned no finish reason ({reason!r})"
    kind = reason.get("type")
    if kind == "stop":
        matched = reason.get("matched")
        return FinishReason.STOP, matched if isinstance(matched, str) else None, None
    if kind == "length":
        return FinishReason.LENGTH, None, None
    if kind == "abort" and aborted:
        return FinishReason.ABORT, None, None
    message = reason.get("message") or "aborted by SGLang"
    return FinishReason.ERROR, None, f"SGLang {kind}: {message}"


def token_logprobs(entries: Any) -> list[float]:
    """Logprobs from output_token_logprobs ((logprob, token_id, text) per token); None -> 0.0."""
    values = []
    for entry in entries or []:
        value = entry[0] if isinstance(entry, (list, tuple)) else entry
        values.append(float(value) if value is not None else 0.0)
    return values


def start_time(meta: Mapping[str, Any], enqueue_time: float) -> float:
    """When the request entered the engine's forward pass, if SGLang says (enable_metrics);
    else the enqueue time."""
    value = meta.get("forward_entry_time")
    if isinstance(value, (int, float)) and value >= enqueue_time:
        return float(value)
    return enqueue_time


def result_meta(meta: Mapping[str, Any]) -> dict[str, float]:
    """Numeric extras for GenResult.meta: speculative-decoding stats (spec_*, plus accept_len
    as the simulator names it), e2e_latency and num_retractions (preemptions)."""
    extras: dict[str, float] = {}
    for key, value in meta.items():
        if (key.startswith("spec_") or key in _META_NUMBERS) and _is_number(value):
            extras[key] = float(value)
    if "spec_accept_length" in extras:
        extras["accept_len"] = extras["spec_accept_length"]
    return extras


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def score_rows(result: Any) -> list[list[float]]:
    """Label probabilities per item from `Engine.async_score`: a ScoreResult (.scores) in
    0.5.2x, a plain list of rows before."""
    rows = getattr(result, "scores", result)
    return [[float(x) for x in row] for row in rows]
