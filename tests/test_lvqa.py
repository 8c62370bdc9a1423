"""ME-LVQA: `mevqa build-lvqa` on synthetic SAMM-LV and CAS(ME)^3 long videos, `mevqa lvqa-predict --method spot`
answering them exactly, the two official test files answered in order in the participants' forms, `mevqa lvqa-eval`
against a hand computation, the question-kind recogniser, `mevqa answer` on a long video, bad input, kill -9."""

from __future__ import annotations

import json
import math
import random
import re
import zipfile

import pytest

from conftest import PUBLIC_DATA
from mevqa.cli import main
from mevqa.data_builders.lvqa import build_lvqa
from mevqa.data_builders.synth_long import plan_video, render_frames, write_long_dataset, write_mp4
from mevqa.errors import MevqaError
from mevqa.eval.lvqa import figures_from_sums, join_lvqa, score_lvqa
from mevqa.jsonl import read_jsonl
from mevqa.longvideo import lvqa

OFFICIAL_LVQA = [PUBLIC_DATA / "megc2026" / "test" / "me_lvqa_samm_test_to_answer.jsonl",
                 PUBLIC_DATA / "megc2026" / "test" / "me_lvqa_casme3_test_to_answer.jsonl"]
FRAMES = {"samm-lv": 800, "casme3": 240}
COUNT_FORM = re.compile(r"^\d+$")


def au_form(text: str) -> bool:
    return text == lvqa.NO_AUS or all(name in lvqa.vocab.AU_CODES for name in text.split(", "))


def accepted(question: str, answer: str) -> bool:
    kind = lvqa.lvqa_question(question).kind
    if kind in lvqa.COUNT_KINDS:
        return bool(COUNT_FORM.match(answer))
    if kind == lvqa.EVENT_TYPE:
        return answer in lvqa.TYPE_ANSWERS.values()
    return au_form(answer)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Synthetic SAMM-LV and CAS(ME)^3 long videos (three MEs and a macro-expression each) and build-lvqa's rows."""
    root = tmp_path_factory.mktemp("lvqa")
    out = {}
    for dataset in ("samm-lv", "casme3"):
        paths = write_long_dataset(dataset, root / dataset / "raw", videos=2, frames=FRAMES[dataset], seed=1)
        record = build_lvqa(dataset, root / dataset / "built", root=paths["root"], annotations=paths["annotations"],
                            emotions=paths.get("emotions"), macro=paths.get("macro"))
        out[dataset] = {"paths": paths, "out": root / dataset / "built", "record": record}
    return out


