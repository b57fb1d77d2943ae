"""HFSettings: the transformers engine's own settings (policy.hf). No torch import here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spex_ray.config import PolicyConfig


@dataclass
class HFSettings:
    """policy.hf: where the transformers continuous-batching engine runs (see engines/hf.py)."""

    engine: ClassVar[str] = "spex_ray.engines.hf:HFEngine"

    device: str = "cpu"  # a torch device: cpu | cuda | cuda:<i>

    @classmethod
    def of(cls, policy: PolicyConfig) -> HFSettings:
        """The policy's hf section."""
        return policy.typed_settings("hf", cls)

    def validate(self, policy: PolicyConfig) -> None:
        """Nothing to check: torch rejects an unknown device when the engine starts."""

    def needs_gpu(self) -> bool:
        return self.device.startswith("cuda")
