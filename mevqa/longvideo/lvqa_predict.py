"""``mevqa lvqa-predict --questions FILE... --videos ROOT --method spot|vlm --out OUT``: answer ME-LVQA questions
about long videos (MEGC2026 task 2).

Methods:

- ``spot``: the ME-STR spotter (``--spotter flow|vlm`` and every option of ``mevqa str-predict``) gives the micro
  intervals; the flow signal at the macro scale (``--macro-seconds``, :func:`mevqa.longvideo.spot.spot_macro_flow`) adds
  the macro-expressions (``--macro-seconds 0``: none). An interval is a micro-expression when it lasts at most
  ``--max-seconds`` (0.5 s), or, with ``--model``, as the model answers "micro-expression or macro-expression?" on
  it (label-constrained). Events are numbered by onset (:func:`mevqa.longvideo.lvqa.number_events`) and give the counts
  and the N-th event's type; an N past the last event is answered by :data:`mevqa.longvideo.lvqa.FALLBACK_TYPE`'s rule
  and noted. The distinct AUs are the union of the model's answers to "What are the action units?" on each interval as a
  clip; without a model the AU question is answered ``none`` (the empty set) and noted.
- ``vlm``: the model (``--model``) answers each question over the inputs built from the whole video (frames
  sampled over it, as it was trained); each answer is read as its kind (:func:`mevqa.longvideo.lvqa.parse_count`, ...)
  and written in the participants' form; one that cannot be read becomes 0, the fallback type or ``none``, noted.

Videos: a row's ``frames`` (``mevqa build-lvqa`` rows; relative to the question file), else the folder or video
file named by its ``video`` under ``--videos``. Frame rate: ``--fps``, else the row's ``fps``, else a video file's
own, else the dataset's (SAMM 200, CAS(ME)^3 30, from the row's id).

The output folder:

| file | what |
|---|---|
| ``run.json`` | questions (SHA-256), method, spotter and its settings, model, adapter, inference settings; a rerun with others is refused |
| ``.lvqa-predict.lock`` | held while a run writes here |
| ``videos.jsonl`` | one line per answered video (its events, answers, notes), appended and synced; a rerun goes on from the next video (``subject`` holds the question file's path: with ``video``, the key of str-predict's log) |
| ``predictions.jsonl`` | every question row in question order: ``video_id, video, question, answer`` and ``note`` where a rule filled in |
| ``me_lvqa_*_pred.jsonl``, ``submission.zip`` | for official question files (``*_to_answer.jsonl``): the submission files, named after them |
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from mevqa import vocab
from mevqa.answering.submission import QUESTION_SUFFIX, ZIP_NAME, pred_file_name, write_submission
from mevqa.dataset_facts import official_test_fps
from mevqa.errors import MevqaError
from mevqa.jsonl import ensure_dir, file_sha256, write_jsonl
from mevqa.log import is_main_process
from mevqa.longvideo import lvqa
from mevqa.longvideo.spot import (FlowSettings, VlmSettings, add_method_arguments, check_fps, flow_detections,
                                  interval_row, load_for, motion_signal, settings_from_args, spot_macro_flow,
                                  spot_video, unpack_video)
from mevqa.longvideo.str_predict import RUN_FILE, VIDEOS_FILE, resume_run
from mevqa.media import Span, build_media, read_clip
from mevqa.models.families import check_model_source
from mevqa.paths import refuse_outputs_onto_inputs
from mevqa.rows import clip_name, read_rows, refuse_empty_files, row_id, where
from mevqa.runfolder import LogAppender, folder_lock

log = logging.getLogger(__name__)

METHODS = ("spot", "vlm")
PREDICTIONS_FILE = "predictions.jsonl"
LOCK = ".lvqa-predict.lock"
DEFAULT_MACRO_SECONDS = 1.0


@dataclass
class LvqaSettings:
    method: str                                   # spot | vlm
    spotter: str = "flow"                         # the ME-STR method (spot)
    flow: FlowSettings = field(default_factory=FlowSettings)
    vlm: VlmSettings = field(default_factory=VlmSettings)
    macro_seconds: float = DEFAULT_MACRO_SECONDS  # 0: no macro-expression is looked for

    def __post_init__(self):
        if self.method not in METHODS:
            raise MevqaError(f"unknown LVQA method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.macro_seconds and not self.macro_seconds > self.flow.max_seconds:
            raise MevqaError(f"--macro-seconds must be 0 or more than --max-seconds ({self.flow.max_seconds}), got "
                             f"{self.macro_seconds}")

    def record(self) -> dict:
        if self.method == "vlm":
            return {"method": "vlm"}
        return {"method": "spot", "spotter": self.spotter, "micro_max_seconds": self.flow.max_seconds,
                "macro_seconds": self.macro_seconds,
                "settings": asdict(self.flow) if self.spotter == "flow" else
                {"vlm": asdict(self.vlm), "macro_flow": asdict(self.flow)}}


# --- one video ------------------------------------------------------------------------------------------------
def _interval_rows(clip, fps: float, detections, question: str, inference, work_dir: Path) -> list[dict]:
    rows = []
    for d in detections:
        span = Span(d.onset, d.apex, d.offset, "max_diff")
        out = work_dir / "intervals" / f"i{d.onset}_{d.offset}"
        rows.append(interval_row(f"i{d.onset}_{d.offset}", question,
                                 build_media(clip, span, inference.media, out, fps=fps), out, fps, span))
    return rows


def spot_events(source, fps: float, settings: LvqaSettings, *, model=None, processor=None, inference=None,
                work_dir: Path, progress: bool = False) -> tuple[list[lvqa.Event], list[str]]:
    """The events of one long video by the spot method (module docstring), numbered, and notes."""
    from mevqa.answering.label_scoring import best, choice_probabilities  # lazy: torch; flow spotting needs none

    clip = read_clip(source)
    fps = check_fps(clip, fps)
    signal = None
    if settings.spotter == "flow":  # the ME-scale signal serves the macro-expressions too
        signal = motion_signal(clip, fps, settings.flow, progress)
        micro = flow_detections(*signal, fps, settings.flow)
    else:
        micro = spot_video(clip, "vlm", fps=fps, vlm=settings.vlm, model=model, processor=processor,
                           inference=inference, work_dir=work_dir, progress=progress, emotions=False)
    macro = spot_macro_flow(clip, fps, settings.flow, micro, settings.macro_seconds, progress, signal) \
        if settings.macro_seconds else []
    # an ME interval inside a macro-expression is part of it
    micro = [d for d in micro if not any(d.onset <= o.offset and o.onset <= d.offset for o in macro)]
    detections = sorted(micro + macro, key=lambda d: (d.onset, d.offset))
    notes = []
    if model is None:
        types = [lvqa.MICRO if (d.offset - d.onset + 1) / fps <= settings.flow.max_seconds else lvqa.MACRO
                 for d in detections]
        aus = [[] for _ in detections]
        notes.append("no VQA model: types from durations, distinct AUs answered none")
    elif detections:
        from mevqa.answering.inference import answer_batch  # lazy: torch (mevqa.answering.inference)

        if clip.is_video:
            clip = unpack_video(clip, work_dir / "frames", progress)
        choices = list(lvqa.TYPE_ANSWERS.values())
        rows = _interval_rows(clip, fps, detections, lvqa.Q_INTERVAL_TYPE, inference, work_dir)
        probabilities = choice_probabilities(model, processor, rows, inference.inputs, [choices] * len(rows),
                                             system_prompt=inference.system_prompt, max_frames=inference.max_frames,
                                             video_fps=inference.video_fps)
        by_answer = {text: kind for kind, text in lvqa.TYPE_ANSWERS.items()}
        types = [by_answer[best(p)] for p in probabilities]
        aus = []
        rows = _interval_rows(clip, fps, detections, vocab.Q_AU_MANY, inference, work_dir)
        for row, answer in answer_batch(model, processor, rows, inference):
            names = None if isinstance(answer, MevqaError) else lvqa.parse_au_set(answer.text)
            if names is None:
                notes.append(f"interval {row['id']}: no AU read from the model's answer")
            aus.append(sorted(names or ()))
    else:
        types, aus = [], []
    events = [lvqa.Event(d.onset, d.offset, kind, names) for d, kind, names in zip(detections, types, aus)]
    return lvqa.number_events(events), notes


def vlm_answers(source, fps: float | None, questions: list[str], *, model, processor, inference, work_dir: Path
                ) -> list[tuple[str, str | None]]:
    """The model's answers to ``questions`` over the whole video's inputs, each in the participants' form."""
    from mevqa.answering.inference import ClipInputs, answer_batch  # lazy: torch (mevqa.answering.inference)

    inputs = ClipInputs(inference, work_dir)
    built = inputs.build(source, work_dir / "media", fps=fps)
    rows = [{"id": f"video_{k}", "question": question, "_file": str(source), **built}
            for k, question in enumerate(questions, start=1)]
    out = []
    for question, (_, answer) in zip(questions, answer_batch(model, processor, rows, inference)):
        text = "" if isinstance(answer, MevqaError) else answer.text
        out.append(normalise(lvqa.recognise(question, str(source)), text))
    return out


