"""SimEngine: the Engine protocol on a simulated accelerator, with modeled time.

A scheduler loop runs continuous-batching iterations. Each iteration admits waiting
requests (MAIN before SPEC; SPEC only while no MAIN waits), prefills the admitted ones'
uncached prompt tokens in chunks (a token budget per iteration; the iteration that
completes a prefill also yields the first output token) and decodes one token of every
other running sequence (about `accept_len` with EAGLE/MTP speculative decoding). The
iteration's duration comes from the roofline timing model (timing.py); what the
tokens say comes from the synthetic workload (workload.py), decided in full when a
request arrives, so a request's text never depends on what else runs (lossless
speculation). A prefix cache (cache.py) over token ids makes shared prompt prefixes
free; a finished request's prompt and output are inserted, as SGLang's radix cache does.

Time. The engine keeps a modeled clock: `clock()` = SIM_EPOCH (a fixed Unix-like epoch)
+ modeled seconds since the engine started. GenResult enqueue/start/end times are on this
clock; their wall-clock equivalents (time.time()) are in GenResult.meta (wall_enqueue,
wall_start, wall_end). After each iteration the loop sleeps iteration_time * time_scale of
wall time, so real trees and actors can run against it; with time_scale 0 it only yields
to the event loop, modeled time advances by the iterations alone (idle gaps are free) and
runs are reproducible. With time_scale > 0 the modeled clock also advances through idle
periods (by wall gap / time_scale), so it stays in step with the wall clock. "Wall" is
the running loop's time(): on a VirtualTimeLoop (loop.py) it is modeled too, and a
whole cluster of engines with their searches runs in one process as a discrete-event
simulation (spex_ray.sim.cluster).

Abort frees the slot at once: a queued request resolves immediately with finish "abort";
a running one resolves immediately with the tokens of the iterations already done (the
iteration in progress is still charged, as on a real GPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spex_ray.config import PolicyConfig
from spex_ray.engines.admission import AdmissionQueue, queue_load
from spex_ray.engines.base import EngineLoad, FinishReason, GenRequest, GenResult, Priority
from spex_ray.engines.capacity import spec_capacity
from spex_ray.engines.chat import ChatTemplate
from spex_ray.engines.meter import LoadMeter
from spex_ray.sim.cache import PrefixCache
from spex_ray.sim.settings import SimSettings, load_workload
from spex_ray.sim.timing import IterationWork
from spex_ray.sim.workload import StepPlan, WorkloadParams, plan_step, tokenize

SIM_EPOCH = 1_700_000_000.0  # modeled time 0 (2023-11-14T22:13:20Z), fixed for reproducible traces


def _loop_time() -> float:
    """The running event loop's clock: time.monotonic() on a normal loop, modeled time on a
    VirtualTimeLoop (loop.py), where pacing then costs no wall time."""
    return asyncio.get_running_loop().time()


class SimClock:
    """Modeled time: `now()` = epoch + modeled seconds elapsed. Advanced by one engine only."""

    def __init__(self, epoch: float = SIM_EPOCH) -> None:
        self.epoch = epoch
        self.elapsed = 0.0

    def now(self) -> float:
        return self.epoch + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += max(0.0, seconds)


@dataclass(eq=False)
class _Seq:
    """A request inside the engine."""

    request: GenRequest
    plan: StepPlan
    prompt_ids: list[int]
    future: asyncio.Future[GenResult]
    enqueue_time: float
    wall_enqueue: float
    start_time: float = 0.0
    wall_start: float = 0.0
    first_token_time: float = 0.0
    cached: int = 0
    prefilled: int = 0  # prompt tokens with KV (cached or computed)
    generated: int = 0
    credit: float = 0.0  # fractional accepted tokens (speculative decoding)
    verify_steps: int = 0
    # the lengths, fixed once the request is in: the scheduler reads them for every sequence
    # of every iteration
    prompt_len: int = field(init=False)
    plan_len: int = field(init=False)

    def __post_init__(self) -> None:
        self.prompt_len = len(self.prompt_ids)
        self.plan_len = len(self.plan.token_ids)

    @property
    def prefill_left(self) -> int:
        return self.prompt_len - self.prefilled

    @property
    def context(self) -> int:
        return self.prefilled + self.generated

    @property
    def remaining(self) -> int:
        return self.plan_len - self.generated

    @property
    def kv_need(self) -> int:
        """KV tokens this request holds beyond its cached prefix, reserved on admission."""
        return len(self.prompt_ids) - self.cached + len(self.plan.token_ids)


class SimEngine:
    """The Engine protocol with modeled time; see the module docstring.

    The policy gives the model, tp and max_batch_size; its sim section (SimSettings) the
    rest. `name` is the engine's name (its actor's). `clock` is the modeled clock to advance
    (default: a new SimClock at SIM_EPOCH); pass one to read modeled time from outside the
    engine (one engine per clock). `workload` overrides the settings' workload parameters.
    """

    def __init__(
        self,
        policy: PolicyConfig,
        *,
        name: str = "engine-0",
        clock: SimClock | None = None,
        workload: WorkloadParams | Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self.settings = SimSettings.of(policy)
        self.settings.validate(policy)
        self.workload = load_workload(workload if workload is not None else self.settings.workload)
        self.timing = self.settings.timing(policy)
        self._spec_method = self.settings.decode_method()
        self._accept = self.settings.mean_accepted()
        self._draft_steps = self.settings.draft_passes()
        self._clock = clock or SimClock()
        self.cache = PrefixCache(self.timing.kv_capacity_tokens, self.settings.cache_block)
        self._queue: AdmissionQueue[_Seq] = AdmissionQueue()
        self._running: dict[str, _Seq] = {}
        self._reserved = 0  # KV tokens held by running requests beyond their cached prefixes
        self._meter = LoadMeter(policy.max_batch_size)  # on the modeled clock
        self._words: dict[int, str] = {}  # token id -> word, to read input_ids requests
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._wall_origin = 0.0
        self.busy_s = 0.0  # modeled seconds spent in iterations
        self.generated_total = 0  # output tokens of every request, finished or not
        self.decode_seq_steps = 0  # sum over iterations of decoding sequences
        self.decode_context_total = 0  # sum over iterations of their context lengths

    # ------------------------------------------------------------------ the Engine protocol

    async def start(self) -> None:
        """Start the scheduler loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._wake = asyncio.Event()
        self._wall_origin = _loop_time() - self._clock.elapsed * self.settings.time_scale
        self._meter.reset(self.clock())
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def generate(self, request: GenRequest) -> GenResult:
        await self.start()
        self._catch_up()
        now, wall = self.clock(), time.time()
        if request.prompt is not None:
            prompt = request.prompt
            prompt_ids = tokenize(prompt)
            self._remember(prompt.split(), prompt_ids)
        else:
            prompt_ids = list(request.input_ids or [])
            prompt = " ".join(self._words.get(t, f"<{t}>") for t in prompt_ids)
        seed = request.seed if request.seed is not None else hash(request.request_id)
        plan = plan_step(
            prompt, seed, request.max_new_tokens, request.stop, request.temperature, self.workload
        )
        self._remember(plan.words, plan.token_ids)
        loop = asyncio.get_running_loop()
        seq = _Seq(request, plan, prompt_ids, loop.create_future(), now, wall)
        if seq.kv_need > self.timing.kv_capacity_tokens:
            return self._error(seq, f"prompt + output ({seq.kv_need} tokens) exceed the KV cache")
        self._queue.push(seq)
        self._wake.set()
        try:
            return await seq.future
        except asyncio.CancelledError:
            await self.abort(request.request_id)
            raise

    async def abort(self, request_id: str) -> None:
        """Resolve the request now with finish "abort" (no-op when unknown or finished)."""
        seq = self._queue.remove(request_id)
        if seq is not None:
            seq.start_time, seq.wall_start = self.clock(), time.time()
            self._resolve(seq, FinishReason.ABORT)
            return
        seq = self._running.get(request_id)
        if seq is not None:
            self._finish(seq, FinishReason.ABORT)

    def load(self) -> EngineLoad:
        running = [s.request.priority for s in self._running.values()]
        main = running.count(Priority.MAIN) + self._queue.count(Priority.MAIN)
        return queue_load(
            self._meter, running, self._queue, self.clock(), spec_capacity=self.spec_capacity(main)
        )

    def chat_template(self) -> ChatTemplate:
        """The sim style: "<|system|>\\n...\\n<|user|>\\n...\\n<|assistant|>\\n" (workload.render_chat)."""
        return ChatTemplate(renderer="spex_ray.sim.workload:render_chat")

    async def close(self) -> None:
        """Stop the loop; requests still queued or running resolve with finish "abort"."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for seq in list(self._running.values()):
            self._finish(seq, FinishReason.ABORT)
        for seq in self._queue.drain():
            self._resolve(seq, FinishReason.ABORT)

    # ------------------------------------------------------------------ extras

    def clock(self) -> float:
        """Modeled time: SIM_EPOCH + modeled seconds since the engine started."""
        return self._clock.now()

    def knee(self) -> int:
        """The roofline knee concurrency of this GPU and model, at most max_batch_size: the
        allocator's starting figure until the engine's first load report (spec_capacity replaces it).

        With token-level speculative decoding every sequence runs draft_steps + 1 tokens
        through the model per iteration, so the engine turns compute-bound that many times
        sooner (in sequences)."""
        capacity = self.policy.max_batch_size
        try:
            knee = self.timing.knee() // (self._draft_steps + 1)
        except ValueError:
            knee = capacity
        return max(1, min(knee, capacity))

    def spec_capacity(self, main: int) -> int:
        """SPEC sequences this engine offers beside `main` MAIN ones (engines/capacity.py): by
        its timing model at the running sequences' mean context, within its KV memory."""
        context = self._mean_context()
        verify = self._draft_steps + 1

        def step_time(batch: int) -> float:
            work = IterationWork(
                decode_seqs=batch, decode_context=round(batch * context), verify_tokens=verify
            )
            return self.timing.iteration_time(work)

        room = int(self.timing.kv_capacity_tokens // max(1.0, context)) - main
        return spec_capacity(self.policy, main, step_time, self.knee, room)

    def _mean_context(self) -> float:
        """Context tokens of a sequence now: the running ones' mean, else the waiting prompts',
        else the mean decode context so far, else 1024."""
        running = [seq.context for seq in self._running.values()]
        if running:
            return sum(running) / len(running)
        waiting = [len(seq.prompt_ids) for seq in self._queue.items()]
        if waiting:
            return sum(waiting) / len(waiting)
        return self.decode_context_total / self.decode_seq_steps if self.decode_seq_steps else 1024.0

    def generated_tokens(self, request_id: str) -> int:
        """Output tokens a running request has produced so far (0 when not running)."""
        seq = self._running.get(request_id)
        return seq.generated if seq is not None else 0

    # ------------------------------------------------------------------ the scheduler loop

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave a caller waiting on a dead loop
            message = f"sim engine loop failed: {type(exc).__name__}: {exc}"
            for seq in [*self._running.values(), *self._queue.drain()]:
                if not seq.future.done():
                    seq.future.set_result(self._error(seq, message))
            self._running.clear()
            raise

    async def _loop(self) -> None:
        while True:
            if not self._running and not self._queue:
                self._meter.set_running(0, self.clock())
                self._wake.clear()
                await self._wake.wait()
                self._catch_up()
                continue
            self._admit()
            plan = self._plan_iteration()
            seconds = self.timing.iteration_time(plan[0])
            self._meter.set_running(len(self._running), self.clock())
            self._clock.advance(seconds)
            self.busy_s += seconds
            tokens = sum(n for _, _, n in plan[1])
            self.generated_total += tokens
            self.decode_seq_steps += plan[0].decode_seqs
            self.decode_context_total += plan[0].decode_context
            self._meter.add_tokens(tokens, self.clock())
            await self._pace()
            self._apply(plan[1])

    def _catch_up(self) -> None:
        """With time_scale > 0, let modeled time follow the wall clock through idle periods."""
        scale = self.settings.time_scale
        if scale > 0 and self._task is not None and not self._running:
            wall_elapsed = (_loop_time() - self._wall_origin) / scale
            self._clock.advance(wall_elapsed - self._clock.elapsed)

    async def _pace(self) -> None:
        """Sleep until the wall clock reaches the modeled time (only yield at time_scale 0)."""
        scale = self.settings.time_scale
        delay = self._wall_origin + self._clock.elapsed * scale - _loop_time() if scale > 0 else 0.0
        await asyncio.sleep(max(0.0, delay))

    def _admit(self) -> None:
        """Fill free slots: MAIN first; SPEC only while no MAIN waits; KV memory permitting."""
        capacity = self.timing.kv_capacity_tokens
        while len(self._running) < self.policy.max_batch_size:
            seq = self._queue.peek()
            if seq is None:
                return
            cached = min(self.cache.match(seq.prompt_ids, touch=False), len(seq.prompt_ids) - 1)
            need = len(seq.prompt_ids) - max(0, cached) + len(seq.plan.token_ids)
            if self._running and self._reserved + need > capacity:
                return
            self._queue.pop()
            self.cache.match(seq.prompt_ids)  # count the hit, refresh the blocks
            seq.cached = seq.prefilled = max(0, cached)
            seq.start_time, seq.wall_start = self.clock(), time.time()
            self._running[seq.request.request_id] = seq
            self._reserved += seq.kv_need
            self.cache.resize(capacity - self._reserved)

    def _plan_iteration(self) -> tuple[IterationWork, list[tuple[_Seq, int, int]]]:
        """The iteration's work and, per sequence, (seq, prefill tokens, output tokens)."""
        budget = self.settings.prefill_chunk
        accept = self._accept
        verify = self._draft_steps + 1
        steps: list[tuple[_Seq, int, int]] = []
        prefill = attention = prefill_kv = decode_seqs = decode_context = 0
        for seq in self._running.values():
            start = seq.prefilled
            left = seq.prompt_len - start
            if left > 0:
                n = min(left, budget)
                if n <= 0:
                    continue
                budget -= n
                prefill += n
                attention += (2 * start + n - 1) * n // 2
                prefill_kv += start + n
                steps.append((seq, n, 1 if n == left else 0))
            else:
                seq.credit += accept
                out = max(1, min(int(seq.credit), seq.plan_len - seq.generated))
                decode_seqs += 1
                decode_context += start + seq.generated
                steps.append((seq, 0, out))
        work = IterationWork(prefill, attention, prefill_kv, decode_seqs, decode_context, verify)
        return work, steps

    def _apply(self, steps: list[tuple[_Seq, int, int]]) -> None:
        """Credit the iteration's progress to the sequences still running; finish the done ones."""
        now = self.clock()
        running = self._running
        for seq, prefilled, out in steps:
            if running.get(seq.request.request_id) is not seq:
                continue  # aborted during the iteration
            if prefilled:
                seq.prefilled += prefilled
                if seq.prefilled == seq.prompt_len:
                    self.cache.insert(seq.prompt_ids)  # like SGLang's cache_unfinished_req
            if out:
                if seq.generated == 0:
                    seq.first_token_time = now
                if not prefilled and seq.prefilled == seq.prompt_len:
                    seq.credit -= out
                    seq.verify_steps += 1
                seq.generated += out
            if seq.generated >= seq.plan_len:
                self._finish(seq, seq.plan.finish_reason)

    # ------------------------------------------------------------------ results

    def _finish(self, seq: _Seq, reason: str) -> None:
        self._running.pop(seq.request.request_id, None)
        self._reserved -= seq.kv_need
        done = seq.plan.partial(seq.generated)[1]
        words = [t for t in done if t >= 3]  # the delimiter/EOS token is not part of a child's prompt
        self.cache.resize(self.timing.kv_capacity_tokens - self._reserved)
        self.cache.insert(seq.prompt_ids[: seq.prefilled] + (words if seq.prefill_left == 0 else []))
        self._resolve(seq, reason)

    def _resolve(self, seq: _Seq, reason: str) -> None:
        if seq.future.done():
            return
        now, wall = self.clock(), time.time()
        plan = seq.plan
        text, token_ids, logprobs = plan.partial(seq.generated)
        stop_matched = plan.stop_matched if reason != FinishReason.ABORT else None
        meta = {
            "wall_enqueue": seq.wall_enqueue,
            "wall_start": seq.wall_start,
            "wall_end": wall,
            "queue_s": seq.start_time - seq.enqueue_time,
            "ttft_s": (seq.first_token_time - seq.enqueue_time) if seq.generated else 0.0,
            "prefill_s": (seq.first_token_time - seq.start_time) if seq.generated else 0.0,
            "sim_depth": float(plan.depth),
            "sim_z": plan.z,
        }
        if self._spec_method and seq.verify_steps:
            meta["accept_len"] = (seq.generated - 1) / seq.verify_steps
        seq.future.set_result(
            GenResult(
                request_id=seq.request.request_id,
                text=text,
                token_ids=token_ids,
                logprobs=logprobs if seq.request.logprobs else [],
                finish_reason=reason,
                stop_matched=stop_matched,
                prompt_tokens=len(seq.prompt_ids),
                cached_tokens=seq.cached,
                completion_tokens=len(token_ids),
                enqueue_time=seq.enqueue_time,
                start_time=seq.start_time or now,
                end_time=now,
                meta=meta,
            )
        )

    def _error(self, seq: _Seq, message: str) -> GenResult:
        now = self.clock()
        return GenResult(
            request_id=seq.request.request_id,
            finish_reason=FinishReason.ERROR,
            prompt_tokens=len(seq.prompt_ids),
            enqueue_time=now,
            start_time=now,
            end_time=now,
            error=message,
        )

    def _remember(self, words: Sequence[str], ids: Sequence[int]) -> None:
        """Keep token id -> word for the words seen, so input_ids requests can be read back."""
        if len(self._words) < 1_000_000:
            for word, tid in zip(words, ids, strict=False):
                self._words.setdefault(tid, word)
