"""Confidence intervals by resampling clips, and paired differences of two systems over the same resamples.

The unit of resampling is the clip, never the row: a clip's questions are all answered from the same frames, so their
errors go together, and resampling rows would give intervals that are too narrow. The clip rule (:func:`clip_of`),
read from the gold row: its ``image_id`` (training-style rows), else its ``video`` (official test rows), else the row
id without its trailing ``_<k>``; clips are told apart per split. Clips are drawn with replacement within each split,
so every resample keeps each split's number of clips, as a fixed test set does; Overall pools the resampled rows of
all splits. Every figure is recomputed on every resample, and the interval is the percentile one: the 2.5th and
97.5th percentiles of the resampled values (numpy's linear interpolation). A resample in which a figure is undefined
(no row of its question kind drawn) is left out of that figure's interval.

Speed: each row's sufficient statistics (per-class true positives, support and predicted counts for the coarse and
fine questions; sacrebleu's n-gram counts; ROUGE-1 recall and F; sentence BLEU; a row count) are summed per clip once.
A resample is a vector of clip multiplicities (multinomial counts), so the statistics of a batch of resamples are one
matrix product, and the figures follow from the sums exactly as :func:`mevqa.eval.score` computes them from rows
(UF1/UAR from per-class counts over the classes present in the resample's gold labels; corpus BLEU from the summed
n-gram counts with sacrebleu's formula and smoothing; ROUGE-1 as a weighted mean). At unit weights they equal
:func:`mevqa.eval.score` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mevqa.errors import MevqaError
from mevqa.eval.metrics import CLASS_KINDS, PRIMARY_KEYS, JoinedRows
from mevqa.eval.rows import LABELS_OF_KIND, row_id
from mevqa.paths import check_seed

CONFIDENCE = 0.95
MIN_RESAMPLES, MAX_RESAMPLES = 100, 1_000_000
FIGURES = (*PRIMARY_KEYS, "avg")
# Resamples are processed in batches of at most this many (resample, clip) cells, so memory stays bounded on files
# with tens of thousands of clips.
_BATCH_CELLS = 2_000_000


def check_resampling(resamples: int, seed: int, *, none_allowed: bool = False) -> None:
    """The resample count and seed the commands take: ``MIN_RESAMPLES`` to ``MAX_RESAMPLES`` resamples (0, no
    intervals, where ``none_allowed``), a seed in 0..2**32-1. Fewer resamples give a "95% interval" that is noise
    (one resample gives an interval that may exclude the point estimate); more only spend time and memory."""
    if not (none_allowed and resamples == 0) and not MIN_RESAMPLES <= resamples <= MAX_RESAMPLES:
        raise MevqaError(f"--bootstrap must be {'0 (no intervals) or ' if none_allowed else ''}between "
                         f"{MIN_RESAMPLES} and {MAX_RESAMPLES:,} resamples, got {resamples}")
    check_seed(seed)


def clip_of(row: dict) -> str:
    """The clip a gold row belongs to: ``image_id``, else ``video``, else its id without the trailing ``_<k>``."""
    for key in ("image_id", "video"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    rid = row_id(row)
    stem, sep, k = rid.rpartition("_")
    return stem if sep and stem and k.isdigit() else rid


def _columns() -> dict[str, slice]:
    """Where each statistic lives in a statistics row."""
    layout, start = {}, 0
    widths = [(f"{kind}_{what}", len(LABELS_OF_KIND[kind])) for kind in CLASS_KINDS
              for what in ("tp", "support", "predicted")]
    widths += [("bleu", 10), ("rouge1", 1), ("rouge1_f", 1), ("sentence_bleu", 1), ("rows", 1)]
    for name, width in widths:
        layout[name] = slice(start, start + width)
        start += width
    return layout


COLUMNS = _columns()
WIDTH = max(s.stop for s in COLUMNS.values())


@dataclass
class ClipStatistics:
    """Per-clip sums of the rows' sufficient statistics, and each split's clips."""

    sums: np.ndarray                  # (clips, WIDTH)
    keys: list[tuple[str, str]]       # (split, clip name) per clip
    split_clips: dict[str, np.ndarray]  # split -> indices of its clips (splits in report order)

    @property
    def clip_counts(self) -> dict[str, int]:
        return {split: len(index) for split, index in self.split_clips.items()}


def row_statistics(joined: JoinedRows) -> np.ndarray:
    """(rows, WIDTH) sufficient statistics of each row."""
    n = len(joined.gold)
    stats = np.zeros((n, WIDTH))
    for kind in CLASS_KINDS:
        labels = np.arange(len(LABELS_OF_KIND[kind]))
        gold = joined.gold_label[kind][:, None] == labels      # rows of other kinds have -1: no class
        pred = joined.pred_label[kind][:, None] == labels      # unknown (= len(labels)) and -1: no class
        stats[:, COLUMNS[f"{kind}_tp"]] = gold & pred
        stats[:, COLUMNS[f"{kind}_support"]] = gold
        stats[:, COLUMNS[f"{kind}_predicted"]] = pred
    stats[:, COLUMNS["bleu"]] = joined.bleu_stats
    for name in ("rouge1", "rouge1_f", "sentence_bleu"):
        stats[:, COLUMNS[name].start] = getattr(joined, name)
    stats[:, COLUMNS["rows"].start] = 1.0
    return stats


def clip_statistics(joined: JoinedRows) -> ClipStatistics:
    """Sum the rows' statistics per clip (:func:`clip_of`, within its split)."""
    index: dict[tuple[str, str], int] = {}
    row_clip = np.fromiter((index.setdefault((split, clip_of(row)), len(index))
                            for split, row in zip(joined.splits.tolist(), joined.gold)), dtype=np.int64,
                           count=len(joined.gold))
    sums = np.zeros((len(index), WIDTH))
    np.add.at(sums, row_clip, row_statistics(joined))
    keys = list(index)
    split_of_clip = np.array([split for split, _ in keys])
    return ClipStatistics(sums=sums, keys=keys,
                          split_clips={split: np.flatnonzero(split_of_clip == split) for split in joined.split_names})


