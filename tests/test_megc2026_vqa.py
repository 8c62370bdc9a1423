"""MEGC2026 ME-VQA-v2: the analysis question, from build-data through predict (every strategy), consistency,
submission and scoring, on the public v2 test questions (data/megc2026/test/) and synthetic data."""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import PUBLIC_DATA
from inference_clips import write_test_clips
from mevqa import vocab
from mevqa.answering.au_rules import parse_au_names
from mevqa.answering.consistency import consistent_answers
from mevqa.answering.strategies import analysis_parts, label_of, vote_answer
from mevqa.cli import main
from mevqa.eval import score
from mevqa.messages import KIND_SYSTEM_PROMPTS, system_prompt_for

V2_TEST = [PUBLIC_DATA / "megc2026" / "test" / "me_vqa_samm_v2_test_to_answer.jsonl",
           PUBLIC_DATA / "megc2026" / "test" / "me_vqa_casme3_v2_test_to_answer.jsonl"]
V2_PRED_NAMES = ["me_vqa_samm_v2_test_pred.jsonl", "me_vqa_casme3_v2_test_pred.jsonl"]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def kind(row: dict) -> str | None:
    return vocab.question_kind(row["question"])


def by_clip(rows: list[dict], key: str = "video") -> dict[str, dict]:
    """{clip: {kind: row}}; every kind but presence (asked twice in built rows: yes, then no) once per clip."""
    clips: dict = defaultdict(dict)
    for row in rows:
        assert kind(row) == vocab.PRESENCE or kind(row) not in clips[row[key]], row
        clips[row[key]].setdefault(kind(row), row)
    return clips


