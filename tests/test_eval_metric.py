"""The `evaluate` module loads from its local path (folder or .py file) and gives exactly `mevqa.eval.score`."""

from __future__ import annotations

import evaluate
import pytest

from conftest import MEGC2025
from mevqa import vocab
from mevqa.eval import METRIC_PATH, read_rows, score

RANK1 = sorted((MEGC2025 / "predictions" / "rank1").glob("*.jsonl"))
RANK3 = sorted((MEGC2025 / "predictions" / "rank3").glob("*.jsonl"))


@pytest.mark.parametrize("path", [METRIC_PATH, METRIC_PATH / "mevqa_vqa.py"])
def test_evaluate_module_matches_score(public_data, tmp_path, path):
    metric = evaluate.load(str(path), cache_dir=str(tmp_path))
    gold, preds = read_rows(RANK1), read_rows(RANK3)
    result = metric.compute(predictions=[row["answer"] for row in preds], references=[row["answer"] for row in gold],
                            questions=[row["question"] for row in gold], ids=[row["video_id"] for row in gold])
    assert result == score(preds, gold)
    assert 0 < result["avg"] < 1 and set(result) == {"overall", "samm", "cas", "avg", "counts"}


def test_evaluate_module_add_batch(tmp_path):
    metric = evaluate.load(str(METRIC_PATH), cache_dir=str(tmp_path))
    metric.add_batch(predictions=["negative", "The fine-grained expression class is anger."],
                     references=["negative", "disgust"], questions=[vocab.Q_COARSE, vocab.Q_FINE],
                     ids=["casme3_test_CAS-1_1", "casme3_test_CAS-1_2"])
    result = metric.compute()
    assert result["cas"]["uf1_coarse"] == 1.0 and result["cas"]["uf1_fine"] == 0.0