def normalise(question: lvqa.LvqaQuestion, text: str) -> tuple[str, str | None]:
    """A free answer in the participants' form, and a note when it could not be read (then: 0, the fallback
    type, or ``none``)."""
    if question.kind in lvqa.COUNT_KINDS:
        value = lvqa.parse_count(text)
        return (str(value), None) if value is not None else ("0", f"unreadable count {text!r}: answered 0")
    if question.kind == lvqa.EVENT_TYPE:
        value = lvqa.parse_type(text)
        if value is None:
            return lvqa.TYPE_ANSWERS[lvqa.FALLBACK_TYPE], f"unreadable type {text!r}: answered {lvqa.FALLBACK_TYPE}"
        return lvqa.TYPE_ANSWERS[value], None
    names = lvqa.parse_au_set(text)
    return (lvqa.au_answer(names), None) if names is not None else (lvqa.NO_AUS, f"unreadable AUs {text!r}")


def answer_video(source, fps: float | None, questions: list[str], settings: LvqaSettings, *, model=None,
                 processor=None, inference=None, work_dir: Path, progress: bool = False) -> dict:
    """``{"answers": [{"answer", "note"}], "events": [...], "notes": [...]}`` for one long video's questions."""
    if settings.method == "vlm":
        answers = vlm_answers(source, fps, questions, model=model, processor=processor, inference=inference,
                              work_dir=work_dir)
        return {"answers": [{"answer": text, "note": note} for text, note in answers], "events": None, "notes": []}
    events, notes = spot_events(source, fps, settings, model=model, processor=processor, inference=inference,
                                work_dir=work_dir, progress=progress)
    answers = [lvqa.answer(lvqa.recognise(question, str(source)), events) for question in questions]
    return {"answers": [{"answer": text, "note": note} for text, note in answers],
            "events": [event.as_dict() for event in events], "notes": notes}


