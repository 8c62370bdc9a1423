"""4DME: ``4DME_Labelling_Micro_release v1.xlsx`` and ``gray_micro/{sub_ID}/{fold_name}/`` (60 fps, grey).

Columns are matched by name (``sub_ID, fold_name, Onset, Apex, Offset, AUs, Emotion``; the flag columns are not
needed). AU cells mix ``AU`` prefixes and bare numbers (``AU4(k)+L7``, ``AUR2+12(k)+45``); ``(k)`` marks static
AUs, which are left out of the questions. The emotion column holds coarse-level labels (Positive, Negative,
Surprise, Repression, Others) and compounds such as ``Surprise+Positive``; since there is no fine-grained label,
4DME clips get the C, A, [LR] and Y questions only (no F, no X); compound and ``Others`` clips are left out.
Frame names are taken by the last number in the file name. The frame rate (60) is from the paper [unverified].
"""

from __future__ import annotations

from pathlib import Path

from mevqa.data_builders.qa import ClipRecord
from mevqa.data_builders.sheets import SheetRow, cell_int, cell_text, clip_dir, read_sheet
from mevqa.dataset_facts import FPS as FPS_OF
from mevqa.errors import MevqaError

NAME = "4dme"
FPS = FPS_OF["4dme"]
QUESTIONS = "CALY"
MISSING_APEX = "max_diff"
ANNOTATIONS = "4DME_Labelling_Micro_release v1.xlsx"
EXCLUDED = {"others"}
COLUMNS = {
    "subject": ("sub_ID", "Subject"),
    "filename": ("fold_name", "Filename"),
    "onset": ("Onset", "Onset Frame"),
    "apex": ("Apex", "Apex Frame"),
    "offset": ("Offset", "Offset Frame"),
    "aus": ("AUs", "AU", "Action Units"),
    "emotion": ("Emotion", "Estimated Emotion"),
}
COARSE = {"positive": "positive", "negative": "negative", "surprise": "surprise", "repression": "negative"}


def entries(root: Path, annotations: Path | None) -> list[SheetRow]:
    if annotations is None:
        raise MevqaError(f"4dme needs --annotations (the labelling sheet, e.g. {ANNOTATIONS})")
    return read_sheet(annotations, COLUMNS)


def record(entry: SheetRow, root: Path) -> ClipRecord:
    v, where = entry.values, entry.where
    subject, fold = cell_text(v["subject"]), cell_text(v["filename"])
    if v["emotion"] is None:
        raise MevqaError(f"{where}: empty emotion")
    raw = " ".join(str(v["emotion"]).strip().lower().split())
    parts = [p.strip() for p in raw.split("+")]
    unknown = [p for p in parts if p not in COARSE and p not in ("others", "other")]
    if unknown:
        raise MevqaError(f"{where}: unknown emotion {str(v['emotion']).strip()!r}; expected Positive, Negative, "
                         "Surprise, Repression, Others or a '+' compound of them")
    emotion = raw if len(parts) == 1 and raw in COARSE else "others"
    apex = None if v["apex"] is None or str(v["apex"]).strip() == "/" else cell_int(v["apex"], where, "Apex")
    frames = clip_dir(root, subject, fold, where=where)
    return ClipRecord(NAME, subject, fold, f"{subject}_{fold}", cell_int(v["onset"], where, "Onset"), apex,
                      cell_int(v["offset"], where, "Offset"), emotion, COARSE.get(emotion), v["aus"], frames, FPS,
                      f"{where} ({subject}/{fold})", extra={"emotion_raw": str(v["emotion"]).strip()})
