"""The reward interface: score the newest step of a reasoning path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from spex_ray.engines.base import GenResult


@dataclass
class StepContext:
    """What a reward sees: the problem, the rendered prompt, the steps of the path so far
    (the last one is the step being scored) and the engine result that produced it."""

    problem: str
    prompt: str
    steps: list[str]
    result: GenResult
    tags: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Reward(Protocol):
    """Scores a step in [0, 1]; higher is better. A PRM implements the same call."""

    async def score(self, context: StepContext) -> float: ...

    async def close(self) -> None: ...
