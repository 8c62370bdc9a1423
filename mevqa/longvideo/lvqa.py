"""ME-LVQA (MEGC2026 task 2): questions about a whole long video, their kinds, the answers events give, and the
lenient reading of answers that scoring uses.

Public API::

    COUNT_ALL, COUNT_MICRO, COUNT_MACRO, DISTINCT_AUS, EVENT_TYPE, LVQA_KINDS
    Q_COUNT_ALL, Q_COUNT_MICRO, Q_COUNT_MACRO, Q_DISTINCT_AUS, type_question(n), video_questions(type_numbers)
    LvqaQuestion(kind, n)
    lvqa_question(text) -> LvqaQuestion | None         # the kind of a question, recognised, not matched
    recognise(text, where) -> LvqaQuestion              # ... or one line naming ``where``
    Event(onset, offset, type, aus), number_events(events) -> list[Event]
    answer(question, events) -> (text, note)          # the participants' form; note says when a rule filled in
    parse_count(text), parse_type(text), parse_au_set(text)   # None when unparseable

The official questions (``data/megc2026/test/``), six per video in this order: how many expression events, how
many micro-expression events, how many macro-expression events, which distinct action units, then twice the type of
the N-th expression event (N written ``1-th``, ``23-th``). Answers as participants give them: an integer; the type as
``micro-expression`` or ``macro-expression``; AU names (:data:`mevqa.vocab.AU_NAMES`) joined by ``, `` in FACS code
order, and ``none`` for no AU at all (a submission refuses blank answers).

Events are numbered by onset; equal onsets by offset (the shorter first), then micro before macro, then the order
given (docs/megc2026.md). Only micro- and macro-expressions are events: the readers leave rows of other types out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mevqa import vocab
from mevqa.answering.au_rules import parse_au_names
from mevqa.data_builders.qa import parse_aus
from mevqa.errors import MevqaError

COUNT_ALL, COUNT_MICRO, COUNT_MACRO = "count_all", "count_micro", "count_macro"
DISTINCT_AUS, EVENT_TYPE = "distinct_aus", "event_type"
LVQA_KINDS = (COUNT_ALL, COUNT_MICRO, COUNT_MACRO, DISTINCT_AUS, EVENT_TYPE)
COUNT_KINDS = (COUNT_ALL, COUNT_MICRO, COUNT_MACRO)

Q_COUNT_ALL = "How many expression events appear in this video?"
Q_COUNT_MICRO = "How many micro-expression events appear in this video?"
Q_COUNT_MACRO = "How many macro-expression events appear in this video?"
Q_DISTINCT_AUS = "What distinct action units appear in this video?"
Q_EVENT_TYPE = "What is the expression type of the {n}-th expression event in this video?"
# Asked of a VQA model about one spotted interval (not an official question).
Q_INTERVAL_TYPE = "Is this a micro-expression or a macro-expression?"

MICRO, MACRO = "micro", "macro"
TYPE_ANSWERS = {MICRO: "micro-expression", MACRO: "macro-expression"}
NO_AUS = "none"
# An N-th event past the last one found: the type most events of the video have, and on a tie (or no event) the
# type most frequent in both datasets' sheets (SAMM-LV and CAS(ME)^3 have more macro- than micro-expressions).
FALLBACK_TYPE = MACRO


def type_question(n: int) -> str:
    return Q_EVENT_TYPE.format(n=n)


def video_questions(type_numbers: list[int]) -> list[str]:
    """The questions of one video in the official order: the three counts, the AUs, then one type question per
    number in ``type_numbers``."""
    return [Q_COUNT_ALL, Q_COUNT_MICRO, Q_COUNT_MACRO, Q_DISTINCT_AUS, *(type_question(n) for n in type_numbers)]


@dataclass(frozen=True)
class LvqaQuestion:
    kind: str
    n: int | None = None          # the N of the N-th event (EVENT_TYPE only), from 1


_ORDINAL = re.compile(r"\b(\d+)\s*-?\s*(?:th|st|nd|rd)\b")
_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
                  "eighth": 8, "ninth": 9, "tenth": 10}


def lvqa_question(text: str) -> LvqaQuestion | None:
    """The kind of an ME-LVQA question, recognised from what it asks (so rewordings such as "How many
    micro-expressions are there?" or "the 2nd event" are read too), or None."""
    q = " ".join(str(text).lower().replace("microexpression", "micro-expression")
                 .replace("macroexpression", "macro-expression").split())
    micro, macro = "micro" in q, "macro" in q
    if re.search(r"\btype\b", q) and "event" in q:
        match = _ORDINAL.search(q)
        word = re.search(r"\b(" + "|".join(_ORDINAL_WORDS) + r")\b", q)
        n = int(match.group(1)) if match else _ORDINAL_WORDS[word.group(1)] if word else None
        return LvqaQuestion(EVENT_TYPE, n) if n and n >= 1 else None
    if q.startswith("how many") and ("event" in q or "expression" in q) and "action unit" not in q:
        if micro == macro:
            return LvqaQuestion(COUNT_ALL)
        return LvqaQuestion(COUNT_MICRO if micro else COUNT_MACRO)
    # "distinct" or "video": the ME-VQA AU questions ("What are the action units?") ask about a short clip
    if ("action unit" in q or re.search(r"\baus\b", q)) and ("distinct" in q or "video" in q) \
            and not q.startswith("how many"):
        return LvqaQuestion(DISTINCT_AUS)
    return None


def recognise(text, where: str) -> LvqaQuestion:
    """:func:`lvqa_question`, or one line naming ``where`` when the question is of no ME-LVQA kind."""
    found = lvqa_question(text) if isinstance(text, str) else None
    if found is None:
        raise MevqaError(f"{where}: {text!r} is not an ME-LVQA question (expected how many expression / micro / macro "
                         "events, which distinct action units, or the expression type of the N-th event)")
    return found


def refuse_in_clip_task(text: str, where: str, instead: str) -> None:
    """One line naming ``where`` when ``text``, asked where an ME-VQA question about a short clip is expected, is an
    ME-LVQA question about a whole long video (an LVQA file given to the clip task's commands); ``instead`` names
    the command for it. The 2025 and 2026 ME-VQA questions are of no ME-LVQA kind."""
    if vocab.question_kind(text) is None and lvqa_question(text) is not None:
        raise MevqaError(f"{where}: {text!r} is an ME-LVQA question about a whole long video; {instead}")


# --- events ---------------------------------------------------------------------------------------------------
@dataclass
class Event:
    onset: int
    offset: int
    type: str                     # micro | macro
    aus: list[str] = field(default_factory=list)   # AU names (vocab.AU_NAMES)

    def as_dict(self) -> dict:
        return {"onset": self.onset, "offset": self.offset, "type": self.type, "aus": list(self.aus)}


def number_events(events: list[Event]) -> list[Event]:
    """Events in answer order: by onset, then offset, then micro before macro, then as given."""
    order = {MICRO: 0, MACRO: 1}
    return [event for _, event in sorted(enumerate(events), key=lambda item: (
        item[1].onset, item[1].offset, order.get(item[1].type, 2), item[0]))]


def au_names_of(labels, where: str) -> list[str]:
    """AU names of sheet AU labels (``L10``, ``14A``, ``12``), each once, in FACS code order."""
    codes = {unit.code for label in labels for unit in parse_aus(label, where)}
    return [vocab.AU_NAMES[code] for code in sorted(codes)]


def au_answer(names) -> str:
    """AU names in the participants' form: FACS code order, joined by ``, ``; ``none`` for no AU."""
    ordered = sorted(set(names), key=lambda name: vocab.AU_CODES.get(name, 1000))
    return ", ".join(ordered) if ordered else NO_AUS


def answer(question: LvqaQuestion, events: list[Event]) -> tuple[str, str | None]:
    """The answer ``events`` (in :func:`number_events` order) give to ``question``, in the participants' form, and
    a note when a rule had to fill in (the N-th event past the last one)."""
    if question.kind == COUNT_ALL:
        return str(len(events)), None
    if question.kind in (COUNT_MICRO, COUNT_MACRO):
        wanted = MICRO if question.kind == COUNT_MICRO else MACRO
        return str(sum(event.type == wanted for event in events)), None
    if question.kind == DISTINCT_AUS:
        return au_answer(name for event in events for name in event.aus), None
    if question.n <= len(events):
        return TYPE_ANSWERS[events[question.n - 1].type], None
    micro = sum(event.type == MICRO for event in events)
    macro = len(events) - micro
    kind = MICRO if micro > macro else MACRO if macro > micro else FALLBACK_TYPE
    return TYPE_ANSWERS[kind], (f"event {question.n} asked, {len(events)} found: answered the video's most frequent "
                                f"type ({kind}; {FALLBACK_TYPE} on a tie)")


# --- reading answers (scoring) --------------------------------------------------------------------------------
_NUMBER_WORDS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NONE_WORDS = re.compile(r"^\s*(?:none|no|nothing|no events?|no action units?|no aus?|n/?a)?\s*[.!]?\s*$")


# A number in digits, with its sign, decimals and exponent, so that "-2", "1.5" and "1e3" are read whole and refused
# rather than read as 2, 1 and 1.
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")
# No video holds a million events: a longer run of digits is not a count (and its square overflows a float).
MAX_COUNT_DIGITS = 6


def parse_count(text) -> int | None:
    """The count an answer gives: its first number in digits when that is a whole number of at most six digits
    ("2 events" -> 2; "-2", "1.5", "1e3" -> None), else its first number word up to twenty ("three" -> 3), else 0
    for "none"/"no"; None otherwise."""
    text = str(text).lower()
    number = _NUMBER.search(text)
    if number:
        digits = number.group(0).lstrip("+")
        return int(digits) if digits.isdigit() and len(digits) <= MAX_COUNT_DIGITS else None
    word = re.search(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", text)
    if word:
        return _NUMBER_WORDS[word.group(1)]
    return 0 if text.strip() and _NONE_WORDS.match(text) else None


def parse_type(text) -> str | None:
    """``micro`` or ``macro`` when the answer names exactly one of them; None otherwise (neither, or both)."""
    text = str(text).lower()
    micro, macro = "micro" in text, "macro" in text
    return None if micro == macro else MICRO if micro else MACRO


_AU_CODE = re.compile(r"\bau\s*[lrtbu]?\s*(\d+)\b")


def parse_au_set(text) -> frozenset[str] | None:
    """The AU names an answer gives: names of :data:`mevqa.vocab.AU_NAMES` and ``AU12``-style codes mapped to
    names; the empty set for an empty answer or "none"; None when it names no AU, or a code outside the
    vocabulary."""
    text = str(text)
    lowered = text.lower()
    names = set(parse_au_names(lowered))
    for code in _AU_CODE.findall(lowered):
        if int(code) not in vocab.AU_NAMES:
            return None
        names.add(vocab.AU_NAMES[int(code)])
    if names:
        return frozenset(names)
    return frozenset() if not lowered.strip() or _NONE_WORDS.match(lowered) else None
