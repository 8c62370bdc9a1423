"""Training data: the train and eval files read and checked before the model loads, and the run's data order.

The order of epoch ``e`` is a permutation seeded by ``(seed, e)``, wrapped around to a whole number of optimizer
steps of ``world_size * per_device_train_batch_size * gradient_accumulation_steps`` rows. :class:`RunOrder` yields the
epochs one after another for the whole run. accelerate deals its batches to the processes in turn (batch ``b`` to
process ``b % world_size``), so micro-batch ``m`` of process ``r`` in step ``s`` is batch
``(s * accumulation + m) * world_size + r`` of the order (:func:`rank_indices`): every step has the same number of
rows, one process accumulating 4 micro-batches reads the same rows per step as 2 processes accumulating 2, and a
resumed run, which skips the batches already consumed, reads exactly what the uninterrupted run would have.
Trainer's own random sampler would give each epoch a shorter last step whose rows depend on the process count.
"""

from __future__ import annotations

import math
import stat
from pathlib import Path

import numpy as np
import torch

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.messages import INPUT_MODES
from mevqa.rows import read_rows as read_qa_rows, where


def steps_per_epoch(n_rows: int, world_size: int, batch_size: int, accumulation: int) -> int:
    return max(1, math.ceil(n_rows / (world_size * batch_size * accumulation)))


def epoch_order(n_rows: int, seed: int, epoch: int, n_steps: int, step_size: int) -> list[int]:
    """A permutation of ``range(n_rows)`` for ``epoch``, wrapped around to ``n_steps * step_size`` entries."""
    order = np.random.default_rng([seed, epoch]).permutation(n_rows)
    total = n_steps * step_size
    return np.tile(order, math.ceil(total / n_rows))[:total].tolist()


def rank_indices(order: list[int], *, rank: int, world_size: int, batch_size: int, accumulation: int,
                 start_step: int = 0) -> list[int]:
    """The rows process ``rank`` reads from ``order``, micro-batch after micro-batch, from step ``start_step`` on."""
    step_size = world_size * batch_size * accumulation
    out = []
    for step_start in range(start_step * step_size, len(order), step_size):
        for m in range(accumulation):
            begin = step_start + (m * world_size + rank) * batch_size
            out.extend(order[begin:begin + batch_size])
    return out


class RunOrder(torch.utils.data.Sampler):
    """The whole run's row order: epoch after epoch, ``total_steps * step_size`` indices in all."""

    def __init__(self, n_rows: int, *, seed: int, step_size: int, total_steps: int):
        self.n_rows, self.seed, self.step_size, self.total_steps = n_rows, seed, step_size, total_steps
        self.per_epoch = math.ceil(n_rows / step_size)

    def __len__(self) -> int:
        return self.total_steps * self.step_size

    def __iter__(self):
        left = len(self)
        for epoch in range(math.ceil(self.total_steps / self.per_epoch)):
            order = epoch_order(self.n_rows, self.seed, epoch, self.per_epoch, self.step_size)
            yield from order[:left]
            left -= len(order)


def read_rows(paths, what: str, cfg) -> list[dict]:
    """The training or validation rows of ``paths`` (one file, or several read as one), checked before the model
    loads: by the one row reader (:func:`mevqa.rows.read_rows`: UTF-8, media present and confined, unique string ids),
    then, for the config ``cfg``, a non-empty answer, the media its input mode needs, and under
    ``hierarchical_prompt`` a fine label answering every fine question. ``what`` ("training", "validation") goes
    into the messages."""
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        check_regular_file(Path(path), what)
    rows = read_qa_rows(paths)
    if not rows:
        raise MevqaError(f"{paths}: the {what} file has no rows")
    needs = INPUT_MODES[cfg.inputs].needs
    for row in rows:
        if not row.get("answer", "").strip():
            raise MevqaError(f"{where(row)}: {what} rows need an answer (is this a question file?)")
        missing = [key for key in needs if key not in (row.get("media") or {})]
        if missing:
            raise MevqaError(f"{where(row)}: inputs={cfg.inputs} needs media.{', media.'.join(missing)} (the row "
                             f"has: {', '.join(row.get('media') or {}) or 'none'}); build it with mevqa build-data "
                             f"--inputs, or train on another input mode")
        if cfg.hierarchical_prompt and row.get("coarse_hint") is None \
                and vocab.question_kind(row["question"]) == vocab.FINE \
                and row["answer"].strip().lower() not in vocab.FINE_TO_COARSE:
            raise MevqaError(f"{where(row)}: hierarchical_prompt states the coarse class of the gold fine answer, "
                             f"but {row['answer']!r} is not a fine label ({', '.join(vocab.FINE_LABELS)})")
    return rows


_FILE_KINDS = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a pipe",
               stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}


def check_regular_file(path: Path, what: str) -> None:
    """The data file exists and is a regular file (``/dev/null`` is there, but it is no training file)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MevqaError(f"{path}: file not found") from None
    kind = next((name for test, name in _FILE_KINDS.items() if test(mode)), None)
    if kind is not None:
        raise MevqaError(f"{path}: {kind}, not a {what} jsonl file")


def check_batch_sizes(cfg, world_size: int, n_train: int, n_eval: int | None) -> None:
    """Batch sizes and accumulation bounded by what the data can fill (checked before the model loads): one
    optimizer step reads ``world_size * per_device_train_batch_size * gradient_accumulation_steps`` rows, which the
    training file must hold; an evaluation batch holds at most the validation rows."""
    step = world_size * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    if step > n_train:
        raise MevqaError(f"config: per_device_train_batch_size {cfg.per_device_train_batch_size} x "
                         f"gradient_accumulation_steps {cfg.gradient_accumulation_steps} x {world_size} process(es) "
                         f"= {step} rows per optimizer step, but the training file has {n_train} rows; lower them")
    if n_eval is not None and cfg.per_device_eval_batch_size > n_eval:
        raise MevqaError(f"config: per_device_eval_batch_size {cfg.per_device_eval_batch_size} exceeds the "
                         f"{n_eval} validation rows; lower it")
