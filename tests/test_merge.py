"""``mevqa merge``: vision-tower LoRA and fully trained parts folded into a checkpoint plain transformers loads."""

from __future__ import annotations

import pytest
import torch

from mevqa.cli import main
from mevqa.errors import MevqaError
from mevqa.models.merge import merge_adapter
from mevqa.train.config import parse_args, save_config
from mevqa.train.parts import apply_lora


# A Linear layer of each family's merger, and the DeepStack merger Qwen3-VL has beside it.
MERGER_WEIGHTS = {"qwen2_vl": ["model.visual.merger.mlp.0.weight"], "qwen2_5_vl": ["model.visual.merger.mlp.0.weight"],
                  "qwen3_vl": ["model.visual.merger.linear_fc1.weight",
                               "model.visual.deepstack_merger_list.0.linear_fc2.weight"]}


@pytest.fixture(scope="module")
def adapter(tiny_family_dir, tmp_path_factory):
    """An adapter with LoRA on the vision blocks and the merger plus a fully trained language model, every trainable
    weight moved off its initial value (as training would), so that merging has something to fold."""
    from mevqa.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(tiny_family_dir, dtype="float32", device="cpu")
    cfg = parse_args(["--vision", "lora", "--merger", "lora", "--llm", "full"])
    model = apply_lora(model, cfg)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    out = tmp_path_factory.mktemp("adapter") / "final"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    save_config(cfg, out)
    return out


@pytest.fixture(scope="module")
def batch(tiny_family_dir, tmp_path_factory):
    from qa_rows import write_qa_file

    from mevqa.models.collate import Collator, QADataset
    from mevqa.models.loading import load_model_and_processor
    from mevqa.rows import read_rows

    _, processor = load_model_and_processor(tiny_family_dir, dtype="float32", device="cpu")
    rows = read_rows(write_qa_file(tmp_path_factory.mktemp("qa"), clips=1))[:3]
    dataset = QADataset(rows, "frames+flow")
    inputs = Collator(processor, train=True)([dataset[i] for i in range(len(rows))])
    inputs.pop("labels")
    return inputs


def test_merged_checkpoint_matches_base_plus_adapter(tiny_family_dir, adapter, batch, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mevqa.models.loading import load_model_and_processor

    out = tmp_path / "merged"
    assert main(["merge", "--base", str(tiny_family_dir), "--adapter", str(adapter), "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "train_config.yaml").is_file()
    merged = AutoModelForImageTextToText.from_pretrained(out).eval()
    assert not [name for name, _ in merged.named_modules() if "lora" in name]
    AutoProcessor.from_pretrained(out)
    with_adapter, _ = load_model_and_processor(tiny_family_dir, adapter=adapter, dtype="float32", device="cpu")
    base, _ = load_model_and_processor(tiny_family_dir, dtype="float32", device="cpu")
    with torch.no_grad():
        expected = with_adapter(**batch).logits
        assert (merged(**batch).logits - expected).abs().max() < 1e-5
        assert (base(**batch).logits - expected).abs().max() > 1e-2  # the adapter did change the model
    # Vision-tower LoRA and the fully trained head are in the merged weights.
    base_state, merged_state = base.state_dict(), merged.state_dict()
    for key in ("model.visual.blocks.0.attn.qkv.weight", *MERGER_WEIGHTS[merged.config.model_type], "lm_head.weight",
                "model.language_model.layers.1.self_attn.v_proj.weight", "model.language_model.embed_tokens.weight"):
        assert not torch.equal(base_state[key], merged_state[key]), key
    # Parts without adapters stay as they were (the patch embedding is not a LoRA target).
    assert torch.equal(base_state["model.visual.patch_embed.proj.weight"],
                       merged_state["model.visual.patch_embed.proj.weight"])


def test_merge_refuses_to_overwrite_and_names_bad_folders(tiny_family_dir, adapter, tmp_path):
    tiny_model_dir = tiny_family_dir
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(MevqaError, match="already exists and is not empty"):
        merge_adapter(str(tiny_model_dir), adapter, taken)
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(MevqaError, match="adapter folder does not exist"):
        merge_adapter(str(tiny_model_dir), tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["merge", "--base", str(tiny_model_dir), "--adapter", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "out")]) == 2
