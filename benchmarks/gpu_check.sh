#!/usr/bin/env bash
# The one script a GPU session runs, from the repository root, in under 8 minutes on one H100/H200:
#   1. pytest -m gpu tests/gpu: every recipes/accelerate/*.yaml x {steps, in-training evaluation, save, resume,
#      merge} on the tiny model (about 4-5 min; stopped at 5 min 20 s);
#   2. benchmarks/train_throughput.py on the real Qwen2.5-VL-3B/7B architectures with random weights, a few steps
#      each: samples/s, tokens/s, peak GPU memory and MFU per config (about 2 min; 50 s each at most).
# Output goes to stdout and, when $OUT is set, to $OUT/gpu_check.log.
#
# The machine needs mevqa's dependencies. A machine without network gets the missing ones as wheels in .whl/ (built
# for its Python), installed here into /tmp/site; for the project's H200 image those are, as of 2026-11:
# deepspeed hjson pydantic pydantic-core annotated-types typing-inspection rouge-score nltk openpyxl et-xmlfile xlrd
# av. mevqa itself is installed without its dependencies (editable, from this tree).
#
#   bash benchmarks/gpu_check.sh            # PYTHON=python3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
LOG=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$LOG") 2>&1

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" -c "import torch, transformers, peft, accelerate; print('torch', torch.__version__, '| transformers',
transformers.__version__, '| peft', peft.__version__, '| accelerate', accelerate.__version__)"
"$PYTHON" -c "import deepspeed; print('deepspeed', deepspeed.__version__)" \
    || echo "deepspeed missing: the DeepSpeed configs of tests/gpu will be skipped"

echo "== pytest -m gpu tests/gpu"
timeout 320 "$PYTHON" -m pytest -m gpu tests/gpu -q -rs --durations=10 -p no:cacheprovider || status=$?

echo "== train throughput, random weights (Qwen2.5-VL-7B full fine-tuning needs ZeRO-3 on several GPUs: not here)"
for spec in "3b recipes/configs/qwen2_5_vl_3b/lora_baseline.yaml" "3b recipes/configs/qwen2_5_vl_3b/full.yaml" \
            "7b recipes/configs/qwen2_5_vl_7b/lora.yaml"; do
    set -- $spec
    echo "-- $1 $2"
    timeout 50 "$PYTHON" benchmarks/train_throughput.py --model "$1" --config "$2" --steps 5 --warmup 2 \
        2>&1 | grep -v -e "it/s]" -e "^Loading" -e "^Writing" || status=$?
done
exit "${status:-0}"
