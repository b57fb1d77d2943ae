"""One Config of typed sections, loaded from YAML and overridden with `section.key=value`.

Sections: policy (the LLM engine), reward, search, spex (speculation switches), task (the
dataset), run (concurrency, seeds, outputs, Ray). Unknown keys and ill-typed values are
errors that name the offending key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad config key or value; the message names it."""


@dataclass
class PolicyConfig:
    """The policy LLM and the engine that serves it."""

    backend: str = "hf"  # engines registry name: hf (transformers) | sglang (GPU) | sim (simulated GPU)
    model: str = "embedded"  # "embedded" (SmolLM2-135M-Instruct), a local path, or a hub id
    device: str = "cpu"
    dtype: str = "float32"
    max_batch_size: int = 8  # sequences decoded together
    max_new_tokens: int = 96  # per reasoning step
    temperature: float = 0.7
    top_p: float = 1.0
    num_engines: int = 1
    num_gpus: float = 0.0  # per engine actor; 0 on CPU (sglang, or device cuda: 0 = tp GPUs)
    num_cpus: float = 1.0  # per engine actor
    cache_dir: str = ""  # where the embedded model is fetched and converted; "" = default
    knee: int = 0  # concurrency the engine decodes at no extra step cost (spex-ray calibrate); 0 = auto
    # The simulated accelerator (backend: sim); see sim/settings.py.
    gpu: str = "h100"  # a6000 | a100-80g | h100 | h200
    tp: int = 1  # tensor parallel degree of one engine (sglang, sim)
    time_scale: float = 1.0  # wall seconds per modeled second; 0 = do not sleep
    efficiency: float = 0.0  # achievable fraction of peak; 0 = the GPU spec's value
    overhead_s: float = 0.004  # fixed cost per engine iteration
    prefill_chunk: int = 2048  # prefill tokens per iteration
    # token-level speculative decoding: "" | eagle | mtp (sglang: + eagle3, standalone, ngram)
    spec_decode: str = ""
    accept_len: float = 0.0  # mean accepted tokens per verify step; 0 = the method's default
    draft_cost: float = 0.1  # one draft pass as a fraction of a decode pass
    draft_steps: int = 0  # draft tokens per verify step; 0 = 3 (sim) / SGLang's default
    kv_fraction: float = 0.85  # memory left after the weights that holds KV cache
    sim_workload: str = ""  # WorkloadParams overrides: a .json/.yaml path; "" = defaults
    # SGLang (backend: sglang); see engines/sglang.py. tp, spec_decode and draft_steps above apply.
    mem_fraction_static: float = 0.0  # GPU memory for weights + KV cache; 0 = SGLang's choice
    context_length: int = 0  # 0 = the model's
    deterministic: bool = True  # honour per-request seeds (lossless SPEX); SGLang's deterministic inference
    spec_draft_model: str = ""  # draft model of eagle / eagle3 / standalone speculative decoding
    spec_topk: int = 0  # speculative_eagle_topk; 0 = SGLang's default
    spec_draft_tokens: int = 0  # speculative_num_draft_tokens; 0 = SGLang's default
    nccl_port: int = 0  # first port of the engines' NCCL port blocks; 0 = 20000
    trust_remote_code: bool = False
    sglang_args: dict[str, Any] = field(default_factory=dict)  # more ServerArgs, passed through as given

    def validate(self) -> None:
        _check(self.max_batch_size >= 1, "policy.max_batch_size", "must be >= 1")
        _check(self.max_new_tokens >= 1, "policy.max_new_tokens", "must be >= 1")
        _check(self.temperature >= 0, "policy.temperature", "must be >= 0")
        _check(0 < self.top_p <= 1, "policy.top_p", "must be in (0, 1]")
        _check(self.num_engines >= 1, "policy.num_engines", "must be >= 1")
        _check(self.num_gpus >= 0, "policy.num_gpus", "must be >= 0")
        _check(self.knee >= 0, "policy.knee", "must be >= 0 (0 = auto)")
        _check(self.tp >= 1, "policy.tp", "must be >= 1")
        _check(self.time_scale >= 0, "policy.time_scale", "must be >= 0")
        if self.backend == "sglang":
            self._validate_sglang()
        else:
            _check(
                self.spec_decode in ("", "eagle", "eagle3", "mtp"), "policy.spec_decode", "'' | eagle | mtp"
            )
        if self.backend == "sim":
            from spex_ray.hardware.specs import GPUS

            _check(self.gpu.lower() in GPUS, "policy.gpu", f"one of {', '.join(GPUS)}")
        _check(self.dtype in ("float32", "bfloat16", "float16"), "policy.dtype", "float32|bfloat16|float16")
        from spex_ray.engines import ENGINES

        _check(self.backend in ENGINES, "policy.backend", f"one of {ENGINES.names()}")

    def _validate_sglang(self) -> None:
        from spex_ray.engines.sglang_args import NEEDS_DRAFT_MODEL, SPEC_ALGORITHMS

        methods = ["", *SPEC_ALGORITHMS]
        _check(self.spec_decode in methods, "policy.spec_decode", " | ".join(repr(m) for m in methods))
        if self.spec_decode in NEEDS_DRAFT_MODEL:
            _check(bool(self.spec_draft_model), "policy.spec_draft_model", f"needed by {self.spec_decode}")
        _check(
            0 <= self.mem_fraction_static < 1, "policy.mem_fraction_static", "must be in [0, 1) (0 = auto)"
        )
        for key in ("context_length", "spec_topk", "spec_draft_tokens", "draft_steps"):
            _check(getattr(self, key) >= 0, f"policy.{key}", "must be >= 0 (0 = SGLang's default)")
        _check(self.nccl_port == 0 or 1024 <= self.nccl_port <= 65000, "policy.nccl_port", "0 or 1024..65000")
        _check(
            self.num_gpus in (0, self.tp) or (self.tp == 1 and 0 < self.num_gpus < 1),
            "policy.num_gpus",
            f"0 (= tp), tp ({self.tp}), or a fraction < 1 with tp 1 (a GPU shared with the reward)",
        )
        _check(
            _is_str_dict(self.sglang_args), "policy.sglang_args", "a mapping of ServerArgs names to values"
        )


