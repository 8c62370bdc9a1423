"""ME-LVQA scoring (MEGC2026 task 2), as participants read the MEGC2026 paper's appendix (docs/megc2026.md): a pure
function over prediction rows and gold rows.

Public API::

    score_lvqa(pred_rows, gold_rows, *, bootstrap=0, seed=0) -> dict      # the ``mevqa lvqa-eval --json`` shape
    join_lvqa(pred_rows, gold_rows) -> LvqaJoined
    FIGURES

Rows are joined by id (``video_id``); each gold row's question kind is recognised
(:func:`mevqa.longvideo.lvqa.recognise`). Per split (SAMM, CAS; :func:`mevqa.eval.split_of`) and Overall:

- ``mae_<all|micro|macro>``, ``rmse_<all|micro|macro>``: mean absolute and root mean squared error of the three
  counts;
- ``f1_au``, ``jaccard_au``: the mean over rows of ``2|P∩G| / (|P| + |G|)`` and ``|P∩G| / |P∪G|`` of the
  distinct-AU answers (sets of AU names); both sets empty (no AU in the video, and none answered) scores 1 on both;
- ``uf1_type``, ``uar_type``: sklearn macro F1 and macro recall of the micro/macro type answers over the types
  present in the split's gold answers.

Answers are read by :func:`mevqa.longvideo.lvqa.parse_count`, :func:`~mevqa.longvideo.lvqa.parse_type` and
:func:`~mevqa.longvideo.lvqa.parse_au_set` (digits or number words; "micro"/"macro"; AU names or ``AU12`` codes). An
unparseable (or missing) answer is wrong and listed under ``unparseable``: a count is scored as the answer 0, and as
off by one where the gold count is 0; an AU answer scores 0; a type answer is a class of its own (a miss).

With ``bootstrap=N``, videos are resampled within each split (:mod:`mevqa.eval.bootstrap`: the same drawing and
percentile intervals as ``mevqa eval``) and every figure gets ``<figure>_ci``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from mevqa.errors import MevqaError
from mevqa.eval.bootstrap import ClipStatistics, clip_of, interval, resampled_figures
from mevqa.eval.metrics import _class_report, _index, round_floats
from mevqa.eval.rows import split_of, split_sort_key, where
from mevqa.longvideo import lvqa

COUNT_NAMES = {lvqa.COUNT_ALL: "all", lvqa.COUNT_MICRO: "micro", lvqa.COUNT_MACRO: "macro"}
TYPES = (lvqa.MICRO, lvqa.MACRO)
FIGURES = (*(f"{m}_{name}" for name in COUNT_NAMES.values() for m in ("mae", "rmse")), "f1_au", "jaccard_au",
           "uf1_type", "uar_type")
# One statistics row per gold row; summed per video they give every figure (and the bootstrap's resamples).
_COLUMNS = [*(f"{what}_{name}" for name in COUNT_NAMES.values() for what in ("abs", "sq", "n")),
            "f1_au", "jaccard_au", "n_au", *(f"{what}_{t}" for t in TYPES for what in ("tp", "support", "predicted"))]
COLUMN = {name: i for i, name in enumerate(_COLUMNS)}


@dataclass
class LvqaJoined:
    """Gold rows joined with their predictions, one entry per gold row, in gold order."""

    gold: list[dict]
    kinds: list[str]
    splits: list[str]
    answers: list[str | None]        # the predicted answer (None: no prediction row)
    stats: np.ndarray                # (rows, len(_COLUMNS))
    type_gold: list[int]             # index into TYPES, -1 on other kinds
    type_pred: list[int]             # index into TYPES, len(TYPES) for unparseable, -1 on other kinds
    parsed: list[bool]
    unparseable: list[dict]
    predictions: int

    @property
    def split_names(self) -> list[str]:
        return sorted(set(self.splits), key=split_sort_key)


def _gold_value(row: dict, kind: str):
    parse = {lvqa.DISTINCT_AUS: lvqa.parse_au_set, lvqa.EVENT_TYPE: lvqa.parse_type}.get(kind, lvqa.parse_count)
    value = parse(row["answer"])
    if value is None:
        raise MevqaError(f"{where(row, 'gold')}: gold answer {row['answer']!r} cannot be read as the "
                         f"{kind.replace('_', ' ')} it answers")
    return value


def _row_stats(kind: str, gold, answer: str | None) -> tuple[np.ndarray, int, bool]:
    """(statistics, predicted type index, parsed?) of one row."""
    stats = np.zeros(len(_COLUMNS))
    predicted_type = -1
    if kind in COUNT_NAMES:
        value = None if answer is None else lvqa.parse_count(answer)
        error = abs(value - gold) if value is not None else (gold if gold > 0 else 1)
        name = COUNT_NAMES[kind]
        stats[COLUMN[f"abs_{name}"]], stats[COLUMN[f"sq_{name}"]], stats[COLUMN[f"n_{name}"]] = error, error ** 2, 1
    elif kind == lvqa.DISTINCT_AUS:
        value = None if answer is None else lvqa.parse_au_set(answer)
        if value is not None:
            both, union = len(value & gold), len(value | gold)
            stats[COLUMN["f1_au"]] = 2 * both / (len(value) + len(gold)) if union else 1.0
            stats[COLUMN["jaccard_au"]] = both / union if union else 1.0
        stats[COLUMN["n_au"]] = 1
    else:
        value = None if answer is None else lvqa.parse_type(answer)
        predicted_type = TYPES.index(value) if value is not None else len(TYPES)
        stats[COLUMN[f"support_{gold}"]] = 1
        if value is not None:
            stats[COLUMN[f"predicted_{value}"]] = 1
            stats[COLUMN[f"tp_{gold}"]] = float(value == gold)
        return stats, predicted_type, value is not None
    return stats, predicted_type, value is not None


def join_lvqa(pred_rows: Iterable[dict], gold_rows: Iterable[dict]) -> LvqaJoined:
    """Validate and join predictions to gold rows by id; read every answer. A prediction for no gold row, a
    question that differs from the gold row's, a gold question of no ME-LVQA kind or an unreadable gold answer is
    an error; a gold row without a prediction is scored as an unparseable answer."""
    gold = _index(gold_rows, "gold", required=("question", "answer"))
    preds = _index(pred_rows, "prediction", required=("answer",))
    for rid, row in preds.items():
        if rid not in gold:
            raise MevqaError(f"{where(row, 'prediction')}: prediction id {rid!r} is not in the gold rows")
    if not gold:
        raise MevqaError("no gold rows to score")
    kinds, splits, answers, stats, type_gold, type_pred, parsed, unparseable = [], [], [], [], [], [], [], []
    for rid, row in gold.items():
        kind = lvqa.recognise(row["question"], where(row, "gold")).kind
        value = _gold_value(row, kind)
        pred = preds.get(rid)
        if pred is not None and isinstance(pred.get("question"), str) \
                and pred["question"].strip() != row["question"].strip():
            raise MevqaError(f"{where(pred, 'prediction')}: prediction {rid!r} answers {pred['question']!r} but the "
                             f"gold row ({where(row, 'gold')}) asks {row['question']!r}")
        answer = None if pred is None else pred["answer"]
        row_stats, predicted_type, readable = _row_stats(kind, value, answer)
        parsed.append(readable)
        if not readable:
            unparseable.append({"id": rid, "kind": kind, "answer": answer})
        kinds.append(kind)
        splits.append(split_of(row))
        answers.append(answer)
        stats.append(row_stats)
        type_gold.append(TYPES.index(value) if kind == lvqa.EVENT_TYPE else -1)
        type_pred.append(predicted_type)
    return LvqaJoined(list(gold.values()), kinds, splits, answers, np.asarray(stats), type_gold, type_pred,
                      parsed, unparseable, len(preds))


def figures_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Every figure from summed statistics ``[..., columns]`` (NaN where a split has no row of its kind)."""
    col = lambda name: sums[..., COLUMN[name]]  # noqa: E731
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in COUNT_NAMES.values():
            n = col(f"n_{name}")
            out[f"mae_{name}"] = np.where(n > 0, col(f"abs_{name}") / n, np.nan)
            out[f"rmse_{name}"] = np.where(n > 0, np.sqrt(col(f"sq_{name}") / n), np.nan)
        n = col("n_au")
        out["f1_au"] = np.where(n > 0, col("f1_au") / n, np.nan)
        out["jaccard_au"] = np.where(n > 0, col("jaccard_au") / n, np.nan)
        tp = np.stack([col(f"tp_{t}") for t in TYPES], axis=-1)
        support = np.stack([col(f"support_{t}") for t in TYPES], axis=-1)
        predicted = np.stack([col(f"predicted_{t}") for t in TYPES], axis=-1)
        present = support > 0
        classes = present.sum(axis=-1)
        f1 = np.where(present, 2 * tp / (support + predicted), 0.0)
        recall = np.where(present, tp / support, 0.0)
        out["uf1_type"] = np.where(classes > 0, f1.sum(axis=-1) / classes, np.nan)
        out["uar_type"] = np.where(classes > 0, recall.sum(axis=-1) / classes, np.nan)
    return out


