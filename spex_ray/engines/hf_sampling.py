"""Per-request seeded sampling for the transformers continuous-batching manager (engines/hf.py).

The manager samples every row of a batch with one global torch RNG, so a request's tokens
depend on what else runs. `install_seeded_sampling` replaces that sampler: token t of a request
with seed s is the Gumbel-max sample argmax(logprobs + G), the noise G of each vocabulary entry
a counter-based hash of the (s, t) key and the token id alone (`gumbel_noise`). The same request then gives the same tokens alone or
in any batch, up to the batch-composition numerics of the logits (a near-tie may flip).

Two hooks, both on documented extension points of the manager:
  * `SeedKeys`, a continuous-batching logits processor: it takes the request's seed from its
    `add_request(..., seed=...)` kwarg, counts the tokens it has sampled, and carries the
    (seed, step) key of each row through the batch's processor-argument tensor; it leaves the
    scores unchanged and keeps the keys of the batch being sampled.
  * the model runner's `_sample`, replaced by `SeededSampler`, which reads those keys.
Logprobs stay those of the sampling distribution (after temperature / top_p), as before.
CUDA graphs stay off (hf.py): the sampler has not been checked under graph capture.
"""

from __future__ import annotations

import threading

import torch

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_KEY_BITS = 0x7FFFFFFF  # keys travel as int32 in the manager's argument tensor


def step_key(seed: int, step: int) -> int:
    """A 31-bit noise key for token `step` of a request seeded `seed` (splitmix64 of both)."""
    z = (seed * 0x9E3779B97F4A7C15 + step + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & _KEY_BITS


class SeedKeys:
    """The logits processor that carries each row's (seed, step) key to the sampler.

    It subclasses the manager's processor base lazily (see `seed_keys_processor`); `steps`
    counts the tokens sampled per request id; `forget(request_id)` drops a finished one.
    """

    supported_kwargs: dict[str, type] = {"seed": int}
    ignored_kwargs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}
        self.keys: torch.Tensor | None = None  # the keys of the rows being sampled now
        self._lock = threading.Lock()

    def forget(self, request_id: str) -> None:
        with self._lock:
            self.steps.pop(request_id, None)

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(0)

    def prepare_tensor_args(self, requests_with_new_token: list) -> torch.Tensor:
        keys = []
        with self._lock:
            for request in requests_with_new_token:
                state = request.state
                step = self.steps.get(state.request_id, 0)
                self.steps[state.request_id] = step + 1
                keys.append(step_key(int(state.logit_processor_kwargs.get("seed", 0)), step))
        return torch.tensor(keys, dtype=torch.int32, device="cpu")

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        self.keys = tensor_arg[: scores.size(0)]
        return scores


class SeededSampler:
    """The model runner's `_sample(scores, output_ids)`: Gumbel-max with each row's key
    (greedy when the engine does not sample), writing tokens and logprobs where the manager
    expects them."""

    def __init__(self, keys: SeedKeys, do_sample: bool, return_logprobs: bool) -> None:
        self.keys = keys
        self.do_sample = do_sample
        self.return_logprobs = return_logprobs

    def __call__(self, scores: torch.Tensor, output_ids: torch.Tensor) -> None:
        logprobs = torch.log_softmax(scores[0], dim=-1)  # [rows, vocab]
        if self.do_sample:
            next_tokens = torch.argmax(logprobs + self._gumbel(logprobs), dim=-1)
        else:
            next_tokens = torch.argmax(logprobs, dim=-1)
        rows = next_tokens.size(0)
        output_ids[0, :rows].copy_(next_tokens)
        if self.return_logprobs:
            chosen = logprobs.gather(1, next_tokens.unsqueeze(-1)).squeeze(-1)
            output_ids[1, :rows].copy_(chosen.view(dtype=torch.int32))

    def _gumbel(self, logprobs: torch.Tensor) -> torch.Tensor:
        rows, vocab = logprobs.shape
        keys = self.keys.keys if self.keys.keys is not None else torch.zeros(rows, dtype=torch.int32)
        keys = keys[:rows].to(device=logprobs.device, dtype=torch.int64)
        return gumbel_noise(keys, vocab)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32, a 32-bit integer hash, on int64 tensors holding values below 2**32."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def gumbel_noise(keys: torch.Tensor, vocab: int) -> torch.Tensor:
    """Standard Gumbel noise [rows, vocab]: entry (r, v) a pure function of (keys[r], v), a
    counter-based hash (no generator state), so a row's noise never depends on the others."""
    tokens = torch.arange(vocab, device=keys.device, dtype=torch.int64)
    x = _mix32((tokens.unsqueeze(0) + keys.unsqueeze(1) * 0x9E3779B9) & _MASK32)
    x = _mix32(x ^ keys.unsqueeze(1))
    uniform = ((x >> 8).to(torch.float32) + 0.5) / 2.0**24  # 24 bits: exact in float32, in (0, 1)
    return -torch.log(-torch.log(uniform))


def seed_keys_processor() -> SeedKeys:
    """A SeedKeys that is also the manager's ContinuousBatchingLogitsProcessor (imported late:
    transformers is optional until an hf engine is built)."""
    from transformers.generation.continuous_batching.cb_logits_processors import (
        ContinuousBatchingLogitsProcessor,
    )

    cls = type("SeedKeysProcessor", (SeedKeys, ContinuousBatchingLogitsProcessor), {})
    return cls()


def install_seed_keys(manager) -> SeedKeys:
    """Add the key processor to a manager that has not started (its batch tensors are sized
    from the processor list when the generation thread starts)."""
    keys = seed_keys_processor()
    processors = manager.logit_processor
    processors.logits_processor.append(keys)
    processors.tensors_required += 1
    processors.supported_keys.update(keys.supported_kwargs)
    processors.do_processing = True
    return keys


def install_sampler(manager, keys: SeedKeys) -> None:
    """Replace the sampler of the manager's model runner (once its thread has built it)."""
    runner = manager.batch_processor.model_runner
    runner._sample = SeededSampler(keys, runner.do_sample, runner.return_logprobs)
