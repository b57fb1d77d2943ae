"""Which engines/specs.py entries describe the hardware and model an engine runs on."""

from __future__ import annotations

import contextlib

_GPU_NAMES = (("h200", "h200"), ("h100", "h100"), ("a100", "a100-80g"), ("a6000", "a6000"))


def gpu_key(device_name: str | None) -> str | None:
    """The engines/specs.py GPU for a CUDA device name ("NVIDIA H100 80GB HBM3" -> "h100")."""
    name = (device_name or "").lower()
    if "a100" in name and "40gb" in name:
        return None  # only the 80 GB A100 has a spec
    return next((key for token, key in _GPU_NAMES if token in name), None)


def model_key(model: str) -> str | None:
    """The engines/specs.py model of a hub id or path, when there is one (else None)."""
    from spex_ray.hardware.specs import MODELS

    name = model.rstrip("/").split("/")[-1].lower().replace("_", "-")
    for candidate in (name, name.removeprefix("meta-"), name.removesuffix("-instruct")):
        if candidate in MODELS:
            return candidate
    return None


def cuda_device_name() -> str | None:
    """The name of CUDA device 0 as torch reports it; None without CUDA (or torch)."""
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return None
