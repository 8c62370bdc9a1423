"""The model families mevqa supports, keyed by ``config.model_type``: every fact that differs between them.

Public API::

    FAMILIES: dict[str, Family]              # "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"
    DEFAULT_FAMILY = "qwen2_5_vl"
    family(model_type, where="") -> Family     # one-line MevqaError naming the supported types when unknown
    family_of(model) -> Family                 # from ``model.config.model_type`` (PEFT-wrapped or not)
    family_of_source(name_or_path) -> Family   # reads config.json only (a local folder or the hub cache), never weights
    model_skeleton(name_or_path) -> model       # built from config.json on the meta device: names and shapes, no weights
    Family.part_of(name) -> "vision" | "merger" | "language_model" | "lm_head" | None
    Family.part_modules(part) -> tuple[str, ...]  # module paths that together hold every parameter of the part
    Family.lora_names(part, names, where) -> list[str]   # the layer names a config asks for, roles expanded
    Family.lora_parameters(names) -> list[str]  # of those, the fused expert parameters (PEFT target_parameters)
    Family.resize_factor(model_config) -> int  # vision patch_size * spatial_merge_size of that checkpoint

Everything else in mevqa asks this table; no code branches on a model's name. The facts were read from
transformers 5.24 (``models/{qwen2_vl,qwen2_5_vl,qwen3_vl,qwen3_vl_moe}``) and the released checkpoints' files:

- module paths (relative to the ``*ForConditionalGeneration`` model; PEFT prefixes ``base_model.model.``): the
  vision tower is ``model.visual`` in all four, the language model ``model.language_model``, the head ``lm_head``.
  The merger (vision -> language projector) is ``model.visual.merger``; Qwen3-VL adds the DeepStack mergers
  ``model.visual.deepstack_merger_list.N`` (projecting intermediate vision layers into early language layers),
  which belong to the merger part: frozen, LoRA'd or trained with it. Qwen3-VL's vision tower also has a learned
  position table (``model.visual.pos_embed``), part of the vision part.
- LoRA targets: vision blocks' attention is ``attn.{qkv,proj}`` in all; their MLP is ``mlp.{fc1,fc2}`` (Qwen2-VL),
  ``mlp.{gate,up,down}_proj`` (Qwen2.5-VL), ``mlp.linear_fc{1,2}`` (Qwen3-VL); the merger's Linear layers are
  ``mlp.0``/``mlp.2`` (Qwen2/2.5-VL) or ``linear_fc1``/``linear_fc2`` (Qwen3-VL, each DeepStack merger too); the
  language model's ``self_attn.{q,k,v,o}_proj`` and ``mlp.{gate,up,down}_proj``. Qwen3-VL-MoE's language MLP has no
  Linear layers: its experts are two fused 3-D parameters per layer, ``mlp.experts.gate_up_proj`` (E x hidden x
  2*width) and ``mlp.experts.down_proj`` (E x width x hidden), which PEFT adapts through ``target_parameters`` (one
  low-rank update per expert, rank r each); the router ``mlp.gate`` is not adapted. A config names vision/LLM layers
  by these names or by the roles ``attention`` and ``mlp``, which each family expands to its own names.
- resize factor (one visual token per factor x factor px): patch 14 x merge 2 = 28 (Qwen2/2.5-VL), 16 x 2 = 32
  (Qwen3-VL); read from the checkpoint's config, since the tiny test models use their own patch sizes.
- video timing, i.e. how the model learns when each frame was shown: Qwen2-VL only by frame order (temporal
  position = index of the frame pair); Qwen2.5-VL through ``second_per_grid_ts`` = temporal_patch_size / fps of the
  video metadata; Qwen3-VL through text: a ``<t seconds>`` tag before each temporal patch, t the mean time of its
  frames, from ``frames_indices / fps`` of the metadata. mevqa always passes its sampled frames with
  ``do_sample_frames=False`` and metadata ``fps`` = the frames' true rate (:mod:`mevqa.models.collate`).
- video pixel budget: the Qwen2-VL video processor (Qwen2/2.5-VL) applies ``size`` per frame; Qwen3-VL's applies it
  to the whole video (frames x height x width).
- activation memory (:mod:`mevqa.train.inspect`): Qwen3's attention RMS-normalises each query and key head
  (``q_norm``/``k_norm``, ``qk_norm``); Qwen3-VL-MoE's language MLP is a mixture of experts (``sparse_mlp``: top-k
  routing over ``num_experts`` experts of width ``moe_intermediate_size`` in the layers ``mlp_only_layers`` /
  ``decoder_sparse_step`` leave sparse).
- template names the other tools use: LLaMA-Factory ``qwen2_vl`` (Qwen2-VL and Qwen2.5-VL), ``qwen3_vl_nothink``
  (Qwen3-VL Instruct); ms-swift ``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mevqa.errors import MevqaError

DEFAULT_FAMILY = "qwen2_5_vl"
PARTS = ("vision", "merger", "language_model", "lm_head")
VISUAL = "model.visual"
LANGUAGE_MODEL = "model.language_model"
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Family:
    model_type: str
    name: str                             # as people write it
    checkpoints: tuple[str, ...]          # released Instruct checkpoints mevqa ships configs for (or names)
    vision_modules: tuple[str, ...]       # module paths holding the vision part (without its merger)
    merger_modules: tuple[str, ...]       # module paths holding the merger part (DeepStack mergers included)
    vision_lora: dict[str, tuple[str, ...]]   # role -> Linear names in each vision block (``attn.X`` / ``mlp.X``)
    merger_lora: tuple[str, ...]          # regexes (full module paths) of the merger part's Linear layers
    llm_lora: dict[str, tuple[str, ...]]      # role -> Linear names in each language-model layer
    mlp_width_inputs: frozenset[str]      # Linear layers whose input is their block's MLP width (memory estimate)
    patch_size: int                       # of the released checkpoints (a config's own value wins)
    merge_size: int
    video_timing: str                     # "frame order" | "second_per_grid_ts" | "timestamps"
    video_budget: str                     # "frame" | "video": what the video processor's size bounds
    llamafactory_template: str
    swift_template: str
    swift_budget_env: str                 # how ms-swift takes pixel budgets: "pixels" (MAX_PIXELS, VIDEO_MAX_PIXELS)
                                          # or "tokens" (IMAGE_MAX_TOKEN_NUM, VIDEO_MAX_TOKEN_NUM, per frame)
    vision_hidden_key: str = "hidden_size"   # the vision config's width (Qwen2-VL: embed_dim; hidden_size is its output)
    vision_mlp_ratio: bool = False           # the vision MLP width is width x mlp_ratio (Qwen2-VL), else intermediate_size
    language_modules: tuple[str, ...] = (f"{LANGUAGE_MODEL}.embed_tokens", f"{LANGUAGE_MODEL}.layers",
                                         f"{LANGUAGE_MODEL}.norm")
    vision_tower: str = VISUAL
    vision_blocks: str = f"{VISUAL}.blocks"
    language_layers: str = f"{LANGUAGE_MODEL}.layers"
    lm_head: str = "lm_head"
    llm_experts: tuple[str, ...] = ()     # fused expert parameters of each language-model layer's MLP (the role
                                          # ``mlp`` of a mixture of experts), named as in ``mlp.experts.<name>``
    qk_norm: bool = False                 # attention RMS-normalises each query and key head (Qwen3: q_norm, k_norm)
    sparse_mlp: bool = False              # the language MLP is a mixture of experts in the layers the config's
                                          # mlp_only_layers / decoder_sparse_step leave sparse (memory estimate)
    _patterns: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        def anchored(paths):
            return re.compile("|".join(rf"(?:(?:^|\.){re.escape(p)}(?:\.|$))" for p in paths))
        self._patterns.update({"merger": anchored(self.merger_modules), "vision": anchored(self.vision_modules),
                               "language_model": anchored(self.language_modules),
                               "lm_head": anchored([self.lm_head])})

    @property
    def resize_factor_released(self) -> int:
        return self.patch_size * self.merge_size

    def resize_factor(self, model_config) -> int:
        """One visual token per factor x factor px: the vision ``patch_size * spatial_merge_size`` of the config."""
        vision = model_config.vision_config
        return int(vision.patch_size) * int(vision.spatial_merge_size)

    def vision_widths(self, vision_config) -> tuple[int, int]:
        """(hidden width, MLP width) of the vision blocks of a config."""
        hidden = int(getattr(vision_config, self.vision_hidden_key))
        if self.vision_mlp_ratio:
            return hidden, int(hidden * vision_config.mlp_ratio)
        return hidden, int(vision_config.intermediate_size)

    def part_of(self, name: str) -> str | None:
        """The part a parameter or module name belongs to; PEFT prefixes and LoRA / modules_to_save infixes allowed."""
        for part in ("merger", "vision", "language_model", "lm_head"):
            if self._patterns[part].search(name):
                return part
        return None

    def part_modules(self, part: str) -> tuple[str, ...]:
        return {"vision": self.vision_modules, "merger": self.merger_modules,
                "language_model": self.language_modules, "lm_head": (self.lm_head,)}[part]

    def lora_roles(self, part: str) -> dict[str, tuple[str, ...]]:
        """Role -> the names LoRA can adapt in each block of ``part`` ("vision" or "llm"): Linear layers, and for a
        mixture of experts the fused expert parameters under ``mlp``."""
        if part == "vision":
            return self.vision_lora
        return {role: layers + (self.llm_experts if role == "mlp" else ()) for role, layers in self.llm_lora.items()}

    def lora_parameters(self, names) -> list[str]:
        """The entries of ``names`` (as :meth:`lora_names` gives them for the llm part) that are fused expert
        parameters, as PEFT's ``target_parameters`` names them (a dotted suffix of the parameter's full name)."""
        return [f"mlp.experts.{name}" for name in names if name in self.llm_experts]

    def lora_names(self, part: str, names, where: str = "config") -> list[str]:
        """The layer names ``names`` asks for in each block of ``part`` ("vision" or "llm"): the roles
        ``attention`` and ``mlp`` expand to this family's layers; any other name must be one of them."""
        roles = self.lora_roles(part)
        key = "lora_vision_modules" if part == "vision" else "lora_llm_modules"
        known = [n for layer_names in roles.values() for n in layer_names]
        out: list[str] = []
        for name in names:
            expanded = roles.get(name, (name,))
            for item in expanded:
                if item not in known:
                    raise MevqaError(f"{where}: {key} names {name!r}, which {self.name} ({self.model_type}) does "
                                     f"not have; expected some of {', '.join(known)} or the roles "
                                     f"{', '.join(r for r in roles if roles[r])}")
                if item not in out:
                    out.append(item)
        return out


FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family(
        model_type="qwen2_vl", name="Qwen2-VL", checkpoints=("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct"),
        vision_modules=(f"{VISUAL}.patch_embed", f"{VISUAL}.blocks"), merger_modules=(f"{VISUAL}.merger",),
        vision_lora={"attention": ("qkv", "proj"), "mlp": ("fc1", "fc2")},
        merger_lora=(rf"{re.escape(VISUAL)}\.merger\.mlp\.[02]",),   # mlp.1 is the GELU
        llm_lora={"attention": _ATTENTION, "mlp": _MLP}, mlp_width_inputs=frozenset({"fc2", "down_proj"}),
        patch_size=14, merge_size=2, video_timing="frame order", video_budget="frame",
        llamafactory_template="qwen2_vl", swift_template="qwen2_vl", swift_budget_env="pixels", vision_hidden_key="embed_dim",
        vision_mlp_ratio=True),
    Family(
        model_type="qwen2_5_vl", name="Qwen2.5-VL",
        checkpoints=("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
        vision_modules=(f"{VISUAL}.patch_embed", f"{VISUAL}.blocks"), merger_modules=(f"{VISUAL}.merger",),
        vision_lora={"attention": ("qkv", "proj"), "mlp": _MLP},
        merger_lora=(rf"{re.escape(VISUAL)}\.merger\.mlp\.[02]",),
        llm_lora={"attention": _ATTENTION, "mlp": _MLP}, mlp_width_inputs=frozenset({"down_proj"}),
        patch_size=14, merge_size=2, video_timing="second_per_grid_ts", video_budget="frame",
        llamafactory_template="qwen2_vl", swift_template="qwen2_5_vl", swift_budget_env="pixels"),
    Family(
        model_type="qwen3_vl", name="Qwen3-VL", checkpoints=("Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"),
        vision_modules=(f"{VISUAL}.patch_embed", f"{VISUAL}.pos_embed", f"{VISUAL}.blocks"),
        merger_modules=(f"{VISUAL}.merger", f"{VISUAL}.deepstack_merger_list"),
        vision_lora={"attention": ("qkv", "proj"), "mlp": ("linear_fc1", "linear_fc2")},
        merger_lora=(rf"{re.escape(VISUAL)}\.merger\.linear_fc[12]",
                     rf"{re.escape(VISUAL)}\.deepstack_merger_list\.\d+\.linear_fc[12]"),
        llm_lora={"attention": _ATTENTION, "mlp": _MLP}, mlp_width_inputs=frozenset({"linear_fc2", "down_proj"}),
        patch_size=16, merge_size=2, video_timing="timestamps", video_budget="video",
        llamafactory_template="qwen3_vl_nothink", swift_template="qwen3_vl", swift_budget_env="tokens",
        qk_norm=True),
    Family(
        model_type="qwen3_vl_moe", name="Qwen3-VL-MoE", checkpoints=("Qwen/Qwen3-VL-30B-A3B-Instruct",),
        vision_modules=(f"{VISUAL}.patch_embed", f"{VISUAL}.pos_embed", f"{VISUAL}.blocks"),
        merger_modules=(f"{VISUAL}.merger", f"{VISUAL}.deepstack_merger_list"),
        vision_lora={"attention": ("qkv", "proj"), "mlp": ("linear_fc1", "linear_fc2")},
        merger_lora=(rf"{re.escape(VISUAL)}\.merger\.linear_fc[12]",
                     rf"{re.escape(VISUAL)}\.deepstack_merger_list\.\d+\.linear_fc[12]"),
        # The experts are fused 3-D parameters, no Linear layers: the role mlp is llm_experts.
        llm_lora={"attention": _ATTENTION, "mlp": ()}, llm_experts=("gate_up_proj", "down_proj"),
        mlp_width_inputs=frozenset({"linear_fc2"}),
        patch_size=16, merge_size=2, video_timing="timestamps", video_budget="video",
        llamafactory_template="qwen3_vl_nothink", swift_template="qwen3_vl", swift_budget_env="tokens",
        qk_norm=True, sparse_mlp=True),
)}