# --- figures from summed statistics ----------------------------------------------------------------------------
def corpus_bleu(stats: np.ndarray) -> np.ndarray:
    """sacrebleu's corpus BLEU (default ``exp`` smoothing, no effective order) / 100 from summed statistics
    ``[..., 10]``: the same arithmetic, in the same order, as ``BLEU.compute_bleu``."""
    sys_len, ref_len = stats[..., 0], stats[..., 1]
    correct, total = stats[..., 2:6], stats[..., 6:10]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        brevity = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0), 1.0)
        unmatched = correct == 0
        smooth = 2.0 ** np.cumsum(unmatched, axis=-1)     # doubles at each order without a match
        precision = np.where(unmatched, 100.0 / (smooth * total), 100.0 * correct / total)
        logs = np.log(precision)
        value = brevity * np.exp((logs[..., 0] + logs[..., 1] + logs[..., 2] + logs[..., 3]) / 4)
    # No match at all, or an order with no n-gram (e.g. one-word answers have no 4-grams): sacrebleu gives 0.
    value = np.where((total == 0).any(axis=-1) | unmatched.all(axis=-1), 0.0, value)
    return value / 100


def figures_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """The six figures and Avg from summed statistics ``[..., WIDTH]`` (NaN where a figure is undefined)."""
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for kind in CLASS_KINDS:
            tp, support = sums[..., COLUMNS[f"{kind}_tp"]], sums[..., COLUMNS[f"{kind}_support"]]
            predicted = sums[..., COLUMNS[f"{kind}_predicted"]]
            present = support > 0
            classes = present.sum(axis=-1)
            # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted); recall = TP / support.
            f1 = np.where(present, 2 * tp / (support + predicted), 0.0)
            recall = np.where(present, tp / support, 0.0)
            out[f"uf1_{kind}"] = np.where(classes > 0, f1.sum(axis=-1) / classes, np.nan)
            out[f"uar_{kind}"] = np.where(classes > 0, recall.sum(axis=-1) / classes, np.nan)
        out["bleu"] = corpus_bleu(sums[..., COLUMNS["bleu"]])
        rows = sums[..., COLUMNS["rows"].start]
        out["rouge1"] = sums[..., COLUMNS["rouge1"].start] / rows
    out["avg"] = np.mean([out[key] for key in PRIMARY_KEYS], axis=0)
    return out


def unit_figures(clips: ClipStatistics) -> dict[str, dict[str, float | None]]:
    """Each split's (and Overall's) figures with every clip counted once: the values :func:`mevqa.eval.score`
    reports."""
    sums = {split: clips.sums[index].sum(axis=0) for split, index in clips.split_clips.items()}
    sums = {"overall": clips.sums.sum(axis=0), **sums}
    return {split: {key: None if np.isnan(value) else float(value)
                    for key, value in figures_from_sums(total).items()} for split, total in sums.items()}


