"""Hooks on the transformers continuous-batching scheduler (engines/hf.py): paused requests
and step timing.

The manager's generation thread calls `scheduler.schedule_batch` once per forward step and
`batch_processor.update_batch` right after it. `install_scheduler_hooks` wraps both:

  * Paused requests (`HeldRequests`): the ids in the held set are taken out of the
    scheduler's active and waiting requests for the duration of schedule_batch and put back
    after it, so a paused request keeps its KV cache and its place but is not stepped, and
    resumes exactly where it stopped (its seeded sampler counts only the tokens it sampled).
    This is how the engine preempts SPEC requests for MAIN ones without losing their work.
  * Step timing: a step is timed from schedule_batch to the end of update_batch; a step with
    no prefill chunk in it (pure decode) is reported as (decoding sequences, their context
    tokens, seconds), which StepCostFit (engines/capacity.py) fits. With async batching
    (CUDA) update_batch handles the previous step, so the times are of the whole pipelined
    loop iteration, still per scheduled batch.

Both run in the generation thread; the held set is replaced, never mutated, from the event
loop, so the thread reads one consistent frozenset per step.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

StepObserver = Callable[[int, float, float], None]  # (decoding sequences, context tokens, seconds)


class HeldRequests:
    """Manager request ids the scheduler must skip; changed from the event loop only."""

    def __init__(self) -> None:
        self.ids: frozenset[str] = frozenset()

    def hold(self, request_id: str) -> None:
        self.ids = self.ids | {request_id}

    def release(self, request_id: str) -> None:
        if request_id in self.ids:
            self.ids = self.ids - {request_id}


class _StepClock:
    """The batch scheduled last, and when: what update_batch turns into a timed step."""

    def __init__(self, observe: StepObserver) -> None:
        self.observe = observe
        self.started = 0.0
        self.decode: tuple[int, float] | None = None  # (sequences, context tokens) of a pure-decode batch

    def scheduled(self, batch, started: float) -> None:
        self.started = started
        self.decode = _decode_shape(batch) if batch else None

    def updated(self) -> None:
        if self.decode is not None:
            sequences, context = self.decode
            self.observe(sequences, context, time.perf_counter() - self.started)
            self.decode = None


def _decode_shape(batch) -> tuple[int, float] | None:
    """(sequences, context tokens) of a batch whose every request decodes one token; else None."""
    context = 0
    for future in batch:
        if future.query_length != 1 or not future.has_new_token:
            return None  # a prefill chunk: not a decode step
        context += future.state.position_offset + 1
    return len(batch), float(context)


def install_scheduler_hooks(manager, held: HeldRequests, observe: StepObserver) -> None:
    """Wrap the started manager's schedule_batch (pauses, step start) and update_batch (step end)."""
    processor = manager.batch_processor
    scheduler = processor.scheduler
    schedule, update = scheduler.schedule_batch, processor.update_batch
    clock = _StepClock(observe)

    def schedule_batch(token_budget: int, cache_budget: int):
        started = time.perf_counter()
        ids = held.ids
        hidden = _hide(scheduler, ids) if ids else None
        try:
            result = schedule(token_budget, cache_budget)
        finally:
            if hidden is not None:
                _restore(scheduler, *hidden)
        clock.scheduled(result[0], started)
        return result

    def update_batch() -> None:
        update()
        clock.updated()

    scheduler.schedule_batch = schedule_batch
    processor.update_batch = update_batch


def wake(manager) -> None:
    """Wake the generation loop if it sleeps waiting for work (a resumed request is work)."""
    event = getattr(manager, "_wake_up_loop", None)
    if event is not None:
        event.set()


def _hide(scheduler, ids: frozenset[str]) -> tuple[dict, dict, list[str]]:
    active = {rid: scheduler.active_requests.pop(rid) for rid in ids if rid in scheduler.active_requests}
    waiting = {rid: scheduler.waiting_requests.pop(rid) for rid in ids if rid in scheduler.waiting_requests}
    order = [rid for rid in scheduler.waiting_requests_order if rid in waiting]
    if order:
        scheduler.waiting_requests_order = deque(
            rid for rid in scheduler.waiting_requests_order if rid not in waiting
        )
    return active, waiting, order


def _restore(scheduler, active: dict, waiting: dict, order: list[str]) -> None:
    scheduler.active_requests.update(active)
    scheduler.waiting_requests.update(waiting)
    scheduler.waiting_requests_order.extendleft(reversed(order))  # back at the front, in their order