def family(model_type, where: str = "") -> Family:
    """The family of ``model_type``; an unknown type is one line naming the supported ones."""
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    prefix = f"{where}: " if where else ""
    raise MevqaError(f"{prefix}model_type {model_type!r} is not supported; mevqa supports "
                     f"{', '.join(FAMILIES)} ({', '.join(f.name for f in FAMILIES.values())})")


def family_of(model) -> Family:
    """The family of a loaded model (PEFT-wrapped or not: the config passes through)."""
    config = getattr(model, "config", None)
    return family(getattr(config, "model_type", None), where=type(model).__name__)


def config_file(name_or_path) -> Path:
    """config.json of a local model folder or a cached hub model (never downloaded when HF_HUB_OFFLINE=1)."""
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        found = path / "config.json"
        if not found.is_file():
            raise MevqaError(f"{path}: not a model folder (no config.json)")
        return found
    from transformers.utils import cached_file  # lazy: transformers; every command imports families

    try:
        found = cached_file(str(name_or_path), "config.json")
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MevqaError(f"{name_or_path}: cannot read its config.json ({first})") from None
    return Path(found)


def family_of_source(name_or_path) -> Family:
    """The family of a model folder or hub name, from its config.json alone (before any weights load)."""
    check_model_source(str(name_or_path))  # a missing folder or an uncached hub name offline: its own one line
    file = config_file(name_or_path)
    try:
        model_type = json.loads(file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise MevqaError(f"{file}: not a readable config.json ({exc})") from None
    return family(model_type, where=str(file))


def check_model_source(name_or_path: str) -> None:
    """Fail fast, before anything loads, when ``name_or_path`` cannot give a model: a folder without
    ``config.json``, a local-looking path that does not exist, or (with ``HF_HUB_OFFLINE=1``) a hub name that is
    not in the local cache."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MevqaError(f"{path}: not a model folder (no config.json)")
        return
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    if looks_local:
        raise MevqaError(f"{name_or_path}: model folder does not exist")
    if offline:
        from huggingface_hub import try_to_load_from_cache  # lazy: see cached_file above

        if not isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            raise MevqaError(f"{name_or_path}: not a local folder and not in the Hugging Face cache, and "
                             "HF_HUB_OFFLINE=1 forbids downloading it")


def model_skeleton(name_or_path):
    """The model of ``name_or_path`` built from its config.json alone on the meta device: every module and parameter
    name and shape, no weights and no memory. Measured on a shared 2-core CPU: 0.1-0.7 s for the Qwen2.5-VL-7B,
    Qwen3-VL-4B and -8B configs; the first build in a process also imports the family's model code (3.6-6 s), which
    loading the weights would import anyway. Module patterns are checked on it before weights load."""
    # lazy: torch and transformers; this table is read by commands whose --help and checks must stay quick
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.modeling_utils import set_zero3_state

    family_of_source(name_or_path)  # an unsupported model_type is its own one line
    try:
        config = AutoConfig.from_pretrained(str(name_or_path))
        # set_zero3_state: under a ZeRO-3 launch from_config would wrap the build in deepspeed.zero.Init, which
        # partitions parameters across processes; a meta skeleton holds none.
        with torch.device("meta"), set_zero3_state():
            return AutoModelForImageTextToText.from_config(config)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MevqaError(f"{config_file(name_or_path)}: cannot build the model from its config ({first})") from None
