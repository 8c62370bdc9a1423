"""People-facing views of a score report: the leaderboard table and confusion-matrix images."""

from __future__ import annotations

import io
from pathlib import Path

from mevqa.eval.metrics import CLASS_KINDS, PRIMARY_KEYS
from mevqa.eval.rows import SPLIT_TITLES, split_sort_key

COLUMN_TITLES = ("UF1-C", "UAR-C", "UF1-F", "UAR-F", "BLEU", "ROUGE-1", "Avg")
FIGURE_KEYS = (*PRIMARY_KEYS, "avg")


def _figure(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _interval(ci) -> str:
    return "-" if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}"


def report_splits(report: dict) -> list[str]:
    """The split keys of a score report, Overall last (the table's order)."""
    splits = [key for key, value in report.items() if isinstance(value, dict) and "uf1_coarse" in value]
    return [split for split in splits if split != "overall"] + ["overall"]


def format_table(report: dict) -> str:
    """The MEGC2025 paper's Table 4 layout: one line per split and Overall (with the split's own Avg), then the
    leaderboard Avg and the counts. A report with bootstrap intervals gets a ``95% CI`` line under each split."""
    bootstrap = report.get("bootstrap")
    width = 11 if bootstrap else 7
    header = f"{'Split':<10} {'Rows':>7}  " + "  ".join(f"{title:>{width}}" for title in COLUMN_TITLES)
    lines = [header, "-" * len(header)]
    for split in report_splits(report):
        part = report[split]
        title = SPLIT_TITLES.get(split, split)
        lines.append(f"{title:<10} {part['counts']['rows']:>7}  "
                     + "  ".join(f"{_figure(part.get(key)):>{width}}" for key in FIGURE_KEYS))
        if bootstrap:
            lines.append(f"{'  95% CI':<10} {'':>7}  "
                         + "  ".join(f"{_interval(part.get(f'{key}_ci')):>{width}}" for key in FIGURE_KEYS))
    counts = report["counts"]
    avg_line = f"Avg (mean of the six Overall figures): {_figure(report['avg'])}"
    if bootstrap:
        clips = ", ".join(f"{SPLIT_TITLES.get(split, split)} {n}" for split, n in bootstrap["clips"].items()
                          if split != "overall")
        avg_line += (f", 95% CI {_interval(report.get('avg_ci'))} ({bootstrap['resamples']} resamples of clips, "
                     f"seed {bootstrap['seed']}; clips: {clips})")
    lines += [
        "-" * len(header),
        avg_line,
        "",
        f"rows scored: {counts['rows']} (coarse {counts['coarse']}, fine {counts['fine']}); "
        f"prediction rows: {counts['predictions']}",
        f"unparseable answers: coarse {counts['unparseable_coarse']}, fine {counts['unparseable_fine']} "
        f"(scored as misses)",
        f"missing prediction rows: {counts['missing']} (scored as empty answers)",
    ]
    return "\n".join(lines)


def format_comparison(comparison: dict) -> str:
    """``mevqa compare``'s table: per split, each figure of A and B, B - A with its interval, and how often B won."""
    settings = comparison["bootstrap"]
    lines = [f"B - A over the same {settings['resamples']} resamples of clips (seed {settings['seed']}); "
             f"'B beats A': share of resamples where B's figure is strictly higher"]
    header = f"{'':<10} {'A':>8} {'B':>8} {'B - A':>8}  {'95% CI':>17}  {'B beats A':>9}"
    for split, figures in comparison["difference"].items():
        title = SPLIT_TITLES.get(split, split)
        lines += ["", f"{title} ({settings['clips'][split]} clips)", header, "-" * len(header)]
        for key, name in zip(FIGURE_KEYS, COLUMN_TITLES):
            entry = figures[key]
            diff = "-" if entry["difference"] is None else f"{entry['difference']:+.4f}"
            ci = "-" if entry["ci"] is None else f"[{entry['ci'][0]:+.3f}, {entry['ci'][1]:+.3f}]"
            share = "-" if entry["b_beats_a"] is None else f"{entry['b_beats_a']:.3f}"
            lines.append(f"{name:<10} {_figure(entry['a']):>8} {_figure(entry['b']):>8} {diff:>8}  {ci:>17}  "
                         f"{share:>9}")
    return "\n".join(lines)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib, PNG figures only
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)
    return figure


def confusion_pngs(report: dict, split: str = "overall") -> dict[str, bytes]:
    """``{"coarse": png, "fine": png}`` confusion matrices of one split (rows: gold classes, columns: predicted
    labels, ``unknown`` included), for the kinds that split has."""
    images = {}
    for kind in CLASS_KINDS:
        confusion = report[split].get(kind)
        if confusion is None:
            continue
        names, matrix = confusion["confusion"]["labels"], confusion["confusion"]["matrix"]
        gold = [i for i, name in enumerate(names) if name in confusion["classes"]]
        rows = [matrix[i] for i in gold]
        figure = _new_figure(1.2 + 0.9 * len(names), 1.2 + 0.8 * len(gold))
        axes = figure.add_subplot()
        image = axes.imshow(rows, cmap="Blues", aspect="auto")
        peak = max((max(row) for row in rows), default=0)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                axes.text(c, r, str(value), ha="center", va="center",
                          color="white" if peak and value > peak / 2 else "black", fontsize=9)
        axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axes.set_yticks(range(len(gold)), [names[i] for i in gold])
        axes.set_xlabel("predicted")
        axes.set_ylabel("gold")
        uf1, uar = report[split][f"uf1_{kind}"], report[split][f"uar_{kind}"]
        axes.set_title(f"{SPLIT_TITLES.get(split, split)} {kind}: UF1 {uf1:.3f}, UAR {uar:.3f}")
        figure.colorbar(image, ax=axes)
        figure.tight_layout()
        images[kind] = _png(figure)
    return images


