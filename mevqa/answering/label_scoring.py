"""Label-constrained scoring: how likely the model finds each allowed answer to a question.

Public API::

    choice_logprobs(model, processor, rows, mode, choices, *, batch_size=8, system_prompt="default",
                    max_frames=None, image_pixels=None, video_pixels=None, video_fps=None, progress=False)
        -> list[dict[str, float]]      # row i: {answer: summed log-probability} for each answer in choices[i]
    choice_probabilities(...the same...) -> list[dict[str, float]]   # the same, normalised over choices[i]
    answer_logprobs(model, processor, row, mode, answers, *, complete=True, ...) -> list[float]
    greedy_au_list(model, processor, row, mode, names, *, min_items=1, max_items=None, ...)
        -> (list[str], list[dict[str, float]])
    END = "<end>"                      # the "stop the list here" choice in greedy_au_list's steps

What is scored: the answer as the assistant's whole turn, exactly as training teaches it. Each candidate is the row
with ``answer`` set to the candidate, encoded by :func:`mevqa.models.collate.encode` with ``train=True``; its
answer-only labels mark the answer tokens and the closing ``<|im_end|>``, and the score is the sum of their
log-probabilities (the negative of the summed training loss of that answer). ``complete=False`` leaves ``<|im_end|>``
out: the log-probability that the answer *starts with* the text, which :func:`greedy_au_list` compares with stopping.

How it is batched: the candidates of one row share the prompt, so they go through the model together,
``batch_size`` sequences per forward pass. The vision inputs are encoded once per row and handed to every candidate
(``mm_encoder_outputs``, when the model's forward takes it; otherwise each candidate carries its own pixels, which is
slower and gives the same numbers), and logits are computed only at the answer positions. Rows with a
``coarse_hint`` key are scored with the hierarchical prompt (:func:`mevqa.messages.coarse_hint_text`).
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import torch
from tqdm.auto import tqdm

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.log import is_main_process
from mevqa.messages import build_messages, row_id
from mevqa.models.collate import IGNORE_INDEX, Sample, encode

END = "<end>"


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _takes_encoder_outputs(model) -> bool:
    """Whether the model's forward accepts precomputed vision features (transformers' ``mm_encoder_outputs``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "mm_encoder_outputs" in inspect.signature(base.forward).parameters


def _sample(row: dict, mode: str, answer: str, system_prompt, max_frames) -> Sample:
    scored = {**row, "answer": answer}
    messages, vision = build_messages(scored, mode, system_prompt=system_prompt, with_answer=True,
                                      max_frames=max_frames)
    return Sample(scored, messages, vision)


def _per_image_fields(output) -> dict:
    """The fields of a vision encoder output that hold one entry per image or video: ``pooler_output`` (a tuple of
    per-image tensors) and, where the family has them, lists of such tuples (Qwen3-VL's ``deepstack_features``, one
    tuple per DeepStack layer). Whole-batch fields (``last_hidden_state``) are left out: the language model does not
    read them."""
    fields = {}
    for key, value in output.items():
        if isinstance(value, tuple) and all(isinstance(v, torch.Tensor) for v in value):
            fields[key] = value
        elif isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
            fields[key] = [tuple(v) for v in value]
    return fields


def _vision_features(model, batch, n_samples: int) -> dict:
    """Vision features of the first sample of a batch whose samples all carry the same images and videos, as the
    model's own encoder output class (every per-image field kept, e.g. Qwen3-VL's DeepStack features)."""
    features = {}
    for kind, pixels_key, grid_key, method in (("image", "pixel_values", "image_grid_thw", "get_image_features"),
                                               ("video", "pixel_values_videos", "video_grid_thw",
                                                "get_video_features")):
        if pixels_key not in batch:
            continue
        grids = batch[grid_key]
        per_sample = grids.shape[0] // n_samples
        grids = grids[:per_sample]
        rows = int(grids.prod(-1).sum())
        output = getattr(model, method)(batch[pixels_key][:rows], grids)
        features[kind] = type(output)(**_per_image_fields(output))
    return features


