"""The ME-STR score (STRS) exactly as the official evaluator computes it, per dataset and overall.

Public API::

    COLUMNS = ("subject", "video", "onset", "offset", "emotion")    # plus an optional "dataset" column
    read_intervals(paths, role) -> list[Interval]                  # STRS-format CSV files, checked line by line
    dataset_of(subject, video, dataset=None) -> str | None         # "samm", "cas", another name, or None
    iou(a, b) -> float                                             # over inclusive frame ranges
    strs(pred, gt, *, analysis_labels=None, count_missing_subjects=False, iou_threshold=0.5) -> dict
    strs_report(pred, gt, *, analysis_labels=None, count_missing_subjects=False) -> dict   # per dataset + overall
    official_metrics(part) -> dict                                # one part under the official code's key names
    typed_values(columns) -> dict                                 # a file's cells as the official pandas reads them

The rules (docs/str.md has them in full, with the official code's quirks and how its numbers were obtained):

- Spotting is evaluated per subject and video. Predictions are taken in file order; each is compared with the
  video's ground-truth intervals in file order and is a true positive with every one it overlaps at IoU >= 0.5 that
  no earlier prediction took: a ground truth is matched at most once, a prediction may match several (one TP per
  pair). A prediction matching none is a FP; a ground truth left unmatched is a FN. P, R, F1 come from the totals.
- Only subjects that have at least one prediction are evaluated (the official code loops over the predictions'
  subjects), so the ground truth of a subject with no prediction is not counted; ``count_missing_subjects`` counts
  it as FN. Predictions naming a video the subject does not have in the ground truth are ignored.
- Analysis uses the TP pairs whose ground-truth emotion is in the analysis set (default: the emotions of the
  ground truth). Per emotion, one-vs-rest P, R, F1 over those pairs (0 where undefined). The official code takes a
  2x2 confusion matrix and falls back to 0 when the pairs do not give one, so an emotion is also scored 0 when every
  analysed pair has it on both sides. F1_analysis is the harmonic mean of mean P and mean R; UF1 the mean F1; the
  official "UAR" is the mean *precision* (reported as ``uar_official``), the true UAR the mean recall (``uar``).
- STRS = F1_spotting x F1_analysis.
- Subjects, videos and emotions are the values the official code's ``pandas.read_csv`` gives: each file's column
  typed from all its cells (integers, or text kept as written), ``NA`` and the like missing (:func:`typed_values`).

Where the official code has no number (it raises on an empty TP set and gives NaN when mean P + mean R = 0), mevqa
reports 0 and says so in the report's ``warnings``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mevqa.errors import MevqaError

COLUMNS = ("subject", "video", "onset", "offset", "emotion")
OPTIONAL_COLUMNS = ("dataset",)
IOU_THRESHOLD = 0.5
# Report order and titles: the paper's Table 2 has SAMM and CAS(ME)^3 columns; other datasets follow by name.
DATASET_ORDER = ("samm", "cas")
DATASET_TITLES = {"samm": "SAMM", "cas": "CAS", "smic": "SMIC", "casme2": "CASME II", "overall": "Overall"}
RESERVED = ("overall", "settings", "warnings")

# Naming rule used when a row has no dataset column: SAMM long videos are {subject:03d}_{inducement code}
# (006_1; the 2025 test clips say 001_2); CAS(ME)^3 part A subjects are spNO.<n>.
_SAMM_VIDEO = re.compile(r"^\d{3}_\d+$")
_CAS_SUBJECT = re.compile(r"^spno\.?\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class Interval:
    """One row of a STRS-format CSV: an interval of frames (inclusive) of one subject's video, with its emotion."""

    subject: str | int | float     # as the official code's pandas reads the file's column (:func:`typed_values`)
    video: str | int | float
    onset: int
    offset: int
    emotion: str | int | float     # a missing value is a :class:`Missing`
    dataset: str | None = None     # the dataset column's value as a report key (None without the column)
    where: str = ""                # "file:line", for messages


