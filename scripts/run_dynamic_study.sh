#!/usr/bin/env bash
# The dynamic-sampling and label-free stopping study (eval/results/arith_dynamic_cpu/): 6 methods x 3 seeds trained,
# evaluated and compared with `empo compare --sweep`, then every saved checkpoint evaluated and the stopping rule's
# choice judged (scripts/study_stopping.py). Resumable: run it again after a kill (finished runs, evals and checkpoint
# evals are kept; a killed run resumes from its last checkpoint).
# Reports: runs/experiments/arith-dynamic-cpu/compare/report.md and runs/experiments/arith-dynamic-cpu/stopping/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false
PY="${PY:-.venv/bin/python}"
spec=recipes/SmolLM2-135M-Instruct/sweeps/arith_dynamic_cpu.yaml
/usr/bin/time -v "$PY" -m empo.cli compare --sweep "$spec" --threads 2 "$@" 2> >(tee runs/arith_dynamic_cpu.time.log >&2)
/usr/bin/time -v "$PY" scripts/study_stopping.py --sweep "$spec" --threads 2 2> >(tee runs/arith_dynamic_stopping.time.log >&2)
