"""The challenge's fixed vocabulary: question strings, answer templates, labels and action-unit names.

Everything here is taken from the official MEGC2025 ME-VQA training file (see ``docs/scoring.md``):
the data builders generate with it, the prompts constrain with it, and the scorer parses with it, so a question or
label is spelled the same everywhere. The MEGC2026 ME-VQA-v2 analysis prompts come from the public v2 test questions;
the answer template for them is mevqa's own (``docs/megc2026.md``).
"""

from __future__ import annotations

import functools
import hashlib
import re

from mevqa.dataset_facts import row_dataset  # noqa: F401 (the dataset rule lives there; re-exported)
from mevqa.errors import MevqaError

# --- question kinds -------------------------------------------------------------------------------------------
COARSE = "coarse"        # C
FINE = "fine"            # F
AU = "au"                # A
LATERALITY = "lr"        # LR
PRESENCE = "yesno"       # Y
COMPOSITE = "composite"  # X
ANALYSIS = "analysis"    # V: MEGC2026 ME-VQA-v2's open analysis prompt, asked in place of the composite question
QUESTION_KINDS = (COARSE, FINE, AU, LATERALITY, PRESENCE, COMPOSITE, ANALYSIS)

Q_COARSE = "What is the coarse expression class?"
Q_FINE = "What is the fine-grained expression class?"
Q_AU_ONE = "What is the action unit?"
Q_AU_MANY = "What are the action units?"
Q_LATERALITY = "Is the action unit {au} located on the left or right face?"
Q_PRESENCE = "Is the action unit {au} shown on the face?"
Q_COMPOSITE_ONE = ("What is the action unit present, and based on it, what is the fine-grained expression and the "
                   "coarse expression class?")
Q_COMPOSITE_MANY = ("What are the action units present, and based on them, what is the fine-grained expression and "
                    "the coarse expression class?")
# MEGC2026 ME-VQA-v2: the three official phrasings of the analysis prompt (one per clip; the public v2 test
# questions, data/megc2026/README.md). The official answers to them are not public.
Q_ANALYSIS = ("Please analyse the micro-expression shown in this video in detail.",
              "Provide a detailed analysis of the micro-expression observed in this clip.",
              "Provide a comprehensive analysis of the facial micro-expression shown in this clip.")
# ME-STR spotting windows (mevqa build-spot --windows): not an official question; answered yes or no.
Q_SPOT = "Is there a micro-expression in this clip?"
A_COMPOSITE_ONE = ("The action unit present is: {aus}. Therefore, the fine-grained expression class is {fine}, "
                   "and the coarse expression class is {coarse}.")
A_COMPOSITE_MANY = ("The action units present are: {aus}. Therefore, the fine-grained expression class is {fine}, "
                    "and the coarse expression class is {coarse}.")

# mevqa's own answer to an analysis prompt (not the organisers' wording, which is not public): the clip's AUs, fine
# and coarse class, with the class phrases of the composite template so the scorer and mevqa.answering.consistency read
# them back (mevqa.eval.extract_label). No word outside the slots is, or contains, an AU name.
A_ANALYSIS_ONE = ("In this clip the face shows one action unit: {aus}. Judging from this movement, the fine-grained "
                  "expression class is {fine}, and the coarse expression class is {coarse}.")
A_ANALYSIS_MANY = ("In this clip the face shows these action units: {aus}. Judging from these movements, the "
                   "fine-grained expression class is {fine}, and the coarse expression class is {coarse}.")

_LATERALITY_RE = re.compile(r"^Is the action unit (?P<au>.+) located on the left or right face\?$")
_PRESENCE_RE = re.compile(r"^Is the action unit (?P<au>.+) shown on the face\?$")
# An analysis prompt: a request to analyse or describe (an "analysis"/"description" of) the micro-expression or the
# facial expression, in any case, spelling (analyse/analyze, micro-expression/microexpression/micro expression) or
# wording around it: the three official phrasings and their reasonable variants. Checked after the exact questions.
_ASK = r"\b(?:analy[sz]e|analy[sz]ing|analysis|describe|description)\b"
_EXPRESSION = r"\b(?:micro[- ]?|facial )expressions?\b"
_ANALYSIS_RE = re.compile(rf"{_ASK}.*{_EXPRESSION}|{_EXPRESSION}.*{_ASK}", re.IGNORECASE | re.DOTALL)


