"""``mevqa str-eval``: the official ME-STR score (STRS) of interval predictions, per dataset and overall."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mevqa.eval.strs import format_table, strs_files
from mevqa.jsonl import write_json
from mevqa.paths import refuse_outputs_onto_inputs

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", nargs="+", required=True, type=Path, metavar="P.csv",
                        help="predicted intervals: CSV with subject,video,onset,offset,emotion")
    parser.add_argument("--gt", nargs="+", required=True, type=Path, metavar="G.csv",
                        help="ground-truth intervals, same columns (an optional 'dataset' column names the dataset)")
    parser.add_argument("--json", type=Path, metavar="OUT.json",
                        help="also write the full report as JSON, stamped with versions and the files' hashes")
    parser.add_argument("--count-missing-subjects", action="store_true",
                        help="count the ground truth of subjects with no prediction as FN (the official evaluator "
                             "leaves it out)")
    parser.add_argument("--analysis-labels", metavar="A,B,...",
                        help="emotions the analysis is computed over (default: those of the ground truth)")


def run(args: argparse.Namespace) -> int:
    labels = None
    if args.analysis_labels is not None:
        labels = [label.strip() for label in args.analysis_labels.split(",") if label.strip()]
    refuse_outputs_onto_inputs(outputs={"--json": args.json}, inputs={"--pred": args.pred, "--gt": args.gt})
    report = strs_files(args.pred, args.gt, analysis_labels=labels,
                        count_missing_subjects=args.count_missing_subjects)
    for warning in report["warnings"]:
        logger.warning("%s", warning)
    if args.json:
        from mevqa.eval.stamp import stamp

        write_json(args.json, stamp(report, pred_files=args.pred, gold_files=args.gt))
        logger.info("wrote %s", args.json)
    print(format_table(report))
    return 0
