"""Long-video readers for spotting: SAMM-LV, CAS(ME)^3 part A and SMIC-E, each into :class:`LongVideoRecord`.

Public API::

    LongVideoRecord, SpotInterval
    READERS = {"samm-lv": read_samm_lv, "casme3": read_casme3, "smic-e": read_smic_e}
    read_samm_lv(root, annotations, *, emotions) -> list[LongVideoRecord]
    read_casme3(root, annotations, *, macro=None) -> list[LongVideoRecord]
    read_smic_e(root, annotations) -> list[LongVideoRecord]

What each reads (docs/str.md has the facts and where they come from):

- **SAMM-LV** (200 fps): the long-video sheet (``SAMM_LongVideos_V*_Release.xlsx``; the header is found by name,
  after 9 notes rows in the real files) with ``Subject, Filename, Onset, Apex, Offset, Type, Action Units``. ``Type``
  ``Micro - 1/2`` is a micro-expression and ``Macro`` a macro-expression; rows of any other type are dropped (and
  counted in the log). The sheet has no emotion: a micro row takes the ``Estimated Emotion`` of the row with the same
  ``Filename`` in the SAMM micro sheet (``--emotions SAMM_Micro_FACS_Codes_v2.xlsx``); a micro row missing there is an
  error. ``Filename`` ``006_1_2`` is movement 2 of video ``006_1``, whose frames are ``ROOT/006_1/006_1_0001.jpg``.
- **CAS(ME)^3 part A** (30 fps): each task folder ``ROOT/spNO.1/a/color/`` is a long video. The ME sheet
  (``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, sheet ``label``) gives the micro intervals with their emotion;
  the macro+micro sheet (``--macro "CAS(ME)3_part_A_v2.xls"``) adds its ``Macro-expression`` rows. Videos are those
  with at least one annotated interval. Frame numbers are the jpg names (unpadded, with drops).
- **SMIC-E** (HS, 100 fps): ``SMIC-HS-E_annotation.xlsx``: one row per long clip with up to three MEs
  (``OnsetF/OffsetF``, ``Onset2F/Offset2F``, ``Onset3F/Offset3F``), one ``Emotion`` for all of them, and the clip's
  absolute ``FirstF``/``LastF``. Rows without a ``Filename`` and frames (the trailing notes) are skipped. Frames
  ``image000123.jpg`` are found in ``ROOT/s01/<Filename>/`` (or a folder of that name anywhere below ``ROOT``); if
  their numbers start at 0 or 1 rather than ``FirstF``, intervals are shifted onto them. No apex is annotated.

A missing apex is the midpoint (``apex_method`` ``midpoint``). Intervals must lie within the video's frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mevqa.data_builders import casme3, samm
from mevqa.data_builders.qa import coarse_of, normalise_emotion, parse_aus
from mevqa.data_builders.sheets import SheetRow, cell_int, cell_text, find_dir, number_in, read_sheet
from mevqa.errors import MevqaError
from mevqa.media import list_frames
from mevqa.rows import clip_name

log = logging.getLogger(__name__)

MICRO, MACRO = "micro", "macro"
SMIC_EMOTIONS = {"positive": "positive", "po": "positive", "negative": "negative", "ne": "negative",
                 "surprise": "surprise", "sur": "surprise"}


@dataclass
class SpotInterval:
    onset: int
    apex: int
    offset: int
    type: str                      # micro | macro
    emotion: str | None            # fine label (lowercase) or "others"; None for macro-expressions
    coarse: str | None             # positive | negative | surprise; None for others and macro-expressions
    aus: list[str] = field(default_factory=list)
    apex_method: str = "annotated"
    where: str = ""

    def as_dict(self) -> dict:
        return {"onset": self.onset, "apex": self.apex, "offset": self.offset, "type": self.type,
                "emotion": self.emotion, "coarse": self.coarse, "aus": self.aus, "apex_method": self.apex_method}


@dataclass
class LongVideoRecord:
    dataset: str                   # samm-lv | casme3 | smic-e
    subject: str
    video: str
    fps: float
    frames: Path                   # the frame folder
    frame_numbers: list[int]
    intervals: list[SpotInterval] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.subject, self.video


def _span(values: dict, where: str, names: tuple[str, str, str]) -> tuple[int, int, int, str]:
    onset = cell_int(values["onset"], where, names[0])
    offset = cell_int(values["offset"], where, names[2])
    apex = values.get("apex")
    if apex is None or str(apex).strip() in ("/", "-"):
        return onset, (onset + offset) // 2, offset, "midpoint"
    return onset, cell_int(apex, where, names[1]), offset, "annotated"


def _aus(value, where: str) -> list[str]:
    return [] if value is None else [unit.label for unit in parse_aus(value, where)]


def _check(interval: SpotInterval, frames: list[int], where: str) -> None:
    if interval.onset > interval.offset:
        raise MevqaError(f"{where}: onset {interval.onset} is after offset {interval.offset}")
    if not interval.onset <= interval.apex <= interval.offset:
        raise MevqaError(f"{where}: apex {interval.apex} outside {interval.onset}..{interval.offset}")
    if interval.onset < frames[0] or interval.offset > frames[-1]:
        raise MevqaError(f"{where}: interval {interval.onset}..{interval.offset} outside the video's frames "
                         f"{frames[0]}..{frames[-1]}")


def _video(videos: dict, dataset: str, subject: str, name: str, fps: float, folder: Path | None,
           where: str) -> LongVideoRecord:
    # Names become folder names of the windows' media: one plain name each, so no row can write outside OUT.
    clip_name(subject, where, "subject")
    clip_name(name, where, "video")
    if (subject, name) not in videos:
        if folder is None or not folder.is_dir():
            raise MevqaError(f"{where}: frame folder of video {name} not found{f' (looked for {folder})' if folder else ''}")
        frames = [number for number, _ in list_frames(folder)]
        if not frames:
            raise MevqaError(f"{folder}: no image frames in the video folder")
        videos[(subject, name)] = LongVideoRecord(dataset, subject, name, fps, folder, frames)
    return videos[(subject, name)]


# --- SAMM-LV ------------------------------------------------------------------------------------------------------

SAMM_LV_COLUMNS = {
    "subject": ("Subject",), "filename": ("Filename",), "onset": ("Onset", "Onset Frame"),
    "apex": ("Apex", "Apex Frame"), "offset": ("Offset", "Offset Frame"), "type": ("Type",),
    "aus": ("Action Units", "AU", "AUs"),
}


def read_samm_lv(root: Path, annotations: Path, *, emotions: Path | None) -> list[LongVideoRecord]:
    if emotions is None:
        raise MevqaError("samm-lv needs --emotions (the SAMM micro sheet, e.g. SAMM_Micro_FACS_Codes_v2.xlsx): the "
                         "long-video sheet has no emotion column")
    labels = {}
    for entry in read_sheet(emotions, samm.COLUMNS):
        filename = cell_text(entry.values["filename"])
        labels[filename] = normalise_emotion(entry.values["emotion"], samm.EMOTIONS, entry.where)
    videos: dict[tuple[str, str], LongVideoRecord] = {}
    dropped = 0
    for entry in read_sheet(annotations, SAMM_LV_COLUMNS, sheet="FACS_Movement_Only", optional=("aus", "apex")):
        v, where = entry.values, entry.where
        kind_text = str(v.get("type") or "").strip().lower()
        kind = MICRO if kind_text.startswith("micro") else MACRO if kind_text.startswith("macro") else None
        if kind is None:
            dropped += 1
            continue
        filename = cell_text(v["filename"])
        parts = filename.rsplit("_", 1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise MevqaError(f"{where}: Filename {filename!r} is not <video>_<movement number> (e.g. 006_1_2)")
        subject = str(number_in(cell_text(v["subject"]), where, "Subject"))
        owner = parts[0].split("_", 1)[0]  # SAMM names a subject's videos after it: 006_1 is a video of subject 006
        if owner.isdigit() and int(owner) != int(subject):
            raise MevqaError(f"{where}: Subject {cell_text(v['subject'])} contradicts Filename {filename} (a video of "
                             f"subject {owner}); fix the row")
        onset, apex, offset, apex_method = _span(v, where, ("Onset", "Apex", "Offset"))
        emotion = coarse = None
        if kind == MICRO:
            if filename not in labels:
                raise MevqaError(f"{where}: micro-expression {filename} has no row in {emotions.name} (its emotion "
                                 "is unknown)")
            emotion = labels[filename]
            coarse = coarse_of(emotion)
        video = _video(videos, "samm-lv", subject, parts[0], 200.0, find_dir(root, parts[0]), where)
        interval = SpotInterval(onset, apex, offset, kind, emotion, coarse, _aus(v.get("aus"), where), apex_method,
                                where)
        _check(interval, video.frame_numbers, where)
        video.intervals.append(interval)
    if dropped:
        log.info("%s: %d row(s) of a type other than Micro/Macro left out", annotations.name, dropped)
    return list(videos.values())


# --- CAS(ME)^3 part A ---------------------------------------------------------------------------------------------

CASME3_MACRO_COLUMNS = {
    "subject": ("Subject",), "filename": ("Filename",), "onset": ("Onset",), "apex": ("Apex",), "offset": ("Offset",),
    "aus": ("AU", "AUs"), "expression_type": ("Expression type",),
}


def _casme3_video(videos, root: Path, entry: SheetRow) -> LongVideoRecord:
    v, where = entry.values, entry.where
    subject = f"spNO.{number_in(cell_text(v['subject']), where, 'Subject')}"
    letter = cell_text(v["filename"]).lower()
    return _video(videos, "casme3", subject, letter, casme3.FPS, find_dir(root, subject, letter, "color"), where)


def read_casme3(root: Path, annotations: Path, *, macro: Path | None = None) -> list[LongVideoRecord]:
    videos: dict[tuple[str, str], LongVideoRecord] = {}
    for entry in casme3.entries(root, annotations):
        v, where = entry.values, entry.where
        video = _casme3_video(videos, root, entry)
        onset, apex, offset, apex_method = _span(v, where, ("Onset", "Apex", "Offset"))
        emotion = normalise_emotion(v["emotion"], casme3.EMOTIONS, where)
        interval = SpotInterval(onset, apex, offset, MICRO, emotion, coarse_of(emotion), _aus(v.get("aus"), where),
                                apex_method, where)
        _check(interval, video.frame_numbers, where)
        video.intervals.append(interval)
    if macro is not None:
        for entry in read_sheet(macro, CASME3_MACRO_COLUMNS, optional=("aus", "apex")):
            if "macro" not in str(entry.values["expression_type"]).lower():
                continue  # its micro rows are the ME sheet's, which has their emotion
            v, where = entry.values, entry.where
            video = _casme3_video(videos, root, entry)
            onset, apex, offset, apex_method = _span(v, where, ("Onset", "Apex", "Offset"))
            interval = SpotInterval(onset, apex, offset, MACRO, None, None, _aus(v.get("aus"), where), apex_method,
                                    where)
            _check(interval, video.frame_numbers, where)
            video.intervals.append(interval)
    return list(videos.values())


# --- SMIC-E -------------------------------------------------------------------------------------------------------

SMIC_E_COLUMNS = {
    "subject": ("Subject",), "filename": ("Filename",), "onset1": ("OnsetF",), "offset1": ("OffsetF",),
    "onset2": ("Onset2F",), "offset2": ("Offset2F",), "onset3": ("Onset3F",), "offset3": ("Offset3F",),
    "emotion": ("Emotion",), "first": ("FirstF",), "last": ("LastF",),
}


def _smic_folder(root: Path, subject: str, filename: str) -> Path | None:
    found = find_dir(root, subject, filename)
    if found is not None:
        return found
    matches = sorted(path for path in root.rglob(filename) if path.is_dir()) if root.is_dir() else []
    return matches[0] if matches else None


def read_smic_e(root: Path, annotations: Path) -> list[LongVideoRecord]:
    videos: dict[tuple[str, str], LongVideoRecord] = {}
    for entry in read_sheet(annotations, SMIC_E_COLUMNS, optional=("onset2", "offset2", "onset3", "offset3")):
        v, where = entry.values, entry.where
        if v["filename"] is None and v["first"] is None and v["onset1"] is None:
            continue  # a trailing notes row
        subject = f"s{number_in(cell_text(v['subject']), where, 'Subject'):02d}"
        filename = cell_text(v["filename"])
        clip_name(filename, where, "Filename")  # one plain name: it is looked up under --root
        if (subject, filename) in videos:
            raise MevqaError(f"{where}: clip {filename} appears twice in the sheet")
        emotion = normalise_emotion(v["emotion"], SMIC_EMOTIONS, where)
        video = _video(videos, "smic-e", subject, filename, 100.0, _smic_folder(root, subject, filename), where)
        first, last = cell_int(v["first"], where, "FirstF"), cell_int(v["last"], where, "LastF")
        numbers = video.frame_numbers
        if numbers[0] == first:
            shift = 0
        elif numbers[0] in (0, 1) and len(numbers) >= last - first + 1 - 2:  # numbered from the clip's start
            shift = numbers[0] - first
        else:
            raise MevqaError(f"{where}: the frames of {filename} are numbered {numbers[0]}..{numbers[-1]}, which "
                             f"matches neither FirstF {first} nor a count from 0 or 1")
        for slot, (on_key, off_key) in enumerate((("onset1", "offset1"), ("onset2", "offset2"),
                                                  ("onset3", "offset3")), start=1):
            if v.get(on_key) is None and v.get(off_key) is None:
                continue
            onset = cell_int(v.get(on_key), where, f"onset of ME {slot}") + shift
            offset = cell_int(v.get(off_key), where, f"offset of ME {slot}") + shift
            interval = SpotInterval(onset, (onset + offset) // 2, offset, MICRO, emotion, emotion, [], "midpoint",
                                    f"{where} (ME {slot})")
            _check(interval, numbers, interval.where)
            video.intervals.append(interval)
        if not video.intervals:
            raise MevqaError(f"{where}: clip {filename} has no ME interval")
    return list(videos.values())


READERS = {"samm-lv": read_samm_lv, "casme3": read_casme3, "smic-e": read_smic_e}
FPS = {"samm-lv": 200.0, "casme3": casme3.FPS, "smic-e": 100.0}
