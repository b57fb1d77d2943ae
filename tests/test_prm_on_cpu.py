"""Process reward models without a GPU: prompt formats, score extraction, the scorers' glue
(against stand-in engines and models), batching, and the reward's wiring."""

from __future__ import annotations

import asyncio
import math
import types

import pytest
import torch

from spex_ray.config import Config, ConfigError, RewardConfig
from spex_ray.engines.base import GenResult
from spex_ray.engines.sglang_settings import SGLangSettings
from spex_ray.registries import SCORERS
from spex_ray.rewards import REWARDS
from spex_ray.rewards.base import StepContext
from spex_ray.rewards.batcher import MicroBatcher
from spex_ray.rewards.prm import (
    QWEN_STEP_SEPARATOR,
    PRMReward,
    clip01,
    label_step_score,
    label_token_ids,
    positive_probabilities,
    qwen_prm_messages,
    reward_engine_policy,
    separator_positions,
    sigmoid_mean_scores,
    step_scores_at_separators,
    step_tag_query_item,
    step_tag_text,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- formats and pure extraction ------------------------------------------------------------


def test_step_tag_query_and_item():
    query, item = step_tag_query_item("What is 2+3? ", ["First, 2+3 = 5. ", "The answer is 5."], " ки")
    assert query == "What is 2+3? First, 2+3 = 5. ки\n"
    assert item == "The answer is 5. ки"
    assert step_tag_text("Q", ["a"], " ки") == "Q a ки"
    with pytest.raises(ValueError):
        step_tag_query_item("Q", [], " ки")


def test_label_tokens_and_scores():
    class Tokenizer:
        def encode(self, text, add_special_tokens=True):
            return {"+": [648], "-": [387], "++": [1, 2]}[text]

    assert label_token_ids(Tokenizer(), "+", "-") == [648, 387]
    assert label_token_ids(Tokenizer(), "+", "") == [648]
    assert label_token_ids(Tokenizer(), "+", "-", explicit=[8094]) == [8094]
    with pytest.raises(ValueError, match="label_token_ids"):
        label_token_ids(Tokenizer(), "++", "-")
    assert label_step_score([0.8, 0.2]) == 0.8 and label_step_score([1.5]) == 1.0
    with pytest.raises(ValueError):
        label_step_score([])
    assert clip01(float("nan")) == 0.0 and clip01(-2) == 0.0


def test_qwen_prm_extraction_matches_the_model_card():
    messages = qwen_prm_messages(" Q ", ["step one ", "step two"])
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"] == "Q"
    assert messages[2]["content"] == f"step one{QWEN_STEP_SEPARATOR}step two{QWEN_STEP_SEPARATOR}"
    ids = [5, 99, 7, 8, 99]
    logits = [[0.0, 0.0], [0.0, 2.0], [9.0, 9.0], [1.0, 1.0], [3.0, -1.0]]
    assert separator_positions(ids, 99) == [1, 4]
    scores = step_scores_at_separators(ids, logits, 99)
    reference = torch.softmax(torch.tensor([logits[1], logits[4]]), dim=-1)[:, 1].tolist()
    assert scores == pytest.approx(reference)
    assert positive_probabilities([[1000.0, -1000.0], [-1000.0, 1000.0]]) == [0.0, 1.0]  # no overflow
    with pytest.raises(ValueError):
        positive_probabilities([[1.0, 2.0, 3.0]])


def test_llemma_readout_is_sigmoid_of_the_mean_logit():
    rows = [[1.0, 3.0], [-4.0, 0.0]]
    assert sigmoid_mean_scores(rows) == pytest.approx([sigmoid(2.0), sigmoid(-2.0)])
    assert sigmoid_mean_scores([[]]) == [0.0]


# --- the reward and its scorers -----------------------------------------------------------------


class RecordingScorer:
    def __init__(self, value: float) -> None:
        self.value = value
        self.calls: list[tuple[str, list[str]]] = []
        self.closed = False

    async def score(self, problem, steps):
        self.calls.append((problem, steps))
        return self.value

    async def close(self):
        self.closed = True


def context(steps):
    return StepContext("Q", "prompt", steps, GenResult("r", text=steps[-1] if steps else "only"))


def test_prm_reward_scores_the_newest_step_through_its_scorer():
    scorer = RecordingScorer(1.7)
    reward = REWARDS.build("prm", RewardConfig(kind="prm", model="m"), scorer=scorer)
    assert isinstance(reward, PRMReward) and PRMReward.needs_scorer
    assert asyncio.run(reward.score(context(["a", "b"]))) == 1.0  # clipped
    assert asyncio.run(reward.score(context([]))) == 1.0
    assert scorer.calls == [("Q", ["a", "b"]), ("Q", ["only"])]
    asyncio.run(reward.close())
    assert scorer.closed
    with pytest.raises(RuntimeError, match="reward actors"):
        asyncio.run(PRMReward(RewardConfig()).score(context(["a"])))


class FakeScoringEngine:
    def __init__(self):
        self.started = False
        self.requests = []

    async def start(self):
        self.started = True

    def tokenizer(self):
        return types.SimpleNamespace(
            encode=lambda text, add_special_tokens=True: {"+": [648], "-": [387]}[text]
        )

    async def score_labels(self, query, items, label_token_ids, apply_softmax):
        self.requests.append((query, items, label_token_ids, apply_softmax))
        return [[0.75, 0.25] if apply_softmax else [0.4]]

    async def close(self):
        self.started = False


def test_step_tag_scorer_asks_the_engine_for_label_probabilities():
    config = RewardConfig(kind="prm", model="peiyi9979/math-shepherd-mistral-7b-prm")
    engine = FakeScoringEngine()
    scorer = SCORERS.build("step_tag", config, engine=engine)
    assert asyncio.run(scorer.score("Q", ["s1", "s2"])) == 0.75
    assert engine.started and engine.requests == [("Q s1 ки\n", ["s2 ки"], [648, 387], True)]
    single = SCORERS.build(
        "step_tag", RewardConfig(kind="prm", model="m", label_token_ids=[8094]), engine=engine
    )
    assert asyncio.run(single.score("Q", ["s1"])) == 0.4
    assert engine.requests[-1][2:] == ([8094], False)
    policy = reward_engine_policy(
        RewardConfig(kind="prm", model="m", tp=2, num_gpus=2, mem_fraction_static=0.3)
    )
    sglang = SGLangSettings.of(policy)
    assert (policy.backend, policy.model, policy.tp, policy.mem_fraction_static) == ("sglang", "m", 2, 0.3)
    assert sglang.deterministic is False


class WordTokenizer:
    """Whitespace tokens; the Qwen separator and the step tag are single tokens."""

    chat_template = "fake"
    special = {QWEN_STEP_SEPARATOR: 99, "ки": 8094}

    def _ids(self, text):
        text = text.replace(QWEN_STEP_SEPARATOR, f" {QWEN_STEP_SEPARATOR} ")
        return [self.special.get(w, 1 + len(w)) for w in text.split()]

    def encode(self, text, add_special_tokens=True):
        return self._ids(text)

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return " ".join(m["content"] for m in messages)

    def __call__(self, texts, return_tensors="pt", padding=True, add_special_tokens=False):
        rows = [self._ids(t) for t in texts]
        width = max(map(len, rows))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": mask}


class FakeModel:
    """logits[b, t] = [0, t / 10] (2 classes) or a vocabulary row filled with t / 10."""

    def __init__(self, width: int):
        self.width = width
        self.calls = 0
        self.device = "cpu"

    def __call__(self, input_ids, attention_mask):
        self.calls += 1
        batch, tokens = input_ids.shape
        position = torch.arange(tokens, dtype=torch.float32).expand(batch, tokens) / 10
        if self.width == 2:
            return (torch.stack([torch.zeros_like(position), position], dim=-1),)
        return (position.unsqueeze(-1).expand(batch, tokens, self.width),)


def test_qwen_prm_scorer_reads_the_last_separator_and_batches():
    config = RewardConfig(kind="prm", scorer="qwen_prm", model="Qwen/Qwen2.5-Math-PRM-7B", max_batch_size=8)
    model = FakeModel(width=2)
    scorer = SCORERS.build("qwen_prm", config, model=model, tokenizer=WordTokenizer())

    async def main():
        paths = [["a b"], ["a b", "c"], ["a", "b c d"]]
        scores = await asyncio.gather(*(scorer.score("Q", steps) for steps in paths))
        await scorer.close()
        return scores

    scores = asyncio.run(main())
    # "S Q a b <sep>": the system prompt is 14 words, so positions follow from it
    system_words = len(qwen_prm_messages("Q", ["x"])[0]["content"].split())
    first_sep = system_words + 1 + 2  # system, "Q", "a", "b", then the separator
    assert scores[0] == pytest.approx(sigmoid(first_sep / 10))
    assert scores[1] == pytest.approx(sigmoid((first_sep + 2) / 10))  # "c" and its separator follow
    assert scores[2] == pytest.approx(sigmoid((system_words + 1 + 1 + 1 + 3) / 10))
    assert model.calls < 3  # concurrent paths share forward passes


def test_llemma_prm_scorer_reads_the_mean_logit_at_the_step_tags():
    config = RewardConfig(
        kind="prm", scorer="llemma_prm", model="tkitsers/Llemma-reward-model", label_token_ids=[8094]
    )
    scorer = SCORERS.build("llemma_prm", config, model=FakeModel(width=32), tokenizer=WordTokenizer())
    score = asyncio.run(scorer.score("Q", ["x y", "z"]))
    assert score == pytest.approx(sigmoid(5 / 10))  # "Q x y ки z ки": the last tag is token 5
    bad = SCORERS.build(
        "llemma_prm", RewardConfig(kind="prm", model="m", label_token_ids=[5]), model=FakeModel(32)
    )
    bad._tokenizer = WordTokenizer()
    with pytest.raises(RuntimeError, match="step end tokens"):
        asyncio.run(bad.score("Q", ["x"]))


def test_micro_batcher_groups_waiting_items_in_order():
    seen: list[list[int]] = []

    def double(items):
        seen.append(list(items))
        if -1 in items:
            raise ValueError("bad item")
        return [2 * i for i in items]

    async def main():
        batcher = MicroBatcher(double, max_batch=2)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        failures = await asyncio.gather(batcher.submit(-1), batcher.submit(3), return_exceptions=True)
        await batcher.close()
        return results, failures, batcher.batches

    results, failures, batches = asyncio.run(main())
    assert results == [0, 2, 4, 6, 8] and seen[:3] == [[0, 1], [2, 3], [4]] and batches == 4
    assert all(isinstance(f, ValueError) for f in failures)  # a failed batch fails each of its callers
    with pytest.raises(ValueError):
        MicroBatcher(double, 0)


# --- wiring: config, registry, actors ---------------------------------------------------------------


def test_prm_config_validation():
    ok = Config.load(None, ["reward.kind=prm", "reward.model=m", "reward.label_token_ids=[8094]"])
    assert ok.reward.label_token_ids == [8094] and "prm" in REWARDS
    assert sorted(SCORERS.names()) == ["llemma_prm", "qwen_prm", "step_tag"]
    for bad, key in [
        (["reward.kind=prm"], "reward.model"),
        (["reward.kind=prm", "reward.model=m", "reward.scorer=other"], "reward.scorer"),
        (["reward.kind=prm", "reward.model=m", "reward.label_token_ids=[1, 2, 3]"], "reward.label_token_ids"),
        (["reward.kind=prm", "reward.model=m", "reward.mem_fraction_static=1"], "reward.mem_fraction_static"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            Config.load(None, bad)


def test_reward_wiring_routes_a_problem_to_one_actor():
    from spex_ray.actors.reward import ActorScorer, build_reward, needs_reward_actors

    class Method:
        def __init__(self, index):
            self.index = index

        def remote(self, problem, steps):
            future = asyncio.get_running_loop().create_future()
            future.set_result(float(self.index))
            return future

    actors = [types.SimpleNamespace(score=Method(i)) for i in range(3)]
    scorer = ActorScorer(actors)
    got = {asyncio.run(scorer.score("same problem", [s])) for s in ("a", "b", "c")}
    assert got == {float(scorer.index("same problem"))}
    assert needs_reward_actors(RewardConfig(kind="prm")) and not needs_reward_actors(RewardConfig())
    assert isinstance(build_reward(RewardConfig(kind="prm", model="m"), actors).scorer, ActorScorer)
    assert build_reward(RewardConfig()).__class__.__name__ == "ConfidenceReward"
    with pytest.raises(RuntimeError, match="reward actors"):
        build_reward(RewardConfig(kind="prm", model="m"))
    with pytest.raises(ValueError):
        ActorScorer([])
