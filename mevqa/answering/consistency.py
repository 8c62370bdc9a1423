"""One consistent answer set per clip: a clip's answers never contradict each other.

Public API::

    clip_key(row) -> tuple                          # which clip a QA row asks about (mevqa.rows, re-exported)
    consistent_answers(rows, answers) -> list[Answer]   # pure; answers are Answer objects or strings

The leaderboard reads each answer on its own, so a composite answer whose fine class differs from the fine answer,
or a coarse class that the fine class rules out, loses twice. Per clip (rows grouped by :func:`clip_key`):

- **coarse and fine agree**: happiness -> positive, surprise -> surprise, every other fine class -> negative. When
  they disagree, the fine answer decides and the coarse answer follows it, except where both carry ``label_probs``
  (the ``constrained`` strategy): then the more confident decides, both measured on the coarse level (the coarse
  answer's probability against the fine distribution's total probability of the fine answer's coarse class); if the
  coarse answer wins, the fine answer becomes the most probable fine class under it. A fine answer that names no
  label takes the only fine class a positive or surprise coarse answer allows; a coarse answer that names no label
  takes the fine answer's class.
- **one AU list**: the AU answer's names (else the composite's), in the AU answer's order. A presence question
  ("Is the action unit X shown on the face?") is the focused question about one AU, so its answer decides for that
  AU: "yes" adds X to the list (at its place in FACS code order), "no" removes it, as long as the list keeps the
  number of AUs the clip's questions imply: the official files ask "What is the action unit?" (and the singular
  composite question) exactly when a clip has one AU, and the plural questions when it has two or more (all 278
  clips of the training file). So in a clip asked the singular question a presence "yes" for another AU replaces
  the one AU (under ``constrained``, only when its probability of "yes" exceeds the AU answer's probability; else
  it becomes "no"), and a clip asked the plural question keeps at least two (a "no" that would leave one becomes
  "yes"). The AU answer is rewritten as the list, in the official format.
- **the composite answer** is assembled from the clip's own AU list, fine and coarse answers in the exact official
  template (:func:`mevqa.vocab.composite_answer`); a part the clip's own rows do not give is taken from the
  composite answer itself; an answer that names no label is repeated as written.
- **the analysis answer** (MEGC2026, free text) stays as written when it names exactly the clip's AUs (as a set),
  fine and coarse class (read as the scorer reads labels); otherwise it is rewritten in mevqa's analysis template
  (:func:`mevqa.vocab.analysis_answer`) from them. Without a composite row, the analysis answer gives the parts the
  clip's rows do not.

Laterality and other questions are left as they are. Every changed answer says why in ``Answer.consistency``.
Applying the function twice changes nothing the second time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from mevqa import vocab
from mevqa.answering.au_rules import parse_au_names
from mevqa.answering.strategies import Answer, analysis_parts, composite_parts, label_of
from mevqa.rows import clip_key  # noqa: F401 (the one clip rule lives in mevqa.rows; re-exported for callers)


def _coarse_confidence(fine_probs: dict[str, float], coarse: str) -> float:
    return sum(p for label, p in fine_probs.items() if vocab.FINE_TO_COARSE.get(label) == coarse)


def _insert_by_code(names: list[str], name: str) -> list[str]:
    code = vocab.AU_CODES[name]
    at = next((i for i, other in enumerate(names) if vocab.AU_CODES.get(other, 0) > code), len(names))
    return names[:at] + [name] + names[at:]


def _clip(rows: list[dict], answers: list[Answer]) -> list[Answer]:
    kinds = [vocab.question_kind(str(row.get("question", ""))) for row in rows]
    first = {}
    for i, kind in enumerate(kinds):
        first.setdefault(kind, i)
    fine_i, coarse_i, au_i = first.get(vocab.FINE), first.get(vocab.COARSE), first.get(vocab.AU)
    composite = [i for i, kind in enumerate(kinds) if kind == vocab.COMPOSITE]
    analysis = [i for i, kind in enumerate(kinds) if kind == vocab.ANALYSIS]
    parts = composite_parts(answers[composite[0]].text) if composite \
        else analysis_parts(answers[analysis[0]].text) if analysis else ([], None, None)

    # Fine and coarse.
    fine = label_of(answers[fine_i].text, vocab.FINE) if fine_i is not None else parts[1]
    coarse = label_of(answers[coarse_i].text, vocab.COARSE) if coarse_i is not None else parts[2]
    fine_reason = coarse_reason = None
    if fine and coarse and vocab.FINE_TO_COARSE[fine] != coarse:
        fine_probs = answers[fine_i].label_probs if fine_i is not None else None
        coarse_probs = answers[coarse_i].label_probs if coarse_i is not None else None
        under = [label for label in (fine_probs or {}) if vocab.FINE_TO_COARSE.get(label) == coarse]
        if (fine_probs and coarse_probs and under and coarse_probs.get(coarse, 0.0)
                > _coarse_confidence(fine_probs, vocab.FINE_TO_COARSE[fine])):
            fine = max(under, key=fine_probs.get)
            fine_reason = f"fine follows the more confident coarse answer ({coarse})"
        else:
            coarse = vocab.FINE_TO_COARSE[fine]
            coarse_reason = f"coarse follows the fine answer ({fine})"
    elif fine and not coarse:
        coarse, coarse_reason = vocab.FINE_TO_COARSE[fine], f"coarse follows the fine answer ({fine})"
    elif coarse and not fine:
        only = vocab.fine_labels_under(coarse)
        if len(only) == 1:
            fine, fine_reason = only[0], f"the coarse answer ({coarse}) allows only this fine class"

    # The AU list, of the size the clip's questions imply.
    names = parse_au_names(answers[au_i].text) if au_i is not None else []
    names = names or list(parts[0])
    asked = {str(rows[i]["question"]).strip() for i, kind in enumerate(kinds) if kind in (vocab.AU, vocab.COMPOSITE)}
    one = bool(asked & {vocab.Q_AU_ONE, vocab.Q_COMPOSITE_ONE})
    many = bool(asked & {vocab.Q_AU_MANY, vocab.Q_COMPOSITE_MANY})
    if one and many:  # contradictory questions: no size is implied
        one = many = False
    fewest = 2 if many else 1
    presence = {}
    for i, kind in enumerate(kinds):
        if kind != vocab.PRESENCE or not names:
            continue
        au = vocab.question_au(str(rows[i]["question"]))
        said = label_of(answers[i].text, vocab.PRESENCE)
        if au not in vocab.AU_CODES or said is None:
            continue
        if said == "yes" and au not in names:
            if one:
                # One AU: this answer names it instead, unless both answers carry probabilities (constrained) and
                # the AU answer's is higher, or an earlier presence answer already named it.
                au_probs = answers[au_i].label_probs if au_i is not None else None
                yes_probs = answers[i].label_probs
                if presence or (au_probs and yes_probs and au_probs.get(names[0], 0.0) > yes_probs.get("yes", 0.0)):
                    presence[i] = f"the clip is asked about one AU ({names[0]}); this answer follows it"
                    continue
                names = [au]
                presence[i] = f"the clip is asked about one AU: {au}, as this answer says"
                continue
            names = _insert_by_code(names, au)
            presence[i] = f"the AU list includes {au}, as this answer says"
        elif said == "no" and au in names:
            if len(names) <= fewest:
                presence[i] = "the clip is asked about two or more AUs; this answer follows its AU list" if many \
                    else None
                continue
            names = [name for name in names if name != au]
            presence[i] = f"the AU list leaves out {au}, as this answer says"

    new = list(answers)

    def set_text(i: int, text: str, reason: str) -> None:
        if text != answers[i].text:
            new[i] = replace(answers[i], text=text, consistency=reason)

    if fine_i is not None and fine:
        set_text(fine_i, fine, fine_reason or "fine answer written as its label")
    if coarse_i is not None and coarse:
        set_text(coarse_i, coarse, coarse_reason or "coarse answer written as its label")
    if names:
        if au_i is not None:
            set_text(au_i, vocab.au_answer(names), "the clip's AU list, in the official format"
                     + (", with the presence answers" if presence else ""))
        for i, kind in enumerate(kinds):
            au = vocab.question_au(str(rows[i]["question"])) if kind == vocab.PRESENCE else None
            if au is not None:
                set_text(i, "yes" if au in names else "no", presence.get(i) or "presence follows the clip's AU list")
    aus_text = vocab.au_answer(names) if names else (answers[au_i].text.strip() if au_i is not None else "")
    fine_text = fine or (answers[fine_i].text.strip() if fine_i is not None else "")
    coarse_text = coarse or (answers[coarse_i].text.strip() if coarse_i is not None else "")
    if aus_text and fine_text and coarse_text:
        for i in composite:
            # The template of the question asked (the official answers always match it), else of the list's size.
            question = str(rows[i]["question"]).strip()
            plural = question == vocab.Q_COMPOSITE_MANY if question in (vocab.Q_COMPOSITE_ONE, vocab.Q_COMPOSITE_MANY) \
                else (len(names) > 1 if names else "," in aus_text)
            template = vocab.A_COMPOSITE_MANY if plural else vocab.A_COMPOSITE_ONE
            set_text(i, template.format(aus=aus_text, fine=fine_text, coarse=coarse_text),
                     "composite assembled from the clip's AU, fine and coarse answers")
        for i in analysis:
            # Free text that names exactly the clip's AUs, fine and coarse class stays; any other is rewritten.
            said = analysis_parts(answers[i].text)
            if not (names and fine and coarse and (set(said[0]), said[1], said[2]) == (set(names), fine, coarse)):
                template = vocab.A_ANALYSIS_MANY if (len(names) > 1 if names else "," in aus_text) \
                    else vocab.A_ANALYSIS_ONE
                set_text(i, template.format(aus=aus_text, fine=fine_text, coarse=coarse_text),
                         "analysis in mevqa's template from the clip's AU, fine and coarse answers")
    return new


def consistent_answers(rows: list[dict], answers: list) -> list[Answer]:
    """``answers`` (one per row, :class:`mevqa.answering.strategies.Answer` or text) made consistent per clip (module
    docstring). Pure: returns new Answer objects, in the rows' order; rows and answers are not modified."""
    if len(rows) != len(answers):
        raise ValueError(f"consistent_answers: {len(rows)} rows but {len(answers)} answers")
    answers = [answer if isinstance(answer, Answer) else Answer(str(answer)) for answer in answers]
    clips = defaultdict(list)
    for i, row in enumerate(rows):
        clips[clip_key(row)].append(i)
    result = list(answers)
    for indices in clips.values():
        for i, answer in zip(indices, _clip([rows[i] for i in indices], [answers[i] for i in indices])):
            result[i] = answer
    return result
