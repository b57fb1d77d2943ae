"""HFEngine's admission and SPEC preemption logic, on a stand-in for the transformers manager
(no model): MAIN pauses running SPEC beyond the speculative capacity, paused SPEC resumes
before waiting SPEC, SPEC fills an engine without MAIN, and the capacity follows the measured
step times. The real model path is tests/test_hf_engine.py (slow)."""

from __future__ import annotations

import asyncio
import queue
import threading
from types import SimpleNamespace

from spex_ray.config import PolicyConfig
from spex_ray.engines.base import FinishReason, GenRequest, Priority
from spex_ray.engines.hf import HFEngine, _RequestState


class StandInManager:
    """What HFEngine calls on a ContinuousBatchingManager: it only records the calls."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.cancelled: list[str] = []
        self.logit_processor = SimpleNamespace(supported_keys={})
        self.output_router = SimpleNamespace(
            _lock=threading.Lock(), result_handlers={}, output_queue=queue.Queue()
        )
        self._wake_up_loop = threading.Event()

    def register_result_handler(self, request_id, callback) -> None:
        self.output_router.result_handlers[request_id] = callback

    def add_request(self, input_ids, request_id, **kwargs) -> str:
        self.added.append(request_id)
        return request_id

    def cancel_request(self, request_id) -> None:
        self.cancelled.append(request_id)


def engine(slots: int = 4, **policy) -> HFEngine:
    eng = HFEngine(PolicyConfig(max_batch_size=slots, **policy))
    eng._manager = StandInManager()
    eng._tokenizer = SimpleNamespace(decode=lambda token_ids, **options: "")
    return eng


def submit(eng: HFEngine, name: str, priority: Priority) -> _RequestState:
    request = GenRequest(input_ids=[1, 2, 3], request_id=name, priority=priority, max_new_tokens=8)
    state = _RequestState(request, [1, 2, 3], asyncio.get_running_loop().create_future(), 0.0)
    eng._queue.push(state)
    eng._admit()
    return state


def running(eng: HFEngine) -> set[str]:
    return {s.request_id for s in eng._active()}


def test_main_pauses_spec_and_paused_spec_resumes_before_waiting_spec():
    async def main():
        eng = engine(slots=4)  # nothing measured yet: the static knee (4 slots) bounds SPEC
        for name in ("m1", "m2"):
            submit(eng, name, Priority.MAIN)
        for name in ("s1", "s2"):
            submit(eng, name, Priority.SPEC)
        assert running(eng) == {"m1", "m2", "s1", "s2"} and eng.load().spec_capacity == 2
        submit(eng, "s3", Priority.SPEC)  # no slot: waits
        for name in ("m3", "m4"):
            submit(eng, name, Priority.MAIN)
        assert running(eng) == {"m1", "m2", "m3", "m4"}
        assert eng._held.ids == {"s1", "s2"} and eng._manager.cancelled == []  # held, not cancelled
        load = eng.load()
        assert (load.running_main, load.running_spec, load.queued_spec, load.spec_capacity) == (4, 0, 3, 0)
        for name in ("m3", "m4"):
            eng._finish(eng._running[name], FinishReason.STOP)
        assert running(eng) == {"m1", "m2", "s1", "s2"} and eng._held.ids == frozenset()
        assert "s3" in eng._queue  # the paused ones came back first
        for name in ("m1", "m2"):
            eng._finish(eng._running[name], FinishReason.STOP)
        assert running(eng) == {"s1", "s2", "s3"}  # no MAIN: SPEC may take every slot
        await eng.abort("s1")
        assert "s1" in eng._manager.cancelled and eng._running.keys() == {"s2", "s3"}

    asyncio.run(main())


def test_measured_step_costs_bound_spec_beside_main():
    """Steps of 80 ms + 10 ms per sequence: beside two MAIN sequences a 25% slowdown leaves
    room for two SPEC ones (100 ms -> 120 ms <= 125 ms), not three."""

    async def main():
        eng = engine(slots=8, max_slowdown=0.25)
        for _ in range(4):
            for batch in (1, 2, 4, 8):
                eng.step_costs.observe(batch, 10.0 * batch, 0.08 + 0.01 * batch)
        for name in ("m1", "m2"):
            submit(eng, name, Priority.MAIN)
        for name in ("s1", "s2", "s3", "s4"):
            submit(eng, name, Priority.SPEC)
        assert running(eng) == {"m1", "m2", "s1", "s2"} and eng.load().spec_capacity == 2
        assert eng.load().queued_spec == 2
        submit(eng, "m3", Priority.MAIN)  # 110 ms * 1.25 = 137.5 ms: still two beside three
        assert running(eng) == {"m1", "m2", "m3", "s1", "s2"}
        submit(eng, "m4", Priority.MAIN)  # 120 ms * 1.25 = 150 ms: three beside four
        assert running(eng) == {"m1", "m2", "m3", "m4", "s1", "s2", "s3"}
        for name in ("m5", "m6"):
            submit(eng, name, Priority.MAIN)
        assert eng.load().spec_capacity == 2 and eng._held.ids == {"s3"}  # 6 MAIN + 2 SPEC fill the 8 slots
        submit(eng, "m7", Priority.MAIN)
        assert eng._held.ids == {"s2", "s3"} and "s1" in running(eng)  # the latest admitted paused first

    asyncio.run(main())
