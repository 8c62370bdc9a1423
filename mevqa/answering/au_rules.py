"""AU -> emotion rule tables: the fine (and so coarse) class derived from a clip's action units.

Public API::

    load_table(name_or_path) -> RuleTable     # a shipped table by name, or any YAML file
    SHIPPED_TABLES                            # {name: path} of the tables in mevqa/answering/au_rule_tables/
    DEFAULT_TABLES                            # {dataset: table name} used by the au-rules strategy unless set
    RuleTable.match(au_names) -> Rule | None  # the first rule that holds, else None
    parse_au_names(text) -> list[str]         # AU names named in a free-text answer, in order, once each

Shipped tables: ``samm`` (SAMM's convention: AU4/AU7 anger, AU14 contempt), ``casme2`` (CASME II's: AU4 disgust,
AU14/AU15/AU17 repression) and ``emotion_qwen_vl`` (the published rule order of Emotion-Qwen-VL, 1st place in
MEGC2025: AU12 happiness; else AU25 surprise; else AU4 without AU9 anger, with AU9 disgust; else fear or sadness).
The same AU means different classes in different datasets (AU4 is anger in SAMM and disgust in CASME II), so the
table follows the clip's dataset. ``benchmarks/au_rules_figures.py`` prints how often each table recovers the gold
fine class from the gold AUs of the official training file.

Table format (YAML)::

    name: samm
    description: one line
    rules:                                   # tried top to bottom; the first that holds decides
      - {fine: happiness, any: [12]}         # holds if the clip has AU12
      - {fine: anger, all: [4], none: [9]}   # AU4 and not AU9
      - {fine: fear, all: ["AU1", "AU2", "AU4"]}

A rule holds when the clip has every AU of ``all``, at least one of ``any`` (if given) and none of ``none``; it needs
``all`` or ``any``. AUs are FACS codes, as numbers or ``"AU12"``. ``fine`` is one of the fine labels
(:data:`mevqa.vocab.FINE_LABELS`); the coarse class follows it. A bad table is an error naming the file and the rule.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.rows import clip_key

TABLES_DIR = Path(__file__).resolve().parent / "au_rule_tables"
SHIPPED_TABLES = {path.stem: path for path in sorted(TABLES_DIR.glob("*.yaml"))}
# CAS(ME)^3 gets the 1st place's table: its classes are exactly the six fine classes of the 2025 test set.
DEFAULT_TABLES = {"samm": "samm", "casme2": "casme2", "casme3": "emotion_qwen_vl"}
_RULE_KEYS = ("fine", "all", "any", "none")
_TABLE_KEYS = ("name", "description", "rules")


@dataclass(frozen=True)
class Rule:
    fine: str
    all_of: frozenset[int] = frozenset()
    any_of: frozenset[int] = frozenset()
    none_of: frozenset[int] = frozenset()
    number: int = 0  # 1-based position in its table

    def holds(self, codes: set[int]) -> bool:
        return (self.all_of <= codes and (not self.any_of or bool(self.any_of & codes))
                and not self.none_of & codes)

    def describe(self) -> str:
        """``"rule 3: AU4 without AU9 -> anger"``."""
        def aus(codes, joiner):
            return joiner.join(f"AU{code}" for code in sorted(codes))
        parts = []
        if self.all_of:
            parts.append(aus(self.all_of, "+"))
        if self.any_of:
            parts.append(aus(self.any_of, " or ") if len(self.any_of) > 1 or self.all_of else aus(self.any_of, ""))
        text = " with ".join(parts)
        if self.none_of:
            text += f" without {aus(self.none_of, ' or ')}"
        return f"rule {self.number}: {text} -> {self.fine}"


@dataclass(frozen=True)
class RuleTable:
    name: str
    source: str
    rules: tuple[Rule, ...]
    description: str = ""

    def match(self, au_names) -> Rule | None:
        """The first rule that holds for a clip with these AU names (official names; others are ignored)."""
        codes = {vocab.AU_CODES[name] for name in au_names if name in vocab.AU_CODES}
        return next((rule for rule in self.rules if rule.holds(codes)), None)


def _code(value, where: str) -> int:
    code = value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(?:AU)?\s*0*(\d+)\s*", value, re.IGNORECASE)
        code = int(match.group(1)) if match else None
    if isinstance(code, bool) or not isinstance(code, int) or code not in vocab.AU_NAMES:
        raise MevqaError(f"{where}: {value!r} is not a known FACS AU code (e.g. 12 or \"AU12\")")
    return code


def _rule(entry, number: int, source: str) -> Rule:
    where = f"{source}: rule {number}"
    if not isinstance(entry, dict):
        raise MevqaError(f"{where}: expected a mapping with {', '.join(_RULE_KEYS)}, got {type(entry).__name__}")
    fine = entry.get("fine")
    if fine not in vocab.FINE_LABELS:
        raise MevqaError(f"{where}: 'fine' must be one of {', '.join(vocab.FINE_LABELS)}, got {fine!r}")
    where = f"{where} ({fine})"
    unknown = sorted(set(entry) - set(_RULE_KEYS))
    if unknown:
        raise MevqaError(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(_RULE_KEYS)}")
    sets = {}
    for key in ("all", "any", "none"):
        value = entry.get(key, [])
        if not isinstance(value, list):
            raise MevqaError(f"{where}: '{key}' must be a list of AU codes, got {value!r}")
        sets[key] = frozenset(_code(item, f"{where}: '{key}'") for item in value)
    if not sets["all"] and not sets["any"]:
        raise MevqaError(f"{where}: needs 'all' or 'any' (a rule without AUs would hold for every clip)")
    if sets["none"] & (sets["all"] | sets["any"]):
        raise MevqaError(f"{where}: an AU is both required and excluded")
    return Rule(fine, sets["all"], sets["any"], sets["none"], number)


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int) -> RuleTable:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise MevqaError(f"{path}: cannot read the AU rule table ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise MevqaError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save "
                         "the AU rule table as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise MevqaError(f"{path}{line}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise MevqaError(f"{path}: expected a mapping with {', '.join(_TABLE_KEYS)}")
    unknown = sorted(set(data) - set(_TABLE_KEYS))
    if unknown:
        raise MevqaError(f"{path}: unknown key {unknown[0]!r}; expected {', '.join(_TABLE_KEYS)}")
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise MevqaError(f"{path}: 'rules' must be a non-empty list")
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str) or not name.strip():
        raise MevqaError(f"{path}: 'name' must be a non-empty string, got {name!r}")
    return RuleTable(name, path, tuple(_rule(entry, i, path) for i, entry in enumerate(rules, start=1)),
                     str(data.get("description", "")))


def load_table(name_or_path: str | Path) -> RuleTable:
    """A shipped table by name (:data:`SHIPPED_TABLES`), else a YAML file at that path."""
    path = SHIPPED_TABLES.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise MevqaError(f"AU rule table {str(name_or_path)!r}: no such file, and not a shipped table "
                         f"({', '.join(SHIPPED_TABLES)})")
    return _load(str(path), path.stat().st_mtime_ns)


def tables_for(mapping: dict[str, str | Path] | None = None) -> dict[str, RuleTable]:
    """``{dataset: RuleTable}`` for ``mapping`` (default :data:`DEFAULT_TABLES`); datasets left out get no rules."""
    mapping = DEFAULT_TABLES if mapping is None else mapping
    return {dataset: load_table(table) for dataset, table in mapping.items()}


def _name_pattern() -> re.Pattern:
    return vocab.whole_words(tuple(vocab.AU_NAMES.values()))


def parse_au_names(text: str) -> list[str]:
    """The FACS AU names (:data:`mevqa.vocab.AU_NAMES`) a free-text answer names, in order of first mention, each
    once. Codes such as "AU4" are not read: real answers pair them with wrong names."""
    found = []
    for match in _name_pattern().finditer(str(text).lower()):
        if match.group(1) not in found:
            found.append(match.group(1))
    return found


def gold_clips(rows: list[dict]) -> list[dict]:
    """``{"dataset", "clip", "aus", "fine"}`` for every clip of QA rows (e.g. the official training file) that has
    a gold AU answer and a gold fine answer."""
    clips: dict = {}
    for row in rows:
        kind = vocab.question_kind(str(row.get("question", "")))
        if kind in (vocab.AU, vocab.FINE):
            clips.setdefault(clip_key(row), {"dataset": vocab.row_dataset(row), "clip": clip_key(row)})[kind] = \
                str(row.get("answer", ""))
    return [{"dataset": clip["dataset"], "clip": clip["clip"], "aus": parse_au_names(clip[vocab.AU]),
             "fine": clip[vocab.FINE].strip().lower()}
            for clip in clips.values() if vocab.AU in clip and vocab.FINE in clip]


def recovery(clips: list[dict], table: RuleTable) -> dict:
    """How often ``table`` gives the gold fine class from the gold AUs: ``{"clips", "fired", "correct",
    "recovered" (correct / clips), "precision" (correct / fired)}``."""
    fired = correct = 0
    for clip in clips:
        rule = table.match(clip["aus"])
        fired += rule is not None
        correct += rule is not None and rule.fine == clip["fine"]
    return {"clips": len(clips), "fired": fired, "correct": correct,
            "recovered": correct / len(clips) if clips else 0.0, "precision": correct / fired if fired else 0.0}