def _split_report(joined: LvqaJoined, index: list[int]) -> dict:
    sums = joined.stats[index].sum(axis=0)
    report = {key: None if np.isnan(value) else float(value) for key, value in figures_from_sums(sums).items()}
    typed = [i for i in index if joined.type_gold[i] >= 0]
    if typed:  # the point figures of the type answers come from sklearn
        classes = _class_report(np.asarray([joined.type_gold[i] for i in typed]),
                                np.asarray([joined.type_pred[i] for i in typed]), TYPES)
        report.update(uf1_type=classes["uf1"], uar_type=classes["uar"], type=classes)
    report["counts"] = {"rows": len(index), "videos": len({clip_of(joined.gold[i]) for i in index}),
                        **{kind: sum(joined.kinds[i] == kind for i in index) for kind in lvqa.LVQA_KINDS},
                        "unparseable": sum(not joined.parsed[i] for i in index)}
    return report


def _clip_statistics(joined: LvqaJoined) -> ClipStatistics:
    index: dict[tuple[str, str], int] = {}
    row_clip = [index.setdefault((split, clip_of(row)), len(index)) for split, row in zip(joined.splits, joined.gold)]
    sums = np.zeros((len(index), len(_COLUMNS)))
    np.add.at(sums, np.asarray(row_clip), joined.stats)
    keys = list(index)
    split_of_clip = np.array([split for split, _ in keys])
    return ClipStatistics(sums=sums, keys=keys, split_clips={split: np.flatnonzero(split_of_clip == split)
                                                             for split in joined.split_names})


