"""Scoring as the MEGC ME-VQA leaderboard does (installed as ``mevqa.eval``).

``score(pred_rows, gold_rows, bootstrap=N, seed=S)`` is the pure scorer (the ``mevqa eval --json`` shape, with 95%
intervals from clip resamples when ``bootstrap`` > 0); ``score_files`` reads, validates and joins jsonl files first.
``compare`` is the paired comparison of two systems (``mevqa compare``), ``row_samples`` the per-row results
(``mevqa eval --samples``), ``stamp`` the provenance every ``scores.json`` carries. ``METRIC_PATH`` is the folder to
pass to ``evaluate.load``.
"""

from pathlib import Path

from mevqa.eval.compare import compare
from mevqa.eval.metrics import PRIMARY_KEYS, JoinedRows, join, leaderboard_avg, read_rows
from mevqa.eval.rows import UNKNOWN, extract_label, row_id, split_of
from mevqa.eval.samples import row_samples
from mevqa.eval.scoring import score, score_files
from mevqa.eval.stamp import stamp
from mevqa.rows import clip_of

METRIC_PATH = Path(__file__).resolve().parent / "metric" / "mevqa_vqa"

__all__ = ["METRIC_PATH", "PRIMARY_KEYS", "UNKNOWN", "JoinedRows", "clip_of", "compare", "extract_label", "join",
           "leaderboard_avg", "read_rows", "row_id", "row_samples", "score", "score_files", "split_of", "stamp"]
