"""EnginePool: routes a query's requests to one engine actor (query affinity keeps the
query's prefix in that engine's cache), choosing the engine with the fewest live queries."""

from __future__ import annotations

from typing import Any

from spex_ray.engines import GenRequest, GenResult


class EnginePool:
    """The engine actors a TreeActor talks to, and the queries pinned to each."""

    def __init__(self, engines: list[Any]) -> None:
        if not engines:
            raise ValueError("EnginePool needs at least one engine actor")
        self.engines = list(engines)
        self._live = [0] * len(engines)

    def client(self) -> ActorEngineClient:
        """A client pinned to the least busy engine; release() it when the query ends."""
        index = min(range(len(self.engines)), key=self._live.__getitem__)
        self._live[index] += 1
        return ActorEngineClient(self, index)

    def release(self, index: int) -> None:
        self._live[index] -= 1


class ActorEngineClient:
    """The EngineClient of one query: every call goes to its pinned engine actor."""

    def __init__(self, pool: EnginePool, index: int) -> None:
        self._pool = pool
        self.index = index
        self._actor = pool.engines[index]
        self.engine_name = f"engine-{index}"

    async def generate(self, request: GenRequest) -> GenResult:
        return await self._actor.generate.remote(request)

    async def abort(self, request_id: str) -> None:
        await self._actor.abort.remote(request_id)

    async def render_chat(self, messages: list[dict[str, str]]) -> str:
        return await self._actor.render_chat.remote(messages)

    def release(self) -> None:
        self._pool.release(self.index)
