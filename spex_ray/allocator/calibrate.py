"""Measure an engine's decode step time by batch size, for the allocator's knee."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from spex_ray.config import PolicyConfig
from spex_ray.engines import GenRequest, build_engine
from spex_ray.hardware.roofline import CalibratedKnee, knee_from_measurements

_PROMPT = [{"role": "user", "content": "Count slowly from one to one hundred, one number per line."}]


async def calibrate(
    policy: PolicyConfig, batch_sizes: Sequence[int], tokens: int = 32, tolerance: float = 0.1
) -> CalibratedKnee:
    """Time `tokens` decode steps at each batch size (after a warm-up) and find the knee."""
    engine = build_engine(policy)
    await engine.start()
    try:
        prompt = engine.chat_template().render(_PROMPT)
        await _decode(engine, prompt, 1, 4)  # warm-up: caches, kernels, the prompt's prefix
        steps = [await _step_time(engine, prompt, batch, tokens) for batch in batch_sizes]
    finally:
        await engine.close()
    return knee_from_measurements(list(batch_sizes), steps, tolerance)


async def _step_time(engine, prompt: str, batch: int, tokens: int) -> float:
    started = time.perf_counter()
    results = await _decode(engine, prompt, batch, tokens)
    elapsed = time.perf_counter() - started
    decoded = max(max(r.completion_tokens for r in results), 1)
    return elapsed / decoded


async def _decode(engine, prompt: str, batch: int, tokens: int):
    requests = [GenRequest(prompt=prompt, max_new_tokens=tokens, seed=i, stop=()) for i in range(batch)]
    return await asyncio.gather(*(engine.generate(r) for r in requests))
