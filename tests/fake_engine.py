"""FakeEngine: a deterministic in-process stand-in for an LLM, for unit tests of the tree
logic only (never used in an end-to-end path). Its output is a pure function of the
request seed, like an engine that honours per-request seeds; its latency too, and an
abort ends a request at once."""

from __future__ import annotations

import asyncio
import random

from spex_ray.engines.base import FinishReason, GenRequest, GenResult
from spex_ray.engines.chat import ChatTemplate


class FakeEngine:
    """Writes "step N" paragraphs; answers with probability `answer_rate` per step."""

    def __init__(
        self,
        answer_rate: float = 0.3,
        answers: tuple[str, ...] = ("7", "8"),
        fail_node: str = "",
        latency: float = 0.0,
    ) -> None:
        self.answer_rate = answer_rate
        self.answers = answers
        self.fail_node = fail_node
        self.latency = latency  # up to this many seconds per request, fixed by the seed
        self.requests: list[GenRequest] = []
        self.aborted: list[str] = []
        self._running: dict[str, asyncio.Event] = {}

    async def generate(self, request: GenRequest) -> GenResult:
        self.requests.append(request)
        if await self._wait(request):
            return GenResult(request.request_id, finish_reason=FinishReason.ABORT)
        if request.tags.get("node") == self.fail_node:
            return GenResult(request.request_id, finish_reason=FinishReason.ERROR, error="boom")
        rng = random.Random(request.seed)
        if rng.random() < self.answer_rate:
            text = f"So the answer is \\boxed{{{rng.choice(self.answers)}}}."
        else:
            text = f"step {rng.randint(0, 999)}"
        n_tokens = min(request.max_new_tokens, len(text.split()) + 2)
        logprobs = [-rng.random() for _ in range(n_tokens)]
        return GenResult(
            request.request_id,
            text=text,
            token_ids=list(range(n_tokens)),
            logprobs=logprobs,
            finish_reason=FinishReason.STOP,
            stop_matched=request.stop[0] if request.stop else None,
            completion_tokens=n_tokens,
        )

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        if request_id in self._running:
            self._running[request_id].set()

    def chat_template(self) -> ChatTemplate:
        return ChatTemplate(renderer="fake_engine:render_chat")

    async def _wait(self, request: GenRequest) -> bool:
        """Sleep the request's latency; True if it was aborted meanwhile."""
        aborted = self._running[request.request_id] = asyncio.Event()
        delay = self.latency * random.Random(f"latency/{request.seed}").random()
        try:
            await asyncio.wait_for(aborted.wait(), timeout=delay)
        except TimeoutError:
            return False
        finally:
            del self._running[request.request_id]
        return True


def render_chat(messages: list[dict[str, str]]) -> str:
    """The fake engine's chat template: the contents, a line each."""
    return "\n".join(m["content"] for m in messages) + "\n"
