"""People-facing views of a score report: the leaderboard table and confusion-matrix images."""

from __future__ import annotations

import io

from mevqa.eval.metrics import CLASS_KINDS, PRIMARY_KEYS
from mevqa.eval.rows import SPLIT_TITLES

COLUMN_TITLES = ("UF1-C", "UAR-C", "UF1-F", "UAR-F", "BLEU", "ROUGE-1")


def _figure(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(report: dict) -> str:
    """The MEGC2025 paper's Table 4 layout: one line per split and Overall, then Avg and the counts."""
    splits = [key for key, value in report.items() if isinstance(value, dict) and "uf1_coarse" in value]
    splits = [split for split in splits if split != "overall"] + ["overall"]
    header = f"{'Split':<10} {'Rows':>7}  " + "  ".join(f"{title:>7}" for title in COLUMN_TITLES)
    lines = [header, "-" * len(header)]
    for split in splits:
        part = report[split]
        title = SPLIT_TITLES.get(split, split)
        lines.append(f"{title:<10} {part['counts']['rows']:>7}  "
                     + "  ".join(f"{_figure(part[key]):>7}" for key in PRIMARY_KEYS))
    counts = report["counts"]
    lines += [
        "-" * len(header),
        f"Avg (mean of the six Overall figures): {_figure(report['avg'])}",
        "",
        f"rows scored: {counts['rows']} (coarse {counts['coarse']}, fine {counts['fine']}); "
        f"prediction rows: {counts['predictions']}",
        f"unparseable answers: coarse {counts['unparseable_coarse']}, fine {counts['unparseable_fine']} "
        f"(scored as misses)",
        f"missing prediction rows: {counts['missing']} (scored as empty answers)",
    ]
    return "\n".join(lines)


def confusion_pngs(report: dict, split: str = "overall") -> dict[str, bytes]:
    """``{"coarse": png, "fine": png}`` confusion matrices of one split (rows: gold classes, columns: predicted
    labels, ``unknown`` included), for the kinds that split has."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images = {}
    for kind in CLASS_KINDS:
        confusion = report[split].get(kind)
        if confusion is None:
            continue
        names, matrix = confusion["confusion"]["labels"], confusion["confusion"]["matrix"]
        gold = [i for i, name in enumerate(names) if name in confusion["classes"]]
        rows = [matrix[i] for i in gold]
        figure = Figure(figsize=(1.2 + 0.9 * len(names), 1.2 + 0.8 * len(gold)), dpi=120)
        FigureCanvasAgg(figure)
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
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        images[kind] = buffer.getvalue()
    return images
