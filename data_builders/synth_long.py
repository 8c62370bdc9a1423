"""Synthetic long videos in the real layouts and sheet formats of SAMM-LV, CAS(ME)^3 part A and SMIC-E, with small
movements planted at known intervals (``mevqa synth-data samm-lv|smic-e``, ``mevqa synth-data casme3 --long``).

Public API::

    LONG_DATASETS = ("samm-lv", "casme3", "smic-e")
    write_long_dataset(dataset, out_dir, *, videos=2, frames=None, seed=0, size=None) -> dict
        # {"root", "annotations", "emotions" (SAMM-LV's micro sheet) or "macro" (CAS(ME)^3's), "fps", "intervals"}
    plan_video(dataset, subject, index, frames, rng) -> LongVideo
    render_frames(video, width, height, gray=False, seed=0) -> Iterator[np.ndarray]   # uint8 frames, in order
    write_mp4(path, frames, fps)                        # an H.264 (else MPEG-4) video file, via PyAV

What a long video shows: the textured face oval of :mod:`mevqa.data_builders.synth` with four resting blobs, one per
class (the positive, negative and surprise blobs of ``synth.BLOBS`` and an ``others`` blob on the forehead). A
micro-expression moves its class's blob out and back (onset -> apex -> offset, 0.2-0.4 s); a macro-expression moves
a larger mouth blob further and for longer (1-1.5 s). The whole face drifts slowly (a sub-pixel sinusoidal head
motion, cancelled by head-motion removal), with sensor noise on every frame. Nothing moves in the central nose box.

Layouts and sheets (docs/str.md lists the facts they follow):

- SAMM-LV: ``SAMM_longvideos/006_1/006_1_0001.jpg`` (grey), ``SAMM_LongVideos_V3_Release.xlsx`` (9 notes rows, the
  header on row 10: ``Subject, Filename, Inducement Code, Onset, Apex, Offset, Duration, Type, Action Units,
  Notes``; ``Type`` ``Micro - 1/2`` or ``Macro``, plus one row of another type that readers must drop) and, for the
  emotions, ``SAMM_Micro_FACS_Codes_v2.xlsx`` with the micro rows (same ``Filename``, ``Micro`` = the type).
- CAS(ME)^3 part A: ``part_A/data/part_A_split/part_A/spNo.1/a/color/1.jpg`` (unpadded, one dropped frame),
  ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (sheet ``label``, micro rows with ``emotion``) and the macro+micro
  sheet ``CAS(ME)3_part_A_v2.xlsx`` (``Expression type`` ``Micro-expression``/``Macro-expression``; the real one is
  an ``.xls``, which nothing here can write).
- SMIC-E (HS): ``SMIC-E_raw image/HS_long/SMIC-HS-E/s01/s01_ne_01/image000101.jpg`` (absolute frame numbers),
  ``SMIC-HS-E_annotation.xlsx`` with up to three MEs per row, ``FirstF/LastF/TotalVL``, blank unnamed columns and
  trailing text rows.

The output folder must be new or empty: frames of an earlier set would stay beside sheets that do not describe them.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from mevqa.data_builders.synth import AU_CELLS, BLOBS, _coarse, _face, _write_xlsx
from mevqa.dataset_facts import LONG_VIDEO_DATASETS, LONG_VIDEO_FPS
from mevqa.errors import MevqaError
from mevqa.jsonl import ensure_dir

log = logging.getLogger(__name__)

LONG_DATASETS = tuple(LONG_VIDEO_DATASETS)
FPS = LONG_VIDEO_FPS
# Frames per long video by default: a few seconds, room for three MEs and a macro-expression.
DEFAULT_FRAMES = {"samm-lv": 1400, "casme3": 240, "smic-e": 600}
FRAME_SIZES = {"samm-lv": (96, 65, True), "casme3": (96, 72, False), "smic-e": (96, 72, False)}
# Labels as each sheet spells them; the MEs of a video cycle through them.
LABELS = {"samm-lv": ["Happiness", "Anger", "Surprise", "Others", "Contempt"],
          "casme3": ["happy", "disgust", "surprise", "others", "sad"],
          "smic-e": ["negative", "positive", "surprise"]}
ME_SECONDS = (0.2, 0.4)
MACRO_SECONDS = (1.0, 1.5)
MES_PER_VIDEO = 3
# Resting place and move at apex (fractions of the frame) of every blob: synth's three classes, plus "others" on the
# forehead and the macro-expression's mouth.
MOVES = {**BLOBS, "others": ((0.5, 0.16), (0.08, 0.0)), "macro": ((0.5, 0.8), (0.0, 0.1))}
HEAD_DRIFT_PX = 1.5      # amplitude of the slow head motion, in pixels at the rendered size
HEAD_DRIFT_PERIOD_S = 4.0


@dataclass
class Movement:
    """One planted movement, in the video's own frame numbers."""
    onset: int
    apex: int
    offset: int
    kind: str                 # micro | macro
    label: str                # as the sheet spells it ("" for macro)
    blob: str                 # which blob moves: positive | negative | surprise | others | macro
    aus: object = None


