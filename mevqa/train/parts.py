"""Which parts of the model train, and how: frozen, LoRA or fully trained; one learning rate per part.

A supported Qwen VLM has three parts; their module paths and Linear layer names per family come from the family
table (:mod:`mevqa.models.families`, keyed by ``config.model_type``; PEFT prefixes the paths with
``base_model.model.``):

=========  ===================================================================  ==================================
part       parameters                                                           LoRA targets (Linear layers)
=========  ===================================================================  ==================================
vision     ``model.visual.patch_embed``, ``.blocks.N`` (Qwen3-VL: ``.pos_embed``)  ``blocks.N.attn.{qkv,proj}``, the
                                                                                block MLP (family names)
merger     ``model.visual.merger`` (Qwen3-VL: + ``.deepstack_merger_list.N``)    ``merger.mlp.{0,2}`` or
                                                                                ``linear_fc{1,2}`` of each merger
llm        ``model.language_model``, ``lm_head``                                ``layers.N.self_attn.{q,k,v,o}_proj``,
                                                                                ``layers.N.mlp.{gate,up,down}_proj``
                                                                                (MoE: ``mlp.experts.gate_up_proj``,
                                                                                ``.down_proj``, fused parameters)
=========  ===================================================================  ==================================

Parts are told apart by these paths, never by module class or model name, so the same code serves every size and
family, the tiny test models and a PEFT-wrapped model. The vision MLP and the language MLP may share projection
names, so LoRA targets are regexes anchored on the part's path. ``lora_vision_modules`` / ``lora_llm_modules`` name
Linear layers of a block, or the roles ``attention`` and ``mlp`` which the family expands to its own layers.

A mixture of experts (Qwen3-VL-MoE) holds its experts as fused 3-D parameters, not Linear layers: LoRA reaches them
through PEFT's ``target_parameters`` (a low-rank update of rank r per expert). PEFT adapts a parameter without
dropout or DoRA, so LoRA on the experts needs ``lora_dropout: 0`` and ``use_dora: false`` (checked with the config).

Under LoRA a part marked ``full`` is trained through PEFT's ``modules_to_save`` (one entry per block, so the vision
loop over ``blocks`` still works): PEFT saves those weights inside the adapter and ``merge_and_unload`` folds them
back, so the adapter alone carries everything that was trained.
"""

from __future__ import annotations

import contextlib
import logging
import re

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig

from mevqa.errors import MevqaError
from mevqa.models.families import Family, family_of, family_of_source

log = logging.getLogger(__name__)

PARTS = ("vision", "merger", "llm")
# mevqa.models.loading names four parts; training treats the language model and its head as one.
_TRAIN_PART = {"vision": "vision", "merger": "merger", "language_model": "llm", "lm_head": "llm"}


# Module types PEFT's LoRA adapts (what a target pattern must match to give an adapter).
_ADAPTABLE = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_NO_LORA = ("config: LoRA needs at least one part set to lora (vision, merger or llm), or lora_target_regex; for "
            "full fine-tuning use recipes/full.py")


def part_of(name: str, family: Family) -> str | None:
    """The part a parameter or module name belongs to ("vision", "merger", "llm") in ``family``, or None."""
    return _TRAIN_PART.get(family.part_of(name))


def lora_targets(cfg, family: Family) -> dict[str, str]:
    """Part ("vision", "merger", "llm"; or "lora_target_regex" when the config gives its own) -> the regex (PEFT
    full-match over module names) of that part's Linear layers that get LoRA adapters."""
    if cfg.lora_target_regex:
        return {"lora_target_regex": cfg.lora_target_regex}
    targets = {}
    if cfg.vision == "lora":
        names = "|".join(map(re.escape, family.lora_names("vision", cfg.lora_vision_modules)))
        targets["vision"] = rf".*{re.escape(family.vision_blocks)}\.\d+\.(?:attn|mlp)\.(?:{names})"
    if cfg.merger == "lora":
        targets["merger"] = "|".join(f"(?:.*{regex})" for regex in family.merger_lora)
    if cfg.llm == "lora":
        linear = [name for name in family.lora_names("llm", cfg.lora_llm_modules) if name not in family.llm_experts]
        if linear:  # else only expert parameters: lora_target_parameters
            names = "|".join(map(re.escape, linear))
            targets["llm"] = rf".*{re.escape(family.language_layers)}\.\d+\.(?:self_attn|mlp)\.(?:{names})"
    if not targets and not lora_target_parameters(cfg, family):
        raise MevqaError(_NO_LORA)
    return targets


