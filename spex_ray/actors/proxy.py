"""ActorProxy: an actor handle as an async object, so Ray-free code can call it like local code.

`await proxy.generate(request)` is `await handle.generate.remote(request)`; a call that fails
because the actor is gone (dead, restarting, its node lost) raises the runtime's
EngineUnavailable instead of a Ray error, which is all the runtime needs to know.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import ray

from spex_ray.runtime.router import EngineUnavailable

_GONE = (ray.exceptions.RayActorError, ray.exceptions.NodeDiedError, ray.exceptions.OwnerDiedError)


class ActorProxy:
    """Async method calls on one actor (see the module docstring)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        remote = getattr(self.handle, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await remote.remote(*args, **kwargs)
            except _GONE as exc:
                raise EngineUnavailable(f"{type(exc).__name__}: {_first_line(exc)}") from exc

        call.__name__ = method
        return call

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActorProxy, (self.handle,))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