@dataclass
class RewardConfig:
    """How a step is scored. `confidence` reads the policy's own token logprobs."""

    kind: str = "confidence"
    step_score: str = "mean_logprob"  # confidence: mean_logprob | min_logprob
    path_score: str = "min"  # a path's reward from its step rewards: min | last | mean
    noise: float = 0.1  # sim: standard deviation of the noise on the latent step quality
    # Process reward model (kind: prm), served by reward actors; see rewards/prm.py.
    model: str = ""  # the PRM: a hub id or a local path
    scorer: str = "step_tag"  # step_tag (a generative PRM on SGLang) | qwen_prm | llemma_prm (transformers)
    step_tag: str = " ки"  # step_tag: appended to every step (Math-Shepherd's tag)
    good_token: str = "+"  # step_tag: score = P(good) / (P(good) + P(bad)) after the tag
    bad_token: str = "-"  # "" = score is P(good) alone
    # step_tag: [good(, bad)]; llemma_prm: [step end]
    label_token_ids: list[int] = field(default_factory=list)
    num_engines: int = 1  # reward actors
    num_gpus: float = 1.0  # per reward actor; a fraction < 1 shares a GPU with the policy
    num_cpus: float = 1.0
    tp: int = 1  # GPUs of one reward actor (SGLang tensor parallel; transformers: device_map auto)
    mem_fraction_static: float = 0.0  # step_tag: SGLang's static memory fraction; 0 = auto
    dtype: str = "bfloat16"
    device: str = "cuda"  # transformers scorers
    max_batch_size: int = 16  # paths per forward pass (transformers) / running requests (step_tag)
    trust_remote_code: bool = False  # qwen_prm needs it (its architecture ships with the model)

    def validate(self) -> None:
        from spex_ray.rewards import REWARDS

        _check(self.kind in REWARDS, "reward.kind", f"one of {REWARDS.names()}")
        if self.kind == "prm":
            self._validate_prm()
        _check(
            self.step_score in ("mean_logprob", "min_logprob"),
            "reward.step_score",
            "mean_logprob|min_logprob",
        )
        _check(self.path_score in ("min", "last", "mean"), "reward.path_score", "min|last|mean")

    def _validate_prm(self) -> None:
        from spex_ray.rewards.prm import SCORERS

        _check(bool(self.model), "reward.model", "reward.kind prm needs the PRM model (a hub id or a path)")
        _check(self.scorer in SCORERS, "reward.scorer", f"one of {SCORERS.names()}")
        ids = self.label_token_ids
        _check(
            isinstance(ids, list) and len(ids) <= 2 and all(isinstance(i, int) and i >= 0 for i in ids),
            "reward.label_token_ids",
            "[] or [good] or [good, bad] token ids",
        )
        _check(bool(ids) or bool(self.good_token), "reward.good_token", "must not be empty")
        for key in ("num_engines", "tp", "max_batch_size"):
            _check(getattr(self, key) >= 1, f"reward.{key}", "must be >= 1")
        _check(self.num_gpus >= 0, "reward.num_gpus", "must be >= 0")
        _check(
            0 <= self.mem_fraction_static < 1, "reward.mem_fraction_static", "must be in [0, 1) (0 = auto)"
        )
        _check(self.dtype in ("float32", "bfloat16", "float16"), "reward.dtype", "float32|bfloat16|float16")


