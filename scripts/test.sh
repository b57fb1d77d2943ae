#!/usr/bin/env bash
# Set up .venv, lint, then run the whole test suite (CPU; `gpu` tests skip without CUDA).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
.venv/bin/ruff check spex_ray tests benchmarks
exec .venv/bin/pytest -q --timeout=900 "$@"