@pytest.fixture(scope="module")
def spot_run(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("lvqa-spot") / "pred"
    questions = [str(built[d]["out"] / "lvqa.jsonl") for d in built]
    assert main(["lvqa-predict", "--questions", *questions, "--method", "spot", "--out", str(out)]) == 0
    return out


def test_build_lvqa_gives_six_official_questions_per_video_answered_from_the_sheets(built):
    for dataset, item in built.items():
        rows = read_jsonl(item["out"] / "lvqa.jsonl")
        assert item["record"]["videos"] == 2 and len(rows) == 12
        planted = item["paths"]["intervals"]
        for video_rows in (rows[:6], rows[6:]):
            questions = [row["question"] for row in video_rows]
            assert questions[:4] == [lvqa.Q_COUNT_ALL, lvqa.Q_COUNT_MICRO, lvqa.Q_COUNT_MACRO, lvqa.Q_DISTINCT_AUS]
            numbers = [lvqa.lvqa_question(q).n for q in questions[4:]]
            assert questions[4:] == [lvqa.type_question(n) for n in numbers] and len(set(numbers)) == 2
            events = video_rows[0]["events"]
            assert all(row["events"] == events for row in video_rows)
            assert [e["onset"] for e in events] == sorted(e["onset"] for e in events)
            # the planted intervals of this video (three MEs and one macro-expression)
            mine = sorted((p for p in planted if video_rows[0]["video"].endswith(p["video"])),
                          key=lambda p: p["onset"])
            assert [(e["onset"], e["offset"], e["type"]) for e in events] == \
                   [(p["onset"], p["offset"], p["type"]) for p in mine]
            answers = [row["answer"] for row in video_rows]
            assert answers[:3] == ["4", "3", "1"]
            assert answers[4:] == [lvqa.TYPE_ANSWERS[events[n - 1]["type"]] for n in numbers]
            aus = set(answers[3].split(", "))
            assert aus == {name for e in events for name in e["aus"]} and aus
            assert {row["dataset"] for row in video_rows} == {"samm" if dataset == "samm-lv" else "casme3"}
        assert item["record"]["sources"]["annotations"]["sha256"]


def test_build_lvqa_all_events_and_a_reproducible_draw(built, tmp_path):
    paths = built["casme3"]["paths"]
    common = dict(root=paths["root"], annotations=paths["annotations"], macro=paths["macro"])
    build_lvqa("casme3", tmp_path / "all", all_events=True, **common)
    rows = read_jsonl(tmp_path / "all" / "lvqa.jsonl")
    assert len(rows) == 2 * (4 + 4)
    assert [lvqa.lvqa_question(r["question"]).n for r in rows[4:8]] == [1, 2, 3, 4]
    build_lvqa("casme3", tmp_path / "again", **common)
    def without_frames(path):  # frame folders are written relative to each output folder
        return [{k: v for k, v in row.items() if k != "frames"} for row in read_jsonl(path)]

    assert without_frames(tmp_path / "again" / "lvqa.jsonl") == without_frames(built["casme3"]["out"] / "lvqa.jsonl")


def test_spot_answers_the_synthetic_videos_exactly(built, spot_run):
    gold = [row for d in built for row in read_jsonl(built[d]["out"] / "lvqa.jsonl")]
    report = score_lvqa(read_jsonl(spot_run / "predictions.jsonl"), gold)
    for split in ("overall", "samm", "cas"):
        for key in ("mae_all", "rmse_all", "mae_micro", "rmse_micro", "mae_macro", "rmse_macro"):
            assert report[split][key] == 0.0, (split, key)
        assert report[split]["uf1_type"] == 1.0 and report[split]["uar_type"] == 1.0
        # without a model the AU question is answered with the empty set, and says so
        assert report[split]["f1_au"] == 0.0
    videos = read_jsonl(spot_run / "videos.jsonl")
    assert all("no VQA model" in line["notes"][0] for line in videos)
    assert main(["lvqa-eval", "--pred", str(spot_run / "predictions.jsonl"), "--gold",
                 *(str(built[d]["out"] / "lvqa.jsonl") for d in built), "--bootstrap", "0"]) == 0


@pytest.fixture(scope="module")
def official_videos(tmp_path_factory):
    """Short synthetic long videos (mp4, 30 fps) named as the official test files' videos."""
    root = tmp_path_factory.mktemp("official-videos")
    names = list(dict.fromkeys(row["video"] for path in OFFICIAL_LVQA for row in read_jsonl(path)))
    for i, name in enumerate(names):
        video = plan_video("casme3", 1 + i % 5, 1, 150, random.Random(i), first=0)
        write_mp4(root / f"{name}.mp4", render_frames(video, 64, 48, seed=i), 30.0)
    return root


@pytest.fixture(scope="module")
def official_run(official_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("lvqa-official") / "pred"
    assert main(["lvqa-predict", "--questions", *map(str, OFFICIAL_LVQA), "--videos", str(official_videos),
                 "--method", "spot", "--out", str(out)]) == 0
    return out


def test_official_files_are_answered_in_order_in_accepted_forms(official_run):
    for question_file in OFFICIAL_LVQA:
        questions = read_jsonl(question_file)
        pred = read_jsonl(official_run / question_file.name.replace("_to_answer", "_pred"))
        assert [r["video_id"] for r in pred] == [q["video_id"] for q in questions]
        assert [r["question"] for r in pred] == [q["question"] for q in questions]
        bad = [(r["question"], r["answer"]) for r in pred if not accepted(r["question"], r["answer"])]
        assert not bad
    with zipfile.ZipFile(official_run / "submission.zip") as archive:
        assert sorted(archive.namelist()) == ["me_lvqa_casme3_test_pred.jsonl", "me_lvqa_samm_test_pred.jsonl"]
    # the 33-th event of a video with four: answered by the rule, and noted
    notes = [p for p in read_jsonl(official_run / "predictions.jsonl") if "note" in p]
    assert notes and all(p["answer"] in lvqa.TYPE_ANSWERS.values() for p in notes)


@pytest.mark.e2e
def test_kill_then_rerun_gives_the_files_of_an_uninterrupted_run(official_videos, official_run, tmp_path):
    from processes import kill_when

    out = tmp_path / "killed"
    argv = ["lvqa-predict", "--questions", *map(str, OFFICIAL_LVQA), "--videos", str(official_videos), "--method",
            "spot", "--out", str(out)]
    log = out / "videos.jsonl"
    kill_when(argv, lambda: log.is_file() and log.read_bytes().count(b"\n") >= 2)
    assert 2 <= log.read_bytes().count(b"\n") < 30
    finished = log.read_bytes()
    with log.open("a", encoding="utf-8") as handle:  # killed in the middle of a line
        handle.write('{"subject": "x", "video": "dzw')
    assert main(argv) == 0
    # the rerun went on from the next video: the finished ones were kept, none was answered twice
    assert log.read_bytes().startswith(finished) and log.read_bytes().count(b"\n") == 30
    for name in ("predictions.jsonl", "me_lvqa_samm_test_pred.jsonl", "me_lvqa_casme3_test_pred.jsonl"):
        assert (out / name).read_bytes() == (official_run / name).read_bytes()


def test_answer_recognises_an_lvqa_question_on_a_long_video(built, capsys):
    paths = built["casme3"]["paths"]
    video = paths["root"] / "spNo.1" / "b" / "color"
    planted = [p for p in paths["intervals"] if (p["subject"], p["video"]) == ("spNO.1", "b")]
    assert len(planted) == 4
    for question, expected in (("How many micro-expression events appear in this video?", "3"),
                               ("How many macro-expressions are there in this video?", "1")):
        assert main(["answer", "--clip", str(video), "--fps", "30", "--question", question]) == 0
        assert capsys.readouterr().out.strip() == expected
    second = sorted(planted, key=lambda p: p["onset"])[1]["type"]
    assert main(["answer", "--clip", str(video), "--fps", "30", "--question",
                 "What is the type of the 2nd expression event in this video?"]) == 0
    assert capsys.readouterr().out.strip() == lvqa.TYPE_ANSWERS[second]


def test_a_model_answers_types_aus_and_whole_videos_in_accepted_forms(built, tiny_model_dir, tmp_path):
    questions = str(built["casme3"]["out"] / "lvqa.jsonl")
    for method in ("spot", "vlm"):
        out = tmp_path / method
        assert main(["lvqa-predict", "--questions", questions, "--method", method, "--out", str(out), "--model",
                     str(tiny_model_dir), "--inputs", "oao"]) == 0
        pred = read_jsonl(out / "predictions.jsonl")
        assert len(pred) == 12 and all(accepted(p["question"], p["answer"]) for p in pred)
        run = json.loads((out / "run.json").read_text())
        assert run["method"] == method and run["inference"]["inputs"] == "oao"
    spot = read_jsonl(tmp_path / "spot" / "predictions.jsonl")
    # the events come from the spotter (four per video), their types from the model
    assert spot[0]["answer"] == "4" and int(spot[1]["answer"]) + int(spot[2]["answer"]) == 4


# --- the recogniser ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("question, kind, n", [
    ("How many expression events appear in this video?", lvqa.COUNT_ALL, None),
    ("How many micro-expression events appear in this video?", lvqa.COUNT_MICRO, None),
    ("how many MACRO-expressions occur in the video", lvqa.COUNT_MACRO, None),
    ("How many microexpressions are there?", lvqa.COUNT_MICRO, None),
    ("What distinct action units appear in this video?", lvqa.DISTINCT_AUS, None),
    ("Which AUs appear in the video?", lvqa.DISTINCT_AUS, None),
    ("What is the expression type of the 1-th expression event in this video?", lvqa.EVENT_TYPE, 1),
    ("What is the expression type of the 23-th expression event in this video?", lvqa.EVENT_TYPE, 23),
    ("What is the expression type of the 1st expression event in this video?", lvqa.EVENT_TYPE, 1),
    ("What is the expression type of the 2nd event?", lvqa.EVENT_TYPE, 2),
    ("Expression type of the 3rd event in the video?", lvqa.EVENT_TYPE, 3),
    ("What type is the third expression event?", lvqa.EVENT_TYPE, 3),
])
def test_question_kinds_are_recognised(question, kind, n):
    assert lvqa.lvqa_question(question) == lvqa.LvqaQuestion(kind, n)


