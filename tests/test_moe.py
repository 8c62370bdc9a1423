"""Qwen3-VL-MoE (Qwen3-VL-30B-A3B's architecture) on its tiny model, in process: LoRA steps through the recipe's
own entry point, then ``mevqa answer`` with the adapter, direct and constrained, and ``mevqa merge``. Its language MLP
is a mixture of experts held as fused 3-D parameters: LoRA reaches them through PEFT's ``target_parameters``."""

from __future__ import annotations

import json

import pytest
import torch
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


def test_lora_on_attention_and_experts_trains_answers_and_merges(moe_dir, tmp_path, capsys):
    from transformers import AutoModelForImageTextToText

    from mevqa.models.loading import load_model_and_processor

    train_file = write_qa_file(tmp_path / "data", clips=2)
    out = tmp_path / "run"
    argv = ["--config", "recipes/configs/tiny/lora.yaml", "--model_name_or_path", str(moe_dir), "--train_file",
            str(train_file), "--output_dir", str(out), "--max_steps", "2", "--save_steps", "0", "--report_to", "none",
            "--lora_llm_modules", "attention,mlp"]
    # PEFT adapts a fused parameter without dropout: refused with the config, before the weights load.
    with pytest.raises(MevqaError, match=r"^config: LoRA on Qwen3-VL-MoE's experts \(mlp.experts.gate_up_proj, "
                                         r"mlp.experts.down_proj\) needs lora_dropout 0 and use_dora false .*got "
                                         r"lora_dropout 0.05, use_dora false$"):
        train("lora", [*argv, "--lora_dropout", "0.05"])
    with pytest.raises(MevqaError, match=r"lora_llm_modules names 'gate_proj', which Qwen3-VL-MoE"):
        train("lora", [*argv, "--lora_llm_modules", "gate_proj"])
    assert train("lora", argv) == 0
    adapter = out / "final"
    assert json.loads((adapter / "adapter_config.json").read_text())["target_parameters"] == [
        "mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    with safe_open(adapter / "adapter_model.safetensors", framework="pt") as weights:
        tensors = {name: weights.get_tensor(name) for name in weights.keys()}
    assert any(".deepstack_merger_list.0.linear_fc1.lora_A" in n for n in tensors)
    assert any(".language_model.layers.1.self_attn.o_proj.lora_B" in n for n in tensors)
    # Both fused expert parameters of every layer got a low-rank update (rank 8 per expert, 4 experts) that trained.
    expert_b = {n: t for n, t in tensors.items() if ".mlp.experts." in n and "lora_B" in n}
    assert len(expert_b) == 2 * 2 and all(t.shape[-1] == 8 * 4 and t.abs().sum() > 0 for t in expert_b.values())
    assert not any(".mlp.gate." in n for n in tensors)  # the router is not adapted

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

    merged_dir = tmp_path / "merged"
    assert cli(["merge", "--base", str(moe_dir), "--adapter", str(adapter), "--out", str(merged_dir)]) == 0
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()
    base, _ = load_model_and_processor(moe_dir, dtype="float32", device="cpu")
    with_adapter, _ = load_model_and_processor(moe_dir, adapter=adapter, dtype="float32", device="cpu")
    base_state, merged_state = base.state_dict(), merged.state_dict()
    for key in ("model.language_model.layers.0.mlp.experts.gate_up_proj",
                "model.language_model.layers.1.mlp.experts.down_proj"):
        assert not torch.equal(base_state[key], merged_state[key]), key
    assert torch.equal(base_state["model.language_model.layers.0.mlp.gate.weight"],
                       merged_state["model.language_model.layers.0.mlp.gate.weight"])
    ids = torch.randint(0, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = with_adapter(input_ids=ids).logits
        assert (merged(input_ids=ids).logits - expected).abs().max() < 1e-5
        assert (base(input_ids=ids).logits - expected).abs().max() > 1e-3


def test_an_adapter_whose_expert_parameters_the_base_lacks_is_one_line(moe_dir, tmp_path):
    from mevqa.models.loading import check_adapter_fits

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "target_modules": None, "target_parameters": ["mlp.experts.w13_proj"]}))
    with pytest.raises(MevqaError, match=r"adapter target_parameters \['mlp.experts.w13_proj'\] are not parameters "
                                         r"of the base model"):
        check_adapter_fits(adapter, moe_dir)


def test_expert_lora_resumes_to_the_same_adapter(moe_dir, tmp_path):
    """Trainer's resume reloads the expert parameters' LoRA (PEFT target_parameters) from the checkpoint: stopped
    after step 2 and resumed, the run ends with the uninterrupted run's adapter."""
    from safetensors.torch import load_file

    train_file = write_qa_file(tmp_path / "data", clips=2)

    def argv(out, *extra):
        return ["--config", "recipes/configs/tiny/lora.yaml", "--model_name_or_path", str(moe_dir), "--train_file",
                str(train_file), "--output_dir", str(out), "--max_steps", "4", "--save_steps", "2", "--report_to",
                "none", "--vision", "frozen", "--merger", "frozen", "--lora_llm_modules", "mlp", *extra]

    assert train("lora", argv(tmp_path / "whole")) == 0
    assert train("lora", argv(tmp_path / "resumed", "--stop_after_steps", "2")) == 0
    assert not (tmp_path / "resumed" / "final").exists()
    assert train("lora", argv(tmp_path / "resumed")) == 0
    starts = [r for r in map(json.loads, (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines())
              if r["event"] == "start"]
    assert starts[-1]["resumed_from"].endswith("checkpoint-2")
    whole = load_file(str(tmp_path / "whole" / "final" / "adapter_model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "final" / "adapter_model.safetensors"))
    assert whole.keys() == resumed.keys() and all(".mlp.experts." in key for key in whole)
    for key in whole:
        assert torch.allclose(whole[key], resumed[key], atol=1e-6), key
