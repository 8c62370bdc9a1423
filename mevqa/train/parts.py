"""Which parts of Qwen2.5-VL train, and how: frozen, LoRA or fully trained; one learning rate per part.

A Qwen2.5-VL has three parts (transformers 5.x names; PEFT prefixes them with ``base_model.model.``):

=========  ==============================================================  ============================
part       parameters                                                      LoRA targets (Linear layers)
=========  ==============================================================  ============================
vision     ``model.visual.patch_embed``, ``model.visual.blocks.N``        ``blocks.N.attn.{qkv,proj}``,
                                                                           ``blocks.N.mlp.{gate,up,down}_proj``
merger     ``model.visual.merger`` (vision -> language projector)          ``merger.mlp.{0,2}``
llm        ``model.language_model``, ``lm_head``                           ``layers.N.self_attn.{q,k,v,o}_proj``,
                                                                           ``layers.N.mlp.{gate,up,down}_proj``
=========  ==============================================================  ============================

Parts are told apart by these name patterns, never by module class or model name, so the same code serves the
3B, the 7B, the tiny test model and a PEFT-wrapped model. The vision MLP and the language MLP share their
projection names, so LoRA targets are regexes anchored on the part's path.

Under LoRA a part marked ``full`` is trained through PEFT's ``modules_to_save`` (one entry per block, so the vision
loop over ``blocks`` still works): PEFT saves those weights inside the adapter and ``merge_and_unload`` folds them
back, so the adapter alone carries everything that was trained.
"""

from __future__ import annotations

import contextlib
import logging
import re

import torch

from mevqa.errors import MevqaError
from mevqa.model import part_of as model_part_of

log = logging.getLogger(__name__)

PARTS = ("vision", "merger", "llm")
# mevqa.model names four parts; training treats the language model and its head as one.
_TRAIN_PART = {"vision": "vision", "merger": "merger", "language_model": "llm", "lm_head": "llm"}


def part_of(name: str) -> str | None:
    """The part a parameter or module name belongs to ("vision", "merger", "llm"), or None."""
    return _TRAIN_PART.get(model_part_of(name))


def lora_target_regex(cfg) -> str:
    """The regex (PEFT full-match over module names) of the Linear layers that get LoRA adapters."""
    if cfg.lora_target_regex:
        return cfg.lora_target_regex
    alternatives = []
    if cfg.vision == "lora":
        names = "|".join(map(re.escape, cfg.lora_vision_modules))
        alternatives.append(rf".*visual\.blocks\.\d+\.(?:attn|mlp)\.(?:{names})")
    if cfg.merger == "lora":
        alternatives.append(r".*visual\.merger\.mlp\.[02]")  # mlp.1 is the GELU
    if cfg.llm == "lora":
        names = "|".join(map(re.escape, cfg.lora_llm_modules))
        alternatives.append(rf".*language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{names})")
    if not alternatives:
        raise MevqaError("config: LoRA needs at least one part set to lora (vision, merger or llm), or "
                         "lora_target_regex; for full fine-tuning use recipes/full.py")
    return "|".join(f"(?:{alt})" for alt in alternatives)


def _full_module_names(model, part: str) -> list[str]:
    """Module names (relative to ``model``) that together hold every parameter of ``part``, block by block."""
    roots = {
        "vision": ["model.visual.patch_embed", "model.visual.blocks"],
        "merger": ["model.visual.merger"],
        "llm": ["model.language_model.embed_tokens", "model.language_model.layers", "model.language_model.norm",
                "lm_head"],
    }[part]
    modules = dict(model.named_modules())
    names = []
    for root in roots:
        if root not in modules:
            raise MevqaError(f"model has no module {root!r}: not a transformers 5.x Qwen2.5-VL layout")
        module = modules[root]
        if isinstance(module, torch.nn.ModuleList):
            names += [f"{root}.{i}" for i in range(len(module))]
        else:
            names.append(root)
    return names


def apply_full(model, cfg):
    """Full fine-tuning: parts marked ``full`` train, ``frozen`` parts do not; ``lora`` is an error here."""
    check_parts(cfg, "full")
    for name, param in model.named_parameters():
        part = part_of(name)
        param.requires_grad_(part is not None and getattr(cfg, part) == "full")
    return model


