"""The training config: one typed dataclass, filled from a YAML file and then from ``--field value`` overrides.

Both recipes read the same :class:`TrainConfig`; ``recipes/lora.py`` trains parts marked ``lora`` through PEFT,
``recipes/full.py`` accepts only ``frozen`` and ``full`` parts. Unknown keys, in the YAML or on the command line, are
errors that name the key; values are checked against the field's type (bool, int, float, str, list of str, or
optional of those). The resolved config is written as ``train_config.yaml`` beside every checkpoint, so a run can be
reproduced or resumed from what it actually used.
"""

from __future__ import annotations

import contextlib

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mevqa.errors import MevqaError

CONFIG_NAME = "train_config.yaml"
PART_MODES = ("frozen", "lora", "full")
SCHEDULERS = ("cosine", "linear", "constant")
MIXED_PRECISION = ("no", "bf16", "fp16")
# eval_loss, the leaderboard's Avg, and the overall figures of mevqa.eval.score.
BEST_METRICS = ("eval_loss", "avg", "uf1_coarse", "uar_coarse", "uf1_fine", "uar_fine", "bleu", "rouge1", "rouge1_f",
                "sentence_bleu")

_ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
_MLP = ["gate_proj", "up_proj", "down_proj"]
# Named LoRA target sets (users name them in configs; the values are ordinary config fields).
LORA_PRESETS: dict[str, dict] = {
    # MEGC2025 baseline: LoRA on the vision encoder blocks, the merger and q/k of the language model.
    "megc2025_baseline": {"vision": "lora", "merger": "lora", "llm": "lora", "lora_vision_modules": ["qkv", "proj"],
                          "lora_llm_modules": ["q_proj", "k_proj"]},
    # The language model's attention only (Qwen's own qwen-vl-finetune LoRA).
    "llm_attention": {"vision": "frozen", "merger": "frozen", "llm": "lora", "lora_llm_modules": _ATTENTION},
    # Every linear layer of the language model (the usual QLoRA choice).
    "llm_all_linear": {"vision": "frozen", "merger": "frozen", "llm": "lora", "lora_llm_modules": _ATTENTION + _MLP},
    # LoRA language model with the vision encoder and merger trained fully (ms-swift's lora_llm).
    "llm_lora_full_vision": {"vision": "full", "merger": "full", "llm": "lora", "lora_llm_modules": _ATTENTION + _MLP},
    # Every linear layer of all three parts.
    "all_linear": {"vision": "lora", "merger": "lora", "llm": "lora", "lora_vision_modules": ["qkv", "proj"] + _MLP,
                   "lora_llm_modules": _ATTENTION + _MLP},
}