# --- the question files ---------------------------------------------------------------------------------------
def _fps_of(row: dict, source: Path, given: float | None) -> float | None:
    if given is not None:
        return given
    if isinstance(row.get("fps"), (int, float)) and not isinstance(row["fps"], bool) and row["fps"] > 0:
        return float(row["fps"])
    if source.is_file():
        return None  # the video file's own rate
    return official_test_fps(row)


def read_questions(paths: list[Path], videos_root: Path | None, fps: float | None) -> tuple[list[dict], list[dict]]:
    """(question rows, videos): every question's kind recognised and every video found, before any work.
    A video is ``{"key": (question file, video), "source", "fps", "rows": [indices], "number"}``."""
    from mevqa.answering.inference import find_clip  # lazy: torch (mevqa.answering.inference)

    rows = read_rows(paths, required=("question", "video"), unique=True, check_media=False)
    refuse_empty_files(paths, rows, "question rows")
    for row in rows:  # every question first: a file of the wrong task fails before videos are looked for
        lvqa.recognise(row["question"], where(row))
    videos: dict[tuple[str, str], dict] = {}
    for index, row in enumerate(rows):
        here = where(row)
        key = (str(Path(row["_file"]).resolve()), str(row["video"]))
        if key not in videos:
            if isinstance(row.get("frames"), str):
                source = (Path(row["_file"]).parent / row["frames"]).resolve()
                if not source.exists():
                    raise MevqaError(f"{here}: frames {row['frames']!r} of video {row['video']} not found ({source})")
            elif videos_root is None:
                raise MevqaError(f"{here}: the row names video {row['video']!r} but no --videos folder was given")
            else:
                clip_name(str(row["video"]), here, "video")  # named here, so find_clip's errors need no place
                try:
                    source = find_clip(videos_root, str(row["video"]), here)
                except MevqaError as exc:
                    raise MevqaError(f"{here}: long video missing: {exc}") from None
            videos[key] = {"key": key, "source": source, "fps": _fps_of(row, source, fps), "rows": [],
                           "number": len(videos) + 1}
        videos[key]["rows"].append(index)
    return rows, list(videos.values())