# The texts pandas reads as missing values (NaN) by default before version 2, the only versions the official code runs
# on (it calls DataFrame.append, removed in pandas 2.0). pandas 2 added "None" to them: with the official code, "None"
# is an emotion like any other.
OFFICIAL_NA_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null")
TYPED_COLUMNS = ("subject", "video", "emotion")


class Missing(str):
    """A missing value (pandas' NaN): equal to nothing, itself included, as NaN compares in the official code. It
    reads as ``NaN`` in reports.

    Missing subjects and videos are one instance per cell: pandas compares columns null-aware, so they match nothing.
    Missing emotions are one shared instance, :data:`MISSING_EMOTION`, as pandas' NaN is one object: the official
    code's ``emotion in analysis_emotion`` (Python's ``in``, which tries identity before ``==``) finds a missing
    ground-truth emotion in the set of ground-truth emotions, while its ``==`` tests never match it."""

    def __new__(cls):
        return super().__new__(cls, "NaN")

    def __eq__(self, other) -> bool:
        return False

    def __ne__(self, other) -> bool:
        return True

    __hash__ = object.__hash__


MISSING_EMOTION = Missing()


def typed_values(columns: dict[str, list[str]]) -> dict[str, list]:
    """The cells of one file's columns as the official evaluator's ``pandas.read_csv`` gives them: the type of a
    column is inferred from all its cells (a column of integers, spaces around them allowed, holds ints: ``006`` is
    ``6``; one text cell makes every cell text, kept as written: ``006`` is not ``6``, `` happiness`` keeps its
    space), and the missing-value texts of :data:`OFFICIAL_NA_VALUES` are :class:`Missing`. pandas itself reads
    them, from the cells this module has checked."""
    import pandas as pd  # lazy: pandas (half a second); mevqa eval imports this package

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*columns.values()))
    frame = pd.read_csv(io.StringIO(buffer.getvalue()), keep_default_na=False, na_values=list(OFFICIAL_NA_VALUES),
                        dtype=None)
    return {name: [(MISSING_EMOTION if name == "emotion" else Missing()) if pd.isna(value) else value
                   for value in frame.iloc[:, index].tolist()] for index, name in enumerate(columns)}


def _text(value) -> str:
    return value if isinstance(value, str) else str(value)


def dataset_key(name: str) -> str:
    """A dataset column's value as a report key: ``samm``, ``SAMM-LV`` -> samm; ``cas``, ``casme3``, ``CAS(ME)3``
    -> cas; ``smic``, ``smic-e`` -> smic; anything else lower-cased."""
    name = name.strip().lower()
    if name.startswith("samm"):
        return "samm"
    if name in ("cas", "cas(me)3", "cas(me)^3", "casme3", "casme^3") or name.startswith("cas(me)"):
        return "cas"
    if name.startswith("smic"):
        return "smic"
    return name


def dataset_of(subject: str, video: str, dataset: str | None = None) -> str | None:
    """The dataset a row is reported under: its ``dataset`` value if given, else SAMM for videos named like
    ``006_1``, CAS for subjects named ``spNO.1``, else None (counted in Overall only)."""
    if dataset is not None and dataset.strip():
        return dataset_key(dataset)
    if _SAMM_VIDEO.match(_text(video)):
        return "samm"
    if _CAS_SUBJECT.match(_text(subject)):
        return "cas"
    return None


def _frame(value: str, where: str, column: str) -> int:
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        raise MevqaError(f"{where}: {column} is {text!r}, expected an integer frame number") from None
    if not number.is_integer():  # negative numbers pass: the official fixture's predictions have them
        raise MevqaError(f"{where}: {column} is {text!r}, expected an integer frame number")
    return int(number)


