"""Checks ``mevqa inspect``'s activation-memory formula against the tensors autograd really keeps, on the CPU.

    python benchmarks/activation_memory.py --model 3b
    python benchmarks/activation_memory.py --model 7b --tokens 512

Builds Qwen2.5-VL with the real 3B/7B widths (``qwen2_5_vl_configs.json`` beside this script; random weights,
bfloat16) but only one or two language layers and vision blocks, runs one training forward, and records every
tensor autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``; each storage counted once,
parameters excluded). The difference between the two-layer and the one-layer model is one layer's cost, which is
compared with :func:`mevqa.train.inspect.activation_memory` on the same two configs, for:

- a language layer per token: trained fully, for one row and for two rows with padding; frozen with LoRA adapters
  (r 16 on q/k/v/o/gate/up/down), without dropout and with dropout 0.05 (the formula is given the CPU's 4-byte
  dropout mask here; on CUDA the mask is one byte);
- a vision block per patch (full attention), the tower trained.

The logits line compares what autograd keeps after the forward (the float32 log-softmax) with the formula's
logits term, which also counts the logits themselves and the log-softmax gradient (present at the start of
backward), so the formula is the larger by design. Nothing is timed; the figures are exact byte counts. A run
takes about 1.5 minutes (3B) or 3 minutes (7B) on 2 CPU cores, mostly building the models.

Last run (transformers 5.24, 256 tokens, grid 32): every language-layer case equals the measured bytes exactly at
both widths (3B: 130,120 / 137,544 / 185,352 / 285,960 B per token; 7B: 225,400 / 237,944 / 321,080 / 495,416);
the vision block is 8% under (60,640 vs 65,832 B per patch); logits 1,519,360 vs 624,660 (3B) by design.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from mevqa.train.inspect import Settings, activation_memory, saved_activation_bytes

HERE = Path(__file__).resolve().parent


def build(arch: dict, layers: int, depth: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = {**arch["text_config"], "num_hidden_layers": layers}
    # the last block uses full attention, so the measured block is a full-attention one
    vision = {**arch["vision_config"], "depth": depth, "fullatt_block_indexes": [depth - 1]}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=arch["tie_word_embeddings"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    model.model.visual.config._attn_implementation = "sdpa"
    model.train()
    return model, config


def with_lora(model, dropout: float):
    from peft import LoraConfig, get_peft_model

    target = r".*language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:q|k|v|o|gate|up|down)_proj"
    return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=dropout, target_modules=target))


def one_less(model, run, layers) -> int:
    """Saved bytes of ``run()`` with all of ``layers`` (a ModuleList) minus those with its last one removed."""
    full = saved_activation_bytes(model, run)
    kept = layers[-1]
    del layers[-1]
    try:
        fewer = saved_activation_bytes(model, run)
    finally:
        layers.append(kept)
    return full - fewer


def language_case(arch, tokens: int, batch: int, lora: float | None) -> tuple[float, float]:
    """(measured, formula) bytes per token of one language layer: fully trained (``lora=None``) or frozen with LoRA
    adapters of dropout ``lora`` on every Linear layer."""
    length = tokens // batch
    ids = torch.randint(0, 1000, (batch, length))
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[0, -length // 4:] = 0
    model, _ = build(arch, 2, 1)
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    layers = model.model.language_model.layers
    if lora is not None:
        model = with_lora(model, lora)
    measured = one_less(model, lambda: model(input_ids=ids, attention_mask=mask, labels=ids), layers)
    overrides = ["dtype=bfloat16", f"per_device_train_batch_size={batch}", "vision=frozen", "merger=frozen",
                 "llm=full" if lora is None else "llm=lora", "lora_r=16", f"lora_dropout={lora or 0.0}",
                 "lora_llm_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"]
    formula = _formula_difference(arch, overrides, "language_model", batch * length, 0, layers_key="text")
    return measured / (batch * length), formula / (batch * length)


def vision_case(arch, grid: int) -> tuple[float, float]:
    """(measured, formula) bytes per patch of one full-attention vision block (the tower trained)."""
    patches = grid * grid
    pixels = torch.randn(patches, 3 * 2 * 14 * 14, dtype=torch.bfloat16)
    thw = torch.tensor([[1, grid, grid]])
    model, _ = build(arch, 1, 2)
    visual = model.model.visual
    measured = one_less(model, lambda: visual(pixels, grid_thw=thw), visual.blocks)
    overrides = ["dtype=bfloat16", "per_device_train_batch_size=1", "vision=full", "merger=full", "llm=lora"]
    formula = _formula_difference(arch, overrides, "vision", 1, patches, layers_key="vision")
    return measured / patches, formula / patches


def logits_case(arch, tokens: int) -> tuple[float, float]:
    model, config = build(arch, 1, 1)
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    ids = torch.randint(0, 1000, (1, tokens))
    total = saved_activation_bytes(model, lambda: model(input_ids=ids, labels=ids))
    settings = Settings.from_config(None, ["dtype=bfloat16", "vision=frozen", "merger=frozen", "llm=full"])
    memory = activation_memory(tokens, 0, config, settings)
    return (total - memory["language_model"]) / tokens, memory["logits"] / tokens


def _formula_difference(arch, overrides, part: str, tokens: int, patches: int, layers_key: str) -> float:
    from transformers import Qwen2_5_VLConfig

    settings = Settings.from_config(None, overrides)
    values = []
    for n in (1, 2):
        a = copy.deepcopy(arch)
        if layers_key == "text":
            a["text_config"]["num_hidden_layers"] = n
        else:
            a["vision_config"]["depth"] = n
        config = Qwen2_5_VLConfig(text_config=a["text_config"], vision_config=a["vision_config"])
        # the CPU dropout kernel keeps its mask in the input's dtype (float32 here), not as CUDA's one-byte mask
        values.append(activation_memory(tokens, patches, config, settings, mask_bytes=4)[part])
    return values[1] - values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["3b", "7b"], default="3b")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per forward (default 256)")
    parser.add_argument("--grid", type=int, default=32, help="vision patch grid side (default 32: a 448 px image)")
    args = parser.parse_args()
    arch = json.loads((HERE / "qwen2_5_vl_configs.json").read_text())[args.model]
    print(f"Qwen2.5-VL-{args.model.upper()} widths, bfloat16, {args.tokens} tokens, "
          f"vision grid {args.grid}x{args.grid}")
    print(f"{'case':<44}{'measured':>12}{'formula':>12}{'formula/measured':>18}")
    cases = [("language layer trained, 1 row", lambda: language_case(arch, args.tokens, 1, None)),
             ("language layer trained, 2 padded rows", lambda: language_case(arch, args.tokens, 2, None)),
             ("language layer LoRA, 1 row", lambda: language_case(arch, args.tokens, 1, 0.0)),
             ("language layer LoRA + dropout, 2 rows", lambda: language_case(arch, args.tokens, 2, 0.05)),
             ("vision block trained, per patch", lambda: vision_case(arch, args.grid)),
             ("logits (see above)", lambda: logits_case(arch, args.tokens))]
    for name, case in cases:
        measured, formula = case()
        print(f"{name:<44}{measured:>12.0f}{formula:>12.0f}{formula / measured:>18.3f}")


if __name__ == "__main__":
    main()
