"""Rows -> model inputs, for training and generation alike.

Public API::

    QADataset(rows, mode, *, system_prompt="default", with_answer=True, max_frames=None, gold_coarse_hint=False)
        # torch Dataset; item i is a Sample(row, messages, vision) built by mevqa.messages.build_messages
    Collator(processor, *, train, max_length=None, image_pixels=None, video_pixels=None, video_fps=None)
        # callable: list[Sample] -> transformers.BatchFeature (tensors), a DataLoader collate_fn
    encode(processor, samples, *, train, ...) -> BatchFeature   # the same as a function
    IGNORE_INDEX = -100

What a batch holds: every output of the processor (``input_ids``, ``attention_mask``, ``pixel_values`` +
``image_grid_thw`` or ``pixel_values_videos`` + ``video_grid_thw`` (+ ``second_per_grid_ts`` for Qwen2.5-VL), and
``mm_token_type_ids``, without which the Qwen VLMs silently fall back to 1-D positions), plus ``labels`` when
``train``.

- ``train=True``: right padding; ``labels`` are -100 everywhere except the assistant answer and its closing
  ``<|im_end|>`` (found from the chat template's ``<|im_start|>assistant\\n`` span, so the prompt, the vision pad tokens
  and padding never count in the loss).
- ``train=False``: left padding and a generation prompt (``<|im_start|>assistant\\n``) for batched generation.
- Videos go in as the already sampled frames with ``VideoMetadata(fps=sample_fps, frames_indices=0..n-1)`` and
  ``do_sample_frames=False``, so the model is told the frames' true times, whichever way its family takes them
  (``mevqa.models.families``, ``video_timing``): Qwen2.5-VL's ``second_per_grid_ts`` is ``temporal_patch_size /
  sample_fps``; Qwen3-VL's processor writes ``<t seconds>`` before each temporal patch, t the mean of its frames'
  ``index / sample_fps`` (the time since the first sampled frame); Qwen2-VL orders frames only. Without metadata
  transformers assumes 24 fps, and Qwen3-VL's video processor would resample the frames to its own 2 fps.
- ``video_fps``: the frame rate told to the model instead of each video's true ``sample_fps`` (None: the true
  rate). Qwen2.5-VL places video frames in time (temporal position = seconds x ``tokens_per_second`` (2), truncated),
  so all frames of a clip shorter than 0.5 s, i.e. every micro-expression at its true rate, share one temporal
  position; ``video_fps=2.0`` gives each pair of frames its own (as if the clip were played in slow motion).
- ``max_length``: a sample longer than this raises :class:`MevqaError` naming the row id; nothing is truncated.
- ``image_pixels`` / ``video_pixels``: ``(min_pixels, max_pixels)`` per image / per video frame for this call;
  ``None`` keeps the processor's budget (see :func:`mevqa.models.loading.set_pixel_budgets`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.messages import Vision, build_messages, row_id

IGNORE_INDEX = -100


@dataclass
class Sample:
    row: dict
    messages: list
    vision: Vision


class QADataset(torch.utils.data.Dataset):
    """QA rows as samples for :class:`Collator` (images are decoded lazily, once per file, when indexed).

    ``gold_coarse_hint``: fine questions state the clip's coarse class first, taken from the row's gold fine answer
    (training for hierarchical answering, :func:`mevqa.messages.coarse_hint_text`); a row's own ``coarse_hint`` key
    wins.
    """

    def __init__(self, rows: list[dict], mode: str, *, system_prompt: str | None = "default",
                 with_answer: bool = True, max_frames: int | None = None, gold_coarse_hint: bool = False):
        self.rows, self.mode = rows, mode
        self.system_prompt, self.with_answer, self.max_frames = system_prompt, with_answer, max_frames
        self.gold_coarse_hint = gold_coarse_hint

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Sample:
        row = self.rows[index]
        hint = None
        if self.gold_coarse_hint and row.get("coarse_hint") is None \
                and vocab.question_kind(str(row.get("question", ""))) == vocab.FINE:
            fine = str(row.get("answer", "")).strip().lower()
            if fine not in vocab.FINE_TO_COARSE:
                raise MevqaError(f"row {row_id(row)}: gold_coarse_hint needs a fine label as the answer "
                                 f"({', '.join(vocab.FINE_LABELS)}), got {row.get('answer')!r}")
            hint = vocab.FINE_TO_COARSE[fine]
        messages, vision = build_messages(row, self.mode, system_prompt=self.system_prompt,
                                          with_answer=self.with_answer, max_frames=self.max_frames, coarse_hint=hint)
        return Sample(row, messages, vision)


def _find_subsequence(seq: list[int], sub: list[int], start: int = 0) -> int:
    """Index of the last occurrence of ``sub`` in ``seq`` at or after ``start``, or -1."""
    n = len(sub)
    for i in range(len(seq) - n, start - 1, -1):
        if seq[i:i + n] == sub:
            return i
    return -1


def _size(pixels):
    if pixels is None:
        return None
    low, high = pixels
    return {"shortest_edge": int(low), "longest_edge": int(high)}


def encode(processor, samples: list[Sample], *, train: bool, max_length: int | None = None,
           image_pixels=None, video_pixels=None, video_fps: float | None = None):
    """Tokenise, pad and process the vision inputs of ``samples`` into one batch (see the module docstring)."""
    from transformers.video_utils import VideoMetadata  # lazy: transformers; strategies imports this module

    tokenizer = processor.tokenizer
    texts = [processor.apply_chat_template(s.messages, tokenize=False, add_generation_prompt=not train)
             for s in samples]
    images = [image for s in samples for image in s.vision.images]
    videos = [video for s in samples for video in s.vision.videos]
    kwargs = {}
    if images:
        kwargs["images"] = images
        if image_pixels is not None:
            kwargs["images_kwargs"] = {"size": _size(image_pixels)}
    if videos:
        fps = [f for s in samples for f in s.vision.video_fps]
        if video_fps is not None:
            if video_fps <= 0:
                raise MevqaError(f"video_fps must be positive, got {video_fps}")
            fps = [float(video_fps)] * len(videos)
        # A video shorter than one temporal patch (a one-frame clip) gets its last frame repeated, as every
        # family's processor pads a longer odd-length video itself; Qwen3-VL's refuses a shorter one outright.
        # The repeated frame keeps its index, so its time stays the true one.
        patch = int(getattr(processor.video_processor, "temporal_patch_size", 1) or 1)
        indices = [list(range(len(v))) + [len(v) - 1] * max(0, patch - len(v)) for v in videos]
        videos = [v if len(v) >= patch else np.concatenate([v, np.repeat(v[-1:], patch - len(v), axis=0)])
                  for v in videos]
        kwargs["videos"] = videos
        kwargs["videos_kwargs"] = {
            "video_metadata": [VideoMetadata(total_num_frames=len(v), fps=f, frames_indices=i)
                               for v, f, i in zip(videos, fps, indices)],
            "do_sample_frames": False,
            # The frame cap and per-frame budget bound the total; no hidden extra cap.
            "cap_pixels_per_frame": False,
        }
        if video_pixels is not None:
            kwargs["videos_kwargs"]["size"] = _size(video_pixels)
    batch = processor(text=texts, padding=True, padding_side="right" if train else "left", return_tensors="pt",
                      **kwargs)
    if "mm_token_type_ids" not in batch:
        raise MevqaError(f"{type(processor).__name__} returned no mm_token_type_ids; the Qwen VLMs need them for 3-D "
                         "positions (is this a transformers 5.x processor of a supported family?)")
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    if max_length is not None:
        for sample, length in zip(samples, lengths):
            if length > max_length:
                raise MevqaError(f"row {row_id(sample.row)}: {length} tokens (text and vision) exceed max_length "
                                 f"{max_length}; raise max_length or lower the pixel budget / frame count")
    if train:
        batch["labels"] = _answer_labels(batch["input_ids"], lengths, samples, tokenizer)
    return batch


def _answer_labels(input_ids: torch.Tensor, lengths: list[int], samples: list[Sample], tokenizer) -> torch.Tensor:
    """-100 everywhere except each sample's last assistant answer and its <|im_end|> (right-padded batch)."""
    header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for i, (sample, length) in enumerate(zip(samples, lengths)):
        ids = input_ids[i, :length].tolist()
        start = _find_subsequence(ids, header)
        if start < 0 or sample.messages[-1]["role"] != "assistant":
            raise MevqaError(f"row {row_id(sample.row)}: no assistant answer to train on")
        start += len(header)
        try:
            end = ids.index(end_id, start)
        except ValueError:
            raise MevqaError(f"row {row_id(sample.row)}: the assistant turn has no <|im_end|>") from None
        labels[i, start:end + 1] = input_ids[i, start:end + 1]
    # Vision placeholders never count in the loss, wherever they are.
    for token in ("<|image_pad|>", "<|video_pad|>"):
        labels[input_ids == tokenizer.convert_tokens_to_ids(token)] = IGNORE_INDEX
    return labels


class Collator:
    """``collate_fn`` for a DataLoader over :class:`QADataset`; see :func:`encode` for the arguments."""

    def __init__(self, processor, *, train: bool, max_length: int | None = None, image_pixels=None,
                 video_pixels=None, video_fps: float | None = None):
        self.processor, self.train, self.max_length = processor, train, max_length
        self.image_pixels, self.video_pixels, self.video_fps = image_pixels, video_pixels, video_fps

    def __call__(self, samples: list[Sample]):
        return encode(self.processor, samples, train=self.train, max_length=self.max_length,
                      image_pixels=self.image_pixels, video_pixels=self.video_pixels, video_fps=self.video_fps)