@dataclass
class SearchConfig:
    """The tree search: algorithm and its knobs."""

    algorithm: str = "rebase"  # rebase (BFS) | mcts (DFS)
    width: int = 4  # REBASE: samples per query (leaves budget); MCTS: unused
    rollouts: int = 4  # MCTS: number of rollouts
    expand_width: int = 2  # MCTS: children generated per expansion ("wid")
    softmax_temperature: float = 0.2  # REBASE: T in softmax(reward / T)
    exploration: float = 1.4  # MCTS: UCT exploration constant
    max_depth: int = 8  # steps per path
    max_path_tokens: int = 768  # generated tokens per path
    step_delimiter: str = "\n\n"
    aggregate: str = "weighted_vote"  # weighted_vote | majority | best

    def validate(self) -> None:
        from spex_ray.tree.algorithms import ALGORITHMS

        _check(self.algorithm in ALGORITHMS, "search.algorithm", f"one of {ALGORITHMS.names()}")
        for key in ("width", "rollouts", "expand_width", "max_depth", "max_path_tokens"):
            _check(getattr(self, key) >= 1, f"search.{key}", "must be >= 1")
        _check(self.softmax_temperature > 0, "search.softmax_temperature", "must be > 0")
        _check(self.exploration >= 0, "search.exploration", "must be >= 0")
        _check(bool(self.step_delimiter), "search.step_delimiter", "must not be empty")
        _check(
            self.aggregate in ("weighted_vote", "majority", "best"),
            "search.aggregate",
            "weighted_vote|majority|best",
        )


@dataclass
class SpexConfig:
    """SPEX switches, each on its own for ablation. All off gives the baseline search."""

    speculate: bool = False  # intra-query speculative path selection
    allocator: str = "off"  # cluster-wide speculative slots: utility | fifo | off (static per query)
    early_stop: bool = False  # adaptive early termination
    lookahead: int = 1  # layers (BFS) / descent depth and predicted selections (MCTS) speculated ahead
    tau: float = 1.0  # allocator softmax temperature over query utilities
    alpha: float = 1.0  # early termination margin scale
    stop_confidence: float = 0.5  # early termination: median path reward of the leading answer
    spec_slots: int = 0  # speculative slots per query when allocator=off; 0 = max_batch_size / concurrency

    def validate(self) -> None:
        _check(self.allocator in ("utility", "fifo", "off"), "spex.allocator", "utility|fifo|off")
        _check(self.lookahead >= 1, "spex.lookahead", "must be >= 1")
        _check(self.tau > 0, "spex.tau", "must be > 0")
        _check(self.alpha >= 0, "spex.alpha", "must be >= 0")
        _check(0 <= self.stop_confidence <= 1, "spex.stop_confidence", "must be in [0, 1]")
        _check(self.spec_slots >= 0, "spex.spec_slots", "must be >= 0")


