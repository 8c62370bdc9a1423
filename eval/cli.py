"""``mevqa eval``: score prediction files against gold files and print the leaderboard table."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

from mevqa.eval.metrics import score_files
from mevqa.eval.report import confusion_pngs, format_table
from mevqa.jsonl import atomic_path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", nargs="+", required=True, type=Path, metavar="P.jsonl",
                        help="prediction jsonl file(s): rows with 'id' or 'video_id' and 'answer'")
    parser.add_argument("--gold", nargs="+", required=True, type=Path, metavar="G.jsonl",
                        help="gold jsonl file(s): rows with 'id' or 'video_id', 'question' and 'answer'")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the full report as JSON")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="write the Overall coarse and fine confusion matrices as DIR/confusion_{coarse,fine}.png")


def run(args: argparse.Namespace) -> int:
    report = score_files(args.pred, args.gold)
    # Everything is rendered first and lands in temporary files that are renamed together: all outputs or none.
    outputs: dict[Path, bytes] = {}
    if args.json:
        outputs[args.json] = (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    if args.plot:
        outputs.update({args.plot / f"confusion_{kind}.png": png for kind, png in confusion_pngs(report).items()})
    with contextlib.ExitStack() as stack:
        for path, data in outputs.items():
            stack.enter_context(atomic_path(path)).write_bytes(data)
    for path in outputs:
        logger.info("wrote %s", path)
    print(format_table(report))
    return 0