def question_kind(question: str) -> str | None:
    """The kind of an official question string, or None for a question outside the official set. The 2025 questions
    are matched exactly; an analysis prompt (MEGC2026) by what it asks (``_ANALYSIS_RE``)."""
    question = question.strip()
    if question == Q_COARSE:
        return COARSE
    if question == Q_FINE:
        return FINE
    if question in (Q_AU_ONE, Q_AU_MANY):
        return AU
    if question in (Q_COMPOSITE_ONE, Q_COMPOSITE_MANY):
        return COMPOSITE
    if _LATERALITY_RE.match(question):
        return LATERALITY
    if _PRESENCE_RE.match(question):
        return PRESENCE
    if _ANALYSIS_RE.search(question):
        return ANALYSIS
    return None


def any_of(words) -> str:
    """A regex alternation of ``words`` taken literally, the longest first where one contains another ("upper lip
    raiser" before "lip raiser")."""
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


@functools.lru_cache(maxsize=256)
def whole_words(words: tuple[str, ...]) -> re.Pattern:
    """The pattern that finds any of ``words`` as a whole word (or phrase); group 1 is the word found. The one
    label regex: the scorer's label extraction, the strategies' short answers and the AU-name reader all use it."""
    return re.compile(rf"\b({any_of(words)})\b")


def question_au(question: str) -> str | None:
    """The AU name a laterality or presence question asks about."""
    match = _LATERALITY_RE.match(question.strip()) or _PRESENCE_RE.match(question.strip())
    return match.group("au") if match else None


def au_question(au_names: list[str]) -> str:
    return Q_AU_ONE if len(au_names) == 1 else Q_AU_MANY


def au_answer(au_names: list[str]) -> str:
    return ", ".join(au_names)


def composite_question(au_names: list[str]) -> str:
    return Q_COMPOSITE_ONE if len(au_names) == 1 else Q_COMPOSITE_MANY


def composite_answer(au_names: list[str], fine: str, coarse: str) -> str:
    template = A_COMPOSITE_ONE if len(au_names) == 1 else A_COMPOSITE_MANY
    return template.format(aus=au_answer(au_names), fine=fine, coarse=coarse)


def analysis_question(key: str, seed: int) -> str:
    """The analysis prompt asked about one clip: one of :data:`Q_ANALYSIS`, drawn from ``seed`` and the clip's
    ``key`` through SHA-256, so the same on every run, machine and Python (not ``hash()``, which is salted)."""
    digest = hashlib.sha256(f"{seed}:analysis:{key}".encode()).digest()
    return Q_ANALYSIS[int.from_bytes(digest[:8], "big") % len(Q_ANALYSIS)]


def analysis_answer(au_names: list[str], fine: str, coarse: str) -> str:
    """mevqa's analysis answer (:data:`A_ANALYSIS_ONE` / :data:`A_ANALYSIS_MANY`, by the number of AUs)."""
    template = A_ANALYSIS_ONE if len(au_names) == 1 else A_ANALYSIS_MANY
    return template.format(aus=au_answer(au_names), fine=fine, coarse=coarse)


# --- labels ---------------------------------------------------------------------------------------------------
COARSE_LABELS = ("positive", "negative", "surprise")
# Fine labels of the training file (dataset labels lower-cased; "others" clips are left out).
FINE_LABELS = ("happiness", "surprise", "disgust", "repression", "anger", "contempt", "fear", "sadness")
# happiness -> positive, surprise -> surprise, every other fine label -> negative.
FINE_TO_COARSE = {label: ("positive" if label == "happiness" else "surprise" if label == "surprise" else "negative")
                  for label in FINE_LABELS}
