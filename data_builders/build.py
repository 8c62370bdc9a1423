"""The dataset registry and the build: clip records -> QA rows with inputs, written to ``OUT/qa.jsonl``.

Two sources of questions:
- generated from the annotation sheet (:func:`mevqa.data_builders.qa.clip_rows`), keeping the official selection
  of clips (``EXCLUDED`` labels of each dataset are left out; ``all_emotions`` keeps those that have a coarse class);
- ``official``: the rows of an official jsonl, to which clip metadata and inputs are attached. A training-style
  file (``image_id`` per row, 2025 or 2026 v2) is joined to the sheet by image id; a test file
  (``*_to_answer.jsonl``, ``video`` per row) takes its frames from ``ROOT/<video>/`` (or ``ROOT/<video>.mp4``...),
  onset/offset = the first/last frame, apex estimated. Test rows that carry ``onset_frame``/``offset_frame`` and
  ``image_id`` instead (the layout of some copies of the CAS(ME)^3 test file) take their frames from
  ``ROOT/<image_id>/`` or else ``ROOT/<subject>/<filename>/``, between those frames. Every name used as a path
  (``video``, ``image_id``, ``subject``, ``filename``) must be one plain folder or file name, so nothing is read from
  outside ``ROOT`` and nothing is written outside ``OUT``.

The question set (``BuildOptions.questions``): 2025, or 2026 (MEGC2026 ME-VQA-v2: the composite question gives way
to one analysis prompt per clip, :func:`mevqa.data_builders.qa.clip_rows`). An official file brings its own set
(analysis prompts: 2026; the composite question: 2025), which ``--questions`` must not contradict, and every row of
it must ask a question of a known kind (:func:`mevqa.vocab.question_kind`). ``build.json`` records the set used
(``options.questions``).

A clip with bad input raises; with ``skip_bad`` it is left out and listed in ``OUT/skipped.jsonl`` instead.
Nothing is written to ``OUT/qa.jsonl`` unless the whole build succeeds. Media are cached per clip (``media.json``),
so a second run reuses them. A rebuild whose media settings differ from those ``OUT/build.json`` records first sets
the old ``OUT/qa.jsonl`` and ``OUT/build.json`` aside (renamed ``<name>.stale-<time>``) before any media is touched:
whatever stops the rebuild, no ``qa.jsonl`` is left pointing at media built with other settings, and the folds of
``mevqa split`` that keep their media in ``OUT`` are refused by their readers until split again. A build holds a
lock on ``OUT`` (``OUT/.build.lock``): a second build into the same folder is refused while one runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import cv2
from tqdm import tqdm

from mevqa import vocab
from mevqa.data_builders import casme2, casme3, fourdme, samm, smic
from mevqa.data_builders.qa import QUESTION_SETS, ClipRecord, clip_rows, questions_of_set
from mevqa.errors import MevqaError
from mevqa.jsonl import ensure_dir, write_json, write_jsonl
from mevqa.log import is_main_process
from mevqa.longvideo import lvqa
from mevqa.media import VIDEO_SUFFIXES, MediaSettings, build_media, read_clip, resolve_span
from mevqa.paths import refuse_outputs_onto_inputs
from mevqa.rows import build_record, cell_int, clip_name, read_rows
from mevqa.runfolder import folder_lock, set_aside

log = logging.getLogger(__name__)

# Real SAMM sheets have a few such rows; say how to build them anyway.
BAD_APEX_HINT = " (--estimate-bad-apex estimates it instead)"
QA_FILE, BUILD_FILE, SKIPPED_FILE, LOCK_FILE = "qa.jsonl", "build.json", "skipped.jsonl", ".build.lock"

DATASETS: dict[str, ModuleType] = {"casme2": casme2, "samm": samm, "smic": smic, "casme3": casme3, "4dme": fourdme}


def dataset_module(name: str) -> ModuleType:
    if name not in DATASETS:
        raise MevqaError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass
class BuildOptions:
    media: MediaSettings = field(default_factory=MediaSettings)  # which inputs, and how (validated on creation)
    workers: int = 1
    seed: int = 0
    skip_bad: bool = False
    missing_apex: str | None = None   # None: the dataset's default (SMIC midpoint, others max_diff)
    bad_apex: str = "error"           # "estimate": an apex outside the clip is estimated instead
    all_emotions: bool = False
    fps: float | None = None          # override the dataset's frame rate
    # "2025" (the composite question) or "2026" (ME-VQA-v2: the analysis prompt in its place); None: 2025 for rows
    # made from the sheet, the official file's own set with --official. build.json records the set used.
    questions: str | None = None
    progress: bool = True

    def __post_init__(self):
        if self.questions is not None and self.questions not in QUESTION_SETS:
            raise MevqaError(f"--questions must be one of {', '.join(QUESTION_SETS)}, got {self.questions!r}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise MevqaError(f"--fps must be positive, got {self.fps}")
        if self.workers < 1:
            raise MevqaError(f"--workers must be at least 1, got {self.workers}")


def _options_record(options: BuildOptions) -> dict:
    """The build options as build.json records them, the media settings apart (``media_settings``)."""
    record = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
              if f.name not in ("media", "progress")}
    return record


@dataclass
class ClipJob:
    """One clip to build: its record and the rows that will carry its metadata and inputs."""

    record: ClipRecord
    rows: list[dict]
    media: dict = field(default_factory=dict)


def load_records(dataset: str, root: Path | None, annotations: Path | None, skip_bad: bool,
                 skipped: list[dict]) -> list[ClipRecord]:
    module = dataset_module(dataset)
    records = []
    for entry in module.entries(root, annotations):
        try:
            records.append(module.record(entry, root))
        except MevqaError as exc:
            _bad(exc, entry.where, skip_bad, skipped)
    return records


def _bad(exc: MevqaError, where: str, skip_bad: bool, skipped: list[dict], image_id: str | None = None) -> None:
    if not skip_bad:
        raise exc
    log.warning("skipping: %s", exc)
    skipped.append({"where": where, "image_id": image_id, "error": str(exc)})


def generated_jobs(dataset: str, records: list[ClipRecord], options: BuildOptions,
                   skipped: list[dict]) -> tuple[list[ClipJob], int]:
    module = dataset_module(dataset)
    jobs, excluded, seen = [], 0, {}
    for record in records:
        if record.emotion in module.EXCLUDED and not (options.all_emotions and record.coarse):
            excluded += 1
            continue
        try:
            if record.key in seen:
                raise MevqaError(f"{record.where}: clip {record.image_id} is annotated twice "
                                 f"(also {seen[record.key]})")
            seen[record.key] = record.where
            clip_name(record.image_id, record.where, "image id")  # it names the clip's media folder
            questions = questions_of_set(module.QUESTIONS, options.questions or "2025")
            jobs.append(ClipJob(record, clip_rows(record, questions, options.seed)))
        except MevqaError as exc:
            _bad(exc, record.where, options.skip_bad, skipped, record.image_id)
    return jobs, excluded


def official_jobs(dataset: str, official: Path, root: Path | None, annotations: Path | None, options: BuildOptions,
                  skipped: list[dict]) -> tuple[list[ClipJob], str]:
    """The jobs of an official file's clips, and the file's question set (:func:`check_question_set`)."""
    rows = read_rows(official)  # ids unique, questions non-empty, lines checked
    if not rows:
        raise MevqaError(f"{official}: no rows")
    question_set = check_question_set(official, rows, options.questions)
    if all("video" in row or "onset_frame" in row for row in rows):  # test questions: frames per clip
        return _test_jobs(dataset, official, rows, root, options, skipped), question_set
    if any("image_id" not in row for row in rows):
        line = next(row["_line"] for row in rows if "image_id" not in row)
        raise MevqaError(f"{official}:{line}: expected training rows (image_id) or test rows (video)")
    records = {record.image_id: record for record in load_records(dataset, root, annotations, options.skip_bad,
                                                                  skipped)}
    groups = {}
    others = 0
    for row in rows:
        if row.get("dataset", dataset) != dataset:
            others += 1
            continue
        groups.setdefault(str(row["image_id"]), []).append(row)
    if others:
        log.info("%s: %d rows of other datasets left out", official.name, others)
    jobs = []
    for image_id, clip_rows_ in groups.items():
        where = f"{official.name} line {clip_rows_[0]['_line']} ({image_id})"
        try:
            if image_id not in records:
                raise MevqaError(f"{where}: clip {image_id} is not in the annotation sheet")
            jobs.append(ClipJob(records[image_id], clip_rows_))
        except MevqaError as exc:
            _bad(exc, where, options.skip_bad, skipped, image_id)
    return jobs, question_set


def official_question_set(official: Path, rows: list[dict]) -> str | None:
    """The question set of an official file's rows: "2026" when it asks analysis prompts, "2025" when it asks the
    composite question, None when it asks neither (e.g. SMIC's coarse rows, the same in both). A row of no known
    question kind, or a file asking both, is an error naming the row."""
    first: dict[str, dict] = {}
    for row in rows:
        kind = vocab.question_kind(row["question"])
        if kind is None:
            lvqa.refuse_in_clip_task(row["question"], f"{official}:{row['_line']}",
                                     "build ME-LVQA rows with mevqa build-lvqa --official")
            raise MevqaError(f"{official}:{row['_line']}: question {row['question']!r} is of no known kind; expected "
                             "an ME-VQA question of 2025 or a 2026 analysis prompt (docs/megc2026.md)")
        first.setdefault(kind, row)
    if vocab.ANALYSIS in first and vocab.COMPOSITE in first:
        raise MevqaError(f"{official}:{first[vocab.COMPOSITE]['_line']}: a composite question (2025) in a file that "
                         f"asks analysis prompts (2026, line {first[vocab.ANALYSIS]['_line']}); one file is one "
                         "question set")
    return "2026" if vocab.ANALYSIS in first else "2025" if vocab.COMPOSITE in first else None


def check_question_set(official: Path, rows: list[dict], given: str | None) -> str:
    """The question set of a build from an official file: the file's own (:func:`official_question_set`), which
    ``--questions``, when given, must equal; "2025" when the file and the option leave it open."""
    found = official_question_set(official, rows)
    if given is not None and found is not None and found != given:
        raise MevqaError(f"{official}: asks the {found} question set "
                         f"({'analysis prompts' if found == '2026' else 'the composite question'}), but --questions "
                         f"is {given}; pass --questions {found} or leave it out")
    return given or found or "2025"


def _test_jobs(dataset: str, official: Path, rows: list[dict], root: Path | None, options: BuildOptions,
               skipped: list[dict]) -> list[ClipJob]:
    """Test questions: one job per clip, its frames in ``ROOT/<video>`` (or ``ROOT/<subject>/<filename>``)."""
    if root is None:
        raise MevqaError("--official with a test file needs --root, the folder of the per-clip frame folders")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        name = row.get("video") if "video" in row else row.get("image_id")
        groups.setdefault(clip_name(name, f"{official}:{row['_line']}", "video" if "video" in row else "image_id"),
                          []).append(row)
    jobs = []
    for name, clip_rows_ in groups.items():
        first = clip_rows_[0]
        where = f"{official.name} line {first['_line']} ({name})"
        try:
            folder = _test_clip_path(root, name)
            if not folder.exists() and "subject" in first and "filename" in first:
                folder = _test_clip_path(root / clip_name(str(first["subject"]), where, "subject"),
                                         clip_name(str(first["filename"]), where, "filename"))
            onset, offset = (None if first.get(key) in (None, "") else cell_int(first[key], where, key)
                             for key in ("onset_frame", "offset_frame"))
            record = ClipRecord(dataset, str(first.get("subject", name)), str(first.get("filename", name)), name,
                                onset, None, offset, "", None, None, folder, options.fps or dataset_module(dataset).FPS,
                                where)
            jobs.append(ClipJob(record, clip_rows_))
        except MevqaError as exc:
            _bad(exc, where, options.skip_bad, skipped, name)
    return jobs


def _test_clip_path(root: Path, video: str) -> Path:
    folder = root / video
    if folder.is_dir():
        return folder
    for suffix in sorted(VIDEO_SUFFIXES):
        if (root / f"{video}{suffix}").is_file():
            return root / f"{video}{suffix}"
    return folder


def _media_for(args: tuple) -> tuple:
    """Worker: resolve the span and build one clip's inputs. Returns (index, record, media, timings, error); the
    error names the clip's sheet row, then what is wrong (with the file's path where a file is the problem)."""
    index, record, options, out = args
    timings: dict = {}
    try:
        record, clip, span = _resolve_span(record, options)
        media = {}
        if clip is not None:
            media = build_media(clip, span, options.media, out / "media" / record.dataset / record.image_id,
                                rel_to=out, fps=record.fps, timings=timings)
        return index, record, media, timings, None
    except MevqaError as exc:
        return index, record, None, timings, f"{record.where}: {exc}"


def _resolve_span(record: ClipRecord, options: BuildOptions) -> tuple:
    """``(record, clip, span)``: the record with onset/apex/offset filled and checked by
    :func:`mevqa.media.resolve_span`, the clip's frames when inputs are built (else None) and the span."""
    clip = None
    if options.media.modes:
        if record.frames is None or not Path(record.frames).exists():
            raise MevqaError(f"clip folder {record.frames} not found")
        clip = read_clip(record.frames)
    span = resolve_span(clip, record.onset, record.apex, record.offset,
                        missing_apex=options.missing_apex or dataset_module(record.dataset).MISSING_APEX,
                        bad_apex=options.bad_apex, hint=BAD_APEX_HINT)
    record = replace(record, onset=span.onset, apex=span.apex, offset=span.offset, apex_method=span.apex_method)
    if record.fps is None and clip is not None:
        record.fps = clip.fps
    return record, clip, span


