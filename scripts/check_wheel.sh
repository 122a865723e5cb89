#!/usr/bin/env bash
# empo as a user installs it: build the wheel, install it into a fresh virtual environment outside any checkout, and
# run each subcommand's smallest form from a directory where nothing of the repository is reachable, offline
# (HF_HUB_OFFLINE=1; the default model comes from $EMPO_HOME, built by an earlier `empo train` or test run).
#   scripts/check_wheel.sh                    # CI runs it after the tests
#   PYTHON=python3.12 scripts/check_wheel.sh  # another interpreter for the fresh venv
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$repo"
"$work/venv/bin/pip" install -q "$work"/dist/empo-*.whl -c "$repo/constraints/cpu.txt"  # the CPU torch, as the README
cd "$work"   # not the checkout: recipes, data, suites and the Slurm template must come from the wheel
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
empo="$work/venv/bin/empo"
step() { echo; echo "+ empo $*"; "$empo" "$@"; }
[ "$("$work/venv/bin/python" -c 'import empo, os; print(os.path.dirname(empo.__file__))')" = \
  "$work/venv/lib/$("$work/venv/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages/empo" ]
small=(--num_generations 4 --per_device_train_batch_size 4 --max_completion_length 16 --dataset_limit 8 --save_steps 1)
step recipes
step data check
step train --max_steps 1 "${small[@]}" --output_dir runs/empo
step train --max_steps 1 "${small[@]}" --reward_funcs random --output_dir runs/random
step launch recipes/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml --gpus-per-node 8 --dry-run --slurm
step eval --limit 1 --n 0 --max-new-tokens 16 --output-dir runs/eval
step eval --benchmarks gsm8k --limit 1 --max-new-tokens 16 --output-dir runs/eval-gsm8k
step rollout --limit 1 -G 2 --max-new-tokens 16 --output runs/rollout.jsonl
step rollout --dataset gsm8k --limit 1 -G 2 --max-new-tokens 16 --output runs/rollout-gsm8k.jsonl
step compare runs/empo runs/random --limit 1 --n 0 --max-new-tokens 16 --output runs/compare
echo; echo "wheel flows passed: $(ls "$work"/dist) installed outside the checkout, every subcommand ran offline"