def score_lvqa(pred_rows: Iterable[dict], gold_rows: Iterable[dict], *, bootstrap: int = 0, seed: int = 0) -> dict:
    """Score ME-LVQA predictions against gold rows (module docstring). Pure: reads and writes nothing.

    Returns ``{"overall": {...}, "<split>": {...}, "unparseable": [{"id", "kind", "answer"}], "counts": {...}}``;
    each split object has the :data:`FIGURES` (``None`` where the split has no row of that kind), ``type`` (per-type
    F1, recall, support and confusion) and ``counts``. With ``bootstrap`` > 0, ``<figure>_ci: [lo, hi]`` beside
    each figure and ``bootstrap`` (the settings) at the top level.
    """
    joined = join_lvqa(pred_rows, gold_rows)
    rows = list(range(len(joined.gold)))
    result = {"overall": _split_report(joined, rows)}
    for split in joined.split_names:
        result[split] = _split_report(joined, [i for i in rows if joined.splits[i] == split])
    if bootstrap:
        clips = _clip_statistics(joined)
        (resampled,) = resampled_figures([clips], resamples=bootstrap, seed=seed, figures=figures_from_sums)
        for split, values in resampled.items():
            for key in FIGURES:
                result[split][f"{key}_ci"] = None if result[split][key] is None else interval(values[key])
        result["bootstrap"] = {"resamples": bootstrap, "seed": seed, "unit": "video", "method": "percentile",
                               "videos": {"overall": len(clips.keys), **clips.clip_counts}}
    result["unparseable"] = joined.unparseable
    result["counts"] = {**result["overall"]["counts"], "predictions": joined.predictions}
    return round_floats(result)


def format_table(report: dict) -> str:
    """The figures per split as a fixed-width table (Overall first)."""
    splits = [key for key in report if isinstance(report[key], dict) and "mae_all" in report[key]]
    titles = {"overall": "Overall", "samm": "SAMM", "cas": "CAS"}
    header = ["split", "MAE all", "RMSE all", "MAE mic", "RMSE mic", "MAE mac", "RMSE mac", "F1 AU", "Jacc AU",
              "UF1 type", "UAR type"]
    lines = ["  ".join(f"{h:>9}" for h in header)]
    for split in splits:
        cells = [titles.get(split, split)]
        for key in FIGURES:
            value = report[split][key]
            cells.append("-" if value is None else f"{value:.4f}")
        lines.append("  ".join(f"{c:>9}" for c in cells))
    if report.get("unparseable"):
        lines.append(f"{len(report['unparseable'])} unparseable or missing answer(s) counted as wrong")
    return "\n".join(lines)
