"""What every dataset shares: the clip record, action-unit strings, emotion labels, and clip -> QA rows.

The rows follow the official MEGC2025 training file exactly (``docs/scoring.md``, "The official files"):
per clip C F A [LR] Y(yes) Y(no) X, ids ``{dataset}_{image_id}_{k}``. The MEGC2026 question set (``V``,
:data:`QUESTION_SETS`) asks the analysis prompt in place of the composite question X.

Rules read off the official file (the reproduction test checks them on all 278 SAMM and CASME II clips):
- AU names keep the sheet's order (not sorted); an AU coded twice (``L12+R12``) is named once.
- The LR question asks about the first AU with an ``L``/``R`` prefix; ``T``/``B`` (CAS(ME)^3 top/bottom) do not
  count as laterality.
- Y(yes) asks about one of the clip's AUs and Y(no) about an AU of the official 25-name vocabulary that the clip
  lacks, both drawn with a generator seeded by ``(seed, dataset, image_id)``: the draw of a clip does not depend on
  which other clips are built, in what order, or by how many workers.
Decisions where the sheets are ambiguous (the official file cannot tell):
- ``or`` alternatives (SAMM) are treated like ``+``: every alternative is listed.
- Intensity letters (``R14A``) are dropped from names; ``(k)`` AUs (4DME "static") are left out.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from mevqa import vocab
from mevqa.errors import MevqaError


# The question sets of build-data --questions: the 2026 set (ME-VQA-v2) replaces the composite question (X) by the
# analysis prompt (V); datasets whose rows have no composite question ask the same questions in both.
QUESTION_SETS = ("2025", "2026")


def questions_of_set(questions: str, question_set: str) -> str:
    """A dataset's question kinds (``C F A L Y X``) as the question set asks them."""
    if question_set not in QUESTION_SETS:
        raise MevqaError(f"unknown question set {question_set!r}; expected one of {', '.join(QUESTION_SETS)}")
    return questions.replace("X", "V") if question_set == "2026" else questions


@dataclass(frozen=True)
class ActionUnit:
    code: int
    side: str | None = None       # L, R, T, B, U (as written)
    intensity: str | None = None  # A..E
    static: bool = False          # 4DME "(k)"

    @property
    def name(self) -> str:
        return vocab.AU_NAMES[self.code]

    @property
    def label(self) -> str:
        """The compact code kept in row metadata, e.g. ``L10``, ``14A``."""
        return f"{self.side or ''}{self.code}{self.intensity or ''}{'(k)' if self.static else ''}"


_AU_TOKEN = re.compile(r"^(?:AU)?\s*([LRTBU])?\s*(\d+)\s*([A-E])?\s*(\(K\))?$", re.IGNORECASE)
_AU_SPLIT = re.compile(r"\s*(?:\+|,|，|\bor\b|&)\s*", re.IGNORECASE)


def parse_aus(text, where: str) -> list[ActionUnit]:
    """Parse an AU cell (``4+7+L10``, ``R12 + R15``, ``R14A``, ``L14 or R14``, ``AUR2+12(k)+45``, ``1，2``, 14.0).

    Raises :class:`MevqaError` naming ``where`` for an empty cell, an unparseable token or an unknown AU code.
    """
    if text is None or (isinstance(text, float) and text != text):
        raise MevqaError(f"{where}: no action units")
    if isinstance(text, float) and text.is_integer():
        text = int(text)
    raw = str(text).strip()
    if raw.endswith(".0") and raw[:-2].isdigit():
        raw = raw[:-2]
    units: list[ActionUnit] = []
    for token in _AU_SPLIT.split(raw):
        if not token:
            continue
        match = _AU_TOKEN.match(token.strip())
        if not match:
            raise MevqaError(f"{where}: cannot read action unit {token!r} in {raw!r} "
                             "(expected e.g. 12, L10, R14A, AU4(k))")
        side, code, intensity, static = match.groups()
        code = int(code)
        if code not in vocab.AU_NAMES:
            raise MevqaError(f"{where}: unknown action unit code {code} in {raw!r}")
        units.append(ActionUnit(code, side.upper() if side else None, intensity.upper() if intensity else None,
                                bool(static)))
    if not units:
        raise MevqaError(f"{where}: no action units in {raw!r}")
    return units


def distinct_aus(units: list[ActionUnit]) -> list[ActionUnit]:
    """The clip's moving AUs in sheet order, each code once (first occurrence wins), static ``(k)`` AUs left out."""
    seen: set[int] = set()
    out = []
    for unit in units:
        if unit.static or unit.code in seen:
            continue
        seen.add(unit.code)
        out.append(unit)
    return out


