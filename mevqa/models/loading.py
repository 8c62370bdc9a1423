"""Loading a supported Qwen VLM (base, base + LoRA adapter, or merged) and finding its parts, on transformers 5.x.

Public API::

    load_model_and_processor(model_name_or_path="Qwen/Qwen2.5-VL-3B-Instruct", *, adapter=None, dtype="auto",
                             attn_implementation="sdpa", device=None, min_pixels=None, max_pixels=None,
                             video_min_pixels=None, video_max_pixels=None, max_frames=None, trainable_adapter=False)
        -> (model, processor)
    resolve_dtype(dtype="auto", device=None) -> torch.dtype       # "auto": bf16 on CUDA when supported, else fp32
    model_parts(model) -> ModelParts(vision, merger, language_model, lm_head, names, mergers)   # PEFT-wrapped or not
    part_of(param_name, family) -> str | None       # which part a parameter belongs to, by name
    set_pixel_budgets(processor, *, min_pixels=None, max_pixels=None, video_min_pixels=None,
                      video_max_pixels=None, max_frames=None)

The supported families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) and every fact that differs between them are in
:mod:`mevqa.models.families`, keyed by ``config.model_type``; an unsupported ``model_type`` is one line, raised from
config.json before any weights load. Parts are found by the table's module paths (``model.visual``,
``model.visual.merger`` and Qwen3-VL's ``model.visual.deepstack_merger_list``, ``model.language_model``,
``lm_head``), so the same code works on a plain and on a PEFT-wrapped model (``base_model.model.model.visual``).
``ModelParts.vision`` is the whole tower module (the mergers are inside it), while for parameter names (``part_of``)
``"vision"`` means the tower without its mergers, so each parameter has one part.

Pixel budgets are pixels per image (``min_pixels``/``max_pixels``) and per video (``video_*``: per frame for the
Qwen2-VL video processor of Qwen2/2.5-VL, per whole video for Qwen3-VL's, see ``Family.video_budget``); an image
or frame is resized, keeping its aspect ratio, to a multiple of the family's resize factor (28 px for Qwen2/2.5-VL,
32 for Qwen3-VL: one visual token per factor x factor px) whose area lies in the budget. They are set as
``size={"shortest_edge": min, "longest_edge": max}`` on the image and video processors (the 5.x form of Qwen's
``min_pixels``/``max_pixels``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mevqa.errors import MevqaError
from mevqa.jsonl import read_json
from mevqa.models.families import check_model_source  # re-exported: inspect and merge check a source before loading
from mevqa.models.families import family_of, family_of_source, model_skeleton

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"

def part_of(name: str, family) -> str | None:
    """The part ("vision", "merger", "language_model", "lm_head") a parameter or module name belongs to in a model
    of ``family`` (a :class:`mevqa.models.families.Family`): the family table's module paths, anchored on a dot or the
    start, so PEFT prefixes (``base_model.model.``) and LoRA suffixes (``.lora_A.default.weight``) match too."""
    return family.part_of(name)


@dataclass
class ModelParts:
    vision: "torch.nn.Module"          # the whole vision tower (patch embed, blocks and merger(s))
    merger: "torch.nn.Module"          # vision -> language projector (the main one)
    language_model: "torch.nn.Module"  # the text decoder (embeddings, layers, norm)
    lm_head: "torch.nn.Module"
    names: dict[str, str]              # part -> its module name in ``model``
    mergers: dict[str, "torch.nn.Module"]  # every module of the merger part (Qwen3-VL: + the DeepStack mergers)


def _find_module(model, suffix: str, part: str, family):
    pattern = re.compile(rf"(^|\.){re.escape(suffix)}$")
    found = [(name, module) for name, module in model.named_modules() if pattern.search(name)]
    if not found:
        raise MevqaError(f"{type(model).__name__} has no module named like '*{suffix}' ({part}), which a "
                         f"{family.name} model ({family.model_type}) has in transformers 5.x")
    return min(found, key=lambda item: len(item[0]))  # the outermost, when a wrapper nests the same name


def model_parts(model) -> ModelParts:
    """The vision tower, merger(s), language model and lm_head of a supported model, PEFT-wrapped or not; the
    module paths come from the family table (:mod:`mevqa.models.families`)."""
    family = family_of(model)
    names, modules = {}, {}
    for part, suffix in (("vision", family.vision_tower), ("merger", family.merger_modules[0]),
                         ("language_model", family.language_modules[0].rsplit(".", 1)[0]),
                         ("lm_head", family.lm_head)):
        names[part], modules[part] = _find_module(model, suffix, part, family)
    mergers = {}
    for suffix in family.merger_modules:
        name, module = _find_module(model, suffix, "merger", family)
        mergers[name] = module
    return ModelParts(**modules, names=names, mergers=mergers)


def resolve_dtype(dtype="auto", device=None):
    """A torch dtype from "auto", a name ("bfloat16", "bf16", "float16", "fp16", "float32", "fp32") or a dtype."""
    import torch  # lazy: inspect and merge import this module; their --help stays quick

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}
    if dtype == "auto":
        on_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        return torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in names:
        raise MevqaError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32")
    return names[dtype]


def set_pixel_budgets(processor, *, min_pixels: int | None = None, max_pixels: int | None = None,
                      video_min_pixels: int | None = None, video_max_pixels: int | None = None,
                      max_frames: int | None = None) -> None:
    """Set per-image and per-video pixel budgets (and the video frame cap) on a Qwen VL processor.

    ``None`` keeps the processor's current value. ``max_frames`` is the cap the video processor reports; mevqa
    caps frames itself when it builds messages (``build_messages(max_frames=...)``), since it passes frames it
    already sampled.
    """
    for sub, low, high in ((processor.image_processor, min_pixels, max_pixels),
                           (getattr(processor, "video_processor", None), video_min_pixels, video_max_pixels)):
        if sub is None or (low is None and high is None):
            continue
        size = dict(sub.size)
        low = size["shortest_edge"] if low is None else int(low)
        high = size["longest_edge"] if high is None else int(high)
        if not 0 < low <= high:
            raise MevqaError(f"pixel budget must satisfy 0 < min_pixels <= max_pixels, got {low} and {high}")
        sub.size = {"shortest_edge": low, "longest_edge": high}
    if max_frames is not None and getattr(processor, "video_processor", None) is not None:
        processor.video_processor.max_frames = int(max_frames)


def check_adapter_fits(adapter, model_name_or_path) -> None:
    """The adapter folder's target modules and fully trained modules are in the base model, checked on the base
    built from its config.json on the meta device (:func:`mevqa.models.families.model_skeleton`): before any weights
    load."""
    adapter = Path(adapter).expanduser()
    if not adapter.is_dir():
        raise MevqaError(f"{adapter}: adapter folder does not exist")
    _check_adapter(adapter, model_skeleton(model_name_or_path))


def _check_adapter(adapter: Path, model) -> dict:
    """Read adapter_config.json and check its target modules, modules_to_save and target parameters (a mixture of
    experts' fused parameters) exist in ``model`` (loaded, or a meta-device skeleton); return the config."""
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise MevqaError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    config = read_json(config_file)
    names = [name for name, _ in model.named_modules()]
    targets = config.get("target_modules")
    if isinstance(targets, str):
        # PEFT treats a string as a regex that must match the whole module name.
        if not any(re.fullmatch(targets, name) for name in names):
            raise MevqaError(f"{adapter}: adapter target_modules regex {targets!r} matches no module of the base "
                             f"model; the adapter was trained on a different model")
    elif targets:
        missing = _absent(targets, names)
        if missing:
            raise MevqaError(f"{adapter}: adapter target modules {missing} are not in the base model; the adapter "
                             "was trained on a different model")
    missing = _absent(config.get("modules_to_save") or [], names)
    if missing:
        raise MevqaError(f"{adapter}: adapter modules_to_save {missing} are not in the base model; the adapter was "
                         "trained on a different model")
    missing = _absent(config.get("target_parameters") or [], [name for name, _ in model.named_parameters()])
    if missing:
        raise MevqaError(f"{adapter}: adapter target_parameters {missing} are not parameters of the base model; the "
                         "adapter was trained on a different model")
    return config


def _absent(wanted, names: list[str]) -> list[str]:
    """The entries of ``wanted`` that match none of ``names`` (PEFT matches a full name or a dotted suffix)."""
    suffixes = {name.rsplit(".", 1)[-1] for name in names} | set(names)
    return [w for w in wanted if w not in suffixes and not any(n.endswith("." + w) for n in names)]


def load_adapter(model, adapter, *, trainable: bool = False):
    """Wrap ``model`` with the PEFT adapter in folder ``adapter``; clear errors when it does not fit."""
    from peft import PeftModel  # lazy: peft; inference imports this module for its names

    adapter = Path(adapter).expanduser()
    if not adapter.is_dir():
        raise MevqaError(f"{adapter}: adapter folder does not exist")
    config = _check_adapter(adapter, model)
    base = config.get("base_model_name_or_path")
    if base and base != getattr(model, "name_or_path", base):
        log.info("adapter %s was trained from %s; loading it onto %s", adapter, base, model.name_or_path)
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    except RuntimeError as exc:  # state-dict size mismatch: shapes differ from the base
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[0] if first else "")
        raise MevqaError(f"{adapter}: adapter weights do not fit the base model ({detail})") from None


