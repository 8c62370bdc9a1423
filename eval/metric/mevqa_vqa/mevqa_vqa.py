"""MEGC ME-VQA leaderboard metrics as a Hugging Face ``evaluate`` module, wrapping ``mevqa.eval.score``.

    import evaluate
    from mevqa.eval import METRIC_PATH
    metric = evaluate.load(str(METRIC_PATH))          # or the path of this .py file
    result = metric.compute(predictions=answers, references=gold_answers, questions=questions, ids=ids)
    result["overall"]["uf1_coarse"], result["avg"]
"""

import datasets
import evaluate

from mevqa.eval import score

_DESCRIPTION = """UF1 and UAR of the coarse and fine expression classes, corpus BLEU and ROUGE-1 recall, per split
(SAMM, CAS, CASME II, SMIC, as present in the ids) and Overall, and Avg of the six Overall figures, as the MEGC ME-VQA
leaderboard reports them. Identical to `mevqa eval` and `mevqa.eval.score`."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, the model's answers.
    references: list of str, the gold answers.
    questions: list of str, the official question of each row; it decides which rows count for UF1/UAR
        ("What is the coarse expression class?", "What is the fine-grained expression class?").
    ids: list of str, the official row ids ("samm_006_1_2_1", "casme3_test_CAS-1_1", ...); their prefix names the
        split (samm, casme3 -> cas, casme2, smic). Ids must be unique.
Returns:
    The `mevqa eval --json` report: {"overall": {...}, "<split>": {...}, "avg": float, "counts": {...}} where each
    split has uf1_coarse, uar_coarse, uf1_fine, uar_fine, bleu, rouge1 in [0, 1] (None where the split has no rows
    of that question kind) plus rouge1_f, sentence_bleu, per-class figures, confusion matrices and counts.
Example:
    >>> metric = evaluate.load(str(METRIC_PATH))
    >>> result = metric.compute(predictions=["negative"], references=["negative"],
    ...                         questions=["What is the coarse expression class?"], ids=["samm_006_1_2_1"])
    >>> result["overall"]["uar_coarse"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MevqaVqa(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({name: datasets.Value("string")
                                        for name in ("predictions", "references", "questions", "ids")}),
        )

    def _compute(self, predictions, references, questions, ids):
        gold = [{"id": rid, "question": question, "answer": answer}
                for rid, question, answer in zip(ids, questions, references)]
        preds = [{"id": rid, "answer": answer} for rid, answer in zip(ids, predictions)]
        return score(preds, gold)
