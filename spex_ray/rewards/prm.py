"""Process reward models: per-step scores from a PRM served by reward actors. No Ray in here.

PRMReward is the Reward the search calls. It hands (problem, steps) to a StepScorer, which
in production is the client of the reward actors (actors/reward.py), each hosting one of
the scorers registered in SCORERS (registries.py):

* step_tag (prm_sglang.py): a generative PRM in the Math-Shepherd style on SGLang. Every
  step ends with a tag (" ки"); the step's score is read from the PRM's next-token
  distribution right after the tag, over label tokens ("+" good, "-" bad), through
  `Engine.async_score(query, items, label_token_ids)` (one label: its probability).
* qwen_prm (prm_hf.py): Qwen2.5-Math-PRM on transformers (its Qwen2ForProcessRewardModel
  architecture is not in SGLang): the steps are joined with "<extra_0>" in the chat
  template and each separator position carries a 2-class logit pair; softmax class 1 is
  the step's score.
* llemma_prm (prm_hf.py): the Llemma reward model of the REBASE paper on transformers: its
  model card reads sigmoid(mean over the vocabulary of the logits) at each step's end
  token, which SGLang's score API cannot return.

The formatting and score extraction below are pure functions, unit-tested without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from spex_ray.config import PolicyConfig, RewardConfig
from spex_ray.engines.sglang_settings import SGLangSettings
from spex_ray.rewards.base import StepContext

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_STEP_SEPARATOR = "<extra_0>"


class StepScorer(Protocol):
    """Scores the newest step of a path: (problem, steps) -> a score in [0, 1]."""

    async def score(self, problem: str, steps: list[str]) -> float: ...

    async def close(self) -> None: ...


class HostedScorer(StepScorer, Protocol):
    """A PRM scorer a reward actor hosts (registries.SCORERS), built as Cls(config, name=...).

    `needs_gpu(config)` (a static method) says whether its actor needs GPUs.
    """

    @staticmethod
    def needs_gpu(config: RewardConfig) -> bool: ...

    async def start(self) -> None: ...


class PRMReward:
    """The Reward of reward.kind "prm": the newest step's PRM score, from `scorer`.

    `scorer` is given by whoever hosts the search (the TreeActor passes the reward actors'
    client); without one the reward cannot score and says so.
    """

    needs_scorer: ClassVar[bool] = True  # solve() starts reward actors for it

    def __init__(self, config: RewardConfig | None = None, scorer: StepScorer | None = None) -> None:
        self.config = config
        self.scorer = scorer

    async def score(self, context: StepContext) -> float:
        if self.scorer is None:
            raise RuntimeError(
                "reward.kind prm needs a PRM scorer: solve() starts reward actors for it "
                "(actors/reward.py); in-process, pass PRMReward(config, scorer=...)"
            )
        steps = list(context.steps) or [context.result.text]
        return clip01(await self.scorer.score(context.problem, steps))

    async def close(self) -> None:
        if self.scorer is not None:
            await self.scorer.close()


def clip01(value: float) -> float:
    """`value` clipped to [0, 1]; NaN (no evidence) scores 0."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, float(value)))


# -- step_tag: a generative PRM in the Math-Shepherd style -------------------------------------


def step_tag_query_item(problem: str, steps: Sequence[str], tag: str) -> tuple[str, str]:
    """(query, item) for SGLang's score(): query = the problem and every earlier step, each
    followed by the tag and a newline; item = the newest step and its tag. The label token
    after query + item is the newest step's verdict; the shared query stays in the radix cache."""
    if not steps:
        raise ValueError("a PRM scores a step: give at least one")
    *earlier, newest = (step.strip() for step in steps)
    query = problem.strip() + " " + "".join(f"{step}{tag}\n" for step in earlier)
    return query, f"{newest}{tag}"


def step_tag_text(problem: str, steps: Sequence[str], tag: str) -> str:
    """The whole tagged path, as one text: the query and item of step_tag_query_item joined."""
    query, item = step_tag_query_item(problem, steps, tag)
    return query + item


def label_token_ids(tokenizer: Any, good: str, bad: str, explicit: Sequence[int] = ()) -> list[int]:
    """The label token ids [good] or [good, bad]: `explicit` if given, else each token string
    encoded without special tokens, which must be exactly one token."""
    if explicit:
        return [int(i) for i in explicit]
    ids = []
    for token in (good, bad):
        if not token:
            continue
        encoded = list(tokenizer.encode(token, add_special_tokens=False))
        if len(encoded) != 1:
            raise ValueError(
                f"label token {token!r} is {len(encoded)} tokens ({encoded}) for this PRM's tokenizer; "
                "set reward.label_token_ids to the ids to read"
            )
        ids.append(encoded[0])
    return ids


def label_step_score(probabilities: Sequence[float]) -> float:
    """A step's score from the label probabilities SGLang's score() returns for one item:
    P(good) normalised over [good, bad] (apply_softmax), or P(good) with one label."""
    if not probabilities:
        raise ValueError("no label probabilities to score")
    return clip01(float(probabilities[0]))


# -- qwen_prm: Qwen2.5-Math-PRM ----------------------------------------------------------------


def qwen_prm_messages(problem: str, steps: Sequence[str], system: str = QWEN_SYSTEM) -> list[dict[str, str]]:
    """The chat Qwen2.5-Math-PRM scores: every step followed by the separator token."""
    response = "".join(step.strip() + QWEN_STEP_SEPARATOR for step in steps)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": problem.strip()},
        {"role": "assistant", "content": response},
    ]


def separator_positions(input_ids: Sequence[int], separator_id: int) -> list[int]:
    """Positions of the step separator token in one tokenized sequence."""
    return [i for i, token in enumerate(input_ids) if token == separator_id]


def positive_probabilities(logit_pairs: Sequence[Sequence[float]]) -> list[float]:
    """softmax(logits)[1] of each (negative, positive) logit pair: the per-step scores."""
    scores = []
    for pair in logit_pairs:
        if len(pair) != 2:
            raise ValueError(f"expected 2 class logits per step, got {len(pair)}")
        scores.append(_sigmoid(float(pair[1]) - float(pair[0])))
    return scores


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def sigmoid_mean_scores(rows: Sequence[Sequence[float]]) -> list[float]:
    """sigmoid(mean of each row of logits over the vocabulary): the Llemma reward model's read-out."""
    return [_sigmoid(sum(map(float, row)) / len(row)) if row else 0.0 for row in rows]


def step_scores_at_separators(
    input_ids: Sequence[int], logits: Sequence[Sequence[float]], separator_id: int
) -> list[float]:
    """Per-step scores of one sequence: the positive probability at each separator position
    (`logits` has one 2-class row per token)."""
    return positive_probabilities([logits[i] for i in separator_positions(input_ids, separator_id)])


def reward_engine_policy(reward: RewardConfig) -> PolicyConfig:
    """The PolicyConfig of the SGLang engine that serves a step_tag PRM."""
    sglang = SGLangSettings(
        trust_remote_code=reward.trust_remote_code,
        deterministic=False,  # scoring is a forward pass: nothing is sampled
    )
    policy = PolicyConfig(
        model=reward.model,
        dtype=reward.dtype,
        max_batch_size=reward.max_batch_size,
        num_gpus=reward.num_gpus,
        tp=reward.tp,
        mem_fraction_static=reward.mem_fraction_static,
    )
    return policy.with_settings("sglang", sglang)