@dataclass
class TaskConfig:
    """Where the problems come from and how rows are read."""

    dataset: str = ""  # gsm8k | math500 | a .jsonl/.parquet path
    problem_field: str = ""  # "" = auto (problem, question)
    answer_field: str = ""  # "" = auto (answer)
    id_field: str = ""  # "" = auto (unique_id, id) else the row index
    limit: int = 0  # first N problems; 0 = all
    offset: int = 0

    def validate(self) -> None:
        _check(self.limit >= 0, "task.limit", "must be >= 0")
        _check(self.offset >= 0, "task.offset", "must be >= 0")


@dataclass
class RunConfig:
    """Execution: concurrency, seeds, outputs, and Ray."""

    concurrency: int = 4  # queries in flight at once
    seed: int = 0
    output: str = "runs/latest"
    resume: bool = True
    ray_address: str = ""  # "" = join RAY_ADDRESS if set, else start a local Ray
    tree_actors: int = 1
    progress: str = "auto"  # auto (bar on a terminal) | bar | log | off

    def validate(self) -> None:
        _check(self.concurrency >= 1, "run.concurrency", "must be >= 1")
        _check(self.tree_actors >= 1, "run.tree_actors", "must be >= 1")
        _check(self.progress in ("auto", "bar", "log", "off"), "run.progress", "auto|bar|log|off")


@dataclass
class Config:
    """The whole configuration of a spex_ray run."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    spex: SpexConfig = field(default_factory=SpexConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> Config:
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Config:
        config = cls()
        for section_name, values in (data or {}).items():
            section = _section(config, section_name)
            if not isinstance(values, dict):
                raise ConfigError(f"{section_name}: expected a mapping of keys, got {values!r}")
            for key, value in values.items():
                _set_field(section, f"{section_name}.{key}", key, value)
        return config

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        """Load YAML (optional), apply `section.key=value` overrides, validate."""
        data = {}
        if path:
            text = Path(path).read_text()
            data = yaml.safe_load(text) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: the top level must be a mapping of sections")
        config = cls.from_dict(data)
        for item in overrides:
            config.set(item)
        return config.validate()

    def set(self, assignment: str) -> None:
        """Apply one `section.key=value` override; the value is parsed as YAML unless the key
        is a string (so `spex.allocator=off` stays the string "off")."""
        dotted, sep, raw = assignment.partition("=")
        if not sep:
            raise ConfigError(f"{assignment!r}: overrides look like section.key=value")
        section_name, dot, key = dotted.strip().partition(".")
        if not dot:
            raise ConfigError(f"{dotted!r}: overrides look like section.key=value")
        section = _section(self, section_name)
        hint = _field_hint(section, dotted.strip(), key)
        value = raw.strip() if hint is str else _parse_yaml(dotted.strip(), raw)
        _set_field(section, dotted.strip(), key, value)


def _section(config: Config, name: str) -> Any:
    names = [f.name for f in dataclasses.fields(config)]
    if name not in names:
        raise ConfigError(f"unknown config section {name!r}; sections are {', '.join(names)}")
    return getattr(config, name)


def _field_hint(section: Any, dotted: str, key: str) -> Any:
    fields = [f.name for f in dataclasses.fields(section)]
    if key not in fields:
        raise ConfigError(f"unknown config key {dotted!r}; known keys: {', '.join(fields)}")
    return typing.get_type_hints(type(section))[key]


def _parse_yaml(dotted: str, raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{dotted}: cannot parse value {raw!r}: {exc}") from exc


def _set_field(section: Any, dotted: str, key: str, value: Any) -> None:
    setattr(section, key, _coerce(dotted, value, _field_hint(section, dotted, key)))


def _coerce(dotted: str, value: Any, hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{dotted}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{dotted}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{dotted}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{dotted}: expected a string, got {value!r}")
    return value


def _is_str_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _check(ok: bool, key: str, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {rule}")
