"""`mevqa str-eval` against the official STRS evaluator's own numbers, on its fixture and on edge cases.

EXPECTED holds what the official evaluator (genbing99/STRS-Metric, strs_metric.py at eb86468, its current HEAD)
returned, run once outside this repository, unmodified, under pandas 1.5.3 / numpy 1.26 / scikit-learn 1.2.2 (its
``DataFrame.append`` needs pandas < 2). The same run under pandas 3.1 with ``DataFrame.append`` shimmed by
``pd.concat`` agreed to 1e-15. Each case's CSVs are below as text; ``G_SAMM``/``G_CAS`` are the official code run on
each dataset's rows of case G alone. None marks a figure the official code does not produce: NaN (C1's F1-analysis
and STRS) or an exception (D: KeyError 'gt' on empty predictions); mevqa reports 0 there, with a warning.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import STRS_FIXTURE
from mevqa.cli import main
from mevqa.eval.strs import Interval, iou, official_metrics, read_intervals, strs_files

HEADER = "subject,video,onset,offset,emotion\n"
CASES = {
    # one prediction overlapping two ground truths (both TP); a second prediction on a taken ground truth is a FP
    "A": ("1,v1,10,20,happiness\n1,v1,12,22,surprise\n1,v1,100,130,others\n2,v2,50,80,disgust\n",
          "1,v1,11,21,happiness\n1,v1,101,129,others\n1,v1,102,130,others\n1,v1,300,340,others\n2,v2,52,78,others\n"),
    # subject 2 has no prediction: its ground truth is not counted
    "B": ("1,a,10,30,others\n1,a,60,80,happiness\n1,c,5,15,surprise\n2,b,40,60,happiness\n2,b,100,120,surprise\n",
          "1,a,12,30,others\n1,a,62,80,surprise\n"),
    # single-class analysis, every spotted pair right: the official code scores the class 0, F1-analysis NaN
    "C1": ("1,v,10,40,others\n1,v,100,130,others\n2,w,20,50,others\n",
           "1,v,12,40,others\n1,v,200,230,others\n2,w,22,52,others\n"),
    # single-class analysis set (the ground truth is all 'others'), one spotted pair mislabelled
    "C2": ("1,v,10,40,others\n1,v,100,130,others\n2,w,20,50,others\n",
           "1,v,12,40,others\n1,v,101,130,happiness\n2,w,22,52,others\n"),
    # empty predictions
    "D": ("1,v,10,40,others\n1,v,100,130,others\n2,w,20,50,others\n", ""),
    # predictions on a video and a subject the ground truth does not have: ignored
    "F": ("1,v,10,30,happiness\n1,v,50,70,others\n",
          "1,v,10,30,happiness\n1,v,52,70,happiness\n1,zz,10,30,others\n9,q,1,5,others\n"),
    # two datasets told apart by naming (SAMM-LV 006_1 videos, CAS(ME)^3 spNO subjects), one missing subject in each
    "G": ("6,006_1,100,160,happiness\n6,006_1,500,560,surprise\n7,007_3,1000,1060,anger\nspNO.1,a,30,40,others\n"
          "spNO.1,a,90,100,negative\nspNO.2,b,10,20,positive\n",
          "6,006_1,105,160,happiness\n6,006_1,500,558,anger\n6,006_1,700,760,anger\nspNO.1,a,30,41,others\n"
          "spNO.1,a,91,100,positive\n"),
}

EXPECTED = {
    "fixture": {"STRS": 0.3862300826408835, "TP spotting": 159, "FP spotting": 85, "FN spotting": 85, "Precision spotting": 0.6516393442622951, "Recall spotting": 0.6516393442622951, "F1-score spotting": 0.6516393442622951, "TP analysis": 96, "FP analysis": 63, "FN analysis": 63, "Precision analysis": 0.5983375104427735, "Recall analysis": 0.5871781025751794, "F1-score analysis": 0.5927052840526765, "UF1 analysis": 0.576624668619934, "UAR analysis": 0.5983375104427735},
    "fixture_labels_hds": {"STRS": 0.5038629352711023, "TP spotting": 159, "FP spotting": 85, "FN spotting": 85, "Precision spotting": 0.6516393442622951, "Recall spotting": 0.6516393442622951, "F1-score spotting": 0.6516393442622951, "TP analysis": 43, "FP analysis": 2, "FN analysis": 2, "Precision analysis": 0.9333333333333332, "Recall analysis": 0.6600027199782401, "F1-score analysis": 0.7732236239380437, "UF1 analysis": 0.753960368714467, "UAR analysis": 0.9333333333333332},
    "A": {"STRS": 0.26666666666666666, "TP spotting": 4, "FP spotting": 2, "FN spotting": 0, "Precision spotting": 0.6666666666666666, "Recall spotting": 1.0, "F1-score spotting": 0.8, "TP analysis": 2, "FP analysis": 2, "FN analysis": 2, "Precision analysis": 0.25, "Recall analysis": 0.5, "F1-score analysis": 0.3333333333333333, "UF1 analysis": 0.3333333333333333, "UAR analysis": 0.25},
    "B": {"STRS": 0.26666666666666666, "TP spotting": 2, "FP spotting": 0, "FN spotting": 1, "Precision spotting": 1.0, "Recall spotting": 0.6666666666666666, "F1-score spotting": 0.8, "TP analysis": 1, "FP analysis": 1, "FN analysis": 1, "Precision analysis": 0.3333333333333333, "Recall analysis": 0.3333333333333333, "F1-score analysis": 0.3333333333333333, "UF1 analysis": 0.3333333333333333, "UAR analysis": 0.3333333333333333},
    "C1": {"STRS": None, "TP spotting": 2, "FP spotting": 1, "FN spotting": 1, "Precision spotting": 0.6666666666666666, "Recall spotting": 0.6666666666666666, "F1-score spotting": 0.6666666666666666, "TP analysis": 2, "FP analysis": 0, "FN analysis": 0, "Precision analysis": 0.0, "Recall analysis": 0.0, "F1-score analysis": None, "UF1 analysis": 0.0, "UAR analysis": 0.0},
    "C2": {"STRS": 0.8, "TP spotting": 3, "FP spotting": 0, "FN spotting": 0, "Precision spotting": 1.0, "Recall spotting": 1.0, "F1-score spotting": 1.0, "TP analysis": 2, "FP analysis": 0, "FN analysis": 0, "Precision analysis": 1.0, "Recall analysis": 0.6666666666666666, "F1-score analysis": 0.8, "UF1 analysis": 0.8, "UAR analysis": 1.0},
    "D": None,  # the official code raises KeyError: 'gt'
    "F": {"STRS": 0.3333333333333333, "TP spotting": 2, "FP spotting": 0, "FN spotting": 0, "Precision spotting": 1.0, "Recall spotting": 1.0, "F1-score spotting": 1.0, "TP analysis": 1, "FP analysis": 1, "FN analysis": 1, "Precision analysis": 0.25, "Recall analysis": 0.5, "F1-score analysis": 0.3333333333333333, "UF1 analysis": 0.3333333333333333, "UAR analysis": 0.25},
    "G": {"STRS": 0.2962962962962963, "TP spotting": 4, "FP spotting": 1, "FN spotting": 0, "Precision spotting": 0.8, "Recall spotting": 1.0, "F1-score spotting": 0.888888888888889, "TP analysis": 2, "FP analysis": 2, "FN analysis": 2, "Precision analysis": 0.3333333333333333, "Recall analysis": 0.3333333333333333, "F1-score analysis": 0.3333333333333333, "UF1 analysis": 0.3333333333333333, "UAR analysis": 0.3333333333333333},
    "G_SAMM": {"STRS": 0.26666666666666666, "TP spotting": 2, "FP spotting": 1, "FN spotting": 0, "Precision spotting": 0.6666666666666666, "Recall spotting": 1.0, "F1-score spotting": 0.8, "TP analysis": 1, "FP analysis": 1, "FN analysis": 1, "Precision analysis": 0.3333333333333333, "Recall analysis": 0.3333333333333333, "F1-score analysis": 0.3333333333333333, "UF1 analysis": 0.3333333333333333, "UAR analysis": 0.3333333333333333},
    "G_CAS": {"STRS": 0.3333333333333333, "TP spotting": 2, "FP spotting": 0, "FN spotting": 0, "Precision spotting": 1.0, "Recall spotting": 1.0, "F1-score spotting": 1.0, "TP analysis": 1, "FP analysis": 1, "FN analysis": 1, "Precision analysis": 0.3333333333333333, "Recall analysis": 0.3333333333333333, "F1-score analysis": 0.3333333333333333, "UF1 analysis": 0.3333333333333333, "UAR analysis": 0.3333333333333333},
}


def write_case(tmp_path, name):
    gt_text, pred_text = CASES[name]
    gt, pred = tmp_path / f"{name}_gt.csv", tmp_path / f"{name}_pred.csv"
    gt.write_text(HEADER + gt_text)
    pred.write_text(HEADER + pred_text)
    return pred, gt


def assert_official(part, expected):
    mine = official_metrics(part)
    assert set(mine) == set(expected)
    for key, value in expected.items():
        if value is None:  # NaN in the official code: mevqa reports 0
            assert mine[key] == 0, key
        else:
            assert mine[key] == pytest.approx(value, abs=1e-9), key


def test_fixture_equals_official():
    report = strs_files(STRS_FIXTURE / "pred.csv", STRS_FIXTURE / "gt.csv")
    assert_official(report["overall"], EXPECTED["fixture"])
    assert [key for key in report if key not in ("settings", "warnings")] == ["overall"]  # CASME II names: no split
    assert report["warnings"] == []
    assert report["overall"]["analysis"]["labels"] == ["disgust", "happiness", "others", "repression", "surprise"]
    # the true UAR (mean recall) sits beside the official "UAR" (mean precision)
    assert report["overall"]["analysis"]["uar"] == pytest.approx(EXPECTED["fixture"]["Recall analysis"], abs=1e-12)


def test_fixture_with_an_analysis_set_equals_official():
    report = strs_files(STRS_FIXTURE / "pred.csv", STRS_FIXTURE / "gt.csv",
                        analysis_labels=["happiness", "disgust", "surprise"])
    assert_official(report["overall"], EXPECTED["fixture_labels_hds"])


@pytest.mark.parametrize("name", ["A", "B", "C1", "C2", "F"])
def test_edge_cases_equal_official(tmp_path, name):
    pred, gt = write_case(tmp_path, name)
    assert_official(strs_files(pred, gt)["overall"], EXPECTED[name])


def test_datasets_are_reported_apart_and_together(tmp_path):
    pred, gt = write_case(tmp_path, "G")
    report = strs_files(pred, gt)
    assert [key for key in report if key not in ("settings", "warnings")] == ["samm", "cas", "overall"]
    assert_official(report["samm"], EXPECTED["G_SAMM"])
    assert_official(report["cas"], EXPECTED["G_CAS"])
    assert_official(report["overall"], EXPECTED["G"])
    assert report["samm"]["counts"]["missing_subjects"] == ["7"]
    assert report["cas"]["counts"]["missing_subjects"] == ["spNO.2"]


def test_dataset_column_wins_over_naming(tmp_path):
    gt = tmp_path / "gt.csv"
    gt.write_text("subject,video,onset,offset,emotion,dataset\n1,EP01,10,20,others,smic\n2,EP02,10,20,others,samm\n")
    pred = tmp_path / "pred.csv"
    pred.write_text(HEADER + "1,EP01,10,20,others\n2,EP02,40,50,others\n")
    report = strs_files(pred, gt)
    assert [key for key in report if key not in ("settings", "warnings")] == ["samm", "smic", "overall"]
    assert report["smic"]["spotting"]["tp"] == 1 and report["samm"]["spotting"]["fp"] == 1


def test_missing_subject_is_warned_and_counted_on_request(tmp_path):
    pred, gt = write_case(tmp_path, "B")
    default = strs_files(pred, gt)
    assert "1 subject(s) with no prediction (2)" in default["warnings"][0]
    counted = strs_files(pred, gt, count_missing_subjects=True)
    spot = counted["overall"]["spotting"]
    assert (spot["tp"], spot["fp"], spot["fn"]) == (2, 0, 3)
    assert spot["recall"] == pytest.approx(0.4) and spot["f1"] == pytest.approx(2 * 0.4 / 1.4)
    assert counted["overall"]["strs"] == pytest.approx(2 * 0.4 / 1.4 / 3)
    assert counted["overall"]["analysis"] == default["overall"]["analysis"]  # analysis uses spotted pairs only


def test_empty_predictions_score_zero_with_warnings(tmp_path):
    pred, gt = write_case(tmp_path, "D")
    report = strs_files(pred, gt)
    overall = report["overall"]
    assert overall["strs"] == 0 and overall["spotting"] == {"tp": 0, "fp": 0, "fn": 0, "precision": 0.0,
                                                            "recall": 0.0, "f1": 0.0}
    assert any("no spotted pairs" in w for w in report["warnings"])
    counted = strs_files(pred, gt, count_missing_subjects=True)["overall"]["spotting"]
    assert counted["fn"] == 3 and counted["recall"] == 0.0


def test_single_class_quirk_is_reproduced_and_warned(tmp_path):
    pred, gt = write_case(tmp_path, "C1")
    report = strs_files(pred, gt)
    assert report["overall"]["analysis"]["per_emotion"]["others"]["f1"] == 0.0
    assert report["overall"]["analysis"]["single_class_quirk"] == ["others"]
    assert any("confusion matrix is 1x1" in w for w in report["warnings"])


def test_iou_counts_inclusive_frames():
    a, b = Interval("1", "v", 10, 20, "x"), Interval("1", "v", 12, 22, "x")
    assert iou(a, b) == 9 / 13
    assert iou(a, Interval("1", "v", 21, 30, "x")) == 0.0
    assert iou(a, Interval("1", "v", 20, 30, "x")) == 1 / 21


def test_str_eval_command_prints_table_and_writes_json(tmp_path, capsys):
    pred, gt = write_case(tmp_path, "G")
    out = tmp_path / "report.json"
    assert main(["str-eval", "--pred", str(pred), "--gt", str(gt), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split()[:6] == ["Split", "GT", "Pred", "TP", "FP", "FN"]
    assert [line.split()[0] for line in lines[2:5]] == ["SAMM", "CAS", "Overall"]
    assert lines[4].split()[-1] == f"{EXPECTED['G']['STRS']:.4f}"
    written = json.loads(out.read_text())
    assert written.pop("stamp")["gold_files"] == {str(gt): hashlib.sha256(gt.read_bytes()).hexdigest()}
    assert written == json.loads(json.dumps(strs_files(pred, gt)))
    assert "CAS: 1 subject(s) with no prediction (spNO.2)" in captured.err


def test_unknown_video_is_warned(tmp_path, capsys):
    pred, gt = write_case(tmp_path, "F")
    assert main(["str-eval", "--pred", str(pred), "--gt", str(gt)]) == 0
    err = capsys.readouterr().err
    assert "2 prediction(s) name a video not in the ground truth (first: subject 1 video zz (" in err


@pytest.mark.parametrize("body, message", [
    ("subject,video,onset,emotion\n1,v,3,others\n", "pred.csv:1: missing column(s) offset"),
    (HEADER + "1,v,30,20,others\n", "pred.csv:2: onset 30 is after offset 20"),
    (HEADER + "1,v,10,20.5,others\n", "pred.csv:2: offset is '20.5', expected an integer frame number"),
    (HEADER + "1,v,ten,20,others\n", "pred.csv:2: onset is 'ten', expected an integer frame number"),
    (HEADER + "1,v,10,20,\n", "pred.csv:2: emotion is empty"),
    (HEADER + "1,v,10\n", "pred.csv:2: 3 fields, expected 5"),
    ("", "pred.csv: empty file"),
    (HEADER + "1,v,10,1e400,others\n", "pred.csv:2: offset is '1e400', expected an integer frame number"),
    ((HEADER + "1,v,10,20,others\n1,v,30,40,d\xe9go\xfbt\n").encode("latin-1"),
     "pred.csv:3: not UTF-8 text (byte 0xe9); save the file as UTF-8"),
    ("subject,video,onset,offset,emotion,onset\n1,v,10,20,others,5\n", "pred.csv:1: column onset appears 2 times"),
])
def test_bad_csv_is_a_one_line_error(tmp_path, capsys, body, message):
    pred = tmp_path / "pred.csv"
    pred.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    assert main(["str-eval", "--pred", str(pred), "--gt", str(STRS_FIXTURE / "gt.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mevqa str-eval: error: ") and message in err and "\n" not in err


def test_subjects_compare_as_integers_when_their_columns_are(tmp_path):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text(HEADER + "1,EP02_01f,45,85,happiness\n006,006_1,10,40,others\n")
    pred.write_text(HEADER + "01,EP02_01f,46,85,happiness\n6,006_1,10,40,others\n")
    assert [(r.subject, r.video) for r in read_intervals(pred)] == [(1, "EP02_01f"), (6, "006_1")]
    assert strs_files(pred, gt)["overall"]["spotting"]["tp"] == 2


# Hand-made files on which mevqa once differed from the official evaluator, with the evaluator's own figures: its
# strs_metric.py (genbing99/STRS-Metric at eb86468), unmodified, under pandas 1.5.3, numpy 1.26.4 and scikit-learn
# 1.2.2, each file read with pd.read_csv as its main.py does. Keys: the official metric names (official_metrics).
OFFICIAL_CASES = {
    # subject 6 against 006 in columns that are not all numbers: text, kept apart (the 006_1 video is not visited)
    "subject 6 is not 006 in a text column": (
        "006,006_1,10,40,happiness\nspNO.1,a,100,140,surprise\nspNO.1,a,200,240,happiness\n",
        "6,006_1,10,40,happiness\nspNO.1,a,100,140,surprise\nspNO.1,a,200,240,surprise\n",
        {"STRS": 1 / 3, "TP spotting": 2, "FP spotting": 0, "FN spotting": 0, "TP analysis": 1, "FP analysis": 1,
         "Precision analysis": 0.25, "Recall analysis": 0.5, "UF1 analysis": 1 / 3, "UAR analysis": 0.25}),
    # an emotion with a space before it is another emotion
    "' happiness' is not 'happiness'": (
        "1,EP02_01f,45,85,happiness\n1,EP02_01f,100,140,surprise\n",
        "1,EP02_01f,45,85, happiness\n1,EP02_01f,100,140,surprise\n",
        {"STRS": 0.5, "TP spotting": 2, "TP analysis": 1, "FP analysis": 0, "Precision analysis": 0.5,
         "Recall analysis": 0.5, "UF1 analysis": 0.5}),
    # NA is a missing value: a label of its own that matches nothing, its ground-truth pair still analysed
    "NA emotions are missing values": (
        "1,v1,10,40,happiness\n1,v1,100,140,NA\n1,v1,200,240,surprise\n1,v1,300,340,surprise\n",
        "1,v1,10,40,happiness\n1,v1,100,140,happiness\n1,v1,200,240,NA\n1,v1,300,340,surprise\n",
        {"STRS": 0.5, "TP spotting": 4, "TP analysis": 2, "FP analysis": 1, "FN analysis": 1,
         "Precision analysis": 0.5, "Recall analysis": 0.5, "UF1 analysis": 4 / 9, "UAR analysis": 0.5}),
    # None is not: pandas reads it as missing only from version 2, on which the official code does not run
    "None is an emotion to the official pandas": (
        "1,v1,10,40,happiness\n1,v1,100,140,None\n1,v1,200,240,surprise\n",
        "1,v1,10,40,happiness\n1,v1,100,140,None\n1,v1,200,240,happiness\n",
        {"STRS": 4 / 7, "TP spotting": 3, "TP analysis": 2, "FP analysis": 1, "Precision analysis": 0.5,
         "Recall analysis": 2 / 3, "F1-score analysis": 4 / 7, "UF1 analysis": 5 / 9}),
}


@pytest.mark.parametrize("gt_rows, pred_rows, expected", OFFICIAL_CASES.values(), ids=list(OFFICIAL_CASES))
def test_hand_made_files_score_as_the_official_evaluator(tmp_path, gt_rows, pred_rows, expected):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text(HEADER + gt_rows)
    pred.write_text(HEADER + pred_rows)
    figures = official_metrics(strs_files(pred, gt)["overall"])
    assert {key: figures[key] for key in expected} == pytest.approx(expected, abs=1e-12)


def test_subject_columns_of_other_types_give_the_official_evaluator_no_number(tmp_path, capsys):
    """Predictions' subjects all numbers, the ground truth's text: pandas reads one column as integers and the other
    as text, no subject matches, and the official code raises (KeyError 'gt', on no spotted pairs). mevqa prints 0
    and says why, in one warning each."""
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text(HEADER + "006,006_1,10,40,happiness\nspNO.1,a,100,140,surprise\n")
    pred.write_text(HEADER + "6,006_1,10,40,happiness\n1,a,100,140,surprise\n")
    assert [r.subject for r in read_intervals(gt)] == ["006", "spNO.1"]
    report = strs_files(pred, gt)
    assert report["overall"]["strs"] == 0 and report["overall"]["spotting"]["tp"] == 0
    assert report["warnings"][0].startswith("the subject column reads as numbers in the predictions and as text in "
                                            "the ground truth")
    assert any(w.startswith("Overall: F1_analysis is undefined (there are no spotted pairs; the official code "
                            "raises") for w in report["warnings"])
    assert main(["str-eval", "--pred", str(pred), "--gt", str(gt)]) == 0
    assert "the official evaluator matches no subject across them" in capsys.readouterr().err


