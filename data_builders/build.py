"""The dataset registry and the build: clip records -> QA rows with inputs, written to ``OUT/qa.jsonl``.

Two sources of questions:
- generated from the annotation sheet (:func:`mevqa.data_builders.qa.clip_rows`), keeping the official selection
  of clips (``EXCLUDED`` labels of each dataset are left out; ``all_emotions`` keeps those that have a coarse class);
- ``official``: the rows of an official jsonl, to which clip metadata and inputs are attached. A training-style
  file (``image_id`` per row, 2025 or 2026 v2) is joined to the sheet by image id; a test file
  (``*_to_answer.jsonl``, ``video`` per row) takes its frames from ``ROOT/<video>/`` (or ``ROOT/<video>.mp4``...),
  onset/offset = the first/last frame, apex estimated. Test rows that carry ``onset_frame``/``offset_frame`` and
  ``image_id`` instead (the layout of some copies of the CAS(ME)^3 test file) take their frames from
  ``ROOT/<image_id>/`` or else ``ROOT/<subject>/<filename>/``, between those frames.

A clip with bad input raises; with ``skip_bad`` it is left out and listed in ``OUT/skipped.jsonl`` instead.
Nothing is written to ``OUT/qa.jsonl`` unless the whole build succeeds. Media are cached per clip (``media.json``),
so a second run reuses them.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

from mevqa.data_builders import casme2, casme3, fourdme, samm, smic
from mevqa.data_builders.qa import ClipRecord, clip_rows
from mevqa.errors import MevqaError
from mevqa.jsonl import read_jsonl, write_json, write_jsonl
from mevqa.log import is_main_process
from mevqa.media import VIDEO_SUFFIXES, Clip, MediaSettings, build_media, estimate_apex, read_clip

log = logging.getLogger(__name__)

# Real SAMM sheets have a few such rows; say how to build them anyway.
BAD_APEX_HINT = " (--estimate-bad-apex estimates it instead)"

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
    progress: bool = True


def _options_record(options: BuildOptions) -> dict:
    """The options as build.json records them: one flat mapping, media settings included."""
    record = dataclasses.asdict(options)
    record.update(record.pop("media"))
    record["modes"] = list(record["modes"])
    del record["progress"]
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
            _check_order(record, options)
            jobs.append(ClipJob(record, clip_rows(record, module.QUESTIONS, options.seed)))
        except MevqaError as exc:
            _bad(exc, record.where, options.skip_bad, skipped, record.image_id)
    return jobs, excluded


def _check_order(record: ClipRecord, options: BuildOptions) -> None:
    """onset <= apex <= offset, as far as the sheet gives them (an apex outside is estimated later if allowed)."""
    if record.onset is not None and record.offset is not None and record.onset > record.offset:
        raise MevqaError(f"{record.where}: onset {record.onset} is after offset {record.offset}")
    known = None not in (record.apex, record.onset, record.offset)
    if options.bad_apex != "estimate" and known and not record.onset <= record.apex <= record.offset:
        raise MevqaError(f"{record.where}: apex {record.apex} outside the clip {record.onset}..{record.offset}"
                         f"{BAD_APEX_HINT}")


def official_jobs(dataset: str, official: Path, root: Path | None, annotations: Path | None, options: BuildOptions,
                  skipped: list[dict]) -> list[ClipJob]:
    rows = read_jsonl(official, required=("question",))
    if not rows:
        raise MevqaError(f"{official}: no rows")
    module = dataset_module(dataset)
    if all("video" in row or "onset_frame" in row for row in rows):  # test questions: frames per clip
        if root is None:
            raise MevqaError("--official with a test file needs --root, the folder of the per-clip frame folders")
        groups: dict[str, list[dict]] = {}
        for row in rows:
            groups.setdefault(str(row.get("video") or row.get("image_id")), []).append(row)
        jobs = []
        for name, clip_rows_ in groups.items():
            first = clip_rows_[0]
            where = f"{official.name} line {first['_line']} ({name})"
            folder = _test_clip_path(root, name)
            if not folder.exists() and "subject" in first and "filename" in first:
                folder = _test_clip_path(root / str(first["subject"]), str(first["filename"]))
            onset, offset = first.get("onset_frame"), first.get("offset_frame")
            record = ClipRecord(dataset, str(first.get("subject", name)), str(first.get("filename", name)), name,
                                None if onset in (None, "") else int(onset), None,
                                None if offset in (None, "") else int(offset), "", None, None, folder,
                                options.fps or module.FPS, where)
            jobs.append(ClipJob(record, clip_rows_))
        return jobs
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
            record = records[image_id]
            _check_order(record, options)
            jobs.append(ClipJob(record, clip_rows_))
        except MevqaError as exc:
            _bad(exc, where, options.skip_bad, skipped, image_id)
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
    """Worker: resolve the apex and build one clip's inputs. Returns (index, record, media, timings, error); the
    error names the clip's sheet row, then what is wrong (with the file's path where a file is the problem)."""
    index, record, options, out = args
    timings: dict = {}
    try:
        record, clip = _resolve_apex(record, options)
        media = {}
        if options.media.modes:
            media = build_media(clip, record.onset, record.apex, record.offset,
                                out_dir=out / "media" / record.dataset / record.image_id, rel_to=out,
                                source_fps=record.fps, apex_method=record.apex_method, timings=timings,
                                **dataclasses.asdict(options.media))
        return index, record, media, timings, None
    except MevqaError as exc:
        return index, record, None, timings, f"{record.where}: {exc}"


def _resolve_apex(record: ClipRecord, options: BuildOptions) -> tuple[ClipRecord, Clip | None]:
    """Open the clip's frames (when inputs are built) and fill onset/offset/apex where the source has none."""
    record = replace(record)
    module = dataset_module(record.dataset)
    method = options.missing_apex or module.MISSING_APEX
    if record.apex is not None and record.onset is not None and record.offset is not None \
            and not record.onset <= record.apex <= record.offset:
        if options.bad_apex != "estimate":
            raise MevqaError(f"apex {record.apex} outside the clip {record.onset}..{record.offset}{BAD_APEX_HINT}")
        record.apex = None
    if not options.media.modes:
        if record.apex is None:
            if method == "midpoint" and record.onset is not None and record.offset is not None:
                record.apex, record.apex_method = (record.onset + record.offset) // 2, "midpoint"
            else:
                record.apex_method = None  # max_diff needs the frames, which a build without inputs never reads
        return record, None
    if record.frames is None or not Path(record.frames).exists():
        raise MevqaError(f"clip folder {record.frames} not found")
    clip = read_clip(record.frames)
    if record.fps is None:
        record.fps = clip.fps
    record.onset = clip.frame_numbers[0] if record.onset is None else record.onset
    record.offset = clip.frame_numbers[-1] if record.offset is None else record.offset
    if record.onset > record.offset:
        raise MevqaError(f"onset {record.onset} is after offset {record.offset}")
    for number, what in ((record.onset, "onset"), (record.offset, "offset")):
        if number not in clip.numbers:
            raise MevqaError(f"{what} frame {number} missing in {record.frames}")
    if record.apex is None:
        record.apex, record.apex_method = estimate_apex(clip, record.onset, record.offset, method)
    elif record.apex not in clip.numbers:
        raise MevqaError(f"apex frame {record.apex} missing in {record.frames}")
    return record, clip


