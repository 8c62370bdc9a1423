"""The training config: :class:`TrainConfig`, transformers' ``TrainingArguments`` with mevqa's fields added (as TRL's
``SFTConfig`` is), filled from a YAML file and then from ``--field value`` overrides by transformers'
``HfArgumentParser``.

Trainer's names for everything Trainer owns (``per_device_train_batch_size``, ``num_train_epochs``,
``lr_scheduler_type``, ``learning_rate``, ``bf16``, ``save_steps``, ``metric_for_best_model``, ...), mevqa's names
only for what is mevqa's (model loading, data files, inputs, the parts and LoRA, per-part learning rates,
evaluation by generated answers and its strategies). Unknown keys are errors that name the key (with "did you mean"),
a key in mevqa's former spelling is an error naming the new one, a key given twice in a YAML file is an error, and
values are checked against the field's type and then by :func:`validate`. The resolved config is written as
``train_config.yaml`` beside every checkpoint, so a run can be reproduced or resumed from what it actually used.

Resuming compares a checkpoint's config with the current one on every field except :data:`RESULT_NEUTRAL`
(fields that change neither the weights nor which evaluation is best) and the run length (:data:`RUN_LENGTH`,
which may change as long as the checkpoint lies within it). A field added later, by mevqa or by transformers,
counts by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from accelerate.utils import is_mps_available, is_npu_available, is_xpu_available
from transformers import HfArgumentParser, SchedulerType, TrainingArguments

from mevqa.answering.strategies import StrategyOptions, check_options, parse_au_tables, parse_fine_labels
from mevqa.errors import MevqaError
from mevqa.jsonl import atomic_path
from mevqa.log import is_main_process
from mevqa.messages import INPUT_MODES
from mevqa.runfolder import differences

CONFIG_NAME = "train_config.yaml"
# The rest of the output layout: <output_dir>/{checkpoint-N/, final/, best/, train_log.jsonl, logs/}.
FINAL_DIR, BEST_DIR, LOG_NAME = "final", "best", "train_log.jsonl"
TRAINER_STATE_NAME = "trainer_state.json"  # Trainer's, written inside each checkpoint
RUN_STATE_NAME = "run_state.json"           # the launch and data a checkpoint was made with; written last
PART_MODES = ("frozen", "lora", "full")
# eval_loss, the leaderboard's Avg, and the overall figures of mevqa.eval.score.
BEST_METRICS = ("eval_loss", "avg", "uf1_coarse", "uar_coarse", "uf1_fine", "uar_fine", "bleu", "rouge1", "rouge1_f",
                "sentence_bleu")
# mevqa's former names of fields Trainer owns: such a key is an error naming the new one.
RENAMED = {"per_device_batch_size": "per_device_train_batch_size", "num_epochs": "num_train_epochs",
           "lr_scheduler": "lr_scheduler_type (constant with a warmup is constant_with_warmup)",
           "eval_batch_size": "per_device_eval_batch_size", "metric_for_best": "metric_for_best_model",
           "mixed_precision": "bf16: true or fp16: true (neither: what accelerate launch says)",
           "warmup_ratio": "warmup_steps (a value below 1 is a fraction of the run's steps)"}

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
class TrainConfig(TrainingArguments):
    """Trainer's arguments plus mevqa's fields; some of Trainer's defaults changed for mevqa's runs (below)."""

    # --- Trainer's fields with mevqa's defaults -----------------------------------------------------------------
    output_dir: str | None = _f("runs/lora", "where checkpoint-N/, final/, best/, train_log.jsonl and logs/ go")
    learning_rate: float = _f(1e-4, "peak learning rate of AdamW (every part without its own lr_<part>)")
    lr_scheduler_type: SchedulerType | str = _f("cosine", "Trainer's schedulers: linear | cosine | constant | "
                                          "constant_with_warmup | ...; warmup by warmup_steps")
    per_device_train_batch_size: int = _f(1, "samples per process per micro-batch")
    num_train_epochs: float = _f(1.0, "passes over the training file (when max_steps is -1); 0 in a config "
                                      "file: zero-shot for mevqa cv")
    per_device_eval_batch_size: int = _f(4, "samples per process per evaluation batch (answers are generated)")
    logging_steps: float = _f(1, "log loss, learning rates and throughput every N steps")
    logging_nan_inf_filter: bool = _f(False, "False: a non-finite loss stops the run with one line (mevqa)")
    remove_unused_columns: bool = _f(False, "mevqa's collator needs every column: keep False")
    save_total_limit: int | None = _f(2, "checkpoints kept (best/ is kept apart)")
    metric_for_best_model: str | None = _f("avg", "what picks best/: " + " | ".join(BEST_METRICS))
    resume_from_checkpoint: str | None = _f("auto", "auto: the latest checkpoint in output_dir; a checkpoint "
                                                    "folder; none: start over (removes the previous run's outputs)")

    # --- model ------------------------------------------------------------------------------------------------
    model_name_or_path: str = _f("Qwen/Qwen2.5-VL-3B-Instruct", "base model: a Hugging Face name or a local folder")
    dtype: str = _f("bfloat16", "dtype the weights are loaded in: bfloat16 | float16 | float32 | auto (full "
                                "fine-tuning without DeepSpeed: float32 with bf16 mixed precision)")
    attn_implementation: str = _f("sdpa", "sdpa | flash_attention_2 | eager")
    load_in_4bit: bool = _f(False, "QLoRA: the language model in bitsandbytes nf4; vision tower, merger and lm_head "
                                   "stay unquantised (GPU, or CPU with bitsandbytes >= 0.48)")

    # --- data -------------------------------------------------------------------------------------------------
    train_file: str | None = _f(None, "QA jsonl to train on (mevqa build-data / split / synth-data)")
    eval_file: str | None = _f(None, "validation QA jsonl: loss, and answers generated and scored with mevqa.eval; "
                                     "evaluated at the end, and as eval_strategy / eval_steps say")
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
    media_settings: dict | str | None = _f(None, "how build-data made the inputs (frames, size, flow, head_motion, "
                                                 "blend, face_crop): filled from the rows' media; given, it must "
                                                 "match them. mevqa answer / predict build raw clips' inputs with it")
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
    lora_llm_modules: list[str] = _f(help="Linear layers of each language-model block that get LoRA (the roles "
                                          "attention and mlp stand for the family's own; on a mixture of experts mlp "
                                          "is the fused expert parameters)",
                                     factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_vision_modules: list[str] = _f(help="Linear layers of each vision block that get LoRA (the roles attention "
                                             "and mlp stand for the model family's own layers)",
                                        factory=lambda: ["attention", "mlp"])
    lora_target_regex: str | None = _f(None, "a regex over full module names replacing the per-part LoRA targets")
    use_dora: bool = _f(False, "DoRA (weight-decomposed LoRA) instead of LoRA")

    # --- per-part learning rates (AdamW groups; the one road for learning rates) -------------------------------
    lr_vision: float | None = _f(None, "learning rate of the vision encoder (None: learning_rate)")
    lr_merger: float | None = _f(None, "learning rate of the merger (None: learning_rate)")
    lr_llm: float | None = _f(None, "learning rate of the language model (None: learning_rate)")

    # --- evaluation by generated answers, time-limited jobs ------------------------------------------------------
    eval_generate: bool = _f(True, "also generate answers and score them (else validation loss only)")
    eval_max_new_tokens: int = _f(64, "longest generated answer in tokens")
    answer_strategy: str = _f("direct", "how evaluation (and mevqa answer / predict, from train_config.yaml) "
                                        "answers: direct | constrained | vote, with hierarchical and/or au-rules "
                                        "joined by +")
    answer_votes: int = _f(5, "vote: answers sampled per question")
    answer_vote_temperature: float = _f(0.5, "vote: sampling temperature (0: greedy)")
    answer_fine_labels: list[str] = _f(help="constrained / hierarchical: DATASET=A,B items replacing a dataset's "
                                            "allowed fine classes", factory=list)
    answer_au_tables: list[str] = _f(help="au-rules: DATASET=TABLE items (a shipped table or a YAML file); empty: "
                                          "samm=samm, casme2=casme2, casme3=emotion_qwen_vl; given: only those "
                                          "datasets", factory=list)
    answer_max_aus: int = _f(8, "constrained: longest AU list answered")
    stop_after_steps: int = _f(0, "stop with a checkpoint after N steps of this launch (time-limited jobs); rerun "
                                  "the same command to go on")

    def __post_init__(self):
        for name in _OPTIONAL_MEVQA:  # "none" on the command line
            if isinstance(getattr(self, name), str) and getattr(self, name).strip().lower() in ("none", "null"):
                setattr(self, name, None)
        for name in _LIST_MEVQA:  # a,b or [a, b] as one command-line word
            value = getattr(self, name)
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
                text = value[0].strip()
                items = yaml.safe_load(text) if text.startswith("[") else text.split(",")
                setattr(self, name, [str(item).strip() for item in items if str(item).strip()])
        if isinstance(self.media_settings, str):
            try:
                self.media_settings = yaml.safe_load(self.media_settings)
            except yaml.YAMLError:
                pass  # kept as text: validate() refuses a media_settings that is not a mapping, in one line
        for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                         ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
            # transformers takes the old name only when the new one is unset, so a differing old value (a command
            # line override of a YAML that sets the new name) would be dropped without a word.
            if None not in (getattr(self, old), getattr(self, new)) and getattr(self, old) != getattr(self, new):
                raise MevqaError(f"config: {old}={getattr(self, old)!r} disagrees with {new}={getattr(self, new)!r}; "
                                 f"{old} is transformers' old name for {new}, which wins: set {new}")
        if self.activation_checkpointing_kwargs is None and self.gradient_checkpointing_kwargs is None:
            # non-reentrant: works with frozen embeddings and PEFT without enable_input_require_grads
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        super().__post_init__()


# Fields that change neither the trained weights nor which evaluation is best: a checkpoint may be resumed with
# other values. Evaluation settings that change the scores (eval_file, eval_strategy, eval_steps, eval_generate,
# eval_max_new_tokens, metric_for_best_model) are not here: best/ would compare scores of two set-ups. Activation
# checkpointing recomputes the same activations with the same dropout masks (torch.utils.checkpoint restores the RNG
# state), so it changes memory and speed only. max_length only refuses rows (nothing is truncated), so a run stopped
# by a long row goes on from its last checkpoint once max_length is raised. The launch (processes, backend, mixed
# precision) is compared through run_state.json instead.
RESULT_NEUTRAL = frozenset({
    "output_dir", "run_name", "report_to", "project", "logging_strategy", "logging_steps", "logging_first_step",
    "log_on_each_node", "log_level", "log_level_replica", "disable_tqdm", "save_strategy", "save_steps",
    "save_total_limit", "save_on_each_node", "stop_after_steps", "resume_from_checkpoint", "dataloader_num_workers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "per_device_eval_batch_size", "activation_checkpointing", "activation_checkpointing_kwargs",
    "gradient_checkpointing", "gradient_checkpointing_kwargs", "max_length", "use_cpu", "deepspeed", "fsdp",
    "fsdp_config", "local_rank", "ddp_timeout", "skip_memory_metrics", "push_to_hub", "hub_token",
    "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision", "trackio_space_id",
    "trackio_bucket_id", "trackio_static_space_id", "do_train", "do_eval", "do_predict",
})
# The run's length may change (to train on); a checkpoint past the new end is an error.
RUN_LENGTH = frozenset({"max_steps", "num_train_epochs"})
_OPTIONAL_MEVQA = ("train_file", "eval_file", "system_prompt", "lora_preset", "lora_target_regex", "media_settings")
_LIST_MEVQA = ("lora_llm_modules", "lora_vision_modules", "answer_fine_labels", "answer_au_tables")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option shown with its type (``--lora_r int``), its help and its default."""

    def _get_default_metavar_for_optional(self, action):
        kind = getattr(action.type, "__name__", "str")
        return {"string_to_bool": "bool"}.get(kind, kind)