@dataclass
class TrainConfig:
    # --- model ------------------------------------------------------------------------------------------------
    model_name_or_path: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    dtype: str = "bfloat16"                  # dtype the weights are loaded in (full fine-tunes: float32 + bf16 autocast)
    attn_implementation: str = "sdpa"        # sdpa | flash_attention_2 | eager
    load_in_4bit: bool = False               # QLoRA: bitsandbytes nf4 base weights (GPU only); vision and lm_head stay unquantised

    # --- data -------------------------------------------------------------------------------------------------
    train_file: str | None = None            # QA jsonl from `mevqa build-data` / `mevqa synth-data`
    eval_file: str | None = None             # validation QA jsonl (loss + generation scored with mevqa.eval.score)
    inputs: str = "oao"                      # input mode: video | oao | flow | frames+flow (mevqa.messages.INPUT_MODES)
    system_prompt: str | None = "default"    # default: per-question prompts listing the allowed labels (1st place 2025);
                                             # none: no system turn; any other text: that prompt for every question
    max_length: int = 4096                   # a longer sample is an error, never truncated
    min_pixels: int | None = None            # pixel budget per image (None: the processor's own)
    max_pixels: int | None = None
    video_min_pixels: int | None = None      # pixel budget per video frame
    video_max_pixels: int | None = None
    max_frames: int | None = None            # cap on frames per video, kept uniformly (None: all frames of the row)
    video_fps: float | None = None           # frame rate told to the model for videos (None: each clip's true sampled
                                             # fps; an ME clip lasts < 0.5 s, so at its true rate every frame pair
                                             # gets the same temporal position; e.g. 2.0 spreads them as slow motion)
    dataloader_num_workers: int = 0

    # --- which parts train, and how ----------------------------------------------------------------------------
    vision: str = "frozen"                   # frozen | lora | full  (vision encoder: patch embedding + blocks)
    merger: str = "frozen"                   # frozen | lora | full  (vision -> language projector)
    llm: str = "lora"                        # frozen | lora | full  (language model + lm_head)
    lora_preset: str | None = None           # fills the part modes and LoRA modules below (see LORA_PRESETS);
                                             # keys set explicitly in the YAML or on the command line still win
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_llm_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_vision_modules: list[str] = field(default_factory=lambda: ["qkv", "proj", "gate_proj", "up_proj", "down_proj"])
    lora_target_regex: str | None = None     # replaces the per-part targets: a regex over full module names
    use_dora: bool = False

    # --- optimisation ----------------------------------------------------------------------------------------
    learning_rate: float = 1e-4
    lr_vision: float | None = None           # per-part learning rates (None: learning_rate)
    lr_merger: float | None = None
    lr_llm: float | None = None
    weight_decay: float = 0.0                # applied to matrices only, never to biases and norms
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler: str = "cosine"             # cosine | linear | constant (all after a linear warmup)
    warmup_ratio: float = 0.0
    warmup_steps: int = 0                    # wins over warmup_ratio when > 0
    per_device_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    num_epochs: int = 1
    max_steps: int = -1                      # optimizer steps; > 0 wins over num_epochs
    seed: int = 42
    gradient_checkpointing: bool = False
    mixed_precision: str | None = None       # no | bf16 | fp16; None: what `accelerate launch` / its config says

    # --- evaluation, checkpoints, logging ---------------------------------------------------------------------
    output_dir: str = "runs/lora"
    eval_steps: int = 0                      # evaluate every N steps (0: only at the end); needs eval_file
    eval_generate: bool = True               # also generate answers and score them (else validation loss only)
    eval_batch_size: int = 4
    eval_max_new_tokens: int = 64
    metric_for_best: str = "avg"             # a key of mevqa.eval.score's overall metrics, or eval_loss
    save_steps: int = 0                      # checkpoint every N steps (0: only the last step)
    save_total_limit: int = 2                # checkpoints kept (the best one is kept apart in <output_dir>/best)
    stop_after_steps: int = 0                # stop (with a checkpoint) after N steps of this launch: time-limited jobs
    resume_from_checkpoint: str | None = "auto"  # a checkpoint dir, auto (latest in output_dir) or none
    logging_steps: int = 1
    report_to: list[str] = field(default_factory=lambda: ["auto"])  # tensorboard, wandb; auto: tensorboard (+ wandb when installed)
    run_name: str | None = None


def _field_types() -> dict[str, object]:
    return typing.get_type_hints(TrainConfig)


