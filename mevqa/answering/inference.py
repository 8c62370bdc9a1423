"""What a model is shown and how it answers: the one inference-settings object, and the row -> answer path that
``mevqa answer`` and ``mevqa predict`` share (``answer`` is ``predict`` on one row).

:func:`resolve_settings` fills an :class:`InferenceSettings` from the model's ``train_config.yaml`` (in the adapter
folder, else the model folder) and the command line:

- ``inputs``, ``system_prompt``, ``max_frames``, ``video_fps`` and the pixel budgets (``min_pixels``,
  ``max_pixels``, ``video_min_pixels``, ``video_max_pixels``), as mevqa's trainers save them;
- ``media_settings``: how the training rows' inputs were built, keyed by the build-data option names (``frames``,
  ``size``, ``flow``, ``head_motion``, ``blend``, ``face_crop``, ``face_model``); raw clips are built exactly so;
- the answer strategy (:mod:`mevqa.answering.strategies`) and its options: ``answer_strategy``, ``answer_votes``,
  ``answer_vote_temperature``, ``answer_fine_labels``, ``answer_au_tables``, ``answer_max_aus`` (the config fields
  of in-training evaluation), else ``direct``. A model trained and evaluated for an answer strategy is answered
  with it.

A flag given on the command line wins; where it differs from what the model was trained with, a warning is logged.
Without a ``train_config.yaml`` (a base model) the defaults are mevqa's (:class:`mevqa.media.MediaSettings`).
An option the chosen strategy does not use (``--votes`` without ``vote``, ...) is an error, not ignored.

:class:`ClipInputs` gives each row absolute media: its own (rows from ``mevqa build-data``) or built from its raw
clip, once per clip, with the resolved media settings. :func:`answer_batch` answers rows with the strategy
(:func:`mevqa.answering.strategies.answer_rows`), as :class:`mevqa.answering.strategies.Answer` objects; an empty answer
is a failed row, never an answer.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import torch
import yaml
from safetensors import SafetensorError, safe_open

from mevqa.answering.strategies import (OPTION_USERS, StrategyOptions, answer_rows, check_options, options_record,
                                        parse_au_tables, parse_fine_labels, parse_strategy, uses_option)
from mevqa.dataset_facts import official_test_fps
from mevqa.errors import MevqaError
from mevqa.media import (VIDEO_SUFFIXES, MediaSettings, add_media_arguments, build_media, given_media_options,
                         read_clip, resolve_span)
from mevqa.messages import INPUT_MODES
from mevqa.models.loading import DEFAULT_MODEL, load_model_and_processor
from mevqa.options import AS_TRAINED_OPTIONS, add_model_arguments, dest
from mevqa.paths import seed as seed_type
from mevqa.rows import cell_int, clip_key, clip_name, resolve_media, where

log = logging.getLogger(__name__)

TRAIN_CONFIG = "train_config.yaml"
PIXEL_SETTINGS = ("min_pixels", "max_pixels", "video_min_pixels", "video_max_pixels")
# What the model sees and is told, and mevqa's default where neither the model nor the command line says.
DEFAULTS = {"inputs": "oao", "system_prompt": "default", "max_frames": None, "video_fps": None}
# Strategy options: the command-line name (args attribute) -> the training config field that records it.
STRATEGY_FIELDS = {dest(option): field for field, option in AS_TRAINED_OPTIONS.items() if field.startswith("answer_")}


# --- arguments ----------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser, *, default_model: bool) -> None:
    """The model, input, strategy and generation options of ``mevqa answer`` and ``mevqa predict``.
    ``default_model``: ``--model`` defaults to :data:`mevqa.models.loading.DEFAULT_MODEL` (``answer``); otherwise it has
    no default and the command checks that it is given where needed (``predict``, whose datasets may each have their
    own model)."""
    add_model_arguments(
        parser, default_model=DEFAULT_MODEL if default_model else None,
        model_help="model folder or hub name: a base Qwen2-VL / Qwen2.5-VL / Qwen3-VL, a merged checkpoint or a tiny model"
                   + ("" if default_model else
                      " (needed unless every dataset of the questions has --model-for or --adapter-for)"))
    group = parser.add_argument_group("what the model sees (default: as the model was trained)")
    group.add_argument("--fps", type=float, help="frame rate of the clips (a video file's own rate is used "
                                                 "otherwise); needed for --inputs video on a frame folder")
    group.add_argument("--min-pixels", type=int, help="smallest image area in pixels (default: as trained, else the "
                                                      "processor's own)")
    group.add_argument("--max-pixels", type=int, help="largest image area in pixels (default: as trained, else the "
                                                      "processor's own)")
    group.add_argument("--video-min-pixels", type=int, help="smallest video frame area in pixels (default: as "
                                                            "trained)")
    group.add_argument("--video-max-pixels", type=int, help="largest video frame area in pixels (default: as trained)")
    add_media_arguments(parser, as_trained=True)

    group = parser.add_argument_group(
        "answer strategy (default: the answer_strategy of the model's train_config.yaml, else direct)")
    group.add_argument("--strategy", metavar="NAME",
                       help="direct (generate), constrained (score the allowed labels), vote (majority of sampled "
                            "answers), optionally with hierarchical (coarse first, then fine under it) and/or au-rules "
                            "(fine and coarse from the predicted AUs by a rule table), joined by +: e.g. "
                            "hierarchical+constrained")
    group.add_argument("--votes", type=int, help="vote: answers sampled per question (default: 5)")
    group.add_argument("--vote-temperature", type=float,
                       help="vote: sampling temperature (default: 0.5; 0 is greedy); --seed seeds it")
    group.add_argument("--fine-labels", action="append", metavar="DATASET=A,B",
                       help="constrained, hierarchical: the fine classes allowed for a dataset's rows instead of its "
                            "convention (e.g. samm=anger,happiness,surprise); repeat per dataset")
    group.add_argument("--au-rules", action="append", metavar="DATASET=TABLE",
                       help="au-rules: the rule table for a dataset's rows, a shipped name (samm, casme2, "
                            "emotion_qwen_vl) or a YAML file; repeat per dataset; given, only the datasets named get "
                            "rules (default: samm=samm, casme2=casme2, casme3=emotion_qwen_vl)")
    group.add_argument("--max-aus", type=int, help="constrained: longest AU list answered (default: 8)")

    group = parser.add_argument_group("generation (greedy unless --do-sample)")
    group.add_argument("--max-new-tokens", type=int, default=64, help="longest answer in tokens (default: 64)")
    group.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding (direct "
                                                                    "generation; vote samples at --vote-temperature)")
    group.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --do-sample)")
    group.add_argument("--top-p", type=float, default=1.0,
                       help="sample from the smallest set of tokens whose probability reaches this (with --do-sample)")
    group.add_argument("--top-k", type=int, default=None,
                       help="sample from the k most probable tokens (with --do-sample; default: no limit)")
    group.add_argument("--repetition-penalty", type=float, default=1.0,
                       help="divide the scores of tokens already generated by this (1: no penalty)")
    group.add_argument("--seed", type=seed_type, default=0,
                       help="random seed for sampling, votes included (default: 0)")


# --- the settings -------------------------------------------------------------------------------------------------
@dataclass
class InferenceSettings:
    """Everything that decides what the model is shown and how it answers."""

    inputs: str                          # input mode (mevqa.messages.INPUT_MODES)
    system_prompt: str | None            # "default", a text, or None (no system turn)
    max_frames: int | None
    video_fps: float | None
    pixels: dict                         # pixel budgets the model was trained with
    media: MediaSettings                 # how raw clips' inputs are built (modes: what `inputs` needs)
    fps: float | None = None             # frame rate of frame-folder clips, from the command line
    generation: dict = field(default_factory=dict)
    trained_config: Path | None = None   # the train_config.yaml the defaults came from
    strategy: str = "direct"             # the answer strategy's canonical name (mevqa.answering.strategies)
    options: StrategyOptions = field(default_factory=StrategyOptions)  # its options (generation comes from above)
    trained_media: dict | None = None    # the media_settings the training config records (None: it records none)

    def record(self) -> dict:
        """The settings as ``run.json`` and ``mevqa answer --json`` report them."""
        return {"inputs": self.inputs, "system_prompt": self.system_prompt, "max_frames": self.max_frames,
                "video_fps": self.video_fps, "pixels": self.pixels, "media_settings": self.media.record(),
                "fps": self.fps, "generation": self.generation,
                "trained_config": str(self.trained_config) if self.trained_config else None,
                "strategy": options_record(self.strategy, self.options)}

    def strategy_options(self) -> StrategyOptions:
        """The strategy's options with the generation settings filled in."""
        keys = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty")
        return replace(self.options, **{key: self.generation[key] for key in keys if key in self.generation})


