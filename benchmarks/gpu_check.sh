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
# FSDP2 through accelerate (1 process on 1 GPU; --num_processes N on N GPUs): Freeze(1) on the shipped
# Biography model; every rank checks its frozen tensors, gathered whole from their shards. DeepSpeed ZeRO-2
# runs the same way where the deepspeed package is installed (it is not on the lent machine: skipped then).
base=$(python3 -c "from spurious_diag.biography.pretrain import shipped_base_dir as s; print(s())")
work=$(mktemp -d)
python3 -c "
import json
from spurious_diag.biography.pretrain import load_base_model
with open('$work/d.jsonl', 'w') as f:
    for r in load_base_model().scenario().qa('task1')[:64]:
        f.write(json.dumps({'prompt': r.prompt, 'completion': r.completion}) + '\n')"
ngpu=$(python3 -c "import torch; print(torch.cuda.device_count())")
echo "== FSDP2 train --freeze-layers 1 --device cuda on $ngpu process(es)"
accelerate launch --use_fsdp --fsdp_version 2 --num_processes "$ngpu" --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP \
  --fsdp_transformer_layer_cls_to_wrap LlamaDecoderLayer -m spurious_diag train --model "$base" --data "$work/d.jsonl" \
  --freeze-layers 1 --steps 10 --lr 1e-3 --batch-size 8 --device cuda --out "$work/fsdp" 2>&1 \
  | grep -E "frozen tensors|trained|error" || echo "FSDP2 run: FAIL (see above)"
if python3 -c "import deepspeed" 2>/dev/null; then
  echo "== DeepSpeed ZeRO-2 train --freeze-layers 1 --device cuda"
  accelerate launch --use_deepspeed --zero_stage 2 --num_processes "$ngpu" -m spurious_diag train --model "$base" \
    --data "$work/d.jsonl" --freeze-layers 1 --steps 10 --lr 1e-3 --batch-size 8 --device cuda --out "$work/ds" 2>&1 \
    | grep -E "frozen tensors|trained|error" || echo "DeepSpeed run: FAIL (see above)"
else
  echo "== DeepSpeed: not installed here, skipped"
fi
rm -rf "$work"
