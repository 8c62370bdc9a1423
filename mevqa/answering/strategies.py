"""Answer strategies: how a model's answers to QA rows are produced (the 2025 systems' answer-time methods).

Public API::

    answer_rows(model, processor, rows, mode, strategy="direct", *, options=None, batch_size=8,
                system_prompt="default", max_frames=None, image_pixels=None, video_pixels=None, video_fps=None,
                progress=False) -> list[Answer]
    parse_strategy("hierarchical+constrained") -> Strategy      # errors name refused combinations
    Answer(text, label_probs=None, au_steps=None, votes=None, rule=None, coarse_hint=None, consistency=None)
        .record() -> dict                                       # the fields set, for predictions.jsonl
    StrategyOptions(votes=5, vote_temperature=0.5, seed=0, fine_labels=None, au_tables=None, max_aus=8,
                    max_new_tokens=64, do_sample=False, temperature=1.0, top_p=1.0, top_k=None,
                    repetition_penalty=1.0)
    vote_answer(samples, question) -> str                       # the majority answer of sampled answers
    parse_dataset_items(["samm=VALUE"], where, what) -> {"samm": "VALUE"}   # DATASET=VALUE flags and config items
    parse_fine_labels(["samm=anger,happiness"], where) -> {"samm": ["anger", "happiness"]}
    parse_au_tables(["samm=emotion_qwen_vl"], where) -> {"samm": "emotion_qwen_vl"}  # a table name or a YAML path
    check_options(strategy, options, where="") -> None          # every option checked (tables loaded) before work
    uses_option(strategy, "votes") -> bool                      # whether the strategy reads that option
    options_record(strategy, options) -> dict                   # the options the strategy uses, as run.json keeps them

A strategy is one answer mechanism, optionally with modifiers, joined by ``+`` (``hierarchical+constrained``):

- mechanisms (one at most; default ``direct``):
  - ``direct``: generation, as :func:`mevqa.answering.generation.generate_answers` (today's behaviour): greedy, or
    sampled with ``options.do_sample`` at ``options.temperature``.
  - ``constrained``: every label question is answered by scoring its allowed answers
    (:mod:`mevqa.answering.label_scoring`) and taking the most probable, so the answer is always a valid label. Coarse:
    the 3 classes; fine: the row's dataset convention (:data:`mevqa.vocab.DATASET_FINE_LABELS`, or
    ``options.fine_labels``); presence: yes/no; laterality: left/right; ``Answer.label_probs`` holds the
    probabilities (summing to 1). AU lists: "What is the action unit?" is one choice among the 25 official names;
    "What are the action units?" is built name by name (:func:`mevqa.answering.label_scoring.greedy_au_list`, two or
    more names, ``Answer.au_steps``). The composite answer is assembled in the official template from the clip's own
    constrained AU, fine and coarse answers (asking those questions when the clip's rows do not). The MEGC2026
    analysis prompt stays free text (generated), as do questions outside the official set.
  - ``vote``: ``options.votes`` answers sampled at ``options.vote_temperature`` (TIE, 3rd place 2025: 5 at 0.5),
    then the majority: per label for label questions, per AU for AU lists (an AU is kept when more than half the
    samples name it), and the composite rebuilt from its voted parts (:func:`vote_answer`; samples that all agree
    are kept as written); an analysis answer (free text) is the first sample naming the voted AUs, fine and coarse
    class, else the most frequent sample. Each row's sampling is seeded from ``options.seed`` and the row's clip and
    question, so results do not depend on batching or on which other rows are answered. Temperature 0 means
    greedy, so 1 vote at temperature 0 equals ``direct``.
- modifiers:
  - ``hierarchical`` (HierMEQA, 2nd place 2025): the fine question is asked after the clip's coarse answer, with the
    coarse class and the fine classes it allows stated in the prompt (:func:`mevqa.messages.coarse_hint_text`;
    train for it with ``QADataset(gold_coarse_hint=True)``) and, under ``constrained``, only those classes scored.
    A coarse class that allows one fine class (positive -> happiness, surprise -> surprise) answers it directly.
    ``Answer.coarse_hint`` records the coarse class used.
  - ``au-rules`` (Emotion-Qwen-VL, 1st place 2025): the fine and coarse answers are derived from the clip's
    predicted AUs by the rule table of the clip's dataset (:mod:`mevqa.answering.au_rules`, ``options.au_tables``);
    where no rule fires (or the dataset has no table), the mechanism's answer stands. ``Answer.rule`` names the rule.

Refused: two mechanisms together (``constrained+vote``, ``direct+vote``, ...): each is a different way to produce
the same answer. Modifiers combine with every mechanism and with each other (``au-rules+hierarchical``: a rule
decides where one fires, else the hierarchical answer).

Rows of one clip (grouped by :func:`mevqa.answering.consistency.clip_key`) answered in the same call share answers: a
fine row under ``hierarchical`` uses the clip's coarse row, ``au-rules`` the clip's AU row. A clip without such a row
gets the question asked for it (coarse: the official coarse question; AU: "What are the action units?", one or more
names), so a row can be answered without the rest of its clip; pass whole clips to use the clip's own answers. Agreement
between a clip's answers (the composite repeating the fine answer, the coarse class the fine one implies) is
:mod:`mevqa.answering.consistency`'s job.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from mevqa import vocab
from mevqa.answering.au_rules import DEFAULT_TABLES, SHIPPED_TABLES, parse_au_names, tables_for
from mevqa.answering.generation import generate_answers
from mevqa.answering.label_scoring import best, choice_probabilities, greedy_au_list
from mevqa.errors import MevqaError
from mevqa.messages import row_id
from mevqa.rows import clip_key

MECHANISMS = ("direct", "constrained", "vote")
MODIFIERS = ("hierarchical", "au-rules")
STRATEGY_NAMES = MECHANISMS + MODIFIERS
# The options of the command line and the config that only some strategies read: option -> the parts that read it.
OPTION_USERS = {"votes": ("vote",), "vote_temperature": ("vote",), "fine_labels": ("constrained", "hierarchical"),
                "au_tables": ("au-rules",), "max_aus": ("constrained",)}
_AU_NAMES = tuple(vocab.OFFICIAL_AU_NAMES.values())  # ascending FACS code order


# --- types --------------------------------------------------------------------------------------------------------
@dataclass
class Answer:
    """One answered row: the answer text and how it was reached."""
    text: str
    label_probs: dict[str, float] | None = None      # constrained: P(label) over the allowed labels (sums to 1)
    au_steps: list[dict[str, float]] | None = None   # constrained AU list: each step's distribution ("<end>": stop)
    votes: list[str] | None = None                   # vote: the sampled answers
    rule: str | None = None                          # au-rules: the table and rule that gave the answer
    coarse_hint: str | None = None                   # hierarchical: the coarse class stated in the fine prompt
    consistency: str | None = None                   # mevqa.answering.consistency: what it changed, and why

    def record(self) -> dict:
        """The fields set besides ``text``, as they go into ``predictions.jsonl``."""
        return {key: value for key, value in asdict(self).items() if key != "text" and value is not None}


@dataclass(frozen=True)
class Strategy:
    mechanism: str = "direct"
    hierarchical: bool = False
    au_rules: bool = False

    @property
    def name(self) -> str:
        """The canonical spelling: modifiers first, then the mechanism (``hierarchical+constrained``)."""
        parts = [name for name, on in (("au-rules", self.au_rules), ("hierarchical", self.hierarchical)) if on]
        if self.mechanism != "direct" or not parts:
            parts.append(self.mechanism)
        return "+".join(parts)


@dataclass
class StrategyOptions:
    votes: int = 5                                   # vote: answers sampled per row
    vote_temperature: float = 0.5                    # vote: sampling temperature (0: greedy)
    seed: int = 0                                    # vote: base seed of every row's sampling
    fine_labels: dict[str, list[str]] | None = None  # {dataset: allowed fine labels}, over the dataset convention
    au_tables: dict[str, str] | None = None          # {dataset: table name or YAML path}; None: the shipped default
    max_aus: int = 8                                 # constrained: longest AU list (official answers have <= 5)
    max_new_tokens: int = 64                         # generation (direct, vote, free questions)
    do_sample: bool = False                          # direct and free questions: sample instead of greedy
    temperature: float = 1.0                         # ... at this temperature (vote has its own)
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float = 1.0


def parse_strategy(spec: str | Strategy) -> Strategy:
    """``"hierarchical+constrained"`` -> :class:`Strategy`; unknown names and refused combinations are errors."""
    if isinstance(spec, Strategy):
        return spec
    names = [part.strip() for part in str(spec).split("+")]
    for name in names:
        if name not in STRATEGY_NAMES:
            raise MevqaError(f"strategy {spec!r}: unknown part {name!r}; choose from {', '.join(STRATEGY_NAMES)} "
                             "(combine with '+', e.g. hierarchical+constrained)")
    if len(set(names)) != len(names):
        raise MevqaError(f"strategy {spec!r}: a part is repeated")
    mechanisms = [name for name in names if name in MECHANISMS]
    if len(mechanisms) > 1:
        raise MevqaError(f"strategy {spec!r}: {' and '.join(mechanisms)} cannot combine (each is a way to produce "
                         "the answer; choose one, with hierarchical and/or au-rules if wanted)")
    return Strategy(mechanisms[0] if mechanisms else "direct", "hierarchical" in names, "au-rules" in names)


# --- options from the command line and configs ---------------------------------------------------------------
def uses_option(strategy: str | Strategy, option: str) -> bool:
    """Whether ``strategy`` reads ``option`` (a key of :data:`OPTION_USERS`)."""
    strategy = parse_strategy(strategy)
    parts = {strategy.mechanism} | ({"hierarchical"} if strategy.hierarchical else set()) \
        | ({"au-rules"} if strategy.au_rules else set())
    return bool(parts & set(OPTION_USERS[option]))


def parse_dataset_items(items, where: str, what: str) -> dict[str, str]:
    """``["samm=VALUE", ...]`` -> ``{"samm": "VALUE"}``; the dataset as rows spell it (:func:`mevqa.vocab.row_dataset`,
    so ``cas`` is ``casme3``); a repeated or unknown dataset is an error."""
    found: dict[str, str] = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        dataset = vocab.row_dataset({"dataset": name.strip()}) if name.strip() else None
        if not sep or not value.strip():
            raise MevqaError(f"{where}: expected DATASET={what}, got {item!r}")
        if dataset is None:
            raise MevqaError(f"{where}: {item!r}: unknown dataset {name.strip()!r}; expected one of "
                             f"{', '.join(vocab.DATASET_FINE_LABELS)}")
        if dataset in found:
            raise MevqaError(f"{where}: dataset {dataset} is given twice")
        found[dataset] = value.strip()
    return found


def parse_fine_labels(items, where: str = "fine labels") -> dict[str, list[str]] | None:
    """``["samm=anger,happiness", ...]`` (the ``--fine-labels`` / ``answer_fine_labels`` form) -> ``{"samm":
    ["anger", "happiness"]}``, checked against :data:`mevqa.vocab.FINE_LABELS`; None when no item is given."""
    found = {}
    for dataset, value in parse_dataset_items(items, where, "LABEL,LABEL,...").items():
        labels = [label.strip() for label in value.split(",") if label.strip()]
        try:
            found[dataset] = list(vocab.fine_labels_for(dataset, {dataset: labels}))
        except MevqaError as exc:
            raise MevqaError(f"{where}: {exc}") from None
        if len(set(found[dataset])) != len(found[dataset]):
            raise MevqaError(f"{where}: fine labels for {dataset} repeat a label: {value}")
    return found or None


def parse_au_tables(items, where: str = "AU rule tables") -> dict[str, str] | None:
    """``["samm=emotion_qwen_vl", "casme2=my_rules.yaml"]`` (the ``--au-rules`` / ``answer_au_tables`` form) ->
    ``{dataset: table name or YAML path}``; None when no item is given (the shipped defaults,
    :data:`mevqa.answering.au_rules.DEFAULT_TABLES`). Given items replace the defaults: only the datasets named get
    rules."""
    return parse_dataset_items(items, where, "TABLE (a shipped table name or a YAML file)") or None


def check_options(strategy: str | Strategy, options: StrategyOptions, where: str = "") -> None:
    """Check every option the strategy uses (the rule tables are loaded), so that bad settings fail before a model
    is loaded; errors are one line, prefixed with ``where``."""
    strategy = parse_strategy(strategy)
    prefix = f"{where}: " if where else ""
    try:
        if strategy.mechanism == "vote":
            if isinstance(options.votes, bool) or not isinstance(options.votes, int) or options.votes < 1:
                raise MevqaError(f"votes must be at least 1, got {options.votes!r}")
            temperature = options.vote_temperature
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                    or not 0 <= temperature < float("inf"):
                raise MevqaError(f"vote temperature must be 0 (greedy) or more, got {temperature!r}")
        if strategy.mechanism == "constrained" and (isinstance(options.max_aus, bool)
                                                    or not isinstance(options.max_aus, int) or options.max_aus < 1):
            raise MevqaError(f"max AUs must be at least 1, got {options.max_aus!r}")
        for dataset, labels in (options.fine_labels or {}).items():
            vocab.fine_labels_for(dataset, {dataset: labels})
        if strategy.au_rules:
            tables_for(options.au_tables)
    except MevqaError as exc:
        raise MevqaError(f"{prefix}{exc}") from None


def options_record(strategy: str | Strategy, options: StrategyOptions) -> dict:
    """The strategy's canonical name and the options it uses, as ``run.json`` records them: a rule table by what
    was given, its resolved file and the SHA-256 of its content (an edited table is another setting). Generation
    settings (``max_new_tokens``, sampling) are recorded with the generation settings, not here."""
    strategy = parse_strategy(strategy)
    record: dict = {"name": strategy.name}
    if strategy.mechanism == "vote":
        record.update(votes=options.votes, vote_temperature=options.vote_temperature, seed=options.seed)
    if strategy.mechanism == "constrained":
        record["max_aus"] = options.max_aus
    if strategy.mechanism == "constrained" or strategy.hierarchical:
        record["fine_labels"] = options.fine_labels
    if strategy.au_rules:
        tables = {}
        for dataset, table in (DEFAULT_TABLES if options.au_tables is None else options.au_tables).items():
            path = SHIPPED_TABLES.get(str(table)) or Path(table)
            tables[dataset] = {"table": str(table), "path": str(Path(path).resolve()),
                               "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
        record["au_tables"] = tables
    return record


# --- voting -------------------------------------------------------------------------------------------------------
def _majority(values: list) -> object | None:
    """The most frequent value; on a tie, the one seen first. None for an empty list."""
    if not values:
        return None
    counts = Counter(values)
    top = max(counts.values())
    return next(value for value in values if counts[value] == top)


def word_label(text: str, choices) -> str | None:
    """The choice a short answer gives: the answer itself, else the first choice named as a whole word."""
    text = str(text).strip().lower()
    if text in choices:
        return text
    match = vocab.whole_words(tuple(choices)).search(text)
    return match.group(1) if match else None


def label_of(text: str, kind: str) -> str | None:
    """The label a free-text answer to a coarse, fine, presence or laterality question gives, else None (coarse
    and fine read as the scorer reads them, :func:`mevqa.eval.extract_label`)."""
    if kind in (vocab.COARSE, vocab.FINE):
        # lazy: the mevqa.eval package loads the scorers (sacrebleu, rouge-score with nltk and scipy), seconds that
        # `mevqa answer --help` and the commands that never score should not pay
        from mevqa.eval import UNKNOWN, extract_label

        label = extract_label(text, kind)
        return None if label == UNKNOWN else label
    if kind == vocab.PRESENCE:
        return word_label(text, vocab.PRESENCE_ANSWERS)
    if kind == vocab.LATERALITY:
        return word_label(text, vocab.LATERALITY_ANSWERS)
    return None


def _voted_aus(lists: list[list[str]]) -> list[str] | None:
    """AUs named by more than half of the samples, in FACS code order; else the most common list; None if no sample
    names an AU."""
    named = [names for names in lists if names]
    if not named:
        return None
    counts = Counter(name for names in lists for name in set(names))
    kept = [name for name in counts if counts[name] * 2 > len(lists)]
    if kept:
        return sorted(kept, key=lambda name: vocab.AU_CODES[name])
    return list(_majority([tuple(names) for names in named]))


def composite_parts(text: str) -> tuple[list[str], str | None, str | None]:
    """``(AU names, fine label, coarse label)`` a composite answer gives (the AUs are read before "therefore")."""
    lowered = text.lower()
    au_part = lowered.split("therefore", 1)[0]
    return parse_au_names(au_part), label_of(text, vocab.FINE), label_of(text, vocab.COARSE)


def analysis_parts(text: str) -> tuple[list[str], str | None, str | None]:
    """``(AU names, fine label, coarse label)`` a free-text analysis answer names (AUs anywhere in the text)."""
    return parse_au_names(text), label_of(text, vocab.FINE), label_of(text, vocab.COARSE)


def vote_answer(samples: list[str], question: str) -> str:
    """The majority answer of sampled answers to ``question`` (see the module docstring). Samples that all say the
    same are that answer as written (so one vote is the sample itself); when no sample can be read as the question's
    kind of answer, the most frequent text (the first on a tie)."""
    samples = [str(sample).strip() for sample in samples]
    fallback = _majority(samples)
    if len(set(samples)) == 1:
        return fallback
    kind = vocab.question_kind(question)
    if kind in (vocab.COARSE, vocab.FINE, vocab.PRESENCE, vocab.LATERALITY):
        label = _majority([label for label in (label_of(s, kind) for s in samples) if label is not None])
        return label if label is not None else fallback
    if kind == vocab.AU:
        aus = _voted_aus([parse_au_names(sample) for sample in samples])
        return vocab.au_answer(aus) if aus else fallback
    if kind == vocab.COMPOSITE:
        parts = [composite_parts(sample) for sample in samples]
        aus = _voted_aus([p[0] for p in parts])
        fine = _majority([p[1] for p in parts if p[1] is not None])
        coarse = _majority([p[2] for p in parts if p[2] is not None])
        if aus and fine and coarse:
            return vocab.composite_answer(aus, fine, coarse)
    if kind == vocab.ANALYSIS:
        # Free text is not rebuilt: the first sample that names the voted AUs, fine and coarse class.
        parts = [analysis_parts(sample) for sample in samples]
        voted = (set(_voted_aus([p[0] for p in parts]) or ()), _majority([p[1] for p in parts if p[1] is not None]),
                 _majority([p[2] for p in parts if p[2] is not None]))
        return next((sample for sample, p in zip(samples, parts) if (set(p[0]), p[1], p[2]) == voted), fallback)
    return fallback


# --- answering ----------------------------------------------------------------------------------------------------
class _Answerer:
    """One call of :func:`answer_rows`: the rows' clips, the questions asked for them, and their answers."""

    def __init__(self, model, processor, mode: str, strategy: Strategy, options: StrategyOptions, settings: dict,
                 progress: bool):
        self.model, self.processor, self.mode = model, processor, mode
        self.strategy, self.options, self.settings, self.progress = strategy, options, settings, progress
        self.tables = tables_for(options.au_tables) if strategy.au_rules else {}
        self.nodes: dict[tuple, dict] = {}      # (clip, question) -> the row asked
        self.answers: dict[tuple, Answer] = {}
        self.by_kind: dict[tuple, tuple] = {}   # (clip, kind) -> node key of the clip's question of that kind

    # nodes: the questions asked per clip ---------------------------------------------------------------------
    def add(self, row: dict, clip) -> tuple:
        key = (clip, str(row["question"]).strip())
        if key not in self.nodes:
            self.nodes[key] = row
            kind = vocab.question_kind(key[1])
            self.by_kind.setdefault((clip, kind), key)
        return key

    def need(self, clip, kind: str, source: dict, question: str, min_aus: int | None = None) -> tuple:
        """The node of the clip's question of ``kind``: the clip's own row if given, else ``question`` asked."""
        if (clip, kind) in self.by_kind:
            return self.by_kind[(clip, kind)]
        asked = {key: value for key, value in source.items() if key not in ("answer", "coarse_hint")}
        asked.update(question=question, answer="")
        if min_aus is not None:
            asked["_min_aus"] = min_aus
        return self.add(asked, clip)

    def close_needs(self) -> None:
        """Add the questions the strategy needs per clip, until nothing new is needed."""
        done = set()
        while True:
            todo = [key for key in self.nodes if key not in done]
            if not todo:
                return
            for key in todo:
                done.add(key)
                clip, question = key
                row, kind = self.nodes[key], vocab.question_kind(question)
                if kind == vocab.COMPOSITE and self.strategy.mechanism == "constrained":
                    one = question == vocab.Q_COMPOSITE_ONE
                    self.need(clip, vocab.AU, row, vocab.Q_AU_ONE if one else vocab.Q_AU_MANY)
                    self.need(clip, vocab.FINE, row, vocab.Q_FINE)
                    self.need(clip, vocab.COARSE, row, vocab.Q_COARSE)
                if kind in (vocab.FINE, vocab.COARSE) and self.strategy.au_rules:
                    self.need(clip, vocab.AU, row, vocab.Q_AU_MANY, min_aus=1)
                if kind == vocab.FINE and self.strategy.hierarchical:
                    self.need(clip, vocab.COARSE, row, vocab.Q_COARSE)

    # settings ----------------------------------------------------------------------------------------------------
    def fine_labels(self, row: dict) -> tuple[str, ...]:
        try:
            labels = vocab.fine_labels_for(vocab.row_dataset(row), self.options.fine_labels)
        except MevqaError as exc:
            raise MevqaError(f"row {row_id(row)}: {exc}") from None
        return labels or vocab.FINE_LABELS

    def input_kwargs(self) -> dict:
        return {key: self.settings[key] for key in ("system_prompt", "max_frames", "image_pixels", "video_pixels",
                                                    "video_fps")}

    # mechanisms ----------------------------------------------------------------------------------------------------
    def generate(self, rows: list[dict], **sampling) -> list[str]:
        options = self.options
        if not sampling:
            sampling = {"do_sample": False}
            if options.do_sample:
                sampling = {"do_sample": True, "temperature": options.temperature, "top_p": options.top_p,
                            "top_k": options.top_k}
        return generate_answers(self.model, self.processor, rows, self.mode,
                                batch_size=sampling.pop("batch_size", self.settings["batch_size"]),
                                max_new_tokens=options.max_new_tokens, repetition_penalty=options.repetition_penalty,
                                progress=self.progress and len(rows) > 1, **sampling, **self.input_kwargs())

    def mechanism(self, keys: list[tuple]) -> None:
        """Answer the nodes ``keys`` with the strategy's mechanism."""
        if not keys:
            return
        rows = [self.nodes[key] for key in keys]
        if self.strategy.mechanism == "direct":
            answers = [Answer(text) for text in self.generate(rows)]
        elif self.strategy.mechanism == "vote":
            answers = [self.vote(key, row) for key, row in zip(keys, rows)]
        else:
            answers = self.constrained(rows)
        self.answers.update(zip(keys, answers))

    def row_seed(self, key: tuple, row: dict) -> int:
        text = f"{self.options.seed}|{key[0]}|{key[1]}|{row.get('coarse_hint')}"
        return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)

    def vote(self, key: tuple, row: dict) -> Answer:
        options = self.options
        if options.votes < 1:
            raise MevqaError(f"votes must be at least 1, got {options.votes}")
        if options.vote_temperature < 0:
            raise MevqaError(f"vote temperature must be 0 (greedy) or more, got {options.vote_temperature}")
        if options.vote_temperature == 0:
            sampling = {"do_sample": False}
        else:
            sampling = {"do_sample": True, "temperature": options.vote_temperature, "top_p": options.top_p,
                        "top_k": options.top_k}
        device = next(self.model.parameters()).device
        # The row's own seed, in a forked RNG: the samples do not depend on batching or on the caller's RNG state.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.row_seed(key, row))
            samples = self.generate([row] * options.votes, batch_size=options.votes, **sampling)
        return Answer(vote_answer(samples, key[1]), votes=samples)

    def label_choices(self, row: dict) -> tuple[str, ...] | None:
        """The allowed answers of a single-choice question; None for the other questions."""
        question = str(row["question"]).strip()
        kind = vocab.question_kind(question)
        if kind == vocab.FINE:
            labels = self.fine_labels(row)
            hint = row.get("coarse_hint")
            return (vocab.fine_labels_under(hint, labels) if hint else ()) or labels
        if kind == vocab.AU:
            return _AU_NAMES if question == vocab.Q_AU_ONE else None   # the plural question is a list
        return {vocab.COARSE: vocab.COARSE_LABELS, vocab.PRESENCE: vocab.PRESENCE_ANSWERS,
                vocab.LATERALITY: vocab.LATERALITY_ANSWERS}.get(kind)

    def constrained(self, rows: list[dict]) -> list[Answer]:
        """Single-choice questions scored over their allowed answers, AU lists built name by name, other
        questions generated (composites never come here: they are assembled)."""
        answers: list[Answer | None] = [None] * len(rows)
        choices = [self.label_choices(row) for row in rows]
        single = [i for i, allowed in enumerate(choices) if allowed]
        lists = [i for i, row in enumerate(rows) if not choices[i] and vocab.question_kind(row["question"]) == vocab.AU]
        generated = [i for i in range(len(rows)) if i not in single and i not in lists]
        score_kwargs = {"batch_size": self.settings["batch_size"], **self.input_kwargs()}
        if single:
            probabilities = choice_probabilities(self.model, self.processor, [rows[i] for i in single], self.mode,
                                                 [choices[i] for i in single], progress=self.progress, **score_kwargs)
            for i, probs in zip(single, probabilities):
                answers[i] = Answer(best(probs), label_probs=probs)
        for i in lists:
            names, steps = greedy_au_list(self.model, self.processor, rows[i], self.mode, _AU_NAMES,
                                          min_items=rows[i].get("_min_aus", 2),
                                          max_items=max(self.options.max_aus, 2), **score_kwargs)
            answers[i] = Answer(vocab.au_answer(names), au_steps=steps)
        if generated:
            for i, text in zip(generated, self.generate([rows[i] for i in generated])):
                answers[i] = Answer(text)
        return answers

    # modifiers ------------------------------------------------------------------------------------------------------
    def apply_rules(self, keys: list[tuple]) -> list[tuple]:
        """Answer fine/coarse nodes whose clip's AUs fire a rule; return the keys left to the model."""
        left = []
        for key in keys:
            clip, question = key
            row = self.nodes[key]
            table = self.tables.get(vocab.row_dataset(row))
            au_key = self.by_kind.get((clip, vocab.AU))
            rule = table.match(parse_au_names(self.answers[au_key].text)) if table and au_key else None
            if rule is None:
                left.append(key)
                continue
            label = rule.fine if vocab.question_kind(question) == vocab.FINE else vocab.FINE_TO_COARSE[rule.fine]
            self.answers[key] = Answer(label, rule=f"{table.name} {rule.describe()}")
        return left

    def coarse_label(self, clip) -> str | None:
        answer = self.answers[self.by_kind[(clip, vocab.COARSE)]]
        if answer.label_probs:
            return max(answer.label_probs, key=answer.label_probs.get)
        return label_of(answer.text, vocab.COARSE)

    def hierarchical(self, keys: list[tuple]) -> None:
        """Answer fine nodes after their clip's coarse answer, with it in the prompt."""
        asked, asked_keys = [], []
        for key in keys:
            row = self.nodes[key]
            coarse = self.coarse_label(key[0])
            if coarse is None:  # an unreadable coarse answer: the fine question is asked as is
                asked.append(row), asked_keys.append(key)
                continue
            allowed = vocab.fine_labels_under(coarse, self.fine_labels(row))
            if len(allowed) == 1:
                probs = {allowed[0]: 1.0} if self.strategy.mechanism == "constrained" else None
                self.answers[key] = Answer(allowed[0], label_probs=probs, coarse_hint=coarse)
                continue
            hinted = {**row, "coarse_hint": coarse}
            self.nodes[key] = hinted
            asked.append(hinted), asked_keys.append(key)
        self.mechanism(asked_keys)
        for key in asked_keys:
            hint = self.nodes[key].get("coarse_hint")
            if hint is not None:
                self.answers[key] = replace(self.answers[key], coarse_hint=hint)

    def assemble(self, key: tuple) -> Answer:
        """A constrained composite answer: the official template filled with the clip's own answers."""
        clip = key[0]
        aus = parse_au_names(self.answers[self.by_kind[(clip, vocab.AU)]].text)
        fine = self.answers[self.by_kind[(clip, vocab.FINE)]].text
        coarse = self.answers[self.by_kind[(clip, vocab.COARSE)]].text
        return Answer(vocab.composite_answer(aus, fine, coarse))

    # the run --------------------------------------------------------------------------------------------------------
    def run(self) -> None:
        strategy = self.strategy
        kinds = {key: vocab.question_kind(key[1]) for key in self.nodes}
        later = {vocab.FINE} if strategy.hierarchical else set()
        if strategy.au_rules:
            later |= {vocab.FINE, vocab.COARSE}
        if strategy.mechanism == "constrained":
            later.add(vocab.COMPOSITE)
        self.mechanism([key for key in self.nodes if kinds[key] not in later])
        coarse = [key for key in self.nodes if kinds[key] == vocab.COARSE and key not in self.answers]
        fine = [key for key in self.nodes if kinds[key] == vocab.FINE and key not in self.answers]
        if strategy.au_rules:
            coarse, fine = self.apply_rules(coarse), self.apply_rules(fine)
        self.mechanism(coarse)
        if strategy.hierarchical:
            self.hierarchical(fine)
        else:
            self.mechanism(fine)
        for key in self.nodes:
            if key not in self.answers:
                self.answers[key] = self.assemble(key)


