"""What scoring needs to know about one QA row: its id, its split, and the label a free-text answer names."""

from __future__ import annotations

import functools
import re

from mevqa import vocab
from mevqa.dataset_facts import ALIASES, DATASETS, split_name
from mevqa.errors import MevqaError
from mevqa.rows import row_id, where  # noqa: F401 (the one row id, re-exported for scoring)

# Dataset names (the `dataset` field or the id prefix) -> the split they are reported under, from the one table of
# dataset names (CAS(ME)^3 test rows are reported as "CAS" on the leaderboard, and their ids start with "casme3").
SPLIT_OF_DATASET = {name: split_name(name) for name in (*DATASETS, *ALIASES)}
# Leaderboard order first; any other split follows alphabetically.
SPLIT_ORDER = ("samm", "cas", "casme2", "smic", "4dme")
SPLIT_TITLES = {"samm": "SAMM", "cas": "CAS", "casme2": "CASME II", "smic": "SMIC", "4dme": "4DME",
                "overall": "Overall"}
RESERVED_KEYS = ("overall", "avg", "counts")  # top-level keys of a score report; no split may take these names
UNKNOWN = "unknown"
LABELS_OF_KIND = {vocab.COARSE: vocab.COARSE_LABELS, vocab.FINE: vocab.FINE_LABELS}
# The phrase the composite answer template uses to name each class ("... the coarse expression class is negative").
# A colon in place of "is" is accepted too, since real submissions write "coarse expression class: negative".
_PHRASE_OF_KIND = {vocab.COARSE: r"coarse expression class", vocab.FINE: r"fine-grained expression class"}


def split_of(row: dict) -> str:
    """The split a row is reported under: from its ``dataset`` field, else from its id prefix.

    ``samm_006_1_2_1`` and ``samm_test_SAMM-1_1`` -> ``samm``; ``casme3_test_CAS-1_1`` -> ``cas``;
    ``casme2_...`` -> ``casme2``; ``smic_...`` -> ``smic``. Any other ``dataset`` value is its own split.
    """
    dataset = row.get("dataset")
    if dataset is not None:
        if not isinstance(dataset, str) or not dataset.strip():
            raise MevqaError(f"{where(row)}: expected 'dataset' to be a non-empty string, got {dataset!r}")
        name = dataset.strip().lower()
        split = split_name(name)
    else:
        prefix = row_id(row).split("_", 1)[0].lower()
        split = SPLIT_OF_DATASET.get(prefix)
        if split is None:
            raise MevqaError(f"{where(row)}: cannot tell the split of id {row_id(row)!r}: expected a 'dataset' field "
                             f"or an id starting with one of {', '.join(sorted(SPLIT_OF_DATASET))} and '_'")
    if split in RESERVED_KEYS:
        raise MevqaError(f"{where(row)}: {split!r} cannot name a split (reserved for the report)")
    return split


def split_sort_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


@functools.lru_cache(maxsize=None)
def _patterns(kind: str, labels: tuple[str, ...]) -> tuple[re.Pattern, re.Pattern]:
    phrase = re.compile(rf"{_PHRASE_OF_KIND[kind]}\s*(?:is\b\s*:?|:)\s*({vocab.any_of(labels)})\b")
    return phrase, vocab.whole_words(labels)


@functools.lru_cache(maxsize=1 << 16)
def _extract(text: str, kind: str, labels: tuple[str, ...]) -> str:
    text = text.strip().lower()
    if text in labels:
        return text
    phrase, word = _patterns(kind, labels)
    match = phrase.search(text) or word.search(text)
    return match.group(1) if match else UNKNOWN


def extract_label(text: str, kind: str, labels: tuple[str, ...] | list[str] | None = None) -> str:
    """The class label a free-text answer gives, or ``"unknown"``.

    ``kind`` is ``vocab.COARSE`` or ``vocab.FINE``; ``labels`` default to that kind's vocabulary. In order: the
    lower-cased, stripped answer is exactly a label; else the phrase ``coarse expression class is X`` /
    ``fine-grained expression class is X`` (or ``... class: X``) names a label X; else the first label that occurs as
    a whole word; else ``unknown``, which scores as a miss.
    """
    if kind not in LABELS_OF_KIND:
        raise ValueError(f"extract_label: kind must be {vocab.COARSE!r} or {vocab.FINE!r}, got {kind!r}")
    labels = LABELS_OF_KIND[kind] if labels is None else tuple(label.lower() for label in labels)
    return _extract(text, kind, labels)
