"""``mevqa predict``: answer question files in batches, as you go and resumably, then write the submission files.

Question rows are either official test rows (``video_id``, ``video``, ``question``; the clip is the folder or video
file named ``video`` under ``--clips``) or training-style rows that carry ``media`` from ``mevqa build-data`` (paths
relative to their jsonl file). Raw clips get their inputs built once, as ``mevqa build-data`` builds them, under
``OUT/media/<video>/``.

Output folder::

    OUT/predictions.jsonl   one line per answered row (the question row with ``answer`` filled), appended and
                            flushed batch by batch; a rerun skips the rows already there
    OUT/errors.jsonl        rows that could not be answered in the last run (``id``, ``where``, ``error``)
    OUT/run.json            model, adapter and settings of the answers; a rerun with other settings is refused
    OUT/media/<video>/      inputs built from raw clips
    OUT/<official>_pred.jsonl, OUT/submission.zip   when every row of official ``*_to_answer.jsonl`` files is answered
    OUT/scores.json         with ``--gold``

A failed row (missing clip, unreadable frame, no input for the mode) is recorded in ``errors.jsonl`` and the run goes
on; ``--strict`` stops at the first one. A rerun retries the failed rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from mevqa.answer import (add_generation_arguments, add_media_arguments, add_model_arguments, clip_media,
                          generation_kwargs, load, media_kwargs, resolve_settings)
from mevqa.errors import MevqaError
from mevqa.jsonl import read_jsonl, strip_private, write_json
from mevqa.messages import INPUT_MODES, resolve_media

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
ERRORS = "errors.jsonl"
RUN_CONFIG = "run.json"
SCORES = "scores.json"
# Frame rates of the official test clips (shared/spec/megc2025-vqa.md): SAMM Challenge 200 fps, CAS(ME)^3 30 fps.
TEST_CLIP_FPS = {"samm": 200.0, "cas": 30.0}


# --- questions ----------------------------------------------------------------------------------------------------
def read_questions(paths) -> list[dict]:
    """Rows of all question files in order, each tagged ``_file``/``_line``; ids must be unique across files."""
    from mevqa.eval import row_id

    rows, seen = [], {}
    for path in map(Path, paths):
        for row in read_jsonl(path, required=("question",)):
            row["_file"] = str(path)
            where = f"{path}:{row['_line']}"
            rid = row_id(row)
            if rid in seen:
                raise MevqaError(f"{where}: duplicate id {rid!r} (first at {seen[rid]})")
            if not isinstance(row["question"], str) or not row["question"].strip():
                raise MevqaError(f"{where}: expected a non-empty 'question' string")
            seen[rid] = where
            rows.append(row)
    return rows


def is_official(path) -> bool:
    """An official question file (``*_to_answer*.jsonl``): predictions for it go into submission files."""
    return "_to_answer" in Path(path).stem


def find_clip(clips_dir: Path, name: str) -> Path:
    """The clip called ``name``: ``clips_dir/name`` (a folder or a video file ``name.mp4``/...), else the one
    folder or video file of that name anywhere under ``clips_dir``."""
    from mevqa.media import VIDEO_SUFFIXES

    if not name or Path(name).name != name:
        raise MevqaError(f"clip name {name!r} must be a plain folder or file name")
    direct = [clips_dir / name] + [clips_dir / f"{name}{suffix}" for suffix in sorted(VIDEO_SUFFIXES)]
    found = [path for path in direct if path.exists()]
    if not found:
        found = sorted(path for path in clips_dir.rglob(f"{name}*")
                       if (path.is_dir() and path.name == name)
                       or (path.is_file() and path.stem == name and path.suffix.lower() in VIDEO_SUFFIXES))
    if not found:
        raise MevqaError(f"clip {name!r} not found: no folder or video file of that name under {clips_dir}")
    if len(found) > 1:
        raise MevqaError(f"clip {name!r} is ambiguous under {clips_dir}: {', '.join(str(p) for p in found[:4])}")
    return found[0]


class MediaSource:
    """Gives each row absolute media: its own (training-style rows) or built from its raw clip, once per clip."""

    def __init__(self, mode: str, clips_dir: Path | None, media_dir: Path, settings: dict, fps: float | None):
        self.mode, self.clips_dir, self.media_dir = mode, clips_dir, media_dir
        self.settings, self.fps = settings, fps
        self.clips: dict[str, dict | MevqaError] = {}
        self.seconds = 0.0

    def prepare(self, row: dict) -> dict:
        """A copy of ``row`` with absolute media for the input mode; MevqaError names the row and what is wrong."""
        where = f"{row['_file']}:{row['_line']}"
        row = dict(row)
        if row.get("media") is not None:
            row["media"] = json.loads(json.dumps(row["media"]))  # a private copy to make absolute
            resolve_media(row, Path(row["_file"]).parent, where)
        elif isinstance(row.get("video"), str):
            row["media"] = self._clip(row, where)["media"]
        else:
            raise MevqaError(f"{where}: the row has neither 'media' (from mevqa build-data) nor a 'video' clip name")
        missing = [key for key in INPUT_MODES[self.mode].needs if key not in row["media"]]
        if missing:
            raise MevqaError(f"{where}: input mode {self.mode!r} needs media.{', media.'.join(missing)}; the row "
                             f"has {', '.join(row['media']) or 'none'} (build the data with those inputs)")
        return row

    def _clip(self, row: dict, where: str) -> dict:
        name = row["video"]
        if name not in self.clips:
            start = time.perf_counter()
            try:
                if self.clips_dir is None:
                    raise MevqaError("--clips is needed for rows that name a clip")
                self.clips[name] = clip_media(find_clip(self.clips_dir, name), self.media_dir / name,
                                              fps=self.fps or self._test_fps(row), **self.settings)
            except MevqaError as exc:
                self.clips[name] = exc
            self.seconds += time.perf_counter() - start
        built = self.clips[name]
        if isinstance(built, MevqaError):
            raise MevqaError(f"{where}: clip {name}: {built}")
        return built

    def _test_fps(self, row: dict) -> float | None:
        from mevqa.eval import split_of

        try:
            return TEST_CLIP_FPS.get(split_of(row))
        except MevqaError:
            return None


# --- the output folder ------------------------------------------------------------------------------------------
def read_predictions(path: Path) -> dict[str, dict]:
    """Answered rows by id. A last line cut short by a kill is dropped (and cut from the file); any other bad line
    is an error, since that file was not written by a run of this command."""
    from mevqa.eval import row_id

    if not path.is_file():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping an unfinished last line (the previous run was stopped while writing)", path)
        with path.open("r+b") as handle:
            handle.truncate(keep)
    answers = {}
    for row in read_jsonl(path, required=("answer",)):
        rid = row_id(row)
        if rid in answers:
            raise MevqaError(f"{path}:{row['_line']}: id {rid!r} answered twice")
        answers[rid] = row
    return answers


def check_run_config(out: Path, config: dict, resuming: bool) -> None:
    """Refuse to mix answers from different models or settings in one output folder."""
    path = out / RUN_CONFIG
    if resuming and path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in set(config) | set(previous) if config.get(key) != previous.get(key))
        if changed:
            raise MevqaError(f"{out}: holds answers made with other settings ({', '.join(changed)} differ, see "
                             f"{path}); use another --out, or delete {out / PREDICTIONS} to start over")
    write_json(path, config)


class Appender:
    """Appends jsonl lines to a file, flushed and synced to disk at each :meth:`sync`."""

    def __init__(self, path: Path, mode: str = "a"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open(mode, encoding="utf-8")

    def write(self, row: dict) -> None:
        self.handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def sync(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.sync()
        self.handle.close()


def prediction_row(row: dict, answer: str) -> dict:
    """The question row as it goes into predictions.jsonl: its own fields, without media, with the answer."""
    kept = {key: value for key, value in strip_private(row).items() if key not in ("media", "clip")}
    return {**kept, "answer": answer}


# --- the loop ---------------------------------------------------------------------------------------------------
def predict(model, processor, rows: list[dict], out: Path, mode: str, *, media: MediaSource, batch_size: int = 8,
            strict: bool = False, generation: dict | None = None, progress: bool = True) -> dict:
    """Answer ``rows`` not yet in ``out/predictions.jsonl``, appending each batch as it is done.

    Returns ``{"answered": n, "failed": n, "skipped": n, "seconds": s, "media_seconds": s}``. Rows that fail
    (MevqaError) go to ``out/errors.jsonl``; with ``strict`` the first failure is raised.
    """
    from tqdm.auto import tqdm

    from mevqa.eval import row_id
    from mevqa.generation import generate_answers
    from mevqa.log import is_main_process

    if batch_size < 1:
        raise MevqaError(f"--batch-size must be at least 1, got {batch_size}")
    generation = generation or {}
    done = read_predictions(out / PREDICTIONS)
    todo = [row for row in rows if row_id(row) not in done]
    stats = {"answered": 0, "failed": 0, "skipped": len(rows) - len(todo), "seconds": 0.0, "media_seconds": 0.0}
    if stats["skipped"]:
        log.info("%d of %d rows already answered in %s; %d to go", stats["skipped"], len(rows), out / PREDICTIONS,
                 len(todo))
    predictions, errors = Appender(out / PREDICTIONS), Appender(out / ERRORS, "w")
    bar = tqdm(total=len(todo), desc="predict", unit="row", dynamic_ncols=True, disable=not progress
               or not is_main_process())
    start = time.perf_counter()

    def fail(row: dict, exc: MevqaError) -> None:
        if strict:
            raise exc
        log.warning("row %s failed: %s", row_id(row), exc)
        errors.write({"id": row_id(row), "where": f"{row['_file']}:{row['_line']}", "error": str(exc)})
        errors.sync()
        stats["failed"] += 1
        bar.update(1)

    def answer(batch: list[dict]) -> None:
        try:
            answers = generate_answers(model, processor, batch, mode, batch_size=len(batch), **generation)
        except MevqaError as exc:
            if len(batch) == 1:
                return fail(batch[0], exc)
            for row in batch:  # find the row that broke the batch; the others still get answered
                answer([row])
            return
        for row, text in zip(batch, answers):
            predictions.write(prediction_row(row, text))
        predictions.sync()
        stats["answered"] += len(batch)
        bar.update(len(batch))

    try:
        pending = []
        for row in todo:
            try:
                pending.append(media.prepare(row))
            except MevqaError as exc:
                fail(row, exc)
            if len(pending) == batch_size:
                answer(pending)
                pending = []
        if pending:
            answer(pending)
    finally:
        bar.close()
        predictions.close()
        errors.close()
        stats["seconds"] = time.perf_counter() - start
        stats["media_seconds"] = media.seconds
    return stats


# --- the command ------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", nargs="+", required=True, type=Path, metavar="Q.jsonl",
                        help="question files: official *_to_answer.jsonl test files or QA jsonl from build-data")
    parser.add_argument("--clips", type=Path, metavar="DIR",
                        help="folder holding the clips the rows name ('video'): DIR/<video> or found by name below")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (see below)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per generation batch (default 8)")
    parser.add_argument("--limit", type=int, help="answer only the first N rows (a rerun without it resumes)")
    parser.add_argument("--gold", nargs="+", type=Path, metavar="G.jsonl", help="score the predictions against "
                                                                                 "these gold files at the end")
    parser.add_argument("--strict", action="store_true", help="stop at the first row that fails")
    add_model_arguments(parser, model_required=True)
    add_media_arguments(parser)
    add_generation_arguments(parser)
    parser.epilog = __doc__[__doc__.index("Output folder::"):__doc__.index("A failed row")].replace("::", ":")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def run_config(args: argparse.Namespace) -> dict:
    """What decides the answers: a rerun into the same folder must match it."""
    model = Path(args.model).expanduser()
    media = {key: list(value) if isinstance(value, tuple) else value for key, value in media_kwargs(args).items()}
    return {"model": str(model.resolve()) if model.exists() else args.model,
            "adapter": str(args.adapter.expanduser().resolve()) if args.adapter else None, "dtype": args.dtype,
            "inputs": args.inputs, "pixels": args.pixels, "media": media, "fps": args.fps,
            "generation": generation_kwargs(args), "seed": args.seed}


def run(args: argparse.Namespace) -> int:
    from mevqa.eval import row_id

    rows = read_questions(args.questions)
    if args.limit is not None:
        if args.limit < 1:
            raise MevqaError(f"--limit must be at least 1, got {args.limit}")
        rows_to_answer = rows[:args.limit]
    else:
        rows_to_answer = rows
    if args.clips is not None and not args.clips.is_dir():
        raise MevqaError(f"{args.clips}: clips folder not found")
    resolve_settings(args)
    generation = generation_kwargs(args)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    answered_before = (out / PREDICTIONS).is_file() and (out / PREDICTIONS).stat().st_size > 0
    check_run_config(out, run_config(args), resuming=answered_before)

    start = time.perf_counter()
    model, processor = load(args)
    load_seconds = time.perf_counter() - start
    log.info("model loaded in %.1f s", load_seconds)
    media = MediaSource(args.inputs, args.clips, out / "media", media_kwargs(args), args.fps)
    stats = predict(model, processor, rows_to_answer, out, args.inputs, media=media, batch_size=args.batch_size,
                    strict=args.strict, generation=generation)
    rate = stats["answered"] / stats["seconds"] if stats["seconds"] else 0.0
    log.info("answered %d rows in %.1f s (%.2f rows/s, inputs built in %.1f s), %d failed, %d already done",
             stats["answered"], stats["seconds"], rate, stats["media_seconds"], stats["failed"], stats["skipped"])

    answers = read_predictions(out / PREDICTIONS)
    pred_rows = [answers[row_id(row)] for row in rows if row_id(row) in answers]
    missing = len(rows) - len(pred_rows)
    print(f"predictions: {out / PREDICTIONS} ({len(pred_rows)} of {len(rows)} rows answered)")
    if stats["failed"]:
        print(f"errors: {out / ERRORS} ({stats['failed']} rows failed; fix them and rerun to answer only those)")
    official = [path for path in args.questions if is_official(path)]
    if official and not missing:
        from mevqa.submission import write_submission

        official_ids = {row_id(row) for row in rows if is_official(row["_file"])}
        for path in write_submission(official, [row for row in pred_rows if row_id(row) in official_ids], out):
            print(f"submission: {path}")
    elif official:
        print(f"submission: not written, {missing} rows unanswered (rerun to finish them)")
    if args.gold:
        from mevqa.eval import read_rows, score
        from mevqa.eval.report import format_table

        report = score(pred_rows, read_rows(args.gold))
        write_json(out / SCORES, report)
        print(format_table(report))
    return 1 if stats["failed"] else 0
