"""SMIC: no sheet; labels are folders, ``SMIC_all_cropped/HS/s3/micro/positive/s3_po_08/reg_image000123.bmp``.

``--root`` is the folder holding ``HS`` (HS is used; point ``--root`` at ``VIS`` or ``NIR`` for those), or a
modality folder itself. Subjects and clip names are unpadded on disk (``s3``, ``s3_po_08``) and padded in the
official file (``s03``, ``s03_po_08``). The clip is the whole folder: onset and offset are its first and last
frames; SMIC has no apex, so the middle frame is used (``midpoint``, as meb and merlib do; ``--missing-apex
max_diff`` estimates it instead). Only the coarse question is asked (the folder class). HS is 100 fps,
VIS/NIR 25 fps.
"""

from __future__ import annotations

import re
from pathlib import Path

from mevqa.data_builders.qa import ClipRecord
from mevqa.data_builders.sheets import SheetRow
from mevqa.dataset_facts import FPS as FPS_OF, SMIC_MODALITY_FPS
from mevqa.errors import MevqaError
from mevqa.media import list_frames

NAME = "smic"
FPS = FPS_OF["smic"]
QUESTIONS = "C"
MISSING_APEX = "midpoint"
ANNOTATIONS = None
EXCLUDED: set[str] = set()
CLASSES = {"negative": "ne", "positive": "po", "surprise": "sur"}
MODALITY_FPS = SMIC_MODALITY_FPS
_CLIP = re.compile(r"^s(\d+)_(ne|po|sur)_(\d+)$", re.IGNORECASE)
_SUBJECT = re.compile(r"^s(\d+)$", re.IGNORECASE)


def _modality_root(root: Path) -> Path:
    for pattern in ("HS", "*/HS", "*/*/HS"):
        found = sorted(p for p in root.glob(pattern) if p.is_dir())
        if found:
            return found[0]
    return root


def entries(root: Path, annotations: Path | None) -> list[SheetRow]:
    if not root.is_dir():
        raise MevqaError(f"{root}: SMIC root folder not found")
    base = _modality_root(root)
    clips = []
    for pattern in ("s*/micro/*/*", "*/s*/micro/*/*", "*/*/s*/micro/*/*"):
        clips = sorted(p for p in base.glob(pattern) if p.is_dir())
        if clips:
            break
    if not clips:
        raise MevqaError(f"{root}: no SMIC clip folders found (expected e.g. HS/s1/micro/negative/s1_ne_01/)")
    return [SheetRow({"folder": clip}, str(clip)) for clip in clips]


def record(entry: SheetRow, root: Path) -> ClipRecord:
    folder: Path = entry.values["folder"]
    where = entry.where
    label, subject_dir = folder.parent.name.lower(), folder.parent.parent.parent.name
    if label not in CLASSES:
        raise MevqaError(f"{where}: unknown emotion folder {folder.parent.name!r}; expected one of "
                         f"{', '.join(CLASSES)}")
    clip, subject = _CLIP.match(folder.name), _SUBJECT.match(subject_dir)
    if not clip or not subject:
        raise MevqaError(f"{where}: expected a clip folder like s3/micro/positive/s3_po_08")
    if clip.group(2).lower() != CLASSES[label]:
        raise MevqaError(f"{where}: clip {folder.name} is filed under {label}")
    frames = list_frames(folder)
    if not frames:
        raise MevqaError(f"{where}: no image frames in the clip folder")
    number = int(subject.group(1))
    filename = f"s{number:02d}_{clip.group(2).lower()}_{int(clip.group(3)):02d}"
    fps = next((MODALITY_FPS[p.lower()] for p in folder.parts if p.lower() in MODALITY_FPS), FPS)
    return ClipRecord(NAME, f"s{number:02d}", filename, filename, frames[0][0], None, frames[-1][0], label, label,
                      None, folder, fps, where)