def read_train_config(model, adapter) -> tuple[dict, Path | None]:
    """(settings, file) from the ``train_config.yaml`` of the adapter folder, else of the model folder; ({}, None)
    when neither has one. Keys other than those inference uses are left alone (they are the trainer's)."""
    for folder in (adapter, model):
        if folder is None:
            continue
        path = Path(str(folder)).expanduser() / TRAIN_CONFIG
        if not path.is_file():
            continue
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise MevqaError(f"{path}: cannot read the training config ({detail})") from None
        if not isinstance(config, dict):
            raise MevqaError(f"{path}: expected a mapping of training settings, got {type(config).__name__}")
        return config, path
    return {}, None


def _positive(value, name: str, kind=float, allow_none: bool = True):
    """``value`` if it is a positive (finite) ``kind`` or, with ``allow_none``, None; else a one-line error."""
    if value is None and allow_none:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int) \
        and math.isfinite(value) and value > 0
    if not ok:
        raise MevqaError(f"{name} must be a positive {'number' if kind is float else 'integer'}, got {value!r}")
    return kind(value)


def _trained(config: dict, path: Path | None) -> dict:
    """The inference settings a training config holds, checked (errors name the file)."""
    found = {}
    try:
        if "inputs" in config:
            if config["inputs"] not in INPUT_MODES:
                raise MevqaError(f"inputs {config['inputs']!r} is not an input mode ({', '.join(INPUT_MODES)})")
            found["inputs"] = config["inputs"]
        if "system_prompt" in config:
            prompt = config["system_prompt"]
            if prompt is not None and not isinstance(prompt, str):
                raise MevqaError(f"system_prompt must be a text or null, got {prompt!r}")
            found["system_prompt"] = None if prompt is None or prompt.lower() == "none" else prompt
        if "max_frames" in config:
            found["max_frames"] = _positive(config["max_frames"], "max_frames", int)
        if "video_fps" in config:
            found["video_fps"] = _positive(config["video_fps"], "video_fps")
        for key in PIXEL_SETTINGS:
            if config.get(key) is not None:
                found[key] = _positive(config[key], key, int)
    except MevqaError as exc:
        raise MevqaError(f"{path}: {exc}") from None
    return found