def build_dataset(dataset: str, out: str | Path, *, root: str | Path | None = None,
                  annotations: str | Path | None = None, official: str | Path | None = None,
                  options: BuildOptions | None = None) -> dict:
    """Build ``OUT/qa.jsonl`` (and ``OUT/media/``, ``OUT/skipped.jsonl`` with ``skip_bad``, ``OUT/build.json``).
    Returns the summary written to ``build.json``."""
    options = options or BuildOptions()
    if options.fps is not None and options.fps <= 0:
        raise MevqaError(f"--fps must be positive, got {options.fps}")
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
    if official is not None:
        jobs = official_jobs(dataset, Path(official), root, annotations, options, skipped)
    else:
        records = load_records(dataset, root, annotations, options.skip_bad, skipped)
        jobs, excluded = generated_jobs(dataset, records, options, skipped)
    if options.fps:
        for job in jobs:
            job.record.fps = options.fps

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
            rows.append(row)
    if options.skip_bad:
        write_jsonl(out / "skipped.jsonl", skipped)
    if not rows:
        raise MevqaError(f"{dataset}: no clips to build ({excluded} left out by label, {len(skipped)} bad)"
                         + (f"; see {out / 'skipped.jsonl'}" if options.skip_bad else ""))
    write_jsonl(out / "qa.jsonl", rows)
    summary = {"dataset": dataset, "clips": len(kept), "rows": len(rows), "excluded_by_label": excluded,
               "skipped": len(skipped), "inputs": list(options.media.modes),
               "seconds": round(time.perf_counter() - started, 2),
               "timings": {k: round(v, 2) for k, v in timings.items()},
               "options": _options_record(options),
               "source": {"root": str(root) if root else None, "annotations": str(annotations) if annotations else
                          None, "official": str(official) if official else None}}
    write_json(out / "build.json", summary)
    log.info("%s: %d clips, %d rows -> %s (%d left out by label, %d skipped)", dataset, len(kept), len(rows),
             out / "qa.jsonl", excluded, len(skipped))
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
    import cv2

    cv2.setNumThreads(1)