def error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"mevqa {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- the question kind ------------------------------------------------------------------------------------------
def test_the_analysis_prompts_and_their_variants_are_one_kind_and_nothing_else_is():
    variants = ["Please analyze the micro-expression shown in this video in detail.",
                "please ANALYSE the microexpression in this clip", "Describe the facial micro expression in detail.",
                "Give a description of the facial expression shown in this clip.",
                "Could you provide an in-depth analysis of this micro-expression?"]
    for question in (*vocab.Q_ANALYSIS, *variants):
        assert vocab.question_kind(question) == vocab.ANALYSIS, question
    # The 2025 questions keep their kinds; LVQA questions and other free questions are not analysis prompts.
    assert vocab.question_kind(vocab.Q_COMPOSITE_MANY) == vocab.COMPOSITE
    assert vocab.question_kind(vocab.Q_FINE) == vocab.FINE
    for other in ["How many micro-expression events appear in this video?",
                  "What is the expression type of the 2-th expression event in this video?",
                  "What distinct action units appear in this video?", "Analyse this video.", vocab.Q_SPOT]:
        assert vocab.question_kind(other) is None, other
    # Every analysis prompt of the public v2 test files is recognised, one per clip, in the 5th place.
    for path in V2_TEST:
        rows = read_lines(path)
        assert [kind(row) for row in rows[4::5]] == [vocab.ANALYSIS] * (len(rows) // 5)
        assert {row["question"] for row in rows[4::5]} <= set(vocab.Q_ANALYSIS)
    # The one place prompts are built gives it its own system prompt.
    assert system_prompt_for(vocab.Q_ANALYSIS[1]) == KIND_SYSTEM_PROMPTS[vocab.ANALYSIS]
    assert "coarse expression class" in KIND_SYSTEM_PROMPTS[vocab.ANALYSIS]


def test_the_analysis_template_reads_back_as_its_parts():
    for names, fine in ((["lip corner puller"], "happiness"), (["inner brow raiser", "outer brow raiser"],
                                                                 "surprise"), (["brow lowerer", "lips part"], "fear")):
        text = vocab.analysis_answer(names, fine, vocab.FINE_TO_COARSE[fine])
        assert analysis_parts(text) == (names, fine, vocab.FINE_TO_COARSE[fine]), text
        assert ("action units:" in text) == (len(names) > 1)
    # vote: the first sample naming the voted parts, not a rebuilt text.
    samples = ["Cheek raiser: happiness.", "It is the lip corner puller, so happiness.",
               "Lip corner puller and nothing else; the fine-grained expression class is happiness.",
               "Lip corner puller shows disgust."]
    assert vote_answer(samples, vocab.Q_ANALYSIS[0]) == samples[1]


def test_consistency_keeps_an_agreeing_analysis_and_rewrites_the_others():
    rows = read_lines(V2_TEST[0])[:5]              # SAMM-1: coarse, fine, "What is the action unit?", presence, analysis
    agreeing = "Only the cheek raiser moves: the fine-grained expression class is disgust, a negative reaction."
    kept = consistent_answers(rows, ["negative", "disgust", "cheek raiser", "yes", agreeing])
    assert [answer.text for answer in kept] == ["negative", "disgust", "cheek raiser", "yes", agreeing]
    assert all(answer.consistency is None for answer in kept)
    # The analysis names another AU and class than the clip's answers (after coarse follows fine): rewritten.
    made = consistent_answers(rows, ["positive", "disgust", "lip corner puller", "no",
                                     "The brow lowerer shows happiness."])
    assert [answer.text for answer in made] == ["negative", "disgust", "lip corner puller", "no",
                                                vocab.analysis_answer(["lip corner puller"], "disgust", "negative")]
    assert made[4].consistency == "analysis in mevqa's template from the clip's AU, fine and coarse answers"
    assert [answer.text for answer in consistent_answers(rows, made)] == [answer.text for answer in made]
    # Without the clip's other rows, the analysis answer's own parts stand.
    alone = consistent_answers(rows[4:], ["The brow lowerer shows happiness."])
    assert alone[0].text == vocab.analysis_answer(["brow lowerer"], "happiness", "positive")


# --- build-data --questions 2026 ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_samm(tmp_path_factory) -> dict:
    from mevqa.data_builders.synth import write_synthetic_dataset

    return write_synthetic_dataset("samm", tmp_path_factory.mktemp("v2-samm") / "raw", clips=7, frames=6)


def build(raw: dict, out: Path, *extra) -> list[dict]:
    assert main(["build-data", "samm", "--root", str(raw["root"]), "--annotations", str(raw["annotations"]),
                 "--out", str(out), "--inputs", "none", *map(str, extra)]) == 0
    return read_lines(out / "qa.jsonl")


# The analysis prompt each synthetic SAMM clip is asked with seed 0 (index into vocab.Q_ANALYSIS): fixed here, so a
# change of the draw (or a draw that differs between machines or Python processes) fails.
SEED0_PROMPTS = {"006_1_1": 1, "007_2_1": 1, "006_3_2": 1, "007_4_2": 2, "006_5_3": 0, "007_6_3": 1, "006_7_4": 2}


def test_build_2026_replaces_the_composite_row_by_an_analysis_row(synth_samm, tmp_path):
    old = build(synth_samm, tmp_path / "2025")
    new = build(synth_samm, tmp_path / "2026", "--questions", "2026")
    # Same ids and rows, but the composite row of each clip is now the clip's analysis row.
    assert [row["id"] for row in new] == [row["id"] for row in old]
    assert [kind(row) for row in new] == [vocab.ANALYSIS if kind(row) == vocab.COMPOSITE else kind(row)
                                          for row in old]
    assert [row for row in new if kind(row) != vocab.ANALYSIS] == [row for row in old if kind(row) != vocab.COMPOSITE]
    clips = by_clip(new, key="image_id")
    assert {clip: vocab.Q_ANALYSIS.index(rows[vocab.ANALYSIS]["question"])
            for clip, rows in clips.items()} == SEED0_PROMPTS
    for clip, rows in clips.items():
        names = parse_au_names(rows[vocab.AU]["answer"])
        fine, coarse = rows[vocab.FINE]["answer"], rows[vocab.COARSE]["answer"]
        assert rows[vocab.ANALYSIS]["answer"] == vocab.analysis_answer(names, fine, coarse), clip
        assert analysis_parts(rows[vocab.ANALYSIS]["answer"]) == (names, fine, coarse)
    # The question set is the build's provenance: 2025 when not asked for.
    assert json.loads((tmp_path / "2026" / "build.json").read_text())["options"]["questions"] == "2026"
    assert json.loads((tmp_path / "2025" / "build.json").read_text())["options"]["questions"] == "2025"
    # Reproducible: the same seed gives the same file; another seed draws other prompts (answers unchanged).
    again = build(synth_samm, tmp_path / "again", "--questions", "2026")
    assert (tmp_path / "again" / "qa.jsonl").read_bytes() == (tmp_path / "2026" / "qa.jsonl").read_bytes()
    other = by_clip(build(synth_samm, tmp_path / "seed1", "--questions", "2026", "--seed", "1"), key="image_id")
    assert [rows[vocab.ANALYSIS]["question"] for rows in other.values()] != \
        [rows[vocab.ANALYSIS]["question"] for rows in clips.values()]
    assert [rows[vocab.ANALYSIS]["answer"] for rows in other.values()] == \
        [rows[vocab.ANALYSIS]["answer"] for rows in clips.values()]
    assert again == new


def official_v2_file(rows: list[dict], path: Path) -> Path:
    """A synthetic v2 training file in the official row format: the build's rows without mevqa's keys, the analysis
    answers in another (organiser-like) wording, so that taking them verbatim can be told from regenerating."""
    keep = ("id", "dataset", "image_id", "subject", "filename", "question", "answer")
    lines = []
    for row in rows:
        row = {key: row[key] for key in keep}
        if kind(row) == vocab.ANALYSIS:
            row["answer"] = f"Subtle movements are visible around the face of clip {row['image_id']}."
        lines.append(json.dumps(row) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_build_from_an_official_v2_file_keeps_its_answers(synth_samm, tmp_path, capsys):
    generated = build(synth_samm, tmp_path / "gen", "--questions", "2026")
    official = official_v2_file(generated, tmp_path / "me_vqa_samm_casme2_smic_v2.jsonl")
    built = build(synth_samm, tmp_path / "official", "--official", official)
    assert [(row["id"], row["question"], row["answer"]) for row in built] == \
        [(row["id"], row["question"], row["answer"]) for row in read_lines(official)]
    assert all(row["clip"]["aus"] for row in built)             # joined to the sheet
    assert json.loads((tmp_path / "official" / "build.json").read_text())["options"]["questions"] == "2026"
    assert build(synth_samm, tmp_path / "said", "--official", official, "--questions", "2026") == built
    # The 2025 set contradicts the file: one line, exit 2, nothing built.
    argv = ["build-data", "samm", "--root", str(synth_samm["root"]), "--annotations", str(synth_samm["annotations"]),
            "--inputs", "none", "--official", str(official)]
    assert main([*argv, "--out", str(tmp_path / "x"), "--questions", "2025"]) == 2
    assert "asks the 2026 question set (analysis prompts), but --questions is 2025" in error_line(capsys, "build-data")
    assert not (tmp_path / "x").exists()


def test_bad_question_set_or_question_kind_is_one_line_exit_2(synth_samm, tmp_path, capsys):
    argv = ["build-data", "samm", "--root", str(synth_samm["root"]), "--annotations", str(synth_samm["annotations"]),
            "--inputs", "none", "--out", str(tmp_path / "out")]
    assert main([*argv, "--questions", "2027"]) == 2
    assert "--questions must be one of 2025, 2026, got '2027'" in error_line(capsys, "build-data")
    rows = read_lines(official_v2_file(build(synth_samm, tmp_path / "gen", "--questions", "2026"),
                                       tmp_path / "v2.jsonl"))
    rows[8]["question"] = "What is the colour of the wall?"
    bad = tmp_path / "me_vqa_samm_casme2_smic_v2.jsonl"
    bad.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert main([*argv, "--official", str(bad)]) == 2
    assert f"{bad}:9: question 'What is the colour of the wall?' is of no known kind" in \
        error_line(capsys, "build-data")
    rows[8]["question"] = vocab.Q_COMPOSITE_MANY                # one file, one question set
    bad.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert main([*argv, "--official", str(bad)]) == 2
    assert f"{bad}:9: a composite question (2025) in a file that asks analysis prompts" in \
        error_line(capsys, "build-data")
    assert not (tmp_path / "out").exists()


# --- predict, submit and eval on the v2 test questions --------------------------------------------------------------
@pytest.fixture(scope="module")
def test_clips(tmp_path_factory) -> Path:
    return write_test_clips(tmp_path_factory.mktemp("v2-clips"), n_frames=6)


def test_build_from_the_v2_test_questions_attaches_inputs(test_clips, tmp_path):
    out = tmp_path / "out"
    assert main(["build-data", "samm", "--official", str(V2_TEST[0]), "--root", str(test_clips / "SAMM"), "--out",
                 str(out), "--inputs", "oao", "--size", "64"]) == 0
    rows = read_lines(out / "qa.jsonl")
    assert [(row["video_id"], row["question"], row["answer"]) for row in rows] == \
        [(row["video_id"], row["question"], row["answer"]) for row in read_lines(V2_TEST[0])]
    assert all(len(row["media"]["oao"]["frames"]) == 3 for row in rows)
    assert json.loads((out / "build.json").read_text())["options"]["questions"] == "2026"


def assert_analysis_agrees(rows: list[dict]) -> None:
    """Each clip's analysis answer names the clip's AU list, fine and coarse class, as its other answers give them
    (read as the scorer reads labels). Where a random model's answers name no AU or no class, there is nothing to
    agree with: the analysis answer is mevqa's template around those answers as written."""
    for video, clip in by_clip(rows).items():
        names = parse_au_names(clip[vocab.AU]["answer"])
        fine, coarse = label_of(clip[vocab.FINE]["answer"], vocab.FINE), label_of(clip[vocab.COARSE]["answer"],
                                                                               vocab.COARSE)
        text = clip[vocab.ANALYSIS]["answer"]
        if names and fine and coarse:
            assert coarse == vocab.FINE_TO_COARSE[fine], video
            said = analysis_parts(text)
            assert (set(said[0]), said[1], said[2]) == (set(names), fine, coarse), (video, text)
        else:
            assert text.startswith("In this clip the face shows"), (video, text)
            assert all(clip[k]["answer"].strip() in text for k in (vocab.AU, vocab.FINE, vocab.COARSE)), (video, text)


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory, tiny_model_dir, test_clips) -> Path:
    """The whole v2 test files through predict (direct), consistent by default (official files)."""
    out = tmp_path_factory.mktemp("v2-direct") / "out"
    assert main(["predict", "--questions", *map(str, V2_TEST), "--clips", str(test_clips), "--model",
                 str(tiny_model_dir), "--out", str(out), "--inputs", "flow", "--batch-size", "8",
                 "--max-new-tokens", "8"]) == 0
    return out


def test_predict_v2_writes_the_2026_submission_with_consistent_analysis_answers(direct_run):
    questions = [row for path in V2_TEST for row in read_lines(path)]
    final = read_lines(direct_run / "final_predictions.jsonl")
    assert [(row["video_id"], row["question"]) for row in final] == \
        [(row["video_id"], row["question"]) for row in questions]
    assert all(row["answer"].strip() for row in final)
    assert_analysis_agrees(final)
    raw = {row["video_id"]: row for row in read_lines(direct_run / "predictions.jsonl")}
    rewritten = [row for row in final if kind(row) == vocab.ANALYSIS and row["answer"] != raw[row["video_id"]]["answer"]]
    assert rewritten and all(row["consistency"].startswith("analysis in mevqa's template") for row in rewritten)
    # The submission files follow the question files' names: the 2026 names, in question order, and the zip.
    for source, name in zip(V2_TEST, V2_PRED_NAMES):
        submitted = read_lines(direct_run / name)
        assert [{**row, "answer": ""} for row in submitted] == read_lines(source)
    with zipfile.ZipFile(direct_run / "submission.zip") as archive:
        assert sorted(archive.namelist()) == sorted(V2_PRED_NAMES)
    assert sorted(path.name for path in direct_run.glob("*_pred.jsonl")) == sorted(V2_PRED_NAMES)


@pytest.mark.parametrize("strategy", ["constrained", "vote", "hierarchical+constrained", "au-rules",
                                      "au-rules+hierarchical+vote"])
def test_every_strategy_answers_the_v2_questions(strategy, tmp_path, tiny_model_dir, test_clips):
    out = tmp_path / "out"
    extra = {"constrained": ["--max-aus", "3"], "vote": ["--votes", "2", "--vote-temperature", "1.0"]}
    assert main(["predict", "--questions", *map(str, V2_TEST), "--clips", str(test_clips), "--model",
                 str(tiny_model_dir), "--out", str(out), "--inputs", "flow", "--max-new-tokens", "8",
                 "--strategy", strategy, *extra.get(strategy.rpartition("+")[2], [])]) == 0
    raw = read_lines(out / "predictions.jsonl")
    analysis = [row for row in raw if kind(row) == vocab.ANALYSIS]
    assert len(raw) == 120 and len(analysis) == 24 and all(row["answer"].strip() for row in analysis)
    if strategy.endswith("constrained"):  # label questions scored, the analysis answer left free (generated) text
        assert all("label_probs" not in row and "au_steps" not in row for row in analysis)
        assert all("label_probs" in row for row in raw if kind(row) in (vocab.COARSE, vocab.FINE, vocab.PRESENCE))
    if strategy.endswith("vote"):
        assert all(len(row["votes"]) == 2 and row["answer"] in row["votes"] for row in analysis)
    final = read_lines(out / "final_predictions.jsonl")
    assert [row["video_id"] for row in final] == [row["video_id"] for path in V2_TEST for row in read_lines(path)]
    assert_analysis_agrees(final)
    if strategy.endswith("constrained"):  # every clip has labels, so the agreement is on real classes
        assert all(analysis_parts(row["answer"])[1] for row in final if kind(row) == vocab.ANALYSIS)
        assert all(parse_au_names(row["answer"]) for row in final if kind(row) == vocab.ANALYSIS)
    assert sorted(path.name for path in out.glob("*_pred.jsonl")) == sorted(V2_PRED_NAMES)


def synthetic_gold(questions: list[dict]) -> list[dict]:
    """Gold answers for the v2 test questions: a label set per clip (cycling over classes and AUs), the analysis
    answer in mevqa's template."""
    gold, clips = [], {}
    fine_cycle = ("happiness", "disgust", "surprise", "anger", "fear", "sadness")
    for row in questions:
        n = clips.setdefault(row["video"], len(clips))
        fine = fine_cycle[n % len(fine_cycle)]
        names = [list(vocab.OFFICIAL_AU_NAMES.values())[n % 25]]
        if row_au := vocab.question_au(row["question"]):
            answer = "yes" if row_au in names else "no"
        else:
            answer = {vocab.COARSE: vocab.FINE_TO_COARSE[fine], vocab.FINE: fine, vocab.AU: vocab.au_answer(names),
                      vocab.ANALYSIS: vocab.analysis_answer(names, fine, vocab.FINE_TO_COARSE[fine])}[kind(row)]
        gold.append({**row, "answer": answer})
    return gold


def test_eval_scores_v2_analysis_rows_in_bleu_and_rouge_only(direct_run, tmp_path, capsys):
    questions = [row for path in V2_TEST for row in read_lines(path)]
    gold = synthetic_gold(questions)
    gold_path = tmp_path / "gold.jsonl"
    gold_path.write_text("".join(json.dumps(row) + "\n" for row in gold), encoding="utf-8")
    # The model's run scores through the command.
    assert main(["eval", "--pred", str(direct_run / "final_predictions.jsonl"), "--gold", str(gold_path), "--json",
                 str(tmp_path / "scores.json"), "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "scores.json").read_text())
    assert set(report) >= {"overall", "samm", "cas"} and report["overall"]["counts"]["rows"] == 120
    # Analysis rows count in BLEU and ROUGE-1, not in UF1/UAR: perfect answers everywhere but the analysis rows
    # (left empty) keep UF1/UAR at 1 and give ROUGE-1 recall (rows - analysis rows) / rows.
    no_analysis = [{**row, "answer": "" if kind(row) == vocab.ANALYSIS else row["answer"]} for row in gold]
    perfect, partial = score(gold, gold), score(no_analysis, gold)
    for figures in (perfect["overall"], partial["overall"]):
        assert [figures[key] for key in ("uf1_coarse", "uar_coarse", "uf1_fine", "uar_fine")] == [1.0] * 4
    assert perfect["overall"]["bleu"] == pytest.approx(1.0) and perfect["overall"]["rouge1"] == pytest.approx(1.0)
    assert partial["overall"]["rouge1"] == pytest.approx((120 - 24) / 120)
    assert partial["samm"]["rouge1"] == pytest.approx((35 - 7) / 35)
    assert partial["overall"]["bleu"] < 1.0
    assert partial["overall"]["counts"]["coarse"] == partial["overall"]["counts"]["fine"] == 24


def test_submit_names_the_v2_files(direct_run, tmp_path):
    assert main(["submit", "--questions", *map(str, V2_TEST), "--pred", str(direct_run / "final_predictions.jsonl"),
                 "--out", str(tmp_path / "sub")]) == 0
    assert sorted(path.name for path in (tmp_path / "sub").iterdir()) == sorted([*V2_PRED_NAMES, "submission.zip"])
    for name in V2_PRED_NAMES:
        assert (tmp_path / "sub" / name).read_bytes() == (direct_run / name).read_bytes()


def test_the_2025_files_onto_a_v2_folder_are_refused_before_anything_is_written(direct_run, tiny_model_dir,
                                                                              test_clips, capsys):
    """The 2025 and 2026 test files share their ids; the v2 folder's answer to the analysis prompt would be taken for
    the composite question's (answers are kept by id). Refused in one line, the folder's files untouched."""
    files = ("predictions.jsonl", "final_predictions.jsonl", "run.json", "errors.jsonl", *V2_PRED_NAMES,
             "submission.zip")
    before = {name: (direct_run / name).read_bytes() for name in files}
    samm_2025 = PUBLIC_DATA / "megc2025" / "test" / "me_vqa_samm_test_to_answer.jsonl"
    capsys.readouterr()
    assert main(["predict", "--questions", str(samm_2025), "--clips", str(test_clips), "--model",
                 str(tiny_model_dir), "--out", str(direct_run), "--inputs", "flow", "--batch-size", "8",
                 "--max-new-tokens", "8"]) == 2
    line = error_line(capsys, "predict")
    assert f"{samm_2025}:5: id 'samm_test_SAMM-1_5' asks {vocab.Q_COMPOSITE_ONE!r}" in line or \
        f"{samm_2025}:5: id 'samm_test_SAMM-1_5' asks {vocab.Q_COMPOSITE_MANY!r}" in line, line
    assert f"{direct_run / 'predictions.jsonl'}:5 holds the answer to " in line
    assert {name: (direct_run / name).read_bytes() for name in files} == before
    assert not (direct_run / "me_vqa_samm_test_pred.jsonl").exists()
