"""``mevqa synth-data DATASET --out DIR``: a small synthetic dataset in exactly the real on-disk layout of DATASET.

The annotation sheet has the real headers and quirks (SAMM's 13 notes rows, CASME II's blank columns, a ``/`` apex
and a numeric single-AU cell, L/R prefixes, intensity letters, ``or``, CAS(ME)^3's ``label`` sheet and repeated
videos, 4DME's ``(k)`` AUs and compound emotions) and the frame folders use the real naming (``img46.jpg``,
``006_05562.jpg`` with mixed padding, ``reg_image000123.bmp``, ``1568.jpg``; SAMM and 4DME grayscale). Besides
``clips`` usable clips, each sheet has one row the official selection leaves out (``others`` / a compound), which
also carries a quirk that would otherwise stop the build (SAMM's apex outside its clip).

The frames show a textured face-like oval (its place, size and brightness vary with the subject) and a bright blob
that moves from onset to apex and half-way back by offset. Where and which way it moves depends on the coarse
class, so a tiny model can learn the class from pixels:
- positive: lower left of the face, moving up;
- negative: upper right, moving down;
- surprise: right of centre, moving left;
the blob's radius grows a little with the fine label's index. Nothing moves in the central "nose" box, so
head-motion removal leaves the blob's flow intact.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mevqa.errors import MevqaError
from mevqa.jsonl import atomic_path, ensure_dir
from mevqa.paths import check_seed

log = logging.getLogger(__name__)

# dataset -> (frame width, height, grayscale, fps-free frames per clip default)
FRAME_SIZES = {"casme2": (96, 72, False), "samm": (96, 65, True), "smic": (96, 72, False),
               "casme3": (96, 72, False), "4dme": (96, 72, True)}
# Labels as each sheet spells them, cycled so every coarse class appears among the first three clips.
LABELS = {
    "casme2": ["happiness", "disgust", "surprise", "repression"],
    "samm": ["Happiness", "Anger", "Surprise", "Contempt", "Disgust", "Fear", "Sadness"],
    "smic": ["positive", "negative", "surprise"],
    "casme3": ["happy", "disgust", "surprise", "anger", "fear", "sad"],
    "4dme": ["Positive", "Negative", "Surprise", "Repression"],
}
COARSE_OF = {"happiness": "positive", "happy": "positive", "positive": "positive", "surprise": "surprise"}
# AU cells per label, in each sheet's own style (the first of each list is used first).
AU_CELLS = {
    "casme2": {"happiness": ["6+12", "L12", 12], "disgust": ["4+7+L10", "4+9"], "surprise": ["1+2", "R2"],
               "repression": [14, "R12+15"], "others": ["4"]},
    "samm": {"Happiness": ["R6 + R12", "12"], "Anger": ["4+7", "L4"], "Surprise": ["1+2", "R2"],
             "Contempt": ["R14A", "L14 or R14"], "Disgust": ["R10", "9+10"], "Fear": ["20", "R12 + R15"],
             "Sadness": ["1+15", "15"], "Others": ["45"]},
    "smic": {},
    "casme3": {"happy": ["6+12", "L12"], "disgust": ["4+L10", "9"], "surprise": ["1+2", "T1+2"],
               "anger": ["4+7", "R4"], "fear": ["1+2+4", "20"], "sad": ["1+15", "B15"], "others": ["4"],
               "Others": ["7"]},
    "4dme": {"Positive": ["AU6+12", "AUL12"], "Negative": ["AU4(k)+L7", "AU4+9"],
             "Surprise": ["AUR2+12(k)+1", "AU1+2"], "Repression": ["AU14", "AU15+17"],
             "Surprise+Positive": ["AU1+2+12"]},
}


@dataclass
class SynthClip:
    subject: int
    index: int
    label: str          # as the sheet spells it
    coarse: str
    fine_index: int
    onset: int
    apex: int
    offset: int
    aus: object


MIN_SIDE, MAX_SIDE = 16, 4096  # frame sides --size accepts (the real datasets: 640x480 to 960x650)


def _coarse(label: str) -> str:
    key = label.lower()
    return COARSE_OF.get(key, "surprise" if "surprise" in key else "negative")


def _plan(dataset: str, clips: int, frames: int, rng: random.Random) -> list[SynthClip]:
    if dataset not in LABELS:
        raise MevqaError(f"unknown dataset {dataset!r}; expected one of {', '.join(LABELS)}")
    if clips < 1:
        raise MevqaError(f"--clips must be at least 1, got {clips}")
    if frames < 3:
        raise MevqaError(f"need at least 3 frames per clip, got {frames}")
    labels = LABELS[dataset]
    subjects = max(2, min(5, clips // 3))
    first_subject = 6 if dataset == "samm" else 1  # SAMM's subjects start at 006
    plan = []
    for i in range(clips):
        label = labels[i % len(labels)]
        onset = rng.randrange(20, 400)
        cells = AU_CELLS[dataset].get(label, [None])
        plan.append(SynthClip(subject=first_subject + i % subjects, index=1 + i // subjects, label=label,
                              coarse=_coarse(label), fine_index=labels.index(label), onset=onset,
                              apex=onset + frames // 2, offset=onset + frames - 1,
                              aus=cells[(i // len(labels)) % len(cells)]))
    return plan


def _extra(dataset: str, frames: int, subject: int, index: int) -> SynthClip | None:
    """The one row the official selection leaves out (with the quirks that would otherwise stop a build)."""
    label = {"casme2": "others", "samm": "Others", "casme3": "Others", "4dme": "Surprise+Positive"}.get(dataset)
    if label is None:
        return None
    onset = 500
    apex = onset + frames + 5 if dataset == "samm" else onset + frames // 2  # SAMM: an apex outside its clip
    return SynthClip(subject, index, label, "negative", 0, onset, apex, onset + frames - 1,
                     AU_CELLS[dataset][label][0])


# --- frames ---------------------------------------------------------------------------------------------------

# coarse -> (start x, start y) as fractions of the frame, and the move to apex (dx, dy). Moves of 8% of the frame
# keep Farneback flow reliable on the small default frames (larger ones break it).
BLOBS = {
    "positive": ((0.30, 0.80), (0.0, -0.08)),
    "negative": ((0.70, 0.22), (0.0, 0.08)),
    "surprise": ((0.82, 0.50), (-0.08, 0.0)),
}


def _face(width: int, height: int, subject: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + subject)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width * (0.5 + 0.03 * ((subject % 3) - 1)), height * (0.5 + 0.02 * ((subject % 2) * 2 - 1))
    rx, ry = width * (0.36 + 0.02 * (subject % 2)), height * 0.46
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    texture = cv2.resize(rng.uniform(-25, 25, (max(2, height // 6), max(2, width // 6))).astype(np.float32),
                         (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.full((height, width), 45.0, np.float32)
    image[inside] = 110 + 12 * (subject % 4)
    return image + texture


def _frame(face: np.ndarray, clip: SynthClip, t: float, noise: np.random.Generator) -> np.ndarray:
    height, width = face.shape
    (sx, sy), (dx, dy) = BLOBS[clip.coarse]
    x, y = (sx + dx * t) * width, (sy + dy * t) * height
    radius = min(width, height) * (0.06 + 0.006 * clip.fine_index)
    half = int(3 * radius) + 1
    x0, x1 = max(0, int(x) - half), min(width, int(x) + half + 1)
    y0, y1 = max(0, int(y) - half), min(height, int(y) + half + 1)
    image = face.copy()
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] += 140 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius ** 2))
    image += noise.integers(-3, 4, image.shape, dtype=np.int16)  # sensor noise (integers: cheap at real sizes)
    return np.clip(image, 0, 255).astype(np.uint8)


def _progress(number: int, clip: SynthClip) -> float:
    """0 at onset, 1 at apex, 0.5 at offset."""
    if number <= clip.apex:
        return (number - clip.onset) / max(1, clip.apex - clip.onset)
    return 1 - 0.5 * (number - clip.apex) / max(1, clip.offset - clip.apex)


def _write_frames(folder: Path, clip: SynthClip, names, size: tuple[int, int, bool], seed: int,
                  numbers: list[int] | None = None, tint: bool = True) -> None:
    width, height, gray = size
    folder.mkdir(parents=True, exist_ok=True)
    face = _face(width, height, clip.subject)
    noise = np.random.default_rng(seed * 7919 + clip.subject * 131 + clip.index)
    for number in numbers if numbers is not None else range(clip.onset, clip.offset + 1):
        grey = _frame(face, clip, min(1.0, max(0.0, _progress(number, clip))), noise)
        image = grey if gray else cv2.merge([grey, (grey * 0.9).astype(np.uint8) if tint else grey,
                                             (grey * 0.8).astype(np.uint8) if tint else grey])
        if not cv2.imwrite(str(folder / names(number)), image):
            raise MevqaError(f"{folder / names(number)}: could not write frame")


# --- sheets ---------------------------------------------------------------------------------------------------

def _write_xlsx(path: Path, rows: list[list], sheet: str = "Sheet1") -> None:
    from openpyxl import Workbook  # lazy: only synth-data writes a workbook

    book = Workbook()
    table = book.active
    table.title = sheet
    for row in rows:
        table.append(row)
    with atomic_path(path) as tmp:
        book.save(tmp)


# --- per dataset ----------------------------------------------------------------------------------------------

def _casme2(out: Path, plan: list[SynthClip], extra: SynthClip | None, size, seed: int) -> dict:
    root = out / "CASME2_RAW_selected"
    frames_root = root / "CASME2_RAW_selected"  # the zip unpacks doubled
    rows = [["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
             "Estimated Emotion"]]
    for i, clip in enumerate(plan + ([extra] if extra else [])):
        filename = "EP06_02_01" if i == 1 else f"EP{2 + i:02d}_{clip.index:02d}f"
        apex = "/" if i == 2 else clip.apex  # apex not coded: the builder estimates it
        rows.append([clip.subject, filename, None, clip.onset, apex, clip.offset, None, clip.aus, clip.label])
        _write_frames(frames_root / f"sub{clip.subject:02d}" / filename, clip, lambda n: f"img{n}.jpg", size, seed)
    (frames_root / "sub01" / "Desktop - Shortcut.lnk").write_bytes(b"not a frame")
    annotations = out / "CASME2-coding-20140508.xlsx"
    _write_xlsx(annotations, rows)
    return {"root": root, "annotations": annotations}


def _samm(out: Path, plan: list[SynthClip], extra: SynthClip | None, size, seed: int) -> dict:
    root = out / "SAMM"
    notes = [["SAMM micro-movement FACS codes (synthetic)"], [None], ["Version 2"], ["Coded by: synthetic"],
             [None], ["Notes:"], ["Onset, apex and offset are frame numbers"], [None], ["AU codes follow FACS"],
             ["L/R = left/right"], [None], ["A-E = intensity"], [None]]
    rows = notes + [["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
                     "Duration", "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]]
    for i, clip in enumerate(plan + ([extra] if extra else [])):
        code = 1 + i % 7
        filename = f"{clip.subject:03d}_{code}_{clip.index}"
        rows.append([clip.subject, filename, code, clip.onset, clip.apex, clip.offset, clip.offset - clip.onset + 1,
                     "Micro - 1/2", clip.aus, clip.label, 1 + clip.fine_index, None])
        digits = 5 if i % 2 == 0 else 4  # zero padding varies across SAMM clips
        _write_frames(root / f"{clip.subject:03d}" / filename, clip,
                      lambda n, d=digits, s=clip.subject: f"{s:03d}_{n:0{d}d}.jpg", size, seed)
    annotations = out / "SAMM_Micro_FACS_Codes_v2.xlsx"
    _write_xlsx(annotations, rows)
    return {"root": root, "annotations": annotations}


def _smic(out: Path, plan: list[SynthClip], extra, size, seed: int) -> dict:
    root = out / "SMIC_all_cropped"
    codes = {"negative": "ne", "positive": "po", "surprise": "sur"}
    for clip in plan:
        name = f"s{clip.subject}_{codes[clip.label]}_{clip.index:02d}"  # unpadded subject on disk
        _write_frames(root / "HS" / f"s{clip.subject}" / "micro" / clip.label / name, clip,
                      lambda n: f"reg_image{n:06d}.bmp", size, seed)
    return {"root": root, "annotations": None}


def _casme3(out: Path, plan: list[SynthClip], extra: SynthClip | None, size, seed: int) -> dict:
    root = out / "part_A" / "data" / "part_A_split"
    frames_root = root / "part_A"
    rows = [["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]]
    letters = "abcdefghijklm"
    everything = plan + ([extra] if extra else [])
    for i, clip in enumerate(everything):
        letter = letters[clip.index % len(letters)]
        if i == 1 and len(plan) > 1:  # two MEs in one video: same (Subject, Filename), later frames
            first = everything[0]
            clip.subject, letter = first.subject, letters[first.index % len(letters)]
            shift = first.offset + 10 - clip.onset
            clip.onset, clip.apex, clip.offset = clip.onset + shift, clip.apex + shift, clip.offset + shift
        written = letter.upper() if i == 2 else letter  # one upper-case filename
        rows.append([f"spNO.{clip.subject}", written, clip.onset, clip.apex, clip.offset, clip.aus,
                     1 + clip.fine_index, clip.label])
        numbers = list(range(clip.onset, clip.offset + 1))
        if i == 0 and len(numbers) > 4:  # a dropped frame between onset and apex
            numbers.remove(clip.onset + 1)
        video = frames_root / f"spNo.{clip.subject}" / letter  # folders say spNo, labels spNO
        _write_frames(video / "color", clip, lambda n: f"{n}.jpg", size, seed, numbers)
        (video / "depth").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(video / "depth" / f"{clip.onset}.png"), np.zeros((8, 8), np.uint16))
    annotations = out / "part_A" / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
    _write_xlsx(annotations, rows, sheet="label")
    return {"root": root, "annotations": annotations}


def _fourdme(out: Path, plan: list[SynthClip], extra: SynthClip | None, size, seed: int) -> dict:
    root = out / "gray_micro"
    rows = [["sub_ID", "fold_name", "fold", "Onset", "Apex", "Offset", "AUs", "eye blink", "Emotion", "Positive",
             "Negative", "Surprise", "Repression", "Others"]]
    for clip in plan + ([extra] if extra else []):
        sub, fold = f"S{clip.subject:02d}", f"S{clip.subject:02d}_{clip.index:02d}"
        flags = [int(name.lower() in clip.label.lower()) for name in
                 ("Positive", "Negative", "Surprise", "Repression", "Others")]
        rows.append([sub, fold, 1, clip.onset, clip.apex, clip.offset, clip.aus, 0, clip.label, *flags])
        _write_frames(root / sub / fold, clip, lambda n: f"img{n}.jpg", size, seed)
    annotations = out / "4DME_Labelling_Micro_release v1.xlsx"
    _write_xlsx(annotations, rows)
    return {"root": root, "annotations": annotations}


WRITERS = {"casme2": _casme2, "samm": _samm, "smic": _smic, "casme3": _casme3, "4dme": _fourdme}


def write_synthetic_dataset(dataset: str, out_dir: str | Path, clips: int = 12, seed: int = 0, *,
                            frames: int = 12, size: tuple[int, int] | None = None) -> dict[str, Path | None]:
    """Write a synthetic DATASET under ``out_dir``; returns ``{"root": ..., "annotations": ...}`` (the
    ``--root``/``--annotations`` of ``mevqa build-data``; annotations is None for SMIC).

    ``clips`` usable clips (plus one left-out row, see the module docstring), ``frames`` frames per clip,
    ``size`` = (width, height) of the frames (default: small, about 96x72)."""
    if dataset not in WRITERS:
        raise MevqaError(f"unknown dataset {dataset!r}; expected one of {', '.join(WRITERS)}")
    check_seed(seed)
    if size is not None and not all(MIN_SIDE <= side <= MAX_SIDE for side in size):
        raise MevqaError(f"--size must give a width and height between {MIN_SIDE} and {MAX_SIDE} pixels, got "
                         f"{size[0]}x{size[1]}")
    rng = random.Random(f"synth:{dataset}:{seed}")
    plan = _plan(dataset, clips, frames, rng)
    out = ensure_dir(out_dir)
    extra = _extra(dataset, frames, plan[0].subject, max(c.index for c in plan) + 1)
    width, height, gray = FRAME_SIZES[dataset]
    if size is not None:
        width, height = size
    return WRITERS[dataset](out, plan, extra, (width, height, gray), seed)