def resolve_settings(args: argparse.Namespace, *, model_and_adapter: tuple | None = None) -> InferenceSettings:
    """The settings for ``args``: each from the command line, else the model's training config, else mevqa's
    default; a flag that differs from the training config is used, with a logged warning. ``model_and_adapter``
    (default ``(args.model, args.adapter)``) names the model whose training config counts."""
    model, adapter = model_and_adapter or (args.model, args.adapter)
    check_device(getattr(args, "device", None))
    config, path = read_train_config(model, adapter)
    trained = _trained(config, path)
    given = {"inputs": args.inputs, "max_frames": args.max_frames, "video_fps": args.video_fps,
             "system_prompt": None if args.system_prompt is None
             else (None if args.system_prompt.strip().lower() == "none" else args.system_prompt)}
    chosen = {}
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:  # not on the command line
            chosen[key] = trained.get(key, default)
            continue
        chosen[key] = given[key]
        if key in trained and trained[key] != given[key]:
            _differs(key, given[key], trained[key], path)
    _positive(chosen["max_frames"], "--max-frames", int)
    _positive(chosen["video_fps"], "--video-fps")
    pixels = {}
    for key in PIXEL_SETTINGS:
        given_pixels = getattr(args, key, None)  # commands without the flags (spot) take the trained budgets
        if given_pixels is None:
            if key in trained:
                pixels[key] = trained[key]
            continue
        pixels[key] = _positive(given_pixels, f"--{key.replace('_', '-')}", int)
        if key in trained and trained[key] != pixels[key]:
            _differs(key, pixels[key], trained[key], path)
    for low, high in (("min_pixels", "max_pixels"), ("video_min_pixels", "video_max_pixels")):
        if low in pixels and high in pixels and pixels[low] > pixels[high]:
            raise MevqaError(f"{low.replace('_', '-')} {pixels[low]} exceeds {high.replace('_', '-')} {pixels[high]}")

    modes = INPUT_MODES[chosen["inputs"]].needs
    options = given_media_options(args)
    recorded = config.get("media_settings")
    if recorded is not None:
        # checked without modes: a method this machine lacks (TV-L1) may be overridden by a flag below
        base = MediaSettings.from_record(recorded, modes=(), where=f"{path}: media_settings").record()
        for key, value in options.items():
            if base.get(key) != value:
                _differs(key, value, base.get(key), path)
    else:
        base = {}
        if path is not None:
            log.info("%s records no media_settings; raw clips are built with %s", path,
                     "the options given and mevqa's defaults" if options else "mevqa's defaults")
    source = "command line" if recorded is None else f"{path}: media_settings" + (" with the command line's options"
                                                                                  if options else "")
    media = MediaSettings.from_record({**base, **options}, modes=modes, where=source)
    generation = generation_settings(args)
    strategy, strategy_options = resolve_strategy(args, config, path, generation)
    settings = InferenceSettings(
        inputs=chosen["inputs"], system_prompt=chosen["system_prompt"], max_frames=chosen["max_frames"],
        video_fps=chosen["video_fps"], pixels=pixels, media=media, fps=_positive(getattr(args, "fps", None), "--fps"),
        generation=generation, trained_config=path, strategy=strategy, options=strategy_options,
        trained_media=None if recorded is None else base)
    if path is not None:
        log.info("inputs %s (%s), system prompt %s%s, strategy %s; defaults from %s", settings.inputs,
                 ", ".join(f"{key} {value}" for key, value in media.record().items()), settings.system_prompt,
                 "".join(f", {key} {value}" for key, value in settings.pixels.items()), strategy, path)
    return settings


