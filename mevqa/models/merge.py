"""``mevqa merge``: fold a LoRA adapter into its base model, giving a standalone checkpoint for plain transformers.

    mevqa merge --base Qwen/Qwen2.5-VL-3B-Instruct --adapter runs/baseline/final --out runs/baseline/merged

Everything the adapter holds is folded in: LoRA on the vision blocks, the merger and the language model, and the
parts a LoRA run trained fully (PEFT ``modules_to_save``). The processor files (tokenizer, chat template, image and
video processors) are copied from the adapter folder when the run saved them there, else from the base, so the
output loads with ``AutoModelForImageTextToText.from_pretrained(out)`` / ``AutoProcessor.from_pretrained(out)``
and serves with any engine, vLLM included, as a plain model. The folder is written under a temporary name and
renamed when complete. The low-rank updates are added in float32 and the result is cast to the base's dtype.

Serving without merging: vLLM serves a Qwen2.5-VL LoRA adapter on the base model, vision-tower and merger LoRA
included when started with ``enable_tower_connector_lora`` (``--enable-tower-connector-lora``; experimental, for
the Qwen-VL family). It refuses adapters with ``modules_to_save`` (parts set to ``full`` in a LoRA run) or DoRA
(``use_dora``): merge those first.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from mevqa.answering.inference import check_weight_files
from mevqa.errors import MevqaError
from mevqa.jsonl import ensure_dir
from mevqa.models.loading import check_model_source, load_model_and_processor, resolve_dtype
from mevqa.paths import is_disk_full, refuse_outputs_onto_inputs
from mevqa.runfolder import atomic_folder

log = logging.getLogger(__name__)


def _base_dtype(base: str) -> str:
    """The dtype the base checkpoint is stored in (its config.json), so merging neither loses nor invents precision."""
    config = Path(base) / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON and bad UTF-8 alike
            raise MevqaError(f"{config}: unreadable model config ({type(exc).__name__}); expected the base model's "
                             "config.json") from None
        dtype = data.get("dtype") or data.get("torch_dtype") or (data.get("text_config") or {}).get("dtype")
        if dtype:
            return dtype
    else:
        from huggingface_hub import try_to_load_from_cache  # lazy: only for a hub name

        cached = try_to_load_from_cache(base, "config.json")
        if isinstance(cached, str):
            return _base_dtype(str(Path(cached).parent))
    return "float32"


def merge_adapter(base: str, adapter: str | Path, out: str | Path, *, dtype: str | None = None) -> Path:
    """Write ``base`` + ``adapter`` as one checkpoint to ``out``; returns ``out``."""
    from transformers import AutoProcessor  # lazy: transformers; `mevqa merge --help` stays quick

    adapter, out = Path(adapter), Path(out)
    refuse_outputs_onto_inputs(outputs={"--out": out}, inputs={"--base": base, "--adapter": adapter})
    check_model_source(base)  # a missing folder is one line, not a hub-name error from deep inside the loading
    if not (adapter / "adapter_config.json").is_file():  # checked before the base loads, which is slow
        what = "not a PEFT adapter folder (no adapter_config.json)" if adapter.is_dir() else "adapter folder does " \
            "not exist"
        raise MevqaError(f"{adapter}: {what}")
    if out.exists() and not out.is_dir():
        raise MevqaError(f"{out}: exists and is a file; --out must be a new folder")
    if out.exists() and any(out.iterdir()):
        raise MevqaError(f"{out}: already exists and is not empty; remove it or choose another --out")
    ensure_dir(out.parent, "folder of --out")  # checked before the merge: a full model is slow to load
    check_weight_files(base, adapter)
    dtype = dtype or _base_dtype(base)
    # Fold in float32 (a bf16 sum of base + low-rank update loses the update's small digits), then cast.
    model, processor = load_model_and_processor(base, adapter=adapter, dtype="float32", device="cpu")
    merged = model.merge_and_unload().to(resolve_dtype(dtype))
    leftover = [name for name, _ in merged.named_modules() if "lora_" in name or "modules_to_save" in name]
    if leftover:
        raise MevqaError(f"{adapter}: merging left adapter modules behind ({leftover[0]}, ...)")
    if (adapter / "tokenizer_config.json").is_file():
        processor = AutoProcessor.from_pretrained(adapter)
    processor.tokenizer.padding_side = "left"  # generation is the only use of a merged model's processor

    try:
        # A temporary folder of this run's own: a second merge into the same --out never writes into this one's, and
        # only an empty --out (checked above) is replaced.
        with atomic_folder(out, replace=False) as tmp:
            merged.save_pretrained(tmp, safe_serialization=True)
            processor.save_pretrained(tmp)
            for extra in ("train_config.yaml",):
                if (adapter / extra).is_file():
                    shutil.copy2(adapter / extra, tmp / extra)
    except Exception as exc:  # safetensors reports a full disk with its own exception type
        if not is_disk_full(exc):
            raise
        raise MevqaError(f"{out}: no space left on the device while writing the merged model (in a temporary folder "
                         "beside it, now removed); nothing was written, free space and run again") from None
    log.info("merged %s + %s (%s) into %s", base, adapter, dtype, out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="base model: hub id or folder the adapter was trained on")
    parser.add_argument("--adapter", required=True, type=Path, help="PEFT adapter folder (e.g. <output_dir>/final)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the merged checkpoint into")
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"],
                        help="dtype of the merged weights (default: the base checkpoint's own dtype); the merge "
                        "itself runs in float32 on the CPU (about 4 bytes of RAM per parameter)")


def run(args: argparse.Namespace) -> int:
    path = merge_adapter(args.base, args.adapter, args.out, dtype=args.dtype)
    print(path)
    return 0