def answer_rows(model, processor, rows: list[dict], mode: str, strategy: str | Strategy = "direct", *,
                options: StrategyOptions | None = None, batch_size: int = 8, system_prompt: str | None = "default",
                max_frames: int | None = None, image_pixels=None, video_pixels=None, video_fps: float | None = None,
                progress: bool = False) -> list[Answer]:
    """Answer ``rows`` (absolute media, as for :func:`mevqa.answering.generation.generate_answers`) with ``strategy``;
    one :class:`Answer` per row, in order. The input options mean what they mean in :mod:`mevqa.models.collate`;
    ``batch_size`` is rows per generation batch and candidate answers per scoring pass. Pass the unwrapped model."""
    if batch_size < 1:
        raise MevqaError(f"batch_size must be at least 1, got {batch_size}")
    strategy = parse_strategy(strategy)
    settings = {"batch_size": batch_size, "system_prompt": system_prompt, "max_frames": max_frames,
                "image_pixels": image_pixels, "video_pixels": video_pixels, "video_fps": video_fps}
    answerer = _Answerer(model, processor, mode, strategy, options or StrategyOptions(), settings, progress)
    keys = []
    for row in rows:
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise MevqaError(f"row {row_id(row)}: expected a non-empty 'question' string")
        keys.append(answerer.add(row, clip_key(row)))
    answerer.close_needs()
    answerer.run()
    return [replace(answerer.answers[key]) for key in keys]