def _csv_text(path: Path) -> str:
    """The file's text (UTF-8, a byte-order mark allowed); a byte that is not UTF-8 is an error naming its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise MevqaError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") \
            from None


def read_intervals(paths: str | Path | Iterable[str | Path], role: str = "pred") -> list[Interval]:
    """Rows of STRS-format CSV files (header ``subject,video,onset,offset,emotion`` in any order, an optional
    ``dataset`` column, other columns ignored), in file order. ``role`` ("pred" or "gt") names the files in errors.

    Raises :class:`MevqaError` naming the file and line for text that is not UTF-8, a missing or repeated column, an
    empty cell, a frame that is not an integer, or ``onset > offset``."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    rows: list[Interval] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise MevqaError(f"{path}: {role} file not found")
        reader = csv.reader(io.StringIO(_csv_text(path), newline=""))
        try:
            header = next(reader, None)
            if header is None:
                raise MevqaError(f"{path}: empty file; expected a header line {','.join(COLUMNS)}")
            names = [name.strip().lower() for name in header]
            missing = [column for column in COLUMNS if column not in names]
            if missing:
                raise MevqaError(f"{path}:1: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)} "
                                 f"(the header has: {','.join(name.strip() for name in header)})")
            repeated = [column for column in COLUMNS + OPTIONAL_COLUMNS if names.count(column) > 1]
            if repeated:
                raise MevqaError(f"{path}:1: column {repeated[0]} appears {names.count(repeated[0])} times in the "
                                 "header; expected it once")
            position = {column: names.index(column) for column in COLUMNS + OPTIONAL_COLUMNS if column in names}
            checked: list[tuple[dict, int, int, str]] = []
            for cells in reader:
                where = f"{path}:{reader.line_num}"
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) < len(header):
                    raise MevqaError(f"{where}: {len(cells)} fields, expected {len(header)} as in the header")
                values = {column: cells[index] for column, index in position.items()}
                for column in COLUMNS:
                    if not values[column].strip():
                        raise MevqaError(f"{where}: {column} is empty")
                onset, offset = _frame(values["onset"], where, "onset"), _frame(values["offset"], where, "offset")
                if onset > offset:
                    raise MevqaError(f"{where}: onset {onset} is after offset {offset}")
                checked.append((values, onset, offset, where))
        except csv.Error as exc:
            raise MevqaError(f"{path}:{reader.line_num}: not a readable CSV line ({exc})") from None
        typed = typed_values({column: [values[column] for values, *_ in checked] for column in TYPED_COLUMNS})
        for index, (values, onset, offset, where) in enumerate(checked):
            dataset = values.get("dataset", "").strip()
            rows.append(Interval(typed["subject"][index], typed["video"][index], onset, offset,
                                 typed["emotion"][index], dataset_key(dataset) if dataset else None, where))
    return rows


def iou(a: Interval, b: Interval) -> float:
    """Intersection over union of two inclusive frame ranges (frames counted, as the official code does)."""
    inter = max(0, min(a.offset, b.offset) - max(a.onset, b.onset) + 1)
    union = (a.offset - a.onset + 1) + (b.offset - b.onset + 1) - inter
    return inter / union if union else 0.0


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _spot(pred: list[Interval], gt: list[Interval], count_missing_subjects: bool, iou_threshold: float):
    """(pairs, fp, fn, notes): the official spotting loop, per subject with predictions and video of its truth."""
    gt_by_video: dict[tuple[str, str], list[Interval]] = {}
    for row in gt:
        gt_by_video.setdefault((row.subject, row.video), []).append(row)
    pred_by_video: dict[tuple[str, str], list[Interval]] = {}
    for row in pred:
        pred_by_video.setdefault((row.subject, row.video), []).append(row)
    predicted_subjects = {row.subject for row in pred}
    pairs: list[tuple[Interval, Interval]] = []
    fp = fn = 0
    missing: dict[str, int] = {}
    for (subject, video), truths in gt_by_video.items():
        if subject not in predicted_subjects:
            missing[subject] = missing.get(subject, 0) + len(truths)
            continue
        taken = [False] * len(truths)
        for guess in pred_by_video.get((subject, video), []):
            hit = False
            for index, truth in enumerate(truths):
                if not taken[index] and iou(guess, truth) >= iou_threshold:
                    pairs.append((guess, truth))
                    taken[index] = hit = True
            fp += not hit
        fn += taken.count(False)
    not_counted = sum(missing.values())
    if count_missing_subjects:
        fn += not_counted
    unknown = [row for key, rows in pred_by_video.items() if key not in gt_by_video for row in rows]
    return pairs, fp, fn, {"missing_subjects": sorted(missing, key=_text), "gt_of_missing_subjects": not_counted,
                           "unknown_video_predictions": unknown}