def lateral_au(units: list[ActionUnit]) -> ActionUnit | None:
    return next((unit for unit in units if unit.side in ("L", "R")), None)


@dataclass
class ClipRecord:
    """One annotated clip, in the official naming, with where its frames are."""

    dataset: str
    subject: str
    filename: str
    image_id: str
    onset: int | None
    apex: int | None
    offset: int | None
    emotion: str                 # the fine label (lowercase, normalised) or "others"
    coarse: str | None           # positive / negative / surprise, None where no coarse class applies
    au_text: object = None       # the raw AU cell; parsed when the clip's questions are made
    frames: Path | None = None   # the clip's frame folder (or video file)
    fps: float | None = None
    where: str = ""              # "file row N" for messages
    apex_method: str = "annotated"
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.image_id

    def clip_metadata(self) -> dict:
        aus = [unit.label for unit in parse_aus(self.au_text, self.where)] if self.au_text is not None else []
        return {"source": self.dataset, "onset": self.onset, "apex": self.apex, "offset": self.offset,
                "apex_method": self.apex_method, "fps": self.fps, "aus": aus, "emotion": self.emotion}


def row_base(record: ClipRecord) -> dict:
    return {"dataset": record.dataset, "image_id": record.image_id, "subject": record.subject,
            "filename": record.filename}


def clip_rows(record: ClipRecord, questions: str, seed: int) -> list[dict]:
    """The QA rows of one clip. ``questions`` lists the kinds asked, in order, from ``C F A L Y X V`` (``L`` = LR,
    asked only when the clip has a lateral AU; ``Y`` = the yes and the no question; ``V`` = the MEGC2026 analysis
    prompt, one of the three official phrasings drawn per clip from ``seed`` (:func:`mevqa.vocab.analysis_question`),
    answered by mevqa's template (:func:`mevqa.vocab.analysis_answer`))."""
    if record.coarse is None:
        raise MevqaError(f"{record.where}: emotion {record.emotion!r} has no coarse class")
    pairs: list[tuple[str, str]] = []
    units = distinct_aus(parse_aus(record.au_text, record.where)) if set(questions) & set("ALYXV") else []
    if set(questions) & set("ALYXV") and not units:
        raise MevqaError(f"{record.where}: no moving action units (only static ones) in {record.au_text!r}")
    names = [unit.name for unit in units]
    rng = random.Random(f"{seed}:{record.dataset}:{record.image_id}")
    for kind in questions:
        if kind == "C":
            pairs.append((vocab.Q_COARSE, record.coarse))
        elif kind == "F":
            pairs.append((vocab.Q_FINE, record.emotion))
        elif kind == "A":
            pairs.append((vocab.au_question(names), vocab.au_answer(names)))
        elif kind == "L":
            unit = lateral_au(units)
            if unit is not None:
                pairs.append((vocab.Q_LATERALITY.format(au=unit.name), "left" if unit.side == "L" else "right"))
        elif kind == "Y":
            present = rng.choice(names)
            absent = [name for code, name in vocab.OFFICIAL_AU_NAMES.items() if code not in {u.code for u in units}]
            pairs.append((vocab.Q_PRESENCE.format(au=present), "yes"))
            pairs.append((vocab.Q_PRESENCE.format(au=rng.choice(absent)), "no"))
        elif kind == "X":
            pairs.append((vocab.composite_question(names), vocab.composite_answer(names, record.emotion,
                                                                                   record.coarse)))
        elif kind == "V":
            pairs.append((vocab.analysis_question(f"{record.dataset}:{record.image_id}", seed),
                          vocab.analysis_answer(names, record.emotion, record.coarse)))
        else:
            raise ValueError(f"unknown question kind {kind!r}")
    base = row_base(record)
    return [{"id": f"{record.dataset}_{record.image_id}_{k}", **base, "question": q, "answer": a}
            for k, (q, a) in enumerate(pairs, start=1)]


def coarse_of(fine: str) -> str | None:
    """positive / negative / surprise for a fine label of :data:`mevqa.vocab.FINE_LABELS`, else None."""
    return vocab.FINE_TO_COARSE.get(fine)


def normalise_emotion(value, mapping: dict[str, str], where: str) -> str:
    """A sheet's emotion cell -> the fine label via ``mapping`` (keys lowercase); unknown labels raise."""
    if value is None or (isinstance(value, float) and value != value):
        raise MevqaError(f"{where}: empty emotion")
    key = " ".join(str(value).strip().lower().split())
    if key not in mapping:
        raise MevqaError(f"{where}: unknown emotion {str(value).strip()!r}; expected one of "
                         f"{', '.join(sorted(set(mapping)))}")
    return mapping[key]
