"""SGLangSettings: the SGLang engine's own settings (policy.sglang). No sglang import here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from spex_ray.config import PolicyConfig, check, is_str_dict

SPEC_ALGORITHMS = {  # spec_decode -> ServerArgs.speculative_algorithm
    "eagle": "EAGLE",
    "eagle3": "EAGLE3",
    "mtp": "NEXTN",  # multi-token prediction heads of the model itself (DeepSeek-V3, Qwen3-Next, ...)
    "nextn": "NEXTN",
    "standalone": "STANDALONE",  # a small draft model of the same tokenizer
    "ngram": "NGRAM",  # no draft model: n-gram lookup in the context
}
NEEDS_DRAFT_MODEL = ("eagle", "eagle3", "standalone")


@dataclass
class SGLangSettings:
    """policy.sglang: ServerArgs of the SGLang engine (see engines/sglang.py, sglang_args.py).

    Zero values leave the option to SGLang's default.
    """

    engine: ClassVar[str] = "spex_ray.engines.sglang:SGLangEngine"

    context_length: int = 0  # 0 = the model's
    deterministic: bool = True  # honour per-request seeds (lossless SPEX); SGLang's deterministic inference
    # token-level speculative decoding: "" | eagle | eagle3 | mtp | nextn | standalone | ngram
    spec_decode: str = ""
    spec_draft_model: str = ""  # draft model of eagle / eagle3 / standalone speculative decoding
    draft_steps: int = 0  # speculative_num_steps; 0 = SGLang's default
    spec_topk: int = 0  # speculative_eagle_topk; 0 = SGLang's default
    spec_draft_tokens: int = 0  # speculative_num_draft_tokens; 0 = SGLang's default
    nccl_port: int = 0  # first port of the engines' NCCL port blocks; 0 = 20000
    trust_remote_code: bool = False
    server_args: dict[str, Any] = field(default_factory=dict)  # more ServerArgs, passed through as given

    @classmethod
    def of(cls, policy: PolicyConfig) -> SGLangSettings:
        """The policy's sglang section."""
        return policy.typed_settings("sglang", cls)

    def validate(self, policy: PolicyConfig) -> None:
        methods = ["", *SPEC_ALGORITHMS]
        check(self.spec_decode in methods, "policy.sglang.spec_decode", " | ".join(repr(m) for m in methods))
        if self.spec_decode in NEEDS_DRAFT_MODEL:
            check(
                bool(self.spec_draft_model), "policy.sglang.spec_draft_model", f"needed by {self.spec_decode}"
            )
        for key in ("context_length", "spec_topk", "spec_draft_tokens", "draft_steps"):
            check(getattr(self, key) >= 0, f"policy.sglang.{key}", "must be >= 0 (0 = SGLang's default)")
        check(
            self.nccl_port == 0 or 1024 <= self.nccl_port <= 65000,
            "policy.sglang.nccl_port",
            "0 or 1024..65000",
        )
        check(
            policy.num_gpus in (0, policy.tp) or (policy.tp == 1 and 0 < policy.num_gpus < 1),
            "policy.num_gpus",
            f"0 (= tp), tp ({policy.tp}), or a fraction < 1 with tp 1 (a GPU shared with the reward)",
        )
        check(
            is_str_dict(self.server_args),
            "policy.sglang.server_args",
            "a mapping of ServerArgs names to values",
        )

    def needs_gpu(self) -> bool:
        return True
