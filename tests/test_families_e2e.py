"""Qwen3-VL through every command, end to end on the CPU, as users run them (subprocesses): ``tiny-model --family
qwen3_vl``, ``build-data --inspect-model``, ``accelerate launch recipes/lora.py`` (4 steps on video inputs), ``answer``,
``predict --strategy constrained``, ``merge``, ``export --format llamafactory --model``, ``spot --method vlm``; and
``mevqa demo --family qwen3_vl``. The other families go through the same code, tested in process per family."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mevqa import vocab

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

pytestmark = pytest.mark.e2e


def _script(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.is_file() else (shutil.which(name) or name)


MEVQA, ACCELERATE = _script("mevqa"), _script("accelerate")


def run(*command: str) -> str:
    result = subprocess.run(list(command), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def test_qwen3_vl_through_every_command(tmp_path):
    model, raw, data = tmp_path / "qwen3-vl", tmp_path / "raw", tmp_path / "data"
    run(MEVQA, "tiny-model", "--family", "qwen3_vl", "--out", str(model))
    assert json.loads((model / "config.json").read_text())["model_type"] == "qwen3_vl"
    run(MEVQA, "synth-data", "casme2", "--out", str(raw), "--clips", "8")
    built = run(MEVQA, "build-data", "casme2", "--root", str(raw / "CASME2_RAW_selected"), "--annotations",
                str(raw / "CASME2-coding-20140508.xlsx"), "--out", str(data), "--frames", "4", "--size", "112",
                "--inspect-model", str(model), "--inspect-config", "recipes/configs/tiny/lora.yaml")
    assert "one visual token per 32x32 px" in built and "video (all frames)" in built

    rows = [json.loads(line) for line in (data / "qa.jsonl").read_text().splitlines()]
    train, val = data / "train.jsonl", data / "val.jsonl"
    held_out = rows[0]["subject"]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows if r["subject"] != held_out))
    val.write_text("".join(json.dumps(r) + "\n" for r in rows if r["subject"] == held_out))

    out = tmp_path / "lora"
    run(ACCELERATE, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "recipes/lora.py", "--config", "recipes/configs/tiny/lora.yaml",
        "--model_name_or_path", str(model), "--train_file", str(train), "--output_dir", str(out), "--inputs", "video",
        "--max_steps", "4", "--save_steps", "0")
    adapter = out / "final"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert "deepstack_merger_list" in config["target_modules"]          # the DeepStack mergers got LoRA

    clip = next(raw.rglob(f"{held_out}/{rows[0]['filename']}"))
    answer = run(MEVQA, "answer", "--clip", str(clip), "--question", vocab.Q_COARSE, "--model", str(model),
                 "--adapter", str(adapter), "--max-new-tokens", "8", "--fps", "200")
    assert answer.strip()

    pred = tmp_path / "pred"
    run(MEVQA, "predict", "--questions", str(val), "--model", str(model), "--adapter", str(adapter), "--out",
        str(pred), "--strategy", "constrained")
    predictions = [json.loads(line) for line in (pred / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == sum(1 for r in rows if r["subject"] == held_out)
    coarse = [p for p, r in zip(predictions, (r for r in rows if r["subject"] == held_out))
              if r["question"] == vocab.Q_COARSE]
    assert coarse and all(p["answer"] in vocab.COARSE_LABELS for p in coarse)

    merged = tmp_path / "merged"
    run(MEVQA, "merge", "--base", str(model), "--adapter", str(adapter), "--out", str(merged))
    export_dir = tmp_path / "export"
    printed = run(MEVQA, "export", "--data", str(train), "--inputs", "video", "--format", "llamafactory", "--model",
                  str(merged), "--out", str(export_dir))
    tools = json.loads((export_dir / "export.json").read_text())["tool_settings"]
    assert tools["llamafactory"]["template"] == "qwen3_vl_nothink" and tools["swift"]["template"] == "qwen3_vl"
    assert "qwen3_vl_nothink" in printed

    spot = run(MEVQA, "spot", "--video", str(clip), "--method", "vlm", "--model", str(merged), "--work",
               str(tmp_path / "spot"), "--json", "-", "--fps", "200")
    assert json.loads(spot[spot.index("{"):spot.rindex("}") + 1])["method"] == "vlm"


def test_demo_accepts_the_family(tmp_path):
    printed = run(MEVQA, "demo", "--family", "qwen3_vl", "--workdir", str(tmp_path / "demo"), "--steps", "2",
                  "--clips", "10")
    assert "tiny, randomly initialised Qwen3-VL" in printed
    assert "Qwen3-VL-4B-Instruct or Qwen3-VL-8B-Instruct weights" in printed
    assert "recipes/configs/qwen3_vl_4b/lora_baseline.yaml" in printed
    config = json.loads((tmp_path / "demo" / "tiny-model" / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
