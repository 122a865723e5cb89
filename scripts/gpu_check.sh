#!/usr/bin/env bash
# The one-call GPU check (issue 21; scripts/gpu_check.py says what it checks). Two steps:
#
#   bash scripts/gpu_check.sh fetch    # on a machine with the package index and empo installed: .gpu_check/ gets the
#                                      # wheels the GPU image lacks and the embedded model's tokenizer (a few MB)
#   bash scripts/gpu_check.sh          # on the GPU node, no network: installs .gpu_check/wheels into /tmp, runs the
#                                      # check (at most 8 minutes), writes gpu_check.json to $OUT or runs/gpu_check/
#
# The GPU image is expected to hold torch (CUDA), transformers, peft, accelerate, pyarrow, pandas, sympy, pyyaml,
# tqdm, rich, matplotlib, safetensors, huggingface-hub (the lent H200's image does). Carried (pure Python, for
# Python 3.12): WHEELS below. datasets 4.8 instead of 5.x: it needs pyarrow >= 21, not >= 24.
# Extra arguments go to scripts/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu_check
WHEELS=(trl==1.16.0 datasets==4.8.0 dill==0.4.1 multiprocess==0.70.19 math-verify==0.9.0
        latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2)
PY="${PY:-python3}"

if [[ "${1:-}" == "fetch" ]]; then
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$CARRY/wheels" "${WHEELS[@]}"
    "$PY" - "$CARRY/tokenizer" <<'EOF'
import sys
from transformers import AutoTokenizer
from empo.model import DEFAULT_MODEL, resolve_model_path
AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL)).save_pretrained(sys.argv[1])
EOF
    du -sh "$CARRY"
    echo "carry $CARRY to the GPU node and run: bash scripts/gpu_check.sh"
    exit 0
fi

# the carried wheels, where the environment lacks them (an environment with empo installed needs none)
if [[ -d "$CARRY/wheels" ]] && ! "$PY" -c "import trl, datasets, math_verify" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/empo-gpu-site \
        "$CARRY"/wheels/*.whl
    export PYTHONPATH="/tmp/empo-gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
tokenizer=()
[[ -d "$CARRY/tokenizer" ]] && tokenizer=(--tokenizer "$CARRY/tokenizer")
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec timeout 480 "$PY" scripts/gpu_check.py --output "${OUT:-runs/gpu_check}" "${tokenizer[@]}" "$@"
