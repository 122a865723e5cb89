#!/usr/bin/env bash
# The CPU study (eval/results/arith_study_cpu/): the train/test sweep (7 methods x 3 seeds), then test-time training
# (EMPO x 3 seeds), each trained, evaluated and compared with `empo compare --sweep`. Resumable: run it again after a
# kill (finished runs and evals are kept, a killed run resumes from its last checkpoint).
# Reports: runs/experiments/arith-study-cpu/compare/report.md and runs/experiments/arith-ttt-cpu/compare/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false
EMPO="${EMPO:-.venv/bin/empo}"
for spec in arith_study_cpu arith_ttt_cpu; do
  /usr/bin/time -v "$EMPO" compare --sweep "recipes/SmolLM2-135M-Instruct/sweeps/$spec.yaml" --threads 2 "$@" \
    2> >(tee "runs/$spec.time.log" >&2)
done
