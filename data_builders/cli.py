"""``mevqa build-data DATASET --root DIR --annotations FILE --out OUT``: a dataset as distributed -> QA jsonl with
inputs (see :mod:`mevqa.data_builders.build`).

With ``--inspect-model MODEL`` and/or ``--inspect-config YAML`` it then prints ``mevqa inspect``'s summary of
``OUT/qa.jsonl`` (visual and text tokens per row, rows over ``max_length``, activation memory) under that training
config (default: the training defaults), counted with the model's processor (default: the config's model). Only the
processor and config files are read, never the weights; they are loaded before the build, so a model that is not
at hand fails at once. Without either option it prints the ``mevqa inspect`` command that gives the summary.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Callable

from mevqa.data_builders.build import DATASETS, BuildOptions, build_dataset
from mevqa.errors import MevqaError
from mevqa.media import MODES, MediaSettings, add_media_arguments, given_media_options, parse_inputs
from mevqa.messages import INPUT_MODES
from mevqa.models.families import model_skeleton
from mevqa.paths import seed as seed_type
from mevqa.rows import read_rows
from mevqa.train.inspect import Settings, inspect_rows, load_processor_and_config, with_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=list(DATASETS), help="which dataset's on-disk format to read")
    parser.add_argument("--root", type=Path, help="the dataset's frame folder (e.g. CASME2_RAW_selected, SAMM, "
                        "SMIC_all_cropped, part_A/.../part_A, gray_micro; for a test file: the per-clip folders)")
    parser.add_argument("--annotations", type=Path, help="the annotation sheet (xlsx/xls/csv); not for smic")
    parser.add_argument("--out", type=Path, required=True, help="output folder: qa.jsonl, media/, build.json")
    parser.add_argument("--inputs", type=parse_inputs, default=MODES,
                        help="comma-separated input modes to build: video,oao,flow (default: all; 'none' for "
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
    parser.add_argument("--questions", metavar="2025|2026", default=None,
                        help="question set: 2025 (default: the composite question) or 2026 (ME-VQA-v2: one of the "
                             "three official analysis prompts per clip, drawn with --seed, answered by mevqa's "
                             "analysis template; docs/megc2026.md). With --official: the file's own set")
    parser.add_argument("--workers", type=int, default=1, help="processes building media (default: 1)")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the yes/no AU draws and of the analysis "
                        "prompt of each clip (default: 0)")
    parser.add_argument("--skip-bad", action="store_true", help="skip clips with bad input and list them in "
                        "OUT/skipped.jsonl instead of stopping")
    add_media_arguments(parser)
    group = parser.add_argument_group("token summary of the result (mevqa inspect)")
    group.add_argument("--inspect-model", metavar="MODEL",
                       help="print mevqa inspect's summary of OUT/qa.jsonl with this model's processor (a folder or a "
                            "cached hub name; only its processor and config files are read)")
    group.add_argument("--inspect-config", type=Path, metavar="YAML",
                       help="... under this training config (its inputs, pixel budgets, frame cap, max_length and "
                            "batch size; its model unless --inspect-model); default: the training defaults")


def token_summary(args: argparse.Namespace, modes: tuple[str, ...]) -> Callable[[Path], str] | None:
    """A function giving ``mevqa inspect``'s summary of a built qa.jsonl under ``--inspect-config`` with the
    processor of ``--inspect-model`` (None when neither is given). The processor is loaded here, before the build.
    Without a config, the input mode is the training default's if the build makes its inputs, else the first mode
    the build makes inputs for."""
    if args.inspect_model is None and args.inspect_config is None:
        return None
    if not modes:
        raise MevqaError("--inspect-model/--inspect-config count the tokens of inputs, and --inputs none builds none")
    settings = Settings.from_config(args.inspect_config)
    if args.inspect_model:
        settings = dataclasses.replace(settings, model_name_or_path=args.inspect_model)
    built = [mode for mode, spec in INPUT_MODES.items() if set(spec.needs) <= set(modes)]
    if settings.inputs not in built:
        if args.inspect_config is not None:
            raise MevqaError(f"{args.inspect_config}: inputs {settings.inputs} needs media that --inputs "
                             f"{','.join(modes)} does not build (it builds inputs for {', '.join(built)})")
        settings = dataclasses.replace(settings, inputs=built[0])
    processor, model_config = load_processor_and_config(settings)
    skeleton = model_skeleton(settings.model_name_or_path)
    return lambda qa: with_state(inspect_rows(read_rows(qa), processor, model_config, settings, progress=False),
                                 skeleton).format()


def run(args: argparse.Namespace) -> int:
    media = MediaSettings.from_record(given_media_options(args), modes=args.inputs, where="command line")
    summarise = token_summary(args, media.modes)  # before the build: a model not at hand fails at once
    options = BuildOptions(media=media, workers=args.workers, seed=args.seed, skip_bad=args.skip_bad,
                           missing_apex=args.missing_apex,
                           bad_apex="estimate" if args.estimate_bad_apex else "error",
                           all_emotions=args.all_emotions, fps=args.fps, questions=args.questions)
    summary = build_dataset(args.dataset, args.out, root=args.root, annotations=args.annotations,
                            official=args.official, options=options)
    print(f"{args.dataset}: {summary['clips']} clips, {summary['rows']} rows ({summary['options']['questions']} "
          f"questions) -> {args.out / 'qa.jsonl'}"
          f" ({summary['excluded_by_label']} left out by label, {summary['skipped']} skipped, "
          f"{summary['seconds']} s)")
    qa = args.out / "qa.jsonl"
    if summarise is not None:
        print(summarise(qa))
    elif media.modes:
        print(f"tokens per row, max_length and memory: mevqa inspect --data {qa} --config TRAIN_CONFIG (or add "
              "--inspect-model MODEL here)")
    return 0
