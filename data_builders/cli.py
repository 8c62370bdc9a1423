"""``mevqa build-data DATASET --root DIR --annotations FILE --out OUT``: a dataset as distributed -> QA jsonl with
inputs (see :mod:`mevqa.data_builders.build`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mevqa.data_builders.build import DATASETS, BuildOptions, build_dataset
from mevqa.media import MODES, MediaSettings, add_media_arguments, given_media_options


def parse_inputs(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    modes = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [m for m in modes if m not in MODES]
    if unknown:  # argparse turns this into a usage error (exit 2) naming --inputs
        raise argparse.ArgumentTypeError(f"unknown input mode(s) {', '.join(unknown)}; expected some of "
                                         f"{', '.join(MODES)} (or none)")
    return modes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=list(DATASETS), help="which dataset's on-disk format to read")
    parser.add_argument("--root", type=Path, help="the dataset's frame folder (e.g. CASME2_RAW_selected, SAMM, "
                        "SMIC_all_cropped, part_A/.../part_A, gray_micro; for a test file: the per-clip folders)")
    parser.add_argument("--annotations", type=Path, help="the annotation sheet (xlsx/xls/csv); not for smic")
    parser.add_argument("--out", type=Path, required=True, help="output folder: qa.jsonl, media/, build.json")
    parser.add_argument("--inputs", type=parse_inputs, default=MODES,
                        help="comma-separated input modes to build: video,oao,flow (default all; 'none' for "
                             "questions only)")
    parser.add_argument("--missing-apex", choices=("max_diff", "midpoint"), default=None,
                        help="how to fill an apex the sheet lacks (default: midpoint for smic, max_diff otherwise)")
    parser.add_argument("--estimate-bad-apex", action="store_true",
                        help="estimate an apex that lies outside its clip instead of treating the clip as bad")
    parser.add_argument("--all-emotions", action="store_true", help="also keep labels the official selection "
                        "leaves out but that have a coarse class (CASME II fear and sadness)")
    parser.add_argument("--fps", type=float, default=None, help="override the dataset's frame rate")
    parser.add_argument("--official", type=Path, help="take questions and answers from this official jsonl "
                        "(training file, or a *_to_answer.jsonl test file) and attach inputs")
    parser.add_argument("--workers", type=int, default=1, help="processes building media (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the yes/no AU draws (default 0)")
    parser.add_argument("--skip-bad", action="store_true", help="skip clips with bad input and list them in "
                        "OUT/skipped.jsonl instead of stopping")
    add_media_arguments(parser)


def run(args: argparse.Namespace) -> int:
    media = MediaSettings.from_record(given_media_options(args), modes=args.inputs, where="command line")
    options = BuildOptions(media=media, workers=args.workers, seed=args.seed, skip_bad=args.skip_bad,
                           missing_apex=args.missing_apex,
                           bad_apex="estimate" if args.estimate_bad_apex else "error",
                           all_emotions=args.all_emotions, fps=args.fps)
    summary = build_dataset(args.dataset, args.out, root=args.root, annotations=args.annotations,
                            official=args.official, options=options)
    print(f"{args.dataset}: {summary['clips']} clips, {summary['rows']} rows -> {args.out / 'qa.jsonl'}"
          f" ({summary['excluded_by_label']} left out by label, {summary['skipped']} skipped, "
          f"{summary['seconds']} s)")
    return 0
