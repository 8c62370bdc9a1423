"""The pure scorer (:func:`score`) and its file front end (:func:`score_files`): the per-row join and figures of
:mod:`mevqa.eval.metrics`, with the clip-bootstrap intervals of :mod:`mevqa.eval.bootstrap` when asked for."""

from __future__ import annotations

from typing import Iterable

from mevqa.eval.bootstrap import add_intervals
from mevqa.eval.metrics import join, read_rows, report_of, round_floats


def score(pred_rows: Iterable[dict], gold_rows: Iterable[dict], *, bootstrap: int = 0, seed: int = 0) -> dict:
    """Score predictions against gold rows as the leaderboard does. Pure: reads and writes nothing.

    Rows are joined by id (``id`` or ``video_id``), see :func:`join`. Returns ``{"overall": {...}, "<split>": {...},
    ..., "avg": x, "counts": {...}}``. Each split object has ``uf1_coarse, uar_coarse, uf1_fine, uar_fine, bleu,
    rouge1`` (floats in [0, 1]; ``None`` where the split has no rows of that question kind, e.g. fine on SMIC),
    ``avg`` (mean of those six, ``None`` if one is undefined), ``rouge1_f``, ``sentence_bleu`` (mean sacrebleu
    sentence BLEU / 100), ``coarse``/``fine`` (per-class F1, recall, support, confusion matrix) and ``counts``.
    The top-level ``avg`` is the leaderboard's Avg (the Overall one).

    With ``bootstrap=N`` (> 0), clips are resampled N times (:mod:`mevqa.eval.bootstrap`, seeded with ``seed``)
    and every split object gets ``<metric>_ci: [lo, hi]`` (percentile 95% interval) beside each of the six
    metrics and ``avg_ci`` beside ``avg``; the top level gets ``avg_ci`` and ``bootstrap`` (resamples, seed, clips).
    """
    joined = join(pred_rows, gold_rows)
    result = report_of(joined)
    if bootstrap:
        add_intervals(result, joined, resamples=bootstrap, seed=seed)
    return round_floats(result)


def score_files(pred_paths, gold_paths, *, bootstrap: int = 0, seed: int = 0) -> dict:
    """Read prediction and gold jsonl files (one path or several each), validate, join by id and :func:`score`."""
    return score(read_rows(pred_paths), read_rows(gold_paths), bootstrap=bootstrap, seed=seed)
