"""Batched answer generation, shared by ``mevqa answer``, ``mevqa predict`` and in-training evaluation.

Public API::

    generate_answers(model, processor, rows, mode, *, batch_size=8, max_new_tokens=64, do_sample=False,
                     temperature=1.0, top_p=1.0, top_k=None, repetition_penalty=1.0, system_prompt="default",
                     max_frames=None, image_pixels=None, video_pixels=None, video_fps=None, progress=False)
        -> list[str]
    iter_answers(...)  # the same arguments; yields (row, answer) batch by batch, for writing as you go

The input options (``system_prompt``, ``max_frames``, ``image_pixels``, ``video_pixels``, ``video_fps``) mean what
they mean in :mod:`mevqa.models.collate`; use the values the model was trained with. Rows must have absolute media paths
(:func:`mevqa.rows.read_rows` or ``resolve_media``). Prompts are left padded, so one batch's answers equal
the answers of its rows one by one under greedy decoding (exactly in float32; bf16 kernels may round differently per
batch shape). Only the new tokens are decoded, special tokens dropped, whitespace stripped. Decoding settings are
passed explicitly: a checkpoint's ``generation_config`` (Qwen2.5-VL-Instruct ships ``do_sample=True, top_k=1,
repetition_penalty=1.05``) changes neither greedy decoding nor sampling (``top_k=None``: no top-k cut).
Pass the unwrapped model (``accelerator.unwrap_model``), plain or PEFT-wrapped.
"""

from __future__ import annotations

from typing import Iterator

import torch
from tqdm.auto import tqdm

from mevqa.log import is_main_process
from mevqa.models.collate import QADataset, encode


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _stop_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is not None:
        ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


@torch.no_grad()
def iter_answers(model, processor, rows: list[dict], mode: str, *, batch_size: int = 8, max_new_tokens: int = 64,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None,
                 repetition_penalty: float = 1.0, system_prompt: str | None = "default",
                 max_frames: int | None = None, image_pixels=None, video_pixels=None,
                 video_fps: float | None = None, progress: bool = False) -> Iterator[tuple[dict, str]]:
    """Yield ``(row, answer)`` for every row, in order, generating ``batch_size`` rows at a time."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    tokenizer = processor.tokenizer
    dataset = QADataset(rows, mode, system_prompt=system_prompt, with_answer=False, max_frames=max_frames)
    device = _model_device(model)
    options = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, repetition_penalty=repetition_penalty,
                   pad_token_id=tokenizer.pad_token_id, eos_token_id=_stop_ids(model, tokenizer))
    if do_sample:
        options.update(temperature=temperature, top_p=top_p, top_k=top_k)
    else:  # neutralise sampling knobs a checkpoint's generation_config may carry
        options.update(temperature=None, top_p=None, top_k=None)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(rows), desc="generating", unit="row", disable=not progress or not is_main_process())
    try:
        for start in range(0, len(rows), batch_size):
            samples = [dataset[i] for i in range(start, min(start + batch_size, len(rows)))]
            batch = encode(processor, samples, train=False, image_pixels=image_pixels, video_pixels=video_pixels,
                           video_fps=video_fps).to(device)
            output = model.generate(**batch, **options)
            new_tokens = output[:, batch["input_ids"].shape[1]:]
            answers = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for sample, answer in zip(samples, answers):
                yield sample.row, answer.strip()
            bar.update(len(samples))
    finally:
        bar.close()
        model.train(was_training)


def generate_answers(model, processor, rows: list[dict], mode: str, **kwargs) -> list[str]:
    """Answers to ``rows`` in order; keyword arguments as :func:`iter_answers`."""
    return [answer for _, answer in iter_answers(model, processor, rows, mode, **kwargs)]
