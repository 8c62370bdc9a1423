"""``mevqa export``: QA rows with their inputs, in the formats other training tools read.

    mevqa export --data data/loso/fold_0/train.jsonl data/loso/fold_0/val.jsonl --inputs oao \
        --format llamafactory --copy-media --out export/fold_0-oao

Public API::

    FORMATS = ("hf", "llamafactory", "swift")
    ExportSettings(format, inputs, system_prompt="default", max_frames=None, copy_media=False, name="mevqa",
                   model=None, config=None)
    tool_settings(settings, samples) -> dict                                     # export.json tool_settings
    export(data_files, out, settings, *, splits=None, progress=True) -> dict     # the manifest written

Every row is asked exactly as mevqa asks it in training: the system prompt, the caption of the input mode and the
question come from :func:`mevqa.messages.build_messages`; this module only re-encodes those messages.

Splits: one per ``--data`` file, named after the file's stem (``train.jsonl`` -> ``train``), or as ``--splits``
names them (one name per file; files given the same name are concatenated in order).

Formats (``OUT`` is the output folder):

- ``hf``: a :class:`datasets.DatasetDict` written with ``save_to_disk`` (load it with ``datasets.load_from_disk``;
  ``push_to_hub`` works on the loaded object as is). Columns: the official fields (``id``, ``dataset``, ``image_id``,
  ``subject``, ``filename``, ``question``, ``answer``, and the test files' ``video_id``, ``video``; also
  ``coarse_hint``; null where a row has none), ``messages`` (the chat with ``{"type": "image"}`` / ``{"type":
  "video"}`` placeholders, the layout TRL's vision-language trainer reads), ``clip`` (onset, apex, offset, fps, AUs,
  ...), and the inputs: ``images`` (``List(Image())``, image modes) or ``video_frames`` (``List(Image())``),
  ``video_fps`` (the true rate of the frames shown) and ``video_frame_numbers`` (video mode). The image bytes are
  stored in every row (a clip's inputs repeat for each of its questions), so the dataset needs no other files.
  Rows are checked against this schema before anything is written: a field or clip key it lacks is an error.
- ``llamafactory``: ``OUT/<split>.json`` in LLaMA-Factory's sharegpt layout with OpenAI-style role/content tags
  (``messages``, ``images`` or ``videos``; one ``<image>``/``<video>`` placeholder per input, in order) and
  ``OUT/dataset_info.json`` registering each split as ``<name>_<split>``. A video is the list of its frame paths.
- ``swift``: ``OUT/<split>.jsonl`` in ms-swift's standard layout (``messages``, ``images`` or ``videos``, same
  placeholders). Rows without an answer (official test questions) get no assistant turn.

Media paths (``llamafactory``, ``swift``): absolute paths to the files ``mevqa build-data`` wrote, so ``OUT`` can move
but the media must stay; with ``--copy-media`` the files are copied into ``OUT/media/`` and referenced relative to
``OUT`` (LLaMA-Factory resolves them against its ``dataset_dir``; ms-swift against the working directory), so the
whole folder moves as one.

Video timing: both tools take a frame list as already sampled and give every video the one rate set in their config
(LLaMA-Factory ``video_fps``, ms-swift's ``FPS`` environment variable; both default to 2.0, which equals mevqa's
``video_fps: 2.0``). The true per-clip rate (``media.video.sample_fps``) is written beside each row as ``video_fps``
and summarised in ``OUT/export.json``, but neither tool reads it.

Tool settings (``--model`` and/or ``--config``, a training config whose budgets and ``video_fps`` they then follow):
``OUT/export.json`` gets ``tool_settings``, what each tool must be told to give that model the inputs mevqa gives
it, checked row by row against LLaMA-Factory 0.9.5, TRL 1.16 and ms-swift 4.6 by ``benchmarks/export_tools.py``:
the template of the model's family (LLaMA-Factory ``template``, ms-swift ``--template``; ms-swift needs it for a
local model); LLaMA-Factory ``image_*_pixels`` / ``video_*_pixels`` set to the exported inputs' own pixel range, so
that LLaMA-Factory does not resize them before the model's processor, whose budget then decides as in mevqa;
ms-swift's environment with the budgets (``MAX_PIXELS`` ... for Qwen2/2.5-VL, ``IMAGE_MAX_TOKEN_NUM`` ... for
Qwen3-VL; without them ms-swift uses qwen-vl-utils' own, far larger budget); the processor sizes to give TRL; and the
videos' rate (``video_fps`` / ``FPS``: the config's, else the median true rate). See :func:`tool_settings`. TRL's
SFTTrainer reads the ``hf`` export as is but trains on images only: it treats a dataset as vision data by an
``image`` / ``images`` column and passes no videos.

``OUT/export.json`` records the settings, the input files (with their SHA-256) and the build-data settings of the
media, so an export can be traced back and repeated. The folder is written under a temporary name and renamed when
complete. An existing non-empty ``OUT`` is replaced only when it holds an export of the same files and settings;
anything else is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import PIL.Image
from tqdm import tqdm

from mevqa import __version__
from mevqa.errors import MevqaError
from mevqa.jsonl import ensure_dir, file_sha256, write_json
from mevqa.log import is_main_process
from mevqa.messages import INPUT_MODES, build_messages
from mevqa.models.families import family_of_source
from mevqa.paths import is_disk_full, refuse_outputs_onto_inputs
from mevqa.rows import media_paths, media_settings_of, read_rows, row_id
from mevqa.runfolder import atomic_folder
from mevqa.train.inspect import Budgets, Settings, load_processor_and_config

log = logging.getLogger(__name__)

FORMATS = ("hf", "llamafactory", "swift")
MANIFEST = "export.json"
# The official row fields (training file and test files), and mevqa's coarse_hint (a coarse class stated before a
# fine question, already part of the exported chat); the hf export has one string column for each.
STRING_FIELDS = ("id", "video_id", "video", "dataset", "image_id", "subject", "filename", "question", "answer",
                 "coarse_hint")
# docs/design.md's clip metadata and its type per key ("str", "int", "float", "list").
CLIP_FIELDS = {"source": "str", "onset": "int", "apex": "int", "offset": "int", "apex_method": "str",
               "fps": "float", "aus": "list", "emotion": "str"}
_PLACEHOLDERS = {"image": "<image>", "video": "<video>"}


@dataclass(frozen=True)
class ExportSettings:
    format: str
    inputs: str
    system_prompt: str | None = "default"   # as mevqa.messages.build_messages: "default", None, or a text
    max_frames: int | None = None           # cap on video frames, kept uniformly (as the training config's)
    copy_media: bool = False                # llamafactory / swift: copy media into OUT/media, relative paths
    name: str = "mevqa"                     # llamafactory: datasets are registered as <name>_<split>
    model: str | None = None                # the model the export is for: the tools' settings are written for it
    config: str | None = None               # the training config whose budgets and video_fps the tools get

    def check(self) -> "ExportSettings":
        if self.format not in FORMATS:
            raise MevqaError(f"unknown export format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.inputs not in INPUT_MODES:
            raise MevqaError(f"unknown input mode {self.inputs!r}; choose one of {', '.join(INPUT_MODES)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise MevqaError(f"--max-frames must be at least 1, got {self.max_frames}")
        if self.copy_media and self.format == "hf":
            raise MevqaError("--copy-media applies to llamafactory and swift; the hf format stores the image bytes "
                             "in the dataset itself")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise MevqaError(f"--name {self.name!r}: expected letters, digits, '_', '.' or '-'")
        return self


@dataclass
class Sample:
    """One row as the other tools see it: the chat, and the media its placeholders stand for, in order."""
    row: dict
    system: str | None
    user: list[dict]                # mevqa's user content items (image / video / text)
    answer: str | None
    images: list[str]               # absolute paths
    videos: list[list[str]]         # absolute frame paths per video
    video_fps: list[float]          # true rate of each video's frames as shown
    video_frame_numbers: list[list[int] | None]


# --- reading ----------------------------------------------------------------------------------------------------
def _read_rows(data_files: Sequence[Path]) -> dict[Path, list[dict]]:
    """The rows of each file, media paths absolute and checked, ids unique across all the files (the one place this
    module reads rows)."""
    rows = read_rows(data_files)
    by_file = {path: [row for row in rows if row["_file"] == str(path)] for path in data_files}
    for path, file_rows in by_file.items():
        if not file_rows:
            raise MevqaError(f"{path}: no rows to export")
    return by_file


def _split_names(data_files: Sequence[Path], splits: Sequence[str] | None) -> list[str]:
    if splits is not None:
        if len(splits) != len(data_files):
            raise MevqaError(f"--splits names {len(splits)} split(s) for {len(data_files)} --data file(s); give one "
                             "name per file")
        names = list(splits)
    else:
        names = [path.stem for path in data_files]
        stems = [name for name in names if names.count(name) > 1]
        if stems:
            raise MevqaError(f"two --data files share the stem {stems[0]!r}, which would name both splits; name the "
                             "splits with --splits (one name per file; equal names join files into one split)")
    for name in names:
        if not re.fullmatch(r"\w+(\.\w+)*", name):
            raise MevqaError(f"split name {name!r}: expected letters, digits and '_' (a datasets split name); "
                             "choose names with --splits")
    return names


def _sample(row: dict, settings: ExportSettings) -> Sample:
    answer = row.get("answer")
    has_answer = isinstance(answer, str) and bool(answer.strip())
    messages, _ = build_messages(row, settings.inputs, system_prompt=settings.system_prompt,
                                 with_answer=has_answer, max_frames=settings.max_frames)
    system = next((m["content"][0]["text"] for m in messages if m["role"] == "system"), None)
    user = next(m["content"] for m in messages if m["role"] == "user")
    reply = next((m["content"][0]["text"] for m in messages if m["role"] == "assistant"), None)
    images, videos, fps, numbers = [], [], [], []
    for item in user:
        if item["type"] == "image":
            images.append(os.path.abspath(item["image"]))
        elif item["type"] == "video":
            frames = [os.path.abspath(p) for p in item["video"]]
            videos.append(frames)
            fps.append(float(item["fps"]))
            numbers.append(_frame_numbers(row, item["video"]))
    return Sample(row, system, user, reply, images, videos, fps, numbers)


def _frame_numbers(row: dict, shown: list[str]) -> list[int] | None:
    """Source frame numbers of the video frames shown (after the frame cap), if the row records them."""
    video = row["media"]["video"]
    numbers = video.get("frame_numbers")
    if not numbers or len(numbers) != len(video["frames"]):
        return None
    index = {path: i for i, path in enumerate(video["frames"])}
    return [int(numbers[index[path]]) for path in shown]


def _text(sample: Sample, media_path) -> tuple[str, list[str], list[list[str]]]:
    """The user turn as one string with ``<image>``/``<video>`` placeholders where mevqa puts the inputs."""
    parts = []
    for item in sample.user:
        parts.append(_PLACEHOLDERS[item["type"]] if item["type"] in _PLACEHOLDERS else item["text"])
    images = [media_path(p) for p in sample.images]
    videos = [[media_path(p) for p in frames] for frames in sample.videos]
    return "".join(parts), images, videos


# --- writers ----------------------------------------------------------------------------------------------------
def _chat(sample: Sample, user_text: str, *, empty_answer: bool) -> list[dict]:
    messages = []
    if sample.system is not None:
        messages.append({"role": "system", "content": sample.system})
    messages.append({"role": "user", "content": user_text})
    if sample.answer is not None:
        messages.append({"role": "assistant", "content": sample.answer})
    elif empty_answer:
        messages.append({"role": "assistant", "content": ""})
    return messages


def _tool_record(sample: Sample, media_path, fmt: str) -> dict:
    user_text, images, videos = _text(sample, media_path)
    # LLaMA-Factory's sharegpt reader needs user/assistant pairs (an empty answer is its prediction-set form);
    # ms-swift reads a chat that ends with the user turn as a question to answer.
    record = {"id": row_id(sample.row),
              "messages": _chat(sample, user_text, empty_answer=fmt == "llamafactory")}
    if images:
        record["images"] = images
    if videos:
        record["videos"] = videos
        record["video_fps"] = sample.video_fps[0] if len(sample.video_fps) == 1 else sample.video_fps
    return record


def _llamafactory_info(settings: ExportSettings, split_files: dict[str, str]) -> dict:
    media = "videos" if settings.inputs == "video" else "images"
    columns = {"messages": "messages", media: media}
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
            "system_tag": "system"}
    return {f"{settings.name}_{split}": {"file_name": file, "formatting": "sharegpt", "columns": dict(columns),
                                         "tags": dict(tags)}
            for split, file in split_files.items()}


def _write_tool_format(tmp: Path, splits: dict[str, list[Sample]], settings: ExportSettings, media_path) -> dict:
    files = {}
    for split, samples in splits.items():
        records = [_tool_record(s, media_path, settings.format) for s in samples]
        if settings.format == "llamafactory":
            files[split] = f"{split}.json"
            (tmp / files[split]).write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n",
                                            encoding="utf-8")
        else:
            files[split] = f"{split}.jsonl"
            with (tmp / files[split]).open("w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    if settings.format == "llamafactory":
        (tmp / "dataset_info.json").write_text(
            json.dumps(_llamafactory_info(settings, files), indent=2) + "\n", encoding="utf-8")
    return files


def _hf_features(settings: ExportSettings):
    from datasets import Features, Image, List, Value  # lazy: datasets, only for --format hf

    columns = {name: Value("string") for name in STRING_FIELDS}
    columns["messages"] = List({"role": Value("string"),
                                "content": List({"type": Value("string"), "text": Value("string")})})
    if settings.inputs == "video":
        columns["video_frames"] = List(Image())
        columns["video_fps"] = Value("float64")
        columns["video_frame_numbers"] = List(Value("int64"))
    else:
        columns["images"] = List(Image())
    kinds = {"str": Value("string"), "int": Value("int64"), "float": Value("float64"), "list": List(Value("string"))}
    columns["clip"] = {key: kinds[kind] for key, kind in CLIP_FIELDS.items()}
    return Features(columns)


def _check_value(value, kind: str, where: str):
    if value is None:
        return None
    ok = {"str": isinstance(value, str),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "list": isinstance(value, list) and all(isinstance(v, str) for v in value)}[kind]
    if not ok:
        expected = {"str": "a string", "int": "an integer", "float": "a number", "list": "a list of strings"}[kind]
        raise MevqaError(f"{where}: expected {expected} or null, got {value!r}")
    return float(value) if kind == "float" else value


def _hf_fields(sample: Sample, settings: ExportSettings) -> dict:
    """The hf columns of a row, checked against the schema, except the image bytes (read while writing)."""
    row = sample.row
    where = f"row {row_id(row)}"
    unknown = [k for k in row if not k.startswith("_") and k not in STRING_FIELDS and k not in ("clip", "media")]
    if unknown:
        raise MevqaError(f"{where}: field {unknown[0]!r} has no column in the hf export (columns: "
                         f"{', '.join(STRING_FIELDS)}, clip, and the inputs)")
    record = {name: _check_value(row.get(name), "str", f"{where}: {name}") for name in STRING_FIELDS}
    content = [{"type": item["type"], "text": item["text"] if item["type"] == "text" else None}
               for item in sample.user]
    messages = []
    if sample.system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": sample.system}]})
    messages.append({"role": "user", "content": content})
    if sample.answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": sample.answer}]})
    record["messages"] = messages
    if settings.inputs == "video":
        record["video_fps"] = sample.video_fps[0]
        record["video_frame_numbers"] = sample.video_frame_numbers[0]
    clip = row.get("clip")
    if clip is None:
        record["clip"] = None
    else:
        if not isinstance(clip, dict):
            raise MevqaError(f"{where}: clip must be an object, got {type(clip).__name__}")
        extra = [key for key in clip if key not in CLIP_FIELDS]
        if extra:
            raise MevqaError(f"{where}: clip.{extra[0]} has no column in the hf export (clip keys: "
                             f"{', '.join(CLIP_FIELDS)})")
        record["clip"] = {key: _check_value(clip.get(key), kind, f"{where}: clip.{key}")
                          for key, kind in CLIP_FIELDS.items()}
    return record


def _hf_record(sample: Sample, fields: dict, settings: ExportSettings) -> dict:
    if settings.inputs == "video":
        return {**fields, "video_frames": [_image_value(p) for p in sample.videos[0]]}
    return {**fields, "images": [_image_value(p) for p in sample.images]}


def _image_value(path: str) -> dict:
    # The bytes go into the dataset as they are (a JPEG stays a JPEG); the name is kept for people.
    return {"bytes": Path(path).read_bytes(), "path": os.path.basename(path)}


def _write_hf(tmp: Path, splits: dict[str, list[Sample]], settings: ExportSettings, fingerprint: str,
              progress: bool) -> dict:
    import datasets  # lazy: datasets, only for --format hf

    features = _hf_features(settings)
    # Every row is checked before anything is written (an error inside the generator would reach the user
    # wrapped in datasets' own exception).
    fields = {split: [_hf_fields(sample, settings) for sample in samples] for split, samples in splits.items()}
    cache = tmp / ".cache"
    built = {}
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # mevqa's own bar counts the rows
    try:
        for split, samples in splits.items():
            # The arrow file is written 64 rows at a time as they are generated, so the image bytes are never all
            # in memory. The fingerprint is given so that datasets does not hash the generator (and the rows).
            built[split] = datasets.Dataset.from_generator(
                _hf_records(samples, fields[split], settings, split, progress), features=features,
                cache_dir=str(cache), split=datasets.NamedSplit(split), fingerprint=f"{fingerprint}-{split}",
                writer_batch_size=64)
        # save_to_disk holds about five times a shard in memory while writing it: small shards bound that.
        datasets.DatasetDict(built).save_to_disk(str(tmp), max_shard_size="50MB")
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
        shutil.rmtree(cache, ignore_errors=True)
    return {split: split for split in splits}


def _hf_records(samples: list[Sample], fields: list[dict], settings: ExportSettings, split: str, progress: bool):
    def generate():
        for sample, row_fields in tqdm(zip(samples, fields), total=len(samples), desc=f"export hf {split}",
                                       unit="row", disable=not progress):
            yield _hf_record(sample, row_fields, settings)
    return generate


# --- media -------------------------------------------------------------------------------------------------------
def _media_mapper(tmp: Path, samples: list[Sample], settings: ExportSettings, progress: bool):
    """A function from a source media path to the path written in the export (copying files when asked)."""
    if not settings.copy_media:
        return lambda path: path
    sources = sorted({p for s in samples for p in (*s.images, *(f for frames in s.videos for f in frames))})
    root = os.path.commonpath([os.path.dirname(p) for p in sources])
    target = {src: Path("media") / os.path.relpath(src, root) for src in sources}
    for src in tqdm(sources, desc="copy media", unit="file", disable=not progress):
        dest = tmp / target[src]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    return lambda path: target[path].as_posix()


# --- provenance --------------------------------------------------------------------------------------------------
def _check_out(out: Path, identity: dict) -> None:
    """Refuse an existing non-empty ``out`` unless it is an export of the same files and settings."""
    if not out.exists():
        return
    if not out.is_dir():
        raise MevqaError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    manifest = out / MANIFEST
    if not manifest.is_file():
        raise MevqaError(f"{out}: exists, is not empty and holds no {MANIFEST}; remove it or choose another --out")
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise MevqaError(f"{manifest}: not valid JSON; remove {out} or choose another --out") from None
    differs = [key for key in identity if previous.get(key) != identity[key]]
    if differs:
        raise MevqaError(f"{out}: holds another export (its {', '.join(differs)} differ); remove it or choose "
                         "another --out")
    log.info("%s holds an export of the same files and settings; writing it again", out)


def tool_settings(settings: ExportSettings, samples: list[Sample]) -> dict:
    """What LLaMA-Factory, ms-swift and TRL must be told to give ``settings.model`` the inputs mevqa gives it: the
    chat template of its family (:mod:`mevqa.models.families`), the pixel budgets of its processor and the frame rate of
    the exported videos, as a training config sets them (``settings.config``: its ``min_pixels`` ...
    ``video_max_pixels`` and ``video_fps``, the model its ``model_name_or_path`` unless ``settings.model`` is given;
    without a config the training defaults: the processor's own budgets, each clip's true rate). Only config.json and
    the processor files are read, and the image headers of the exported media (their sizes).

    What each setting does in the tools (read in LLaMA-Factory 0.9.5, ms-swift 4.6 with qwen-vl-utils 0.0.14):

    - LLaMA-Factory ``image_*_pixels`` / ``video_*_pixels`` resize an input (keeping its aspect, to any size) BEFORE
      the model's processor, which then applies its own budget from the model folder (``data/mm_plugin.py``,
      ``BasePlugin._preprocess_image``). Set to the exported inputs' own pixel range they never resize, so the
      processor's budget alone decides, as in mevqa; set to the processor's budget they resize twice and give other
      grids (448x336 frames, budget 12544 px: 6x10 patches instead of 6x8).
    - ms-swift resizes in qwen-vl-utils (``fetch_image`` / ``fetch_video``) with the budgets of its environment and
      hands the processor the resized inputs (``do_resize=False``); without the environment it uses qwen-vl-utils'
      defaults (16384 tokens an image, 768 a video frame), far above the released processors' budgets.
      qwen-vl-utils >= 0.0.14 reads ``IMAGE_MIN_TOKEN_NUM``, ``IMAGE_MAX_TOKEN_NUM``, ``VIDEO_MIN_TOKEN_NUM``,
      ``VIDEO_MAX_TOKEN_NUM`` (per frame), ``FPS``; ms-swift converts ``MAX_PIXELS`` / ``MIN_PIXELS`` /
      ``VIDEO_MAX_PIXELS`` / ``VIDEO_MIN_PIXELS`` into them (``model/models/qwen.py``, ``compat_qwen_vl_utils``)
      with the factor 28 for Qwen2/2.5-VL, which older qwen-vl-utils also read directly; Qwen3-VL needs >= 0.0.14
      and gets the token names.
    - TRL's SFTTrainer takes the processor it is given: with a config's budgets, set ``size`` on its image and video
      processors as ``trl`` says.
    - Frame lists are taken whole by both tools (LLaMA-Factory ``video_maxlen`` and ms-swift ``FPS_MAX_FRAMES`` bound
      only the sampling of video files), an odd count padded with the last frame as transformers does; the one rate
      told to the model is LLaMA-Factory ``video_fps`` / ms-swift ``FPS`` for every clip.
    """

    train = Settings.from_config(settings.config)   # None: the training defaults
    where = f"--config {settings.config}"
    if settings.config:
        for key, ours in (("inputs", settings.inputs), ("max_frames", settings.max_frames),
                          ("system_prompt", settings.system_prompt)):
            if key == "max_frames" and "video" not in INPUT_MODES[settings.inputs].needs:
                continue   # the frame cap shapes videos only
            if getattr(train, key) != ours:
                flag = "--" + key.replace("_", "-")
                raise MevqaError(f"{where}: its {key} is {getattr(train, key)!r} but the export's {flag} is "
                                 f"{ours!r}; export with the config's (the tools would be set for other inputs)")
    model = settings.model or train.model_name_or_path
    train.model_name_or_path = model
    fam = family_of_source(model)
    processor, _ = load_processor_and_config(train)   # the config's budgets set, as the trainer sets them
    budgets = Budgets.from_processor(processor, fam)
    factor = budgets.patch_size * budgets.merge_size
    image_pixels, video_pixels = budgets.image_pixels, budgets.video_pixels
    frame_counts = sorted({len(video) for s in samples for video in s.videos})
    frames = frame_counts[-1] if frame_counts else None
    if fam.video_budget == "video" and frames:  # the processor bounds the whole video; ms-swift bounds each frame
        video_pixels = (max(1, video_pixels[0] // frames), video_pixels[1] // frames)
    fps = _fps_summary(samples)
    rate = train.video_fps if train.video_fps is not None and fps else (fps["median"] if fps else None)
    llamafactory = {"template": fam.llamafactory_template}
    notes = []
    configured = {"image": (train.min_pixels, train.max_pixels), "video": (train.video_min_pixels,
                                                                          train.video_max_pixels)}
    for kind, paths, budget in (("image", [p for s in samples for p in s.images], image_pixels),
                                ("video", [p for s in samples for f in s.videos for p in f], video_pixels)):
        if not paths:
            continue
        if configured[kind] == (None, None):   # the model folder's processor budget decides, in both
            llamafactory[f"{kind}_min_pixels"], llamafactory[f"{kind}_max_pixels"] = _pixel_range(paths)
        else:
            llamafactory[f"{kind}_min_pixels"], llamafactory[f"{kind}_max_pixels"] = budget
            notes.append(f"LLaMA-Factory loads the model folder's processor, not the config's {kind} budget: it "
                         f"resizes to {kind}_max_pixels itself (aspect kept) before the processor rounds the sides to "
                         f"multiples of {factor} px, so a grid may differ from mevqa's by a patch; for mevqa's exact "
                         "grids put the budget into the model folder's processor config")
    if rate is not None:
        llamafactory["video_fps"] = rate
    if fam.swift_budget_env == "pixels":
        env = {"MIN_PIXELS": image_pixels[0], "MAX_PIXELS": image_pixels[1], "VIDEO_MIN_PIXELS": video_pixels[0],
               "VIDEO_MAX_PIXELS": video_pixels[1]}
    else:
        env = {"IMAGE_MIN_TOKEN_NUM": max(1, image_pixels[0] // factor ** 2),
               "IMAGE_MAX_TOKEN_NUM": image_pixels[1] // factor ** 2,
               "VIDEO_MIN_TOKEN_NUM": max(1, video_pixels[0] // factor ** 2),
               "VIDEO_MAX_TOKEN_NUM": video_pixels[1] // factor ** 2}
    if rate is not None:
        env["FPS"] = rate
    if frames and fam.video_timing == "timestamps":
        notes.append("LLaMA-Factory 0.9.5 writes the per-frame timestamps of a video without the <|vision_start|> / "
                     "<|vision_end|> that the chat template and the processor put around the whole video (2 tokens "
                     "fewer than mevqa and ms-swift; its data/mm_plugin.py, Qwen3VLPlugin.process_messages)")
    if fps and fps["min"] != fps["max"] and train.video_fps is None:
        notes.append(f"the clips' frames were sampled at {fps['min']}-{fps['max']} fps; mevqa tells the model each "
                     "clip's own rate, the tools one rate for all (video_fps / FPS: the median here)")
    return {"model": model, "model_type": fam.model_type, "family": fam.name, "resize_factor": factor,
            "config": settings.config,
            "config_sha256": file_sha256(Path(settings.config)) if settings.config else None,
            "processor_image_pixels": list(image_pixels),
            "processor_video_pixels": list(video_pixels), "llamafactory": llamafactory,
            "swift": {"template": fam.swift_template, "env": env},
            "trl": {"image_processor.size": {"shortest_edge": budgets.image_pixels[0],
                                             "longest_edge": budgets.image_pixels[1]},
                    "video_processor.size": {"shortest_edge": budgets.video_pixels[0],
                                             "longest_edge": budgets.video_pixels[1]}},
            "notes": notes}


def _pixel_range(paths: list[str]) -> tuple[int, int]:
    """The fewest and most pixels among the images at ``paths`` (headers only)."""
    counts = set()
    for path in sorted(set(paths)):
        with PIL.Image.open(path) as image:
            counts.add(image.width * image.height)
    return min(counts), max(counts)


def _fps_summary(samples: list[Sample]) -> dict | None:
    rates = [fps for s in samples for fps in s.video_fps]
    if not rates:
        return None
    return {"min": round(min(rates), 4), "median": round(statistics.median(rates), 4), "max": round(max(rates), 4)}


def export(data_files: Sequence[str | os.PathLike], out: str | os.PathLike, settings: ExportSettings, *,
           splits: Sequence[str] | None = None, progress: bool = True) -> dict:
    """Export the rows of ``data_files`` with their inputs to ``out`` in ``settings.format``; returns the manifest.

    See the module docstring for the formats, the split names and the media paths.
    """
    settings.check()
    if settings.format == "hf":
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise MevqaError("--format hf needs the datasets package: pip install 'mevqa[datasets]'") from None
    data_files = [Path(p) for p in data_files]
    if not data_files:
        raise MevqaError("no --data files given")
    out = Path(out)
    names = _split_names(data_files, splits)
    sources = []
    for path, name in zip(data_files, names):
        if not path.is_file():
            raise MevqaError(f"{path}: file not found")
        sources.append({"split": name, "file": str(path.resolve()), "sha256": file_sha256(path)})
    identity = {"settings": asdict(settings), "sources": sources}
    rows_of = _read_rows(data_files)
    # out is replaced whole: it may hold neither the row files nor the media they name
    media_folders = {os.path.dirname(path) for rows in rows_of.values() for row in rows
                     if isinstance(row.get("media"), dict) for *_, path in media_paths(row["media"])}
    refuse_outputs_onto_inputs(outputs={"--out": out},
                               inputs={"--data": data_files, "the media of --data": sorted(media_folders)})
    _check_out(out, identity)
    ensure_dir(out.parent, "folder of --out")   # a file or a read-only folder: one line, before any work

    progress = progress and is_main_process()
    by_split: dict[str, list[Sample]] = {name: [] for name in names}
    # the build-data options the media were made with (one record; rows built differently are refused)
    media_settings = media_settings_of(row for rows in rows_of.values() for row in rows)
    for path, name in zip(data_files, names):
        for row in tqdm(rows_of[path], desc=f"read {path.name}", unit="row", disable=not progress):
            by_split[name].append(_sample(row, settings))
    for name, samples in by_split.items():
        answered = {s.answer is not None for s in samples}
        if len(answered) > 1:
            raise MevqaError(f"split {name!r} mixes rows with and without answers; export training rows and official "
                             "test questions as separate splits")

    all_samples = [s for samples in by_split.values() for s in samples]
    tools = tool_settings(settings, all_samples) if settings.model or settings.config else None
    try:
        # A finished export replaces the old one whole; the temporary folders of a killed one are removed first.
        with atomic_folder(out) as tmp:
            if settings.format == "hf":
                fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
                files = _write_hf(tmp, by_split, settings, fingerprint, progress)
            else:
                media_path = _media_mapper(tmp, all_samples, settings, progress)
                files = _write_tool_format(tmp, by_split, settings, media_path)
            manifest = {**identity, "mevqa_version": __version__, "media_settings": media_settings,
                        "splits": {name: {"rows": len(samples), "file": files[name]}
                                   for name, samples in by_split.items()},
                        "video_sample_fps": _fps_summary(all_samples)}
            if tools:
                manifest["tool_settings"] = tools
            write_json(tmp / MANIFEST, manifest)
    except Exception as exc:  # datasets wraps a full disk in its own exception type
        if not is_disk_full(exc):
            raise
        raise MevqaError(f"{out}: no space left on the device while writing the export (in a temporary folder "
                         "beside it, now removed); nothing was written, free space and run again") from None
    log.info("exported %d rows (%s) to %s", len(all_samples),
             ", ".join(f"{name}: {len(s)}" for name, s in by_split.items()), out)
    return manifest


# --- command line ------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", required=True, type=Path, metavar="QA.jsonl",
                        help="QA jsonl files (from build-data or split); each becomes a split named after its stem")
    parser.add_argument("--inputs", required=True, choices=list(INPUT_MODES), help="input mode, as in training")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="hf (datasets save_to_disk), llamafactory (sharegpt JSON + dataset_info.json), "
                             "swift (ms-swift messages jsonl)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (written whole, then renamed)")
    parser.add_argument("--splits", nargs="+", metavar="NAME",
                        help="split names, one per --data file (default: the files' stems; equal names join files)")
    parser.add_argument("--system-prompt", default="default",
                        help="'default' (a prompt per question kind listing the allowed answers), 'none', or a text "
                             "for every question; as the training config's system_prompt (default: 'default')")
    parser.add_argument("--max-frames", type=int, help="cap on video frames, kept uniformly (as in training)")
    parser.add_argument("--copy-media", action="store_true",
                        help="llamafactory/swift: copy the media into OUT/media and write paths relative to OUT "
                             "(default: absolute paths to the media where build-data wrote them)")
    parser.add_argument("--model", help="the model the export is for (folder or hub name; only config.json and the "
                                        "processor files are read): export.json then records the settings each tool "
                                        "needs to give it mevqa's inputs (template, pixel budgets, fps, frames)")
    parser.add_argument("--config", help="the training config the tools should match (its min_pixels ... "
                                         "video_max_pixels, video_fps; its model unless --model): export.json's "
                                         "tool_settings then use them; its inputs, max_frames and system_prompt must "
                                         "equal the export's")
    parser.add_argument("--name", default="mevqa", help="llamafactory: register the splits as NAME_<split> in "
                                                        "dataset_info.json (default: mevqa)")


def run(args: argparse.Namespace) -> int:
    settings = ExportSettings(format=args.format, inputs=args.inputs,
                              system_prompt=None if args.system_prompt.lower() == "none" else args.system_prompt,
                              max_frames=args.max_frames, copy_media=args.copy_media, name=args.name,
                              model=args.model, config=args.config)
    manifest = export(args.data, args.out, settings, splits=args.splits)
    for split, info in manifest["splits"].items():
        print(f"{split}: {info['rows']} rows -> {args.out / info['file']}")
    tools = manifest.get("tool_settings")
    if tools:
        lf, swift = tools["llamafactory"], tools["swift"]
        print(f"for {tools['family']} ({tools['model_type']}): LLaMA-Factory "
              + " ".join(f"{key}: {value}" for key, value in lf.items())
              + f"; ms-swift --template {swift['template']} with "
              + " ".join(f"{key}={value}" for key, value in swift["env"].items()) + f" (in {args.out / MANIFEST})")
    for note in (tools or {}).get("notes", []):
        print(f"note: {note}")
    if settings.format == "hf" and settings.inputs == "video":
        print("note: TRL's SFTTrainer (1.16) trains on images only (an 'image'/'images' column); it does not read "
              "video_frames")
    if manifest["video_sample_fps"] and settings.format != "hf" and not tools:   # with tools: in their notes
        fps = manifest["video_sample_fps"]
        print(f"video frames were sampled at {fps['min']}-{fps['max']} fps (median {fps['median']}); "
              f"{'LLaMA-Factory video_fps' if settings.format == 'llamafactory' else 'ms-swift FPS'} sets the one "
              "rate the tool tells the model (2.0 by default, as mevqa's video_fps: 2.0)")
    return 0