# --- cross-validation reports (`mevqa cv`) -----------------------------------------------------------------------
def _cell(value, ci) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if ci is None else f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def pooled_markdown(reports: dict[str, dict]) -> str:
    """One markdown table of several configs' pooled reports: per split (Overall first) a row per config, each
    figure and Avg with its 95% interval."""
    splits = sorted({split for report in reports.values() for split in report_splits(report) if split != "overall"},
                    key=split_sort_key)
    lines = ["| Split | Config | Clips | " + " | ".join(COLUMN_TITLES) + " |",
             "|---|---|---:|" + "---:|" * len(COLUMN_TITLES)]
    for split in ["overall", *splits]:
        for name, report in reports.items():
            part = report.get(split)
            if part is None:
                continue
            clips = report.get("bootstrap", {}).get("clips", {}).get(split, "")
            cells = [_cell(part.get(key), part.get(f"{key}_ci")) for key in FIGURE_KEYS]
            lines.append(f"| {SPLIT_TITLES.get(split, split)} | {name} | {clips} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _empty_answers_line(reports: dict[str, dict]) -> list[str]:
    """The paragraph naming configs whose model answered held-out rows with nothing (none: no paragraph)."""
    empty = {name: report["counts"].get("empty_answers", 0) for name, report in reports.items()}
    if not any(empty.values()):
        return []
    return ["Rows the model answered with nothing, scored as misses: "
            + ", ".join(f"{name} {count}" for name, count in empty.items() if count) + ".", ""]


def cv_markdown(reports: dict[str, dict], fold_avgs: dict[str, list], *, folds: list[tuple[str, list[str]]],
                zero_shot: dict[str, bool], images: list[str]) -> str:
    """``mevqa cv``'s ``report.md``: the pooled table, Avg per fold, and the plots."""
    any_report = next(iter(reports.values()))
    settings = any_report.get("bootstrap", {})
    lines = ["# Cross-validation", "",
             f"{len(folds)} folds; every config's held-out predictions of all folds pooled and scored together. "
             f"95% intervals: percentile, {settings.get('resamples')} resamples of clips within each split "
             f"(seed {settings.get('seed')}). Avg is the mean of the six figures of the row's split.", "",
             pooled_markdown(reports), "",
             "Zero-shot (no training): " + (", ".join(n for n, z in zero_shot.items() if z) or "none") + ".", "",
             *_empty_answers_line(reports),
             "## Avg per fold", "",
             "| Fold | Held-out subjects | " + " | ".join(reports) + " |",
             "|---|---|" + "---:|" * len(reports)]
    for index, (name, subjects) in enumerate(folds):
        shown = ", ".join(subjects[:3]) + (f" (+{len(subjects) - 3})" if len(subjects) > 3 else "")
        lines.append(f"| {name} | {shown} | " + " | ".join(_cell(fold_avgs[c][index], None) for c in reports) + " |")
    lines.append("| pooled | all | " + " | ".join(_cell(r["avg"], r.get("avg_ci")) for r in reports.values())
                 + " |")
    lines += ["", "## Plots", ""] + [f"![{Path(image).stem}]({image})" for image in images]
    return "\n".join(lines) + "\n"


def fold_avg_png(fold_avgs: dict[str, list], fold_names: list[str], reports: dict[str, dict]) -> bytes:
    """Avg of each fold per config (points), with the pooled Avg as a dashed line of the same colour."""
    figure = _new_figure(max(6.0, 0.35 * len(fold_names) + 3), 4.0)
    axes = figure.add_subplot()
    for index, (name, avgs) in enumerate(fold_avgs.items()):
        colour = f"C{index % 10}"
        points = [(i, avg) for i, avg in enumerate(avgs) if avg is not None]
        if points:
            axes.plot(*zip(*points), "o", color=colour, label=name)
        if reports[name]["avg"] is not None:
            axes.axhline(reports[name]["avg"], color=colour, linestyle="--", linewidth=1)
    axes.set_xticks(range(len(fold_names)), fold_names, rotation=90 if len(fold_names) > 12 else 0)
    axes.set_ylabel("Avg (dashed: pooled)")
    axes.set_ylim(0, 1)
    axes.set_title("Avg per fold")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)


def intervals_png(reports: dict[str, dict], split: str = "overall") -> bytes:
    """Each config's figures and Avg with 95% interval error bars (one split)."""
    figure = _new_figure(9.0, 4.0)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(reports))
    for index, (name, report) in enumerate(reports.items()):
        part = report[split]
        xs, ys, low, high = [], [], [], []
        for position, key in enumerate(FIGURE_KEYS):
            value, ci = part.get(key), part.get(f"{key}_ci")
            if value is None:
                continue
            xs.append(position - 0.4 + width * (index + 0.5))
            ys.append(value)
            # A percentile interval need not hold the full-data value (a skewed figure on few clips): no bar
            # then on that side, rather than a negative length, which matplotlib refuses.
            low.append(max(0.0, value - ci[0]) if ci else 0.0)
            high.append(max(0.0, ci[1] - value) if ci else 0.0)
        axes.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=3, color=f"C{index % 10}", label=name)
    axes.set_xticks(range(len(FIGURE_KEYS)), COLUMN_TITLES)
    axes.set_ylim(0, 1)
    axes.set_title(f"{SPLIT_TITLES.get(split, split)}: figures with 95% intervals")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)