class _Parser(HfArgumentParser):
    """transformers' parser of TrainConfig, its errors one line."""

    def error(self, message):
        raise MevqaError(f"command line: {message}")


@functools.cache
def _parser(given_only: bool = False) -> _Parser:
    """The parser; ``given_only``: defaults suppressed, so a parse holds only the fields given."""
    parser = _Parser(TrainConfig, allow_abbrev=False, formatter_class=_HelpFormatter, add_help=False)
    if given_only:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
    return parser


@functools.cache
def _hints() -> dict:
    return typing.get_type_hints(TrainConfig)


def _actions() -> dict[str, argparse.Action]:
    return {option[2:]: action for option, action in _parser()._option_string_actions.items()
            if option.startswith("--") and "-" not in option[2:] and action.dest != "help"}


def _unknown(key: str, source: str) -> MevqaError:
    if key in RENAMED:
        return MevqaError(f"{source}: {key!r} is now {RENAMED[key]} (Trainer's name); rename the key")
    close = difflib.get_close_matches(key, list(_actions()), n=3)
    hint = f"did you mean {' or '.join(close)}?" if close else "--help lists the keys"
    return MevqaError(f"{source}: unknown config key {key!r} ({hint})")


def _as_words(key: str, value) -> list[str]:
    """A YAML value as the command line writes it, so that one parser (HfArgumentParser's) checks both."""
    if isinstance(value, bool):
        return [f"--{key}", str(value).lower()]
    if isinstance(value, dict):
        return [f"--{key}", json.dumps(value)]
    if isinstance(value, list):
        return [f"--{key}", *map(str, value)] if value else []
    return [f"--{key}", str(value)]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, a key given twice in one mapping an error (PyYAML would keep the last silently)."""


def _unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise MevqaError(f"line {key_node.start_mark.line + 1}: key {key!r} given twice")
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(path: str | Path) -> dict:
    """Read a config YAML into a dict of checked values (unknown, renamed and repeated keys are errors)."""
    path = Path(path)
    if not path.is_file():
        raise MevqaError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except MevqaError as exc:
        raise MevqaError(f"{path}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MevqaError(f"{path}: not a valid YAML text ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MevqaError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    words, values = [], {}
    for key, value in data.items():
        if key not in _actions():
            raise _unknown(str(key), str(path))
        if value is None or value == []:  # None where the field may be None; an empty list as it is
            if value is None and type(None) not in typing.get_args(_hints()[key]):
                raise MevqaError(f"{path}: {key}: expected a value, got none")
            values[key] = value
        else:
            words += _as_words(key, value)
    try:
        values.update(parse_overrides(words))
    except MevqaError as exc:
        raise MevqaError(f"{path}: {str(exc).removeprefix('command line: ')}") from None
    return values


def parse_overrides(argv: list[str]) -> dict:
    """``--field value`` / ``--field=value`` pairs (dashes or underscores), parsed by HfArgumentParser into typed
    values: only the fields given."""
    actions = _actions()
    for arg in argv:
        if arg.startswith("--"):
            key = arg[2:].partition("=")[0].replace("-", "_")
            if key not in actions:
                raise _unknown(key, "command line")
    return vars(_parser(given_only=True).parse_args(list(argv)))


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check values that types alone do not catch; returns ``cfg``."""
    def bad(name, what):
        return MevqaError(f"config: {name}={getattr(cfg, name)!r}: expected {what}")

    if not (cfg.output_dir or "").strip():
        raise MevqaError("config: output_dir is empty: name the folder for the checkpoints and results")
    if cfg.inputs not in INPUT_MODES:
        raise bad("inputs", " | ".join(INPUT_MODES))
    for part in ("vision", "merger", "llm"):
        if getattr(cfg, part) not in PART_MODES:
            raise bad(part, " | ".join(PART_MODES))
    if cfg.dtype not in ("bfloat16", "float16", "float32", "auto"):
        raise bad("dtype", "bfloat16 | float16 | float32 | auto")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                 "lora_r", "lora_alpha", "eval_max_new_tokens", "max_length"):
        if getattr(cfg, name) < 1:
            raise bad(name, "a positive integer")
    if cfg.logging_steps <= 0:
        raise bad("logging_steps", "a positive number")
    for name in ("save_steps", "stop_after_steps", "warmup_steps", "num_train_epochs", "dataloader_num_workers"):
        if not getattr(cfg, name) >= 0:
            raise bad(name, "a number >= 0")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        raise bad("max_steps", "-1 (train num_train_epochs) or a positive number of steps")
    for name in ("min_pixels", "max_pixels", "video_min_pixels", "video_max_pixels", "max_frames"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise bad(name, "a positive integer or none")
    for low, high in (("min_pixels", "max_pixels"), ("video_min_pixels", "video_max_pixels")):
        if None not in (getattr(cfg, low), getattr(cfg, high)) and getattr(cfg, low) > getattr(cfg, high):
            raise MevqaError(f"config: {low}={getattr(cfg, low)} exceeds {high}={getattr(cfg, high)}")
    if cfg.max_steps == -1 and cfg.num_train_epochs <= 0:
        raise MevqaError("config: nothing to train (num_train_epochs 0 and max_steps -1): set max_steps or "
                         "num_train_epochs, or, for a zero-shot config, run it with mevqa cv or answer with "
                         "mevqa predict")
    for name in ("learning_rate", "lr_vision", "lr_merger", "lr_llm", "adam_epsilon", "video_fps"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise bad(name, "a finite number > 0")
    for name in ("weight_decay", "max_grad_norm"):
        if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0):
            raise bad(name, "a finite number >= 0")
    for name in ("adam_beta1", "adam_beta2", "lora_dropout"):
        if not 0.0 <= getattr(cfg, name) < 1.0:  # NaN fails too
            raise bad(name, "a fraction in [0, 1)")
    if cfg.save_total_limit is not None and cfg.save_total_limit < 1:
        raise bad("save_total_limit", "at least 1")
    if not 0 <= cfg.seed < 2 ** 32:  # numpy's and torch's seed range
        raise bad("seed", "an integer in [0, 2**32)")
    if cfg.lora_target_regex is not None:
        try:
            re.compile(cfg.lora_target_regex)
        except re.error as exc:
            raise bad("lora_target_regex", f"a regular expression ({exc})") from None
    if cfg.media_settings is not None and (not isinstance(cfg.media_settings, dict) or not all(
            item is None or isinstance(item, (str, int, float, bool)) for item in cfg.media_settings.values())):
        raise bad("media_settings", "a mapping of names to plain values")
    if cfg.metric_for_best_model not in BEST_METRICS:
        raise bad("metric_for_best_model", " | ".join(BEST_METRICS))
    check_options(cfg.answer_strategy, strategy_options(cfg), "config: answer_strategy")
    if cfg.metric_for_best_model != "eval_loss" and not cfg.eval_generate:
        raise MevqaError(f"config: metric_for_best_model={cfg.metric_for_best_model!r} needs eval_generate: true "
                         f"(or choose eval_loss)")
    return cfg


def strategy_options(cfg: TrainConfig):
    """The answer strategy's options (:class:`mevqa.answering.strategies.StrategyOptions`) that ``cfg`` sets. Votes are
    seeded as ``mevqa predict`` seeds them by default (0), so evaluation and prediction draw the same samples."""
    return StrategyOptions(votes=cfg.answer_votes, vote_temperature=cfg.answer_vote_temperature, seed=0,
                           fine_labels=parse_fine_labels(cfg.answer_fine_labels, "config: answer_fine_labels"),
                           au_tables=parse_au_tables(cfg.answer_au_tables, "config: answer_au_tables"),
                           max_aus=cfg.answer_max_aus, max_new_tokens=cfg.eval_max_new_tokens)


def resolve_values(config_file: str | Path | None, overrides: list[str] | None = None) -> dict:
    """The fields a config file and its overrides set (overrides win; a LoRA preset fills what neither sets)."""
    values = load_yaml(config_file) if config_file else {}
    values.update(parse_overrides(list(overrides or [])))
    preset = values.get("lora_preset")
    if preset is not None and str(preset).lower() not in ("none", "null"):
        if preset not in LORA_PRESETS:
            raise MevqaError(f"config: lora_preset={preset!r}: expected one of {', '.join(LORA_PRESETS)}")
        values = {**LORA_PRESETS[preset], **values}
    return values


def make_config(values: dict) -> TrainConfig:
    """:class:`TrainConfig` of ``values``, validated; Trainer's own refusals become one line."""
    try:
        cfg = TrainConfig(**values)
    except (ValueError, TypeError) as exc:
        raise MevqaError(f"config: {(str(exc).strip().splitlines() or [''])[0]}") from None
    return validate(cfg)


def load_config(config_file: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the launch's settings (:func:`launch_settings`), then the YAML, then the command-line
    overrides. Validated."""
    return make_config({**launch_settings(), **resolve_values(config_file, overrides)})


def launch_settings() -> dict:
    """Fields the launch decides unless the config sets them: accelerate's DeepSpeed file (read by
    ``TrainingArguments`` as it is made, so that ``from_pretrained`` can build a ZeRO-3 model sharded), the CPU when
    there is no accelerator (accelerate forms a multi-process gloo group only when told it runs on the CPU), pinned
    memory only with CUDA, and progress bars on the main process only."""
    settings = {"use_cpu": not _has_accelerator_device(), "dataloader_pin_memory": torch.cuda.is_available(),
                "disable_tqdm": not is_main_process()}
    if launched_with("DEEPSPEED"):
        settings["deepspeed"] = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    return settings


def launched_with(backend: str) -> bool:
    """Whether accelerate launch was told to run ``backend`` (``DEEPSPEED``, ``FSDP``), as its environment says."""
    return os.environ.get(f"ACCELERATE_USE_{backend}", "").lower() == "true"


def _has_accelerator_device() -> bool:
    return torch.cuda.is_available() or is_xpu_available() or is_npu_available() or is_mps_available()


def split_config_option(argv: list[str]) -> tuple[str | None, list[str]]:
    """``[--config FILE] [--field value ...]`` -> (FILE, the rest)."""
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
    return config_file, argv


def parse_args(argv: list[str]) -> TrainConfig:
    """A recipe's command line: ``[--config FILE] [--field value ...]``."""
    config_file, rest = split_config_option(argv)
    return load_config(config_file, rest)


def help_text(prog: str, summary: str) -> str:
    """``--help`` for a recipe: usage, then every field with its type, help and default (HfArgumentParser's)."""
    parser = _parser()
    parser.prog = f"accelerate launch [accelerate options] {prog}"
    parser.usage = f"{parser.prog} [--config FILE] [--field value ...]"
    parser.description = (f"{summary}\n\n--config FILE: a YAML file of the fields below (recipes/configs/); "
                          f"--field value pairs override it.")
    return parser.format_help()


def config_dict(cfg: TrainConfig) -> dict:
    """Every field of ``cfg`` as plain YAML values (Trainer's ``to_dict``)."""
    return cfg.to_dict()


def resume_differences(saved: dict, current: dict) -> list[str]:
    """``field (saved -> current)`` for every field that makes a checkpoint made with config ``saved`` unfit to
    resume with config ``current`` (both :func:`config_dict`), compared by :func:`mevqa.runfolder.differences`."""
    def compared(config: dict) -> dict:
        return {name: value for name, value in config.items() if name not in RESULT_NEUTRAL | RUN_LENGTH}

    fields = dict.fromkeys(name.split(".")[0] for name in differences(compared(saved), compared(current)))
    return [f"{name} ({saved.get(name)!r} -> {current.get(name)!r})" for name in fields]


def save_config(cfg: TrainConfig, directory: str | Path) -> Path:
    """Write the resolved config as ``<directory>/train_config.yaml`` (atomically)."""
    target = Path(directory) / CONFIG_NAME
    with atomic_path(target) as tmp:
        tmp.write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False), encoding="utf-8")
    return target
