"""Every accelerate config in ``recipes/accelerate/`` on one GPU, with the tiny model: a few steps with in-training
evaluation (generated answers scored), checkpoints, a resume from the middle checkpoint that must end where the
uninterrupted run ended, and the saved result loaded back (a LoRA adapter also merged with ``mevqa merge``).

    pytest -m gpu tests/gpu          # skipped without CUDA; about 4 minutes on one H100/H200

Configs written for several GPUs run with ``--num_processes 1``: DeepSpeed and FSDP still wrap, shard (over one
process), gather for generation and for saving, and write their own checkpoint formats, which is what this checks.
DeepSpeed configs need ``pip install "mevqa[deepspeed]"`` and are skipped without it (``benchmarks/gpu_check.sh``,
which runs this file, refuses to start without DeepSpeed unless told to skip it). Full fine-tuning (vision frozen)
runs under DeepSpeed ZeRO-3 and FSDP as well, the two backends whose checkpoints would otherwise hold frozen weights.
GPU kernels are not bit-exact run to run, so "same weights" means: the resumed run's distance to the uninterrupted
run's weights is under 5% of how far training moved them.
"""

from __future__ import annotations

import json
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

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

pytestmark = pytest.mark.gpu


def launch(config: Path, recipe: str, *args: str) -> subprocess.CompletedProcess:
    """``accelerate launch`` (the console script beside this Python, else its module) with ``config`` on one GPU;
    a launch that hangs (a collective one process never joins) fails after 2 minutes, leaving time for the rest."""
    beside = Path(sys.executable).with_name("accelerate")
    accelerate = [str(beside), "launch"] if beside.is_file() else [sys.executable, "-m", "accelerate.commands.launch"]
    command = [*accelerate, "--config_file", str(config), "--num_processes", "1", f"recipes/{recipe}.py", *args]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-5000:]}"
    return result


def events(output_dir: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (output_dir / "train_log.jsonl").read_text().splitlines()) if r["event"] == kind]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from mevqa.data_builders.build import BuildOptions, build_dataset
    from mevqa.data_builders.synth import write_synthetic_dataset
    from mevqa.media import MediaSettings

    root = tmp_path_factory.mktemp("gpu-data")
    paths = write_synthetic_dataset("casme2", root / "raw", clips=12, seed=0)
    built = root / "built"
    build_dataset("casme2", built, root=paths["root"], annotations=paths["annotations"],
                  options=BuildOptions(media=MediaSettings(modes=("oao",), num_frames=4, size=112)))
    rows = read_jsonl(built / "qa.jsonl")
    write_jsonl(built / "train.jsonl", rows[:16])
    write_jsonl(built / "val.jsonl", [row for row in rows[16:] if row["question"] == vocab.Q_COARSE][:3])
    return {"train": built / "train.jsonl", "val": built / "val.jsonl"}


def recipe_args(recipe: str, tiny_model_dir: Path, data: dict, output_dir: Path, *extra: str) -> list[str]:
    return ["--config", f"recipes/configs/tiny/{recipe}.yaml", "--model_name_or_path", str(tiny_model_dir),
            "--train_file", str(data["train"]), "--eval_file", str(data["val"]), "--output_dir", str(output_dir),
            "--max_steps", "4", "--save_steps", "2", "--save_total_limit", "3", "--eval_strategy", "steps", "--eval_steps", "2",
            "--eval_max_new_tokens", "4", "--metric_for_best_model", "uf1_coarse", "--bf16", "true",
            "--dtype", "float32", *extra]


def weights_of(final: Path, recipe: str) -> dict[str, torch.Tensor]:
    if recipe == "lora":
        return load_file(str(final / "adapter_model.safetensors"))
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(final, dtype=torch.float32).state_dict()


def assert_same_end(a: dict, b: dict, start: dict) -> None:
    """``b`` ends where ``a`` ends: their distance is under 5% of how far training moved ``a`` from ``start``."""
    keys = sorted(k for k in a if not torch.equal(a[k].float(), start[k].float()))
    assert keys, "training changed nothing"
    moved = torch.cat([(a[k].float() - start[k].float()).flatten() for k in keys]).norm()
    apart = torch.cat([(a[k].float() - b[k].float()).flatten() for k in keys]).norm()
    assert apart < 0.05 * moved, (float(apart), float(moved))


CASES = [(config, "lora") for config in CONFIGS] + [
    (config, "full") for config in CONFIGS if config.name in ("deepspeed_zero3.yaml", "fsdp.yaml")]


@pytest.mark.parametrize("config, recipe", CASES, ids=[f"{c.stem}-{r}" for c, r in CASES])
def test_backend_trains_evaluates_saves_resumes_and_loads(config, recipe, tiny_model_dir, data, tmp_path):
    if "deepspeed" in config.name:
        pytest.importorskip("deepspeed")
    extra = ["--vision", "frozen"] if recipe == "full" else []
    run = tmp_path / "run"
    launch(config, recipe, *recipe_args(recipe, tiny_model_dir, data, run, *extra))

    # In-training evaluation generated and scored answers at steps 2 and 4, and kept the best.
    evals = events(run, "eval")
    assert [e["step"] for e in evals] == [2, 4] and all(e["uf1_coarse"] is not None for e in evals)
    assert (run / "best" / "train_config.yaml").is_file() and (run / "final" / "train_config.yaml").is_file()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    if recipe == "lora":
        # Adapter-only checkpoints under every backend: far smaller than the model itself.
        model_bytes = sum(p.stat().st_size for p in tiny_model_dir.glob("*.safetensors"))
        checkpoint_bytes = sum(p.stat().st_size for p in (run / "checkpoint-2").rglob("*") if p.is_file()
                               and p.suffix in (".safetensors", ".pt", ".bin"))
        assert checkpoint_bytes < model_bytes / 2, (checkpoint_bytes, model_bytes)

    # Resume from a copy of the middle checkpoint: it must end where the uninterrupted run ended.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(run / "checkpoint-2", resumed / "checkpoint-2")
    launch(config, recipe, *recipe_args(recipe, tiny_model_dir, data, resumed, *extra))
    start = events(resumed, "start")[-1]
    assert start["resumed_from"].endswith("checkpoint-2") and start["global_step"] == 2
    if recipe == "lora":
        def lora_b(final):  # lora_B starts at zero; lora_A's random start is not on disk
            return {k: v for k, v in weights_of(final, recipe).items() if "lora_B" in k}

        uninterrupted = lora_b(run / "final")
        assert_same_end(uninterrupted, lora_b(resumed / "final"),
                        {k: torch.zeros_like(v) for k, v in uninterrupted.items()})
        # The adapter folds into a standalone checkpoint that plain transformers loads (mevqa merge's own function,
        # in this process: the launch is what differs between backends, not the merge).
        from transformers import AutoModelForImageTextToText

        from mevqa.models.merge import merge_adapter

        merged = merge_adapter(str(tiny_model_dir), run / "final", tmp_path / "merged")
        AutoModelForImageTextToText.from_pretrained(merged)
    else:
        base = weights_of(tiny_model_dir, "full")
        trained = weights_of(run / "final", "full")
        assert_same_end(trained, weights_of(resumed / "final", "full"), base)
        for key, value in base.items():  # the frozen vision tower left as it was (DeepSpeed's bf16 mode rounds it)
            if key.startswith("model.visual.") and ".merger." not in key:
                assert torch.equal(trained[key], value) or torch.equal(trained[key],
                                                                       value.to(torch.bfloat16).float()), key