def _convert(name: str, value, type_hint, *, source: str):
    """Check (YAML) or parse (command-line string) ``value`` for a field of ``type_hint``."""
    args = typing.get_args(type_hint)
    optional = (typing.get_origin(type_hint) in (typing.Union, types.UnionType)) and type(None) in args
    if optional:
        inner = next(arg for arg in args if arg is not type(None))
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        return _convert(name, value, inner, source=source)
    where = f"{source}: {name}"
    if typing.get_origin(type_hint) is list:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = yaml.safe_load(text)
            else:
                value = [item.strip() for item in text.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise MevqaError(f"{where}: expected a list of strings, got {value!r}")
        return value
    if type_hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
            return False
        raise MevqaError(f"{where}: expected true or false, got {value!r}")
    if type_hint in (int, float):
        accepted = (int,) if type_hint is int else (int, float)  # an int field takes no 1.5, a float field takes 2
        if isinstance(value, accepted) and not isinstance(value, bool):
            return type_hint(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return type_hint(value.strip())
        raise MevqaError(f"{where}: expected {'an integer' if type_hint is int else 'a number'}, got {value!r}")
    if type_hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. a bare number used as a run name
        raise MevqaError(f"{where}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {type_hint!r} for {name}")


def _unknown(key: str, source: str) -> MevqaError:
    import difflib

    close = difflib.get_close_matches(key, [f.name for f in dataclasses.fields(TrainConfig)], n=3)
    hint = f"did you mean {' or '.join(close)}?" if close else "the keys are the fields of mevqa/train/config.py"
    return MevqaError(f"{source}: unknown config key {key!r} ({hint})")


def load_yaml(path: str | Path) -> dict:
    """Read a config YAML into a dict of checked values (unknown keys are errors)."""
    path = Path(path)
    if not path.is_file():
        raise MevqaError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise MevqaError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MevqaError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    hints = _field_types()
    values = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown(key, str(path))
        values[key] = _convert(key, value, hints[key], source=str(path))
    return values


def parse_overrides(argv: list[str]) -> dict:
    """Parse ``--field value`` / ``--field=value`` pairs (dashes or underscores) into checked values."""
    hints = _field_types()
    values = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise MevqaError(f"command line: unexpected argument {arg!r} (expected --field value)")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in hints:
            raise _unknown(key, "command line")
        if not eq:
            if i + 1 >= len(argv):
                raise MevqaError(f"command line: --{key} needs a value")
            i += 1
            value = argv[i]
        values[key] = _convert(key, value, hints[key], source="command line")
        i += 1
    return values


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check values that types alone do not catch; returns ``cfg``."""
    def bad(name, what):
        return MevqaError(f"config: {name}={getattr(cfg, name)!r}: expected {what}")

    from mevqa.messages import INPUT_MODES

    if cfg.inputs not in INPUT_MODES:
        raise bad("inputs", " | ".join(INPUT_MODES))
    for part in ("vision", "merger", "llm"):
        if getattr(cfg, part) not in PART_MODES:
            raise bad(part, " | ".join(PART_MODES))
    if cfg.lr_scheduler not in SCHEDULERS:
        raise bad("lr_scheduler", " | ".join(SCHEDULERS))
    if cfg.mixed_precision is not None and cfg.mixed_precision not in MIXED_PRECISION:
        raise bad("mixed_precision", " | ".join(MIXED_PRECISION))
    for name in ("per_device_batch_size", "gradient_accumulation_steps", "lora_r", "logging_steps",
                 "eval_batch_size", "eval_max_new_tokens", "max_length"):
        if getattr(cfg, name) < 1:
            raise bad(name, "a positive integer")
    for name in ("save_steps", "eval_steps", "stop_after_steps", "warmup_steps", "num_epochs",
                 "dataloader_num_workers"):
        if getattr(cfg, name) < 0:
            raise bad(name, "an integer >= 0")
    if cfg.max_steps <= 0 and cfg.num_epochs <= 0:
        raise MevqaError("config: set max_steps > 0 or num_epochs > 0")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        raise bad("warmup_ratio", "a fraction in [0, 1)")
    if not 0.0 <= cfg.lora_dropout < 1.0:
        raise bad("lora_dropout", "a fraction in [0, 1)")
    if cfg.save_total_limit < 1:
        raise bad("save_total_limit", "at least 1")
    for tracker in cfg.report_to:
        if tracker not in ("auto", "tensorboard", "wandb", "none"):
            raise MevqaError(f"config: report_to: unknown tracker {tracker!r} (expected auto, tensorboard, wandb "
                             f"or none)")
    if cfg.metric_for_best not in BEST_METRICS:
        raise bad("metric_for_best", " | ".join(BEST_METRICS))
    if cfg.metric_for_best != "eval_loss" and not cfg.eval_generate:
        raise MevqaError(f"config: metric_for_best={cfg.metric_for_best!r} needs eval_generate: true (or choose "
                         f"eval_loss)")
    if cfg.dtype not in ("bfloat16", "float16", "float32", "auto"):
        raise bad("dtype", "bfloat16 | float16 | float32 | auto")
    return cfg


def load_config(config_file: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML values over the defaults, then command-line overrides over those; validated."""
    values = load_yaml(config_file) if config_file else {}
    values.update(parse_overrides(list(overrides or [])))
    preset = values.get("lora_preset")
    if preset is not None:
        if preset not in LORA_PRESETS:
            raise MevqaError(f"config: lora_preset={preset!r}: expected one of {', '.join(LORA_PRESETS)}")
        values = {**LORA_PRESETS[preset], **values}
    return validate(TrainConfig(**values))


def parse_args(argv: list[str]) -> TrainConfig:
    """A recipe's command line: ``[--config FILE] [--field value ...]``."""
    argv = list(argv)
    config_file = None
    for i, arg in enumerate(argv):
        if arg == "--config":
            if i + 1 >= len(argv):
                raise MevqaError("command line: --config needs a file")
            config_file = argv[i + 1]
            del argv[i:i + 2]
            break
        if arg.startswith("--config="):
            config_file = arg.split("=", 1)[1]
            del argv[i]
            break
    return load_config(config_file, argv)


def to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, directory: str | Path) -> Path:
    """Write the resolved config as ``<directory>/train_config.yaml`` (atomically)."""
    from mevqa.jsonl import atomic_path

    target = Path(directory) / CONFIG_NAME
    with atomic_path(target) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    return target
