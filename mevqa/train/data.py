"""Deterministic, resumable data order for every rank.

The order of an epoch depends only on ``(seed, epoch)``; it is padded by wrapping around to a whole number of
optimizer steps, and cut into steps of ``world_size * per_device_batch_size * gradient_accumulation_steps`` rows.
Within a step, micro-batch ``m`` of rank ``r`` is a fixed slice, so an interrupted run that restarts at step ``k``
sees exactly the rows the uninterrupted run would have seen from step ``k`` on (no batches are replayed or lost),
and ranks never share a row within a step.
"""

from __future__ import annotations

import math

import numpy as np


def steps_per_epoch(n_rows: int, world_size: int, batch_size: int, accumulation: int) -> int:
    return max(1, math.ceil(n_rows / (world_size * batch_size * accumulation)))


def epoch_order(n_rows: int, seed: int, epoch: int, n_steps: int, step_size: int) -> list[int]:
    """A permutation of ``range(n_rows)`` for ``epoch``, wrapped around to ``n_steps * step_size`` entries."""
    order = np.random.default_rng([seed, epoch]).permutation(n_rows)
    total = n_steps * step_size
    repeats = math.ceil(total / n_rows)
    return np.tile(order, repeats)[:total].tolist()


def rank_indices(order: list[int], *, rank: int, world_size: int, batch_size: int, accumulation: int,
                 start_step: int = 0) -> list[int]:
    """The rows rank ``rank`` reads, micro-batch after micro-batch, from optimizer step ``start_step`` on."""
    step_size = world_size * batch_size * accumulation
    micro = world_size * batch_size
    out = []
    for step_start in range(start_step * step_size, len(order), step_size):
        for m in range(accumulation):
            begin = step_start + m * micro + rank * batch_size
            out.extend(order[begin:begin + batch_size])
    return out


def shard(items: list, rank: int, world_size: int) -> list:
    """Rank ``rank``'s share of ``items`` (strided, so shares differ in size by at most one)."""
    return items[rank::world_size]
