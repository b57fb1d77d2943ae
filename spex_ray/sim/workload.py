"""The synthetic reasoning workload of the simulated engine: what text a step contains.

Pure functions, no asyncio. Everything is a deterministic function of (prompt, seed), so a
request gives the same step whatever else the engine runs (speculation stays lossless).

The model of a reasoning path:

* A problem (the text between the chat user and assistant markers) has a gold answer, a
  small set of distractor answers and a root quality z0 (its easiness), all derived from
  a hash of the problem text. `sim_problems()` makes a dataset of such problems.
* Each step carries a latent quality z in a parseable marker: "Step 3 [z=0.734]: ...".
  A child's z is its parent's (parsed from the last step of the prompt) minus a small
  drift plus Gaussian noise, clipped to [0, 1].
* A step's length (completion tokens, delimiter token included) is lognormal.
* The answer appears at depth d with the hazard 1 - exp(-(d/scale)^shape * exp(gain*(z-0.5))),
  rising with depth and higher on good paths; the step then ends "The answer is \\boxed{N}."
  where N is the gold with probability sigmoid(slope * (z - mid)), else a distractor (wrong
  answers cluster on a few values, like a real model's). With the drift and the z-dependent
  hazard, shallow answers are more accurate than deep ones, as the SPEX paper observes.
* Token logprobs have mean -(1 - z) * logprob_scale, so the confidence reward works too.

Tokens are words: one token per whitespace-separated word (a hash of the word), so prompts
that share a text prefix share a token prefix and the prefix cache behaves like a real one.

The mean step length of `WorkloadParams` is fitted to the traces of real runs
(benchmarks/calibrate_workload.py, numbers in BENCHMARKS.md); its spread is set for a
7-8B policy from reference solutions (BENCHMARKS.md, "Step-length spread"); the rest are
plausible guesses, to be fitted the same way from the traces of a real GPU policy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SYSTEM_MARK = "<|system|>"
USER_MARK = "<|user|>"
ASSISTANT_MARK = "<|assistant|>"

VOCAB_SIZE = 32000
STOP_TOKEN = 1  # the step delimiter ("\n\n") as one token
EOS_TOKEN = 2
_FIRST_WORD_TOKEN = 3

_STEP_RE = re.compile(r"Step (\d+) \[z=(\d+(?:\.\d+)?)\]:")
_Z_RE = re.compile(r"\[z=(\d+(?:\.\d+)?)\]")

# Filler words of a step: nothing here may look like an answer to extract_answer().
_FILLER_TEXT = """let the value of we so then now since term both sides gives equation sum product
factor multiply divide add subtract compute check note first next number total each part
case square root side angle area ratio rate time distance speed cost price count ways
pairs digits prime even odd integer fraction percent circle triangle length width height
volume x y n k m a b c equals plus minus times over into from with by for to and
simplify expand substitute solve isolate hence thus therefore which means this that it
one two three four five six seven eight nine ten half twice more less than at most least"""
_PROBLEM_TEXT = """find compute how many what is the value sum of all positive integers such that a
triangle has sides circle radius area ratio probability two dice coins are tossed number
ways to choose from set real solutions equation function f polynomial roots product
remainder when divided by digits base sequence term arithmetic geometric"""
_FILLER = tuple(_FILLER_TEXT.split())
_PROBLEM_WORDS = tuple(_PROBLEM_TEXT.split())


@dataclass(frozen=True)
class WorkloadParams:
    """Knobs of the synthetic workload (step lengths fitted to real traces, the rest guesses).

    step_tokens_*: completion tokens of a step (the delimiter token included), lognormal with
    this mean and log-sd `step_tokens_sigma` (0 = every step exactly the mean), clipped to
    [min, max]. root_z_*: the root quality is uniform in [min, max] by problem hash.
    z_sigma, z_drift: child z = parent z - drift + N(0, sigma). answer_*: the answer hazard
    at depth d is 1 - exp(-(d/scale)^shape * exp(gain * (z - 0.5))). correct_*: P(gold | an
    answer) = sigmoid(slope * (z - mid)). distractors: wrong answers per problem, the i-th
    drawn with weight decay^i. eos_after_answer: probability that an answer step ends with
    EOS rather than the delimiter. logprob_*: token logprob ~ N(-(1 - z) * scale, noise),
    clipped to <= 0. gold_max: gold answers are integers in [2, gold_max].
    """

    step_tokens_mean: float = 44.9  # fitted to CPU-engine traces (configs/workloads/smollm2_gsm8k.yaml)
    # The spread a 7-8B model's sibling steps have (BENCHMARKS.md, "Step-length spread"): between
    # the log-sd of GSM8K's reference solution lines (0.46) and of MATH500's reference steps
    # within one solution (0.78); the 135M model's 0.82 (smollm2_gsm8k.yaml) is the upper end.
    step_tokens_sigma: float = 0.6
    step_tokens_min: int = 8
    step_tokens_max: int = 400
    root_z_min: float = 0.2
    root_z_max: float = 0.9
    z_sigma: float = 0.1
    z_drift: float = 0.02
    answer_scale: float = 5.0
    answer_shape: float = 2.0
    answer_z_gain: float = 2.0
    correct_slope: float = 10.0
    correct_mid: float = 0.5
    distractors: int = 3
    distractor_decay: float = 0.5
    eos_after_answer: float = 0.5
    logprob_scale: float = 1.5
    logprob_noise: float = 0.3
    gold_max: int = 999

    def __post_init__(self) -> None:
        if self.step_tokens_mean <= 0 or self.step_tokens_sigma < 0:
            raise ValueError("step_tokens_mean must be > 0 and step_tokens_sigma >= 0")
        if not 8 <= self.step_tokens_min <= self.step_tokens_max:
            raise ValueError("need 8 <= step_tokens_min <= step_tokens_max")
        if not 0 <= self.root_z_min <= self.root_z_max <= 1:
            raise ValueError("need 0 <= root_z_min <= root_z_max <= 1")
        if self.answer_scale <= 0 or self.answer_shape <= 0:
            raise ValueError("answer_scale and answer_shape must be > 0")
        if self.distractors < 1 or not 0 < self.distractor_decay <= 1:
            raise ValueError("need distractors >= 1 and distractor_decay in (0, 1]")
        if not 0 <= self.eos_after_answer <= 1 or self.gold_max < self.distractors + 2:
            raise ValueError("need eos_after_answer in [0, 1] and gold_max >= distractors + 2")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> WorkloadParams:
        """Build from a mapping (e.g. a calibration result); unknown keys are an error."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown workload parameters {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class StepPlan:
    """One generated step, decided in full when the request arrives.

    `token_ids`/`logprobs` are the completion tokens (a final STOP_TOKEN or EOS_TOKEN
    included unless the step was cut by max_new_tokens); `words` are the text's tokens.
    """

    words: tuple[str, ...]
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: str  # "stop" | "length"
    stop_matched: str | None
    depth: int
    z: float
    answer: str | None

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def partial(self, n_tokens: int) -> tuple[str, list[int], list[float]]:
        """Text, token ids and logprobs of the first `n_tokens` completion tokens."""
        n = max(0, min(n_tokens, len(self.token_ids)))
        return " ".join(self.words[:n]), list(self.token_ids[:n]), list(self.logprobs[:n])


