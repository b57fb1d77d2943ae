"""One Config of typed sections, loaded from YAML and overridden with `section.key=value`.

Sections: policy (the LLM engine; each backend's own settings nest as policy.<backend>),
reward, search, spex (speculation switches), task (the dataset), run (concurrency, seeds,
outputs, Ray). Unknown keys and ill-typed values are errors that name the offending key.
Names (backends, rewards, scorers, algorithms) are checked against registries.py, so this
module imports no engine, reward or algorithm module.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import yaml

from spex_ray.registries import ALGORITHMS, BACKENDS, REWARDS, SCORERS

S = TypeVar("S")


class ConfigError(ValueError):
    """A bad config key or value; the message names it."""


class BackendSettings(Protocol):
    """A backend's own settings: the `policy.<backend>` section, a dataclass registered in
    registries.BACKENDS. Its module imports neither torch nor sglang."""

    engine: ClassVar[str]  # "module:Class" of the backend's Engine, built as Class(policy, name=...)

    def validate(self, policy: PolicyConfig) -> None:
        """Raise ConfigError naming `policy.<backend>.<key>` for a bad value."""

    def needs_gpu(self) -> bool:
        """Whether the engine runs on GPUs (its actor then gets policy.tp GPUs when num_gpus is 0)."""


_MOVED_TO_BACKENDS = {  # keys of the old flat policy section, by the backend section they moved to
    "hf": "device",
    "sim": "gpu time_scale efficiency overhead_s prefill_chunk accept_len draft_cost",
    "sglang": "context_length deterministic spec_draft_model spec_topk spec_draft_tokens"
    " nccl_port trust_remote_code",
}
MOVED_POLICY_KEYS = {  # old flat policy key -> where it lives now
    **{
        key: f"policy.{backend}.{key}" for backend, keys in _MOVED_TO_BACKENDS.items() for key in keys.split()
    },
    "sim_workload": "policy.sim.workload",
    "kv_fraction": "policy.mem_fraction_static (now the share of all GPU memory for weights + KV cache)",
    "sglang_args": "policy.sglang.server_args",
    "spec_decode": "policy.sim.spec_decode or policy.sglang.spec_decode",
    "draft_steps": "policy.sim.draft_steps or policy.sglang.draft_steps",
}


@dataclass
class PolicyConfig:
    """The policy LLM and what every engine backend shares; each backend's own settings are
    the sub-section named after it (policy.hf, policy.sglang, policy.sim)."""

    backend: str = "hf"  # registries.BACKENDS name: hf (transformers) | sglang (GPU) | sim (simulated GPU)
    model: str = "embedded"  # "embedded" (SmolLM2-135M-Instruct), a local path, or a hub id
    dtype: str = "float32"  # hf, sglang
    max_batch_size: int = 8  # sequences decoded together
    max_new_tokens: int = 96  # per reasoning step
    temperature: float = 0.7
    top_p: float = 1.0
    num_engines: int = 1  # a fixed pool of this many engines (when max_engines is 0)
    # An elastic pool: between min_engines and max_engines engines, grown when the queries
    # need more (asking the autoscaler for nodes ahead) and shrunk when one sits idle for
    # idle_timeout_s. max_engines 0 = the fixed pool; -1 = one engine per GPU the cluster has.
    min_engines: int = 0
    max_engines: int = 0
    idle_timeout_s: float = 60.0
    queries_per_engine: int = (
        0  # queries one engine takes before the pool grows; 0 = max_batch_size / search.width
    )
    restarts: int = 3  # times Ray restarts a crashed engine actor (its model reloaded)
    freeze_timeout_s: float = 300.0  # an engine with work that finishes nothing this long is restarted
    start_timeout_s: float = (
        900.0  # a fixed pool's engine not started by then is an error naming what it needs
    )
    num_gpus: float = 0.0  # per engine actor; 0 = tp GPUs where the backend needs GPUs, else none
    num_cpus: float = 1.0  # per engine actor
    cache_dir: str = ""  # where the embedded model is fetched and converted; "" = default
    knee: int = 0  # fixed concurrency for MAIN + SPEC (e.g. from spex-ray calibrate); 0 = from max_slowdown
    # speculative budget: SPEC sequences an engine runs beside its MAIN ones may slow their step by at most this
    # share (engines/capacity.py, from the measured or modeled step time); policy.knee overrides it
    max_slowdown: float = 0.25
    tp: int = 1  # GPUs of one engine: tensor parallel degree (sglang, sim; hf ignores it)
    # GPU memory for weights + KV cache (sglang, sim, the knee's KV cap); 0 = hardware.roofline's
    # 0.9 (sglang: SGLang's own choice)
    mem_fraction_static: float = 0.0
    # The backends' own sections by backend name, created with their defaults on first use.
    backends: dict[str, BackendSettings] = field(default_factory=dict, metadata={"nested": True})

    def settings(self, backend: str = "") -> BackendSettings:
        """The settings section of `backend` (default: the policy's own backend)."""
        name = backend or self.backend
        if name not in self.backends:
            self.backends[name] = BACKENDS.get(name)()
        return self.backends[name]

    def typed_settings(self, backend: str, kind: type[S]) -> S:
        """The settings section of `backend`, which must be a `kind`."""
        settings = self.settings(backend)
        if not isinstance(settings, kind):
            raise TypeError(f"policy.{backend} holds {type(settings).__name__}, not {kind.__name__}")
        return settings

    def with_settings(self, backend: str, settings: BackendSettings) -> PolicyConfig:
        """A copy of this policy that runs `backend` with `settings` (the original is untouched)."""
        return dataclasses.replace(self, backend=backend, backends={**self.backends, backend: settings})

    def to_dict(self) -> dict[str, Any]:
        """The section as YAML writes it: the shared keys, then one mapping per backend section."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not _nested(f)}
        return {**data, **{name: dataclasses.asdict(s) for name, s in self.backends.items()}}

    def validate(self) -> None:
        check_sizes(self, "policy", POLICY_SIZES)
        check(self.temperature >= 0, "policy.temperature", "must be >= 0")
        check(0 < self.top_p <= 1, "policy.top_p", "must be in (0, 1]")
        check(self.min_engines >= 0, "policy.min_engines", "must be >= 0")
        check(
            self.max_engines >= -1,
            "policy.max_engines",
            "must be >= 1, or 0 (fixed pool), or -1 (one per GPU)",
        )
        check(
            self.max_engines <= 0 or self.max_engines >= self.min_engines,
            "policy.max_engines",
            "must be >= policy.min_engines",
        )
        check(self.idle_timeout_s > 0, "policy.idle_timeout_s", "must be > 0")
        check(self.queries_per_engine >= 0, "policy.queries_per_engine", "must be >= 0 (0 = auto)")
        check(self.restarts >= 0, "policy.restarts", "must be >= 0")
        check(self.freeze_timeout_s > 0, "policy.freeze_timeout_s", "must be > 0")
        check(self.start_timeout_s > 0, "policy.start_timeout_s", "must be > 0")
        check(self.num_gpus >= 0, "policy.num_gpus", "must be >= 0")
        check(self.knee >= 0, "policy.knee", "must be >= 0 (0 = auto)")
        check(0 <= self.max_slowdown <= 10, "policy.max_slowdown", "must be in [0, 10] (0.25 = 25% slower)")
        check(0 <= self.mem_fraction_static < 1, "policy.mem_fraction_static", "must be in [0, 1) (0 = auto)")
        check(self.dtype in ("float32", "bfloat16", "float16"), "policy.dtype", "float32|bfloat16|float16")
        check(self.backend in BACKENDS, "policy.backend", f"one of {BACKENDS.names()}")
        self.settings().validate(self)


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
        check(self.kind in REWARDS, "reward.kind", f"one of {REWARDS.names()}")
        if self.kind == "prm":
            self._validate_prm()
        check(
            self.step_score in ("mean_logprob", "min_logprob"),
            "reward.step_score",
            "mean_logprob|min_logprob",
        )
        check(self.path_score in ("min", "last", "mean"), "reward.path_score", "min|last|mean")

    def _validate_prm(self) -> None:
        check(bool(self.model), "reward.model", "reward.kind prm needs the PRM model (a hub id or a path)")
        check(self.scorer in SCORERS, "reward.scorer", f"one of {SCORERS.names()}")
        ids = self.label_token_ids
        check(
            isinstance(ids, list) and len(ids) <= 2 and all(isinstance(i, int) and i >= 0 for i in ids),
            "reward.label_token_ids",
            "[] or [good] or [good, bad] token ids",
        )
        check(bool(ids) or bool(self.good_token), "reward.good_token", "must not be empty")
        check_sizes(self, "reward", REWARD_SIZES)
        check(self.num_gpus >= 0, "reward.num_gpus", "must be >= 0")
        check(0 <= self.mem_fraction_static < 1, "reward.mem_fraction_static", "must be in [0, 1) (0 = auto)")
        check(self.dtype in ("float32", "bfloat16", "float16"), "reward.dtype", "float32|bfloat16|float16")


@dataclass
class SearchConfig:
    """The tree search: algorithm and its knobs (tree/algorithms/ says what each one reads)."""

    algorithm: str = "rebase"  # rebase | ets (BFS) | beam | best_of_n | dvts (step-level) | mcts (DFS)
    width: int = 4  # rebase, ets: paths to finish; best_of_n: N samples; dvts: N (N / expand_width subtrees)
    rollouts: int = 4  # mcts: number of rollouts
    expand_width: int = 2  # children per expanded node: mcts, beam (per kept solution), dvts (M, per subtree)
    beam_width: int = 4  # beam: partial solutions kept per step (beam_width * expand_width per step)
    softmax_temperature: float = 0.2  # rebase, ets: T in softmax(reward / T)
    exploration: float = 1.4  # mcts: UCT exploration constant
    ets_cost_weight: float = 1.0  # ets: lambda_c, the KV cost of the nodes a layer retains
    ets_coverage_weight: float = 1.5  # ets: lambda_s, the bonus for covering the layer's step clusters
    ets_cluster_distance: float = 0.05  # ets: cosine distance that merges two steps into one cluster
    max_depth: int = 8  # steps per path
    max_path_tokens: int = 768  # generated tokens per path
    step_delimiter: str = "\n\n"
    aggregate: str = "weighted_vote"  # weighted_vote | majority | best

    def validate(self) -> None:
        check(self.algorithm in ALGORITHMS, "search.algorithm", f"one of {ALGORITHMS.names()}")
        check_sizes(self, "search", SEARCH_SIZES)
        requests = self.max_requests()
        check(
            requests <= MAX_QUERY_REQUESTS,
            "search",
            f"up to {requests:,} engine requests per query (max(width, rollouts x expand_width, "
            f"beam_width x expand_width) x max_depth), more than {MAX_QUERY_REQUESTS:,}: such a search "
            "would not end in practice; lower search.width, search.rollouts, search.beam_width or "
            "search.max_depth",
        )
        if self.algorithm == "dvts":
            check(
                self.width % self.expand_width == 0,
                "search.width",
                f"dvts needs a multiple of search.expand_width ({self.expand_width}): "
                "width / expand_width subtrees",
            )
        check(self.softmax_temperature > 0, "search.softmax_temperature", "must be > 0")
        check(self.exploration >= 0, "search.exploration", "must be >= 0")
        check(self.ets_cost_weight >= 0, "search.ets_cost_weight", "must be >= 0")
        check(self.ets_coverage_weight >= 0, "search.ets_coverage_weight", "must be >= 0")
        check(0 <= self.ets_cluster_distance <= 1, "search.ets_cluster_distance", "must be in [0, 1]")
        check(bool(self.step_delimiter), "search.step_delimiter", "must not be empty")
        check(
            self.aggregate in ("weighted_vote", "majority", "best"),
            "search.aggregate",
            "weighted_vote|majority|best",
        )

    def max_requests(self) -> int:
        """An upper bound on one query's engine requests: what every algorithm stays within."""
        per_step = max(self.width, self.rollouts * self.expand_width, self.beam_width * self.expand_width)
        return per_step * self.max_depth


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
    spec_slots: int = (
        0  # speculative slots per query when allocator=off; 0 = max_batch_size / queries per engine
    )

    def validate(self) -> None:
        check(self.allocator in ("utility", "fifo", "off"), "spex.allocator", "utility|fifo|off")
        check_sizes(self, "spex", SPEX_SIZES)
        check(self.tau > 0, "spex.tau", "must be > 0")
        check(self.alpha >= 0, "spex.alpha", "must be >= 0")
        check(0 <= self.stop_confidence <= 1, "spex.stop_confidence", "must be in [0, 1]")


@dataclass
class TaskConfig:
    """Where the problems come from and how rows are read."""

    dataset: str = ""  # gsm8k | math500 | aime24 | aime25 | sim | a .jsonl/.parquet path
    problem_field: str = ""  # "" = auto (problem, question)
    answer_field: str = ""  # "" = auto (answer)
    id_field: str = ""  # "" = auto (unique_id, id) else the row index
    limit: int | None = None  # first N problems (>= 1); None (unset, null) = all
    offset: int = 0

    def validate(self) -> None:
        limit_ok = self.limit is None or (isinstance(self.limit, int) and not isinstance(self.limit, bool))
        check(limit_ok, "task.limit", f"expected an integer or null (all problems), got {self.limit!r}")
        check(
            self.limit is None or self.limit >= 1,
            "task.limit",
            "must be >= 1 (leave it unset or null for all)",
        )
        check(self.offset >= 0, "task.offset", "must be >= 0")


@dataclass
class RunConfig:
    """Execution: concurrency, seeds, outputs, and Ray."""

    concurrency: int = 4  # queries in flight at once
    seed: int = 0
    output: str = ""  # a directory or a URI (s3://, gs://); "" = runs/<hash of problems + search>
    resume: bool = True
    ray_address: str = ""  # "" = join RAY_ADDRESS if set, else start a local Ray
    tree_actors: int = 1
    progress: str = "auto"  # auto (bar on a terminal) | bar | log | off
    # Seconds one query may search (wall on Ray; modeled in sim.simulate()); at the deadline it
    # ends with its best answer so far and status "timeout". 0 = no deadline.
    query_timeout_s: float = 0.0

    def validate(self) -> None:
        check_sizes(self, "run", RUN_SIZES)
        check(self.progress in ("auto", "bar", "log", "off"), "run.progress", "auto|bar|log|off")
        check(
            0 <= self.query_timeout_s < math.inf,
            "run.query_timeout_s",
            f"must be a number of seconds >= 0 (0 = no deadline), got {self.query_timeout_s}",
        )


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
        data = dataclasses.asdict(self)
        data["policy"] = self.policy.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Config:
        config = cls()
        for section_name, values in (data or {}).items():
            for dotted, value in _flat_items(section_name, values):
                section, key = config._locate(dotted)
                setattr(section, key, _coerce(dotted, value, _field_hint(section, dotted, key)))
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
        """Apply one `section.key=value` (or `policy.<backend>.key=value`) override; the value
        is parsed as YAML unless the key is a string (so `spex.allocator=off` stays "off")."""
        dotted, sep, raw = assignment.partition("=")
        dotted = dotted.strip()
        if not sep or "." not in dotted:
            raise ConfigError(f"{assignment!r}: overrides look like section.key=value")
        section, key = self._locate(dotted)
        hint = _field_hint(section, dotted, key)
        value = raw.strip() if hint is str else _parse_yaml(dotted, raw)
        setattr(section, key, _coerce(dotted, value, hint))

    def _locate(self, dotted: str) -> tuple[Any, str]:
        """The section object and key that `dotted` ("search.width", "policy.sim.gpu") names."""
        section_name, _, rest = dotted.partition(".")
        section = _section(self, section_name)
        backend, dot, key = rest.partition(".")
        if section_name == "policy" and dot:
            check(backend in BACKENDS, dotted, f"no engine backend {backend!r}; backends: {BACKENDS.names()}")
            return self.policy.settings(backend), key
        if section_name == "policy" and rest in MOVED_POLICY_KEYS:
            raise ConfigError(f"{dotted} moved to {MOVED_POLICY_KEYS[rest]}")
        return section, rest


def _flat_items(section_name: str, values: Any) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of a YAML section; a policy.<backend> mapping is one level deeper."""
    if not isinstance(values, dict):
        raise ConfigError(f"{section_name}: expected a mapping of keys, got {values!r}")
    for key, value in values.items():
        if section_name == "policy" and key in BACKENDS:
            yield from _flat_items(f"policy.{key}", value)
        else:
            yield f"{section_name}.{key}", value


def _section(config: Config, name: str) -> Any:
    names = [f.name for f in dataclasses.fields(config)]
    if name not in names:
        raise ConfigError(f"unknown config section {name!r}; sections are {', '.join(names)}")
    return getattr(config, name)


def _nested(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("nested"))


def _field_hint(section: Any, dotted: str, key: str) -> Any:
    fields = [f.name for f in dataclasses.fields(section) if not _nested(f)]
    if key not in fields:
        raise ConfigError(f"unknown config key {dotted!r}; known keys: {', '.join(fields)}")
    return typing.get_type_hints(type(section))[key]


def _parse_yaml(dotted: str, raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{dotted}: cannot parse value {raw!r}: {exc}") from exc


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


def is_str_dict(value: Any) -> bool:
    """Whether `value` is a mapping with string keys (a pass-through of named options)."""
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


# The bounds of the size knobs, (lowest, highest) by key: a value beyond them is a config error
# naming the key, not gigabytes allocated (or actors started) before anything fails.
POLICY_SIZES = {
    "max_batch_size": (1, 65_536),
    "max_new_tokens": (1, 1 << 20),
    "num_engines": (1, 4_096),
    "max_engines": (-1, 4_096),
    "tp": (1, 1_024),
}
REWARD_SIZES = {"num_engines": (1, 4_096), "tp": (1, 1_024), "max_batch_size": (1, 65_536)}
SEARCH_SIZES = {
    "width": (1, 4_096),
    "rollouts": (1, 65_536),
    "expand_width": (1, 1_024),
    "beam_width": (1, 4_096),
    "max_depth": (1, 1_024),
    "max_path_tokens": (1, 1 << 20),
}
SPEX_SIZES = {"lookahead": (1, 64), "spec_slots": (0, 65_536)}
RUN_SIZES = {"concurrency": (1, 1_000_000), "tree_actors": (1, 1_024)}
MAX_QUERY_REQUESTS = 1_000_000  # engine requests one query's search may make at most


def check_sizes(section: Any, name: str, bounds: dict[str, tuple[int, int]]) -> None:
    """Raise ConfigError("name.key: must be in [low, high] (got v)") for a size out of bounds."""
    for key, (low, high) in bounds.items():
        value = getattr(section, key)
        check(low <= value <= high, f"{name}.{key}", f"must be in [{low:,}, {high:,}] (got {value:,})")


def check(ok: bool, key: str, rule: str) -> None:
    """Raise ConfigError("key: rule") unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: {rule}")