def _among(value, labels: list) -> bool:
    """``value == label`` for some label: the official code's per-emotion ``==`` (a missing value is none)."""
    return any(value == label for label in labels)


def _analysis(pairs: list[tuple[Interval, Interval]], labels: list[str]) -> dict:
    analysed = [(guess.emotion, truth.emotion) for guess, truth in pairs if truth.emotion in labels]
    per_emotion, quirk = {}, []
    for emotion in labels:
        tp = sum(p == emotion and g == emotion for p, g in analysed)
        fp = sum(p == emotion and g != emotion for p, g in analysed)
        fn = sum(p != emotion and g == emotion for p, g in analysed)
        if analysed and tp == len(analysed):
            # Every analysed pair is (emotion, emotion): the binary labels hold one value, the official code's
            # confusion matrix is 1x1, and it scores the emotion 0.
            quirk.append(_text(emotion))
            precision = recall = f1 = 0.0
        else:
            precision, recall, f1 = _prf(tp, fp, fn)
        per_emotion[_text(emotion)] = {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}
    mean_p = _mean([entry["precision"] for entry in per_emotion.values()])
    mean_r = _mean([entry["recall"] for entry in per_emotion.values()])
    undefined = mean_p + mean_r == 0
    correct = sum(p == g for p, g in analysed)
    return {
        "labels": [_text(label) for label in labels], "pairs": len(analysed),
        # The official counts: FP = pairs labelled wrongly with an emotion of the set; its FN repeats that count.
        "tp": correct, "fp": sum(p != g and _among(p, labels) for p, g in analysed),
        "fn": sum(p != g and _among(p, labels) for p, g in analysed),
        "precision": mean_p, "recall": mean_r, "f1": 0.0 if undefined else 2 * mean_p * mean_r / (mean_p + mean_r),
        "uf1": _mean([entry["f1"] for entry in per_emotion.values()]),
        "uar_official": mean_p, "uar": mean_r,
        "per_emotion": per_emotion, "f1_undefined": undefined, "single_class_quirk": quirk,
    }


def _labels(values: Iterable) -> list:
    """The distinct values, missing ones as one :class:`Missing` (as pandas' ``unique`` keeps one NaN), in a fixed
    order across types."""
    values = list(values)
    distinct = sorted({value for value in values if not isinstance(value, Missing)}, key=lambda v: (_text(v), repr(v)))
    return distinct + ([MISSING_EMOTION] if any(isinstance(value, Missing) for value in values) else [])