# --------------------------------------------------------------------------- tokens and chat


@lru_cache(maxsize=1 << 16)
def token_id(word: str) -> int:
    """The fake tokenizer's id of one word (a hash; collisions are harmless)."""
    digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
    return _FIRST_WORD_TOKEN + int.from_bytes(digest, "big") % (VOCAB_SIZE - _FIRST_WORD_TOKEN)


def tokenize(text: str) -> list[int]:
    """One token per whitespace-separated word."""
    return [token_id(word) for word in text.split()]


def render_chat(messages: Sequence[Mapping[str, str]]) -> str:
    """The sim's chat template: "<|role|>\\ncontent\\n" per message, then "<|assistant|>\\n"."""
    parts = [f"<|{m.get('role', 'user')}|>\n{m.get('content', '').strip()}\n" for m in messages]
    return "".join(parts) + ASSISTANT_MARK + "\n"


def extract_problem(prompt: str) -> str:
    """The problem text: after the last user marker up to the assistant marker (or, with no
    chat markers, the prompt before the first step marker)."""
    user = prompt.rfind(USER_MARK)
    if user >= 0:
        end = prompt.find(ASSISTANT_MARK, user)
        return prompt[user + len(USER_MARK) : end if end >= 0 else len(prompt)].strip()
    first_step = _STEP_RE.search(prompt)
    return (prompt[: first_step.start()] if first_step else prompt).strip()