@dataclass
class LongVideo:
    subject: int
    index: int                # inducement code (SAMM-LV), task letter index (CAS(ME)^3), clip number (SMIC-E)
    first: int                # the first frame number
    count: int                # frames in the video
    fps: float
    movements: list[Movement] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.first + self.count - 1


def _blob_of(label: str) -> str:
    return "others" if label.lower() in ("others", "other") else _coarse(label)


def plan_video(dataset: str, subject: int, index: int, frames: int, rng: random.Random, *, first: int = 1,
               macro: bool = True) -> LongVideo:
    """Place up to three MEs (and one macro-expression) at random, apart from each other and from the ends."""
    fps = FPS[dataset]
    video = LongVideo(subject, index, first, frames, fps)
    lengths = [max(7, round(rng.uniform(*ME_SECONDS) * fps)) for _ in range(MES_PER_VIDEO)]
    kinds = ["micro"] * MES_PER_VIDEO
    if macro and dataset != "smic-e":  # SMIC-E annotates MEs only
        lengths.append(max(20, round(rng.uniform(*MACRO_SECONDS) * fps)))
        kinds.append("macro")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    gap = max(8, round(0.35 * fps))
    free = frames - sum(lengths) - gap * (len(lengths) + 1)
    if free < 0:
        raise MevqaError(f"{frames} frames are too few for {len(lengths)} movements at {fps:g} fps; give at least "
                         f"{frames - free} frames per video")
    cuts = sorted(rng.randint(0, free) for _ in order)
    start, spent = first + gap, 0
    labels = LABELS[dataset]
    for slot, item in enumerate(order):
        start += cuts[slot] - spent
        spent = cuts[slot]
        length, kind = lengths[item], kinds[item]
        # SMIC-E rows hold one emotion for all the MEs of a clip
        turn = 0 if dataset == "smic-e" else item
        label = "" if kind == "macro" else labels[(subject + index + turn) % len(labels)]
        cells = AU_CELLS.get(dataset.split("-")[0], {}).get(label, [None])
        apex = start + (length - 1) // 2
        video.movements.append(Movement(start, apex, start + length - 1, kind, label,
                                        "macro" if kind == "macro" else _blob_of(label),
                                        None if kind == "macro" else cells[0]))
        start += length + gap
    return video


def _progress(number: int, move: Movement) -> float:
    """0 at onset, 1 at apex, back to 0 at offset (a smooth out-and-back)."""
    if not move.onset <= number <= move.offset:
        return 0.0
    if number <= move.apex:
        t = (number - move.onset) / max(1, move.apex - move.onset)
    else:
        t = 1 - (number - move.apex) / max(1, move.offset - move.apex)
    return 0.5 - 0.5 * math.cos(math.pi * t)


def _add_blob(image: np.ndarray, x: float, y: float, radius: float, height: float) -> None:
    h, w = image.shape
    half = int(3 * radius) + 1
    x0, x1 = max(0, int(x) - half), min(w, int(x) + half + 1)
    y0, y1 = max(0, int(y) - half), min(h, int(y) + half + 1)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] += height * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius ** 2))


