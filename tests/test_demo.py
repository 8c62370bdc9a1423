"""``mevqa demo`` end to end (fewer training steps and clips than the default; the same code path)."""

from __future__ import annotations

import json

import pytest

from mevqa.cli import main


@pytest.mark.e2e
def test_demo_runs_end_to_end(tmp_path, capsys):
    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work), "--steps", "2", "--clips", "10"]) == 0
    out = capsys.readouterr().out
    # Every step ran as a printed command, training through accelerate launch with the packaged recipe and config.
    for step in ("synth-data", "build-data", "split", "tiny-model", "train", "predict", "eval", "answer"):
        assert f"[{step}] $ " in out and f"[{step}] done in" in out
    assert "$ accelerate launch " in out and "recipes/lora.py --config " in out and "configs/tiny/lora.yaml" in out
    assert (work / "lora" / "final" / "adapter_model.safetensors").is_file()

    val = [json.loads(line) for line in (work / "splits" / "fold_0" / "val.jsonl").read_text().splitlines()]
    preds = [json.loads(line) for line in (work / "predict" / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == [row["id"] for row in val]
    train_subjects = {json.loads(line)["subject"]
                      for line in (work / "splits" / "fold_0" / "train.jsonl").read_text().splitlines()}
    assert not train_subjects & {row["subject"] for row in val}  # predictions are on a held-out subject

    scores = json.loads((work / "predict" / "scores.json").read_text())
    assert scores["counts"]["rows"] == len(val) and scores["counts"]["missing"] == 0
    assert "Overall" in out and "Avg (mean of the six Overall figures)" in out
    assert "tiny, randomly initialised" in out and "Qwen2.5-VL-3B-Instruct or Qwen2.5-VL-7B-Instruct weights" in out and "GPU" in out
    assert "mevqa predict --questions me_vqa_samm_test_to_answer.jsonl" in out
    assert (work / "logs" / "train.log").read_text().startswith("$ ")


def test_demo_leaves_other_folders_alone(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--workdir", str(tmp_path), "--steps", "1"]) == 2
    assert "is not a previous demo's" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