def test_no_official_vqa_question_is_taken_for_an_lvqa_one(public_data):
    files = [public_data / "megc2025" / "train" / "me_vqa_samm_casme2_smic.jsonl",
             *sorted((public_data / "megc2026" / "test").glob("me_vqa_*.jsonl"))]
    questions = {row["question"] for path in files for row in read_jsonl(path)}
    assert len(questions) > 30 and not [q for q in questions if lvqa.lvqa_question(q)]
    with pytest.raises(MevqaError, match="^here: 'What is the coarse expression class\\?' is not an ME-LVQA"):
        lvqa.recognise("What is the coarse expression class?", "here")


# --- scoring against a hand computation -------------------------------------------------------------------------
def gold_row(vid, k, question, answer):
    return {"video_id": f"{vid}_{k}", "video": vid.split("_", 1)[1], "question": question, "answer": answer}


GOLD = [
    # SAMM video A: 3 events (micro, micro, macro), AUs {brow lowerer, lip corner puller}
    gold_row("samm_A", 1, lvqa.Q_COUNT_ALL, "3"), gold_row("samm_A", 2, lvqa.Q_COUNT_MICRO, "2"),
    gold_row("samm_A", 3, lvqa.Q_COUNT_MACRO, "1"), gold_row("samm_A", 4, lvqa.Q_DISTINCT_AUS,
                                                             "brow lowerer, lip corner puller"),
    gold_row("samm_A", 5, lvqa.type_question(1), "micro-expression"),
    gold_row("samm_A", 6, lvqa.type_question(3), "macro-expression"),
    # CAS video B: no event at all
    gold_row("casme3_B", 1, lvqa.Q_COUNT_ALL, "0"), gold_row("casme3_B", 2, lvqa.Q_COUNT_MICRO, "0"),
    gold_row("casme3_B", 3, lvqa.Q_COUNT_MACRO, "0"), gold_row("casme3_B", 4, lvqa.Q_DISTINCT_AUS, "none"),
    # CAS video C: 4 events, AUs {inner brow raiser, outer brow raiser, brow lowerer}
    gold_row("casme3_C", 1, lvqa.Q_COUNT_ALL, "4"), gold_row("casme3_C", 2, lvqa.Q_COUNT_MICRO, "1"),
    gold_row("casme3_C", 3, lvqa.Q_COUNT_MACRO, "3"), gold_row("casme3_C", 4, lvqa.Q_DISTINCT_AUS,
                                                               "inner brow raiser, outer brow raiser, brow lowerer"),
    gold_row("casme3_C", 5, lvqa.type_question(2), "macro-expression"),
    gold_row("casme3_C", 6, lvqa.type_question(4), "micro-expression"),
]
ANSWERS = {
    "samm_A_1": "three", "samm_A_2": "2 events", "samm_A_3": "2", "samm_A_4": "AU4, AU12, AU1",
    "samm_A_5": "micro", "samm_A_6": "It is a micro-expression.",
    "casme3_B_1": "1", "casme3_B_2": "banana", "casme3_B_3": "0", "casme3_B_4": "none",
    "casme3_C_1": "4", "casme3_C_2": "one", "casme3_C_3": "5", "casme3_C_4": "inner brow raiser",
    "casme3_C_5": "macro-expression", "casme3_C_6": "not sure",
}


