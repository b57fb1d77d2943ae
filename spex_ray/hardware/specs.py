"""Hardware and model specs for roofline estimates (the simulator and the allocator's knee).

Numbers are datasheet values (dense, no structured sparsity) and published model configs.
No Ray in here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GB = 1e9  # datasheets quote decimal gigabytes


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator: bf16 dense peak FLOP/s, memory bandwidth (bytes/s), memory (bytes).

    `efficiency` is the fraction of both peaks a real decode kernel achieves.
    """

    name: str
    peak_flops: float
    mem_bandwidth: float
    memory_bytes: float
    efficiency: float = 0.7

    def __post_init__(self) -> None:
        if min(self.peak_flops, self.mem_bandwidth, self.memory_bytes) <= 0:
            raise ValueError(f"GPUSpec {self.name!r}: peaks and memory must be > 0")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"GPUSpec {self.name!r}: efficiency must be in (0, 1]")

    def times(self, n: int) -> GPUSpec:
        """n of these GPUs as one tensor-parallel engine (communication ignored)."""
        if n < 1:
            raise ValueError("times(n) needs n >= 1")
        if n == 1:
            return self
        return replace(
            self,
            name=f"{n}x{self.name}",
            peak_flops=self.peak_flops * n,
            mem_bandwidth=self.mem_bandwidth * n,
            memory_bytes=self.memory_bytes * n,
        )


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer: parameter counts and the shape of its KV cache.

    `params_active` differs from `params_total` only for mixture-of-experts models.
    """

    name: str
    params_total: float
    params_active: float
    n_layers: int
    hidden: int
    n_kv_heads: int
    head_dim: int
    bytes_per_param: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.params_active <= self.params_total:
            raise ValueError(f"ModelSpec {self.name!r}: need 0 < params_active <= params_total")

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V cached per token over all layers."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * self.bytes_per_param

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights."""
        return self.params_total * self.bytes_per_param


GPUS: dict[str, GPUSpec] = {
    # NVIDIA RTX A6000 datasheet: "Peak BF16 Tensor TFLOPS with FP32 Accumulate 154.8 | 309.7"
    # (dense | sparse), 768 GB/s GDDR6, 48 GB.
    "a6000": GPUSpec("a6000", 154.8e12, 768 * GB, 48 * GB),
    # NVIDIA A100 datasheet (80GB SXM): BF16 Tensor Core 312 TFLOPS dense, 2,039 GB/s HBM2e.
    "a100-80g": GPUSpec("a100-80g", 312e12, 2039 * GB, 80 * GB),
    # NVIDIA H100 datasheet (SXM): BF16 Tensor Core 1,979 TFLOPS with sparsity = 989 dense,
    # 3.35 TB/s HBM3, 80 GB.
    "h100": GPUSpec("h100", 989e12, 3.35e12, 80 * GB),
    # NVIDIA H200 datasheet (SXM): same compute as H100, 4.8 TB/s HBM3e, 141 GB.
    "h200": GPUSpec("h200", 989e12, 4.8e12, 141 * GB),
}

MODELS: dict[str, ModelSpec] = {
    # Llemma-7B: Llama-2-7B architecture (MHA, 32 KV heads).
    "llemma-7b": ModelSpec("llemma-7b", 6.7e9, 6.7e9, 32, 4096, 32, 128),
    # Llama-3-8B: GQA with 8 KV heads.
    "llama-3-8b": ModelSpec("llama-3-8b", 8.0e9, 8.0e9, 32, 4096, 8, 128),
    # Llemma-34B: CodeLlama-34B architecture (GQA, 8 KV heads).
    "llemma-34b": ModelSpec("llemma-34b", 33.7e9, 33.7e9, 48, 8192, 8, 128),
    # Qwen2.5-Math-1.5B(-Instruct): 28 layers, GQA 2 KV heads of 128, tied embeddings.
    "qwen2.5-math-1.5b": ModelSpec("qwen2.5-math-1.5b", 1.54e9, 1.54e9, 28, 1536, 2, 128),
    # Process reward models (the sim_prm reward's scoring model, sim/prm.py):
    # Math-Shepherd's PRM (peiyi9979/math-shepherd-mistral-7b-prm): Mistral-7B, GQA 8 KV heads.
    "math-shepherd-mistral-7b-prm": ModelSpec(
        "math-shepherd-mistral-7b-prm", 7.24e9, 7.24e9, 32, 4096, 8, 128
    ),
    # Qwen2.5-Math-PRM-7B: the Qwen2.5-Math-7B body, 28 layers, 4 KV heads of 128.
    "qwen2.5-math-prm-7b": ModelSpec("qwen2.5-math-prm-7b", 7.6e9, 7.6e9, 28, 3584, 4, 128),
    # Qwen3-30B-A3B: MoE, 128 experts / 8 active; 32 query heads, 4 KV heads of 128.
    "qwen3-30b-a3b": ModelSpec("qwen3-30b-a3b", 30.5e9, 3.3e9, 48, 2048, 4, 128),
}


def _lookup(table: dict, kind: str, name: str):
    key = name.strip().lower()
    if key not in table:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    return table[key]


def gpu_spec(name: str) -> GPUSpec:
    """The GPUSpec called `name` (case-insensitive); KeyError lists the known names."""
    return _lookup(GPUS, "GPU", name)


def model_spec(name: str) -> ModelSpec:
    """The ModelSpec called `name` (case-insensitive); KeyError lists the known names."""
    return _lookup(MODELS, "model", name)
