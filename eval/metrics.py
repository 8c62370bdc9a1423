"""The leaderboard metrics: UF1/UAR on coarse and fine classes, corpus BLEU and ROUGE-1 recall, per split.

Definitions (the official scorer is not public; ``docs/scoring.md`` gives the reasons for each choice):

- UF1 / UAR use only the coarse (C) and fine (F) rows: sklearn macro F1 / macro recall over the classes present in
  that split's gold labels. A predicted label comes from :func:`extract_label`; ``unknown`` (unparseable) and labels
  outside the gold classes are plain misses.
- BLEU: sacrebleu corpus BLEU (13a tokenizer, lowercased) over every row of the split, divided by 100.
- ROUGE-1: mean over rows of unigram recall (clipped overlap / reference unigram count) with rouge-score's default
  tokenizer and no stemming; the mean F-measure is reported beside it as ``rouge1_f``.
- Avg: mean of the six Overall figures (the leaderboard's); each split also gets the mean of its own six.

Speed: every distinct (prediction, reference) pair is tokenised and scored once; the pairs' BLEU sufficient statistics
are summed per split, which is exactly how sacrebleu builds a corpus score from its segments.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from rouge_score import rouge_scorer, tokenizers
from sacrebleu.metrics import BLEU
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.eval.rows import LABELS_OF_KIND, UNKNOWN, extract_label, row_id, split_of, split_sort_key, where
from mevqa.rows import read_rows as read_qa_rows

logger = logging.getLogger(__name__)

PRIMARY_KEYS = ("uf1_coarse", "uar_coarse", "uf1_fine", "uar_fine", "bleu", "rouge1")
CLASS_KINDS = (vocab.COARSE, vocab.FINE)


def _index(rows: Iterable[dict], what: str, required: Sequence[str]) -> dict[str, dict]:
    """id -> row, refusing rows without the required fields or with an id seen before."""
    by_id: dict[str, dict] = {}
    for row in rows:
        rid = row_id(row)
        for key in required:
            if not isinstance(row.get(key), str):
                raise MevqaError(f"{where(row, what)}: expected a string field {key!r} in the {what} row {rid!r}, "
                                 f"got {row.get(key)!r}")
        if rid in by_id:
            raise MevqaError(f"{where(row, what)}: duplicate {what} id {rid!r} (first at {where(by_id[rid], what)})")
        by_id[rid] = row
    return by_id


def _bleu_stats(bleu: BLEU, hyps: list[str], refs: list[str]) -> np.ndarray:
    """Per-pair sacrebleu sufficient statistics [hyp_len, ref_len, correct_1..4, total_1..4].

    The same steps as ``BLEU._extract_corpus_statistics``, with each distinct reference's n-grams extracted once.
    """
    ref_info: dict[str, dict] = {}
    stats = np.zeros((len(hyps), 2 + 2 * bleu.max_ngram_order), dtype=np.int64)
    for i, (hyp, ref) in enumerate(zip(hyps, refs)):
        if ref not in ref_info:
            ref_info[ref] = bleu._extract_reference_info([bleu._preprocess_segment(ref)])
        stats[i] = bleu._compute_segment_statistics(bleu._preprocess_segment(hyp), ref_info[ref])
    return stats


def _rouge1(hyps: list[str], refs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """ROUGE-1 recall and F-measure per pair (rouge-score, default tokenizer, no stemming)."""
    tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
    counts: dict[str, dict] = {}

    def unigrams(text: str):
        if text not in counts:
            counts[text] = rouge_scorer._create_ngrams(tokenizer.tokenize(text), 1)
        return counts[text]

    recall = np.empty(len(hyps))
    fmeasure = np.empty(len(hyps))
    for i, (hyp, ref) in enumerate(zip(hyps, refs)):
        result = rouge_scorer._score_ngrams(unigrams(ref), unigrams(hyp))
        recall[i], fmeasure[i] = result.recall, result.fmeasure
    return recall, fmeasure


def _pair_scores(hyps: list[str], refs: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Text metrics of each distinct (hypothesis, reference) pair, and each row's pair index.

    Real answers repeat a lot ("negative", "yes"), so every distinct pair is tokenised and scored once. Returns
    ``row_pair`` and per-pair arrays ``bleu_stats`` (sacrebleu sufficient statistics, summed per split for corpus
    BLEU), ``sentence_bleu`` (/ 100), ``rouge1`` (recall) and ``rouge1_f``.
    """
    pair_index: dict[tuple[str, str], int] = {}
    row_pair = np.fromiter((pair_index.setdefault(pair, len(pair_index)) for pair in zip(hyps, refs)),
                           dtype=np.int64, count=len(hyps))
    pair_hyps = [hyp for hyp, _ in pair_index]
    pair_refs = [ref for _, ref in pair_index]
    stats = _bleu_stats(BLEU(lowercase=True), pair_hyps, pair_refs)
    # sacrebleu's sentence_bleu: effective order with exponential smoothing, from the same statistics.
    sentence_bleu = BLEU(lowercase=True, effective_order=True)
    by_stats: dict[tuple, float] = {}
    sentence = np.empty(len(pair_hyps))
    for i, pair_stats in enumerate(map(tuple, stats.tolist())):
        if pair_stats not in by_stats:
            by_stats[pair_stats] = sentence_bleu._compute_score_from_stats(list(pair_stats)).score / 100
        sentence[i] = by_stats[pair_stats]
    recall, fmeasure = _rouge1(pair_hyps, pair_refs)
    return row_pair, {"bleu_stats": stats, "sentence_bleu": sentence, "rouge1": recall, "rouge1_f": fmeasure}


