"""``mevqa build-spot samm-lv|casme3|smic-e --root DIR --annotations FILE --out OUT``: long videos and their sheets
-> spotting data for ME-STR.

Writes, atomically and only when the whole build succeeds:

- ``OUT/spot.jsonl``: one row per long video: ``dataset, subject, video, fps, frames`` (the frame folder, relative to
  OUT), ``frame_count, first_frame, last_frame`` and ``intervals`` (``onset, apex, offset, type: micro|macro,
  emotion, coarse, aus, apex_method``);
- ``OUT/gt.csv``: the micro intervals in the STRS format (``subject, video, onset, offset, emotion``, plus a
  ``dataset`` column that ``mevqa str-eval`` reads and the official evaluator ignores). ``--labels coarse`` (default)
  writes the coarse class, and ``others`` for the MEs that have none; ``--labels fine`` the dataset's own emotion
  (lower-cased, ``happy`` -> ``happiness``; SMIC-E's labels are coarse already);
- with ``--windows``, ``OUT/windows.jsonl``: QA rows for training a spotter with the existing recipes. Windows of
  ``--window`` seconds slide over every video by ``--stride`` seconds (over the frames that exist, so dropped frames
  are skipped). A window is positive when its IoU with a micro interval is >= 0.5 (the STRS rule); each positive
  gets "Is there a micro-expression in this clip?" -> ``yes`` and, when its ME has one, the coarse question -> its
  class; ``--negatives`` negatives per positive, drawn with ``--seed`` from the windows that share no frame with a
  micro interval (macro-expressions included), get ``no``. Windows holding part of an ME (0 < IoU < 0.5) are left
  out: they are neither, and as negatives they would teach the model that a visible movement is no ME. Inputs are
  built by :func:`mevqa.media.build_media` under ``OUT/media/`` with the window's first and last frames as onset and
  offset and the frame most different from the first as apex, exactly as ``mevqa spot --method vlm`` builds them;
- ``OUT/build.json``: what was read and every setting (the windows' rows keep their media under OUT, so OUT is
  their media root).

Nothing is written when the sheets or the options are wrong. A rebuild with other window or media settings first
sets the old ``windows.jsonl`` aside (``windows.jsonl.stale-<time>``), before any media is touched, so a rebuild that
is stopped never leaves rows whose recorded settings differ from the media they point at.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mevqa import vocab
from mevqa.data_builders.spot_readers import FPS, MICRO, READERS, LongVideoRecord
from mevqa.errors import MevqaError
from mevqa.jsonl import atomic_path, ensure_dir, read_jsonl, write_json, write_jsonl
from mevqa.log import is_main_process
from mevqa.media import MediaSettings, Span, add_media_arguments, build_media, estimate_apex, read_clip
from mevqa.paths import refuse_outputs_onto_inputs, seed as seed_type

log = logging.getLogger(__name__)

SPOT_FILE, GT_FILE, WINDOWS_FILE, BUILD_FILE = "spot.jsonl", "gt.csv", "windows.jsonl", "build.json"
LABEL_SETS = ("coarse", "fine")
GT_COLUMNS = ("subject", "video", "onset", "offset", "emotion", "dataset")
IOU_POSITIVE = 0.5
# The name windows' QA rows carry in ``dataset``: the dataset's QA name, so mevqa eval reports them under its split.
QA_DATASET = {"samm-lv": "samm", "casme3": "casme3", "smic-e": "smic"}


# --- windows (shared with mevqa spot --method vlm) -----------------------------------------------------------------

def window_frames(fps: float, seconds: float, stride_seconds: float) -> tuple[int, int]:
    """(length, stride) in frames of windows of ``seconds`` sliding by ``stride_seconds`` at ``fps``."""
    if not (0 < seconds < math.inf and 0 < stride_seconds < math.inf):
        raise MevqaError(f"window and stride must be positive seconds, got {seconds} and {stride_seconds}")
    return max(3, round(seconds * fps)), max(1, round(stride_seconds * fps))


def sliding_windows(frame_numbers: list[int], length: int, stride: int) -> list[tuple[int, int]]:
    """``(first, last)`` frame numbers of windows of ``length`` existing frames every ``stride`` frames; the last
    window ends on the last frame, so the whole video is covered."""
    count = len(frame_numbers)
    if count <= length:
        return [(frame_numbers[0], frame_numbers[-1])]
    starts = list(range(0, count - length + 1, stride))
    if starts[-1] != count - length:
        starts.append(count - length)
    return [(frame_numbers[i], frame_numbers[i + length - 1]) for i in starts]


def span_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two inclusive frame ranges (the STRS rule)."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union if union else 0.0


def window_span(clip, first: int, last: int) -> Span:
    """A window's onset, apex and offset: its first frame, the frame most different from it, its last frame."""
    apex, method = estimate_apex(clip, first, last, "max_diff")
    return Span(first, apex, last, method)