def set_aside_stale_rows(out: Path, settings: MediaSettings) -> list[Path]:
    """If ``OUT/build.json`` does not record ``settings`` as the media settings of the build (or ``OUT/qa.jsonl``
    has no readable record), rename ``qa.jsonl`` and ``build.json`` to ``<name>.stale-<time>`` before any media is
    touched, and return their new paths. Without ``qa.jsonl``, no row of this folder points at media of other
    settings; without ``build.json``, neither do the folds of ``mevqa split`` that keep their media here (their
    readers check the build's record against the rows', :func:`mevqa.rows.resolve_media`)."""
    qa, record = out / QA_FILE, out / BUILD_FILE
    try:
        recorded = (build_record(out) or {}).get("media_settings")
    except (OSError, MevqaError):
        recorded = None  # no readable build.json: the settings of what is there are unknown
    if recorded == settings.record():
        return []
    return set_aside([qa, record], "built with other media settings "
                     f"({'unrecorded' if recorded is None else recorded})")


def build_dataset(dataset: str, out: str | Path, *, root: str | Path | None = None,
                  annotations: str | Path | None = None, official: str | Path | None = None,
                  options: BuildOptions | None = None) -> dict:
    """Build ``OUT/qa.jsonl`` (and ``OUT/media/``, ``OUT/skipped.jsonl`` with ``skip_bad``, ``OUT/build.json``).
    Returns the summary written to ``build.json``."""
    options = options or BuildOptions()
    out = Path(out)
    root = Path(root) if root is not None else None
    annotations = Path(annotations) if annotations is not None else None
    module = dataset_module(dataset)
    started = time.perf_counter()
    skipped: list[dict] = []
    excluded = 0
    if module is smic and root is None:
        raise MevqaError("smic needs --root (its labels are the folders)")
    if root is None and options.media.modes:
        raise MevqaError("--root is needed to find the frames (or build with --inputs none)")
    if root is not None and not root.is_dir():
        raise MevqaError(f"{root}: {'is a file, expected' if root.exists() else 'not found; expected'} the dataset's "
                         "frame folder (--root)")
    if official is not None:
        jobs, question_set = official_jobs(dataset, Path(official), root, annotations, options, skipped)
        options = replace(options, questions=question_set)
    else:
        options = replace(options, questions=options.questions or "2025")
        records = load_records(dataset, root, annotations, options.skip_bad, skipped)
        jobs, excluded = generated_jobs(dataset, records, options, skipped)
    if options.fps:
        for job in jobs:
            job.record.fps = options.fps
    refuse_outputs_onto_inputs(
        outputs={"--out": [out / name for name in (QA_FILE, BUILD_FILE, SKIPPED_FILE, "media")]}, into={"--out": out},
        inputs={"--root": root, "--annotations": annotations, "--official": official})
    ensure_dir(out)  # after the inputs are read (a bad sheet writes nothing), before any media
    # One build at a time here: two with other settings would overwrite each other's media.
    with folder_lock(out, LOCK_FILE, "mevqa build-data"):
        set_aside_stale_rows(out, options.media)
        return _build(dataset, out, jobs, excluded, skipped, options, started,
                      source={"root": str(root) if root else None,
                              "annotations": str(annotations) if annotations else None,
                              "official": str(official) if official else None})


