"""The vlm spotter end to end: `mevqa build-spot --windows` rows train the tiny Qwen2.5-VL with the unchanged LoRA
recipe, the trained spotter tells held-out windows apart better than chance, and `mevqa spot --method vlm` /
`mevqa str-predict --method vlm` run on a video file and on spotting data."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from mevqa import vocab
from mevqa.cli import main
from mevqa.data_builders.spot import WindowOptions, build_spot
from mevqa.data_builders.synth_long import FRAME_SIZES, plan_video, render_frames, write_long_dataset, write_mp4
from mevqa.jsonl import read_jsonl, write_jsonl
from mevqa.media import MediaSettings

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = "spNO.5"
# Every test here uses the spotter that recipes/lora.py trains for 300 steps: the end-to-end tier.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """Flow-input windows of ten synthetic CAS(ME)^3 long videos (five subjects), split by subject; the spotting
    question only (the coarse rows of positive windows are left out: the tiny model learns one task faster)."""
    root = tmp_path_factory.mktemp("vlm")
    paths = write_long_dataset("casme3", root / "raw", videos=10, seed=0)
    out = root / "built"
    build_spot("casme3", out, root=paths["root"], annotations=paths["annotations"], progress=False,
               windows=WindowOptions(media=MediaSettings(modes=("flow",), size=112)))
    rows = [row for row in read_jsonl(out / "windows.jsonl") if row["question"] == vocab.Q_SPOT]
    train = [row for row in rows if row["subject"] != HELD_OUT]
    held_out = [row for row in rows if row["subject"] == HELD_OUT]
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "held_out.jsonl", held_out)
    assert {row["answer"] for row in held_out} == {"yes", "no"}
    return out


@pytest.fixture(scope="module")
def spotter(windows, tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model's LoRA adapter, trained by recipes/lora.py as users run it: 300 steps of 8 rows (the tiny model
    starts telling windows apart after about 150; at 100 it still answers every window alike)."""
    out = tmp_path_factory.mktemp("spotter") / "run"
    command = [sys.executable, "recipes/lora.py", "--config", "recipes/configs/tiny/lora.yaml",
               "--model_name_or_path", str(tiny_model_dir), "--train_file", str(windows / "train.jsonl"),
               "--output_dir", str(out), "--inputs", "flow", "--max_steps", "300", "--per_device_train_batch_size", "8",
               "--gradient_accumulation_steps", "1", "--save_steps", "0", "--report_to", "none"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "final"


def test_trained_spotter_beats_chance_on_held_out_windows(windows, spotter, tiny_model_dir):
    from sklearn.metrics import roc_auc_score

    from mevqa.answering.label_scoring import choice_probabilities
    from mevqa.models.loading import load_model_and_processor
    from mevqa.rows import read_rows

    rows = read_rows(windows / "held_out.jsonl")
    model, processor = load_model_and_processor(tiny_model_dir, adapter=spotter, dtype="float32", device="cpu")
    p_yes = [p["yes"] for p in choice_probabilities(model, processor, rows, "flow", [["yes", "no"]] * len(rows))]
    truth = [row["answer"] == "yes" for row in rows]
    # Ranking held-out windows by P(yes): chance is 0.5 (measured 0.83 with these seeds).
    assert roc_auc_score(truth, p_yes) >= 0.75


def test_spot_vlm_runs_on_a_video_file(spotter, tiny_model_dir, tmp_path, capsys):
    video = plan_video("casme3", 9, 1, 150, random.Random(5), first=0, macro=False)
    width, height, gray = FRAME_SIZES["casme3"]
    path = write_mp4(tmp_path / "long.mp4", render_frames(video, width, height, gray, seed=1), 30.0)
    assert main(["spot", "--video", str(path), "--method", "vlm", "--model", str(tiny_model_dir), "--adapter",
                 str(spotter), "--work", str(tmp_path / "work"), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "vlm" and report["frames"] == 150
    (unpacked,) = (tmp_path / "work" / "frames").iterdir()            # unpacked once for the windows
    assert len(list(unpacked.glob("*.jpg"))) == 150
    assert json.loads((unpacked / "source.json").read_text())["video"] == str(path.resolve())
    assert len(list((tmp_path / "work" / "windows").iterdir())) == 48  # 9-frame windows every 3 frames
    for d in report["detections"]:
        assert 0 <= d["onset"] <= d["apex"] <= d["offset"] <= 149 and d["score"] >= 0.5
        assert d["emotion"] in vocab.COARSE_LABELS
        assert set(d["emotion_scores"]) == set(vocab.COARSE_LABELS)
        assert abs(sum(d["emotion_scores"].values()) - 1) < 1e-3


def test_str_predict_vlm_writes_pred_csv_and_scores(windows, spotter, tiny_model_dir, tmp_path, capsys):
    rows = [row for row in read_jsonl(windows / "spot.jsonl") if row["subject"] == HELD_OUT][:1]
    for row in rows:
        row["frames"] = str((windows / row["frames"]).resolve())
    write_jsonl(tmp_path / "spot.jsonl", rows)
    gt = (windows / "gt.csv").read_text().splitlines()
    (tmp_path / "gt.csv").write_text("\n".join([gt[0]] + [line for line in gt[1:]
                                                           if line.startswith(f"{HELD_OUT},{rows[0]['video']},")]))
    out = tmp_path / "pred"
    assert main(["str-predict", "--spot-data", str(tmp_path / "spot.jsonl"), "--method", "vlm", "--model",
                 str(tiny_model_dir), "--adapter", str(spotter), "--out", str(out)]) == 0
    with open(out / "pred.csv", encoding="utf-8") as handle:
        header, *lines = handle.read().splitlines()
    assert header == "subject,video,onset,offset,emotion"
    assert all(line.split(",")[4] in vocab.COARSE_LABELS for line in lines)
    report = json.loads((out / "scores.json").read_text())
    assert report["overall"]["counts"]["gt_counted"] == 3 and report["overall"]["counts"]["pred"] == len(lines)
    run = json.loads((out / "run.json").read_text())
    assert run["method"] == "vlm" and run["inference"]["inputs"] == "flow"  # as the adapter was trained