def render_frames(video: LongVideo, width: int, height: int, gray: bool = False, seed: int = 0,
                  numbers: Iterable[int] | None = None) -> Iterator[np.ndarray]:
    """The video's frames (``numbers``, default all) as uint8 arrays: (H, W) grey or (H, W, 3) RGB."""
    face = _face(width, height, video.subject)
    noise = np.random.default_rng(seed * 7919 + video.subject * 131 + video.index)
    radius = min(width, height) * 0.07
    for number in (range(video.first, video.last + 1) if numbers is None else numbers):
        image = face.copy()
        moving = {move.blob: _progress(number, move) for move in video.movements if move.onset <= number <= move.offset}
        for blob, ((sx, sy), (dx, dy)) in MOVES.items():
            t = moving.get(blob, 0.0)
            # the mouth is always there, larger than the others; a macro-expression moves it further, for longer
            _add_blob(image, (sx + dx * t) * width, (sy + dy * t) * height, radius * (1.6 if blob == "macro" else 1),
                      140)
        phase = 2 * math.pi * (number - video.first) / (HEAD_DRIFT_PERIOD_S * video.fps)
        shift = np.float32([[1, 0, HEAD_DRIFT_PX * math.sin(phase)], [0, 1, 0.5 * HEAD_DRIFT_PX * math.cos(phase)]])
        image = cv2.warpAffine(image, shift, (width, height), borderMode=cv2.BORDER_REFLECT)
        image += noise.integers(-3, 4, image.shape, dtype=np.int16)
        grey = np.clip(image, 0, 255).astype(np.uint8)
        yield grey if gray else cv2.merge([grey, (grey * 0.9).astype(np.uint8), (grey * 0.8).astype(np.uint8)])


