"""Qwen3-VL-MoE (Qwen3-VL-30B-A3B's architecture) on its tiny model, in process: one LoRA step through the recipe's
own entry point, then ``mevqa answer`` with the adapter, direct and constrained. Its language MLP is a mixture of
experts held as fused 3-D parameters, so LoRA adapts attention there and the experts stay as they were."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from conftest import tiny_family
from mevqa import vocab
from mevqa.cli import main as cli
from mevqa.errors import MevqaError
from mevqa.train.run import main as train
from qa_rows import write_qa_file


@pytest.fixture(scope="module")
def moe_dir(tiny_family_dirs):
    return tiny_family(tiny_family_dirs, "qwen3_vl_moe")


def test_one_lora_step_then_answers_direct_and_constrained(moe_dir, tmp_path, capsys):
    train_file = write_qa_file(tmp_path / "data", clips=2)
    out = tmp_path / "run"
    argv = ["--config", "recipes/configs/tiny/lora.yaml", "--model_name_or_path", str(moe_dir), "--train_file",
            str(train_file), "--output_dir", str(out), "--max_steps", "1", "--save_steps", "0", "--report_to", "none",
            "--lora_llm_modules", "attention"]
    with pytest.raises(MevqaError, match="names the role 'mlp', which has no Linear layers in Qwen3-VL-MoE"):
        train("lora", [*argv, "--lora_llm_modules", "attention,mlp"])  # refused before the weights load
    assert train("lora", argv) == 0
    adapter = out / "final"
    assert [r["step"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())
            if r["event"] == "saved"] == [1]
    with safe_open(adapter / "adapter_model.safetensors", framework="pt") as weights:
        names = list(weights.keys())
    assert any(".deepstack_merger_list.0.linear_fc1.lora_A" in n for n in names)
    assert any(".language_model.layers.1.self_attn.o_proj.lora_B" in n for n in names)
    assert not any(".experts." in n or ".mlp.gate." in n for n in names)  # the experts and router are untouched
    clip = tmp_path / "data" / "media" / "clip0" / "video"
    for strategy in ("direct", "constrained"):
        capsys.readouterr()
        assert cli(["answer", "--clip", str(clip), "--question", vocab.Q_COARSE, "--model", str(moe_dir),
                    "--adapter", str(adapter), "--strategy", strategy, "--max-new-tokens", "8", "--fps", "200",
                    "--json", "-"]) == 0
        printed = capsys.readouterr().out
        record = json.loads(printed[printed.index("{"):printed.rindex("}") + 1])
        assert record["strategy"]["name"] == strategy
        if strategy == "constrained":
            assert record["answer"] in vocab.COARSE_LABELS