def strs(pred: list[Interval], gt: list[Interval], *, analysis_labels: Iterable[str] | None = None,
         count_missing_subjects: bool = False, iou_threshold: float = IOU_THRESHOLD) -> dict:
    """STRS of predictions against ground truth, as one evaluation (the official code run on these rows)."""
    labels = _labels(analysis_labels if analysis_labels is not None else [row.emotion for row in gt])
    pairs, fp, fn, notes = _spot(pred, gt, count_missing_subjects, iou_threshold)
    unknown = notes["unknown_video_predictions"]
    precision, recall, f1 = _prf(len(pairs), fp, fn)
    analysis = _analysis(pairs, labels)
    return {
        "strs": f1 * analysis["f1"],
        "spotting": {"tp": len(pairs), "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1},
        "analysis": analysis,
        "counts": {"gt": len(gt), "pred": len(pred), "missing_subjects": [_text(s) for s in notes["missing_subjects"]],
                   "gt_of_missing_subjects": notes["gt_of_missing_subjects"],
                   "gt_counted": len(gt) - (0 if count_missing_subjects else notes["gt_of_missing_subjects"]),
                   "pred_ignored": len(unknown),
                   "first_ignored": f"subject {unknown[0].subject} video {unknown[0].video} ({unknown[0].where})"
                   if unknown else None},
    }


def _warnings(name: str, part: dict, count_missing_subjects: bool) -> list[str]:
    title = DATASET_TITLES.get(name, name)
    counts, analysis, out = part["counts"], part["analysis"], []
    if counts["missing_subjects"]:
        subjects = counts["missing_subjects"]
        shown = ", ".join(subjects[:8]) + (" ..." if len(subjects) > 8 else "")
        if count_missing_subjects:
            out.append(f"{title}: {len(subjects)} subject(s) with no prediction ({shown}); their "
                       f"{counts['gt_of_missing_subjects']} ground-truth interval(s) are counted as FN")
        else:
            out.append(f"{title}: {len(subjects)} subject(s) with no prediction ({shown}); their "
                       f"{counts['gt_of_missing_subjects']} ground-truth interval(s) are not counted, as the official "
                       f"evaluator does (--count-missing-subjects counts them as FN)")
    if counts["pred_ignored"]:
        out.append(f"{title}: {counts['pred_ignored']} prediction(s) name a video not in the ground truth (first: "
                   f"{counts['first_ignored']}); they are ignored, as the official evaluator does")
    if analysis["single_class_quirk"]:
        out.append(f"{title}: every analysed pair is {analysis['single_class_quirk'][0]!r} on both sides; the official "
                   f"code scores that emotion 0 (its confusion matrix is 1x1), and so does mevqa")
    if analysis["f1_undefined"]:
        reason = "there are no spotted pairs" if not part["spotting"]["tp"] else "mean P + mean R = 0"
        out.append(f"{title}: F1_analysis is undefined ({reason}; the official code raises or gives NaN); "
                   f"reported as 0, so STRS is 0")
    return out


def strs_report(pred: list[Interval], gt: list[Interval], *, analysis_labels: Iterable[str] | None = None,
                count_missing_subjects: bool = False) -> dict:
    """The ``mevqa str-eval --json`` report: one :func:`strs` part per dataset present in the ground truth (the
    official code run on that dataset's rows) and ``overall`` (run on all rows), plus ``settings`` and
    ``warnings``.

    A prediction's dataset is its own ``dataset`` value if given, else that of the ground truth of its subject and
    video, else the naming rule of :func:`dataset_of`.
    """
    if not gt:
        raise MevqaError("the ground truth has no intervals")
    labels = None if analysis_labels is None else sorted(set(analysis_labels))
    if labels is not None and not labels:
        raise MevqaError("the analysis label set is empty")
    gt_dataset = [dataset_of(row.subject, row.video, row.dataset) for row in gt]
    known = {(row.subject, row.video): d for row, d in zip(gt, gt_dataset)}
    pred_dataset = [row.dataset or known.get((row.subject, row.video)) or dataset_of(row.subject, row.video)
                    for row in pred]
    datasets = sorted({d for d in gt_dataset if d is not None},
                      key=lambda d: (DATASET_ORDER.index(d) if d in DATASET_ORDER else len(DATASET_ORDER), d))
    for name in datasets:
        if name in RESERVED:
            raise MevqaError(f"{name!r} cannot name a dataset (reserved for the report)")
    parts = {}
    for name in datasets:
        parts[name] = strs([row for row, d in zip(pred, pred_dataset) if d == name],
                           [row for row, d in zip(gt, gt_dataset) if d == name], analysis_labels=labels,
                           count_missing_subjects=count_missing_subjects)
    parts["overall"] = strs(pred, gt, analysis_labels=labels, count_missing_subjects=count_missing_subjects)
    warnings = [w for name, part in parts.items() for w in _warnings(name, part, count_missing_subjects)]
    return {**parts, "settings": {"iou_threshold": IOU_THRESHOLD, "count_missing_subjects": count_missing_subjects,
                                  "analysis_labels": labels}, "warnings": warnings}


def strs_files(pred_paths, gt_paths, **options) -> dict:
    """Read STRS-format CSV files and :func:`strs_report` them."""
    pred, gt = read_intervals(pred_paths, "pred"), read_intervals(gt_paths, "gt")
    report = strs_report(pred, gt, **options)
    kinds = {role: _subject_kinds(rows) for role, rows in (("predictions", pred), ("ground truth", gt))}
    if kinds["predictions"] and kinds["ground truth"] and not kinds["predictions"] & kinds["ground truth"]:
        report["warnings"].insert(0, f"the subject column reads as {'/'.join(kinds['predictions'])} in the "
                                     f"predictions and as {'/'.join(kinds['ground truth'])} in the ground truth "
                                     "(pandas infers each file's column type): the official evaluator matches no "
                                     "subject across them")
    return report


def _subject_kinds(rows: list[Interval]) -> set[str]:
    return {"text" if isinstance(row.subject, str) else "numbers" for row in rows
            if not isinstance(row.subject, Missing)}


def official_metrics(part: dict) -> dict[str, float]:
    """One report part under the key names the official evaluator returns (its "UAR analysis" is the mean
    precision)."""
    spot, analysis = part["spotting"], part["analysis"]
    return {
        "STRS": part["strs"], "TP spotting": spot["tp"], "FP spotting": spot["fp"], "FN spotting": spot["fn"],
        "Precision spotting": spot["precision"], "Recall spotting": spot["recall"], "F1-score spotting": spot["f1"],
        "TP analysis": analysis["tp"], "FP analysis": analysis["fp"], "FN analysis": analysis["fn"],
        "Precision analysis": analysis["precision"], "Recall analysis": analysis["recall"],
        "F1-score analysis": analysis["f1"], "UF1 analysis": analysis["uf1"], "UAR analysis": analysis["uar_official"],
    }


def format_table(report: dict) -> str:
    """The paper's Table 2 layout: one line per dataset and Overall, spotting then analysis then STRS."""
    names = [key for key in report if key not in RESERVED] + ["overall"]
    header = (f"{'Split':<9} {'GT':>5} {'Pred':>5} {'TP':>5} {'FP':>5} {'FN':>5}  {'P-spot':>6} {'R-spot':>6} "
              f"{'F1-spot':>7}  {'P-ana':>6} {'R-ana':>6} {'F1-ana':>6} {'UF1':>6} {'UAR*':>6}  {'STRS':>6}")
    lines = [header, "-" * len(header)]
    for name in names:
        part = report[name]
        spot, analysis, counts = part["spotting"], part["analysis"], part["counts"]
        lines.append(f"{DATASET_TITLES.get(name, name):<9} {counts['gt_counted']:>5} {counts['pred']:>5} "
                     f"{spot['tp']:>5} {spot['fp']:>5} {spot['fn']:>5}  {spot['precision']:>6.4f} "
                     f"{spot['recall']:>6.4f} {spot['f1']:>7.4f}  {analysis['precision']:>6.4f} "
                     f"{analysis['recall']:>6.4f} {analysis['f1']:>6.4f} {analysis['uf1']:>6.4f} "
                     f"{analysis['uar_official']:>6.4f}  {part['strs']:>6.4f}")
    lines += ["-" * len(header),
              "UAR* is the official evaluator's \"UAR\": the mean per-emotion precision. The true UAR (mean recall) is "
              "R-ana.",
              f"GT: ground-truth intervals counted; analysis labels: {', '.join(report['overall']['analysis']['labels'])}"]
    return "\n".join(lines)
