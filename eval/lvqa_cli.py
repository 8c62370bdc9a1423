"""``mevqa lvqa-eval --pred P.jsonl... --gold G.jsonl... [--json PATH] [--bootstrap N]``: score ME-LVQA answers
(:func:`mevqa.eval.lvqa.score_lvqa`) and print the table per dataset and overall."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mevqa.eval.bootstrap import check_resampling
from mevqa.eval.lvqa import format_table, score_lvqa
from mevqa.eval.metrics import read_rows
from mevqa.eval.stamp import stamp
from mevqa.cli_style import add_json_option, json_file, json_to_stdout, write_json_output
from mevqa.paths import refuse_outputs_onto_inputs, seed as seed_type
from mevqa.rows import refuse_empty_files

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", nargs="+", required=True, type=Path, metavar="P.jsonl",
                        help="prediction rows ('video_id' and 'answer'), e.g. me_lvqa_samm_test_pred.jsonl")
    parser.add_argument("--gold", nargs="+", required=True, type=Path, metavar="G.jsonl",
                        help="gold rows: the official format with answers filled, or mevqa build-lvqa's lvqa.jsonl")
    add_json_option(parser, "the full report, stamped with versions and the files' hashes")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="resamples of videos for the 95%% intervals (default: 1000; 0: no intervals)")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the resampling (default: 0)")


def run(args: argparse.Namespace) -> int:
    check_resampling(args.bootstrap, args.seed, none_allowed=True)
    refuse_outputs_onto_inputs(outputs={"--json": json_file(args.json)}, inputs={"--pred": args.pred, "--gold": args.gold})
    pred, gold = read_rows(args.pred), read_rows(args.gold)
    refuse_empty_files(args.pred, pred, "prediction rows")
    refuse_empty_files(args.gold, gold, "gold rows")
    report = score_lvqa(pred, gold, bootstrap=args.bootstrap, seed=args.seed)
    for item in report["unparseable"][:10]:
        logger.warning("%s (%s): unparseable or missing answer %r, counted as wrong", item["id"], item["kind"],
                       item["answer"])
    if args.json is not None:
        write_json_output(args.json, stamp(report, seed=args.seed if args.bootstrap else None, pred_files=args.pred,
                                           gold_files=args.gold))
        if not json_to_stdout(args.json):
            logger.info("wrote %s", args.json)
    if not json_to_stdout(args.json):
        print(format_table(report))
    return 0
