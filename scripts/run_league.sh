#!/usr/bin/env bash
# The label-free reward league (recipes/SmolLM2-135M-Instruct/sweeps/league_cpu.yaml) through its committed store,
# eval/results/league_cpu/: trains and evaluates only the runs the store lacks (a killed run resumes from its
# checkpoint while runs/ still holds it), bundles each as it finishes, and once every run is in writes the report
# (eval/results/league_cpu/compare/) from the store alone; until then, the interim report of the runs done
# (eval/results/league_cpu/interim/). The stopping study of the runs done: eval/results/league_cpu/stopping/.
#   scripts/run_league.sh [MINUTES]   # with a time budget: start no run that would end past it
# Commit eval/results/league_cpu/ whenever a bundle lands: the next session continues from the committed store.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false
PY="${PY:-.venv/bin/python}"
spec=recipes/SmolLM2-135M-Instruct/sweeps/league_cpu.yaml
store=eval/results/league_cpu
budget=()
if [ -n "${1:-}" ]; then budget=(--time-budget "$1"); fi
"$PY" -m empo.cli compare --sweep "$spec" --store "$store" --threads 2 "${budget[@]}"
status=$("$PY" -m empo.cli compare --sweep "$spec" --store "$store" --status | head -1)
echo "$status"
read -r done _ total _ <<<"$status"
if [ "$done" != "$total" ]; then  # the runs done so far, headed as such: eval/results/league_cpu/interim/
  "$PY" -m empo.cli compare --sweep "$spec" --store "$store" --interim > /dev/null
fi
# the stopping study of the runs done (headed with those missing until the store is full)
"$PY" scripts/study_stopping.py --sweep "$spec" --store "$store" --block checkpoints-greedy \
  --reference empo --fit-seeds 0 --threads 2 > /dev/null
