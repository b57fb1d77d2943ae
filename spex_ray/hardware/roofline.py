"""The knee concurrency of an engine: how many sequences decode for (almost) free.

One decode step of a batch of B sequences, each with `ctx` tokens of context, costs

    FLOPs(B) = B * (2 * params_active + 4 * n_layers * hidden * ctx)
    bytes(B) = params_total * bytes_per_param + B * ctx * kv_bytes_per_token

(the 2 * params FLOPs are the matmuls; 4 * n_layers * hidden * ctx is QK^T plus AV over
the context; bytes are all weights read once per step plus each sequence's KV cache.)
The step takes max(FLOPs / peak, bytes / bandwidth), both scaled by the achievable
`efficiency`. While the weight read dominates, extra sequences ride along for free; the
knee is the batch where compute time catches up with memory time:

    B* = W / (a - c),  W = weight_bytes / bw,  a = per-sequence FLOPs / peak,
                       c = ctx * kv_bytes_per_token / bw.

At short context (c ~ 0) this is B* ~ (peak / bw) * bytes_per_param / 2 * total / active,
e.g. H100 bf16 dense: 989e12 / 3.35e12 ~ 295. When a <= c the KV read grows faster than
compute and decoding is memory-bound at every batch; then, and always as an upper bound,
the knee is the number of sequences whose KV cache fits next to the weights. For MoE
models the model charges all expert weights per step (true at the batch sizes that matter).

A measured alternative: knee_from_measurements() takes (batch, step time) points from a
calibration run. No Ray in here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from spex_ray.hardware.specs import GPUSpec, ModelSpec

# The one memory fraction: the share of GPU memory that holds the weights and the KV cache
# (SGLang's mem_fraction_static; the rest is activations and runtime). policy.mem_fraction_static
# sets it per run; 0 there means this default (SGLang itself then picks its own).
MEM_FRACTION = 0.9


def pass_flops(model: ModelSpec, tokens: float, attention_tokens: float) -> float:
    """FLOPs of one forward pass over `tokens` new tokens that together attend to
    `attention_tokens` context positions: the matmuls plus QK^T and AV."""
    return 2 * model.params_active * tokens + 4 * model.n_layers * model.hidden * attention_tokens


def pass_bytes(model: ModelSpec, kv_tokens: float) -> float:
    """Bytes one forward pass reads from memory: all weights plus `kv_tokens` cached tokens' KV."""
    return model.weight_bytes + kv_tokens * model.kv_bytes_per_token


def decode_flops(model: ModelSpec, batch: int, context_tokens: int) -> float:
    """FLOPs of one decode step of `batch` sequences with `context_tokens` of context each."""
    return pass_flops(model, batch, batch * context_tokens)


def decode_bytes(model: ModelSpec, batch: int, context_tokens: int) -> float:
    """Bytes read from memory by one decode step: all weights plus every sequence's KV."""
    return pass_bytes(model, batch * context_tokens)


def decode_step_time(gpu: GPUSpec, model: ModelSpec, batch: int, context_tokens: int = 1024) -> float:
    """Seconds of one decode step on the roofline: max(compute time, memory time)."""
    compute = decode_flops(model, batch, context_tokens) / (gpu.peak_flops * gpu.efficiency)
    memory = decode_bytes(model, batch, context_tokens) / (gpu.mem_bandwidth * gpu.efficiency)
    return max(compute, memory)


def kv_cache_bytes(gpu: GPUSpec, model: ModelSpec, mem_fraction: float = MEM_FRACTION) -> float:
    """Bytes of KV cache that fit next to the weights in `mem_fraction` of the GPU's memory.

    Raises ValueError when the weights alone do not fit (use `gpu.times(n)` for TP).
    """
    free = gpu.memory_bytes * mem_fraction - model.weight_bytes
    if free <= 0:
        raise ValueError(
            f"{model.name} weights ({model.weight_bytes / 1e9:.1f} GB) do not fit in "
            f"{mem_fraction:.0%} of {gpu.name} memory ({gpu.memory_bytes / 1e9:.0f} GB); "
            "raise the tensor-parallel degree (policy.tp; gpu.times(n) for a spec)"
        )
    return free


def kv_capacity_tokens(gpu: GPUSpec, model: ModelSpec, mem_fraction: float = MEM_FRACTION) -> int:
    """Tokens of KV cache that fit next to the weights (see kv_cache_bytes)."""
    return int(kv_cache_bytes(gpu, model, mem_fraction) / model.kv_bytes_per_token)


def max_sequences(
    gpu: GPUSpec, model: ModelSpec, context_tokens: int, mem_fraction: float = MEM_FRACTION
) -> float:
    """How many sequences of `context_tokens` fit in memory next to the weights (may be inf)."""
    per_seq = context_tokens * model.kv_bytes_per_token
    free = kv_cache_bytes(gpu, model, mem_fraction)
    return math.inf if per_seq == 0 else free / per_seq


def knee_concurrency(
    gpu: GPUSpec, model: ModelSpec, context_tokens: int = 1024, mem_fraction: float = MEM_FRACTION
) -> int:
    """Decode batch size at which a step stops being memory-bound, capped by KV memory.

    Returns an int >= 1. See the module docstring for the model.
    """
    if context_tokens < 0:
        raise ValueError("context_tokens must be >= 0")
    cap = max_sequences(gpu, model, context_tokens, mem_fraction)
    weights_s = model.weight_bytes / gpu.mem_bandwidth
    flops_per_seq_s = decode_flops(model, 1, context_tokens) / gpu.peak_flops
    kv_per_seq_s = context_tokens * model.kv_bytes_per_token / gpu.mem_bandwidth
    knee = weights_s / (flops_per_seq_s - kv_per_seq_s) if flops_per_seq_s > kv_per_seq_s else math.inf
    knee = min(knee, cap)
    return max(1, int(knee))


@dataclass(frozen=True)
class CalibratedKnee:
    """A knee measured from (batch size, decode step time) points."""

    knee: int
    base_step_s: float  # step time at the smallest measured batch
    tolerance: float
    batch_sizes: tuple[int, ...]
    step_times: tuple[float, ...]  # median per batch size, same order as batch_sizes


def knee_from_measurements(
    batch_sizes: Sequence[int], step_times: Sequence[float], tolerance: float = 0.1
) -> CalibratedKnee:
    """The largest batch whose step time is within `tolerance` of the smallest batch's.

    Repeated batch sizes are reduced to their median step time. Scanning upward from the
    smallest batch, the knee is the last batch before the first one slower than
    base * (1 + tolerance), so a noisy fast point past the knee does not count.
    """
    if len(batch_sizes) != len(step_times) or not batch_sizes:
        raise ValueError("need equally many (>= 1) batch sizes and step times")
    if min(batch_sizes) < 1 or min(step_times) <= 0 or tolerance < 0:
        raise ValueError("batch sizes must be >= 1, step times > 0, tolerance >= 0")
    by_batch: dict[int, list[float]] = {}
    for b, t in zip(batch_sizes, step_times, strict=True):
        by_batch.setdefault(int(b), []).append(float(t))
    batches = sorted(by_batch)
    times = [statistics.median(by_batch[b]) for b in batches]
    limit = times[0] * (1 + tolerance)
    knee = batches[0]
    for b, t in zip(batches, times, strict=True):
        if t > limit:
            break
        knee = b
    return CalibratedKnee(knee, times[0], tolerance, tuple(batches), tuple(times))