def _build(dataset: str, out: Path, jobs: list[ClipJob], excluded: int, skipped: list[dict], options: BuildOptions,
           started: float, source: dict) -> dict:
    """Build the jobs' media into ``out`` and write ``skipped.jsonl``, ``build.json`` and ``qa.jsonl``."""
    timings: dict[str, float] = {}
    tasks = [(i, job.record, options, out) for i, job in enumerate(jobs)]
    failed: set[int] = set()
    with tqdm(total=len(tasks), desc=f"build-data {dataset}", unit="clip",
              disable=not (options.progress and is_main_process())) as bar:
        if options.workers > 1 and len(tasks) > 1:
            # spawn, not fork: a forked child deadlocks in OpenCV's thread pool once the parent has used it
            with multiprocessing.get_context("spawn").Pool(options.workers, initializer=_worker_init) as pool:
                results = pool.imap_unordered(_media_for, tasks, chunksize=1)
                _collect(results, jobs, timings, failed, skipped, options, bar)
        else:
            _collect(map(_media_for, tasks), jobs, timings, failed, skipped, options, bar)

    kept = [job for i, job in enumerate(jobs) if i not in failed]
    rows = []
    for job in kept:
        metadata = job.record.clip_metadata()
        for row in job.rows:
            row = {key: value for key, value in row.items() if not key.startswith("_")}
            row["clip"] = metadata
            if job.media:
                row["media"] = job.media
            else:
                row.pop("media", None)
            rows.append(row)
    if options.skip_bad:
        write_jsonl(out / SKIPPED_FILE, skipped)
    if not rows:
        raise MevqaError(f"{dataset}: no clips to build ({excluded} left out by label, {len(skipped)} bad)"
                         + (f"; see {out / SKIPPED_FILE}" if options.skip_bad else ""))
    summary = {"dataset": dataset, "clips": len(kept), "rows": len(rows), "excluded_by_label": excluded,
               "skipped": len(skipped), "inputs": list(options.media.modes),
               "media_settings": options.media.record(),
               "seconds": round(time.perf_counter() - started, 2),
               "timings": {k: round(v, 2) for k, v in timings.items()},
               "options": _options_record(options), "source": source}
    # build.json first: qa.jsonl appears only beside the record of the settings its media were built with.
    write_json(out / BUILD_FILE, summary)
    write_jsonl(out / QA_FILE, rows)
    log.info("%s: %d clips, %d rows -> %s (%d left out by label, %d skipped)", dataset, len(kept), len(rows),
             out / QA_FILE, excluded, len(skipped))
    return summary


def _collect(results, jobs, timings, failed, skipped, options, bar) -> None:
    for index, record, media, clip_timings, error in results:
        for key, value in clip_timings.items():
            timings[key] = timings.get(key, 0.0) + value
        bar.update(1)
        if error is not None:
            failed.add(index)
            _bad(MevqaError(error), jobs[index].record.where, options.skip_bad, skipped, record.image_id)
            continue
        jobs[index].record = record
        jobs[index].media = media


def _worker_init() -> None:
    cv2.setNumThreads(1)
