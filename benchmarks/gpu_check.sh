#!/usr/bin/env bash
# The GPU check, prepared to run in one go on a lent GPU machine (torch, transformers, safetensors,
# pandas and tqdm are there; nothing is installed). From the repository root:
#   bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 benchmarks/gpu_check.py "$@" 2>&1 | grep -v -E "Writing model shards|Loading weights"