def lora_target_parameters(cfg, family: Family) -> list[str]:
    """The fused expert parameters that get LoRA (PEFT ``target_parameters``: dotted suffixes of parameter names);
    empty unless the llm part is LoRA'd on a mixture of experts with the role ``mlp`` (or its parameter names)."""
    if cfg.lora_target_regex or cfg.llm != "lora":
        return []
    return family.lora_parameters(family.lora_names("llm", cfg.lora_llm_modules))


def check_expert_lora(cfg, family: Family) -> None:
    """PEFT adapts a fused parameter without dropout and without DoRA; say so before the model loads."""
    experts = lora_target_parameters(cfg, family)
    if experts and (cfg.lora_dropout or cfg.use_dora):
        raise MevqaError(f"config: LoRA on {family.name}'s experts ({', '.join(experts)}) needs lora_dropout 0 and "
                         f"use_dora false (PEFT adapts fused parameters without either); got lora_dropout "
                         f"{cfg.lora_dropout:g}, use_dora {str(cfg.use_dora).lower()}")


def lora_target_regex(cfg, family: Family) -> str | None:
    """The regex (PEFT full-match over module names) of the Linear layers that get LoRA adapters; None when only
    expert parameters do."""
    if cfg.lora_target_regex:
        return cfg.lora_target_regex
    return "|".join(f"(?:{regex})" for regex in lora_targets(cfg, family).values()) or None


def _part_roots(part: str, family: Family) -> tuple[str, ...]:
    """The family's module paths of a training part (the llm part: the language model and its head)."""
    return tuple(root for model_part, train_part in _TRAIN_PART.items() if train_part == part
                 for root in family.part_modules(model_part))


def _full_module_names(model, part: str, family: Family) -> list[str]:
    """Module names (relative to ``model``) that together hold every parameter of ``part``, block by block."""
    modules = dict(model.named_modules())
    names = []
    for root in _part_roots(part, family):
        if root not in modules:
            raise MevqaError(f"model has no module {root!r}: not the transformers 5.x {family.name} layout")
        module = modules[root]
        if isinstance(module, torch.nn.ModuleList):
            names += [f"{root}.{i}" for i in range(len(module))]
        else:
            names.append(root)
    return names


def apply_full(model, cfg):
    """Full fine-tuning: parts marked ``full`` train, ``frozen`` parts do not; ``lora`` is an error here."""
    family = family_of(model)
    check_parts(cfg, "full", family)
    for name, param in model.named_parameters():
        part = part_of(name, family)
        param.requires_grad_(part is not None and getattr(cfg, part) == "full")
    return model


def apply_lora(model, cfg):
    """Wrap ``model`` with PEFT LoRA per the config: LoRA parts get adapters, full parts go to ``modules_to_save``."""
    family = family_of(model)
    modules_to_save = [name for part in PARTS if getattr(cfg, part) == "full"
                       for name in _full_module_names(model, part, family)]
    if cfg.load_in_4bit:
        # Freezes the base and casts its unquantised weights to float32; checkpointing is enabled by the recipe.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora_config = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, use_dora=cfg.use_dora,
        target_modules=lora_target_regex(cfg, family), target_parameters=lora_target_parameters(cfg, family) or None,
        modules_to_save=modules_to_save or None, bias="none", task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora_config)
    except ValueError as exc:  # PEFT's "Target modules ... not found" and similar
        raise MevqaError(f"config: LoRA set-up failed: {str(exc).splitlines()[0]}") from None
    return model