def _write_frames(folder: Path, video: LongVideo, name, size: tuple[int, int, bool], seed: int,
                  skip: set[int] = frozenset()) -> None:
    width, height, gray = size
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [n for n in range(video.first, video.last + 1) if n not in skip]
    for number, image in zip(numbers, render_frames(video, width, height, gray, seed, numbers)):
        bgr = image if gray else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(folder / name(number)), bgr):
            raise MevqaError(f"{folder / name(number)}: could not write frame")


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Encode frames (grey or RGB uint8, one size) as a video file with PyAV: H.264 where the build has it, else
    MPEG-4 part 2. Frames are streamed, so long videos never sit in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = None
        for image in frames:
            rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
                stream.width, stream.height = rgb.shape[1] - rgb.shape[1] % 2, rgb.shape[0] - rgb.shape[0] % 2
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": "18", "preset": "veryfast"}
                else:
                    stream.bit_rate = 4_000_000
            rgb = np.ascontiguousarray(rgb[:stream.height, :stream.width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise MevqaError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- per dataset ------------------------------------------------------------------------------------------------

def _truth(dataset: str, subject: str, video: str, v: LongVideo) -> list[dict]:
    return [{"dataset": dataset, "subject": subject, "video": video, "onset": m.onset, "apex": m.apex,
             "offset": m.offset, "type": m.kind, "label": m.label} for m in v.movements]


def _samm_lv(out: Path, videos: list[LongVideo], size, seed: int) -> dict:
    root = out / "SAMM_longvideos"
    notes = [["SAMM Long Videos (synthetic)"], ["Version 3"], [None], ["Onset, apex and offset are frame numbers"],
             ["Type: Micro - 1/2 or Macro"], [None], ["AU codes follow FACS"], ["L/R = left/right"], [None]]
    header = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type",
              "Action Units", "Notes"]
    rows, micro_rows, truth = notes + [header], [], []
    micro_notes = [["SAMM micro-movement FACS codes (synthetic)"]] + [[None]] * 12
    micro_header = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
                    "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]
    for v in videos:
        name = f"{v.subject:03d}_{v.index}"
        for k, m in enumerate(v.movements, start=1):
            kind = "Micro - 1/2" if m.kind == "micro" else "Macro"
            aus = m.aus if m.kind == "micro" else "25+26"
            rows.append([v.subject, f"{name}_{k}", v.index, m.onset, m.apex, m.offset, m.offset - m.onset + 1, kind,
                         aus, None])
            if m.kind == "micro":
                micro_rows.append([v.subject, f"{name}_{k}", v.index, m.onset, m.apex, m.offset,
                                   m.offset - m.onset + 1, kind, aus, m.label, 1, None])
        truth += _truth("samm-lv", str(v.subject), name, v)
        _write_frames(root / name, v, lambda n, s=name: f"{s}_{n:04d}.jpg", size, seed)
    first = videos[0]
    # A movement of a type readers must drop (only Micro - 1/2 and Macro are kept); nothing moves there.
    rows.append([first.subject, f"{first.subject:03d}_{first.index}_{len(first.movements) + 1}", first.index,
                 first.first + 2, first.first + 3, first.first + 4, 3, "Blink", "45", "not a facial expression"])
    annotations, emotions = out / "SAMM_LongVideos_V3_Release.xlsx", out / "SAMM_Micro_FACS_Codes_v2.xlsx"
    _write_xlsx(annotations, rows, sheet="FACS_Movement_Only")
    _write_xlsx(emotions, micro_notes + [micro_header] + micro_rows)
    return {"root": root, "annotations": annotations, "emotions": emotions, "intervals": truth}


def _casme3(out: Path, videos: list[LongVideo], size, seed: int) -> dict:
    root = out / "part_A" / "data" / "part_A_split" / "part_A"
    me_rows = [["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]]
    all_rows = [["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type", "Objective class"]]
    truth = []
    letters = "abcdefghijklm"
    for i, v in enumerate(videos):
        letter = letters[v.index % len(letters)]
        for m in v.movements:
            written = letter.upper() if i == 1 else letter  # one upper-case filename
            if m.kind == "micro":
                me_rows.append([f"spNO.{v.subject}", written, m.onset, m.apex, m.offset, m.aus, 1, m.label])
            all_rows.append([f"spNO.{v.subject}", written, m.onset, m.apex, m.offset,
                             m.aus if m.kind == "micro" else "12+25",
                             "Micro-expression" if m.kind == "micro" else "Macro-expression", 1])
        truth += _truth("casme3", f"spNO.{v.subject}", letter, v)
        folder = root / f"spNo.{v.subject}" / letter  # folders say spNo, labels spNO
        # one frame drop, in the first video, outside every movement
        dropped = {next(n for n in range(v.first + v.count // 3, v.last)
                        if not any(m.onset <= n <= m.offset for m in v.movements))} if i == 0 else set()
        _write_frames(folder / "color", v, lambda n: f"{n}.jpg", size, seed, dropped)
        (folder / "depth").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "depth" / f"{v.first}.png"), np.zeros((8, 8), np.uint16))
    annotations = out / "part_A" / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
    macro = out / "part_A" / "annotation" / "CAS(ME)3_part_A_v2.xlsx"
    _write_xlsx(annotations, me_rows, sheet="label")
    _write_xlsx(macro, all_rows)
    return {"root": root, "annotations": annotations, "macro": macro, "intervals": truth}


def _smic_e(out: Path, videos: list[LongVideo], size, seed: int) -> dict:
    base = out / "SMIC-E_raw image" / "HS_long"
    root = base / "SMIC-HS-E"
    header = ["Subject", "Filename", None, "OnsetF", "OffsetF", "TotalMF1", "Onset2F", "Offset2F", "TotalMF2", None,
              "Onset3F", "Offset3F", "TotalMF3", "Emotion", "FirstF", "LastF", "TotalVL", None, None]
    rows, truth = [header], []
    codes = {"negative": "ne", "positive": "po", "surprise": "sur"}
    for v in videos:
        label = v.movements[0].label  # one emotion per row (plan_video gives the clip's MEs one label)
        name = f"s{v.subject:02d}_{codes[label]}_{v.index:02d}"
        slots = []
        for m in v.movements[:3]:
            slots += [m.onset, m.offset, m.offset - m.onset + 1]
        slots += [None] * (9 - len(slots))
        rows.append([v.subject, name, None, *slots[:3], *slots[3:6], None, *slots[6:], label, v.first, v.last,
                     v.count, None, None])
        truth += _truth("smic-e", f"s{v.subject:02d}", name, v)
        _write_frames(root / f"s{v.subject:02d}" / name, v, lambda n: f"image{n:06d}.jpg", size, seed)
    rows += [[None], ["Note: frame numbers are absolute; subtract FirstF for the position in the clip."],
             ["Synthetic annotation."]]
    annotations = base / "SMIC-HS-E_annotation.xlsx"
    _write_xlsx(annotations, rows)
    return {"root": root, "annotations": annotations, "intervals": truth}


WRITERS = {"samm-lv": _samm_lv, "casme3": _casme3, "smic-e": _smic_e}


def write_long_dataset(dataset: str, out_dir: str | Path, *, videos: int = 2, frames: int | None = None,
                       seed: int = 0, size: tuple[int, int] | None = None) -> dict:
    """Write ``videos`` synthetic long videos of ``dataset`` under ``out_dir`` in its real layout; returns the
    ``--root``/``--annotations`` (and ``emotions``/``macro``) paths of ``mevqa build-spot``, the frame rate, and the
    planted ``intervals`` (dataset, subject, video, onset, apex, offset, type, label)."""
    if dataset not in WRITERS:
        raise MevqaError(f"unknown long-video dataset {dataset!r}; expected one of {', '.join(WRITERS)}")
    if videos < 1:
        raise MevqaError(f"--videos must be at least 1, got {videos}")
    frames = DEFAULT_FRAMES[dataset] if frames is None else frames
    rng = random.Random(f"synth-long:{dataset}:{seed}")
    width, height, gray = FRAME_SIZES[dataset]
    if size is not None:
        width, height = size
    first = 101 if dataset == "smic-e" else 1  # SMIC-E numbers frames absolutely within the session
    first_subject = 6 if dataset == "samm-lv" else 1  # SAMM's subjects start at 006
    plan = [plan_video(dataset, first_subject + i // 2, 1 + i % 2, frames, rng, first=first) for i in range(videos)]
    out = ensure_dir(out_dir)
    # Frames of an earlier set (another seed or length) would stay beside sheets that no longer describe them.
    if any(out.iterdir()):
        raise MevqaError(f"{out}: not empty; write synthetic long videos into a new or empty folder")
    result = WRITERS[dataset](out, plan, (width, height, gray), seed)
    return {**result, "fps": FPS[dataset]}


def add_long_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``mevqa synth-data`` adds for long videos."""
    parser.add_argument("--long", action="store_true", help="casme3: write long videos (part A task folders with "
                        "ME and macro sheets) for spotting, instead of ME clips")
    parser.add_argument("--videos", type=int, default=2, help="long videos to write (samm-lv, smic-e, casme3 --long)")
    parser.add_argument("--video-frames", type=int, default=None,
                        help="frames per long video (default: samm-lv 1400, casme3 240, smic-e 600)")


def run(args: argparse.Namespace) -> int:
    """``mevqa synth-data`` for long videos."""
    name = args.dataset
    paths = write_long_dataset(name, args.out, videos=args.videos, frames=args.video_frames, seed=args.seed,
                               size=tuple(args.size) if args.size else None)
    command = f"mevqa build-spot {name} --root '{paths['root']}' --annotations '{paths['annotations']}'"
    if "emotions" in paths:
        command += f" --emotions '{paths['emotions']}'"
    if "macro" in paths:
        command += f" --macro '{paths['macro']}'"
    micro = sum(item["type"] == "micro" for item in paths["intervals"])
    print(f"wrote {args.videos} synthetic {name} long video(s) with {micro} micro-expressions under {args.out}\n"
          f"build it with: {command} --out OUT")
    return 0