def test_lvqa_eval_equals_a_hand_computation():
    pred = [{"video_id": rid, "answer": text} for rid, text in ANSWERS.items()]
    report = score_lvqa(pred, GOLD)
    # absolute count errors, row by row: A 0 0 1; B 1, unparseable with gold 0 -> 1, 0; C 0 0 2
    samm = report["samm"]
    assert (samm["mae_all"], samm["mae_micro"], samm["mae_macro"]) == (0.0, 0.0, 1.0)
    assert (samm["rmse_all"], samm["rmse_micro"], samm["rmse_macro"]) == (0.0, 0.0, 1.0)
    cas = report["cas"]
    assert (cas["mae_all"], cas["mae_micro"], cas["mae_macro"]) == (0.5, 0.5, 1.0)
    assert cas["rmse_all"] == pytest.approx(math.sqrt(1 / 2)) and cas["rmse_macro"] == pytest.approx(math.sqrt(2))
    overall = report["overall"]
    assert overall["mae_all"] == pytest.approx(1 / 3) and overall["mae_macro"] == pytest.approx(1.0)
    assert overall["rmse_macro"] == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    # AUs: A extra AU: P={1,4,12}, G={4,12}: F1 4/5, J 2/3; B both empty: 1, 1; C missing AUs: P={1}, G={1,2,4}:
    # F1 2/4, J 1/3
    assert samm["f1_au"] == pytest.approx(0.8) and samm["jaccard_au"] == pytest.approx(2 / 3)
    assert cas["f1_au"] == pytest.approx((1 + 0.5) / 2) and cas["jaccard_au"] == pytest.approx((1 + 1 / 3) / 2)
    assert overall["f1_au"] == pytest.approx((0.8 + 1 + 0.5) / 3)
    # types: SAMM gold (micro, macro), pred (micro, micro): F1 micro 2/3, macro 0; recall 1, 0
    assert samm["uf1_type"] == pytest.approx(1 / 3) and samm["uar_type"] == pytest.approx(0.5)
    # CAS gold (macro, micro), pred (macro, unparseable): F1 macro 1, micro 0; recall 1, 0
    assert cas["uf1_type"] == pytest.approx(0.5) and cas["uar_type"] == pytest.approx(0.5)
    # Overall gold (micro, macro, macro, micro), pred (micro, micro, macro, ?): micro tp 1 support 2 predicted 2 ->
    # F1 1/2, recall 1/2; macro tp 1 support 2 predicted 1 -> F1 2/3, recall 1/2
    assert overall["uf1_type"] == pytest.approx((1 / 2 + 2 / 3) / 2) and overall["uar_type"] == pytest.approx(0.5)
    assert sorted(u["id"] for u in report["unparseable"]) == ["casme3_B_2", "casme3_C_6"]
    assert report["counts"]["rows"] == 16 and report["counts"]["videos"] == 3


