"""The speculative capacity an engine offers: how many SPEC sequences may run beside its
primary (MAIN) ones while the primary step time stays within `policy.max_slowdown`.

`step_time(b)` is the engine's step time with `b` decoding sequences at its current mean
context: the simulated engine's timing model, or a `StepCostFit` over the steps a real
engine measured. With `m` MAIN sequences in the engine (running and waiting) it offers the
largest `s` with

    step_time(max(m, 1) + s) <= (1 + max_slowdown) * step_time(max(m, 1))

at most the free slots (max_batch_size - m), recomputed whenever it is asked, so it follows
context and load. `policy.knee`, when set, overrides it (knee - m); an engine that has not
measured enough steps yet offers its static estimate (Engine.knee() - m). The allocator
shares what an engine offers among the queries on it (EngineLoad.spec_capacity, reported
with BudgetBook.report_main). No Ray, no asyncio.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from spex_ray.config import PolicyConfig

StepTime = Callable[[int], float]  # decoding sequences -> seconds per step

FIT_WINDOW = 256  # steps the fit looks back over: recent enough to follow the context
MIN_STEPS = 16  # steps measured before the fit is trusted
REFIT_EVERY = 8  # new steps between two fits (a fit of the window takes about a millisecond)
_COLLINEAR = 1e-6  # |corr(b, b * context)| above 1 - this: context cost not separable from batch cost
_OUTLIER = 5.0  # a step this many median absolute residuals off the fit is dropped from the refit


def spec_capacity(
    policy: PolicyConfig,
    main: int,
    step_time: StepTime | None,
    static_knee: Callable[[], int],
    room: int | None = None,
) -> int:
    """SPEC sequences the engine offers beside `main` MAIN ones (see the module docstring).

    `step_time` is None while the engine has no step-time model; `static_knee` (Engine.knee)
    is then asked for its static estimate. `room` is a further cap of the engine's own
    (sequences that fit its KV memory); the policy.knee override is not capped by it.
    """
    slots = max(0, policy.max_batch_size - main)
    if policy.knee:
        return min(slots, max(0, policy.knee - main))
    if room is not None:
        slots = min(slots, max(0, room))
    if step_time is None:
        return min(slots, max(0, static_knee() - main))
    return extra_within(step_time, max(1, main), policy.max_slowdown, slots)


def extra_within(step_time: StepTime, base: int, max_slowdown: float, limit: int) -> int:
    """The largest s in [0, limit] with step_time(base + s) <= (1 + max_slowdown) * step_time(base).

    step_time must not decrease with the batch (true of the roofline and of a fit with
    non-negative marginal cost), so a binary search finds s in O(log limit) evaluations.
    """
    bound = (1.0 + max_slowdown) * step_time(base)
    low, high = 0, max(0, limit)
    while low < high:
        mid = (low + high + 1) // 2
        if step_time(base + mid) <= bound:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass(frozen=True)
class StepCost:
    """A fitted step time: base_s + per_sequence_s * b + per_token_s * (b * context).

    per_sequence_s is the cost of one more sequence (weights' FLOPs, the framework's
    per-sequence work); per_token_s the cost of one more context token read (attention, KV).
    """

    base_s: float
    per_sequence_s: float
    per_token_s: float
    steps: int  # steps the fit is over
    mean_context: float  # their mean context tokens per sequence

    def marginal_s(self, context: float) -> float:
        """Seconds one more sequence of `context` tokens adds to a step (never negative)."""
        return max(0.0, self.per_sequence_s + self.per_token_s * context)

    def step_time(self, context: float) -> StepTime:
        """Step time by decoding sequences, at `context` tokens each (at least one microsecond)."""
        marginal = self.marginal_s(context)
        base = self.base_s
        return lambda batch: max(1e-6, base + marginal * batch)


class StepCostFit:
    """Least-squares fit of step time t = a + b * B + c * K over the last FIT_WINDOW decode
    steps an engine measured (B: decoding sequences, K: their context tokens summed).

    observe() may be called from another thread (the hf engine's generation thread);
    cost() from the event loop. When the window's contexts do not vary independently of
    the batch, c is not identifiable and the fit is t = a + b' * B (b' then includes the
    cost of the window's mean context); with one batch size only, or when noise leaves a
    negative cost, there is no fit (None) and the engine offers its static estimate.
    """

    def __init__(self, window: int = FIT_WINDOW, min_steps: int = MIN_STEPS) -> None:
        self.min_steps = min_steps
        self._steps: deque[tuple[int, float, float]] = deque(maxlen=window)
        self._observed = 0
        self._lock = threading.Lock()
        self._fitted_at = -1
        self._cost: StepCost | None = None

    def observe(self, sequences: int, context_tokens: float, seconds: float) -> None:
        """One decode step of `sequences` sequences holding `context_tokens` in all, `seconds` long."""
        if sequences < 1 or not seconds > 0 or not math.isfinite(seconds):
            return
        with self._lock:
            self._steps.append((sequences, float(context_tokens), float(seconds)))
            self._observed += 1

    @property
    def observed(self) -> int:
        """Steps observed since the start (not only those in the window)."""
        return self._observed

    def cost(self) -> StepCost | None:
        """The fit over the current window (refit once REFIT_EVERY new steps came in)."""
        with self._lock:
            if self._fitted_at >= 0 and self._observed - self._fitted_at < REFIT_EVERY:
                return self._cost
            steps = list(self._steps)
            self._fitted_at = self._observed
        self._cost = fit_steps(steps) if len(steps) >= self.min_steps else None
        return self._cost


Step = tuple[int, float, float]  # (decoding sequences, their context tokens, seconds)


def fit_steps(steps: list[Step]) -> StepCost | None:
    """StepCost of measured steps: least squares, refit once without the outliers (a step the
    OS stalled), every coefficient non-negative; None when B never varies or no fit is."""
    first = _least_squares(steps, non_negative=False)
    if first is None or len(steps) < 8:
        return _least_squares(steps)
    residuals = [abs(t - _predict(first, b, k)) for b, k, t in steps]
    spread = statistics.median(residuals)
    kept = [step for step, r in zip(steps, residuals, strict=True) if r <= _OUTLIER * spread]
    return _least_squares(kept if spread > 0 else steps)


def _predict(cost: StepCost, sequences: int, context_tokens: float) -> float:
    return cost.base_s + cost.per_sequence_s * sequences + cost.per_token_s * context_tokens


def _least_squares(steps: list[Step], non_negative: bool = True) -> StepCost | None:
    """t = a + b * B + c * K; without c when K is not separable from B (or, non_negative,
    when b or c < 0); None when B never varies or (non_negative) a or b stays negative:
    noise, not a cost model."""
    n = len(steps)
    if n < 2:
        return None
    mb = sum(b for b, _, _ in steps) / n
    mk = sum(k for _, k, _ in steps) / n
    mt = sum(t for _, _, t in steps) / n
    sbb = sum((b - mb) ** 2 for b, _, _ in steps)
    if sbb <= 0:
        return None
    skk = sum((k - mk) ** 2 for _, k, _ in steps)
    sbk = sum((b - mb) * (k - mk) for b, k, _ in steps)
    sbt = sum((b - mb) * (t - mt) for b, _, t in steps)
    skt = sum((k - mk) * (t - mt) for _, k, t in steps)
    mean_context = mk / mb if mb else 0.0
    det = sbb * skk - sbk * sbk
    per_sequence, per_token = sbt / sbb, 0.0
    if skk > 0 and det > _COLLINEAR * sbb * skk:
        full = ((sbt * skk - skt * sbk) / det, (skt * sbb - sbt * sbk) / det)
        if min(full) >= 0 or not non_negative:
            per_sequence, per_token = full
    base = mt - per_sequence * mb - per_token * mk
    if non_negative and min(base, per_sequence) < 0:
        return None
    return StepCost(base, per_sequence, per_token, n, mean_context)
