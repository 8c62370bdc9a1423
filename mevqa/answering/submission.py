"""``mevqa submit``: the official submission files, built so that the leaderboard cannot reject them.

One prediction file per question file, named as the challenge expects (``me_vqa_samm_test_to_answer.jsonl`` ->
``me_vqa_samm_test_pred.jsonl``; the same for CAS(ME)^3 and the ``_v2_`` files of 2026): every question row in its
order with its own fields and ``answer`` filled in; plus ``submission.zip`` holding those files. Anything that would
make a bad submission (an unanswered question, a blank answer, an id twice, a prediction for no question) is
refused before a single file is written. A ``*_pred.jsonl`` already in the output folder that this submission does
not write (left by an earlier run over other question files) is set aside, so the folder never shows a prediction
file that ``submission.zip`` does not hold.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

from mevqa.errors import MevqaError
from mevqa.jsonl import atomic_path, strip_private
from mevqa.paths import refuse_outputs_onto_inputs
from mevqa.runfolder import set_aside
from mevqa.rows import read_rows, row_id, where

logger = logging.getLogger(__name__)

QUESTION_SUFFIX = "_to_answer"
PRED_SUFFIX = "_pred"
ZIP_NAME = "submission.zip"


def pred_file_name(question_file: str | os.PathLike) -> str:
    """The official prediction file name for a question file: the last ``_to_answer`` becomes ``_pred``."""
    name = Path(question_file).name
    stem, dot, suffix = name.rpartition(".")
    if not dot or QUESTION_SUFFIX not in stem:
        raise MevqaError(f"{question_file}: expected an official question file name containing '{QUESTION_SUFFIX}' "
                         f"(such as me_vqa_samm_test_to_answer.jsonl)")
    head, _, tail = stem.rpartition(QUESTION_SUFFIX)
    return f"{head}{PRED_SUFFIX}{tail}.{suffix}"


def build_submission(question_files: Sequence[str | os.PathLike], pred_rows: Iterable[dict]) -> dict[str, str]:
    """``{prediction file name: jsonl text}`` for the question files, after every check. Writes nothing."""
    answers: dict[str, dict] = {}
    for row in pred_rows:
        rid = row_id(row)
        if rid in answers:
            raise MevqaError(f"{where(row, 'predictions')}: duplicate prediction id {rid!r} "
                             f"(first at {where(answers[rid], 'predictions')})")
        answers[rid] = row

    outputs: dict[str, str] = {}
    seen: dict[str, dict] = {}
    for question_file in question_files:
        name = pred_file_name(question_file)
        if name in outputs:
            raise MevqaError(f"{question_file}: a second question file maps to {name}")
        lines = []
        for row in read_rows(question_file, required=(), unique=False, check_media=False):
            rid = row_id(row)
            if rid in seen:
                raise MevqaError(f"{where(row)}: duplicate question id {rid!r} (first at {where(seen[rid])})")
            seen[rid] = row
            if not isinstance(row.get("question"), str):
                raise MevqaError(f"{where(row)}: question row {rid!r} has no 'question' string")
            pred = answers.get(rid)
            if pred is None:
                raise MevqaError(f"{where(row)}: question {rid!r} has no prediction")
            answer = pred.get("answer")
            if not isinstance(answer, str) or not answer.strip():
                raise MevqaError(f"{where(pred, 'predictions')}: prediction {rid!r} has an empty or missing "
                                 f"answer (got {answer!r}); the leaderboard needs text for every question")
            if isinstance(pred.get("question"), str) and pred["question"].strip() != row["question"].strip():
                raise MevqaError(f"{where(pred, 'predictions')}: prediction {rid!r} answers {pred['question']!r} "
                                 f"but {where(row)} asks {row['question']!r}")
            filled = {**strip_private(row), "answer": answer}
            lines.append(json.dumps(filled, ensure_ascii=False) + "\n")
        if not lines:
            raise MevqaError(f"{question_file}: no question rows")
        outputs[name] = "".join(lines)
    for rid, pred in answers.items():
        if rid not in seen:
            raise MevqaError(f"{where(pred, 'predictions')}: prediction id {rid!r} belongs to no question in "
                             f"{', '.join(str(f) for f in question_files)}")
    return outputs


def write_submission(question_files: Sequence[str | os.PathLike], pred_rows: Iterable[dict],
                     out_dir: str | os.PathLike, *, pred_files: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Write the prediction files and ``submission.zip`` into ``out_dir``, all or nothing; return their paths.
    None of them may be one of the question files or ``pred_files``."""
    outputs = build_submission(question_files, pred_rows)
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in outputs] + [out_dir / ZIP_NAME]
    refuse_outputs_onto_inputs(outputs={"--out": paths}, into={"--out": out_dir},
                               inputs={"--questions": question_files, "--pred": pred_files})
    inputs = {Path(path).resolve() for path in [*question_files, *pred_files]}
    set_aside([path for path in sorted(out_dir.glob(f"*{PRED_SUFFIX}.jsonl"))
               if path.name not in outputs and path.resolve() not in inputs],
              f"prediction files that the new {ZIP_NAME} will not hold")
    # Every file goes to a temporary path first; the renames happen together once all are complete.
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(path)) for path in paths]
        for tmp, text in zip(tmps, outputs.values()):
            tmp.write_text(text, encoding="utf-8")
        with zipfile.ZipFile(tmps[-1], "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in outputs.items():
                archive.writestr(name, text)
    for path in paths:
        logger.info("wrote %s", path)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", nargs="+", required=True, type=Path, metavar="Q.jsonl",
                        help="official question files (*_to_answer.jsonl), one prediction file is written per file")
    parser.add_argument("--pred", nargs="+", required=True, type=Path, metavar="P.jsonl",
                        help="prediction jsonl file(s): rows with 'id' or 'video_id' and 'answer'")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder for the *_pred.jsonl files and submission.zip")


def run(args: argparse.Namespace) -> int:
    predictions = read_rows(args.pred, required=(), unique=False, check_media=False)
    for path in write_submission(args.questions, predictions, args.out, pred_files=args.pred):
        print(path)
    return 0
