"""Hostile inputs on each family's tiny model, through ``mevqa answer`` and ``build-data --inspect-model`` (in
process): a one-frame clip and an odd frame count in ``video`` mode (Qwen3-VL's processor refuses a video shorter
than its temporal patch: mevqa repeats the frame), frames far below one visual token (20 px against the 28 or 32 px
factor), and a frame folder given no frame rate. Each either works, telling the model the true rate, or fails in
one line naming the clip and what was expected."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_family
from inference_clips import write_frame_folder
from mevqa import vocab
from mevqa.cli import main
from mevqa.train.inspect import inspect_files

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return {n: write_frame_folder(root / f"frames{n}", n_frames=n, first=1, pattern="{:05d}.jpg", seed=n)
            for n in (1, 3)}


def answer(capsys, model, clip, *extra) -> dict:
    capsys.readouterr()
    assert main(["answer", "--clip", str(clip), "--question", vocab.Q_COARSE, "--model", str(model), "--strategy",
                 "constrained", "--json", "-", *map(str, extra)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["answer"] in vocab.COARSE_LABELS
    return record


@pytest.mark.parametrize("family_name", FAMILIES)
def test_answer_takes_one_frame_odd_counts_and_tiny_frames(tiny_family_dirs, clips, capsys, family_name):
    model = tiny_family(tiny_family_dirs, family_name)
    for n in (1, 3):  # every frame of the clip, at the rate given (the true one)
        video = answer(capsys, model, clips[n], "--inputs", "video", "--fps", 200, "--frames", n)["media"]["video"]
        assert video["frame_numbers"] == list(range(1, n + 1)) and video["sample_fps"] == 200.0
    for mode in ("video", "oao"):  # 20 px frames: the processor enlarges them to its minimum
        record = answer(capsys, model, clips[3], "--inputs", mode, "--fps", 200, "--size", 20)
        assert record["media_settings"]["size"] == 20
    assert main(["answer", "--clip", str(clips[3]), "--question", vocab.Q_COARSE, "--model", str(model),
                 "--inputs", "video"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"mevqa answer: error: {clips[3]}: a frame folder has no frame rate; give it with --fps (the "
                     "video input needs the true rate: CASME II and SAMM are 200, SMIC-HS 100, CAS(ME)^3 30)")


@pytest.fixture(scope="module")
def casme2(tmp_path_factory):
    root = tmp_path_factory.mktemp("casme2")
    assert main(["synth-data", "casme2", "--out", str(root), "--clips", "2", "--frames", "6"]) == 0
    return root


@pytest.mark.parametrize("family_name", FAMILIES)
def test_build_data_inspect_model_counts_one_frame_videos_of_tiny_frames(tiny_family_dirs, casme2, tmp_path,
                                                                          capsys, family_name):
    model = tiny_family(tiny_family_dirs, family_name)
    out = tmp_path / "out"
    assert main(["build-data", "casme2", "--root", str(casme2 / "CASME2_RAW_selected"), "--annotations",
                 str(casme2 / "CASME2-coding-20140508.xlsx"), "--out", str(out), "--inputs", "video,oao",
                 "--frames", "1", "--size", "20", "--inspect-model", str(model)]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "qa.jsonl").read_text().splitlines()]
    assert {len(row["media"]["video"]["frames"]) for row in rows} == {1}
    report = inspect_files([out / "qa.jsonl"], model=str(model), progress=False)  # the training default: oao
    assert report.format() in printed
    assert min(row.vision["video"] for row in report.rows) > 0 and min(row.vision["oao"] for row in report.rows) > 0