def _repeat_features(features: dict, n: int) -> dict:
    repeated = {}
    for kind, value in features.items():
        fields = {key: (tuple(v) * n if isinstance(v, tuple) else [tuple(layer) * n for layer in v])
                  for key, v in _per_image_fields(value).items()}
        repeated[kind] = type(value)(**fields)
    return repeated


@torch.no_grad()
def answer_logprobs(model, processor, row: dict, mode: str, answers: Sequence[str], *,
                    complete: bool | Sequence[bool] = True, batch_size: int = 8, system_prompt: str | None = "default",
                    max_frames: int | None = None, image_pixels=None, video_pixels=None,
                    video_fps: float | None = None) -> list[float]:
    """Summed log-probability of each of ``answers`` as the assistant's answer to ``row`` (see the module docstring).

    ``complete`` (one flag, or one per answer): count the closing ``<|im_end|>`` (the answer is the whole turn) or not
    (the turn starts with the answer).
    """
    if batch_size < 1:
        raise MevqaError(f"batch_size must be at least 1, got {batch_size}")
    answers = list(answers)
    flags = [complete] * len(answers) if isinstance(complete, bool) else list(complete)
    if len(flags) != len(answers):
        raise MevqaError(f"row {row_id(row)}: {len(answers)} answers but {len(flags)} complete flags")
    for answer in answers:
        if not isinstance(answer, str) or not answer.strip() or answer != answer.strip():
            raise MevqaError(f"row {row_id(row)}: each answer to score must be a non-empty string without "
                             f"surrounding whitespace, got {answer!r}")
    device = _model_device(model)
    reuse_vision = _takes_encoder_outputs(model)
    was_training = model.training
    model.eval()
    scores: list[float] = []
    features = None
    try:
        for start in range(0, len(answers), batch_size):
            chunk = answers[start:start + batch_size]
            samples = [_sample(row, mode, answer, system_prompt, max_frames) for answer in chunk]
            batch = encode(processor, samples, train=True, image_pixels=image_pixels, video_pixels=video_pixels,
                           video_fps=video_fps).to(device)
            labels = batch.pop("labels")
            if reuse_vision and ("pixel_values" in batch or "pixel_values_videos" in batch):
                if features is None:
                    features = _vision_features(model, batch, len(samples))
                batch.pop("pixel_values", None)
                batch.pop("pixel_values_videos", None)
                batch["mm_encoder_outputs"] = _repeat_features(features, len(samples))
            scored = labels != IGNORE_INDEX
            first = int(scored.int().argmax(dim=1).min())   # the answer starts here (the prompt is shared)
            positions = torch.arange(first - 1, labels.shape[1] - 1, device=device)
            logits = model(**batch, logits_to_keep=positions).logits.float()
            targets = labels[:, first:]
            mask = scored[:, first:].clone()
            for i, is_complete in enumerate(flags[start:start + len(chunk)]):
                if not is_complete:  # drop the closing <|im_end|>, the last scored token
                    mask[i, int(mask[i].nonzero().max())] = False
            token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1))
            scores += (token_logprobs.squeeze(-1) * mask).sum(dim=1).tolist()
    finally:
        model.train(was_training)
    return scores


def _check_choices(rows: list[dict], choices) -> list[list[str]]:
    if len(choices) != len(rows):
        raise MevqaError(f"choices must give one list of allowed answers per row: {len(rows)} rows, "
                         f"{len(choices)} lists")
    checked = []
    for row, allowed in zip(rows, choices):
        allowed = list(allowed)
        if not allowed:
            raise MevqaError(f"row {row_id(row)}: no allowed answers to choose from")
        if len(set(allowed)) != len(allowed):
            raise MevqaError(f"row {row_id(row)}: allowed answers repeat: {allowed}")
        checked.append(allowed)
    return checked


