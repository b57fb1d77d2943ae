"""The step generator: child k of a node, from its seeded request to its trace row.

Child k of node n is requested with child_seed(query seed, n, k) and the same prompt,
limits and sampling whoever asks for it (the primary search, speculation or the oracle
replay); only the priority differs. So a speculative child promoted by the search is
exactly the child the search would have generated (speculation is lossless).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal, Protocol

from spex_ray.engines.base import FinishReason, GenRequest, GenResult, Priority
from spex_ray.io import TraceRow
from spex_ray.rewards.base import Reward, StepContext
from spex_ray.tasks import extract_answer
from spex_ray.tree.node import Node
from spex_ray.tree.seeds import child_seed
from spex_ray.tree.settings import SearchSettings

Kind = Literal["main", "spec"]
PRIORITIES: dict[Kind, Priority] = {"main": Priority.MAIN, "spec": Priority.SPEC}


class EngineClient(Protocol):
    """The engine as a search sees it (an Engine in-process, or an actor client)."""

    async def generate(self, request: GenRequest) -> GenResult: ...

    async def abort(self, request_id: str) -> None: ...


class SearchError(RuntimeError):
    """The search could not go on (an engine failed a request)."""


@dataclass(frozen=True)
class Query:
    """The query a search answers: its id, the problem, the rendered prompt and its seed."""

    id: str
    problem: str
    prompt: str
    seed: int


class StepGenerator:
    """Makes the children of one query's tree; keeps the tokens and trace of primary steps."""

    def __init__(self, query: Query, settings: SearchSettings, engine: EngineClient, reward: Reward) -> None:
        self.query = query
        self.settings = settings
        self.engine = engine
        self.reward = reward
        self.tokens_main = 0
        self.trace: list[TraceRow] = []  # the primary requests, in the order they finished
        self._in_flight: set[str] = set()  # request ids in the engine (primary and speculative)

    async def step(self, parent: Node, k: int) -> Node:
        """The primary path: generate child k of `parent`, score it, count it and trace it.

        The child comes back detached; the caller attaches it to the tree.
        """
        request = self.request(parent, k)
        result = await self.generate(request)
        self.tokens_main += result.completion_tokens
        node_id = parent.child_id(k)
        if result.finish_reason == FinishReason.ERROR:
            self.trace.append(self.row(request, result, node_id, "used"))
            raise SearchError(f"engine failed the request for node {node_id}: {result.error}")
        child = await self.score(parent, k, result)
        self.trace.append(self.row(request, result, node_id, "used", child))
        return child

    def request(self, parent: Node, k: int, kind: Kind = "main") -> GenRequest:
        """The request for child k of `parent`: the same for every kind but its priority."""
        search, sampling = self.settings.search, self.settings.sampling
        budget = max(1, search.max_path_tokens - parent.path_tokens)
        prefix = "".join(step + search.step_delimiter for step in parent.steps())
        return GenRequest(
            prompt=self.query.prompt + prefix,
            max_new_tokens=min(sampling.max_new_tokens, budget),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=(search.step_delimiter,),
            seed=child_seed(self.query.seed, parent.id, k),
            priority=PRIORITIES[kind],
            tags={"query": self.query.id, "node": parent.child_id(k), "kind": kind},
        )

    async def generate(self, request: GenRequest) -> GenResult:
        """The engine's result for `request`. A wait cancelled (the search's deadline) aborts
        the request in the engine too: a remote engine would otherwise finish it for nothing."""
        self._in_flight.add(request.request_id)
        try:
            return await self.engine.generate(request)
        except asyncio.CancelledError:
            await self.engine.abort(request.request_id)
            raise
        finally:
            self._in_flight.discard(request.request_id)

    async def abort_in_flight(self) -> None:
        """Abort every request of this query still in the engine (the search is over)."""
        aborts = [self.engine.abort(request_id) for request_id in sorted(self._in_flight)]
        await asyncio.gather(*aborts, return_exceptions=True)

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    async def score(self, parent: Node, k: int, result: GenResult) -> Node:
        """Score the step in `result` and build child k of `parent`, not yet in the tree."""
        steps = [*parent.steps(), result.text]
        tags = {"node": parent.child_id(k)}
        reward = await self.reward.score(
            StepContext(self.query.problem, self.query.prompt, steps, result, tags)
        )
        return self._child(parent, k, result, reward)

    def row(
        self, request: GenRequest, result: GenResult, node_id: str, outcome: str, child: Node | None = None
    ) -> TraceRow:
        """One request of the trace; `child` (the scored node, if any) adds its reward and
        whether it ended a path (terminal) with an answer (answered), which workload
        calibration reads. The engine and attempts are the result's (set by the query's
        RoutedClient; "" and 1 for a bare engine)."""
        return TraceRow(
            query=self.query.id,
            node=node_id,
            depth=node_id.count("."),
            terminal=child.terminal if child is not None else None,
            answered=child.answer is not None if child is not None else None,
            request_id=request.request_id,
            kind=request.tags["kind"],
            outcome=outcome,
            seed=request.seed,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            cached_tokens=result.cached_tokens,
            completion_tokens=result.completion_tokens,
            enqueue_time=result.enqueue_time,
            start_time=result.start_time,
            end_time=result.end_time,
            engine=result.engine,
            attempts=result.attempts,
            reward=child.reward if child is not None else None,
        )

    def _child(self, parent: Node, k: int, result: GenResult, reward: float) -> Node:
        search = self.settings.search
        step = result.text.rstrip()
        depth = parent.depth + 1
        path_tokens = parent.path_tokens + result.completion_tokens
        answer = extract_answer(step)
        ended = result.finish_reason == FinishReason.STOP and result.stop_matched is None  # EOS
        at_limit = depth >= search.max_depth or path_tokens >= search.max_path_tokens
        terminal = answer is not None or ended or at_limit
        if terminal and answer is None:
            answer = extract_answer("\n".join([*parent.steps(), step]))
        return Node(
            id=parent.child_id(k),
            parent=parent,
            step=step,
            depth=depth,
            reward=reward,
            path_reward=path_reward(parent, reward, depth, self.settings.path_score),
            path_tokens=path_tokens,
            terminal=terminal,
            answer=answer,
        )


def path_reward(parent: Node, reward: float, depth: int, how: str) -> float:
    """The reward of the path ending in a child at `depth` scored `reward`: min | last | mean."""
    if parent.is_root or how == "last":
        return reward
    if how == "min":
        return min(parent.path_reward, reward)
    return parent.path_reward + (reward - parent.path_reward) / depth  # running mean
