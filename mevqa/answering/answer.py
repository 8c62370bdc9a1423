"""``mevqa answer``: ask a model one question about one clip (a folder of frames or a video file).

``mevqa predict`` on one row: the settings come from :func:`mevqa.answering.inference.resolve_settings` (the model's
``train_config.yaml``, flags winning with a warning), the clip's inputs from
:class:`mevqa.answering.inference.ClipInputs` (onset/offset default to the first and last frame, the apex is estimated
as the builders estimate it, and :func:`mevqa.media.build_media` builds the inputs with the media settings the model was
trained with), the answer from :func:`mevqa.answering.inference.answer_batch` with the answer strategy (``--strategy``,
default: as the model was trained, else ``direct``; ``hierarchical`` and ``au-rules`` ask the clip's coarse or AU
question themselves first). ``--dataset`` names the clip's dataset convention: the fine classes ``constrained`` and
``hierarchical`` allow, and the rule table of ``au-rules``. Only the answer goes to stdout (logs go to stderr);
``--json`` prints the answer with how it was reached (``label_probs``, ``votes``, ``rule``, ``coarse_hint``, ...:
:meth:`mevqa.answering.strategies.Answer.record`), the strategy, the inputs used, the media settings
(``media_settings``, keyed by the build-data option names) and timings. An empty answer is an error, as it is a failed
row in ``predict``. A question of an ME-LVQA kind ("How many micro-expression events appear in this video?") is about a
whole long video: ``--clip`` is then the long video and :func:`mevqa.longvideo.lvqa_predict.answer_long_video` answers
it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mevqa import vocab
from mevqa.answering.au_rules import DEFAULT_TABLES
from mevqa.answering.inference import (ClipInputs, add_arguments as add_inference_arguments, answer_batch,
                                       check_weight_files, load_model, resolve_settings)
from mevqa.cli_style import add_json_option, json_file, json_to_stdout, write_json_output
from mevqa.errors import MevqaError
from mevqa.longvideo.lvqa import lvqa_question
from mevqa.longvideo.lvqa_predict import answer_long_video
from mevqa.paths import refuse_outputs_onto_inputs

INPUT_FILES = ("frames", "image", "arrays")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip", required=True, type=Path, help="a folder of numbered frames (jpg/png/bmp) or a "
                                                                 "video file (mp4/avi)")
    parser.add_argument("--question", required=True, help='the question, e.g. "What is the coarse expression class?"')
    parser.add_argument("--onset", type=int, help="onset frame number (default: the first frame)")
    parser.add_argument("--apex", type=int, help="apex frame number (default: estimated, the frame most different "
                                                 "from onset)")
    parser.add_argument("--offset", type=int, help="offset frame number (default: the last frame)")
    parser.add_argument("--dataset", choices=list(vocab.DATASET_FINE_LABELS),
                        help="the clip's dataset convention: the fine classes allowed (constrained, hierarchical) and "
                             "the AU rule table (au-rules, which needs it)")
    add_json_option(parser, "the answer with how it was reached, the inputs used, the media settings and timings")
    add_inference_arguments(parser, default_model=True)


def run(args: argparse.Namespace) -> int:
    question = args.question.strip()
    if not question:
        raise MevqaError("--question is empty")
    refuse_outputs_onto_inputs(outputs={"--json": json_file(args.json)},
                               inputs={"--clip": args.clip, "--model": args.model, "--adapter": args.adapter})
    if lvqa_question(question) is not None:  # about a whole long video: the ME-LVQA pipeline answers it
        return answer_long_video(args, question)
    settings = resolve_settings(args)
    check_weight_files(args.model, args.adapter)
    if "au-rules" in settings.strategy.split("+"):
        tables = settings.options.au_tables or DEFAULT_TABLES
        if args.dataset is None:
            raise MevqaError("the au-rules strategy needs the clip's dataset (--dataset samm, casme2, ...) to choose "
                             "its rule table")
        if args.dataset not in tables:
            raise MevqaError(f"the au-rules strategy has no rule table for {args.dataset} (tables for "
                             f"{', '.join(tables)}; give one with --au-rules {args.dataset}=TABLE)")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    # Inputs first: a bad clip fails in a second, before a large model is loaded.
    with tempfile.TemporaryDirectory(prefix="mevqa-answer-") as work_dir:
        inputs = ClipInputs(settings, Path(work_dir))
        built = inputs.build(args.clip, Path(work_dir) / "media", onset=args.onset, apex=args.apex,
                             offset=args.offset, fps=settings.fps)
        row = {"id": "clip", "question": question, "_file": str(args.clip), **built}
        if args.dataset:
            row["dataset"] = args.dataset
        row = inputs.prepare(row)
        timings["inputs_s"] = time.perf_counter() - start
        start = time.perf_counter()
        model, processor = load_model(args, settings)
        timings["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        [(_, answer)] = answer_batch(model, processor, [row], settings)
        timings["generate_s"] = time.perf_counter() - start
    if isinstance(answer, MevqaError):
        raise answer
    if not json_to_stdout(args.json):
        print(answer.text)
    if args.json is None:
        return 0
    media = {key: {name: value for name, value in entry.items() if name not in INPUT_FILES}
             for key, entry in built["media"].items() if isinstance(entry, dict) and key != "settings"}
    report = {
        "answer": answer.text, **answer.record(), "question": question, "dataset": args.dataset,
        "strategy": settings.record()["strategy"], "inputs": settings.inputs, "clip": built["clip"], "media": media,
        "media_settings": settings.media.record(), "model": str(args.model),
        "adapter": str(args.adapter) if args.adapter else None,
        "device": str(next(model.parameters()).device), "dtype": str(next(model.parameters()).dtype),
        "generation": {**settings.generation, "system_prompt": settings.system_prompt,
                       "max_frames": settings.max_frames, "video_fps": settings.video_fps},
        "pixels": settings.pixels,
        "trained_config": str(settings.trained_config) if settings.trained_config else None,
        "timings": {**{key: round(value, 4) for key, value in timings.items()},
                    **{f"inputs_{key}_s": round(value, 4) for key, value in inputs.timings.items()}},
    }
    write_json_output(args.json, report)
    return 0
