"""``mevqa eval``: score prediction files against gold files and print the leaderboard table with 95% intervals."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

from mevqa.errors import MevqaError
from mevqa.eval.bootstrap import add_intervals, check_resampling
from mevqa.eval.metrics import CLASS_KINDS, join, read_rows, report_of, round_floats
from mevqa.eval.rows import row_id
from mevqa.eval.report import confusion_pngs, format_table
from mevqa.eval.samples import row_samples
from mevqa.eval.stamp import stamp
from mevqa.jsonl import atomic_path
from mevqa.paths import refuse_outputs_onto_inputs, seed as seed_type

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", nargs="+", required=True, type=Path, metavar="P.jsonl",
                        help="prediction jsonl file(s): rows with 'id' or 'video_id' and 'answer'")
    parser.add_argument("--gold", nargs="+", required=True, type=Path, metavar="G.jsonl",
                        help="gold jsonl file(s): rows with 'id' or 'video_id', 'question' and 'answer'")
    parser.add_argument("--json", type=Path, metavar="OUT.json",
                        help="also write the full report as JSON, stamped with versions and file hashes")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="write the Overall coarse and fine confusion matrices as DIR/confusion_{coarse,fine}.png")
    parser.add_argument("--samples", type=Path, metavar="OUT.jsonl",
                        help="write one line per gold row: extracted and gold label, match, the row's BLEU "
                             "statistics and sentence BLEU, its ROUGE-1 recall")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score gold rows without a prediction as misses (empty answers) instead of refusing")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="resamples of clips for the 95%% intervals (default 1000; 0: no intervals)")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the resampling (default 0)")


def run(args: argparse.Namespace) -> int:
    check_resampling(args.bootstrap, args.seed, none_allowed=True)
    plots = [args.plot / f"confusion_{kind}.png" for kind in CLASS_KINDS] if args.plot else []
    refuse_outputs_onto_inputs(outputs={"--json": args.json, "--samples": args.samples, "--plot": plots},
                               into={"--plot": args.plot}, inputs={"--pred": args.pred, "--gold": args.gold})
    pred_rows, gold_rows = read_rows(args.pred), read_rows(args.gold)
    answered = {row_id(row) for row in pred_rows}
    missing = [row_id(row) for row in gold_rows if row_id(row) not in answered]
    if missing and not args.allow_missing:  # a partial or empty prediction file would score as a weak system
        raise MevqaError(f"{len(missing)} of {len(gold_rows)} gold rows have no prediction in "
                         f"{', '.join(map(str, args.pred))} (first: {', '.join(missing[:3])}); finish the predictions "
                         "or pass --allow-missing to score them as misses")
    joined = join(pred_rows, gold_rows)  # with --allow-missing, it logs how many rows are scored as misses
    result = report_of(joined)
    if args.bootstrap:
        add_intervals(result, joined, resamples=args.bootstrap, seed=args.seed)
    result = round_floats(result)
    # Everything is rendered first and lands in temporary files that are renamed together: all outputs or none.
    outputs: dict[Path, bytes] = {}
    if args.json:
        stamped = stamp(result, seed=args.seed if args.bootstrap else None, pred_files=args.pred,
                        gold_files=args.gold)
        outputs[args.json] = (json.dumps(stamped, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    if args.samples:
        outputs[args.samples] = "".join(json.dumps(record, ensure_ascii=False) + "\n"
                                        for record in row_samples(joined)).encode("utf-8")
    if args.plot:
        outputs.update({args.plot / f"confusion_{kind}.png": png for kind, png in confusion_pngs(result).items()})
    with contextlib.ExitStack() as stack:
        for path, data in outputs.items():
            stack.enter_context(atomic_path(path)).write_bytes(data)
    for path in outputs:
        logger.info("wrote %s", path)
    print(format_table(result))
    return 0