def test_lvqa_eval_bootstrap_sums_equal_the_point_figures_and_are_seeded():
    pred = [{"video_id": rid, "answer": text} for rid, text in ANSWERS.items()]
    joined = join_lvqa(pred, GOLD)
    point = score_lvqa(pred, GOLD)["overall"]
    from_sums = figures_from_sums(joined.stats.sum(axis=0))
    for key, value in from_sums.items():
        assert float(value) == pytest.approx(point[key]), key
    a, b = score_lvqa(pred, GOLD, bootstrap=200, seed=3), score_lvqa(pred, GOLD, bootstrap=200, seed=3)
    assert a == b and a["bootstrap"]["videos"] == {"overall": 3, "samm": 1, "cas": 2}
    lo, hi = a["cas"]["f1_au_ci"]
    assert lo == pytest.approx(0.5) and hi == pytest.approx(1.0)  # two CAS videos: F1 0.5 or 1 each
    assert a["samm"]["mae_macro_ci"] == [1.0, 1.0]


@pytest.mark.parametrize("answer, count", [("2 events", 2), ("There are 3.", 3), ("+4", 4), ("three", 3),
                                           ("none", 0), ("-2", None), ("1.5", None), ("1e3", None),
                                           ("1000000", None), ("9" * 400, None), ("lots", None)])