def check_parts(cfg, recipe: str, family: Family | None = None) -> None:
    """The part modes ``recipe`` ("lora" or "full") accepts; checked before the model loads. With ``family`` (the
    model's, :func:`mevqa.models.families.family_of_source` reads it from config.json alone) the LoRA layer names are
    checked against that family too."""
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
    elif family is not None:
        lora_target_regex(cfg, family)  # needs a LoRA part or a regex; the layer names exist in this family
        check_expert_lora(cfg, family)
        if cfg.load_in_4bit and family.sparse_mlp:
            # bitsandbytes quantises Linear layers only; the fused experts, nearly all of the weights, would stay
            # as loaded and prepare_model_for_kbit_training would cast them to float32: twice bf16 LoRA's memory.
            raise MevqaError(f"config: load_in_4bit (QLoRA) on {family.name} quantises only its Linear layers, not "
                             f"the fused experts that hold nearly all its weights (they would be cast to float32); "
                             f"train LoRA in bfloat16 instead")
    elif not cfg.lora_target_regex and "lora" not in modes.values():
        raise MevqaError(_NO_LORA)


def check_selection(cfg, recipe: str, skeleton) -> None:
    """Every module pattern the config selects by matches something in the model, checked on ``skeleton`` (the model
    built from its config.json on the meta device, :func:`mevqa.models.families.model_skeleton`) before weights load:
    the LoRA targets of each LoRA part, the modules of each fully trained part, and QLoRA's unquantised modules. A
    pattern that matches nothing is one line naming the family, the part and the pattern."""
    family = family_of(skeleton)
    check_parts(cfg, recipe, family)
    where = f"config: {family.name} ({family.model_type}) at {cfg.model_name_or_path}"
    modules = dict(skeleton.named_modules())
    if recipe == "lora":
        adaptable = [name for name, module in modules.items() if isinstance(module, _ADAPTABLE)]
        for part, regex in lora_targets(cfg, family).items():
            if not any(re.fullmatch(regex, name) for name in adaptable):
                raise MevqaError(f"{where}: the {part} LoRA targets '{regex}' match no Linear layer of the model "
                                 f"(built from its config.json); check the part's layers (lora_*_modules, "
                                 f"lora_target_regex) and the model's config")
        parameters = [name for name, _ in skeleton.named_parameters()]
        for suffix in lora_target_parameters(cfg, family):
            if not any(name.endswith(f".{suffix}") for name in parameters):
                raise MevqaError(f"{where}: the llm LoRA target parameter '{suffix}' is no parameter of the model "
                                 f"(built from its config.json); not the transformers 5.x {family.name} layout")
    for part in PARTS:
        if getattr(cfg, part) != "full":
            continue
        for root in _part_roots(part, family):
            if root not in modules:
                raise MevqaError(f"{where}: the {part} part's module {root!r} is not in the model (built from its "
                                 f"config.json); not the transformers 5.x {family.name} layout")
        if not any(part_of(name, family) == part for name, _ in skeleton.named_parameters()):
            raise MevqaError(f"{where}: {part}=full, but the {part} part ({', '.join(_part_roots(part, family))}) "
                             f"holds no parameters in the model built from its config.json")
    if cfg.load_in_4bit:
        for name in qlora_skip_modules(family):
            if name not in modules:
                raise MevqaError(f"{where}: QLoRA keeps {name!r} unquantised, but the model (built from its "
                                 f"config.json) has no such module; not the transformers 5.x {family.name} layout")


def qlora_skip_modules(family: Family) -> list[str]:
    """Modules QLoRA leaves unquantised: the whole vision side (tower, merger and, for Qwen3-VL, the DeepStack
    mergers, all under the vision tower's path) and the output layer. transformers 5.x matches each name from the
    start of the full module name (up to a dot), or as a suffix (quantizers_utils.should_convert_module), so the
    full path is needed (a bare "visual" matches neither way)."""
    return [family.vision_tower, family.lm_head]


def quantization_config(cfg, family: Family | None = None):
    """QLoRA's bitsandbytes 4-bit config: nf4, double quantisation, bf16 compute; the language model only."""
    if family is None:
        family = family_of_source(cfg.model_name_or_path)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=qlora_skip_modules(family))


def param_groups(model, cfg) -> list[dict]:
    """AdamW parameter groups: one per (part, decay) with the part's learning rate; no decay on biases and norms."""
    lrs = {"vision": cfg.lr_vision, "merger": cfg.lr_merger, "llm": cfg.lr_llm}
    groups: dict[tuple[str, bool], list] = {}
    family = family_of(model)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = part_of(name, family)
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
    family = family_of(model)
    for name, param in model.named_parameters():
        part = part_of(name, family) or "other"
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
