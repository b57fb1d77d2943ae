"""SGLangEngine: the Engine protocol on `sglang.Engine` (0.5.x), for GPUs. No Ray in here.

The EngineActor hosts one; every call is a coroutine on the actor's event loop: requests
go through `Engine.async_generate` (non-streaming, our request id as `rid`, token ids as
`input_ids` so prefixes hit the radix cache, which shows as cached_tokens), aborts through
`tokenizer_manager.abort_request(rid=...)` (SGLang aborts every rid that starts with the
given one; ours are uuid4 hex strings of one length, so exactly one), PRM scores through
`Engine.async_score`.
MAIN/SPEC map to SGLang priorities with priority scheduling on (sglang_args.py): MAIN is
admitted first and preempts running SPEC requests. Per-request seeds (`sampling_seed`) are
honoured when policy.sglang.deterministic is on (SGLang's enable_deterministic_inference).

`import sglang` happens in start(), so this module imports (and its translation code tests)
without sglang or a GPU. Missing sglang is an ImportError naming the extra to install.

load() comes from our own bookkeeping of requests in flight: SGLang does not tell us which
are running, so up to max_batch_size of them count as running, MAIN first (as SGLang admits
them). start_time is the enqueue time unless SGLang reports forward_entry_time.

The speculative capacity (EngineLoad.spec_capacity, engines/capacity.py) comes from measured
step times too, per request since SGLang's steps are not visible from here: each finished
MAIN request of a few tokens or more is one observation of (its mean batch, from the
time-weighted requests in flight over its run; their context; its run time per output token).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import socket
import time
from collections import Counter
from typing import Any

from spex_ray.config import PolicyConfig
from spex_ray.engines.admission import request_problem
from spex_ray.engines.base import EngineLoad, GenRequest, GenResult, Priority, failed_result
from spex_ray.engines.capacity import StepCostFit, spec_capacity
from spex_ray.engines.chat import ChatTemplate
from spex_ray.engines.meter import LoadMeter
from spex_ray.engines.models import resolve_model
from spex_ray.engines.sglang_args import generate_kwargs, nccl_port, score_rows, server_args, to_gen_result
from spex_ray.engines.sglang_settings import SGLangSettings
from spex_ray.hardware.devices import cuda_device_name, gpu_key, model_key

log = logging.getLogger(__name__)

INSTALL_HINT = 'SGLang is not installed: pip install "spex-ray[sglang]" (needs a CUDA GPU and Linux)'
_ABORT_RETRIES = 50  # an abort can beat the request into the tokenizer manager; retry this often
_ABORT_RETRY_S = 0.01
_CLOSE_DRAIN_S = 5.0  # close() waits this long for aborted requests to resolve
_MIN_TIMED_TOKENS = 4  # a request shorter than this says more about prefill than about a decode step


def require_sglang() -> None:
    """Raise ImportError with the install command when sglang is missing."""
    if importlib.util.find_spec("sglang") is None:
        raise ImportError(INSTALL_HINT)


class SGLangEngine:
    """The Engine protocol on one `sglang.Engine` (tp = policy.tp GPUs); see the module docstring.

    `name` ("engine-<i>", "reward-<i>") picks this engine's NCCL port block; `seed` is
    SGLang's random_seed.
    """

    def __init__(self, policy: PolicyConfig, *, name: str = "engine-0", seed: int | None = 0) -> None:
        require_sglang()
        self.policy = policy
        self.settings = SGLangSettings.of(policy)
        self.name = name
        self.seed = seed
        self._engine: Any = None
        self._tokenizer: Any = None
        self._inflight: dict[str, Priority] = {}
        self._aborted: set[str] = set()
        self._meter = LoadMeter(policy.max_batch_size)
        self.step_costs = StepCostFit()
        self._lock = asyncio.Lock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Launch SGLang (idempotent). Runs on the event loop that will serve the requests,
        which SGLang's tokenizer manager binds to; loading blocks that loop meanwhile."""
        async with self._lock:
            if self._engine is not None:
                return
            import sglang

            kwargs = self.server_kwargs()
            log.info("starting sglang.Engine %s: %s", self.name, kwargs)
            self._engine = sglang.Engine(**kwargs)
            self._tokenizer = getattr(self._engine.tokenizer_manager, "tokenizer", None) or self._tokenizer
            self._meter.reset(time.time())
            self._closed = False

    def server_kwargs(self) -> dict[str, Any]:
        """The sglang.Engine keyword arguments of this engine (its ServerArgs)."""
        model = resolve_model(self.policy.model, self.policy.cache_dir).path
        port = nccl_port(self.name, self.settings.nccl_port, _port_is_free)
        return server_args(self.policy, model, nccl_port=port, seed=self.seed)

    async def close(self) -> None:
        """Abort what is in flight and shut SGLang down (its subprocesses exit with it)."""
        async with self._lock:
            self._closed = True
            engine, self._engine = self._engine, None
            if engine is None:
                return
            for rid in list(self._inflight):
                self._aborted.add(rid)
                await self._abort_now(engine, rid)
            deadline = time.monotonic() + _CLOSE_DRAIN_S
            while self._inflight and time.monotonic() < deadline:  # let the aborts come back
                await asyncio.sleep(_ABORT_RETRY_S)
            await asyncio.to_thread(engine.shutdown)

    # ------------------------------------------------------------------ requests

    async def generate(self, request: GenRequest) -> GenResult:
        enqueue_time = time.time()
        if self._closed:
            return failed_result(request, enqueue_time, "the engine is closed")
        await self.start()
        input_ids = self._input_ids(request)
        problem = request_problem(
            request,
            input_ids,
            limit=self.context_length,
            limit_text=f"the model's context length {self.context_length}",
            in_flight=request.request_id in self._inflight,
        )
        if problem:
            return failed_result(request, enqueue_time, problem, prompt_tokens=len(input_ids))
        rid = request.request_id
        self._track(rid, request.priority)
        area_at_start = self._meter.area(time.time())
        try:
            output = await self._engine.async_generate(**generate_kwargs(request, input_ids))
        except asyncio.CancelledError:  # the caller gave up: free SGLang's slot too
            await self.abort(rid)
            raise
        except Exception as exc:  # noqa: BLE001 - reported on the request; the engine keeps serving
            return failed_result(request, enqueue_time, f"{type(exc).__name__}: {exc}", len(input_ids))
        finally:
            self._untrack(rid)
            aborted = rid in self._aborted
            self._aborted.discard(rid)
        result = to_gen_result(
            output,
            request,
            prompt_tokens=len(input_ids),
            enqueue_time=enqueue_time,
            end_time=time.time(),
            aborted=aborted,
        )
        self._meter.add_tokens(result.completion_tokens, result.end_time)
        if request.priority == Priority.MAIN and not aborted:
            self._observe(result, area_at_start)
        return result

    def _observe(self, result: GenResult, area_at_start: float) -> None:
        """One step-time observation from a finished request (see the module docstring)."""
        seconds = result.run_seconds
        if result.completion_tokens < _MIN_TIMED_TOKENS or seconds <= 0:
            return
        batch = (self._meter.area(result.end_time) - area_at_start) / seconds
        sequences = max(1, round(batch))
        context = result.prompt_tokens + result.completion_tokens / 2
        self.step_costs.observe(sequences, sequences * context, seconds / result.completion_tokens)

    async def abort(self, request_id: str) -> None:
        """Abort a request in flight (no-op when unknown or finished)."""
        if request_id not in self._inflight or self._engine is None:
            return
        self._aborted.add(request_id)
        await self._abort_now(self._engine, request_id)

    async def score_labels(
        self, query: str, items: list[str], label_token_ids: list[int], apply_softmax: bool
    ) -> list[list[float]]:
        """Probabilities of `label_token_ids` as the next token after query + item, per item
        (`Engine.async_score`; with apply_softmax they are normalised over the labels)."""
        await self.start()
        result = await self._engine.async_score(
            query=query, items=items, label_token_ids=label_token_ids, apply_softmax=apply_softmax
        )
        return score_rows(result)

    def _input_ids(self, request: GenRequest) -> list[int]:
        if request.input_ids is not None:
            return list(request.input_ids)
        return list(self.tokenizer().encode(request.prompt, add_special_tokens=False))

    def _track(self, rid: str, priority: Priority) -> None:
        self._inflight[rid] = Priority(priority)
        self._meter.set_running(min(len(self._inflight), self.policy.max_batch_size), time.time())

    def _untrack(self, rid: str) -> None:
        self._inflight.pop(rid, None)
        self._meter.set_running(min(len(self._inflight), self.policy.max_batch_size), time.time())

    async def _abort_now(self, engine: Any, rid: str) -> None:
        """abort_request(rid=...) once the tokenizer manager knows the request (it may still be
        tokenizing it; an abort sent before that would be dropped)."""
        manager = engine.tokenizer_manager
        for _ in range(_ABORT_RETRIES):
            if rid not in self._inflight:
                return
            states = getattr(manager, "rid_to_state", None)
            if states is None or rid in states:
                outcome = manager.abort_request(rid=rid)
                if inspect.isawaitable(outcome):
                    await outcome
                return
            await asyncio.sleep(_ABORT_RETRY_S)
        log.warning(
            "SGLangEngine %s: request %s never reached the tokenizer manager; not aborted", self.name, rid
        )

    # ------------------------------------------------------------------ introspection

    @property
    def context_length(self) -> int:
        """The model's context length as SGLang sees it (0 before start)."""
        if self._engine is None:
            return 0
        return int(getattr(self._engine.tokenizer_manager, "context_len", 0) or 0)

    def load(self) -> EngineLoad:
        counts = Counter(self._inflight.values())
        main, spec = counts[Priority.MAIN], counts[Priority.SPEC]
        running_main, running_spec = split_running(main, spec, self.policy.max_batch_size)
        return self._meter.snapshot(
            running_main=running_main,
            running_spec=running_spec,
            queued_main=main - running_main,
            queued_spec=spec - running_spec,
            now=time.time(),
            spec_capacity=self.spec_capacity(main),
        )

    def spec_capacity(self, main: int) -> int:
        """SPEC sequences this engine offers beside `main` MAIN ones (engines/capacity.py), from
        the step times its MAIN requests measured, at their mean context."""
        cost = self.step_costs.cost()
        step_time = cost.step_time(cost.mean_context) if cost else None
        return spec_capacity(self.policy, main, step_time, self.knee)

    def knee(self) -> int:
        """The roofline knee (hardware/roofline.py) for the detected GPU and a known model
        spec, at most max_batch_size; max_batch_size when either is unknown. The static
        estimate the engine offers until it has timed enough requests."""
        cap = self.policy.max_batch_size
        gpu = gpu_key(cuda_device_name())
        model = model_key(self.policy.model)
        if gpu is None or model is None:
            return cap
        from spex_ray.hardware.roofline import MEM_FRACTION, knee_concurrency
        from spex_ray.hardware.specs import gpu_spec, model_spec

        memory = self.policy.mem_fraction_static or MEM_FRACTION
        try:
            knee = knee_concurrency(
                gpu_spec(gpu).times(self.policy.tp), model_spec(model), mem_fraction=memory
            )
        except ValueError:  # the weights do not fit the GPUs by the spec
            return cap
        return max(1, min(cap, knee))

    def tokenizer(self) -> Any:
        """SGLang's tokenizer once started; before that, the model's own (transformers)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            path = resolve_model(self.policy.model, self.policy.cache_dir).path
            self._tokenizer = AutoTokenizer.from_pretrained(
                path, trust_remote_code=self.settings.trust_remote_code
            )
        return self._tokenizer

    def chat_template(self) -> ChatTemplate:
        """The model's chat template; models without one (e.g. Llemma) get the plain style."""
        return ChatTemplate.of_tokenizer(self.tokenizer())


def split_running(main: int, spec: int, capacity: int) -> tuple[int, int]:
    """(running MAIN, running SPEC) of the requests in flight: MAIN fill the batch first."""
    running_main = min(main, capacity)
    return running_main, min(spec, capacity - running_main)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
