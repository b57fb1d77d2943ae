"""The simulated engine's timing model: how long one continuous-batching iteration takes.

One iteration runs the prefill chunks and the decode (or speculative verify) tokens of the
running sequences through the model once:

    FLOPs = 2 * params_active * tokens + 4 * n_layers * hidden * (context of each token)
    bytes = params_total * bytes_per_param + kv_bytes_per_token * (KV tokens read)
    t     = max(FLOPs / (peak * eff), bytes / (bandwidth * mem_eff)) + overhead

(the roofline of hardware/roofline.py, so the knee where compute time catches up
with memory time is that module's knee). A mixture-of-experts model costs its active
parameters in FLOPs and all of them in bytes. With speculative decoding (EAGLE/MTP) each
decoding sequence runs `verify_tokens` tokens through the target and the draft model adds
`draft_steps` passes, each `draft_cost` times a plain decode pass of the same batch.
Tensor parallelism is `gpu.times(tp)` (peak, bandwidth and memory multiply; no
communication cost). The KV cache holds what fits next to the weights in `mem_fraction` of
the memory (hardware/roofline.py, the same memory the knee is capped by). Pure functions,
no asyncio.

Calibration. `eff` (compute) is the GPU spec's 0.7 of the dense bf16 peak. `mem_eff` and
`overhead` are fitted together to published batch-1 decode latencies (BENCHMARKS.md,
"Timing calibration"): a decode step at batch 1 is the weight read plus a fixed cost per
iteration (kernel launches, scheduling, sampling), and mem_eff 0.9 with 1.5 ms gives
6.8 ms for Llama-3-8B on an H100 (published: about 6-8 ms), 21.0 ms for Llemma-7B on an
A6000 (a 7B there: about 20-22 ms) and 13.0 ms for Llama-3-8B on an A100-40GB (75 tokens/s
published, 13.3 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from spex_ray.hardware.roofline import (
    MEM_FRACTION,
    knee_concurrency,
    kv_capacity_tokens,
    pass_bytes,
    pass_flops,
)
from spex_ray.hardware.specs import GPUSpec, ModelSpec

# Fitted to published batch-1 decode latencies (see the module docstring and BENCHMARKS.md).
MEM_EFFICIENCY = 0.9  # achievable fraction of the memory bandwidth in a decode step
OVERHEAD_S = 0.0015  # fixed cost of one engine iteration


@dataclass(frozen=True)
class IterationWork:
    """The work of one iteration.

    prefill_tokens: prompt tokens computed; prefill_attention: the sum over them of their
    positions (context each attends to); prefill_kv: cached KV tokens the prefill chunks
    read. decode_seqs: sequences decoding; decode_context: the sum of their context
    lengths; verify_tokens: tokens each decoding sequence runs (1 without speculation).
    """

    prefill_tokens: int = 0
    prefill_attention: float = 0.0
    prefill_kv: int = 0
    decode_seqs: int = 0
    decode_context: int = 0
    verify_tokens: int = 1

    @property
    def empty(self) -> bool:
        return self.prefill_tokens == 0 and self.decode_seqs == 0


class TimingModel:
    """Roofline iteration times for one engine (a GPU, or `tp` of them, serving a model)."""

    def __init__(
        self,
        gpu: GPUSpec,
        model: ModelSpec,
        *,
        tp: int = 1,
        efficiency: float = 0.0,
        mem_efficiency: float = MEM_EFFICIENCY,
        overhead_s: float = OVERHEAD_S,
        mem_fraction: float = MEM_FRACTION,
        draft_steps: int = 0,
        draft_cost: float = 0.0,
    ) -> None:
        if overhead_s < 0 or draft_steps < 0 or draft_cost < 0:
            raise ValueError("overhead_s, draft_steps and draft_cost must be >= 0")
        if not 0 < mem_fraction <= 1:
            raise ValueError("mem_fraction must be in (0, 1]")
        if not 0 < mem_efficiency <= 1:
            raise ValueError("mem_efficiency must be in (0, 1]")
        gpu = gpu.times(tp)
        self.gpu = replace(gpu, efficiency=efficiency) if efficiency else gpu
        self.model = model
        self.mem_efficiency = mem_efficiency
        self.overhead_s = overhead_s
        self.mem_fraction = mem_fraction
        self.draft_steps = draft_steps
        self.draft_cost = draft_cost
        self.kv_capacity_tokens = kv_capacity_tokens(self.gpu, model, mem_fraction)

    # -- the roofline ------------------------------------------------------------------------

    def flops(self, work: IterationWork) -> float:
        tokens = work.prefill_tokens + work.decode_seqs * work.verify_tokens
        attention = work.prefill_attention + work.decode_context * work.verify_tokens
        return pass_flops(self.model, tokens, attention)

    def bytes(self, work: IterationWork) -> float:
        return pass_bytes(self.model, work.prefill_kv + work.decode_context)

    def compute_time(self, work: IterationWork) -> float:
        return self.flops(work) / (self.gpu.peak_flops * self.gpu.efficiency)

    def memory_time(self, work: IterationWork) -> float:
        return self.bytes(work) / (self.gpu.mem_bandwidth * self.mem_efficiency)

    def roofline_time(self, work: IterationWork) -> float:
        """max(compute, memory) of one pass, without the fixed overhead."""
        return max(self.compute_time(work), self.memory_time(work))

    def draft_time(self, work: IterationWork) -> float:
        """The draft model's passes for the decoding sequences (speculative decoding only)."""
        if not work.decode_seqs or not self.draft_steps or not self.draft_cost:
            return 0.0
        plain = IterationWork(decode_seqs=work.decode_seqs, decode_context=work.decode_context)
        return self.draft_steps * self.draft_cost * self.roofline_time(plain)

    def iteration_time(self, work: IterationWork) -> float:
        """Seconds of one iteration: roofline of the target pass + draft passes + overhead."""
        if work.empty:
            return 0.0
        return self.roofline_time(work) + self.draft_time(work) + self.overhead_s

    def decode_step_time(self, batch: int, context_tokens: int = 1024, verify_tokens: int = 1) -> float:
        """One decode iteration of `batch` sequences with `context_tokens` each (overhead included)."""
        work = IterationWork(
            decode_seqs=batch, decode_context=batch * context_tokens, verify_tokens=verify_tokens
        )
        return self.iteration_time(work)

    def knee(self, context_tokens: int = 1024) -> int:
        """The roofline knee (hardware/roofline.py) of this GPU and model, at the achievable
        compute and memory rates this model times iterations with."""
        achievable = replace(
            self.gpu,
            peak_flops=self.gpu.peak_flops * self.gpu.efficiency,
            mem_bandwidth=self.gpu.mem_bandwidth * self.mem_efficiency,
        )
        return knee_concurrency(achievable, self.model, context_tokens, self.mem_fraction)
