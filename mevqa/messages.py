"""Chat messages for a QA row: the only place mevqa builds prompts.

Public API::

    INPUT_MODES: dict[str, InputMode]        # "video", "oao", "flow", "frames+flow" (users name them)
    build_messages(row, mode, *, system_prompt="default", with_answer=False, max_frames=None, coarse_hint=None)
        -> (messages, vision)
    system_prompt_for(question, system_prompt="default") -> str | None
    load_image(path) -> PIL.Image.Image      # RGB, decoded once (a small LRU cache)

``messages`` is the Hugging Face content-list chat format::

    [{"role": "system", "content": [{"type": "text", "text": ...}]},            # unless system_prompt=None
     {"role": "user", "content": [{"type": "image", "image": "/abs/onset.jpg"}, ..., {"type": "text", "text": Q}]},
     {"role": "assistant", "content": [{"type": "text", "text": answer}]}]     # only with with_answer=True

``vision`` is a :class:`Vision` with the loaded inputs in the order their placeholders appear: ``images`` (PIL, RGB),
``videos`` (each a ``(frames, height, width, 3)`` uint8 numpy array) and ``video_fps`` (the true rate of each video's sampled frames, which the
collator passes to the processor so that ``second_per_grid_ts`` is right).

System prompts (``system_prompt``): ``"default"`` picks one per question kind (:func:`mevqa.vocab.question_kind`)
that lists the only allowed answers, as the MEGC2025 winner did (coarse: the 3 labels; fine: the fine labels; AU: the
official AU names; laterality/presence: the two words; composite: the exact template; the MEGC2026 analysis
prompt: what to name, the AUs, fine and coarse class, in free text); questions outside the official set get a
generic expert prompt. ``None`` sends no system turn (the chat template then adds Qwen's default
"You are a helpful assistant."). Any other string is used as the system prompt for every question.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.rows import row_id

# --- system prompts -------------------------------------------------------------------------------------------
_EXPERT = "You are an expert in facial micro-expression analysis."
GENERIC_SYSTEM_PROMPT = f"{_EXPERT} Look closely at the subtle facial movements and answer the question briefly."
KIND_SYSTEM_PROMPTS = {
    vocab.COARSE: f"{_EXPERT} Answer with exactly one of these coarse expression classes: "
                  f"{', '.join(vocab.COARSE_LABELS)}.",
    vocab.FINE: f"{_EXPERT} Answer with exactly one of these fine-grained expression classes: "
                f"{', '.join(vocab.FINE_LABELS)}.",
    vocab.AU: f"{_EXPERT} Answer with the action units shown, as names from this list separated by ', ': "
              f"{', '.join(vocab.OFFICIAL_AU_NAMES.values())}.",
    vocab.LATERALITY: f"{_EXPERT} Answer with exactly one word: left or right.",
    vocab.PRESENCE: f"{_EXPERT} Answer with exactly one word: yes or no.",
    vocab.COMPOSITE: f"{_EXPERT} Answer in exactly this form, with action unit names from the official list: "
                     + vocab.A_COMPOSITE_MANY.format(aus="{action units}", fine="{fine-grained class}",
                                                     coarse="{coarse class}"),
    # Free text (the official answers to it are not public): what to cover, not a form.
    vocab.ANALYSIS: f"{_EXPERT} Analyse the micro-expression: name the action units shown, with names from this "
                    f"list: {', '.join(vocab.OFFICIAL_AU_NAMES.values())}; then the fine-grained expression class "
                    f"({', '.join(vocab.FINE_LABELS)}) and the coarse expression class "
                    f"({', '.join(vocab.COARSE_LABELS)}) they indicate.",
}


# Hierarchical answering (HierMEQA, 2nd place 2025): the fine question comes after a sentence that states the clip's
# coarse class and the fine classes it allows under the row's dataset convention (mevqa.vocab.DATASET_FINE_LABELS).
COARSE_HINT = "The currently analyzed expression class is {coarse}."
COARSE_HINT_CHOICES = "Its fine-grained class is one of: {labels}."


def coarse_hint_text(row: dict, coarse: str) -> str:
    """The sentence put before a fine question when the clip's coarse class is known (hierarchical answering). The
    fine classes it lists are those of the row's dataset convention, the same in training and answering."""
    if coarse not in vocab.COARSE_LABELS:
        raise MevqaError(f"row {row_id(row)}: coarse_hint must be one of {', '.join(vocab.COARSE_LABELS)}, "
                         f"got {coarse!r}")
    text = COARSE_HINT.format(coarse=coarse)
    choices = vocab.fine_labels_under(coarse, vocab.fine_labels_for(vocab.row_dataset(row)))
    if len(choices) > 1:
        text += " " + COARSE_HINT_CHOICES.format(labels=", ".join(choices))
    return text