def load_model_and_processor(model_name_or_path: str = DEFAULT_MODEL, *, adapter=None, dtype="auto",
                             attn_implementation: str = "sdpa", device=None, min_pixels: int | None = None,
                             max_pixels: int | None = None, video_min_pixels: int | None = None,
                             video_max_pixels: int | None = None, max_frames: int | None = None,
                             trainable_adapter: bool = False):
    """Load a supported Qwen VL model (plus optional LoRA adapter) and its processor.

    ``device``: None picks CUDA when available, else CPU; pass ``False`` to leave the model where it was loaded
    (CPU), e.g. when accelerate places it. ``dtype``: see :func:`resolve_dtype`. The model is returned in eval mode.
    """
    import torch  # lazy: inspect and merge import this module; their --help stays quick
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model_name_or_path = str(model_name_or_path)
    check_model_source(model_name_or_path)
    family_of_source(model_name_or_path)  # an unsupported model_type is one line, before any weights load
    if adapter is not None:
        check_adapter_fits(adapter, model_name_or_path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = resolve_dtype(dtype, device if device is not False else "cpu")
    try:
        processor = AutoProcessor.from_pretrained(model_name_or_path)
        model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, dtype=torch_dtype,
                                                            attn_implementation=attn_implementation)
    except (OSError, ValueError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MevqaError(f"{model_name_or_path}: cannot load model ({message})") from None
    # Batched generation needs left padding; the collator sets the side per call, this is the safe default.
    processor.tokenizer.padding_side = "left"
    set_pixel_budgets(processor, min_pixels=min_pixels, max_pixels=max_pixels, video_min_pixels=video_min_pixels,
                      video_max_pixels=video_max_pixels, max_frames=max_frames)
    if adapter is not None:
        model = load_adapter(model, adapter, trainable=trainable_adapter)
    if device is not False:
        model = model.to(device)
    model.eval()
    log.info("loaded %s%s (%s, %s) on %s", model_name_or_path, f" + adapter {adapter}" if adapter else "",
             torch_dtype, attn_implementation, device if device is not False else "cpu")
    return model, processor
