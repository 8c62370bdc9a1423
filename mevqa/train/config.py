"""The training config: one typed dataclass, filled from a YAML file and then from ``--field value`` overrides.

Both recipes read the same :class:`TrainConfig`; ``recipes/lora.py`` trains parts marked ``lora`` through PEFT,
``recipes/full.py`` accepts only ``frozen`` and ``full`` parts. Each field carries its one line of help
(``field(metadata={"help": ...})``), which ``--help`` prints. Unknown keys, in the YAML or on the command line, are
errors that name the key; values are checked against the field's type (bool, int, float, str, list of str, a mapping
of plain values, or optional of those) and then by :func:`validate`. The resolved config is written as
``train_config.yaml`` beside every checkpoint, so a run can be reproduced or resumed from what it actually used.

Resuming compares a checkpoint's config with the current one on every field except :data:`RESULT_NEUTRAL`
(fields that change neither the weights nor which evaluation is best) and the run length
(:data:`RUN_LENGTH`, which may change as long as the checkpoint lies within it). A field added later counts by
default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mevqa.errors import MevqaError

CONFIG_NAME = "train_config.yaml"
# The rest of the output layout: <output_dir>/{checkpoint-N/, final/, best/, train_log.jsonl, logs/}.
FINAL_DIR, BEST_DIR, LOG_NAME = "final", "best", "train_log.jsonl"
TRAINER_STATE_NAME = "trainer_state.json"  # Trainer's; its presence marks a checkpoint whose files are all written
WEIGHTS_NAME = "model.safetensors"          # a plain / DDP checkpoint's trainable weights
RUN_STATE_NAME = "run_state.json"           # the launch and data a checkpoint was made with
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
    "all_linear": {"vision": "lora", "merger": "lora", "llm": "lora", "lora_vision_modules": ["attention", "mlp"],
                   "lora_llm_modules": _ATTENTION + _MLP},
}


def _f(default=dataclasses.MISSING, help: str = "", *, factory=dataclasses.MISSING):  # noqa: A002
    return field(default=default, default_factory=factory, metadata={"help": help})


@dataclass
class TrainConfig:
    # --- model ------------------------------------------------------------------------------------------------
    model_name_or_path: str = _f("Qwen/Qwen2.5-VL-3B-Instruct", "base model: a Hugging Face name or a local folder")
    dtype: str = _f("bfloat16", "dtype the weights are loaded in: bfloat16 | float16 | float32 | auto (full "
                                "fine-tuning without DeepSpeed: float32 with bf16 mixed precision)")
    attn_implementation: str = _f("sdpa", "sdpa | flash_attention_2 | eager")
    load_in_4bit: bool = _f(False, "QLoRA: the language model in bitsandbytes nf4; vision tower, merger and lm_head "
                                   "stay unquantised (GPU, or CPU with bitsandbytes >= 0.48)")

    # --- data -------------------------------------------------------------------------------------------------
    train_file: str | None = _f(None, "QA jsonl to train on (mevqa build-data / split / synth-data)")
    eval_file: str | None = _f(None, "validation QA jsonl: loss, and answers generated and scored with mevqa.eval")
    inputs: str = _f("oao", "input mode: video | oao | flow | frames+flow")
    system_prompt: str | None = _f("default", "default: per-question prompts listing the allowed labels; none: no "
                                              "system turn; any other text: that prompt for every question")
    max_length: int = _f(4096, "tokens per sample (text and vision); a longer sample is an error, never truncated")
    min_pixels: int | None = _f(None, "smallest image area in pixels (None: the processor's own)")
    max_pixels: int | None = _f(None, "largest image area in pixels (None: the processor's own)")
    video_min_pixels: int | None = _f(None, "smallest video frame area in pixels")
    video_max_pixels: int | None = _f(None, "largest video frame area in pixels")
    max_frames: int | None = _f(None, "frames per video, kept uniformly (None: all frames of the row)")
    video_fps: float | None = _f(None, "frame rate told to the model for videos (None: each clip's true rate; an ME "
                                       "lasts < 0.5 s, so 2.0 spreads its frames out as slow motion)")
    dataloader_num_workers: int = _f(0, "processes preparing batches (0: the training process itself)")
    media_settings: dict | None = _f(None, "how build-data made the inputs (frames, size, flow, head_motion, blend, "
                                           "face_crop): filled from the rows' media; given, it must match them. "
                                           "mevqa answer / predict build raw clips' inputs with it")
    hierarchical_prompt: bool = _f(False, "fine questions state the gold coarse class first, as answer_strategy "
                                          "hierarchical asks them (HierMEQA)")

    # --- which parts train, and how ----------------------------------------------------------------------------
    vision: str = _f("frozen", "vision encoder (patch embedding + blocks): frozen | lora | full")
    merger: str = _f("frozen", "vision -> language projector: frozen | lora | full")
    llm: str = _f("lora", "language model and lm_head: frozen | lora | full")
    lora_preset: str | None = _f(None, "fills vision/merger/llm and the LoRA modules: " + " | ".join(LORA_PRESETS)
                                       + " (keys set explicitly still win)")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)")
    lora_dropout: float = _f(0.05, "dropout on the LoRA input, in [0, 1)")
    lora_llm_modules: list[str] = _f(help="Linear layers of each language-model block that get LoRA",
                                     factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_vision_modules: list[str] = _f(help="Linear layers of each vision block that get LoRA (the roles attention "
                                             "and mlp stand for the model family's own layers)",
                                        factory=lambda: ["attention", "mlp"])
    lora_target_regex: str | None = _f(None, "a regex over full module names replacing the per-part LoRA targets")
    use_dora: bool = _f(False, "DoRA (weight-decomposed LoRA) instead of LoRA")

    # --- optimisation ----------------------------------------------------------------------------------------
    learning_rate: float = _f(1e-4, "peak learning rate of AdamW (every part without its own rate)")
    lr_vision: float | None = _f(None, "learning rate of the vision encoder (None: learning_rate)")
    lr_merger: float | None = _f(None, "learning rate of the merger (None: learning_rate)")
    lr_llm: float | None = _f(None, "learning rate of the language model (None: learning_rate)")
    weight_decay: float = _f(0.0, "AdamW weight decay, on matrices only (never biases and norms)")
    adam_beta1: float = _f(0.9, "AdamW beta1")
    adam_beta2: float = _f(0.999, "AdamW beta2")
    adam_epsilon: float = _f(1e-8, "AdamW epsilon")
    max_grad_norm: float = _f(1.0, "clip the global gradient norm to this (0: no clipping)")
    lr_scheduler: str = _f("cosine", "cosine | linear | constant, each after a linear warmup")
    warmup_ratio: float = _f(0.0, "warmup as a fraction of the optimizer steps, in [0, 1)")
    warmup_steps: int = _f(0, "warmup in optimizer steps; wins over warmup_ratio when > 0")
    per_device_batch_size: int = _f(1, "samples per process per micro-batch")
    gradient_accumulation_steps: int = _f(1, "micro-batches per optimizer step")
    num_epochs: int = _f(1, "passes over the training file (when max_steps <= 0)")
    max_steps: int = _f(-1, "optimizer steps; > 0 wins over num_epochs")
    seed: int = _f(42, "seed of the weights' random parts (LoRA), dropout and the data order")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward (less memory, ~20-30% slower)")
    mixed_precision: str | None = _f(None, "no | bf16 | fp16; None: what accelerate launch / its config says")

    # --- evaluation, checkpoints, logging ---------------------------------------------------------------------
    output_dir: str = _f("runs/lora", "where checkpoint-N/, final/, best/, train_log.jsonl and logs/ go")
    eval_steps: int = _f(0, "evaluate every N optimizer steps (0: at the end only); needs eval_file")
    eval_generate: bool = _f(True, "also generate answers and score them (else validation loss only)")
    eval_batch_size: int = _f(4, "samples per process per evaluation batch")
    eval_max_new_tokens: int = _f(64, "longest generated answer in tokens")
    metric_for_best: str = _f("avg", "what picks best/: " + " | ".join(BEST_METRICS))
    answer_strategy: str = _f("direct", "how evaluation (and mevqa answer / predict, from train_config.yaml) "
                                        "answers: direct | constrained | vote, with hierarchical and/or au-rules "
                                        "joined by +")
    answer_votes: int = _f(5, "vote: answers sampled per question")
    answer_vote_temperature: float = _f(0.5, "vote: sampling temperature (0: greedy)")
    answer_fine_labels: list[str] = _f(help="constrained / hierarchical: DATASET=A,B items replacing a dataset's "
                                            "allowed fine classes (on the command line: '[\"samm=a,b\"]')",
                                       factory=list)
    answer_au_tables: list[str] = _f(help="au-rules: DATASET=TABLE items (a shipped table or a YAML file); empty: "
                                          "samm=samm, casme2=casme2, casme3=emotion_qwen_vl; given: only those "
                                          "datasets", factory=list)
    answer_max_aus: int = _f(8, "constrained: longest AU list answered")
    save_steps: int = _f(0, "checkpoint every N optimizer steps (0: at the last step only)")
    save_total_limit: int = _f(2, "checkpoints kept (best/ is kept apart)")
    stop_after_steps: int = _f(0, "stop with a checkpoint after N steps of this launch (time-limited jobs); rerun "
                                  "the same command to go on")
    resume_from_checkpoint: str | None = _f("auto", "auto: the latest checkpoint in output_dir; a checkpoint "
                                                    "folder; none: start over (removes the previous run's outputs)")
    logging_steps: int = _f(1, "log loss, learning rates and throughput every N steps")
    report_to: list[str] = _f(help="trackers: tensorboard, wandb, none; auto: tensorboard (+ wandb when installed)",
                              factory=lambda: ["auto"])
    run_name: str | None = _f(None, "run name for trackers (None: the output_dir's name)")


# Fields that change neither the trained weights nor which evaluation is best: a checkpoint may be resumed with
# other values. Evaluation settings that change the scores (eval_file, eval_steps, eval_generate,
# eval_max_new_tokens, metric_for_best) are not here: best/ would compare scores of two set-ups. Gradient
# checkpointing recomputes the same activations with the same dropout masks (torch.utils.checkpoint restores the
# RNG state), so it changes memory and speed only. max_length only refuses rows (nothing is truncated), so a run
# stopped by a long row goes on from its last checkpoint once max_length is raised.
RESULT_NEUTRAL = frozenset({
    "output_dir", "run_name", "report_to", "logging_steps", "save_steps", "save_total_limit", "stop_after_steps",
    "resume_from_checkpoint", "dataloader_num_workers", "eval_batch_size", "gradient_checkpointing", "max_length",
})
# The run's length may change (to train on); a checkpoint past the new end is an error.
RUN_LENGTH = frozenset({"max_steps", "num_epochs"})


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
    if type_hint is dict:
        if isinstance(value, str):
            with contextlib.suppress(yaml.YAMLError):
                value = yaml.safe_load(value)
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value) \
                or not all(item is None or isinstance(item, (str, int, float, bool)) for item in value.values()):
            raise MevqaError(f"{where}: expected a mapping of names to plain values, got {value!r}")
        return value
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
    hint = f"did you mean {' or '.join(close)}?" if close else "--help lists the keys"
    return MevqaError(f"{source}: unknown config key {key!r} ({hint})")


def load_yaml(path: str | Path) -> dict:
    """Read a config YAML into a dict of checked values (unknown keys are errors)."""
    path = Path(path)
    if not path.is_file():
        raise MevqaError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MevqaError(f"{path}: not a valid YAML text ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MevqaError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    hints = _field_types()
    values = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown(str(key), str(path))
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
    if cfg.dtype not in ("bfloat16", "float16", "float32", "auto"):
        raise bad("dtype", "bfloat16 | float16 | float32 | auto")
    for name in ("per_device_batch_size", "gradient_accumulation_steps", "lora_r", "lora_alpha", "logging_steps",
                 "eval_batch_size", "eval_max_new_tokens", "max_length"):
        if getattr(cfg, name) < 1:
            raise bad(name, "a positive integer")
    for name in ("save_steps", "eval_steps", "stop_after_steps", "warmup_steps", "num_epochs",
                 "dataloader_num_workers"):
        if getattr(cfg, name) < 0:
            raise bad(name, "an integer >= 0")
    for name in ("min_pixels", "max_pixels", "video_min_pixels", "video_max_pixels", "max_frames"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise bad(name, "a positive integer or none")
    for low, high in (("min_pixels", "max_pixels"), ("video_min_pixels", "video_max_pixels")):
        if None not in (getattr(cfg, low), getattr(cfg, high)) and getattr(cfg, low) > getattr(cfg, high):
            raise MevqaError(f"config: {low}={getattr(cfg, low)} exceeds {high}={getattr(cfg, high)}")
    if cfg.max_steps <= 0 and cfg.num_epochs <= 0:
        raise MevqaError("config: nothing to train (num_epochs 0 and no max_steps > 0): set max_steps or "
                         "num_epochs, or, for a zero-shot config, run it with mevqa cv or answer with mevqa predict")
    for name in ("learning_rate", "lr_vision", "lr_merger", "lr_llm", "adam_epsilon", "video_fps"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise bad(name, "a finite number > 0")
    for name in ("weight_decay", "max_grad_norm"):
        if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0):
            raise bad(name, "a finite number >= 0")
    for name in ("adam_beta1", "adam_beta2", "warmup_ratio", "lora_dropout"):
        if not 0.0 <= getattr(cfg, name) < 1.0:  # NaN fails too
            raise bad(name, "a fraction in [0, 1)")
    if cfg.save_total_limit < 1:
        raise bad("save_total_limit", "at least 1")
    if not 0 <= cfg.seed < 2 ** 32:  # numpy's and torch's seed range
        raise bad("seed", "an integer in [0, 2**32)")
    if cfg.lora_target_regex is not None:
        try:
            re.compile(cfg.lora_target_regex)
        except re.error as exc:
            raise bad("lora_target_regex", f"a regular expression ({exc})") from None
    for tracker in cfg.report_to:
        if tracker not in ("auto", "tensorboard", "wandb", "none"):
            raise MevqaError(f"config: report_to: unknown tracker {tracker!r} (expected auto, tensorboard, wandb "
                             f"or none)")
    if cfg.metric_for_best not in BEST_METRICS:
        raise bad("metric_for_best", " | ".join(BEST_METRICS))
    from mevqa.strategies import check_options

    check_options(cfg.answer_strategy, strategy_options(cfg), "config: answer_strategy")
    if cfg.metric_for_best != "eval_loss" and not cfg.eval_generate:
        raise MevqaError(f"config: metric_for_best={cfg.metric_for_best!r} needs eval_generate: true (or choose "
                         f"eval_loss)")
    return cfg


def strategy_options(cfg: TrainConfig):
    """The answer strategy's options (:class:`mevqa.strategies.StrategyOptions`) that ``cfg`` sets. Votes are
    seeded as ``mevqa predict`` seeds them by default (0), so evaluation and prediction draw the same samples."""
    from mevqa.strategies import StrategyOptions, parse_au_tables, parse_fine_labels

    return StrategyOptions(votes=cfg.answer_votes, vote_temperature=cfg.answer_vote_temperature, seed=0,
                           fine_labels=parse_fine_labels(cfg.answer_fine_labels, "config: answer_fine_labels"),
                           au_tables=parse_au_tables(cfg.answer_au_tables, "config: answer_au_tables"),
                           max_aus=cfg.answer_max_aus, max_new_tokens=cfg.eval_max_new_tokens)


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
    i = 0
    while i < len(argv):
        if argv[i] == "--config" or argv[i].startswith("--config="):
            if config_file is not None:
                raise MevqaError("command line: --config given twice (one YAML file; override its fields with "
                                 "--field value)")
            if argv[i] == "--config" and i + 1 >= len(argv):
                raise MevqaError("command line: --config needs a file")
            config_file = argv[i + 1] if argv[i] == "--config" else argv[i].split("=", 1)[1]
            del argv[i:i + 2 if argv[i] == "--config" else i + 1]
            continue
        i += 1
    return load_config(config_file, argv)


def _type_name(hint) -> str:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is list:
        return "list of str (a,b or [a, b])"
    if hint is dict:
        return "mapping ({key: value, ...})"
    if len(args) == 1 and len(typing.get_args(hint)) == 2:
        return f"{_type_name(args[0])} or none"
    return getattr(hint, "__name__", str(hint))


def help_text(prog: str, summary: str) -> str:
    """``--help`` for a recipe: usage, then every field with its type, default and help, in the dataclass order."""
    hints = _field_types()
    lines = [f"usage: accelerate launch [accelerate options] {prog} [--config FILE] [--field value ...]", "",
             summary, "", "--config FILE: a YAML file of the fields below (recipes/configs/); --field value pairs "
             "override it. Fields:", ""]
    for item in dataclasses.fields(TrainConfig):
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        shown = "none" if default is None else yaml.safe_dump(default, default_flow_style=True).strip()
        shown = shown.removesuffix("\n...").strip()
        lines.append(f"  --{item.name} {_type_name(hints[item.name])}  (default: {shown})")
        lines.append(f"      {item.metadata['help']}")
    return "\n".join(lines)


def resume_differences(saved: TrainConfig, current: TrainConfig) -> list[str]:
    """``field (saved -> current)`` for every field that makes a checkpoint of ``saved`` unfit to resume now."""
    return [f"{item.name} ({getattr(saved, item.name)!r} -> {getattr(current, item.name)!r})"
            for item in dataclasses.fields(TrainConfig)
            if item.name not in RESULT_NEUTRAL | RUN_LENGTH
            and getattr(saved, item.name) != getattr(current, item.name)]


def save_config(cfg: TrainConfig, directory: str | Path) -> Path:
    """Write the resolved config as ``<directory>/train_config.yaml`` (atomically)."""
    from mevqa.jsonl import atomic_path

    target = Path(directory) / CONFIG_NAME
    with atomic_path(target) as tmp:
        tmp.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), encoding="utf-8")
    return target