def resampled_figures(systems: list[ClipStatistics], *, resamples: int, seed: int
                      ) -> list[dict[str, dict[str, np.ndarray]]]:
    """Figures of each system on the same ``resamples`` clip resamples: ``[system][split][figure] -> (resamples,)``.

    The systems must share their clips (the same gold rows); drawing depends only on the clip counts, ``resamples``
    and ``seed``, so a figure's resampled values are reproducible.
    """
    check_resampling(resamples, seed)
    first = systems[0]
    for other in systems[1:]:
        if other.keys != first.keys:
            raise ValueError("paired resampling needs the same clips in every system")
    rng = np.random.default_rng(seed)
    splits = list(first.split_clips)
    batch = max(1, min(resamples, _BATCH_CELLS // max(1, len(first.keys))))
    parts: list[dict[str, list[dict[str, np.ndarray]]]] = [{s: [] for s in ["overall", *splits]} for _ in systems]
    done = 0
    while done < resamples:
        size = min(batch, resamples - done)
        totals = [{} for _ in systems]
        for split in splits:
            index = first.split_clips[split]
            counts = rng.multinomial(len(index), np.full(len(index), 1.0 / len(index)), size=size).astype(float)
            for system, total in zip(systems, totals):
                total[split] = counts @ system.sums[index]
        for total, part in zip(totals, parts):
            part["overall"].append(figures_from_sums(sum(total.values())))
            for split in splits:
                part[split].append(figures_from_sums(total[split]))
        done += size
    return [{split: {key: np.concatenate([chunk[key] for chunk in chunks]) for key in FIGURES}
             for split, chunks in part.items()} for part in parts]


def interval(values: np.ndarray, confidence: float = CONFIDENCE) -> list[float] | None:
    """Percentile interval of the defined values, ``None`` when no resample defines the figure."""
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _settings(clips: ClipStatistics, resamples: int, seed: int) -> dict:
    return {"resamples": resamples, "seed": seed, "unit": "clip", "confidence": CONFIDENCE, "method": "percentile",
            "clips": {"overall": len(clips.keys), **clips.clip_counts}}


def add_intervals(report: dict, joined: JoinedRows, *, resamples: int, seed: int) -> dict:
    """Add ``<figure>_ci: [lo, hi]`` beside each figure of each split of ``report`` (made from ``joined``),
    ``avg_ci`` and ``bootstrap`` (the settings) at the top level. Returns ``report``, changed in place."""
    clips = clip_statistics(joined)
    (figures,) = resampled_figures([clips], resamples=resamples, seed=seed)
    for split, values in figures.items():
        part = report[split]
        with_ci = {}
        for key, value in part.items():
            with_ci[key] = value
            if key in FIGURES:
                with_ci[f"{key}_ci"] = None if value is None else interval(values[key])
        report[split] = with_ci
    report["avg_ci"] = report["overall"]["avg_ci"]
    report["bootstrap"] = _settings(clips, resamples, seed)
    return report


def paired_differences(joined_a: JoinedRows, joined_b: JoinedRows, *, resamples: int, seed: int) -> dict:
    """B - A per split and figure over the same clip resamples.

    Returns ``{"difference": {"<split>": {"<figure>": {"a": x, "b": y, "difference": y - x, "ci": [lo, hi],
    "b_beats_a": share}}}, "bootstrap": {...}}`` (Overall first); ``share`` is the fraction of resamples (where both figures are defined) in which B's
    figure is strictly higher (a tie does not count as beating). ``a``, ``b`` and ``difference`` are the full-data
    values (``None`` where undefined).
    """
    if [row_id(row) for row in joined_a.gold] != [row_id(row) for row in joined_b.gold]:
        raise ValueError("paired differences need both systems scored against the same gold rows")
    clips_a, clips_b = clip_statistics(joined_a), clip_statistics(joined_b)
    point_a, point_b = unit_figures(clips_a), unit_figures(clips_b)
    resampled_a, resampled_b = resampled_figures([clips_a, clips_b], resamples=resamples, seed=seed)
    result: dict = {}
    for split in resampled_a:
        result[split] = {}
        for key in FIGURES:
            a, b = point_a[split][key], point_b[split][key]
            entry = {"a": a, "b": b, "difference": None, "ci": None, "b_beats_a": None}
            if a is not None and b is not None:
                diff = resampled_b[split][key] - resampled_a[split][key]
                defined = diff[~np.isnan(diff)]
                entry.update(difference=b - a, ci=interval(diff),
                             b_beats_a=float(np.mean(defined > 0)) if len(defined) else None)
            result[split][key] = entry
    return {"difference": result, "bootstrap": _settings(clips_a, resamples, seed)}
