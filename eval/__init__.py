"""Scoring as the MEGC ME-VQA leaderboard does (installed as ``mevqa.eval``).

``score(pred_rows, gold_rows)`` is the pure scorer (the ``mevqa eval --json`` shape); ``score_files`` reads, validates
and joins jsonl files first. ``METRIC_PATH`` is the folder to pass to ``evaluate.load``.
"""

from pathlib import Path

from mevqa.eval.metrics import PRIMARY_KEYS, leaderboard_avg, read_rows, score, score_files
from mevqa.eval.rows import UNKNOWN, extract_label, row_id, split_of

METRIC_PATH = Path(__file__).resolve().parent / "metric" / "mevqa_vqa"

__all__ = ["METRIC_PATH", "PRIMARY_KEYS", "UNKNOWN", "extract_label", "leaderboard_avg", "read_rows", "row_id", "score",
           "score_files", "split_of"]