def apply_lora(model, cfg):
    """Wrap ``model`` with PEFT LoRA per the config: LoRA parts get adapters, full parts go to ``modules_to_save``."""
    from peft import LoraConfig, get_peft_model

    modules_to_save = [name for part in PARTS if getattr(cfg, part) == "full"
                       for name in _full_module_names(model, part)]
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        # Freezes the base and casts its unquantised weights to float32; checkpointing is enabled by the recipe.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora_config = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, use_dora=cfg.use_dora,
        target_modules=lora_target_regex(cfg), modules_to_save=modules_to_save or None, bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora_config)
    except ValueError as exc:  # PEFT's "Target modules ... not found" and similar
        raise MevqaError(f"config: LoRA set-up failed: {str(exc).splitlines()[0]}") from None
    return model


def check_parts(cfg, recipe: str) -> None:
    """The part modes ``recipe`` ("lora" or "full") accepts; checked before the model loads."""
    modes = {part: getattr(cfg, part) for part in PARTS}
    if recipe == "full":
        lora_parts = [part for part, mode in modes.items() if mode == "lora"]
        if lora_parts:
            raise MevqaError(f"config: {', '.join(lora_parts)}=lora is not allowed in recipes/full.py; set frozen or "
                             f"full, or use recipes/lora.py")
        if "full" not in modes.values():
            raise MevqaError("config: recipes/full.py needs at least one part set to full (vision, merger, llm)")
        if cfg.load_in_4bit:
            raise MevqaError("config: load_in_4bit (QLoRA) trains adapters; use recipes/lora.py")
    else:
        lora_target_regex(cfg)  # needs a LoRA part or a regex


# Modules QLoRA leaves unquantised. transformers 5.x matches each name from the start of the full module name (up to a
# dot), or as a suffix (quantizers_utils.should_convert_module): "model.visual" keeps the whole vision tower and its
# merger out (a bare "visual" matches neither way, so they would be quantised), "lm_head" the output layer.
QLORA_SKIP_MODULES = ["model.visual", "lm_head"]


def quantization_config(cfg):
    """QLoRA's bitsandbytes 4-bit config: nf4, double quantisation, bf16 compute; the language model only."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=QLORA_SKIP_MODULES)


def param_groups(model, cfg) -> list[dict]:
    """AdamW parameter groups: one per (part, decay) with the part's learning rate; no decay on biases and norms."""
    lrs = {"vision": cfg.lr_vision, "merger": cfg.lr_merger, "llm": cfg.lr_llm}
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = part_of(name)
        if part is None:
            raise MevqaError(f"trainable parameter {name} belongs to no known part (vision, merger, llm)")
        groups.setdefault((part, param.ndim >= 2), []).append(param)
    if not groups:
        raise MevqaError("config: nothing to train (every part is frozen)")
    return [{"params": params, "name": f"{part}{'' if decay else '_no_decay'}",
             "lr": lrs[part] if lrs[part] is not None else cfg.learning_rate,
             "weight_decay": cfg.weight_decay if decay else 0.0}
            for (part, decay), params in sorted(groups.items())]


def trainable_summary(model) -> dict[str, dict[str, int]]:
    """Trainable and total parameter counts per part (what the run log shows before training)."""
    summary = {part: {"trainable": 0, "total": 0} for part in (*PARTS, "other")}
    for name, param in model.named_parameters():
        part = part_of(name) or "other"
        summary[part]["total"] += param.numel()
        if param.requires_grad:
            summary[part]["trainable"] += param.numel()
    return summary


def enable_gradient_checkpointing(model) -> None:
    """Non-reentrant checkpointing: works with frozen embeddings and PEFT without enable_input_require_grads."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the older name is deprecated there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


@contextlib.contextmanager
def checkpointing_off(model):
    """Gradient checkpointing off and the KV cache on while generating; both restored afterwards."""
    newer = hasattr(model, "activation_checkpointing_enable")
    was_on = model.is_activation_checkpointing if newer else model.is_gradient_checkpointing
    use_cache = model.config.use_cache
    if was_on:
        model.activation_checkpointing_disable() if newer else model.gradient_checkpointing_disable()
    model.config.use_cache = True
    try:
        yield model
    finally:
        if was_on:
            enable_gradient_checkpointing(model)
        model.config.use_cache = use_cache