def _class_report(true: np.ndarray, pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """UF1/UAR over the gold-present classes plus per-class figures and a confusion matrix, from label indices.

    ``true``/``pred`` index into ``labels + ("unknown",)``.
    """
    present = [i for i in range(len(labels)) if np.any(true == i)]
    _, recall, f1, support = precision_recall_fscore_support(true, pred, labels=present, average=None,
                                                             zero_division=0)
    shown = sorted(set(present) | set(np.unique(pred).tolist()))  # gold classes, then whatever was predicted
    names = [(labels + (UNKNOWN,))[i] for i in shown]
    with warnings.catch_warnings():  # sklearn warns about any 1x1 matrix, even with explicit labels as here
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        matrix = confusion_matrix(true, pred, labels=shown).tolist()
    return {
        "uf1": float(np.mean(f1)), "uar": float(np.mean(recall)),
        "classes": [labels[i] for i in present],
        "f1": {labels[i]: float(v) for i, v in zip(present, f1)},
        "recall": {labels[i]: float(v) for i, v in zip(present, recall)},
        "support": {labels[i]: int(v) for i, v in zip(present, support)},
        "confusion": {"labels": names, "matrix": matrix},
    }


def leaderboard_avg(figures: dict) -> float | None:
    """Avg as the leaderboard reports it: the mean of the six primary figures (None if one is undefined)."""
    values = [figures[key] for key in PRIMARY_KEYS]
    return None if None in values else float(np.mean(values))


@dataclass
class JoinedRows:
    """Gold rows joined with their predictions: everything the metrics read, one entry per gold row, in gold order.

    Built once by :func:`join`; :func:`score`, the bootstrap (:mod:`mevqa.eval.bootstrap`) and the per-row samples
    (:mod:`mevqa.eval.samples`) all read it, so the three can never disagree on a row.
    """

    gold: list[dict]
    answers: list[str]                  # the predicted answer ("" where the prediction row is missing)
    splits: np.ndarray                  # split name per row
    kinds: np.ndarray                   # question kind per row ("" outside the official questions)
    gold_label: dict[str, np.ndarray]   # coarse/fine -> label index per row (-1 on rows of other kinds)
    pred_label: dict[str, np.ndarray]   # coarse/fine -> extracted label index (len(labels) means unknown)
    missing: np.ndarray                 # no prediction row
    bleu_stats: np.ndarray              # (rows, 10) sacrebleu sufficient statistics [hyp_len, ref_len, correct_1..4,
                                        # total_1..4]; summed over a split they give its corpus BLEU
    sentence_bleu: np.ndarray           # sacrebleu sentence BLEU / 100 per row
    rouge1: np.ndarray                  # ROUGE-1 recall per row (the split's ROUGE-1 is their mean)
    rouge1_f: np.ndarray
    predictions: int                    # prediction rows given

    @property
    def split_names(self) -> list[str]:
        return sorted(set(self.splits.tolist()), key=split_sort_key)


def join(pred_rows: Iterable[dict], gold_rows: Iterable[dict]) -> JoinedRows:
    """Validate and join predictions to gold rows by id, extract labels and compute each row's text statistics.

    Gold rows need ``question`` and ``answer``; prediction rows need ``answer`` (a ``question``, if given, must match
    the gold one). Gold rows without a prediction are scored as empty answers and logged as a warning.
    """
    gold = _index(gold_rows, "gold", required=("question", "answer"))
    preds = _index(pred_rows, "prediction", required=("answer",))
    for rid, row in preds.items():
        if rid not in gold:
            raise MevqaError(f"{where(row, 'prediction')}: prediction id {rid!r} is not in the gold rows")

    n = len(gold)
    splits, kinds, refs, hyps = [], [], [], []
    gold_label = {kind: np.full(n, -1) for kind in CLASS_KINDS}
    pred_label = {kind: np.full(n, -1) for kind in CLASS_KINDS}
    missing: list[str] = []
    is_missing = np.zeros(n, dtype=bool)
    for i, (rid, row) in enumerate(gold.items()):
        kind = vocab.question_kind(row["question"])
        if not row["answer"].strip():
            raise MevqaError(f"{where(row, 'gold')}: gold row {rid!r} has an empty answer (is this a question file?)")
        pred = preds.get(rid)
        if pred is None:
            missing.append(rid)
            is_missing[i] = True
            answer = ""
        else:
            if isinstance(pred.get("question"), str) and pred["question"].strip() != row["question"].strip():
                raise MevqaError(f"{where(pred, 'prediction')}: prediction {rid!r} answers {pred['question']!r} but "
                                 f"the gold row ({where(row, 'gold')}) asks {row['question']!r}")
            answer = pred["answer"]
        if kind in CLASS_KINDS:
            labels = LABELS_OF_KIND[kind]
            truth = row["answer"].strip().lower()
            if truth not in labels:
                raise MevqaError(f"{where(row, 'gold')}: gold answer {row['answer']!r} to a {kind} question is not "
                                 f"one of {', '.join(labels)}")
            gold_label[kind][i] = labels.index(truth)
            predicted = extract_label(answer, kind)
            pred_label[kind][i] = len(labels) if predicted == UNKNOWN else labels.index(predicted)
        splits.append(split_of(row))
        kinds.append(kind or "")
        refs.append(row["answer"])
        hyps.append(answer)
    if not any(kind in CLASS_KINDS for kind in kinds):
        first = next(iter(gold.values()), {"_file": "gold"})
        raise MevqaError(f"{where(first, 'gold')}: the gold rows have no coarse or fine expression question "
                         f"({vocab.Q_COARSE!r} / {vocab.Q_FINE!r}); UF1/UAR need them")
    if missing:
        logger.warning("%d of %d gold rows have no prediction; scored as empty answers (first: %s)",
                       len(missing), n, ", ".join(missing[:3]))
    row_pair, pair = _pair_scores(hyps, refs)
    return JoinedRows(gold=list(gold.values()), answers=hyps, splits=np.array(splits), kinds=np.array(kinds),
                      gold_label=gold_label, pred_label=pred_label, missing=is_missing,
                      bleu_stats=pair["bleu_stats"][row_pair], sentence_bleu=pair["sentence_bleu"][row_pair],
                      rouge1=pair["rouge1"][row_pair], rouge1_f=pair["rouge1_f"][row_pair], predictions=len(preds))


def report_of(joined: JoinedRows) -> dict:
    """The score report of joined rows (the ``mevqa eval --json`` shape without confidence intervals)."""
    corpus_bleu = BLEU(lowercase=True)
    n = len(joined.gold)
    result: dict = {}
    groups = [("overall", np.ones(n, dtype=bool))] + [(split, joined.splits == split) for split in joined.split_names]
    for name, mask in groups:
        part = {key: None for key in PRIMARY_KEYS}
        counts = {"rows": int(mask.sum()), "missing": int((mask & joined.missing).sum())}
        for kind in CLASS_KINDS:
            kind_mask = mask & (joined.kinds == kind)
            counts[kind] = int(kind_mask.sum())
            # Answers given that name no label; missing rows are counted apart (they are misses too).
            unparseable = (joined.pred_label[kind] == len(LABELS_OF_KIND[kind])) & kind_mask & ~joined.missing
            counts[f"unparseable_{kind}"] = int(unparseable.sum())
            if kind_mask.any():
                classes = _class_report(joined.gold_label[kind][kind_mask], joined.pred_label[kind][kind_mask],
                                        LABELS_OF_KIND[kind])
                part[f"uf1_{kind}"], part[f"uar_{kind}"] = classes.pop("uf1"), classes.pop("uar")
                part[kind] = classes
        stats = joined.bleu_stats[mask].sum(axis=0).tolist()
        part["bleu"] = float(corpus_bleu._compute_score_from_stats(stats).score / 100)
        part["sentence_bleu"] = float(joined.sentence_bleu[mask].mean())
        part["rouge1"] = float(joined.rouge1[mask].mean())
        part["rouge1_f"] = float(joined.rouge1_f[mask].mean())
        part["avg"] = leaderboard_avg(part)
        part["counts"] = counts
        result[name] = part
    result["avg"] = result["overall"]["avg"]
    result["counts"] = {**result["overall"]["counts"], "predictions": joined.predictions}
    return result


def round_floats(obj):
    """Round to 12 decimals: sacrebleu computes BLEU as exp(mean log precision), so a perfect corpus comes out
    as 1.0000000000000004 rather than 1.0."""
    if isinstance(obj, float):
        return round(obj, 12)
    if isinstance(obj, dict):
        return {key: round_floats(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [round_floats(value) for value in obj]
    return obj


def read_rows(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict]:
    """Rows of one or more jsonl files, each tagged with ``_file`` and ``_line`` for error messages: the one row
    reader (:func:`mevqa.rows.read_rows`), which checks ids, without opening media; duplicate ids are left to
    :func:`join`, which names both lines."""
    return read_qa_rows(paths, required=(), unique=False, check_media=False)