def system_prompt_for(question: str, system_prompt: str | None = "default") -> str | None:
    """The system prompt for ``question`` under the ``system_prompt`` choice ("default", None or a user text)."""
    if system_prompt is None:
        return None
    if system_prompt != "default":
        return system_prompt
    if question.strip() == vocab.Q_SPOT:  # spotting windows are answered like the presence question: yes or no
        return KIND_SYSTEM_PROMPTS[vocab.PRESENCE]
    return KIND_SYSTEM_PROMPTS.get(vocab.question_kind(question), GENERIC_SYSTEM_PROMPT)


# --- input modes ----------------------------------------------------------------------------------------------
@dataclass
class Vision:
    images: list = field(default_factory=list)       # PIL images
    videos: list = field(default_factory=list)       # each a (T, H, W, 3) uint8 array
    video_fps: list = field(default_factory=list)    # true sampled fps of each video


@dataclass(frozen=True)
class InputMode:
    """How one input mode turns a row's ``media`` into the vision part of the user turn."""
    needs: tuple[str, ...]          # keys of row["media"] it reads
    caption: str                    # told to the model before the question
    build: Callable                 # (media, max_frames) -> (content items, Vision)


def load_image(path) -> "PIL.Image.Image":
    """Decode an image file as RGB, once: the questions about one clip share its frames (LRU cache of 128)."""
    path = str(path)
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise MevqaError(f"{path}: cannot read image ({exc.strerror})") from None
    return _decode_image(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=128)
def _decode_image(path: str, mtime_ns: int, size: int):  # mtime and size in the key: a rewritten file is reread
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise MevqaError(f"{path}: cannot read image ({exc})") from None


def _cap_frames(frames: list, frame_numbers: list | None, sample_fps: float, max_frames: int | None):
    """Keep at most ``max_frames`` frames, uniformly, and return the fps of what is kept."""
    n = len(frames)
    if max_frames is not None and max_frames < 1:
        raise MevqaError(f"max_frames must be at least 1, got {max_frames}")
    if max_frames is None or n <= max_frames:
        return frames, sample_fps
    keep = [round(i * (n - 1) / (max_frames - 1)) for i in range(max_frames)] if max_frames > 1 else [0]
    if frame_numbers and len(frame_numbers) == n and frame_numbers[-1] != frame_numbers[0]:
        # Source rate recovered from the original spacing, then applied to the kept frames' spacing.
        source_fps = sample_fps * (frame_numbers[-1] - frame_numbers[0]) / (n - 1)
        span = frame_numbers[keep[-1]] - frame_numbers[keep[0]]
        fps = source_fps * (len(keep) - 1) / span if span else sample_fps
    else:
        fps = sample_fps * (len(keep) - 1) / (n - 1) if len(keep) > 1 else sample_fps
    return [frames[i] for i in keep], fps


def _video(media: dict, max_frames: int | None):
    video = media["video"]
    frames = list(video["frames"])
    if not frames:
        raise MevqaError("media.video.frames is empty")
    if "sample_fps" not in video:
        raise MevqaError("media.video has no sample_fps (the true rate of the sampled frames is needed)")
    frames, fps = _cap_frames(frames, video.get("frame_numbers"), float(video["sample_fps"]), max_frames)
    images = [load_image(p) for p in frames]
    if len({image.size for image in images}) > 1:
        raise MevqaError(f"media.video.frames differ in size ({sorted({image.size for image in images})}); "
                         "the frames of a video must share one size")
    # One (T, H, W, 3) uint8 array: the video processor takes it as is (a list of PIL frames it would convert
    # to arrays several times per call).
    array = np.stack([np.asarray(image) for image in images])
    return [{"type": "video", "video": frames, "fps": fps}], Vision(videos=[array], video_fps=[fps])


