"""The recipes as users launch them: ``accelerate launch recipes/{lora,full}.py --config <tiny config>`` in a
subprocess, on the tiny random Qwen2.5-VL and a synthetic CASME II built by the data builders.

These are the project's slowest tests (each launch costs a few seconds of start-up); runs are shared through
module-scoped fixtures so each configuration trains once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mevqa import vocab
from mevqa.jsonl import read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[1]
def _script(name: str) -> str:
    """The console script installed beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.is_file() else (shutil.which(name) or name)


ACCELERATE = _script("accelerate")
MEVQA = _script("mevqa")
SINGLE = ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
TWO_PROCESSES = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                 "--dynamo_backend", "no"]


def launch(recipe: str, launcher: list[str], *args: str) -> subprocess.CompletedProcess:
    command = [ACCELERATE, "launch", *launcher, f"recipes/{recipe}.py", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-4000:]}"
    return result


def train_log(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    """A synthetic CASME II built with video, OAO and flow inputs; files of all questions and of coarse questions only,
    split by clip into training and held-out clips with every coarse class held out."""
    from mevqa.data_builders.build import BuildOptions, build_dataset
    from mevqa.data_builders.synth import write_synthetic_dataset
    from mevqa.media import MediaSettings

    root = tmp_path_factory.mktemp("synth")
    paths = write_synthetic_dataset("casme2", root / "raw", clips=36, seed=0)
    built = root / "built"
    build_dataset("casme2", built, root=paths["root"], annotations=paths["annotations"],
                  options=BuildOptions(media=MediaSettings(modes=("video", "oao", "flow"), num_frames=4, size=112)))
    rows = read_jsonl(built / "qa.jsonl")
    clips = list(dict.fromkeys(row["image_id"] for row in rows))
    held_out = set(clips[4::5])
    coarse = [row for row in rows if row["question"] == vocab.Q_COARSE]
    files = {"mixed": built / "mixed.jsonl", "coarse_train": built / "coarse_train.jsonl",
             "coarse_val": built / "coarse_val.jsonl"}
    write_jsonl(files["mixed"], [row for row in rows if row["image_id"] not in held_out][:12])
    write_jsonl(files["coarse_train"], [row for row in coarse if row["image_id"] not in held_out])
    write_jsonl(files["coarse_val"], [row for row in coarse if row["image_id"] in held_out])
    assert {row["answer"] for row in read_jsonl(files["coarse_val"])} == set(vocab.COARSE_LABELS)
    return files


def tiny_args(config: str, tiny_model_dir: Path, train_file: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["--config", f"recipes/configs/tiny/{config}.yaml", "--model_name_or_path", str(tiny_model_dir),
            "--train_file", str(train_file), "--output_dir", str(output_dir), *extra]


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, synth, tmp_path_factory) -> Path:
    # The tiny LoRA config trains vision and merger by LoRA; the LLM here is fully trained (modules_to_save) so
    # that both kinds of adapter content go through save, reload and merge.
    out = tmp_path_factory.mktemp("lora") / "run"
    launch("lora", SINGLE, *tiny_args("lora", tiny_model_dir, synth["mixed"], out, "--llm", "full",
                                       "--lora_dropout", "0.1"))
    return out


@pytest.fixture(scope="module")
def batch(tiny_model_dir, synth):
    """A training-style batch (labels dropped) of three rows, to compare logits."""
    from mevqa.collate import Collator, QADataset
    from mevqa.messages import read_qa_rows
    from mevqa.model import load_model_and_processor

    _, processor = load_model_and_processor(tiny_model_dir, dtype="float32", device="cpu")
    rows = read_qa_rows(synth["mixed"])[:3]
    dataset = QADataset(rows, "oao")
    inputs = Collator(processor, train=True)([dataset[i] for i in range(len(rows))])
    inputs.pop("labels")
    return inputs


def state_of(model_dir: Path) -> dict[str, torch.Tensor]:
    """Weights by their in-memory names (files keep Qwen's original checkpoint names)."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(model_dir).state_dict()


def logits_of(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def assert_loss_finite_and_falling(output_dir: Path) -> list[dict]:
    records = [r for r in train_log(output_dir) if r["event"] == "train"]
    losses = [r["loss"] for r in records]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0] - 0.1, losses
    assert all(r["tokens_per_s"] > 0 and r["samples_per_s"] > 0 for r in records)
    return records


def test_lora_recipe_trains_adapter_only_and_saves_what_it_trained(lora_run, tiny_model_dir, batch):
    from mevqa.model import load_model_and_processor
    from mevqa.train.config import load_config
    from mevqa.train.parts import apply_lora

    assert_loss_finite_and_falling(lora_run)
    # The TensorBoard tracker got the training scalars.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = {tag for path in (lora_run / "logs").rglob("events.out.tfevents*")
               for tag in EventAccumulator(str(path)).Reload().Tags()["scalars"]}
    assert {"loss", "tokens_per_s", "samples_per_s"} <= scalars
    final = lora_run / "final"
    assert (final / "adapter_model.safetensors").is_file() and (final / "train_config.yaml").is_file()
    assert (final / "tokenizer_config.json").is_file()

    base = state_of(tiny_model_dir)
    adapter = load_file(str(final / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert any("visual.blocks" in k for k in lora_b) and any("visual.merger" in k for k in lora_b)
    # lora_B starts at zero: every adapter trained.
    assert all(v.abs().max() > 0 for v in lora_b.values())
    # The fully trained LLM travels inside the adapter, changed from the base.
    saved_head = next(v for k, v in adapter.items() if k.endswith("lm_head.weight"))
    assert not torch.equal(saved_head, base["lm_head.weight"])

    model, _ = load_model_and_processor(tiny_model_dir, adapter=final, dtype="float32", device="cpu")
    # The base weights under the adapter are untouched.
    for name, param in model.named_parameters():
        if ".base_layer." in name and "visual.blocks" in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(param.detach(), base[key]), name
    # The saved adapter gives exactly the logits of the trained weights the last checkpoint holds.
    cfg = load_config(final / "train_config.yaml")
    fresh, _ = load_model_and_processor(tiny_model_dir, dtype="float32", device="cpu")
    fresh = apply_lora(fresh, cfg)
    checkpoint = load_file(str(lora_run / f"checkpoint-{cfg.max_steps}" / "model.safetensors"))
    missing, unexpected = fresh.load_state_dict(checkpoint, strict=False)
    assert not unexpected
    assert not [k for k in missing if "lora_" in k or "modules_to_save" in k]
    fresh.eval()
    assert torch.allclose(logits_of(model, batch), logits_of(fresh, batch), atol=1e-6)
    assert not torch.allclose(logits_of(model, batch),
                              logits_of(load_model_and_processor(tiny_model_dir, dtype="float32", device="cpu")[0],
                                        batch), atol=1e-3)


def test_merge_of_the_recipe_adapter_loads_with_plain_transformers(lora_run, tiny_model_dir, batch, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mevqa.model import load_model_and_processor

    out = tmp_path / "merged"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([MEVQA, "merge", "--base", str(tiny_model_dir), "--adapter", str(lora_run / "final"),
                    "--out", str(out)], check=True, env=env, capture_output=True, timeout=300)
    merged = AutoModelForImageTextToText.from_pretrained(out).eval()
    AutoProcessor.from_pretrained(out)
    with_adapter, _ = load_model_and_processor(tiny_model_dir, adapter=lora_run / "final", dtype="float32",
                                               device="cpu")
    assert (logits_of(merged, batch) - logits_of(with_adapter, batch)).abs().max() < 1e-5


def test_resumed_run_ends_with_the_same_weights(lora_run, tiny_model_dir, synth, tmp_path):
    out = tmp_path / "resumed"
    args = tiny_args("lora", tiny_model_dir, synth["mixed"], out, "--llm", "full", "--lora_dropout", "0.1")
    launch("lora", SINGLE, *args, "--stop_after_steps", "3")
    assert (out / "checkpoint-3").is_dir() and not (out / "final").exists()
    launch("lora", SINGLE, *args)
    starts = [r for r in train_log(out) if r["event"] == "start"]
    assert starts[-1]["resumed_from"].endswith("checkpoint-3") and starts[-1]["global_step"] == 3
    uninterrupted = load_file(str(lora_run / "final" / "adapter_model.safetensors"))
    resumed = load_file(str(out / "final" / "adapter_model.safetensors"))
    assert uninterrupted.keys() == resumed.keys()
    for key in uninterrupted:
        assert torch.allclose(uninterrupted[key], resumed[key], atol=1e-6), key

    # Another seed would read other rows per step: resuming under it is refused, naming the field.
    command = [ACCELERATE, "launch", *SINGLE, "recipes/lora.py", *args, "--seed", "1", "--max_steps", "10"]
    refused = subprocess.run(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode != 0
    assert "checkpoint-8: made with seed=0, this run has 1; resuming needs the same data order" in refused.stderr


def test_full_recipe_trains_the_chosen_parts_and_saves_a_model(tiny_model_dir, synth, batch, tmp_path):
    from transformers import AutoModelForImageTextToText

    from mevqa.model import load_model_and_processor
    from mevqa.train.config import load_config

    out = tmp_path / "full"
    launch("full", SINGLE, *tiny_args("full", tiny_model_dir, synth["mixed"], out, "--vision", "frozen",
                                       "--inputs", "frames+flow"))
    assert_loss_finite_and_falling(out)
    base = state_of(tiny_model_dir)
    trained = state_of(out / "final")
    assert base.keys() == trained.keys()
    for key in base:
        frozen = key.startswith("model.visual.") and not key.startswith("model.visual.merger.")
        assert torch.equal(base[key], trained[key]) == frozen, key

    model = AutoModelForImageTextToText.from_pretrained(out / "final").eval()
    loaded, _ = load_model_and_processor(out / "final", dtype="float32", device="cpu")
    # The final model is exactly the state the last checkpoint holds (trainable weights over the base).
    cfg = load_config(out / "final" / "train_config.yaml")
    checkpoint = load_file(str(out / f"checkpoint-{cfg.max_steps}" / "model.safetensors"))
    rebuilt = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    missing, unexpected = rebuilt.load_state_dict(checkpoint, strict=False)
    assert not unexpected and all(k.startswith("model.visual.") for k in missing)
    assert torch.allclose(logits_of(model, batch), logits_of(rebuilt, batch), atol=1e-6)
    assert torch.allclose(logits_of(model, batch), logits_of(loaded, batch), atol=1e-6)


def test_two_processes_form_one_group_shard_the_data_and_save_once(tiny_model_dir, synth, tmp_path):
    from mevqa.model import load_model_and_processor

    out = tmp_path / "ddp"
    eval_args = ["--eval_file", str(synth["coarse_val"]), "--eval_max_new_tokens", "4"]
    result = launch("lora", TWO_PROCESSES, *tiny_args("lora", tiny_model_dir, synth["mixed"], out,
                                                       "--max_steps", "4", "--save_steps", "0", "--inputs", "video",
                                                       *eval_args))
    assert "world size 2 (DistributedType.MULTI_CPU)" in result.stderr
    log = train_log(out)
    start = next(r for r in log if r["event"] == "start")
    assert start["world_size"] == 2
    shards = [set(ids) for ids in start["epoch0_rows_per_rank"].values()]
    assert len(shards) == 2 and not shards[0] & shards[1]
    assert shards[0] | shards[1] == {row["id"] for row in read_jsonl(synth["mixed"])}
    assert [r["step"] for r in log if r["event"] == "saved"] == [4]
    assert not list(out.glob(".*.tmp"))
    load_model_and_processor(tiny_model_dir, adapter=out / "final", dtype="float32", device="cpu")

    # One process accumulating twice as many micro-batches reads the same rows per step; with the loss normalised
    # by the answer tokens of the whole step it must reach the same weights (a per-micro-batch mean would not).
    single = tmp_path / "single"
    launch("lora", SINGLE, *tiny_args("lora", tiny_model_dir, synth["mixed"], single, "--max_steps", "4",
                                      "--save_steps", "0", "--inputs", "video", "--gradient_accumulation_steps", "4",
                                      *eval_args))
    two = load_file(str(out / "final" / "adapter_model.safetensors"))
    one = load_file(str(single / "final" / "adapter_model.safetensors"))
    for key in two:
        assert torch.allclose(two[key], one[key], atol=1e-5), key
    # The evaluation, sharded over both processes (an odd row count: one rank's share padded, the padding dropped)
    # and gathered, agrees with the single process's.
    evals = [[r for r in train_log(run) if r["event"] == "eval"] for run in (out, single)]
    assert [len(e) for e in evals] == [1, 1]
    assert evals[0][0]["eval_loss"] == pytest.approx(evals[1][0]["eval_loss"], rel=1e-4)
    assert evals[0][0]["uf1_coarse"] is not None and (out / "best" / "adapter_model.safetensors").is_file()


def test_pixels_reach_the_answer_on_held_out_clips(tiny_model_dir, synth, tmp_path):
    """Full fine-tuning on OAO frames of synthetic clips whose coarse class is visible (where a blob moves):
    the model then answers the coarse question on held-out clips, scored by mevqa's own scorer."""
    from mevqa.eval import score
    from mevqa.generation import generate_answers
    from mevqa.messages import read_qa_rows
    from mevqa.model import load_model_and_processor

    out = tmp_path / "learn"
    # lr 1e-3 (the tiny config's), cosine after 30 warmup steps, 8 clips a step: every seed tried (0-3) answers all
    # held-out clips right by step 200; a constant 3e-3 often sticks at two classes of three.
    launch("full", SINGLE, *tiny_args("full", tiny_model_dir, synth["coarse_train"], out, "--eval_file",
                                      str(synth["coarse_val"]), "--inputs", "oao", "--system_prompt", "none",
                                      "--lr_scheduler", "cosine", "--warmup_steps", "30", "--per_device_batch_size",
                                      "8", "--gradient_accumulation_steps", "1", "--max_steps", "250", "--save_steps",
                                      "0", "--logging_steps", "50", "--metric_for_best", "uf1_coarse"))
    model, processor = load_model_and_processor(out / "final", dtype="float32", device="cpu")
    val = read_qa_rows(synth["coarse_val"])
    answers = generate_answers(model, processor, val, "oao", system_prompt=None, max_new_tokens=8)
    report = score([{"id": row["id"], "answer": a} for row, a in zip(val, answers)], val)
    assert report["overall"]["uf1_coarse"] >= 0.9, (answers, [row["answer"] for row in val])
    # The recipe's own evaluation saw the same and kept that model as the best.
    evals = [r for r in train_log(out) if r["event"] == "eval"]
    assert evals[-1]["uf1_coarse"] == pytest.approx(report["overall"]["uf1_coarse"])
    assert json.loads((out / "best" / "eval_metrics.json").read_text())["uf1_coarse"] >= 0.9
