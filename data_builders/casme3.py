"""CAS(ME)^3 Part A: ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` and ``part_A/.../spNO.1/a/color/1568.jpg``
(30 fps).

Sheet ``label`` (else the first sheet) with ``Subject, Filename, Onset, Apex, Offset, AU, Objective class,
emotion``; a sheet with an ``Expression type`` column keeps only ``Micro-expression`` rows. ``Subject``
``spNO.1`` is kept as the official subject; ``Filename`` (a letter, any case) is lower-cased. One video can hold
several MEs, so the image id carries the onset: ``spNO.1_a_166`` (the pre-cut release's folder name). Folders are
matched case-insensitively (``spNo.1``); the pre-cut release (``Part_A_ME_clip/frame/spNO.1_a_166/166.jpg``, pass
``--root Part_A_ME_clip/frame``) is read too. Frames are unpadded and may have drops (missing intermediate frames
are skipped when sampling; a missing onset, apex or offset frame is an error). AU prefixes ``T``/``B`` (top/bottom) are
kept in metadata but are not laterality. Native emotions ``happy``/``sad`` become ``happiness``/``sadness``;
``others`` is left out.
"""

from __future__ import annotations

from pathlib import Path

from mevqa.data_builders.qa import ClipRecord, coarse_of, normalise_emotion
from mevqa.data_builders.sheets import SheetRow, cell_int, cell_text, clip_dir, find_dir, number_in, read_sheet
from mevqa.dataset_facts import FPS as FPS_OF
from mevqa.errors import MevqaError

NAME = "casme3"
FPS = FPS_OF["casme3"]
QUESTIONS = "CFALYX"
MISSING_APEX = "max_diff"
ANNOTATIONS = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
EXCLUDED = {"others"}
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("Onset", "Onset Frame", "OnsetFrame"),
    "apex": ("Apex", "Apex Frame", "ApexFrame"),
    "offset": ("Offset", "Offset Frame", "OffsetFrame"),
    "aus": ("AU", "AUs", "Action Units"),
    "emotion": ("emotion", "Estimated Emotion"),
    "expression_type": ("Expression type",),
}
EMOTIONS = {"happy": "happiness", "happiness": "happiness", "sad": "sadness", "sadness": "sadness",
            "anger": "anger", "angry": "anger", "fear": "fear", "disgust": "disgust", "surprise": "surprise",
            "others": "others", "other": "others"}


def entries(root: Path, annotations: Path | None) -> list[SheetRow]:
    if annotations is None:
        raise MevqaError(f"casme3 needs --annotations (the Part A label sheet, e.g. {ANNOTATIONS})")
    rows = read_sheet(annotations, COLUMNS, sheet="label", optional=("expression_type",))
    return [row for row in rows if row.values.get("expression_type") is None
            or "micro" in str(row.values["expression_type"]).lower()]


def record(entry: SheetRow, root: Path) -> ClipRecord:
    v, where = entry.values, entry.where
    subject = f"spNO.{number_in(cell_text(v['subject']), where, 'Subject')}"
    filename = cell_text(v["filename"]).lower()
    onset = cell_int(v["onset"], where, "Onset")
    apex = None if v["apex"] is None or str(v["apex"]).strip() == "/" else cell_int(v["apex"], where, "Apex")
    emotion = normalise_emotion(v["emotion"], EMOTIONS, where)
    image_id = f"{subject}_{filename}_{onset}"
    frames = clip_dir(root, subject, filename, "color", where=where)
    if frames is not None and not frames.exists():  # the pre-cut release: one folder per ME
        frames = find_dir(root, image_id) or frames
    return ClipRecord(NAME, subject, filename, image_id, onset, apex,
                      cell_int(v["offset"], where, "Offset"), emotion, coarse_of(emotion), v["aus"], frames, FPS,
                      f"{where} ({subject}/{filename})")