def _oao(media: dict, max_frames: int | None):
    frames = list(media["oao"]["frames"])
    if len(frames) != 3:
        raise MevqaError(f"media.oao.frames must hold onset, apex and offset (3 paths), got {len(frames)}")
    return ([{"type": "image", "image": p} for p in frames], Vision(images=[load_image(p) for p in frames]))


def _flow(media: dict, max_frames: int | None):
    image = media["flow"]["image"]
    return [{"type": "image", "image": image}], Vision(images=[load_image(image)])


def _frames_flow(media: dict, max_frames: int | None):
    items, vision = _oao(media, max_frames)
    flow_items, flow_vision = _flow(media, max_frames)
    return items + flow_items, Vision(images=vision.images + flow_vision.images)


INPUT_MODES: dict[str, InputMode] = {
    "video": InputMode(("video",), "The video shows a face during a facial micro-expression.", _video),
    "oao": InputMode(("oao",), "The three images are the onset, apex and offset frames of a facial "
                               "micro-expression.", _oao),
    "flow": InputMode(("flow",), "The image is the optical flow of the face from the onset to the apex of a "
                                 "facial micro-expression.", _flow),
    "frames+flow": InputMode(("oao", "flow"), "The first three images are the onset, apex and offset frames of a "
                                              "facial micro-expression; the fourth is the optical flow from onset "
                                              "to apex.", _frames_flow),
}


def prompt_texts() -> list[str]:
    """Every fixed text mevqa puts in prompts (the tiny tokenizer is trained on them)."""
    return [GENERIC_SYSTEM_PROMPT, *KIND_SYSTEM_PROMPTS.values(), *(m.caption for m in INPUT_MODES.values())]


# --- rows -----------------------------------------------------------------------------------------------------
def build_messages(row: dict, mode: str, *, system_prompt: str | None = "default", with_answer: bool = False,
                   max_frames: int | None = None, coarse_hint: str | None = None):
    """Chat messages and loaded vision inputs for ``row`` in input ``mode``.

    Media paths must already be absolute (:func:`mevqa.rows.read_rows` / :func:`mevqa.rows.resolve_media`). ``with_answer`` appends
    the assistant turn with ``row["answer"]`` (training); ``max_frames`` caps the video frames, uniformly, and
    adjusts the fps to the frames kept. ``coarse_hint`` (default: the row's ``coarse_hint`` key, if any) is a coarse
    class stated before a fine question (:func:`coarse_hint_text`; hierarchical answering, and training for it).
    """
    if mode not in INPUT_MODES:
        raise MevqaError(f"unknown input mode {mode!r}; choose one of {', '.join(INPUT_MODES)}")
    input_mode = INPUT_MODES[mode]
    media = row.get("media") or {}
    missing = [key for key in input_mode.needs if key not in media]
    if missing:
        have = ", ".join(media) or "none"
        raise MevqaError(f"row {row_id(row)}: input mode {mode!r} needs media.{', media.'.join(missing)} "
                         f"(the row has: {have})")
    question = str(row.get("question", "")).strip()
    if not question:
        raise MevqaError(f"row {row_id(row)}: empty question")
    try:
        items, vision = input_mode.build(media, max_frames)
    except MevqaError as exc:
        raise MevqaError(f"row {row_id(row)}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise MevqaError(f"row {row_id(row)}: malformed media for input mode {mode!r} ({type(exc).__name__}: {exc}); "
                         "expected the media layout of docs/design.md") from None
    messages = []
    system = system_prompt_for(question, system_prompt)
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    coarse_hint = row.get("coarse_hint") if coarse_hint is None else coarse_hint
    if coarse_hint is not None:
        if vocab.question_kind(question) != vocab.FINE:
            raise MevqaError(f"row {row_id(row)}: coarse_hint applies only to the fine-grained question, not to "
                             f"{question!r}")
        question = f"{coarse_hint_text(row, coarse_hint)}\n{question}"
    messages.append({"role": "user", "content": [*items, {"type": "text", "text": f"{input_mode.caption}\n{question}"}]})
    if with_answer:
        answer = row.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise MevqaError(f"row {row_id(row)}: training needs a non-empty answer")
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer.strip()}]})
    return messages, vision