def resolve_strategy(args: argparse.Namespace, config: dict, path: Path | None,
                     generation: dict) -> tuple[str, StrategyOptions]:
    """(canonical strategy name, options): each option from the command line, else the training config's
    ``answer_*`` field, else :class:`mevqa.answering.strategies.StrategyOptions`' default. An option given on the
    command line that the strategy does not use is an error; the training config's fields for other strategies are left
    alone (a config holds every field)."""
    given = {name: getattr(args, name, None) for name in STRATEGY_FIELDS}
    chosen = {}
    for name, key in STRATEGY_FIELDS.items():
        trained = config.get(key)
        chosen[name] = trained if given[name] is None else given[name]
        if given[name] is not None and trained is not None and trained != given[name]:
            _differs(key.removeprefix("answer_").replace("au_tables", "au_rules"), given[name], trained, path)
    from_config = given["strategy"] is None and chosen["strategy"] is not None
    where = f"{path}: answer_strategy" if from_config else "--strategy"
    try:
        strategy = parse_strategy(chosen["strategy"] or "direct")
    except MevqaError as exc:
        raise MevqaError(f"{where}: {exc}") from None
    for name in STRATEGY_FIELDS:
        option = "au_tables" if name == "au_rules" else name
        if name != "strategy" and given[name] is not None and not uses_option(strategy, option):
            raise MevqaError(f"--{name.replace('_', '-')} is used only by the {' and '.join(OPTION_USERS[option])} "
                             f"strategy; the strategy is {strategy.name}")
    if generation.get("do_sample") and strategy.mechanism == "vote":
        raise MevqaError("--do-sample is for direct generation; the vote strategy samples at --vote-temperature")
    defaults = StrategyOptions()
    options = StrategyOptions(
        votes=defaults.votes if chosen["votes"] is None else chosen["votes"],
        vote_temperature=defaults.vote_temperature if chosen["vote_temperature"] is None
        else chosen["vote_temperature"],
        seed=generation.get("seed", defaults.seed),
        fine_labels=parse_fine_labels(chosen["fine_labels"] or (), "--fine-labels" if given["fine_labels"] is not None
                                      else f"{path}: answer_fine_labels"),
        au_tables=parse_au_tables(chosen["au_rules"] or (), "--au-rules" if given["au_rules"] is not None
                                  else f"{path}: answer_au_tables"),
        max_aus=defaults.max_aus if chosen["max_aus"] is None else chosen["max_aus"])
    check_options(strategy, options, "" if not from_config else str(path))
    return strategy.name, options


def _differs(key: str, given, trained, path: Path) -> None:
    log.warning("--%s %s differs from the %s the model was trained with (%s); using %s", key.replace("_", "-"),
                given, trained, path, given)