def settings_of(args: argparse.Namespace) -> LvqaSettings:
    flow, vlm = settings_from_args(args)
    return LvqaSettings(args.lvqa_method, args.method, flow, vlm, args.macro_seconds)


def run_record(args: argparse.Namespace, settings: LvqaSettings, inference) -> dict:
    model = None
    if args.model is not None:
        path = Path(args.model).expanduser()
        model = str(path.resolve()) if path.exists() else args.model
    return {"questions": {str(Path(p).resolve()): file_sha256(p) for p in args.questions},
            "videos": str(Path(args.videos).resolve()) if args.videos else None, "fps": args.fps,
            **settings.record(), "model": model,
            "adapter": str(Path(args.adapter).expanduser().resolve()) if args.adapter else None,
            "inference": inference.record() if inference is not None else None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", nargs="+", required=True, type=Path, metavar="FILE",
                        help="LVQA question files: official *_to_answer.jsonl or mevqa build-lvqa's lvqa.jsonl")
    parser.add_argument("--videos", type=Path, help="folder of the long videos (a frame folder or video file named "
                        "as each row's video); not needed for build-lvqa rows, which name their frames")
    parser.add_argument("--method", dest="lvqa_method", choices=METHODS, required=True,
                        help="spot: spotter intervals -> counts, types, AUs; vlm: the model answers over the whole "
                             "video")
    parser.add_argument("--out", type=Path, required=True, help="output folder: predictions.jsonl, submission files")
    parser.add_argument("--fps", type=float, help="frame rate of the long videos (default: the row's, a video file's "
                                                  "own, else SAMM 200 / CAS(ME)^3 30)")
    parser.add_argument("--macro-seconds", type=float, default=DEFAULT_MACRO_SECONDS,
                        help="spot: typical macro-expression length, the scale the flow looks for them at; 0: look "
                             f"for none (default: {DEFAULT_MACRO_SECONDS})")
    add_method_arguments(parser, method_option="--spotter")


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)  # bad settings fail before anything is read or loaded
    if args.fps is not None and not args.fps > 0:
        raise MevqaError(f"--fps must be a positive number, got {args.fps}")
    if settings.method == "vlm" and args.model is None:
        raise MevqaError("--method vlm needs --model (the VQA model that answers over the whole video)")
    rows, videos = read_questions(args.questions, args.videos, args.fps)
    if args.model is not None:  # a missing or damaged model fails before the output folder is made
        from mevqa.answering.inference import check_weight_files

        check_model_source(args.model)
        if args.adapter is not None and not Path(args.adapter).expanduser().is_dir():
            raise MevqaError(f"{args.adapter}: adapter folder does not exist")
        check_weight_files(args.model, args.adapter)
    written = [args.out / name for name in (RUN_FILE, VIDEOS_FILE, PREDICTIONS_FILE, "work", ZIP_NAME)]
    if all(QUESTION_SUFFIX in Path(path).name for path in args.questions):
        written += [args.out / pred_file_name(path) for path in args.questions]
    refuse_outputs_onto_inputs(outputs={"--out": written}, into={"--out": args.out}, inputs={
        "--questions": args.questions, "--videos": args.videos, "the videos": [video["source"] for video in videos],
        "--model": args.model, "--adapter": args.adapter})
    with folder_lock(ensure_dir(args.out), LOCK, "mevqa lvqa-predict"):
        return predict(args, settings, rows, videos, Path(args.out))


