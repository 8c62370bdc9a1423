"""The ``mevqa`` command.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and ``run(args) -> int``. Only the
module of the command being run is imported, so ``mevqa --help`` stays fast and a missing optional dependency of
one command never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mevqa import __version__
from mevqa.cli_style import HelpFormatter
from mevqa.errors import MevqaError
from mevqa.log import configure_logging

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth-data": ("mevqa.data_builders.synth_cli",
                   "write a small synthetic dataset in a real dataset's on-disk layout"),
    "build-data": ("mevqa.data_builders.cli", "turn a dataset's annotation sheet and frames into QA jsonl with inputs"),
    "split": ("mevqa.experiments.split", "subject-independent train/validation splits (LOSO, k-fold, cross-dataset)"),
    "export": ("mevqa.train.export",
               "write QA rows with their inputs for other tools (datasets, LLaMA-Factory, ms-swift)"),
    "inspect": ("mevqa.train.inspect",
                "visual and text tokens per row, max_length and activation memory before training"),
    "tiny-model": ("mevqa.models.tiny",
                   "write a tiny random Qwen VLM (--family; real classes and processor) for dry runs"),
    "train": ("mevqa.train.launch", "train a config with accelerate launch (one GPU, DDP, DeepSpeed, FSDP)"),
    "merge": ("mevqa.models.merge", "fold a LoRA adapter (and fully trained parts) into a standalone checkpoint"),
    "answer": ("mevqa.answering.answer", "ask a model one question about one clip (frame folder or video file)"),
    "predict": ("mevqa.answering.predict", "answer question files in batches and write the submission files"),
    "eval": ("mevqa.eval.cli", "score predictions against gold as the leaderboard does"),
    "compare": ("mevqa.eval.compare", "paired bootstrap comparison of two systems on the same clips"),
    "cv": ("mevqa.experiments.cv",
           "train, predict and score configs over the folds of mevqa split; pooled table with CIs"),
    "str-eval": ("mevqa.eval.strs_cli", "score ME-STR interval predictions with the official STRS, per dataset"),
    "build-spot": ("mevqa.data_builders.spot", "turn long videos and their sheets into spotting data (ME-STR)"),
    "spot": ("mevqa.longvideo.spot", "spot micro-expressions in one long video (flow baseline or a VLM)"),
    "str-predict": ("mevqa.longvideo.str_predict",
                    "spot and recognise micro-expressions in many long videos; writes pred.csv"),
    "build-lvqa": ("mevqa.data_builders.lvqa", "turn long videos and their sheets into ME-LVQA rows with gold answers"),
    "lvqa-predict": ("mevqa.longvideo.lvqa_predict",
                     "answer ME-LVQA questions about long videos (spotter or VLM); submission"),
    "lvqa-eval": ("mevqa.eval.lvqa_cli", "score ME-LVQA answers: count MAE/RMSE, AU F1/Jaccard, type UF1/UAR"),
    "submit": ("mevqa.answering.submission", "write the official submission files (and zip) from predictions"),
    "demo": ("mevqa.demo", "run the whole pipeline offline on synthetic data with a tiny model"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mevqa", description="Micro-expression visual question answering with Qwen "
                                                               "VLMs (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).")
    parser.add_argument("--version", action="version", version=f"mevqa {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def write_error_line(text: str) -> None:
    """Write ``text`` and its newline to stderr in one write call.

    ``print`` writes the text and the newline separately; with unbuffered stderr (accelerate's launched processes)
    two processes failing together then interleave into one joined line. One write of a short line to a pipe is
    atomic, so each process's line stays whole.
    """
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


def run_reporting_errors(prog: str, func, *args) -> int:
    """Run ``func(*args)``; a :class:`MevqaError` becomes ``<prog>: error: <message>`` on stderr and status 2.

    The ``mevqa`` command and the recipes under ``recipes/`` share this, so every entry point fails the same way.
    """
    try:
        return int(func(*args) or 0)
    except MevqaError as exc:
        write_error_line(f"{prog}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        write_error_line(f"{prog}: interrupted")
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # an argument type (mevqa.paths.seed) refuses a value with the same one line as a command does
        args = build_parser(argv).parse_args(argv)
    except MevqaError as exc:
        chosen = next((arg for arg in argv if not arg.startswith("-")), "")
        write_error_line(f"mevqa {chosen}: error: {exc}")
        return 2
    configure_logging(args.verbose)
    return run_reporting_errors(f"mevqa {args.command}", args.run, args)


if __name__ == "__main__":
    sys.exit(main())
