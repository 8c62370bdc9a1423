"""`mevqa submit` / write_submission: round trip on the official test question files and every refusal case."""

from __future__ import annotations

import json
import random
import zipfile

import pytest

from conftest import MEGC2025, OFFICIAL_TEST
from mevqa.answering.submission import pred_file_name, write_submission
from mevqa.cli import main
from mevqa.errors import MevqaError
from mevqa.eval import read_rows, score_files
from mevqa.jsonl import strip_private

RANK1 = {path.name: path for path in (MEGC2025 / "predictions" / "rank1").glob("*.jsonl")}
NAMES = ["me_vqa_samm_test_pred.jsonl", "me_vqa_casme3_test_pred.jsonl"]


@pytest.mark.parametrize("question_file, expected", [
    ("me_vqa_samm_test_to_answer.jsonl", "me_vqa_samm_test_pred.jsonl"),
    ("/x/me_vqa_casme3_test_to_answer.jsonl", "me_vqa_casme3_test_pred.jsonl"),
    ("me_vqa_v2_samm_test_to_answer.jsonl", "me_vqa_v2_samm_test_pred.jsonl"),
    ("me_vqa_casme3_test_v2_to_answer.jsonl", "me_vqa_casme3_test_v2_pred.jsonl"),
])
def test_pred_file_name(question_file, expected):
    assert pred_file_name(question_file) == expected


def test_pred_file_name_refuses_other_names():
    with pytest.raises(MevqaError, match="official question file name"):
        pred_file_name("questions.jsonl")


def test_round_trip_on_the_official_test_files(public_data, tmp_path):
    answers = read_rows(list(RANK1.values()))
    random.Random(0).shuffle(answers)  # order of the predictions must not matter
    paths = write_submission(OFFICIAL_TEST, answers, tmp_path / "sub")
    assert [path.name for path in paths] == NAMES + ["submission.zip"]
    for question_file, name in zip(OFFICIAL_TEST, NAMES):
        questions = [strip_private(row) for row in read_rows(question_file)]
        written = [json.loads(line) for line in (tmp_path / "sub" / name).read_text().splitlines()]
        assert [{**row, "answer": ""} for row in written] == questions          # same rows, fields and order
        assert [list(row) for row in written] == [list(row) for row in questions]
        assert written == [strip_private(row) for row in read_rows(RANK1[name])]  # the real rank-1 file again
    with zipfile.ZipFile(tmp_path / "sub" / "submission.zip") as archive:
        assert sorted(archive.namelist()) == sorted(NAMES)
        for name in NAMES:
            assert archive.read(name) == (tmp_path / "sub" / name).read_bytes()
    # the written files score perfectly against the predictions they came from
    assert score_files([tmp_path / "sub" / name for name in NAMES], list(RANK1.values()))["avg"] == 1.0


def test_submit_cli(public_data, tmp_path, capsys):
    out = tmp_path / "sub"
    argv = ["submit", "--questions", *map(str, OFFICIAL_TEST), "--pred", *map(str, RANK1.values()), "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.split() == [str(out / name) for name in NAMES + ["submission.zip"]]
    assert (out / NAMES[1]).read_bytes() == RANK1[NAMES[1]].read_bytes()


def _break_drop(rows, questions):
    rows.pop(7)


def _break_empty(rows, questions):
    rows[3]["answer"] = ""


def _break_blank(rows, questions):
    rows[3]["answer"] = "  \n"


def _break_duplicate_prediction(rows, questions):
    rows.append(dict(rows[0]))


def _break_duplicate_question(rows, questions):
    questions.append(dict(questions[2]))


def _break_stray_prediction(rows, questions):
    rows.append({"video_id": "samm_test_SAMM-9_1", "answer": "negative"})


def _break_wrong_question(rows, questions):
    rows[0]["question"] = "What is the fine-grained expression class?"


@pytest.mark.parametrize("break_input, message", [
    (_break_drop, "question 'samm_test_SAMM-2_3' has no prediction"),
    (_break_empty, "prediction 'samm_test_SAMM-1_4' has an empty or missing answer"),
    (_break_blank, "prediction 'samm_test_SAMM-1_4' has an empty or missing answer"),
    (_break_duplicate_prediction, "pred.jsonl:36: duplicate prediction id 'samm_test_SAMM-1_1'"),
    (_break_duplicate_question, "me_vqa_samm_test_to_answer.jsonl:36: duplicate question id 'samm_test_SAMM-1_3'"),
    (_break_stray_prediction, "prediction id 'samm_test_SAMM-9_1' belongs to no question"),
    (_break_wrong_question, "pred.jsonl:1: prediction 'samm_test_SAMM-1_1' answers"),
])
def test_submit_refuses_and_writes_nothing(public_data, tmp_path, capsys, break_input, message):
    rows = [strip_private(row) for row in read_rows(RANK1["me_vqa_samm_test_pred.jsonl"])]
    questions = [strip_private(row) for row in read_rows(OFFICIAL_TEST[0])]
    break_input(rows, questions)
    pred, question_file = tmp_path / "pred.jsonl", tmp_path / "q" / "me_vqa_samm_test_to_answer.jsonl"
    question_file.parent.mkdir()
    pred.write_text("".join(json.dumps(row) + "\n" for row in rows))
    question_file.write_text("".join(json.dumps(row) + "\n" for row in questions))
    out = tmp_path / "sub"
    assert main(["submit", "--questions", str(question_file), "--pred", str(pred), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_two_question_files_with_one_name_are_refused(public_data, tmp_path):
    copy = tmp_path / OFFICIAL_TEST[0].name
    copy.write_bytes(OFFICIAL_TEST[0].read_bytes())
    with pytest.raises(MevqaError, match="a second question file maps to me_vqa_samm_test_pred.jsonl"):
        write_submission([OFFICIAL_TEST[0], copy], read_rows(list(RANK1.values())), tmp_path / "sub")
    assert not (tmp_path / "sub").exists()


def test_a_submission_over_fewer_files_sets_aside_the_others_pred_files(public_data, tmp_path):
    """A second submission into the same folder over one of the two question files: the other file's older
    prediction file is renamed aside, so every *_pred.jsonl left in the folder is one that submission.zip holds. A
    prediction file given as input is never moved."""
    answers = read_rows(list(RANK1.values()))
    out = tmp_path / "sub"
    write_submission(OFFICIAL_TEST, answers, out)
    user_file = out / "mine_pred.jsonl"
    user_file.write_text((out / NAMES[0]).read_text())
    write_submission(OFFICIAL_TEST[:1], read_rows([user_file]), out, pred_files=[user_file])
    assert sorted(path.name for path in out.glob("*_pred.jsonl")) == sorted([NAMES[0], "mine_pred.jsonl"])
    aside = [path.name for path in out.iterdir() if ".stale-" in path.name]
    assert len(aside) == 1 and aside[0].startswith(NAMES[1] + ".stale-")
    with zipfile.ZipFile(out / "submission.zip") as archive:
        assert archive.namelist() == [NAMES[0]]