def choice_logprobs(model, processor, rows: list[dict], mode: str, choices: Sequence[Sequence[str]], *,
                    batch_size: int = 8, system_prompt: str | None = "default", max_frames: int | None = None,
                    image_pixels=None, video_pixels=None, video_fps: float | None = None,
                    progress: bool = False) -> list[dict[str, float]]:
    """For each row, ``{answer: summed log-probability}`` over its allowed answers ``choices[i]`` (whole answers,
    ``<|im_end|>`` included). ``batch_size`` counts sequences (candidates) per forward pass."""
    choices = _check_choices(rows, choices)
    results = []
    for row, allowed in tqdm(list(zip(rows, choices)), desc="scoring", unit="row",
                             disable=not progress or not is_main_process()):
        scores = answer_logprobs(model, processor, row, mode, allowed, batch_size=batch_size,
                                 system_prompt=system_prompt, max_frames=max_frames, image_pixels=image_pixels,
                                 video_pixels=video_pixels, video_fps=video_fps)
        results.append(dict(zip(allowed, scores)))
    return results


def normalise(logprobs: dict[str, float]) -> dict[str, float]:
    """Log-probabilities -> probabilities over the same keys, summing to 1."""
    top = max(logprobs.values())
    weights = {key: math.exp(value - top) for key, value in logprobs.items()}
    total = sum(weights.values())
    return {key: weight / total for key, weight in weights.items()}


def choice_probabilities(model, processor, rows: list[dict], mode: str, choices: Sequence[Sequence[str]],
                         **kwargs) -> list[dict[str, float]]:
    """:func:`choice_logprobs` normalised over each row's allowed answers (each dict sums to 1)."""
    return [normalise(scores) for scores in choice_logprobs(model, processor, rows, mode, choices, **kwargs)]


def best(probabilities: dict[str, float]) -> str:
    """The most probable answer; on a tie, the one listed first."""
    return max(probabilities, key=probabilities.get)


def greedy_au_list(model, processor, row: dict, mode: str, names: Sequence[str] | None = None, *,
                   min_items: int = 1, max_items: int | None = None, **score_kwargs):
    """An AU-list answer chosen name by name from ``names`` (default: the 25 official names in FACS code order).

    Why this method: the answer is a subset of 25 names, and 2^25 subsets cannot be scored one by one. The list is
    built the way the model writes it, in the official format (names joined by ``", "``): at each step the
    candidates are "the answer so far, then one more name" and "the answer so far, then the end of the turn", each
    scored as the log-probability of the whole answer text (:func:`answer_logprobs`; the shared part cancels), and
    the most probable one is taken, until the end wins. Names are offered only after the last one chosen in
    ``names`` order: 276 of the 278 AU answers of the official training file list their AUs in ascending FACS code
    order, so this is the order the model learns, and it halves the candidates. ``min_items``/``max_items`` bound
    the list (the official plural question "What are the action units?" always has two or more).

    Returns ``(chosen names, steps)``; ``steps[k]`` is step k's distribution over its candidates (a name, or
    :data:`END`), normalised over them.
    """
    names = list(vocab.OFFICIAL_AU_NAMES.values()) if names is None else list(names)
    max_items = len(names) if max_items is None else max_items
    if not 1 <= min_items <= max_items <= len(names):
        raise MevqaError(f"row {row_id(row)}: AU list bounds must satisfy 1 <= min_items ({min_items}) <= max_items "
                         f"({max_items}) <= the number of names ({len(names)})")
    chosen: list[str] = []
    steps: list[dict[str, float]] = []
    next_index = 0
    while True:
        still_needed = min_items - len(chosen)
        # Leave enough later names to reach min_items.
        options = names[next_index:len(names) - max(still_needed - 1, 0)] if len(chosen) < max_items else []
        texts = [vocab.au_answer(chosen + [name]) for name in options]
        complete = [False] * len(options)
        keys = list(options)
        if len(chosen) >= min_items:
            texts.append(vocab.au_answer(chosen))
            complete.append(True)
            keys.append(END)
        if keys == [END]:
            break
        scores = answer_logprobs(model, processor, row, mode, texts, complete=complete, **score_kwargs)
        probabilities = normalise(dict(zip(keys, scores)))
        steps.append(probabilities)
        pick = best(probabilities)
        if pick == END:
            break
        chosen.append(pick)
        next_index = names.index(pick) + 1
    return chosen, steps