@dataclass
class WindowOptions:
    seconds: float = 0.3          # window length (micro-expressions last at most 0.5 s)
    stride_seconds: float = 0.1
    negatives: float = 1.0        # negative windows per positive
    seed: int = 0
    media: MediaSettings = field(default_factory=MediaSettings)

    def __post_init__(self):
        window_frames(30.0, self.seconds, self.stride_seconds)
        if self.seconds > 0.5:
            log.warning("windows of %.2f s are longer than a micro-expression (at most 0.5 s)", self.seconds)
        if not 0 <= self.negatives < math.inf:
            raise MevqaError(f"--negatives must be zero or more, got {self.negatives}")

    def record(self) -> dict:
        return {"window": self.seconds, "stride": self.stride_seconds, "negatives": self.negatives, "seed": self.seed,
                "inputs": list(self.media.modes), "media_settings": self.media.record()}


# --- rows -----------------------------------------------------------------------------------------------------------

def gt_label(interval, labels: str) -> str:
    """The STRS emotion of a micro interval under ``labels`` (coarse: the coarse class or ``others``)."""
    if labels == "coarse":
        return interval.coarse or "others"
    return interval.emotion or "others"


def spot_row(video: LongVideoRecord, out: Path) -> dict:
    return {"dataset": video.dataset, "subject": video.subject, "video": video.video, "fps": video.fps,
            "frames": Path(os.path.relpath(video.frames.resolve(), out.resolve())).as_posix(),
            "frame_count": len(video.frame_numbers), "first_frame": video.frame_numbers[0],
            "last_frame": video.frame_numbers[-1],
            "intervals": [interval.as_dict() for interval in sorted(video.intervals, key=lambda i: i.onset)]}


