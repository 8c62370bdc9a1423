"""``mevqa split``: subject-independent train/validation splits of QA jsonl files.

Schemes (clips are grouped by ``(dataset, subject)``, so one subject never lands in both train and validation):
- ``loso``: leave one subject out, one fold per subject;
- ``kfold:K``: K folds of whole subjects, stratified by the clips' coarse class (scikit-learn's
  ``StratifiedGroupKFold``, shuffled with ``--seed``);
- ``cross``: train on ``--train-datasets``, validate on ``--val-datasets`` (one fold).

Rows are read with :func:`mevqa.rows.read_rows`: an id given twice (the same file twice, or one id with two answers)
is an error, and subjects that differ only by surrounding spaces are one subject.

Writes ``DIR/fold_K/train.jsonl`` and ``DIR/fold_K/val.jsonl``, ``DIR/folds.json`` (subjects and coarse-class
counts per fold) and ``DIR/split.json`` (the scheme, seed, datasets and input files with their SHA-256). The rows keep their media where the build put them: each row records its build folder as
``media.root``, relative to the fold's folder (the rule is in :mod:`mevqa.rows`), so the folds stay valid wherever
``DIR`` is as long as the build folders stay beside them; the input files are not changed.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.jsonl import ensure_dir, file_sha256, write_json, write_jsonl
from mevqa.paths import refuse_outputs_onto_inputs, seed as seed_type
from mevqa.rows import BUILD_RECORD, clip_key, read_rows, relative_media, where
from mevqa.runfolder import folder_lock

log = logging.getLogger(__name__)


def subject_key(row: dict) -> str:
    """``dataset/subject``, spaces around either ignored: one subject however a file pads it."""
    subject = row["subject"]
    if isinstance(subject, bool) or not isinstance(subject, (str, int)) or not str(subject).strip():
        raise MevqaError(f"{where(row)}: expected 'subject' to be a non-empty string or number, got {subject!r}")
    return f"{str(row.get('dataset', '')).strip()}/{str(subject).strip()}"


def with_relative_media(row: dict, target_dir: Path) -> dict:
    """A copy of ``row`` (media resolved by the reader) with its media written for a file in ``target_dir``."""
    if not row.get("media"):
        return row
    return {**row, "media": relative_media(row["media"], target_dir)}


def load_rows(paths: list[Path]) -> list[dict]:
    rows = read_rows(paths, required=("subject", "question"))
    if not rows:
        raise MevqaError(f"{', '.join(map(str, paths))}: no rows to split")
    for row in rows:
        subject_key(row)
        root = (row.get("media") or {}).get("root")
        if root is not None and not (Path(root) / BUILD_RECORD).is_file():
            raise MevqaError(f"{where(row)}: its media live in {root}, which is not the output folder of mevqa "
                             f"build-data (no {BUILD_RECORD}); split rows whose media a build made")
    return rows


def clip_labels(rows: list[dict]) -> dict[tuple[str, str], str]:
    """The coarse class of each clip (from its coarse question; ``unknown`` where it has none)."""
    labels = {}
    for row in rows:
        key = clip_key(row)
        if vocab.question_kind(row["question"]) == vocab.COARSE and row.get("answer"):
            labels[key] = row["answer"]
        else:
            labels.setdefault(key, "unknown")
    return labels


def make_folds(rows: list[dict], scheme: str, *, seed: int = 0, train_datasets: list[str] | None = None,
               val_datasets: list[str] | None = None) -> list[tuple[set[str], set[str]]]:
    """``(train subjects, val subjects)`` per fold, subjects as ``dataset/subject``."""
    subjects = sorted({subject_key(row) for row in rows})
    if scheme == "loso":
        if len(subjects) < 2:
            raise MevqaError(f"loso needs at least 2 subjects, found {len(subjects)}")
        return [(set(subjects) - {s}, {s}) for s in subjects]
    if scheme.startswith("kfold:"):
        try:
            k = int(scheme.split(":", 1)[1])
        except ValueError:
            raise MevqaError(f"--scheme {scheme}: expected kfold:K with an integer K") from None
        if not 2 <= k <= len(subjects):
            raise MevqaError(f"--scheme {scheme}: K must be between 2 and the number of subjects ({len(subjects)})")
        from sklearn.model_selection import StratifiedGroupKFold  # lazy: sklearn (a second), k-fold only

        labels = clip_labels(rows)
        clips = sorted({(clip_key(row), subject_key(row)) for row in rows})
        y = [labels[c] for c, _ in clips]
        groups = [s for _, s in clips]
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = []
        for _, val_index in splitter.split(clips, y, groups):
            val = {groups[i] for i in val_index}
            folds.append((set(subjects) - val, val))
        return folds
    if scheme == "cross":
        if not train_datasets or not val_datasets:
            raise MevqaError("--scheme cross needs --train-datasets and --val-datasets")
        overlap = set(train_datasets) & set(val_datasets)
        if overlap:
            raise MevqaError(f"--scheme cross: {', '.join(sorted(overlap))} is in both train and val datasets")
        present = {str(row.get("dataset", "")) for row in rows}
        missing = [d for d in train_datasets + val_datasets if d not in present]
        if missing:
            raise MevqaError(f"--scheme cross: no rows of dataset(s) {', '.join(missing)} (found "
                             f"{', '.join(sorted(present))})")
        return [({s for s in subjects if s.split("/")[0] in train_datasets},
                 {s for s in subjects if s.split("/")[0] in val_datasets})]
    raise MevqaError(f"unknown --scheme {scheme!r}; expected loso, kfold:K or cross")


def write_splits(rows: list[dict], folds: list[tuple[set[str], set[str]]], out: Path) -> list[dict]:
    ensure_dir(out)
    # Folds of an earlier split with more folds would stay beside the new ones and be taken for part of it.
    stale = sorted(p.name for p in out.glob("fold_*") if p.name not in {f"fold_{i}" for i in range(len(folds))})
    if stale:
        raise MevqaError(f"{out}: holds {', '.join(stale)} from another split; choose an empty --out folder")
    labels = clip_labels(rows)
    summary = []
    for index, (train_subjects, val_subjects) in enumerate(folds):
        folder = out / f"fold_{index}"
        parts = {"train": [r for r in rows if subject_key(r) in train_subjects],
                 "val": [r for r in rows if subject_key(r) in val_subjects]}
        entry = {"fold": index, "val_subjects": sorted(val_subjects), "train_subjects": sorted(train_subjects)}
        for name, part in parts.items():
            write_jsonl(folder / f"{name}.jsonl", (with_relative_media(r, folder) for r in part))
            clips = {clip_key(r) for r in part}
            entry[name] = {"rows": len(part), "clips": len(clips),
                           "coarse": dict(sorted(Counter(labels[c] for c in clips).items()))}
        summary.append(entry)
    write_json(out / "folds.json", summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="QA jsonl file(s) (e.g. OUT/qa.jsonl "
                        "of several build-data runs)")
    parser.add_argument("--by", choices=("subject",), default="subject", help="grouping unit (subject)")
    parser.add_argument("--scheme", default="loso", help="loso, kfold:K or cross (default: loso)")
    parser.add_argument("--train-datasets", default="", help="cross: comma-separated datasets to train on")
    parser.add_argument("--val-datasets", default="", help="cross: comma-separated datasets to validate on")
    parser.add_argument("--seed", type=seed_type, default=0, help="kfold shuffling seed")
    parser.add_argument("--out", type=Path, required=True, help="output folder for fold_K/{train,val}.jsonl")


def run(args: argparse.Namespace) -> int:
    rows = load_rows(args.data)
    split = lambda text: [part.strip() for part in text.split(",") if part.strip()]  # noqa: E731
    folds = make_folds(rows, args.scheme, seed=args.seed, train_datasets=split(args.train_datasets),
                       val_datasets=split(args.val_datasets))
    written = [args.out / f"fold_{index}" for index in range(len(folds))] + [args.out / "folds.json",
                                                                              args.out / "split.json"]
    refuse_outputs_onto_inputs(outputs={"--out": written}, into={"--out": args.out}, inputs={"--data": args.data})
    ensure_dir(args.out)
    with folder_lock(args.out, ".split.lock", "mevqa split"):  # two splits at once would interleave their folds
        summary = write_splits(rows, folds, args.out)
        write_json(args.out / "split.json", {  # how the folds were made
            "scheme": args.scheme, "seed": args.seed, "train_datasets": split(args.train_datasets),
            "val_datasets": split(args.val_datasets), "data": {str(path): file_sha256(path) for path in args.data},
            "folds": len(summary)})
    for entry in summary:
        counts = "  ".join(f"{name} {entry[name]['clips']} clips {entry[name]['coarse']}" for name in ("train", "val"))
        val = ", ".join(entry["val_subjects"][:4]) + (" ..." if len(entry["val_subjects"]) > 4 else "")
        print(f"fold_{entry['fold']}: val subjects {val}  |  {counts}")
    print(f"{len(summary)} folds -> {args.out}")
    return 0
