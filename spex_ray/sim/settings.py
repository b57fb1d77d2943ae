"""The simulated engine's settings: GPU, model, timing knobs, token-level speculative
decoding and the synthetic workload (see engine.py and timing.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spex_ray.hardware.specs import GPUSpec, ModelSpec, gpu_spec, model_spec
from spex_ray.sim.timing import TimingModel
from spex_ray.sim.workload import WorkloadParams

SPEC_DECODE_DEFAULTS = {"eagle": 3.0, "mtp": 2.5}  # mean accepted tokens per verify step
_SPEC_ALIASES = {"": "", "none": "", "off": "", "eagle": "eagle", "eagle3": "eagle", "mtp": "mtp"}


def resolve_model_name(name: str) -> str:
    """A MODELS key for `name`: "embedded" -> llama-3-8b; hub ids by their last part."""
    key = name.strip().lower()
    if key in ("", "embedded"):
        return "llama-3-8b"
    key = key.rstrip("/").split("/")[-1].replace("_", "-")
    for candidate in (key, key.removeprefix("meta-"), key.removesuffix("-instruct")):
        with contextlib.suppress(KeyError):
            return model_spec(candidate).name
    model_spec(key)  # raises the KeyError that lists the known models
    return key


@dataclass
class SimSettings:
    """The simulated engine's settings (see the engine and timing modules).

    accept_len 0 and draft_steps 0 mean the spec_decode method's defaults (eagle 3.0 /
    mtp 2.5 accepted tokens; 3 draft steps). efficiency 0 means the GPU spec's (0.7).
    """

    gpu: str = "h100"
    model: str = "llama-3-8b"
    tp: int = 1
    time_scale: float = 1.0
    efficiency: float = 0.0
    overhead_s: float = 0.004
    max_batch_size: int = 256
    prefill_chunk: int = 2048
    spec_decode: str = ""
    accept_len: float = 0.0
    draft_cost: float = 0.1
    draft_steps: int = 0
    kv_fraction: float = 0.85
    cache_block: int = 16
    workload: WorkloadParams = field(default_factory=WorkloadParams)

    def __post_init__(self) -> None:
        method = str(self.spec_decode or "").strip().lower()
        if method not in _SPEC_ALIASES:
            raise ValueError(f"spec_decode must be one of '', eagle, mtp; got {self.spec_decode!r}")
        self.spec_decode = _SPEC_ALIASES[method]
        if self.spec_decode:
            self.accept_len = self.accept_len or SPEC_DECODE_DEFAULTS[self.spec_decode]
            self.draft_steps = self.draft_steps or 3
        else:
            self.accept_len, self.draft_steps = 1.0, 0
        self.model = resolve_model_name(self.model)
        gpu_spec(self.gpu)  # fail early on an unknown GPU
        if self.tp < 1 or self.max_batch_size < 1 or self.prefill_chunk < 1 or self.cache_block < 1:
            raise ValueError("tp, max_batch_size, prefill_chunk and cache_block must be >= 1")
        if self.time_scale < 0 or self.overhead_s < 0 or self.draft_cost < 0:
            raise ValueError("time_scale, overhead_s and draft_cost must be >= 0")
        if not 0 <= self.efficiency <= 1:
            raise ValueError("efficiency must be in [0, 1] (0 = the GPU spec's)")
        if not 1 <= self.accept_len <= self.draft_steps + 1 or not 0 < self.kv_fraction <= 1:
            raise ValueError("need 1 <= accept_len <= draft_steps + 1 and kv_fraction in (0, 1]")

    @classmethod
    def from_policy(cls, policy: Any, **overrides: Any) -> SimSettings:
        """Settings from a PolicyConfig; fields it lacks keep their defaults.

        Read: gpu, model ("embedded" -> llama-3-8b), tp (else int(num_gpus), at least 1),
        time_scale, efficiency, overhead_s, max_batch_size, prefill_chunk, spec_decode,
        accept_len, draft_cost, draft_steps, kv_fraction, and sim_workload (a mapping of
        WorkloadParams fields, or the path of a JSON/YAML file of them; "" = defaults).
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in ("tp", "workload") and getattr(policy, f.name, None) is not None:
                values[f.name] = getattr(policy, f.name)
        tp = getattr(policy, "tp", None)
        values["tp"] = int(tp) if tp else max(1, int(getattr(policy, "num_gpus", 0) or 0))
        values["workload"] = load_workload(getattr(policy, "sim_workload", None))
        values.update(overrides)
        return cls(**values)

    def gpu_spec(self) -> GPUSpec:
        return gpu_spec(self.gpu)

    def model_spec(self) -> ModelSpec:
        return model_spec(self.model)

    def timing(self) -> TimingModel:
        return TimingModel(
            self.gpu_spec(),
            self.model_spec(),
            tp=self.tp,
            efficiency=self.efficiency,
            overhead_s=self.overhead_s,
            kv_fraction=self.kv_fraction,
            draft_steps=self.draft_steps,
            draft_cost=self.draft_cost if self.spec_decode else 0.0,
        )


def load_workload(source: WorkloadParams | Mapping[str, Any] | str | Path | None) -> WorkloadParams:
    """WorkloadParams from params, a mapping, or a .json/.yaml file path (None or "" = defaults)."""
    if isinstance(source, WorkloadParams):
        return source
    if not source:
        return WorkloadParams()
    if isinstance(source, Mapping):
        return WorkloadParams.from_dict(source)
    text = Path(source).read_text()
    if str(source).endswith(".json"):
        return WorkloadParams.from_dict(json.loads(text))
    import yaml

    return WorkloadParams.from_dict(yaml.safe_load(text))
