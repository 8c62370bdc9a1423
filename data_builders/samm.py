"""SAMM: ``SAMM_Micro_FACS_Codes_v2.xlsx`` and ``SAMM/006/006_1_2/006_05562.jpg`` (200 fps, 960x650 grayscale).

The v2 sheet has 13 notes rows and its header on row 14 (other copies: row 1; the header is found by name).
``Subject`` 6 -> official subject ``6``, folder ``006``; ``Filename`` ``006_1_2`` is also the official image id.
AU cells have spaces, L/R prefixes, intensity letters and ``or`` (see :mod:`mevqa.data_builders.qa`). Frame
numbers follow the last ``_`` with varying zero padding. The official selection leaves out ``Others`` (133 clips).
"""

from __future__ import annotations

from pathlib import Path

from mevqa.data_builders.qa import ClipRecord, coarse_of, normalise_emotion
from mevqa.data_builders.sheets import SheetRow, cell_int, cell_text, clip_dir, number_in, read_sheet
from mevqa.dataset_facts import FPS as FPS_OF
from mevqa.errors import MevqaError

NAME = "samm"
FPS = FPS_OF["samm"]
QUESTIONS = "CFALYX"
MISSING_APEX = "max_diff"
ANNOTATIONS = "SAMM_Micro_FACS_Codes_v2.xlsx"
EXCLUDED = {"others"}
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("Onset Frame", "OnsetFrame", "Onset"),
    "apex": ("Apex Frame", "ApexFrame", "Apex"),
    "offset": ("Offset Frame", "OffsetFrame", "Offset"),
    "aus": ("Action Units", "Action Unit", "AUs", "AU"),
    "emotion": ("Estimated Emotion", "Emotion"),
}
EMOTIONS = {label: label for label in ("anger", "contempt", "happiness", "surprise", "disgust", "fear", "sadness",
                                       "others")} | {"other": "others"}


def entries(root: Path, annotations: Path | None) -> list[SheetRow]:
    if annotations is None:
        raise MevqaError(f"samm needs --annotations (the FACS coding sheet, e.g. {ANNOTATIONS})")
    return read_sheet(annotations, COLUMNS)


def record(entry: SheetRow, root: Path) -> ClipRecord:
    v, where = entry.values, entry.where
    number = number_in(cell_text(v["subject"]), where, "Subject")
    filename = cell_text(v["filename"])
    apex = None if v["apex"] is None or str(v["apex"]).strip() in ("/", "-") else cell_int(v["apex"], where,
                                                                                             "Apex Frame")
    emotion = normalise_emotion(v["emotion"], EMOTIONS, where)
    frames = clip_dir(root, f"{number:03d}", filename, where=where)
    return ClipRecord(NAME, str(number), filename, filename, cell_int(v["onset"], where, "Onset Frame"), apex,
                      cell_int(v["offset"], where, "Offset Frame"), emotion, coarse_of(emotion), v["aus"], frames,
                      FPS, f"{where} ({filename})")