LATERALITY_ANSWERS = ("left", "right")
PRESENCE_ANSWERS = ("yes", "no")

# The fine classes each dataset's annotation allows (its convention; "others" is left out, as in the training file).
# CASME II and SAMM: the classes of their rows in the official training file; CAS(ME)^3: the six classes the 2025
# paper names for the test set; SMIC and 4DME: coarse labels only. Keyed by dataset name as rows spell it (the
# ``dataset`` field or the id prefix, see :func:`mevqa.dataset_facts.row_dataset`). Users may set their own
# (:func:`fine_labels_for`).
DATASET_FINE_LABELS = {
    "casme2": ("happiness", "surprise", "disgust", "repression"),
    "samm": ("happiness", "surprise", "disgust", "anger", "contempt", "fear", "sadness"),
    "casme3": ("happiness", "surprise", "disgust", "anger", "fear", "sadness"),
    "smic": (),
    "4dme": (),
}


def fine_labels_for(dataset: str | None, overrides: dict | None = None) -> tuple[str, ...]:
    """The fine classes allowed for ``dataset``: ``overrides[dataset]`` if given, else the dataset's convention, else
    (unknown dataset) every fine label. Labels outside :data:`FINE_LABELS` are an error (the scorer cannot read them)."""
    if overrides and dataset in overrides:
        labels = tuple(str(label).strip().lower() for label in overrides[dataset])
        unknown = [label for label in labels if label not in FINE_LABELS]
        if unknown or not labels:
            raise MevqaError(f"fine labels for {dataset}: expected a non-empty list from {', '.join(FINE_LABELS)}, "
                             f"got {', '.join(labels) or 'none'}")
        return labels
    if dataset is None:
        return FINE_LABELS
    return DATASET_FINE_LABELS.get(dataset, FINE_LABELS)


def fine_labels_under(coarse: str, fine_labels=FINE_LABELS) -> tuple[str, ...]:
    """The fine classes of ``fine_labels`` that the coarse class allows (happiness under positive, surprise under
    surprise, the others under negative), in the order given."""
    return tuple(label for label in fine_labels if FINE_TO_COARSE[label] == coarse)

# --- action units ---------------------------------------------------------------------------------------------
# FACS code -> the lowercase name the official file uses. The 25 names of the official file come first, spelled as
# there ("nostril dilater" sic); the rest extend the table in the same style for AUs the file never asks about.
OFFICIAL_AU_NAMES = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser", 6: "cheek raiser",
    7: "lid tightener", 9: "nose wrinkler", 10: "upper lip raiser", 12: "lip corner puller", 14: "dimpler",
    15: "lip corner depressor", 16: "lower lip depressor", 17: "chin raiser", 20: "lip stretcher",
    21: "neck tightener", 23: "lip tightener", 24: "lip pressor", 25: "lips part", 26: "jaw drop",
    31: "jaw clencher", 38: "nostril dilater", 39: "nostril compress", 43: "eye closure", 56: "tilt right",
    61: "eyes left",
}
EXTRA_AU_NAMES = {
    8: "lips toward each other", 11: "nasolabial deepener", 13: "sharp lip puller", 18: "lip pucker",
    19: "tongue show", 22: "lip funneler", 27: "mouth stretch", 28: "lip suck", 29: "jaw thrust",
    30: "jaw sideways", 32: "lip bite", 33: "cheek blow", 34: "cheek puff", 35: "cheek suck", 36: "tongue bulge",
    37: "lip wipe", 41: "lid droop", 42: "slit", 44: "squint", 45: "blink", 46: "wink", 51: "head turn left",
    52: "head turn right", 53: "head up", 54: "head down", 55: "tilt left", 57: "head forward", 58: "head back",
    62: "eyes right", 63: "eyes up", 64: "eyes down",
}
AU_NAMES = {**OFFICIAL_AU_NAMES, **EXTRA_AU_NAMES}
AU_CODES = {name: code for code, name in AU_NAMES.items()}
