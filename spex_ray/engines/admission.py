"""What the engines that queue requests themselves (hf, sim) share: the MAIN-before-SPEC
admission queue, the checks a request must pass, and the load() snapshot."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from spex_ray.engines.base import EngineLoad, GenRequest, Priority
from spex_ray.engines.meter import LoadMeter


class Waiting(Protocol):
    """An engine's record of one request."""

    @property
    def request(self) -> GenRequest: ...


W = TypeVar("W", bound=Waiting)


class AdmissionQueue(Generic[W]):
    """Requests waiting for a slot: MAIN before SPEC, FIFO within a priority."""

    def __init__(self) -> None:
        self._queues: dict[Priority, deque[W]] = {p: deque() for p in sorted(Priority)}

    def push(self, item: W) -> None:
        self._queues[item.request.priority].append(item)

    def peek(self) -> W | None:
        """The next request to admit, left in the queue."""
        for queue in self._queues.values():
            if queue:
                return queue[0]
        return None

    def pop(self) -> W | None:
        """The next request to admit, taken out of the queue."""
        for queue in self._queues.values():
            if queue:
                return queue.popleft()
        return None

    def remove(self, request_id: str) -> W | None:
        """Take the request `request_id` out of the queue (None when it is not waiting)."""
        for queue in self._queues.values():
            for item in queue:
                if item.request.request_id == request_id:
                    queue.remove(item)
                    return item
        return None

    def drain(self) -> list[W]:
        """Every waiting request, in admission order; the queue is left empty."""
        items = self.items()
        for queue in self._queues.values():
            queue.clear()
        return items

    def items(self) -> list[W]:
        """Every waiting request, in admission order (the queue is left as it is)."""
        return [item for queue in self._queues.values() for item in queue]

    def count(self, priority: Priority) -> int:
        return len(self._queues[priority])

    def __contains__(self, request_id: str) -> bool:
        return any(item.request.request_id == request_id for queue in self._queues.values() for item in queue)

    def __bool__(self) -> bool:
        return any(self._queues.values())


def request_problem(
    request: GenRequest, input_ids: list[int], *, limit: int, limit_text: str, in_flight: bool
) -> str | None:
    """Why the engine cannot take `request` (its prompt tokens `input_ids`), or None.

    `limit` bounds prompt + max_new_tokens (0 = unknown, not checked) and `limit_text` says
    what it is; `in_flight` says whether a request of the same id is already in the engine.
    """
    if not input_ids:
        return "the prompt is empty"
    total = len(input_ids) + request.max_new_tokens
    if limit and total > limit:
        return (
            f"prompt too long: {len(input_ids)} prompt tokens + max_new_tokens {request.max_new_tokens} "
            f"= {total} > {limit_text}"
        )
    if in_flight:
        return f"request id {request.request_id!r} is already in flight"
    return None


def queue_load(
    meter: LoadMeter,
    running: Iterable[Priority],
    queue: AdmissionQueue,
    now: float,
    *,
    held_spec: int = 0,
    spec_capacity: int | None = None,
) -> EngineLoad:
    """The EngineLoad of an engine running requests of priorities `running`, with `queue` and
    `held_spec` paused SPEC requests waiting, offering `spec_capacity` (engines/capacity.py)."""
    priorities = list(running)
    return meter.snapshot(
        running_main=priorities.count(Priority.MAIN),
        running_spec=priorities.count(Priority.SPEC),
        queued_main=queue.count(Priority.MAIN),
        queued_spec=queue.count(Priority.SPEC) + held_spec,
        now=now,
        spec_capacity=spec_capacity,
    )
