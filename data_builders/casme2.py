"""CASME II: ``CASME2-coding-*.xlsx`` and ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` (200 fps, 640x480 RGB).

Sheet header on row 1 with two blank columns; ``Subject`` is an integer (1 -> ``sub01``); ``ApexFrame`` may be
``/`` (not coded: estimated, see ``--missing-apex``); single AUs arrive as numbers (``14``). Frame names are
``img{N}.jpg`` with the absolute, unpadded frame number (cropped sets: ``reg_img{N}.jpg``). The official selection
(MEGC2019 composite, 145 clips) leaves out ``others``, ``fear`` and ``sadness``.
"""

from __future__ import annotations

from pathlib import Path

from mevqa.data_builders.qa import ClipRecord, coarse_of, normalise_emotion
from mevqa.data_builders.sheets import SheetRow, cell_int, cell_text, clip_dir, number_in, read_sheet
from mevqa.dataset_facts import FPS as FPS_OF
from mevqa.errors import MevqaError

NAME = "casme2"
FPS = FPS_OF["casme2"]
QUESTIONS = "CFALYX"
MISSING_APEX = "max_diff"
ANNOTATIONS = "CASME2-coding-20140508.xlsx"
EXCLUDED = {"others", "fear", "sadness"}
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("OnsetFrame", "Onset Frame", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "Offset"),
    "aus": ("Action Units", "Action Unit", "AUs", "AU"),
    "emotion": ("Estimated Emotion", "Emotion"),
}
EMOTIONS = {label: label for label in ("happiness", "disgust", "repression", "surprise", "fear", "sadness",
                                       "others")} | {"other": "others"}


def entries(root: Path, annotations: Path | None) -> list[SheetRow]:
    if annotations is None:
        raise MevqaError(f"casme2 needs --annotations (the coding sheet, e.g. {ANNOTATIONS})")
    return read_sheet(annotations, COLUMNS)


def record(entry: SheetRow, root: Path) -> ClipRecord:
    v, where = entry.values, entry.where
    subject = f"sub{number_in(cell_text(v['subject']), where, 'Subject'):02d}"
    filename = cell_text(v["filename"])
    apex = None if v["apex"] is None or str(v["apex"]).strip() == "/" else cell_int(v["apex"], where, "ApexFrame")
    emotion = normalise_emotion(v["emotion"], EMOTIONS, where)
    frames = clip_dir(root, subject, filename, where=where)
    return ClipRecord(NAME, subject, filename, f"{subject}_{filename}", cell_int(v["onset"], where, "OnsetFrame"),
                      apex, cell_int(v["offset"], where, "OffsetFrame"), emotion, coarse_of(emotion), v["aus"],
                      frames, FPS, f"{where} ({subject}/{filename})")