def _history(prompt: str) -> str:
    """The generated part of a prompt (after the assistant marker), where step markers live."""
    user = prompt.rfind(USER_MARK)
    assistant = prompt.find(ASSISTANT_MARK, max(user, 0))
    return prompt[assistant + len(ASSISTANT_MARK) :] if assistant >= 0 else prompt


def parse_z(step: str) -> float | None:
    """The latent quality in a step's marker, or None when it has none."""
    match = _Z_RE.search(step)
    return float(match.group(1)) if match else None


# --------------------------------------------------------------------------- problems


def _hash_int(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


def _rng(*parts: object) -> random.Random:
    return random.Random(_hash_int(*parts))


def _unit(*parts: object) -> float:
    return _hash_int(*parts) / float(1 << 128)


def gold_answer(problem: str, params: WorkloadParams | None = None) -> int:
    """The gold answer of a problem: an integer in [2, gold_max] fixed by its text."""
    params = params or WorkloadParams()
    return 2 + _hash_int("gold", problem.strip()) % (params.gold_max - 1)


def distractors(problem: str, params: WorkloadParams | None = None) -> list[int]:
    """The problem's wrong answers, most likely first."""
    params = params or WorkloadParams()
    gold = gold_answer(problem, params)
    rng = _rng("distractors", problem.strip())
    wrong: list[int] = []
    while len(wrong) < params.distractors:
        value = rng.randint(2, params.gold_max)
        if value != gold and value not in wrong:
            wrong.append(value)
    return wrong


def root_z(problem: str, params: WorkloadParams | None = None) -> float:
    """The quality of a problem's root (its easiness), fixed by its text."""
    params = params or WorkloadParams()
    span = params.root_z_max - params.root_z_min
    return round(params.root_z_min + span * _unit("difficulty", problem.strip()), 3)


def sim_problems(n: int, seed: int = 0, params: WorkloadParams | None = None) -> list[dict[str, str]]:
    """n sim problems as rows {id: "sim-i", problem: "Sim problem i: ...", answer: gold}."""
    rows = []
    for i in range(n):
        rng = _rng("sim-problem", seed, i)
        words = " ".join(rng.choice(_PROBLEM_WORDS) for _ in range(rng.randint(12, 30)))
        label = f"Sim problem {i}" if seed == 0 else f"Sim problem {i} (set {seed})"
        text = f"{label}: {words}?"
        rows.append({"id": f"sim-{i}", "problem": text, "answer": str(gold_answer(text, params))})
    return rows


SIM_DATASET_SIZE = 100  # problems of the `sim` dataset when no limit is given


def sim_dataset(limit: int | None, offset: int, seed: int) -> list[dict[str, str]]:
    """The `sim` dataset (registries.GENERATED): sim problems offset..offset+limit; it has no
    end, so limit None (all) gives SIM_DATASET_SIZE problems from offset."""
    return sim_problems(offset + (SIM_DATASET_SIZE if limit is None else limit), seed=seed)[offset:]


# --------------------------------------------------------------------------- steps


def answer_probability(depth: int, z: float, params: WorkloadParams) -> float:
    """P(the answer appears in a step at `depth` of quality `z`)."""
    hazard = (depth / params.answer_scale) ** params.answer_shape
    return 1.0 - math.exp(-hazard * math.exp(params.answer_z_gain * (z - 0.5)))


def correct_probability(z: float, params: WorkloadParams) -> float:
    """P(an answer given at quality `z` is the gold one)."""
    return 1.0 / (1.0 + math.exp(-params.correct_slope * (z - params.correct_mid)))


def parent_state(prompt: str, params: WorkloadParams) -> tuple[int, float]:
    """(depth of the next step, quality of its parent) from the last step marker of the prompt."""
    last = None
    for last in _STEP_RE.finditer(_history(prompt)):  # noqa: B007 - keep the last match
        pass
    if last is None:
        return 1, root_z(extract_problem(prompt), params)
    return int(last.group(1)) + 1, float(last.group(2))


def _step_length(rng: random.Random, params: WorkloadParams) -> int:
    sigma = params.step_tokens_sigma
    mu = math.log(params.step_tokens_mean) - sigma * sigma / 2  # so that the mean is the mean
    length = round(rng.lognormvariate(mu, sigma)) if sigma > 0 else round(params.step_tokens_mean)
    return max(params.step_tokens_min, min(params.step_tokens_max, length))


def plan_step(
    prompt: str,
    seed: int,
    max_new_tokens: int,
    stop: Sequence[str] = ("\n\n",),
    temperature: float = 0.7,
    params: WorkloadParams | None = None,
) -> StepPlan:
    """The step an engine generates for `prompt` with `seed`: a pure function of its inputs.

    A step ends with the delimiter token (finish "stop", stop_matched = stop[0]) or, after an
    answer (or when `stop` is empty), with EOS (finish "stop", stop_matched None); it is cut
    at max_new_tokens (finish "length"). Temperature 0 is greedy: the seed is ignored.
    """
    params = params or WorkloadParams()
    problem = extract_problem(prompt)
    depth, parent_z = parent_state(prompt, params)
    rng = _rng("step", prompt, seed if temperature > 0 else 0)
    z = round(min(1.0, max(0.0, parent_z - params.z_drift + rng.gauss(0.0, params.z_sigma))), 3)
    length = _step_length(rng, params)
    answer = None
    if rng.random() < answer_probability(depth, z, params):
        if rng.random() < correct_probability(z, params):
            answer = str(gold_answer(problem, params))
        else:
            wrong = distractors(problem, params)
            weights = [params.distractor_decay**i for i in range(len(wrong))]
            answer = str(rng.choices(wrong, weights)[0])
    header = ["Step", str(depth), f"[z={z:.3f}]:"]
    tail = ["The", "answer", "is", f"\\boxed{{{answer}}}."] if answer is not None else []
    n_filler = max(1, length - 1 - len(header) - len(tail))
    words = header + [rng.choice(_FILLER) for _ in range(n_filler)] + tail
    eos = not stop or (answer is not None and rng.random() < params.eos_after_answer)
    token_ids = [*tokenize(" ".join(words)), EOS_TOKEN if eos else STOP_TOKEN]
    mean = -(1.0 - z) * params.logprob_scale
    logprobs = [min(0.0, rng.gauss(mean, params.logprob_noise)) for _ in token_ids]
    if len(token_ids) > max_new_tokens:
        n = max_new_tokens
        return StepPlan(
            tuple(words[:n]), tuple(token_ids[:n]), tuple(logprobs[:n]), "length", None, depth, z, None
        )
    stop_matched = None if eos else stop[0]
    return StepPlan(tuple(words), tuple(token_ids), tuple(logprobs), "stop", stop_matched, depth, z, answer)
