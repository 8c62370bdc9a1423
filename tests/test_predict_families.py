"""``mevqa predict``, the command itself (in process), with every strategy on the tiny model of every family: one
SAMM and one CAS(ME)^3 clip of the official 2025 test files (five questions each: C F A Y X), raw frame folders
built into video inputs by the command. Every row is answered in order, label answers are valid labels under the
constrained strategies, run.json records the strategy and the model's family, the submission files are written."""

from __future__ import annotations

import json
import zipfile

import pytest

from conftest import OFFICIAL_TEST, tiny_family
from inference_clips import write_frame_folder
from mevqa import vocab
from mevqa.cli import main

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
STRATEGIES = ("direct", "constrained", "vote", "hierarchical+constrained", "au-rules+constrained")
FAST = ("qwen3_vl", "hierarchical+constrained")   # the default tier's representative; the rest are e2e


def read_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    """The first clip's five rows of each official test file, under the official file names, and their clips."""
    root = tmp_path_factory.mktemp("predict-families")
    files = []
    for path in OFFICIAL_TEST:
        rows = read_lines(path)
        first = [row for row in rows if row["video"] == rows[0]["video"]]
        assert len(first) == 5
        (root / "questions").mkdir(exist_ok=True)
        files.append(root / "questions" / path.name)
        files[-1].write_text("".join(json.dumps(row) + "\n" for row in first), encoding="utf-8")
    write_frame_folder(root / "clips" / "SAMM" / "SAMM-1", n_frames=8, first=100, pattern="{:05d}.jpg", seed=0)
    write_frame_folder(root / "clips" / "CAS" / "CAS-1", n_frames=8, first=100, pattern="{}.jpg", seed=1)
    return files, root / "clips"


def cases():
    for name in FAMILIES:
        for strategy in STRATEGIES:
            marks = () if (name, strategy) == FAST else (pytest.mark.e2e,)
            yield pytest.param(name, strategy, marks=marks, id=f"{name}-{strategy}")


@pytest.mark.parametrize("family_name, strategy", cases())
def test_predict_answers_every_row_with_each_strategy_on_each_family(tiny_family_dirs, questions, tmp_path,
                                                                     family_name, strategy):
    files, clips = questions
    model = tiny_family(tiny_family_dirs, family_name)
    out = tmp_path / "out"
    votes = ["--votes", "2", "--vote-temperature", "1.0"] if strategy == "vote" else []
    assert main(["predict", "--questions", *map(str, files), "--clips", str(clips), "--model", str(model),
                 "--out", str(out), "--inputs", "video", "--strategy", strategy, *votes, "--max-new-tokens", "6"]) == 0

    run = json.loads((out / "run.json").read_text())
    assert run["family"] == family_name and run["settings"]["strategy"]["name"] == strategy
    assert (out / "errors.jsonl").read_text() == ""
    with zipfile.ZipFile(out / "submission.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f.name.replace("_to_answer", "_pred") for f in files)
    recorded = {row["video_id"]: row for row in read_lines(out / "predictions.jsonl")}
    constrained = "constrained" in strategy
    for question_file in files:
        asked = read_lines(question_file)
        answered = read_lines(out / question_file.name.replace("_to_answer", "_pred"))
        assert [row["video_id"] for row in answered] == [row["video_id"] for row in asked]
        assert all(isinstance(row["answer"], str) and row["answer"].strip() for row in answered)
        dataset = asked[0]["video_id"].split("_")[0]
        by_kind = {vocab.question_kind(row["question"]): row["answer"] for row in answered}
        if constrained:
            assert by_kind[vocab.COARSE] in vocab.COARSE_LABELS
            assert by_kind[vocab.FINE] in vocab.DATASET_FINE_LABELS[dataset]
            assert by_kind[vocab.PRESENCE] in vocab.PRESENCE_ANSWERS
            assert vocab.FINE_TO_COARSE[by_kind[vocab.FINE]] == by_kind[vocab.COARSE]  # consistent per clip
        if strategy == "vote":
            assert all(len(recorded[row["video_id"]]["votes"]) == 2 for row in asked)
        if strategy == "hierarchical+constrained":  # the fine question was asked under the clip's coarse answer
            fine_row = next(row for row in asked if vocab.question_kind(row["question"]) == vocab.FINE)
            assert recorded[fine_row["video_id"]]["coarse_hint"] in vocab.COARSE_LABELS


def test_a_run_recorded_before_families_resumes_and_gets_its_family(tiny_family_dirs, questions, tmp_path):
    """A run.json written before the family was recorded: the rerun resumes (its weights fingerprint decides) and
    records the family."""
    files, clips = questions
    model = tiny_family(tiny_family_dirs, "qwen2_5_vl")
    argv = ["predict", "--questions", *map(str, files), "--clips", str(clips), "--model", str(model), "--out",
            str(tmp_path), "--inputs", "oao", "--strategy", "constrained"]
    assert main([*argv, "--limit", "2"]) == 0
    record = json.loads((tmp_path / "run.json").read_text())
    assert record.pop("family") == "qwen2_5_vl"
    (tmp_path / "run.json").write_text(json.dumps(record))
    assert main(argv) == 0
    assert json.loads((tmp_path / "run.json").read_text())["family"] == "qwen2_5_vl"
    assert len(read_lines(tmp_path / "predictions.jsonl")) == 10