def test_a_count_is_a_whole_number_or_unreadable(answer, count):
    """Signs, decimals and exponents belong to the number read, so "-2" and "1.5" are unreadable rather than read as
    2 and 1; more than six digits is no count (and 400 of them once overflowed the squared error)."""
    assert lvqa.parse_count(answer) == count


def test_no_aus_in_any_wording_is_the_empty_set():
    for answer in ("none", "No action units.", "No AUs", "no AU", ""):
        assert lvqa.parse_au_set(answer) == frozenset(), answer
    assert lvqa.parse_au_set("AU99") is None and lvqa.parse_au_set("banana") is None


def test_lvqa_eval_scores_an_absurd_count_as_unreadable():
    pred = [{"video_id": rid, "answer": "9" * 400 if rid == "samm_A_1" else text} for rid, text in ANSWERS.items()]
    report = score_lvqa(pred, GOLD)
    assert "samm_A_1" in [item["id"] for item in report["unparseable"]]
    assert report["samm"]["mae_all"] == 3.0  # scored as 0 against the gold 3


def test_build_lvqa_refuses_an_empty_official_file(built, tmp_path, capsys):
    paths = built["samm-lv"]["paths"]
    empty = tmp_path / "me_lvqa_samm_test_to_answer.jsonl"
    empty.write_text("")
    assert main(["build-lvqa", "samm-lv", "--root", str(paths["root"]), "--annotations", str(paths["annotations"]),
                 "--emotions", str(paths["emotions"]), "--official", str(empty), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err  # the sheet reader's INFO lines come first
    assert [line for line in err.splitlines() if line.startswith("mevqa build-lvqa: error: ")] == \
        [f"mevqa build-lvqa: error: {empty}: no question rows; expected official ME-LVQA rows (video_id, video, "
         "question)"] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_lvqa_eval_refuses_a_prediction_for_no_gold_row():
    with pytest.raises(MevqaError, match="'samm_Z_1' is not in the gold rows"):
        score_lvqa([{"video_id": "samm_Z_1", "answer": "1"}], GOLD)


# --- bad input --------------------------------------------------------------------------------------------------
def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mevqa {command}: error: "), err
    return err[0]


def test_a_missing_long_video_is_one_line(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    assert main(["lvqa-predict", "--questions", str(OFFICIAL_LVQA[0]), "--videos", str(tmp_path / "videos"),
                 "--method", "spot", "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys, "lvqa-predict")
    assert "me_lvqa_samm_test_to_answer.jsonl:1" in line and "1_001_2" in line and "missing" in line
    assert not (tmp_path / "out").exists()


def test_an_unknown_question_kind_is_one_line(tmp_path, capsys):
    rows = read_jsonl(OFFICIAL_LVQA[0])[:6]
    rows[2]["question"] = "What is the coarse expression class?"
    path = tmp_path / "me_lvqa_samm_test_to_answer.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_line"}) + "\n" for r in rows))
    assert main(["lvqa-predict", "--questions", str(path), "--videos", str(tmp_path), "--method", "spot", "--out",
                 str(tmp_path / "out")]) == 2
    assert f"{path}:3" in one_error_line(capsys, "lvqa-predict")


def test_a_sheet_row_without_a_type_is_one_line(tmp_path, capsys):
    from openpyxl import load_workbook

    paths = write_long_dataset("samm-lv", tmp_path / "raw", videos=1, frames=1000, seed=2)
    book = load_workbook(paths["annotations"])
    sheet = book.active
    header = next(row for row in sheet.iter_rows() if row[0].value == "Subject")
    column = {cell.value: cell.column for cell in header}
    sheet.cell(header[0].row + 2, column["Type"]).value = None
    book.save(paths["annotations"])
    assert main(["build-lvqa", "samm-lv", "--root", str(paths["root"]), "--annotations", str(paths["annotations"]),
                 "--emotions", str(paths["emotions"]), "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys, "build-lvqa")
    assert f"row {header[0].row + 2}" in line and "Type is empty" in line
    assert not (tmp_path / "out").exists()
