"""Per-row results (``mevqa eval --samples``): what each row contributed to the scores, to see which rows were wrong.

One record per gold row, in gold order:

- ``id``, ``split``, ``clip`` (:func:`mevqa.eval.bootstrap.clip_of`), ``kind`` (question kind, ``null`` outside the
  official questions), ``question``, ``gold`` (gold answer), ``prediction`` (the answer scored; ``""`` when the
  prediction row is missing) and ``missing``;
- ``gold_label`` / ``label`` / ``match``: on coarse and fine rows, the gold class, the class extracted from the answer
  (``unknown`` when it names none) and whether they are equal; ``null`` on other rows;
- ``exact``: the answer equals the gold answer after lower-casing and collapsing white space (every row);
- ``bleu_stats``: the row's sacrebleu sufficient statistics (``hyp_len``, ``ref_len``, ``correct`` and ``total``
  n-gram counts for n = 1..4, 13a tokens, lower-cased). These are the row's contribution to corpus BLEU: a split's
  BLEU is computed from their sum over its rows, so a row's effect is not separable into a number of its own;
  ``sentence_bleu`` beside them is sacrebleu's sentence BLEU of the row alone (its ``sentence_score``: effective
  order, exponential smoothing) / 100, a per-row view that is not part of the corpus figure;
- ``rouge1``: the row's ROUGE-1 recall, whose mean over a split's rows is that split's ROUGE-1 (a row contributes
  ``rouge1 / rows``); ``rouge1_f`` its F-measure.
"""

from __future__ import annotations

import re

from mevqa.eval.metrics import CLASS_KINDS, JoinedRows
from mevqa.eval.rows import LABELS_OF_KIND, UNKNOWN, row_id
from mevqa.rows import clip_of

_SPACE = re.compile(r"\s+")


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text.strip().lower())


def row_samples(joined: JoinedRows) -> list[dict]:
    """One record per gold row (see the module docstring for the fields)."""
    records = []
    for i, row in enumerate(joined.gold):
        kind = str(joined.kinds[i]) or None
        answer = joined.answers[i]
        record = {"id": row_id(row), "split": str(joined.splits[i]), "clip": clip_of(row), "kind": kind,
                  "question": row["question"], "gold": row["answer"], "prediction": answer,
                  "missing": bool(joined.missing[i]), "gold_label": None, "label": None, "match": None}
        if kind in CLASS_KINDS:
            labels = (*LABELS_OF_KIND[kind], UNKNOWN)
            record["gold_label"] = labels[joined.gold_label[kind][i]]
            record["label"] = labels[joined.pred_label[kind][i]]
            record["match"] = record["label"] == record["gold_label"]
        stats = [int(v) for v in joined.bleu_stats[i]]
        record.update(exact=_normal(answer) == _normal(row["answer"]),
                      bleu_stats={"hyp_len": stats[0], "ref_len": stats[1], "correct": stats[2:6],
                                  "total": stats[6:10]},
                      sentence_bleu=round(float(joined.sentence_bleu[i]), 12), rouge1=round(float(joined.rouge1[i]), 12),
                      rouge1_f=round(float(joined.rouge1_f[i]), 12))
        records.append(record)
    return records
