"""A toy engine backend in one file: its settings (policy.toy) and its engine, which
echoes the prompt. Registered by tests/test_backends_on_cpu.py with one line."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from spex_ray.config import PolicyConfig, check
from spex_ray.engines.base import EngineLoad, GenRequest, GenResult
from spex_ray.engines.chat import ChatTemplate
from spex_ray.engines.meter import LoadMeter


@dataclass
class ToySettings:
    """policy.toy: what the toy engine says."""

    engine: ClassVar[str] = "toy_backend:ToyEngine"

    reply: str = "echo"
    on_gpu: bool = False

    def validate(self, policy: PolicyConfig) -> None:
        check(bool(self.reply), "policy.toy.reply", "must not be empty")

    def needs_gpu(self) -> bool:
        return self.on_gpu


class ToyEngine:
    """Answers every request with `reply` and the prompt's first word."""

    def __init__(self, policy: PolicyConfig, *, name: str = "engine-0") -> None:
        self.name = name
        self.policy = policy
        self.settings = policy.typed_settings("toy", ToySettings)
        self._meter = LoadMeter(policy.max_batch_size)

    async def start(self) -> None:
        return None

    async def generate(self, request: GenRequest) -> GenResult:
        now = time.time()
        words = (request.prompt or "").split()
        text = f"{self.settings.reply} {words[0] if words else ''}".strip()
        return GenResult(request.request_id, text=text, enqueue_time=now, start_time=now, end_time=now)

    async def abort(self, request_id: str) -> None:
        return None

    def load(self) -> EngineLoad:
        return self._meter.snapshot(
            running_main=0, running_spec=0, queued_main=0, queued_spec=0, now=time.time()
        )

    def knee(self) -> int:
        return self.policy.max_batch_size

    def chat_template(self) -> ChatTemplate:
        return ChatTemplate()

    async def close(self) -> None:
        return None
