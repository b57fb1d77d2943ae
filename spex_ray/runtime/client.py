"""RoutedClient: a query's engine, wherever the router puts it.

A MAIN request whose engine becomes unavailable is re-issued, the same request (same id,
same seed, so the same child: speculation stays lossless), on the engine the router
picks next; a SPEC request there comes back aborted instead (speculation drops it and its
slot is free again). A MAIN request the engine fails with an error (out of memory, a bad
request) is tried again after a growing pause, ERROR_RETRIES times, then its error stands
(the search fails the row with it). Results carry the engine that served them and the attempts taken,
which the trace records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from spex_ray.engines.base import FinishReason, GenRequest, GenResult, Priority
from spex_ray.runtime.router import EngineUnavailable, Router

MAX_ATTEMPTS = 5  # a MAIN request is tried on at most this many engines
ERROR_RETRIES = 3  # a MAIN request the engine failed is tried again this often
ERROR_BACKOFF_S = 0.25  # before the first retry of a failed request; doubled each time


class RoutedClient:
    """The EngineClient of one query (see tree/expand.py) over a Router."""

    def __init__(self, router: Router, query_id: str, on_move: Callable[[str], None] | None = None) -> None:
        self.router = router
        self.query_id = query_id
        self.on_move = on_move  # called with the new engine's name when the query moves
        self.engine_name, _ = router.engine_for(query_id)
        self.retries = 0  # requests re-issued: their engine went away, or failed them
        self._sent: dict[str, str] = {}  # request id -> engine it is running on

    async def generate(self, request: GenRequest) -> GenResult:
        attempts = 0
        for retry in range(ERROR_RETRIES + 1):
            if retry:
                await asyncio.sleep(ERROR_BACKOFF_S * 2 ** (retry - 1))
                self.retries += 1
            result = await self._generate_on_some_engine(request, attempts)
            attempts = result.attempts
            if result.finish_reason != FinishReason.ERROR or request.priority == Priority.SPEC:
                break
        return result

    async def _generate_on_some_engine(self, request: GenRequest, attempts: int) -> GenResult:
        """The request's result on the first engine that stays up while it runs."""
        for attempt in range(attempts + 1, attempts + MAX_ATTEMPTS + 1):
            name, engine = await self._engine()
            self._sent[request.request_id] = name
            try:
                result = await engine.generate(request)
            except EngineUnavailable as exc:
                self.router.mark_down(name, exc)
                if request.priority == Priority.SPEC or attempt == attempts + MAX_ATTEMPTS:
                    return _unavailable(request, name, exc, attempt)
                self.retries += 1
                continue
            finally:
                self._sent.pop(request.request_id, None)
            result.engine, result.attempts = name, attempt
            return result
        raise AssertionError("unreachable")

    async def abort(self, request_id: str) -> None:
        engine = self.router.engine_named(self._sent.get(request_id, ""))
        if engine is None:
            return  # finished, never sent, or its engine is gone
        with contextlib.suppress(EngineUnavailable):  # the engine is gone, and the request with it
            await engine.abort(request_id)

    def release(self) -> None:
        self.router.release(self.query_id)

    async def _engine(self) -> tuple[str, object]:
        name, engine = await self.router.acquire(self.query_id)
        if name != self.engine_name:
            self.engine_name = name
            if self.on_move is not None:
                self.on_move(name)
        return name, engine


def _unavailable(request: GenRequest, engine: str, exc: BaseException, attempts: int) -> GenResult:
    now = time.time()
    reason = FinishReason.ABORT if request.priority == Priority.SPEC else FinishReason.ERROR
    return GenResult(
        request_id=request.request_id,
        finish_reason=reason,
        enqueue_time=now,
        start_time=now,
        end_time=now,
        error=f"{engine} unavailable: {exc}",
        engine=engine,
        attempts=attempts,
    )
