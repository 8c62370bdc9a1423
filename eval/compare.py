"""``mevqa compare``: is system B better than system A on the same clips, by more than the noise?

Both prediction sets are scored against the same gold rows; the clips are resampled (:mod:`mevqa.eval.bootstrap`)
and on each resample both systems' figures are recomputed, so the difference B - A of every figure and of Avg gets
a paired percentile 95% interval, and the share of resamples in which B's figure is strictly higher than A's (a tie
is not a win). A system compared with itself differs by exactly 0 on every resample, so its share is 0.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mevqa.eval.bootstrap import check_resampling, paired_differences
from mevqa.eval.metrics import join, read_rows, report_of, round_floats
from mevqa.eval.report import format_comparison
from mevqa.eval.stamp import stamp
from mevqa.jsonl import write_json
from mevqa.paths import refuse_outputs_onto_inputs, seed as seed_type

logger = logging.getLogger(__name__)


def compare(pred_a: list[dict], pred_b: list[dict], gold: list[dict], *, resamples: int = 1000,
            seed: int = 0) -> dict:
    """Paired bootstrap comparison of two prediction sets on the same gold rows. Pure.

    Returns ``{"difference": {split: {figure: {"a", "b", "difference", "ci", "b_beats_a"}}}, "bootstrap": {...},
    "a": report_a, "b": report_b}`` where the reports are :func:`mevqa.eval.score`'s.
    """
    check_resampling(resamples, seed)
    joined_a, joined_b = join(pred_a, gold), join(pred_b, gold)
    result = paired_differences(joined_a, joined_b, resamples=resamples, seed=seed)
    result.update(a=report_of(joined_a), b=report_of(joined_b))
    return round_floats(result)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gold", nargs="+", required=True, type=Path, metavar="G.jsonl",
                        help="gold jsonl file(s): rows with 'id' or 'video_id', 'question' and 'answer'")
    parser.add_argument("--a", nargs="+", required=True, type=Path, metavar="P.jsonl",
                        help="system A's prediction file(s) (the baseline)")
    parser.add_argument("--b", nargs="+", required=True, type=Path, metavar="P.jsonl",
                        help="system B's prediction file(s) (the challenger)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the comparison as JSON")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="paired resamples of clips (default 1000)")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the resampling (default 0)")


def run(args: argparse.Namespace) -> int:
    check_resampling(args.bootstrap, args.seed)
    refuse_outputs_onto_inputs(outputs={"--json": args.json}, inputs={"--a": args.a, "--b": args.b, "--gold": args.gold})
    gold = read_rows(args.gold)
    result = compare(read_rows(args.a), read_rows(args.b), gold, resamples=args.bootstrap, seed=args.seed)
    if args.json:
        result["files"] = {"a": [str(path) for path in args.a], "b": [str(path) for path in args.b],
                           "gold": [str(path) for path in args.gold]}
        write_json(args.json, stamp(result, seed=args.seed, pred_files=[*args.a, *args.b], gold_files=args.gold))
        logger.info("wrote %s", args.json)
    print(format_comparison(result))
    return 0
