"""The engine interface every backend implements (hf, sglang, sim).

Engines are asyncio objects with no Ray in them: the EngineActor wraps one, tests drive
one in-process. Requests carry a priority: MAIN requests (the search's real work) are
admitted before SPEC requests (speculation), which only fill capacity left over.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from spex_ray.engines.chat import ChatTemplate


class Priority(IntEnum):
    """Admission order: lower runs first."""

    MAIN = 0
    SPEC = 1


class FinishReason:
    STOP = "stop"  # a stop string or the end-of-sequence token
    LENGTH = "length"  # max_new_tokens reached
    ABORT = "abort"  # cancelled by abort()
    ERROR = "error"  # the engine failed this request


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass
class GenRequest:
    """One generation request: continue `prompt` (or `input_ids`) by up to max_new_tokens.

    `stop` strings end the request; the returned text excludes the matched stop string.
    `seed` makes sampling reproducible on engines that honour per-request seeds.
    `tags` are free-form labels (query, node, kind) carried into the trace.
    """

    prompt: str | None = None
    input_ids: list[int] | None = None
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    priority: Priority = Priority.MAIN
    request_id: str = field(default_factory=new_request_id)
    logprobs: bool = True
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.input_ids is None):
            raise ValueError("GenRequest needs exactly one of prompt or input_ids")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        self.stop = tuple(self.stop)
        self.priority = Priority(self.priority)


@dataclass
class GenResult:
    """What an engine returns for one request, with the timings the trace records.

    Times are wall-clock seconds (time.time()) so they compare across processes.
    """

    request_id: str
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = FinishReason.STOP
    stop_matched: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    enqueue_time: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0
    error: str | None = None
    meta: dict[str, float] = field(default_factory=dict)  # backend extras, e.g. spec-decoding acceptance
    engine: str = ""  # the engine that served it (set by the query's RoutedClient)
    attempts: int = 1  # engines tried: > 1 when its first engine went away mid-request

    @property
    def queue_seconds(self) -> float:
        return max(0.0, self.start_time - self.enqueue_time)

    @property
    def run_seconds(self) -> float:
        return max(0.0, self.end_time - self.start_time)


def failed_result(request: GenRequest, enqueue_time: float, error: str, prompt_tokens: int = 0) -> GenResult:
    """The GenResult of a request the engine could not serve (finish "error")."""
    now = time.time()
    return GenResult(
        request_id=request.request_id,
        finish_reason=FinishReason.ERROR,
        prompt_tokens=prompt_tokens,
        enqueue_time=enqueue_time,
        start_time=now,
        end_time=now,
        error=error,
    )


@dataclass
class EngineLoad:
    """A snapshot of an engine's work: requests running and waiting, by priority.

    spec_capacity is the number of SPEC sequences the engine offers now beside its MAIN ones
    (engines/capacity.py); None where the engine has no figure of its own, and the allocator
    then uses its knee minus the MAIN in flight.
    """

    running_main: int = 0
    running_spec: int = 0
    queued_main: int = 0
    queued_spec: int = 0
    max_batch_size: int = 0
    tokens_per_second: float = 0.0
    mean_batch_occupancy: float = 0.0
    time: float = field(default_factory=time.time)
    spec_capacity: int | None = None

    @property
    def running(self) -> int:
        return self.running_main + self.running_spec

    @property
    def queued(self) -> int:
        return self.queued_main + self.queued_spec


@runtime_checkable
class Engine(Protocol):
    """An async text-generation backend.

    start() loads the model (idempotent); generate() resolves when the request finishes,
    is stopped, or is aborted (finish_reason "abort", with the text produced so far);
    abort() of an unknown or finished request is a no-op; load() reports the current
    work and the speculative capacity the engine offers (EngineLoad.spec_capacity, from its
    step time: engines/capacity.py); knee() is a static concurrency estimate (the roofline
    knee; max_batch_size where the engine has no model of it) that the allocator starts
    from until the first load report; close() frees the model. chat_template() is how the
    model wants chat messages turned into a prompt, as a value its callers render
    themselves. `name` is the engine's own name.
    """

    name: str

    async def start(self) -> None: ...

    async def generate(self, request: GenRequest) -> GenResult: ...

    async def abort(self, request_id: str) -> None: ...

    def load(self) -> EngineLoad: ...

    def knee(self) -> int: ...

    def chat_template(self) -> ChatTemplate: ...

    async def close(self) -> None: ...