def generation_settings(args: argparse.Namespace) -> dict:
    """The decoding options, checked."""
    if isinstance(args.max_new_tokens, bool) or args.max_new_tokens < 1:
        raise MevqaError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    _positive(args.temperature, "--temperature", allow_none=False)
    _positive(args.repetition_penalty, "--repetition-penalty", allow_none=False)
    if not (math.isfinite(args.top_p) and 0 < args.top_p <= 1):
        raise MevqaError(f"--top-p must be in (0, 1], got {args.top_p}")
    _positive(args.top_k, "--top-k", int)
    return dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
                top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed)


def check_device(device: str | None) -> None:
    """A ``--device`` that names a device torch knows and this machine has (None: CUDA if present, else CPU)."""
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise MevqaError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise MevqaError(f"--device {device}: this machine has {count or 'no'} CUDA device(s)"
                             + ("; use --device cpu" if not count else ""))
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise MevqaError(f"--device {device}: MPS is not available on this machine; use --device cpu")


def check_weight_files(*folders) -> None:
    """Read the header of every ``*.safetensors`` file in the local ``folders`` (model, adapter; a hub name or None
    is skipped): a file cut short or damaged is one line naming it, before anything loads."""
    for folder in folders:
        path = Path(str(folder)).expanduser() if folder is not None else None
        if path is None or not path.is_dir():
            continue
        for weights in sorted(path.glob("*.safetensors")):
            try:
                with safe_open(weights, framework="pt"):
                    pass
            except (SafetensorError, OSError) as exc:
                detail = str(exc).removeprefix("Error while deserializing header: ")
                raise MevqaError(f"{weights}: damaged weights file ({detail}); save or copy it again") from None


def load_model(args: argparse.Namespace, settings: InferenceSettings, *, model_and_adapter: tuple | None = None):
    """(model, processor) for the model arguments (``model_and_adapter``, default ``(args.model, args.adapter)``)
    and the settings' pixel budgets, seeded for sampling."""
    model, adapter = model_and_adapter or (args.model, args.adapter)
    check_weight_files(model, adapter)
    torch.manual_seed(settings.generation["seed"])
    return load_model_and_processor(model, adapter=adapter, dtype=args.dtype, device=args.device,
                                    attn_implementation=args.attn, **settings.pixels)


# --- inputs -------------------------------------------------------------------------------------------------------
def find_clip(clips_dir: Path, name: str, where: str = "", *, exclude: Path | None = None) -> Path:
    """The clip called ``name`` (one plain folder or file name): ``clips_dir/name`` (a folder or a video file
    ``name.mp4``/...), else the one folder or video file of that name anywhere under ``clips_dir`` but outside
    ``exclude`` (the folder the inputs are built in, which holds a folder per clip name when it lies below)."""
    clip_name(name, where or str(clips_dir))
    direct = [clips_dir / name] + [clips_dir / f"{name}{suffix}" for suffix in sorted(VIDEO_SUFFIXES)]
    found = [path for path in direct if path.exists()]
    if not found:
        skip = exclude.resolve() if exclude is not None else None
        found = sorted(path for path in clips_dir.rglob(f"{name}*")
                       if ((path.is_dir() and path.name == name)
                           or (path.is_file() and path.stem == name and path.suffix.lower() in VIDEO_SUFFIXES))
                       and not (skip is not None and path.resolve().is_relative_to(skip)))
    if not found:
        raise MevqaError(f"clip {name!r} not found: no folder or video file of that name under {clips_dir}")
    if len(found) > 1:
        raise MevqaError(f"clip {name!r} is ambiguous under {clips_dir}: {', '.join(str(p) for p in found[:4])}")
    return found[0]