def predict(args: argparse.Namespace, settings: LvqaSettings, rows: list[dict], videos: list[dict], out: Path) -> int:
    model, processor, inference = load_for(args)
    done, todo = resume_run(out, run_record(args, settings, inference), "answered", videos,
                            lambda video: video["key"])
    with LogAppender(out / VIDEOS_FILE) as videos_log:
        for video in tqdm(todo, desc="videos", unit="video", disable=not is_main_process()):
            start = time.perf_counter()
            name = video["key"][1]
            questions = [rows[i]["question"] for i in video["rows"]]
            try:
                result = answer_video(video["source"], video["fps"], questions, settings, model=model,
                                      processor=processor, inference=inference,
                                      work_dir=out / "work" / f"{video['number']:04d}_{name}", progress=True)
            except MevqaError as exc:
                raise MevqaError(f"{video['source']}: video {name}: {exc}") from None
            line = {"subject": video["key"][0], "video": name, "seconds": round(time.perf_counter() - start, 3),
                    **result}
            videos_log.append(line)
            done[video["key"]] = line
    predictions = []
    for video in videos:
        for index, answered in zip(video["rows"], done[video["key"]]["answers"]):
            row = rows[index]
            predictions.append({"video_id": row_id(row), "video": row["video"],
                                "question": row["question"], "answer": answered["answer"],
                                **({"note": answered["note"]} if answered["note"] else {}), "_index": index})
    predictions = [{k: v for k, v in p.items() if k != "_index"} for p in sorted(predictions, key=lambda p: p["_index"])]
    write_jsonl(out / PREDICTIONS_FILE, predictions)
    notes = sum("note" in p for p in predictions)
    video_notes = sorted({note for video in videos for note in done[video["key"]]["notes"]})
    for note in video_notes[:5]:
        log.warning("%s", note)
    print(f"{len(videos)} videos, {len(predictions)} questions answered -> {out / PREDICTIONS_FILE}"
          + (f"; {notes} answered by a fallback rule (see 'note')" if notes else ""))
    if all(QUESTION_SUFFIX in Path(path).name for path in args.questions):
        for path in write_submission(args.questions, predictions, out):
            print(path)
    return 0


def answer_long_video(args: argparse.Namespace, question: str) -> int:
    """``mevqa answer --clip LONG_VIDEO --question <an ME-LVQA question>``: the spot method with the flow spotter
    and its default settings. Counts and types need no model (types from durations), so none is loaded; the
    distinct-AU question is asked of ``--model`` on each interval."""
    kind = lvqa.recognise(question, "--question")
    clip = read_clip(args.clip)
    fps = check_fps(clip, args.fps)
    settings = LvqaSettings("spot")
    model = processor = inference = None
    if kind.kind == lvqa.DISTINCT_AUS:
        from mevqa.answering.inference import load_model, resolve_settings  # lazy: torch (mevqa.answering.inference)

        inference = resolve_settings(args)
        model, processor = load_model(args, inference)
    with tempfile.TemporaryDirectory(prefix="mevqa-lvqa-") as work_dir:
        result = answer_video(args.clip, fps, [question], settings, model=model, processor=processor,
                              inference=inference, work_dir=Path(work_dir))
    [answered] = result["answers"]
    if getattr(args, "json", False):
        print(json.dumps({"answer": answered["answer"], "note": answered["note"], "question": question,
                          "kind": kind.kind, "n": kind.n, "clip": str(args.clip), "fps": fps,
                          "events": result["events"], "notes": result["notes"], **settings.record(),
                          "model": str(args.model) if model is not None else None}, indent=2, ensure_ascii=False))
    else:
        print(answered["answer"])
    return 0
