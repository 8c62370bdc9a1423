#!/usr/bin/env bash
# The one script a GPU session runs, from the repository root, in under 8 minutes on one H100/H200:
#   1. pytest -m gpu tests/gpu: every recipes/accelerate/*.yaml x {steps, in-training evaluation, save, resume,
#      merge} on the tiny model (about 4 min; stopped at 5 min, each launch at 2 min), and
#      tests/gpu/test_qwen3_vl_4b.py: one LoRA step of Qwen3-VL-4B at its real size, random weights (video and OAO;
#      DeepStack mergers get gradients; peak memory printed);
#   2. benchmarks/train_throughput.py on the real Qwen2.5-VL-3B/7B architectures with random weights, a few steps
#      each: samples/s, tokens/s, peak GPU memory and MFU per config (about 2 min; 50 s each at most).
# Output goes to stdout and, when $OUT is set, to $OUT/gpu_check.log.
#
#   bash benchmarks/gpu_check.sh                          # PYTHON=python3 by default
#   bash benchmarks/gpu_check.sh --fetch-wheels [NAME...] # on a machine with the package registry: fill .whl/
#
# Python packages. Before anything runs, the script checks every module the checks import (a CUDA build of torch,
# transformers, peft, accelerate, deepspeed, and mevqa's own imports) and stops with one line naming the missing
# ones by their package names. A machine without a registry gets them as wheels in .whl/, installed here into
# /tmp/site. For an image with torch, transformers, peft, accelerate and the usual scientific stack (the project's
# H200 image, as of 2026-11), the missing ones are rouge-score, nltk, openpyxl, et-xmlfile, deepspeed, hjson,
# pydantic, pydantic-core, annotated-types and typing-inspection: `--fetch-wheels` with no names downloads those for
# CPython $WHEEL_PYTHON (3.12 by default) on x86-64 Linux, and builds the two that PyPI ships only as source
# (rouge-score, and deepspeed without its CUDA ops, which it compiles when first needed). Name others to add them.
# mevqa itself is installed without its dependencies (editable, from this tree). SKIP_DEEPSPEED=1 runs without
# DeepSpeed (its two configs are then skipped, and the log says so).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    shift
    names=("$@")
    [[ ${#names[@]} -gt 0 ]] || names=(nltk openpyxl et-xmlfile hjson pydantic annotated-types typing-inspection)
    built=(); [[ $# -gt 0 ]] || built=(rouge-score deepspeed)
    mkdir -p .whl
    platforms=()
    for n in 17 24 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
    pyver=${WHEEL_PYTHON:-3.12}
    get() { "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --implementation cp \
                --python-version "$pyver" --platform manylinux2014_x86_64 "${platforms[@]}" -d .whl "$@"; }
    get "${names[@]}"
    if [[ " ${names[*]} " == *" pydantic "* ]]; then  # pydantic-core: the exact version pydantic names
        core=$(unzip -p .whl/pydantic-[0-9]*.whl '*/METADATA' \
               | sed -n 's/^Requires-Dist: pydantic-core==\([^ ;]*\).*/\1/p')
        get "pydantic-core==$core"
    fi
    # Source-only on PyPI: pure-Python wheels built here (deepspeed needs torch importable to build).
    [[ ${#built[@]} -eq 0 ]] \
        || DS_BUILD_OPS=0 "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w .whl "${built[@]}"
    ls -1 .whl
    echo "carry .whl (it is git-ignored); this script installs it on the GPU machine"
    exit 0
fi

LOG=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$LOG") 2>&1

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# module:package names of everything the checks import, and the versions mevqa needs (pyproject.toml).
SKIP_DEEPSPEED=${SKIP_DEEPSPEED:-0} "$PYTHON" - <<'EOF' || exit 2
import importlib, os, sys
from importlib.metadata import version
needed = ("torch:torch transformers:transformers peft:peft accelerate:accelerate numpy:numpy PIL:pillow "
          "cv2:opencv-python-headless pandas:pandas openpyxl:openpyxl yaml:pyyaml tqdm:tqdm sklearn:scikit-learn "
          "sacrebleu:sacrebleu rouge_score:rouge-score nltk:nltk matplotlib:matplotlib tensorboard:tensorboard "
          "safetensors:safetensors packaging:packaging pytest:pytest setuptools:setuptools").split()
if os.environ["SKIP_DEEPSPEED"] != "1":
    needed += ["hjson:hjson", "pydantic:pydantic", "deepspeed:deepspeed"]
missing = []
for item in needed:
    module, package = item.split(":")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        missing.append(f"{package} ({type(exc).__name__}: {exc})" if module == "deepspeed" else package)
if missing:
    sys.exit(f"gpu_check: missing Python packages: {', '.join(missing)}; carry their wheels in .whl/ "
             f"(bash benchmarks/gpu_check.sh --fetch-wheels NAME..., on a machine with the package registry)")
from packaging.version import Version
too_old = [f"{name} {version(name)} (mevqa needs >= {low})" for name, low in
           (("transformers", "5.10"), ("peft", "0.17"), ("accelerate", "1.4"), ("setuptools", "77"))
           if Version(version(name)) < Version(low)]
if too_old:
    sys.exit(f"gpu_check: too old: {', '.join(too_old)}; carry newer wheels in .whl/")
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA GPU; every GPU test would be skipped")
EOF
if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . > /tmp/mevqa-install.log 2>&1; then
    echo "gpu_check: pip install -e . failed: $(grep -v '^\s*$' /tmp/mevqa-install.log | tail -1)"
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" -c "import sys, torch, transformers, peft, accelerate; print('python', sys.version.split()[0], '| torch',
torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| accelerate',
accelerate.__version__)"
"$PYTHON" -c "import deepspeed; print('deepspeed', deepspeed.__version__)" 2> /dev/null \
    || echo "deepspeed not installed (SKIP_DEEPSPEED=1): the DeepSpeed configs of tests/gpu will be skipped"

echo "== pytest -m gpu tests/gpu"
timeout 300 "$PYTHON" -m pytest -m gpu tests/gpu -v -rs --durations=10 -p no:cacheprovider || status=$?

echo "== train throughput, random weights (Qwen2.5-VL-7B full fine-tuning needs ZeRO-3 on several GPUs: not here)"
for spec in "3b recipes/configs/qwen2_5_vl_3b/lora_baseline.yaml" "3b recipes/configs/qwen2_5_vl_3b/full.yaml" \
            "7b recipes/configs/qwen2_5_vl_7b/lora.yaml"; do
    set -- $spec
    echo "-- $1 $2"
    timeout 50 "$PYTHON" benchmarks/train_throughput.py --model "$1" --config "$2" --steps 5 --warmup 2 \
        2>&1 | grep -v -e "it/s]" -e "^Loading" -e "^Writing" || status=$?
done
exit "${status:-0}"
