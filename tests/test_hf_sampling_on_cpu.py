"""The hf engine's seeded sampler (engines/hf_sampling.py) without a model: a row's token
depends on its (seed, step) key only, whatever the batch, and logprobs are the distribution's."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from spex_ray.engines.hf_sampling import SeededSampler, seed_keys_processor, step_key


def future_state(request_id: str, seed: int) -> SimpleNamespace:
    state = SimpleNamespace(request_id=request_id, logit_processor_kwargs={"seed": seed})
    return SimpleNamespace(state=state, has_new_token=True)


def sample(keys, scores: torch.Tensor, seeds: list[tuple[str, int]]) -> tuple[list[int], list[float]]:
    """One batch through the processor and the sampler, as the manager's forward runs them."""
    arg = keys.prepare_tensor_args([future_state(rid, seed) for rid, seed in seeds])
    keys(scores[0], arg)
    output = torch.zeros((2, len(seeds)), dtype=torch.int32)
    SeededSampler(keys, do_sample=True, return_logprobs=True)(scores, output)
    return output[0].tolist(), output[1].view(dtype=torch.float32).tolist()


def test_step_keys_are_fixed_distinct_and_fit_int32():
    keys = {step_key(seed, step) for seed in range(50) for step in range(50)}
    assert len(keys) == 2500 and all(0 <= key < 2**31 for key in keys)
    assert step_key(7, 3) == step_key(7, 3) != step_key(7, 4)
    assert step_key(2**62 + 1, 0) != step_key(1, 0)


def test_a_rows_token_depends_on_its_seed_and_step_not_the_batch():
    logits = torch.randn(1, 3, 500, generator=torch.Generator().manual_seed(0))
    alone = sample(seed_keys_processor(), logits[:, 1:2], [("a", 7)])
    crowded = sample(seed_keys_processor(), logits, [("x", 1), ("a", 7), ("y", 2)])
    assert crowded[0][1] == alone[0][0]
    assert crowded[1][1] == torch.log_softmax(logits[0, 1], -1)[alone[0][0]].item() == alone[1][0]


def test_steps_advance_per_request_and_forget_resets():
    keys = seed_keys_processor()
    logits = torch.randn(1, 1, 50_000, generator=torch.Generator().manual_seed(1))
    first = [sample(keys, logits, [("a", 7)])[0][0] for _ in range(4)]
    assert len(set(first)) > 1  # a new step draws new noise on the same logits
    keys.forget("a")
    assert [sample(keys, logits, [("a", 7)])[0][0] for _ in range(4)] == first


def test_gumbel_max_samples_the_distribution():
    keys = seed_keys_processor()
    probs = torch.tensor([0.6, 0.3, 0.1])
    scores = probs.log().expand(1, 2000, 3).contiguous()
    tokens, _ = sample(keys, scores, [(f"r{i}", i) for i in range(2000)])
    share = torch.bincount(torch.tensor(tokens), minlength=3).float() / 2000
    assert torch.allclose(share, probs, atol=0.04)