class ClipInputs:
    """Absolute media for each row: its own (rows read by :func:`mevqa.rows.read_rows` carry checked absolute
    paths) or built from the raw clip it names, once per clip, under ``media_dir/<clip name>/``."""

    def __init__(self, settings: InferenceSettings, media_dir: Path, clips_dir: Path | None = None):
        self.settings, self.media_dir, self.clips_dir = settings, Path(media_dir), clips_dir
        self.built: dict[tuple, dict | MevqaError] = {}
        self.seconds = 0.0
        self.timings: dict[str, float] = {}

    def prepare(self, row: dict) -> dict:
        """``row`` with absolute media for the input mode; a MevqaError names the row's file and line."""
        here = where(row)
        if row.get("media") is None:
            if "video" not in row:
                raise MevqaError(f"{here}: the row has neither 'media' (from mevqa build-data) nor a 'video' clip "
                                 "name")
            row = {**row, **self._named_clip(row, here)}
        missing = [key for key in INPUT_MODES[self.settings.inputs].needs if key not in row["media"]]
        if missing:
            raise MevqaError(f"{here}: input mode {self.settings.inputs!r} needs media.{', media.'.join(missing)}; "
                             f"the row has {', '.join(k for k in row['media'] if k in INPUT_MODES) or 'none'} "
                             "(build the data with those inputs)")
        return row

    def _named_clip(self, row: dict, here: str) -> dict:
        name = clip_name(row["video"], here, "video")
        onset, offset = (None if row.get(key) in (None, "") else cell_int(row[key], here, key)
                         for key in ("onset_frame", "offset_frame"))
        key = (name, onset, offset)
        if key not in self.built:
            try:
                if self.clips_dir is None:
                    raise MevqaError("--clips is needed for rows that name a clip")
                self.built[key] = self.build(find_clip(self.clips_dir, name, here, exclude=self.media_dir),
                                             self.media_dir / name,
                                             onset=onset, offset=offset,
                                             fps=self.settings.fps or official_test_fps(row))
            except MevqaError as exc:
                self.built[key] = exc
        built = self.built[key]
        if isinstance(built, MevqaError):
            raise MevqaError(f"{here}: clip {name}: {built}")
        return built

    def build(self, clip_path, out_dir: Path, *, onset: int | None = None, apex: int | None = None,
              offset: int | None = None, fps: float | None = None) -> dict:
        """``{"clip": ..., "media": ...}`` of a raw clip (frame folder or video file), built in ``out_dir`` as the
        data builders build a dataset clip (:func:`mevqa.media.resolve_span`, :func:`mevqa.media.build_media`),
        media paths absolute. A second call with the same clip and settings reuses what ``out_dir`` holds."""
        start = time.perf_counter()
        clip = read_clip(clip_path)
        span = resolve_span(clip, onset, apex, offset)
        fps = fps or clip.fps
        if fps is None and "video" in self.settings.media.modes:
            what = "a frame folder has" if Path(clip.source).is_dir() else "the video file declares"
            raise MevqaError(f"{clip.source}: {what} no frame rate; give it with --fps (the video input needs the "
                             "true rate: CASME II and SAMM are 200, SMIC-HS 100, CAS(ME)^3 30)")
        media = build_media(clip, span, self.settings.media, out_dir, fps=fps, timings=self.timings)
        media = resolve_media({"media": media}, out_dir, str(clip.source))["media"]
        self.seconds += time.perf_counter() - start
        info = {"source": str(clip.source), "onset": span.onset, "apex": span.apex, "offset": span.offset,
                "apex_method": span.apex_method, "fps": fps, "n_frames": len(clip.frame_numbers)}
        return {"clip": info, "media": media}


# --- answers ------------------------------------------------------------------------------------------------------
def answer_batch(model, processor, batch: list[dict], settings: InferenceSettings, *, batch_size: int | None = None
                 ) -> Iterator[tuple[dict, "Answer | MevqaError"]]:
    """``(row, answer)`` for each row of ``batch`` (absolute media), in order: a
    :class:`mevqa.answering.strategies.Answer` by the settings' strategy, or a :class:`MevqaError`. ``batch_size``
    (default: the whole batch) is rows per generation batch and candidates per scoring pass. Pass whole clips
    (:func:`mevqa.answering.consistency.clip_key`): the strategies share answers within a clip. A batch that fails is
    answered clip by clip, then row by row, so a bad row fails alone; a row's failure, and an empty answer, come back as
    a :class:`MevqaError`."""
    try:
        answers = answer_rows(model, processor, batch, settings.inputs, settings.strategy,
                              options=settings.strategy_options(), batch_size=batch_size or len(batch),
                              system_prompt=settings.system_prompt, max_frames=settings.max_frames,
                              video_fps=settings.video_fps)
    except MevqaError as exc:
        if len(batch) == 1:
            yield batch[0], exc
            return
        clips: dict = {}
        for row in batch:
            clips.setdefault(clip_key(row), []).append(row)
        # Find what broke the batch: each clip alone, then (a clip that fails alone) each of its rows alone.
        parts = list(clips.values()) if len(clips) > 1 else [[row] for row in batch]
        for part in parts:
            yield from answer_batch(model, processor, part, settings, batch_size=batch_size)
        return
    for row, answer in zip(batch, answers):
        yield row, answer if answer.text.strip() else MevqaError(f"{where(row)}: the model gave an empty answer")
