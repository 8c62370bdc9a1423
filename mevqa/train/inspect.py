"""``mevqa inspect``: what a training config makes of QA rows, in tokens and memory, before any training.

    mevqa inspect --config recipes/configs/qwen2_5_vl_3b/lora_baseline.yaml --data data/loso/fold_0/train.jsonl
    mevqa inspect --config CFG --set max_pixels=200704 --set per_device_train_batch_size=8     # try other settings
    mevqa inspect --config recipes/configs/qwen2_5_vl_7b/full.yaml --processes 4 --sharding zero3  # per GPU of a launch

Public API::

    image_tokens(height, width, *, min_pixels, max_pixels, patch_size=14, merge_size=2) -> int
    video_tokens(frames, height, width, *, min_pixels, max_pixels, patch_size=14, merge_size=2,
                 temporal_patch_size=2, budget="frame") -> int
    timestamp_tokens(tokenizer, frames, fps, temporal_patch_size=2) -> int   # Qwen3-VL's <t seconds> text
    activation_memory(tokens, patches, model_config, settings) -> dict[str, int]     # bytes per part
    state_memory(skeleton, settings, *, processes=1, sharding="none") -> dict[str, dict]  # per part, per process
    nf4_bytes(values) -> int                   # bitsandbytes' bytes for one nf4 weight (double quantisation)
    inspect_rows(rows, processor, model_config, settings, *, progress=True) -> InspectReport   # activations only
    with_state(report, skeleton, *, processes=1, sharding="none") -> InspectReport   # + weights, grads, AdamW
    inspect_files(data_files=None, config=None, *, model=None, overrides=(), progress=True, processes=1,
                  sharding="none") -> InspectReport
    InspectReport.format() -> str      # the summary `mevqa inspect` prints (build-data can print the same)
    InspectReport.to_dict() -> dict    # the --json document, per-row figures included

What it reports:

- Visual tokens per row for every input mode the rows have media for, under the config's pixel budgets and frame
  cap. The count is the processor's own rule: each image or video frame is resized by transformers'
  ``smart_resize`` (the Qwen2-VL image/video processors' function, which qwen-vl-utils' ``smart_resize``
  reimplements) to a multiple of the family's factor ``patch_size * merge_size`` px (28 for Qwen2/2.5-VL, 32 for
  Qwen3-VL, read from the processor) whose area lies in the budget, and gives ``(h / factor) * (w / factor)``
  tokens; a video of T frames gives ``ceil(T / temporal_patch_size)`` times that (Qwen3-VL's video processor
  applies the budget to frames x height x width, with its own ``smart_resize``). Qwen3-VL's ``<t seconds>`` text
  before each temporal patch counts as text.
- For the config's input mode: text + visual tokens of each row as the trainer builds it (mevqa's chat with the
  answer), the longest row, and the rows over ``max_length`` (which training refuses; nothing is truncated).
- An estimate of activation memory for one micro-batch of ``per_device_train_batch_size`` copies of the longest row. It
  counts the tensors autograd keeps for backward, per token (d bytes per value for the training dtype; h hidden
  size, I MLP size, kv key/value width, V vocabulary; n = 3 for 16-bit weights, whose RMSNorm keeps a float32 copy
  of its input, else 2):

  * language model, per layer: ``2(n-1) h + 2 hq + 2 kv'`` values whenever gradients pass through it (norm
    inputs; attention's q, k, v and output, hq = query heads x head width), where kv' = kv for one row and hq for a
    padded batch (transformers repeats the key/value heads when it passes an attention mask, and SDPA then keeps its
    own copy of the rows x length x length mask in every layer: ``length`` values per token); ``+ 4 h`` when the
    layer's weights train fully (the Linear inputs and the norm outputs). Qwen3's per-head q/k norms add
    ``(n-1)(hq + kv)``, ``+ (hq + kv)`` when trained. The MLP: dense, ``3 I``, ``+ I`` when trained; a mixture of
    experts (Qwen3-VL-MoE; each token routed to k = ``num_experts_per_tok`` of E experts of width Ie =
    ``moe_intermediate_size``, transformers' default grouped_mm kernel): ``3 k Ie + k h + k`` values, a float32
    router softmax (E), four int64 index vectors of k, ``+ k h + k Ie`` when the experts train, and the
    load-balancing loss's softmax when the config sets ``output_router_logits``. With LoRA, per adapted layer, a
    float32 copy of its input, the float32 rank-r output and (``lora_dropout`` > 0) a one-byte dropout mask per
    input value. LoRA on a mixture of experts' fused parameters (PEFT ``target_parameters``) adds the update to the
    whole parameter in the forward, so each layer keeps, besides ``k h`` (gate_up) / ``k Ie`` (down) inputs per
    token, a per-layer constant: the updated parameter (``E h 2Ie`` / ``E Ie h`` values) and, for 16-bit weights,
    16-bit copies of its A and B (``r E (in + out)``): about 1.2 GB a layer for Qwen3-VL-30B-A3B in bfloat16.
    Per-row float32 scales (RMSNorm, log-sum-exp) are counted too.
    With gradient checkpointing: ``h`` per layer (its input) plus the largest layer's full set (its per-layer
    constant included), recomputed in backward.
  * logits: ``V (d + 4 + 4)`` bytes per token: the logits, the float32 log-softmax the loss keeps, and its gradient
    at the start of backward.
  * vision tower, only when it trains (``vision: lora|full``), per patch (4 patches per visual token) and block:
    ``2(n-1) hv + 4 hv + 3 Iv``, ``+ 5 hv + Iv`` when trained fully, LoRA as above; the merger, when it or the tower
    trains, ``n hv`` per patch, ``+ 3 hv`` when trained fully.

  Assumed: SDPA or flash attention (no sequence-squared attention matrix; flash attention keeps no mask), logits
  for every position (transformers computes them all in training), peft's float32 adapters.
  ``benchmarks/activation_memory.py`` compares these counts with the tensors autograd saves for the real 3B and 7B
  widths: a language layer to the byte (trained, LoRA, with and without dropout, padded or not), a vision block 8%
  under; ``tests/test_inspect.py`` does the same for one language layer of each tiny family (Qwen3-VL with a query
  width unlike its hidden width, Qwen3-VL-MoE with and without the load-balancing loss): within 0.4% on CPU.
  Allocator fragmentation and temporaries come on top, so leave headroom.
- Weights, gradients and optimizer state per process (:func:`state_memory`), per part (vision, merger, llm = the
  language model and its head), counted on the model built from config.json on the meta device (every parameter's
  shape, a tied embedding once) as the recipes load and wrap it. Bytes per value as loaded: the config's ``dtype``
  (``auto``: bfloat16, as on a GPU). Trainer's default optimizer adamw_torch keeps exp_avg and exp_avg_sq in each
  trainable parameter's dtype (its per-tensor step counter is not counted); a gradient has its parameter's dtype.

  * ``full`` part, full recipe: weights, gradients and two AdamW states in the loaded dtype; ``frozen``: weights only.
  * LoRA: PEFT keeps the adapters in float32 whatever the base: ``r (in + out)`` values per adapted Linear layer
    (``+ out`` with DoRA's magnitude); on a mixture of experts' fused parameter (E x in x out, PEFT
    ``target_parameters``) ``r E (in + out)``. A part ``full`` under LoRA goes to PEFT's ``modules_to_save``: the
    frozen original plus a trainable copy (a tied head is copied apart from the embedding).
  * QLoRA (``load_in_4bit``): the language model's Linear weights (not the vision tower, the mergers or lm_head) in
    nf4 with double quantisation, :func:`nf4_bytes` (0.5 byte per value, one uint8 absmax per 64 values, one float32
    absmax per 256 blocks: about 0.516 bytes); ``prepare_model_for_kbit_training`` casts every other parameter
    (embeddings, norms, biases, the vision side, lm_head) to float32, and the trainable copies are made after it.
    One model copy per process only (DeepSpeed and FSDP are refused, as in training).
  * ``--sharding none`` (one GPU, DDP): every process holds everything; with more than one process DDP's reducer
    keeps its own bucketed copy of the gradients (``gradient_as_bucket_view`` is off by default), counted twice.
  * DeepSpeed ZeRO (``zero2``, ``zero3``): the engine casts the whole model to bf16/fp16 under mixed precision
    (float32 without), so weights and gradients are 2 bytes and each trainable value adds 12 bytes of optimizer
    state (float32 master weight, exp_avg, exp_avg_sq): the ZeRO paper's 2 + 2 + 12 per parameter (Rajbhandari et
    al., 2020). ZeRO-2 shards gradients and optimizer state over the N processes (2 + (2 + 12) / N bytes per trained
    value, frozen weights 2), ZeRO-3 the weights too ((2 + 2 + 12) / N, frozen 2 / N).
  * FSDP (full shard): everything sharded over the N processes; under mixed precision accelerate upcasts the
    trainable flat parameters to float32 (its mirror of DeepSpeed's master weights), so a trained value costs
    (4 + 4 + 8) / N bytes, a frozen one its loaded size / N. With LoRA a layer's frozen weights share the adapters'
    flat parameter and are upcast too; that is not counted.

  Not counted: communication buckets (DeepSpeed's reduce/allgather buckets, 5e8 values each in zero2.json), the
  layer FSDP or ZeRO-3 gathers for its forward and backward, CUDA context and allocator overhead.
  ``tests/test_inspect.py`` builds each tiny family's model as the recipes do (LoRA with bf16 weights, expert LoRA,
  a full part, a full part under LoRA, QLoRA on CPU) and compares these counts with its parameters, its gradients
  after a backward and AdamW's state after a step: equal to the byte; the sharding rules are formula tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from mevqa.cli_style import add_json_option, json_file, json_to_stdout, write_json_output
from mevqa.errors import MevqaError
from mevqa.log import is_main_process
from mevqa.messages import INPUT_MODES, build_messages, row_id
from mevqa.models.families import DEFAULT_FAMILY, FAMILIES, family, family_of, model_skeleton
from mevqa.models.loading import check_model_source, set_pixel_budgets
from mevqa.paths import refuse_outputs_onto_inputs
from mevqa.rows import read_rows

GIB = 1024 ** 3


# --- the processor's resize rule --------------------------------------------------------------------------------
def _resized(height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int,
             frames: int | None = None, temporal_factor: int = 2) -> tuple[int, int]:
    """``frames``: the budget bounds the whole video (Qwen3-VL's video processor), else one image or frame."""
    # lazy: transformers, so that `mevqa inspect --help` and build-data without --inspect-model stay quick
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as smart_resize_video

    try:
        if frames is not None:
            return smart_resize_video(max(frames, temporal_factor), height, width, temporal_factor=temporal_factor,
                                      factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
        return smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as exc:  # an aspect ratio beyond 200:1
        raise MevqaError(f"a {width}x{height} image cannot be given to the model ({exc})") from None


def image_tokens(height: int, width: int, *, min_pixels: int, max_pixels: int, patch_size: int = 14,
                 merge_size: int = 2) -> int:
    """Visual tokens of one ``height`` x ``width`` image under a ``(min_pixels, max_pixels)`` budget."""
    factor = patch_size * merge_size
    h, w = _resized(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return (h // factor) * (w // factor)


def video_tokens(frames: int, height: int, width: int, *, min_pixels: int, max_pixels: int, patch_size: int = 14,
                 merge_size: int = 2, temporal_patch_size: int = 2, budget: str = "frame") -> int:
    """Visual tokens of a video of ``frames`` frames (the last frame is repeated up to a whole temporal patch);
    ``budget``: what ``(min_pixels, max_pixels)`` bounds, one "frame" or the whole "video" (``Family.video_budget``)."""
    factor = patch_size * merge_size
    h, w = _resized(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels,
                    frames=frames if budget == "video" else None, temporal_factor=temporal_patch_size)
    return math.ceil(frames / temporal_patch_size) * (h // factor) * (w // factor)


def timestamp_tokens(tokenizer, frames: int, fps: float, temporal_patch_size: int = 2) -> int:
    """Text tokens Qwen3-VL's processor adds to a video of ``frames`` frames at ``fps``: before each temporal patch
    a ``<t seconds>`` tag (t the mean time of its frames) and a vision start / end pair around its tokens."""
    times = [i / fps for i in range(frames)] + [(frames - 1) / fps] * (-frames % temporal_patch_size)
    total = 0
    for first in range(0, len(times), temporal_patch_size):
        mean = (times[first] + times[first + temporal_patch_size - 1]) / 2
        total += len(tokenizer(f"<{mean:.1f} seconds>", add_special_tokens=False)["input_ids"]) + 2
    return total


# --- settings -----------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """The training settings that decide tokens and memory (field names as in the training config)."""
    model_name_or_path: str
    inputs: str
    system_prompt: str | None
    max_length: int
    max_frames: int | None
    per_device_train_batch_size: int
    gradient_checkpointing: bool
    dtype: str
    mixed_precision: str | None
    vision: str
    merger: str
    llm: str
    lora_r: int
    lora_dropout: float
    lora_llm_modules: list[str]
    lora_vision_modules: list[str]
    lora_target_regex: str | None
    min_pixels: int | None = None
    max_pixels: int | None = None
    video_min_pixels: int | None = None
    video_max_pixels: int | None = None
    video_fps: float | None = None
    train_file: str | None = None
    attn_implementation: str = "sdpa"
    load_in_4bit: bool = False
    use_dora: bool = False

    @classmethod
    def from_config(cls, config: str | Path | None = None, overrides: Sequence[str] = ()) -> "Settings":
        """The training config as the recipes resolve it (``mevqa.train.config.load_config``: defaults, the YAML, a
        LoRA preset, then ``KEY=VALUE`` overrides; checked)."""
        from mevqa.train.config import load_config  # lazy: the training stack, only with a training config

        argv = []
        for item in overrides:
            key, eq, value = item.partition("=")
            if not eq:
                raise MevqaError(f"--set {item!r}: expected KEY=VALUE with a training config key")
            argv += [f"--{key}", value]
        resolved = load_config(config, argv)
        return cls(**{f.name: getattr(resolved, f.name) for f in dataclasses.fields(cls)})

    @property
    def dtype_bytes(self) -> int:
        low = self.dtype in ("bfloat16", "float16", "auto") or self.mixed_precision in ("bf16", "fp16")
        return 2 if low else 4


@dataclass
class Budgets:
    """Pixel budgets and patch geometry as the processor applies them (after the config's budgets are set)."""
    image_pixels: tuple[int, int]
    video_pixels: tuple[int, int]
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    video_budget: str = "frame"        # what the video budget bounds: one "frame" or the whole "video"
    video_timing: str = "second_per_grid_ts"

    @classmethod
    def from_processor(cls, processor, family=None) -> "Budgets":
        """``family``: the model's (:mod:`mevqa.models.families`); None: Qwen2.5-VL's."""
        family = family or FAMILIES[DEFAULT_FAMILY]
        images, videos = processor.image_processor, processor.video_processor
        return cls(image_pixels=(int(images.size["shortest_edge"]), int(images.size["longest_edge"])),
                   video_pixels=(int(videos.size["shortest_edge"]), int(videos.size["longest_edge"])),
                   patch_size=int(images.patch_size), merge_size=int(images.merge_size),
                   temporal_patch_size=int(videos.temporal_patch_size), video_budget=family.video_budget,
                   video_timing=family.video_timing)

    def vision_tokens(self, vision) -> int:
        """Visual tokens of the loaded inputs of one row (a :class:`mevqa.messages.Vision`)."""
        low, high = self.image_pixels
        total = sum(image_tokens(image.height, image.width, min_pixels=low, max_pixels=high,
                                 patch_size=self.patch_size, merge_size=self.merge_size) for image in vision.images)
        low, high = self.video_pixels
        for video in vision.videos:  # (T, H, W, 3)
            total += video_tokens(video.shape[0], video.shape[1], video.shape[2], min_pixels=low, max_pixels=high,
                                  patch_size=self.patch_size, merge_size=self.merge_size,
                                  temporal_patch_size=self.temporal_patch_size, budget=self.video_budget)
        return total

    def timing_tokens(self, vision, tokenizer, video_fps: float | None = None) -> int:
        """Text tokens the processor adds to the loaded videos of one row to tell their times (Qwen3-VL only)."""
        if self.video_timing != "timestamps":
            return 0
        return sum(timestamp_tokens(tokenizer, video.shape[0], video_fps or fps, self.temporal_patch_size)
                   for video, fps in zip(vision.videos, vision.video_fps))


# --- memory ---------------------------------------------------------------------------------------------------------
def _geometry(model_config, fam) -> dict:
    text, vision = model_config.text_config, model_config.vision_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    hv, iv = fam.vision_widths(vision)
    layers = text.num_hidden_layers
    sparse = []  # the layers whose MLP is a mixture of experts (transformers' rule for Qwen3-VL-MoE)
    if fam.sparse_mlp and int(text.num_experts) > 0:
        dense_only = set(getattr(text, "mlp_only_layers", None) or ())
        step = int(getattr(text, "decoder_sparse_step", 1) or 1)
        sparse = [i for i in range(layers) if i not in dense_only and (i + 1) % step == 0]
    return {"h": text.hidden_size, "I": text.intermediate_size, "layers": layers,
            "heads": text.num_attention_heads, "kv_heads": text.num_key_value_heads,
            "hq": text.num_attention_heads * head_dim, "kv": text.num_key_value_heads * head_dim,
            "V": text.vocab_size, "hv": hv, "Iv": iv, "depth": vision.depth, "merge": vision.spatial_merge_size,
            "sparse_layers": len(sparse),
            "experts": int(getattr(text, "num_experts", 0) or 0) if sparse else 0,
            "top_k": int(text.num_experts_per_tok) if sparse else 0,
            "I_expert": int(text.moe_intermediate_size) if sparse else 0,
            "router_loss": bool(getattr(text, "output_router_logits", False)) if sparse else False}


def _lora_bytes(modules: Sequence[str], widths: dict[str, int], hidden: int, settings: Settings,
                mask_bytes: int) -> int:
    """Bytes per token (or patch) that LoRA adds in one layer whose ``modules`` carry adapters: peft keeps its
    adapters in float32, so each adapted layer keeps a float32 copy of its input (dropped out, or just cast) and its
    rank-r output, plus the dropout mask. ``widths``: input width of the layers whose input is not ``hidden``."""
    total = 0
    for name in modules:
        width = widths.get(name, hidden)
        total += 4 * width + 4 * settings.lora_r + (mask_bytes * width if settings.lora_dropout > 0 else 0)
    return total


def _language_layer_bytes(g: dict, settings: Settings, fam, mask_bytes: int, *, sparse: bool, length: int) -> int:
    """Bytes per token one language layer keeps for backward (dense MLP, or ``sparse``: a mixture of experts) in
    rows padded to ``length`` tokens."""
    d = settings.dtype_bytes
    n = 3 if d == 2 else 2
    h, hq, kv = g["h"], g["hq"], g["kv"]
    # A padded batch makes transformers repeat the key/value heads to every query head before SDPA.
    kv_sdpa = hq if settings.per_device_train_batch_size > 1 else kv
    full = settings.llm == "full"
    # Kept whenever gradients pass through a layer: the RMSNorms' inputs (float32 copies for 16-bit weights) and
    # their per-row scale, attention's q, k, v, output and per-head log-sum-exp (float32). Kept only for trained
    # weights: the Linear layers' inputs and the norms' normalised outputs.
    layer = (2 * (n - 1) * h + 2 * hq + 2 * kv_sdpa) * d + 4 * (2 + g["heads"])
    if settings.per_device_train_batch_size > 1 and settings.attn_implementation == "sdpa":
        layer += length * d  # SDPA keeps its own copy of the padding mask (rows x length x length) in every layer
    if full:
        layer += 4 * h * d
    if fam.qk_norm:  # RMSNorm of each query and key head: the same kept tensors at the q and k widths
        layer += (n - 1) * (hq + kv) * d + 4 * (g["heads"] + g["kv_heads"])
        if full:
            layer += (hq + kv) * d
    if not sparse:
        # The MLP's gate and up outputs and the activation's output; the down projection's input when it trains.
        layer += 3 * g["I"] * d + (g["I"] * d if full else 0)
    else:
        # transformers' default experts kernel (grouped_mm) on the k = top_k (token, expert) pairs of each token:
        # the joint gate/up output (2 I_e), the activation's output, the expert outputs and routing weights; the
        # router's float32 softmax (E values), its top-k weights and their sum; four int64 index vectors of k
        # (top-k, gather, sort, unsort). Trained experts also keep their inputs (the gathered hidden states) and
        # the down projection's input.
        k, ie, e = g["top_k"], g["I_expert"], g["experts"]
        layer += (3 * k * ie + k * h + k) * d + 4 * e + 4 * (k + 1) + 8 * 4 * k
        if full:
            layer += (k * h + k * ie) * d
        if g["router_loss"]:  # output_router_logits: the load-balancing loss's softmax and its top-k indices
            layer += e * d + 8 * k
    if settings.llm == "lora":
        widths = {"o_proj": hq, **{name: g["I"] for name in fam.mlp_width_inputs}}
        linear = [name for name in fam.lora_names("llm", settings.lora_llm_modules) if name not in fam.llm_experts]
        layer += _lora_bytes(linear, widths, h, settings, mask_bytes)
        if sparse:
            layer += sum(g["top_k"] * inputs * d for inputs, _ in _adapted_experts(g, settings, fam))
    return layer


def _adapted_experts(g: dict, settings: Settings, fam) -> list[tuple[int, int]]:
    """(input width, output width) of each fused expert parameter LoRA adapts in a sparse layer (PEFT
    ``target_parameters``): ``gate_up_proj`` maps h to the joint gate/up 2 Ie, ``down_proj`` Ie to h."""
    if settings.llm != "lora":
        return []
    widths = {"gate_up_proj": (g["h"], 2 * g["I_expert"]), "down_proj": (g["I_expert"], g["h"])}
    return [widths[name] for name in fam.lora_names("llm", settings.lora_llm_modules) if name in fam.llm_experts]


def _expert_lora_layer_bytes(g: dict, settings: Settings, fam) -> int:
    """Bytes one sparse layer keeps, whatever the token count, for LoRA on its fused expert parameters: the updated
    parameter (PEFT adds B A to it in the forward) and, for 16-bit weights, the 16-bit copies of A (r E x in) and
    B (out x r E) the update is computed from (in float32 A and B themselves are used: parameters, not counted)."""
    d, e, r = settings.dtype_bytes, g["experts"], settings.lora_r
    return sum(e * inputs * outputs * d + (r * e * (inputs + outputs) * d if d == 2 else 0)
               for inputs, outputs in _adapted_experts(g, settings, fam))


def activation_memory(tokens: int, patches: int, model_config, settings: Settings, *,
                      mask_bytes: int = 1) -> dict[str, int]:
    """Estimated bytes of activations for one micro-batch of ``tokens`` tokens (rows x padded length) whose vision
    inputs make ``patches`` vision patches; the formula and its assumptions are in the module docstring.
    ``mask_bytes``: bytes per element of a dropout mask (1 on CUDA; the CPU kernel keeps it in float32, 4)."""
    fam = family(getattr(model_config, "model_type", None), where="model config")
    g = _geometry(model_config, fam)
    d = settings.dtype_bytes
    n = 3 if d == 2 else 2
    kinds = [(g["layers"] - g["sparse_layers"], False), (g["sparse_layers"], True)]
    length = tokens // max(settings.per_device_train_batch_size, 1)
    # (layers of the kind, bytes one such layer keeps for this micro-batch)
    per_layer = [(count, tokens * _language_layer_bytes(g, settings, fam, mask_bytes, sparse=sparse, length=length)
                  + (_expert_lora_layer_bytes(g, settings, fam) if sparse else 0))
                 for count, sparse in kinds if count]
    if settings.gradient_checkpointing:  # each layer's input, plus the largest layer's set recomputed in backward
        language = tokens * g["layers"] * g["h"] * d + max(layer for _, layer in per_layer)
    else:
        language = sum(count * layer for count, layer in per_layer)
    memory = {"language_model": language, "logits": tokens * g["V"] * (d + 4 + 4), "vision": 0, "merger": 0}
    vision_trains = settings.vision in ("lora", "full")
    if vision_trains:
        block = (2 * (n - 1) * g["hv"] + 4 * g["hv"] + 3 * g["Iv"]) * d
        if settings.vision == "full":
            block += (5 * g["hv"] + g["Iv"]) * d
        else:
            block += _lora_bytes(fam.lora_names("vision", settings.lora_vision_modules),
                                 {name: g["Iv"] for name in fam.mlp_width_inputs}, g["hv"], settings, mask_bytes)
        if settings.gradient_checkpointing:
            memory["vision"] = patches * (g["depth"] * g["hv"] * d + block)
        else:
            memory["vision"] = patches * g["depth"] * block
    if vision_trains or settings.merger in ("lora", "full"):
        # The merger's norm input and GELU input; its Linear layers see 4 patches per merged token (hv per patch).
        merger = n * g["hv"] * d
        if settings.merger == "full":
            merger += 3 * g["hv"] * d
        elif settings.merger == "lora":
            merger += 2 * (4 * g["hv"] + 4 * settings.lora_r / g["merge"] ** 2
                           + (mask_bytes * g["hv"] if settings.lora_dropout > 0 else 0))
        # Qwen3-VL's DeepStack mergers each keep as much as the main one.
        mergers = 1 + len(getattr(model_config.vision_config, "deepstack_visual_indexes", None) or ())
        memory["merger"] = int(patches * merger * mergers)
    return memory


# --- weights, gradients and optimizer state -------------------------------------------------------------------
# What ``--sharding`` can say, and the accelerate config of recipes/accelerate/ that launches it.
SHARDING = {"none": "one GPU or DDP (single_gpu.yaml, multi_gpu.yaml)",
            "zero2": "DeepSpeed ZeRO-2 (deepspeed_zero2.yaml)",
            "zero3": "DeepSpeed ZeRO-3 (deepspeed_zero3.yaml)", "fsdp": "FSDP, full shard (fsdp.yaml)"}
STATE_TERMS = ("weights", "gradients", "optimizer")
_FLOAT32 = ("float32", "fp32", "float")


def nf4_bytes(values: int) -> int:
    """Bytes bitsandbytes keeps for one weight of ``values`` values in nf4 with double quantisation
    (``bitsandbytes.functional.quantize_4bit``, blocksize 64, ``compress_statistics``): two values per byte, one
    uint8 absmax per block of 64, one float32 absmax per 256 blocks (the nested blockwise quantisation) and the
    float32 offset; about 0.516 bytes per value. The two code tables (16 and 256 float32 values) are not counted."""
    blocks = -(-values // 64)
    return -(-values // 2) + blocks + 4 * -(-blocks // 256) + 4


def state_memory(skeleton, settings: Settings, *, processes: int = 1, sharding: str = "none") -> dict[str, dict]:
    """Bytes per process of weights, gradients and AdamW state (exp_avg, exp_avg_sq; under DeepSpeed also the
    float32 master weights) per training part ("vision", "merger", "llm"), with each part's parameter and trainable
    counts, for the model as the recipes load and wrap it; ``skeleton``: the model built from its config.json on the
    meta device (:func:`mevqa.models.families.model_skeleton`). The rules are in the module docstring."""
    import torch  # lazy: torch, only for the estimate

    # lazy: mevqa.train.parts imports peft and bitsandbytes, which `mevqa inspect --help` should not wait for
    from mevqa.train.parts import PARTS, lora_target_parameters, lora_target_regex, part_of, qlora_skip_modules

    if sharding not in SHARDING:
        raise MevqaError(f"sharding {sharding!r}: expected one of {', '.join(SHARDING)}")
    if processes < 1:
        raise MevqaError(f"processes must be at least 1, got {processes}")
    if settings.load_in_4bit and sharding != "none":
        raise MevqaError(f"load_in_4bit (QLoRA) runs one model copy per process (one GPU or DDP), not under "
                         f"{SHARDING[sharding].split(' (')[0]}; use --sharding none")
    fam = family_of(skeleton)
    lora = bool(settings.lora_target_regex) or "lora" in (settings.vision, settings.merger, settings.llm)
    # Bytes per value as loaded: the config's dtype ("auto" is bfloat16 on a GPU); QLoRA loads in bfloat16 and
    # prepare_model_for_kbit_training casts every unquantised parameter to float32.
    loaded = 4 if settings.load_in_4bit or settings.dtype in _FLOAT32 else 2
    quantised = set()
    if settings.load_in_4bit:  # the language model's Linear layers, but for the modules QLoRA leaves unquantised
        skip = qlora_skip_modules(fam)
        quantised = {f"{name}.weight" for name, module in skeleton.named_modules()
                     if isinstance(module, torch.nn.Linear) and part_of(name, fam) == "llm"
                     and not any(name == s or name.startswith(f"{s}.") or name.endswith(f".{s}") for s in skip)}
    # (part, values, bytes as loaded, trainable) of every tensor the wrapped model holds
    tensors = []
    seen = set()
    for name, param in skeleton.named_parameters(remove_duplicate=False):
        part = part_of(name, fam) or "other"
        mode = getattr(settings, part, "frozen")
        if id(param) not in seen:  # a tied weight is one tensor
            seen.add(id(param))
            size = nf4_bytes(param.numel()) if name in quantised else param.numel() * loaded
            tensors.append((part, param.numel(), size, mode == "full" and not lora))
        if mode == "full" and lora:  # PEFT modules_to_save: a trainable copy beside the frozen original (per module)
            tensors.append((part, param.numel(), param.numel() * loaded, True))
    if lora:  # PEFT keeps adapters in float32: A (r x in) and B (out x r); DoRA adds a magnitude per output
        r = settings.lora_r
        regex = lora_target_regex(settings, fam)
        for name, module in skeleton.named_modules():
            if regex and isinstance(module, torch.nn.Linear) and re.fullmatch(regex, name):
                values = r * (module.in_features + module.out_features) + (module.out_features if settings.use_dora
                                                                           else 0)
                tensors.append((part_of(name, fam) or "other", values, 4 * values, True))
        suffixes = lora_target_parameters(settings, fam)
        for name, param in skeleton.named_parameters():
            # A fused expert parameter (E x in x out, PEFT target_parameters): rank r per expert, A is r E x in and
            # B out x r E.
            if any(name.endswith(f".{suffix}") for suffix in suffixes):
                values = r * param.shape[0] * (param.shape[1] + param.shape[2])
                tensors.append((part_of(name, fam) or "other", values, 4 * values, True))
    sixteen = 2 if settings.dtype_bytes == 2 else 4  # DeepSpeed casts the model to its bf16/fp16 precision
    parts = {part: {"parameters": 0, "trainable": 0, **dict.fromkeys(STATE_TERMS, 0.0)}
             for part in (*PARTS, *sorted({t[0] for t in tensors} - set(PARTS)))}
    for part, values, size, trainable in tensors:
        entry = parts[part]
        if trainable:
            entry["trainable"] += values
        if sharding == "none":
            entry["weights"] += size
            if trainable:  # gradients in the parameter's dtype (DDP's reducer keeps a second, bucketed copy)
                entry["gradients"] += size * (2 if processes > 1 else 1)
                entry["optimizer"] += 2 * size
        elif sharding in ("zero2", "zero3"):
            entry["weights"] += values * sixteen / (processes if sharding == "zero3" else 1)
            if trainable:
                entry["gradients"] += values * sixteen / processes
                entry["optimizer"] += values * (4 + 8) / processes  # float32 master weights + AdamW's two states
        else:  # FSDP: accelerate upcasts the trainable flat parameters to float32 under mixed precision
            weight = values * 4 if trainable else size
            entry["weights"] += weight / processes
            if trainable:
                entry["gradients"] += values * 4 / processes
                entry["optimizer"] += values * 8 / processes
    for name, param in skeleton.named_parameters():
        parts[part_of(name, fam) or "other"]["parameters"] += param.numel()
    return {part: {key: math.ceil(value) for key, value in entry.items()} for part, entry in parts.items()}


# --- rows -----------------------------------------------------------------------------------------------------------
@dataclass
class RowTokens:
    id: str
    vision: dict[str, int]            # input mode -> visual tokens (modes whose media the row has)
    text: int | None = None           # text tokens of the chat in the config's mode (vision placeholders excluded)
    total: int | None = None          # text + visual tokens in the config's mode: what max_length is checked against


@dataclass
class InspectReport:
    settings: Settings
    budgets: Budgets
    rows: list[RowTokens]
    memory: dict[str, int]            # bytes per part for the worst micro-batch
    patches: int                      # vision patches of that micro-batch
    notes: list[str] = field(default_factory=list)
    state: dict[str, dict] | None = None   # state_memory(...): per part, bytes per process (None: not estimated)
    processes: int = 1
    sharding: str = "none"

    @property
    def longest(self) -> RowTokens:
        return max(self.rows, key=lambda r: r.total)

    @property
    def over_max_length(self) -> list[RowTokens]:
        return [r for r in self.rows if r.total > self.settings.max_length]

    def mode_stats(self) -> dict[str, dict]:
        stats = {}
        for mode in INPUT_MODES:
            counts = [r.vision[mode] for r in self.rows if mode in r.vision]
            if counts:
                stats[mode] = {"rows": len(counts), "min": min(counts), "median": statistics.median(counts),
                               "max": max(counts)}
        return stats

    def to_dict(self) -> dict:
        totals = [r.total for r in self.rows]
        longest = self.longest
        return {"settings": dataclasses.asdict(self.settings), "budgets": dataclasses.asdict(self.budgets),
                "visual_tokens": self.mode_stats(),
                "tokens": {"min": min(totals), "median": statistics.median(totals), "max": max(totals),
                           "longest_row": longest.id, "max_length": self.settings.max_length,
                           "rows_over_max_length": [r.id for r in self.over_max_length]},
                "activation_memory": {"batch": self.settings.per_device_train_batch_size, "tokens_per_row": longest.total,
                                      "vision_patches": self.patches, "bytes": dict(self.memory),
                                      "total_bytes": sum(self.memory.values())},
                "state_memory": self._state_dict(),
                "notes": list(self.notes),
                "rows": [dataclasses.asdict(r) for r in self.rows]}

    def _state_dict(self) -> dict | None:
        if self.state is None:
            return None
        totals = {key: sum(entry[key] for entry in self.state.values()) for key in STATE_TERMS}
        return {"processes": self.processes, "sharding": self.sharding, "optimizer": "adamw_torch",
                "bytes": {part: dict(entry) for part, entry in self.state.items()}, "total_bytes": totals,
                "total_with_activations_bytes": sum(totals.values()) + sum(self.memory.values())}

    def format(self) -> str:
        s, b = self.settings, self.budgets
        factor = b.patch_size * b.merge_size
        lines = [f"model {s.model_name_or_path} · inputs {s.inputs} · max_length {s.max_length} · "
                 f"max_frames {s.max_frames if s.max_frames is not None else 'all'}",
                 f"pixel budgets: image {b.image_pixels[0]}-{b.image_pixels[1]} px, video "
                 f"{'frame' if b.video_budget == 'frame' else '(all frames)'} "
                 f"{b.video_pixels[0]}-{b.video_pixels[1]} px (one visual token per {factor}x{factor} px)",
                 "", f"{'visual tokens per row':<24}{'rows':>7}{'min':>8}{'median':>8}{'max':>8}"]
        for mode, st in self.mode_stats().items():
            lines.append(f"  {mode:<22}{st['rows']:>7}{st['min']:>8}{st['median']:>8g}{st['max']:>8}")
        totals = [r.total for r in self.rows]
        over = self.over_max_length
        longest = self.longest
        lines += ["", f"text + visual tokens per row ({s.inputs}): min {min(totals)}, median "
                      f"{statistics.median(totals):g}, max {max(totals)} (row {longest.id})",
                  f"max_length {s.max_length}: " + ("every row fits" if not over else
                                                    f"{len(over)} row(s) over, training will refuse them (first: "
                                                    f"{', '.join(r.id for r in over[:3])}); raise max_length or lower "
                                                    "the pixel budget / frame cap")]
        mem = self.memory
        total = sum(mem.values())
        precision = {2: "16-bit", 4: "32-bit"}[s.dtype_bytes]
        lines += ["", f"activation memory estimate, one micro-batch of {s.per_device_train_batch_size} x {longest.total} "
                      f"tokens ({precision} activations, gradient checkpointing "
                      f"{'on' if s.gradient_checkpointing else 'off'}): {_size(total)}",
                  "  " + ", ".join(f"{part.replace('_', ' ')} {_size(value)}" for part, value in mem.items()),
                  "  (formula and assumptions: mevqa/train/inspect.py)" if self.state is not None else
                  "  (weights, gradients and optimizer state come on top; formula and assumptions: "
                  "mevqa/train/inspect.py)"]
        if self.state is not None:
            lines += ["", *self._state_lines()]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def _state_lines(self) -> list[str]:
        s, state = self.settings, self.state
        launch = ("one process" if self.processes == 1 else f"{self.processes} processes") + ", " + \
            SHARDING[self.sharding]
        master = "; optimizer: float32 master weights + AdamW's two states" if self.sharding.startswith("zero") else ""
        lines = [f"weights, gradients and AdamW state per process ({launch}){master}:",
                 f"  {'part':<10}{'mode':<12}{'parameters':>11}{'trainable':>11}{'weights':>12}{'gradients':>12}"
                 f"{'optimizer':>12}"]
        for part, entry in state.items():
            mode = getattr(s, part, "-") + (" (nf4)" if part == "llm" and s.load_in_4bit else "")
            lines.append(f"  {part:<10}{mode:<12}{_count(entry['parameters']):>11}{_count(entry['trainable']):>11}"
                         + "".join(f"{_size(entry[key]):>12}" for key in STATE_TERMS))
        totals = self._state_dict()["total_bytes"]
        lines.append(f"  {'total':<22}{_count(sum(e['parameters'] for e in state.values())):>11}"
                     f"{_count(sum(e['trainable'] for e in state.values())):>11}"
                     + "".join(f"{_size(totals[key]):>12}" for key in STATE_TERMS))
        activations = sum(self.memory.values())
        lines.append(f"per process: weights {_size(totals['weights'])} + gradients {_size(totals['gradients'])} + "
                     f"optimizer state {_size(totals['optimizer'])} + activations {_size(activations)} = "
                     f"{_size(sum(totals.values()) + activations)} (allocator, temporaries and communication "
                     f"buffers come on top)")
        return lines


def saved_activation_bytes(model, run) -> int:
    """Bytes of the distinct non-parameter storages autograd saves for backward while ``run()`` builds the graph:
    the measured counterpart of :func:`activation_memory` (a test and ``benchmarks/activation_memory.py`` compare
    the two)."""
    import torch  # lazy: torch, only for the activation estimate

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = run()
        total = sum(seen.values())
    del out
    return total


def _count(values: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if values >= scale:
            return f"{values / scale:.2f}{unit}"
    return str(values)


def _size(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB / 10 else f"{nbytes / 1024 ** 2:.1f} MiB"


def inspect_rows(rows: list[dict], processor, model_config, settings: Settings, *,
                 progress: bool = True) -> InspectReport:
    """Token counts of ``rows`` (media paths absolute, as :func:`mevqa.rows.read_rows` gives them) under
    ``settings``, with ``processor`` already holding the config's pixel budgets."""
    if not rows:
        raise MevqaError("no rows to inspect")
    budgets = Budgets.from_processor(processor, family(getattr(model_config, "model_type", None),
                                                       where=settings.model_name_or_path))
    tokenizer = processor.tokenizer
    results = []
    for row in tqdm(rows, desc="inspect", unit="row", disable=not (progress and is_main_process())):
        media = row.get("media") or {}
        answer = row.get("answer")
        with_answer = isinstance(answer, str) and bool(answer.strip())
        entry = RowTokens(id=row_id(row), vision={})
        for mode, spec in INPUT_MODES.items():
            if mode != settings.inputs and not all(key in media for key in spec.needs):
                continue
            messages, vision = build_messages(row, mode, system_prompt=settings.system_prompt,
                                              with_answer=with_answer, max_frames=settings.max_frames)
            entry.vision[mode] = budgets.vision_tokens(vision)
            if mode == settings.inputs:
                text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=not with_answer)
                placeholders = len(vision.images) + len(vision.videos)  # one <|image_pad|>/<|video_pad|> each
                entry.text = len(tokenizer(text)["input_ids"]) - placeholders \
                    + budgets.timing_tokens(vision, tokenizer, settings.video_fps)
                entry.total = entry.text + entry.vision[mode]
        results.append(entry)
    longest = max(results, key=lambda r: r.total)
    batch = settings.per_device_train_batch_size
    patches = batch * longest.vision[settings.inputs] * budgets.merge_size ** 2
    memory = activation_memory(batch * longest.total, patches, model_config, settings)
    notes = []
    if settings.lora_target_regex:
        notes.append("lora_target_regex is set: LoRA's own tensors are not counted in the estimate")
    return InspectReport(settings, budgets, results, memory, patches, notes)


def _read_rows(data_files: Sequence[str | Path]) -> list[dict]:
    """QA rows with absolute, checked media paths (the one place this module reads rows)."""
    return read_rows(data_files)


def load_processor_and_config(settings: Settings):
    """The processor of ``settings.model_name_or_path`` (with the config's pixel budgets set, as the trainer sets
    them) and its model config. Only the small processor and config files are read, never the weights."""
    from transformers import AutoConfig, AutoProcessor  # lazy: transformers; --help stays quick

    source = settings.model_name_or_path
    check_model_source(source)  # a missing folder, or a hub name not cached offline, fails at once (as training)
    try:
        processor = AutoProcessor.from_pretrained(source)
        model_config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MevqaError(f"{source}: cannot load the processor and config ({first}); pass --model with a folder that "
                         "holds them (the weights are not needed)") from None
    family(getattr(model_config, "model_type", None), where=source)  # one line naming the supported types
    if not hasattr(processor, "video_processor"):
        raise MevqaError(f"{source}: its processor has no video processor; expected the model family's own")
    set_pixel_budgets(processor, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels,
                      video_min_pixels=settings.video_min_pixels, video_max_pixels=settings.video_max_pixels)
    return processor, model_config


def inspect_files(data_files: Sequence[str | Path] | None = None, config: str | Path | None = None, *,
                  model: str | None = None, overrides: Sequence[str] = (), progress: bool = True,
                  processes: int = 1, sharding: str = "none") -> InspectReport:
    """Inspect QA files under a training config (``None``: the training defaults). ``data_files`` defaults to the
    config's ``train_file``; ``model`` replaces the config's ``model_name_or_path`` as the source of the processor
    and model config; ``processes`` and ``sharding`` (:data:`SHARDING`) describe the launch for
    :func:`state_memory`, counted on the model built from config.json on the meta device."""
    settings = Settings.from_config(config, overrides)
    if model:
        settings = dataclasses.replace(settings, model_name_or_path=str(model))
    if not data_files:
        if not settings.train_file:
            raise MevqaError("no --data given and the config has no train_file")
        data_files = [settings.train_file]
    rows = _read_rows(data_files)
    processor, model_config = load_processor_and_config(settings)
    report = inspect_rows(rows, processor, model_config, settings, progress=progress)
    return with_state(report, model_skeleton(settings.model_name_or_path), processes=processes, sharding=sharding)


def with_state(report: InspectReport, skeleton, *, processes: int = 1, sharding: str = "none") -> InspectReport:
    """``report`` with :func:`state_memory` of ``skeleton`` (the model built on the meta device) for the launch."""
    report.state = state_memory(skeleton, report.settings, processes=processes, sharding=sharding)
    report.processes, report.sharding = processes, sharding
    return report


# --- command line -------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="training config YAML (default: the training defaults)")
    parser.add_argument("--data", nargs="+", type=Path, metavar="QA.jsonl",
                        help="QA jsonl files (default: the config's train_file)")
    parser.add_argument("--model", help="folder or hub id holding the processor and config.json (default: the "
                                        "config's model_name_or_path; the weights are not read)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a config key, e.g. --set max_pixels=200704 (repeatable)")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="training processes (GPUs) the launch runs, accelerate's --num_processes")
    parser.add_argument("--sharding", choices=list(SHARDING), default="none",
                        help="how the launch splits weights, gradients and optimizer state over the processes: "
                             + "; ".join(f"{name}: {what}" for name, what in SHARDING.items()))
    add_json_option(parser, "the full report, per-row figures included")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_config(args.config, args.overrides)  # its train_file and model are inputs too
    refuse_outputs_onto_inputs(outputs={"--json": json_file(args.json)}, inputs={
        "--data": args.data or settings.train_file, "--config": args.config,
        "--model": args.model or settings.model_name_or_path})
    report = inspect_files(args.data, args.config, model=args.model, overrides=args.overrides,
                           processes=args.processes, sharding=args.sharding)
    if not json_to_stdout(args.json):
        print(report.format())
    if args.json is not None:
        write_json_output(args.json, report.to_dict())
    return 0
