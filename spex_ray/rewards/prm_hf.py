"""PRMs on transformers, for architectures or read-outs SGLang does not serve.

Hosted by a reward actor on its GPU(s) (tp > 1: the layers spread over them with
device_map "auto"). A path is rendered to text, one forward pass gives logits at every
token, and the score of each step is read at the position of its end token:

* QwenPRMScorer (reward.scorer qwen_prm): Qwen2.5-Math-PRM (Qwen2ForProcessRewardModel,
  not in SGLang). Steps joined by "<extra_0>" in the chat template; a 2-class logit pair
  per token; the score is softmax class 1 at each separator (prm.step_scores_at_separators).
* LlemmaPRMScorer (llemma_prm): the Llemma reward model of the REBASE paper, whose model
  card reads sigmoid(mean over the vocabulary of the logits) at each step's end token
  (the artifact's token id 8094, the step tag "ки"); the text is the problem and the
  tagged steps (prm.step_tag_text).

The newest step's score is the last one. Concurrent calls are batched (rewards/batcher.py).
Both models ship their own modelling code or weights layout: set reward.trust_remote_code
where the model needs it (Qwen2.5-Math-PRM does).
"""

from __future__ import annotations

import asyncio
from typing import Any

from spex_ray.config import RewardConfig
from spex_ray.engines.models import resolve_model
from spex_ray.rewards.batcher import MicroBatcher
from spex_ray.rewards.prm import (
    QWEN_STEP_SEPARATOR,
    positive_probabilities,
    qwen_prm_messages,
    separator_positions,
    sigmoid_mean_scores,
    step_tag_text,
)


class HFPRMScorer:
    """Loading, batching and the forward pass; subclasses render a path and read scores.

    `model` and `tokenizer` may be given (tests); otherwise start() loads `config.model`.
    """

    @staticmethod
    def needs_gpu(config: RewardConfig) -> bool:
        """On the GPU when reward.device is a CUDA device."""
        return config.device.startswith("cuda")

    def __init__(
        self, config: RewardConfig, *, name: str = "reward-0", model: Any = None, tokenizer: Any = None
    ) -> None:
        self.config = config
        self.name = name
        self._model = model
        self._tokenizer = tokenizer
        self._end_token: int | None = None
        self._lock = asyncio.Lock()
        self._batcher = MicroBatcher(self._forward, config.max_batch_size)

    async def start(self) -> None:
        async with self._lock:
            if self._model is None:
                await asyncio.to_thread(self._load)
            if self._end_token is None:
                self._end_token = self.end_token_id(self._tokenizer)

    def _load(self) -> None:
        import torch
        from transformers import AutoTokenizer

        config = self.config
        path = resolve_model(config.model).path
        trust = bool(config.trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        kwargs: dict[str, Any] = {"dtype": getattr(torch, config.dtype), "trust_remote_code": trust}
        if config.tp > 1:
            kwargs["device_map"] = "auto"  # spread over the actor's GPUs
        model = self.model_class().from_pretrained(path, **kwargs)
        self._tokenizer = tokenizer
        self._model = (model if config.tp > 1 else model.to(config.device)).eval()

    async def score(self, problem: str, steps: list[str]) -> float:
        await self.start()
        scores = await self._batcher.submit(self.render(problem, steps))
        if len(scores) != len(steps):
            raise RuntimeError(
                f"{self.name}: the PRM input has {len(scores)} step end tokens for {len(steps)} steps "
                "(check reward.step_tag / reward.label_token_ids, or the path was cut)"
            )
        return scores[-1]

    def _forward(self, texts: list[str]) -> list[list[float]]:
        """Per-step scores of each rendered path (one padded forward pass, in a worker thread)."""
        import torch

        batch = self._tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=self.add_special_tokens
        )
        device = getattr(self._model, "device", "cpu")
        with torch.inference_mode():
            outputs = self._model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            )
        logits = outputs[0]  # (batch, tokens, labels or vocabulary)
        results = []
        for ids, rows in zip(batch["input_ids"].tolist(), logits, strict=True):
            positions = separator_positions(ids, self._end_token)
            results.append(self.read(rows[positions].float().cpu().tolist()))
        return results

    async def close(self) -> None:
        await self._batcher.close()
        self._model = None

    # -- what a PRM defines ------------------------------------------------------------------

    add_special_tokens = False

    def model_class(self) -> Any:
        raise NotImplementedError

    def end_token_id(self, tokenizer: Any) -> int:
        raise NotImplementedError

    def render(self, problem: str, steps: list[str]) -> str:
        raise NotImplementedError

    def read(self, rows: list[list[float]]) -> list[float]:
        raise NotImplementedError


class QwenPRMScorer(HFPRMScorer):
    """Qwen2.5-Math-PRM: softmax class 1 of the 2-class logits at each "<extra_0>"."""

    def model_class(self) -> Any:
        from transformers import AutoModel

        return AutoModel

    def end_token_id(self, tokenizer: Any) -> int:
        return single_token_id(tokenizer, QWEN_STEP_SEPARATOR)

    def render(self, problem: str, steps: list[str]) -> str:
        messages = qwen_prm_messages(problem, steps)
        return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def read(self, rows: list[list[float]]) -> list[float]:
        return positive_probabilities(rows)


class LlemmaPRMScorer(HFPRMScorer):
    """The Llemma reward model: sigmoid(mean logit over the vocabulary) at each step end token
    (reward.label_token_ids[0], else the step tag as one token)."""

    add_special_tokens = True  # a causal LM scored like it was trained: with BOS

    def model_class(self) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def end_token_id(self, tokenizer: Any) -> int:
        if self.config.label_token_ids:
            return int(self.config.label_token_ids[0])
        return single_token_id(tokenizer, self.config.step_tag.strip())

    def render(self, problem: str, steps: list[str]) -> str:
        return step_tag_text(problem, steps, self.config.step_tag)

    def read(self, rows: list[list[float]]) -> list[float]:
        return sigmoid_mean_scores(rows)


def single_token_id(tokenizer: Any, text: str) -> int:
    """The id of `text`, which must be one token for this tokenizer."""
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if len(ids) != 1:
        raise ValueError(
            f"{text!r} is {len(ids)} tokens ({ids}) for this PRM's tokenizer; set reward.label_token_ids"
        )
    return ids[0]