def read_spot_rows(path: str | Path) -> list[dict]:
    """Rows of a ``spot.jsonl``, checked, with ``frames`` made absolute against the file's folder. ``subject`` and
    ``video`` must be plain names (they name folders of inputs built for the video), ``fps`` a positive number,
    ``frames`` a string; (subject, video) may not repeat."""
    from mevqa.rows import clip_name

    path = Path(path)
    rows = read_jsonl(path, required=("subject", "video", "fps", "frames"))
    if not rows:
        raise MevqaError(f"{path}: no video (expected one line per long video with subject, video, fps, frames)")
    seen = {}
    for row in rows:
        where = f"{path}:{row['_line']}"
        for name in ("subject", "video"):
            if isinstance(row[name], int) and not isinstance(row[name], bool):
                row[name] = str(row[name])    # a subject number written as a number
            clip_name(row[name], where, name)
        if not isinstance(row["frames"], str) or not row["frames"].strip():
            raise MevqaError(f"{where}: frames must be the path of a frame folder or video file, got {row['frames']!r}")
        key = (row["subject"], row["video"])
        if key in seen:
            raise MevqaError(f"{where}: subject {key[0]} video {key[1]} repeats (first at line {seen[key]})")
        seen[key] = row["_line"]
        fps = row["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise MevqaError(f"{where}: fps must be a positive number, got {fps!r}")
        frames = Path(row["frames"])
        row["frames"] = str(frames if frames.is_absolute() else (path.parent / frames).resolve())
        row["_where"] = where
    return rows


def write_gt_csv(path: Path, videos: list[LongVideoRecord], labels: str) -> int:
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(GT_COLUMNS)
        for video in videos:
            for interval in sorted(video.intervals, key=lambda i: i.onset):
                if interval.type == MICRO:
                    writer.writerow([video.subject, video.video, interval.onset, interval.offset,
                                     gt_label(interval, labels), video.dataset])
                    count += 1
    return count


def _window_candidates(videos: list[LongVideoRecord], options: WindowOptions):
    positives, negatives = [], []
    for video in videos:
        length, stride = window_frames(video.fps, options.seconds, options.stride_seconds)
        micro = [i for i in video.intervals if i.type == MICRO]
        for first, last in sliding_windows(video.frame_numbers, length, stride):
            best = max(micro, key=lambda i: span_iou((first, last), (i.onset, i.offset)), default=None)
            score = span_iou((first, last), (best.onset, best.offset)) if best is not None else 0.0
            if score >= IOU_POSITIVE:
                positives.append((video, first, last, best, score))
            elif score == 0:  # a window holding part of an ME is neither: it is left out
                negatives.append((video, first, last, best, score))
    return positives, negatives


def choose_windows(videos: list[LongVideoRecord], options: WindowOptions) -> list[tuple]:
    """The windows to write, in video and frame order: every positive, and the negatives drawn (module docstring);
    ``(video, first frame, last frame, best micro interval or None, its IoU)`` each."""
    positives, negatives = _window_candidates(videos, options)
    if not positives:
        raise MevqaError(f"no {options.seconds} s window overlaps a micro interval at IoU >= {IOU_POSITIVE}; choose "
                         "a --window closer to the micro-expressions' lengths")
    rng = random.Random(f"spot-windows:{options.seed}")
    wanted = min(len(negatives), round(options.negatives * len(positives)))
    chosen = positives + rng.sample(negatives, wanted)
    return sorted(chosen, key=lambda item: (item[0].subject, item[0].video, item[1]))


def window_rows(chosen: list[tuple], out: Path, options: WindowOptions, progress: bool = True) -> list[dict]:
    """The QA rows of the chosen windows (:func:`choose_windows`), their inputs built under ``out/media/``."""
    clips = {}
    rows = []
    for video, first, last, best, score in tqdm(chosen, desc="spotting windows", unit="window",
                                                disable=not (progress and is_main_process())):
        if video.frames not in clips:
            clips[video.frames] = read_clip(video.frames)
        clip = clips[video.frames]
        span = window_span(clip, first, last)
        image_id = f"{video.subject}_{video.video}_w{first}"
        media = build_media(clip, span, options.media, out / "media" / QA_DATASET[video.dataset] / image_id,
                            rel_to=out, fps=video.fps)
        positive = score >= IOU_POSITIVE
        base = {"dataset": QA_DATASET[video.dataset], "image_id": image_id, "subject": video.subject,
                "filename": video.video,
                "clip": {"source": video.dataset, "onset": first, "apex": span.apex, "offset": last,
                         "apex_method": span.apex_method, "fps": video.fps, "window": True, "iou": round(score, 6),
                         "interval": [best.onset, best.offset] if best is not None and score > 0 else None,
                         "emotion": best.emotion if positive else None},
                "media": media}
        qa_id = f"{QA_DATASET[video.dataset]}_{image_id}"
        rows.append({"id": f"{qa_id}_1", **base, "question": vocab.Q_SPOT, "answer": "yes" if positive else "no"})
        if positive and best.coarse is not None:
            rows.append({"id": f"{qa_id}_2", **base, "question": vocab.Q_COARSE, "answer": best.coarse})
    return rows


def set_aside_stale_windows(out: Path, identity: dict) -> Path | None:
    """Rename ``OUT/windows.jsonl`` to ``windows.jsonl.stale-<time>`` unless ``OUT/build.json`` records the same
    ``identity`` (sources, frame rate, window and media settings; call before any media is touched); returns the new
    path."""
    rows = out / WINDOWS_FILE
    if not rows.is_file():
        return None
    try:
        build = json.loads((out / BUILD_FILE).read_text(encoding="utf-8"))
        recorded = {key: build.get(key) for key in identity}
    except (OSError, ValueError, AttributeError):
        recorded = None  # no readable build.json: the rows' settings are unknown
    if recorded == json.loads(json.dumps(identity)):
        return None
    aside = rows.with_name(f"{WINDOWS_FILE}.stale-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    rows.rename(aside)
    log.warning("%s: built with other window settings; set aside as %s before rebuilding", rows, aside.name)
    return aside


# --- the build ------------------------------------------------------------------------------------------------------

def read_videos(dataset: str, root: Path, annotations: Path, *, emotions: Path | None = None,
                macro: Path | None = None, fps: float | None = None) -> list[LongVideoRecord]:
    if dataset not in READERS:
        raise MevqaError(f"unknown long-video dataset {dataset!r}; expected one of {', '.join(READERS)}")
    if root is None or not Path(root).is_dir():
        raise MevqaError(f"{root}: --root must be the dataset's long-video frame folder")
    if annotations is None:
        raise MevqaError(f"{dataset} needs --annotations (its annotation sheet)")
    if dataset == "samm-lv":
        videos = READERS[dataset](Path(root), Path(annotations), emotions=emotions)
    elif dataset == "casme3":
        videos = READERS[dataset](Path(root), Path(annotations), macro=macro)
    else:
        for name, given in (("--emotions", emotions), ("--macro", macro)):
            if given is not None:
                raise MevqaError(f"{name} is not read for {dataset}")
        videos = READERS[dataset](Path(root), Path(annotations))
    if not videos:
        raise MevqaError(f"{annotations}: no long video with an annotated interval")
    if fps is not None:
        if not 0 < fps < math.inf:
            raise MevqaError(f"--fps must be a positive number, got {fps}")
        for video in videos:
            video.fps = float(fps)
    return sorted(videos, key=lambda v: (v.subject, v.video))


def build_spot(dataset: str, out: str | Path, *, root: Path, annotations: Path, emotions: Path | None = None,
               macro: Path | None = None, labels: str = "coarse", fps: float | None = None,
               windows: WindowOptions | None = None, progress: bool = True) -> dict:
    """Read a long-video dataset and write OUT/spot.jsonl, OUT/gt.csv (and OUT/windows.jsonl); returns the summary
    that OUT/build.json records."""
    if labels not in LABEL_SETS:
        raise MevqaError(f"--labels must be one of {', '.join(LABEL_SETS)}, got {labels!r}")
    start = time.perf_counter()
    videos = read_videos(dataset, root, annotations, emotions=emotions, macro=macro, fps=fps)
    chosen = choose_windows(videos, windows) if windows is not None else None
    out = Path(out)
    refuse_outputs_onto_inputs(
        outputs={"--out": [out / name for name in (SPOT_FILE, GT_FILE, WINDOWS_FILE, BUILD_FILE, "media")]},
        into={"--out": out}, inputs={"--root": root, "--annotations": annotations, "--emotions": emotions,
                                     "--macro": macro})
    out = ensure_dir(out)  # after the sheets are read: a bad sheet or option writes nothing
    summary = {"command": "build-spot", "dataset": dataset, "root": str(Path(root).resolve()),
               "annotations": str(Path(annotations).resolve()),
               "emotions": str(Path(emotions).resolve()) if emotions else None,
               "macro": str(Path(macro).resolve()) if macro else None, "labels": labels,
               "fps": fps or FPS[dataset], "videos": len(videos),
               "micro": sum(i.type == MICRO for v in videos for i in v.intervals),
               "macro_intervals": sum(i.type != MICRO for v in videos for i in v.intervals),
               "windows": windows.record() if windows is not None else None}
    identity = {key: summary[key] for key in ("dataset", "root", "annotations", "emotions", "macro", "fps",
                                               "windows")}
    rows = None
    if windows is not None:
        set_aside_stale_windows(out, identity)   # before any media is touched
        rows = window_rows(chosen, out, windows, progress)
    write_jsonl(out / SPOT_FILE, [spot_row(video, out) for video in videos])
    write_gt_csv(out / GT_FILE, videos, labels)
    if rows is not None:
        write_jsonl(out / WINDOWS_FILE, rows)
        summary["window_rows"] = len(rows)
        summary["positive_windows"] = sum(r["question"] == vocab.Q_SPOT and r["answer"] == "yes" for r in rows)
        summary["negative_windows"] = sum(r["question"] == vocab.Q_SPOT and r["answer"] == "no" for r in rows)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    write_json(out / BUILD_FILE, summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=list(READERS), help="which long-video dataset's format to read")
    parser.add_argument("--root", type=Path, required=True,
                        help="the long-video frames: SAMM_longvideos, part_A/data/part_A_split/part_A, or the SMIC-E "
                             "HS folder of subject folders")
    parser.add_argument("--annotations", type=Path, required=True,
                        help="the sheet: SAMM_LongVideos_V3_Release.xlsx, cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx "
                             "or SMIC-HS-E_annotation.xlsx")
    parser.add_argument("--emotions", type=Path, help="samm-lv: the SAMM micro sheet (SAMM_Micro_FACS_Codes_v2.xlsx) "
                        "whose Estimated Emotion labels the micro rows")
    parser.add_argument("--macro", type=Path, help="casme3: the macro+micro sheet (CAS(ME)3_part_A_v2.xls), for "
                        "the macro-expression intervals")
    parser.add_argument("--out", type=Path, required=True, help="output folder: spot.jsonl, gt.csv, build.json")
    parser.add_argument("--labels", choices=LABEL_SETS, default="coarse",
                        help="gt.csv emotions: coarse class plus others (default), or the dataset's fine labels")
    parser.add_argument("--fps", type=float, default=None, help="override the dataset's frame rate")
    windows = parser.add_argument_group("spotting windows (--windows)")
    windows.add_argument("--windows", action="store_true", help="also write OUT/windows.jsonl: QA rows with inputs "
                         "for training a spotter")
    windows.add_argument("--window", type=float, default=0.3, help="window length in seconds (default 0.3)")
    windows.add_argument("--stride", type=float, default=0.1, help="window stride in seconds (default 0.1)")
    windows.add_argument("--negatives", type=float, default=1.0, help="negative windows per positive (default 1)")
    windows.add_argument("--seed", type=seed_type, default=0, help="seed of the negative draw (default 0)")
    from mevqa.data_builders.cli import parse_inputs

    windows.add_argument("--inputs", type=parse_inputs, default=MediaSettings().modes,
                         help="comma-separated input modes to build: video,oao,flow (default all)")
    add_media_arguments(parser)


def run(args: argparse.Namespace) -> int:
    window_options = None
    if args.windows:
        media = MediaSettings(modes=args.inputs, num_frames=args.frames, size=args.size or None,
                              flow_method=args.flow, head_motion=args.head_motion, blend=args.blend,
                              face_crop=bool(args.face_crop) or bool(args.face_model), face_model=args.face_model)
        window_options = WindowOptions(args.window, args.stride, args.negatives, args.seed, media)
    summary = build_spot(args.dataset, args.out, root=args.root, annotations=args.annotations,
                         emotions=args.emotions, macro=args.macro, labels=args.labels, fps=args.fps,
                         windows=window_options)
    line = (f"{args.dataset}: {summary['videos']} long videos, {summary['micro']} micro and "
            f"{summary['macro_intervals']} macro intervals -> {args.out / SPOT_FILE}, {args.out / GT_FILE}")
    if window_options is not None:
        line += (f"; {summary['window_rows']} window rows ({summary['positive_windows']} positive, "
                 f"{summary['negative_windows']} negative) -> {args.out / WINDOWS_FILE}")
    print(line)
    return 0
