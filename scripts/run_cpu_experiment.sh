#!/usr/bin/env bash
# The reproducible CPU experiment: base vs EMPO vs gold-reward GRPO vs random reward, 3 seeds each, on the
# embedded default model; evaluated on held-out arithmetic and a GSM8K subset; report in
# runs/experiments/arith-controls-cpu/compare/report.md. Resumable: run it again after a kill.
# Both eval blocks read the repository's data/ (no hub needed).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false
exec "${EMPO:-.venv/bin/empo}" compare --sweep recipes/SmolLM2-135M-Instruct/sweeps/arith_controls_cpu.yaml --threads 2 "$@"
