"""SimSettings: the simulated engine's own settings (policy.sim): the GPU, timing knobs,
token-level speculative decoding and the synthetic workload (see engine.py and timing.py).
The model, tensor parallel degree and batch size are the policy's."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from spex_ray.config import ConfigError, PolicyConfig, check
from spex_ray.hardware.roofline import MEM_FRACTION
from spex_ray.hardware.specs import GPUS, gpu_spec, model_spec
from spex_ray.sim.timing import MEM_EFFICIENCY, OVERHEAD_S, TimingModel
from spex_ray.sim.workload import WorkloadParams

SPEC_DECODE_DEFAULTS = {"eagle": 3.0, "mtp": 2.5}  # mean accepted tokens per verify step
DEFAULT_DRAFT_STEPS = 3
_SPEC_METHODS = {"": "", "eagle": "eagle", "eagle3": "eagle", "mtp": "mtp"}  # spec_decode -> modeled as


def resolve_model_name(name: str) -> str:
    """A MODELS key for `name`: "embedded" -> llama-3-8b; hub ids by their last part."""
    key = name.strip().lower()
    if key in ("", "embedded"):
        return "llama-3-8b"
    key = key.rstrip("/").split("/")[-1].replace("_", "-")
    bare = key.removeprefix("meta-")
    for candidate in (key, bare, key.removesuffix("-instruct"), bare.removesuffix("-instruct")):
        with contextlib.suppress(KeyError):
            return model_spec(candidate).name
    model_spec(key)  # raises the KeyError that lists the known models
    return key


@dataclass
class SimSettings:
    """policy.sim: the simulated accelerator and how the engine is modeled.

    accept_len 0 and draft_steps 0 mean the spec_decode method's defaults (eagle 3.0 /
    mtp 2.5 accepted tokens; 3 draft steps). efficiency 0 means the GPU spec's (0.7).
    mem_efficiency and overhead_s are calibrated to published batch-1 decode latencies
    (timing.py). workload: a .json/.yaml path or an inline YAML mapping
    (`policy.sim.workload={step_tokens_sigma: 0.5}`).
    """

    engine: ClassVar[str] = "spex_ray.sim.engine:SimEngine"

    gpu: str = "h100"  # a6000 | a100-80g | h100 | h200
    time_scale: float = 1.0  # wall seconds per modeled second; 0 = do not sleep
    efficiency: float = 0.0  # achievable fraction of peak FLOP/s; 0 = the GPU spec's value
    mem_efficiency: float = MEM_EFFICIENCY  # achievable fraction of the memory bandwidth
    overhead_s: float = OVERHEAD_S  # fixed cost per engine iteration
    prefill_chunk: int = 2048  # prefill tokens per iteration
    spec_decode: str = ""  # token-level speculative decoding: "" | eagle | eagle3 (as eagle) | mtp
    accept_len: float = 0.0  # mean accepted tokens per verify step; 0 = the method's default
    draft_cost: float = 0.1  # one draft pass as a fraction of a decode pass
    draft_steps: int = 0  # draft tokens per verify step; 0 = 3
    cache_block: int = 16  # prefix cache block, in tokens
    workload: str = ""  # WorkloadParams overrides: a .json/.yaml path or inline {key: value}; "" = defaults

    @classmethod
    def of(cls, policy: PolicyConfig) -> SimSettings:
        """The policy's sim section."""
        return policy.typed_settings("sim", cls)

    def validate(self, policy: PolicyConfig) -> None:
        check(self.spec_decode in _SPEC_METHODS, "policy.sim.spec_decode", "'' | eagle | eagle3 | mtp")
        check(self.gpu.lower() in GPUS, "policy.sim.gpu", f"one of {', '.join(GPUS)}")
        for key in ("prefill_chunk", "cache_block"):
            check(getattr(self, key) >= 1, f"policy.sim.{key}", "must be >= 1")
        for key in ("time_scale", "overhead_s", "draft_cost"):
            check(getattr(self, key) >= 0, f"policy.sim.{key}", "must be >= 0")
        check(0 <= self.efficiency <= 1, "policy.sim.efficiency", "must be in [0, 1] (0 = the GPU spec's)")
        check(0 < self.mem_efficiency <= 1, "policy.sim.mem_efficiency", "must be in (0, 1]")
        if self.workload.lstrip().startswith("{"):
            try:
                load_workload(self.workload)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"policy.sim.workload: {exc}") from exc
        check(self.draft_steps >= 0, "policy.sim.draft_steps", "must be >= 0 (0 = 3)")
        check(
            1 <= self.mean_accepted() <= self.draft_passes() + 1,
            "policy.sim.accept_len",
            "need 1 <= accept_len <= draft_steps + 1",
        )

    def needs_gpu(self) -> bool:
        return False

    def decode_method(self) -> str:
        """The speculative decoding method modeled: "" (none) | eagle | mtp."""
        return _SPEC_METHODS[self.spec_decode]

    def mean_accepted(self) -> float:
        """Tokens a decoding sequence gains per iteration (1 without speculative decoding)."""
        method = self.decode_method()
        return (self.accept_len or SPEC_DECODE_DEFAULTS[method]) if method else 1.0

    def draft_passes(self) -> int:
        """Draft tokens per verify step (0 without speculative decoding)."""
        return (self.draft_steps or DEFAULT_DRAFT_STEPS) if self.decode_method() else 0

    def timing(self, policy: PolicyConfig) -> TimingModel:
        """The timing model of `policy.tp` of these GPUs serving `policy.model`."""
        return TimingModel(
            gpu_spec(self.gpu),
            model_spec(resolve_model_name(policy.model)),
            tp=policy.tp,
            efficiency=self.efficiency,
            mem_efficiency=self.mem_efficiency,
            overhead_s=self.overhead_s,
            mem_fraction=policy.mem_fraction_static or MEM_FRACTION,
            draft_steps=self.draft_passes(),
            draft_cost=self.draft_cost if self.decode_method() else 0.0,
        )


def load_workload(source: WorkloadParams | Mapping[str, Any] | str | Path | None) -> WorkloadParams:
    """WorkloadParams from params, a mapping, an inline YAML mapping ("{step_tokens_sigma: 0.5}")
    or a .json/.yaml file path (None or "" = defaults)."""
    if isinstance(source, WorkloadParams):
        return source
    if not source:
        return WorkloadParams()
    if isinstance(source, Mapping):
        return WorkloadParams.from_dict(source)
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return WorkloadParams.from_dict(_inline_mapping(source))
    text = Path(source).read_text()
    if str(source).endswith(".json"):
        return WorkloadParams.from_dict(json.loads(text))
    import yaml

    return WorkloadParams.from_dict(yaml.safe_load(text))


def _inline_mapping(text: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse the inline workload {text!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"the inline workload {text!r} is not a mapping")
    return data
