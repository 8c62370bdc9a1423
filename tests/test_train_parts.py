"""Training pieces in process: which modules get LoRA, what trains fully, learning rates per part, the data order
across processes and resumes, and the token-normalised loss over gradient accumulation."""

from __future__ import annotations

import re

import pytest
import torch

from mevqa.errors import MevqaError
from mevqa.train import data as train_data
from mevqa.train.config import parse_args
from mevqa.train.parts import apply_full, apply_lora, lora_target_regex, param_groups, part_of


@pytest.fixture
def base(tiny_model_dir):
    from mevqa.model import load_model_and_processor

    model, _ = load_model_and_processor(tiny_model_dir, dtype="float32", device="cpu")
    return model


def lora_modules(model) -> set[str]:
    return {name.removeprefix("base_model.model.") for name, module in model.named_modules()
            if hasattr(module, "lora_A") and len(module.lora_A)}


def test_baseline_preset_puts_lora_on_vision_blocks_merger_and_llm_q_k(base):
    cfg = parse_args(["--vision", "lora", "--merger", "lora", "--llm", "lora", "--lora_llm_modules", "q_proj,k_proj",
                      "--lora_vision_modules", "qkv,proj"])
    model = apply_lora(base, cfg)
    expected = {f"model.visual.blocks.{i}.attn.{m}" for i in range(2) for m in ("qkv", "proj")}
    expected |= {"model.visual.merger.mlp.0", "model.visual.merger.mlp.2"}
    expected |= {f"model.language_model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "k_proj")}
    assert lora_modules(model) == expected
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_lora_llm_with_fully_trained_vision_and_merger(base):
    cfg = parse_args(["--vision", "full", "--merger", "full", "--llm", "lora"])
    model = apply_lora(base, cfg)
    assert all(name.startswith("model.language_model.layers.") for name in lora_modules(model))
    for name, param in model.named_parameters():
        part = part_of(name)
        if part in ("vision", "merger"):
            # The trainable copy PEFT saves in the adapter; the original stays frozen beside it.
            assert param.requires_grad == ("modules_to_save" in name), name
        elif param.requires_grad:
            assert "lora_" in name, name


def test_regex_option_replaces_the_part_targets(base):
    cfg = parse_args(["--llm", "lora", "--lora_target_regex", r".*language_model\.layers\.1\.mlp\.down_proj"])
    assert lora_modules(apply_lora(base, cfg)) == {"model.language_model.layers.1.mlp.down_proj"}


def test_lora_target_regex_never_matches_the_merger_activation_or_the_other_tower():
    regex = lora_target_regex(parse_args(["--vision", "lora", "--merger", "lora", "--llm", "frozen",
                                          "--lora_vision_modules", "gate_proj"]))
    assert re.fullmatch(regex, "model.visual.blocks.3.mlp.gate_proj")
    assert re.fullmatch(regex, "model.visual.merger.mlp.2")
    assert not re.fullmatch(regex, "model.visual.merger.mlp.1")
    assert not re.fullmatch(regex, "model.language_model.layers.3.mlp.gate_proj")


def test_lora_needs_a_lora_part_and_full_refuses_one(base):
    with pytest.raises(MevqaError, match="at least one part set to lora"):
        apply_lora(base, parse_args(["--llm", "full"]))
    with pytest.raises(MevqaError, match="llm=lora is not allowed in recipes/full.py"):
        apply_full(base, parse_args(["--llm", "lora"]))
    with pytest.raises(MevqaError, match="LoRA set-up failed"):
        apply_lora(base, parse_args(["--lora_target_regex", "nothing_matches_this"]))


def test_full_freezes_exactly_the_frozen_parts_and_groups_learning_rates(base):
    cfg = parse_args(["--vision", "frozen", "--merger", "full", "--llm", "full", "--learning_rate", "1e-5",
                      "--lr_merger", "1e-4", "--weight_decay", "0.1"])
    model = apply_full(base, cfg)
    for name, param in model.named_parameters():
        assert param.requires_grad == (part_of(name) != "vision"), name
    groups = {group["name"]: group for group in param_groups(model, cfg)}
    assert set(groups) == {"llm", "llm_no_decay", "merger", "merger_no_decay"}
    assert groups["merger"]["lr"] == 1e-4 and groups["llm"]["lr"] == 1e-5
    assert groups["llm"]["weight_decay"] == 0.1 and groups["llm_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in groups["llm_no_decay"]["params"])
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == n_trainable


@pytest.mark.parametrize("n_rows, world, batch, accumulation", [(12, 2, 2, 2), (13, 2, 1, 3), (5, 1, 2, 1)])
def test_data_order_shards_and_resumes_exactly(n_rows, world, batch, accumulation):
    per_epoch = train_data.steps_per_epoch(n_rows, world, batch, accumulation)
    step_size = world * batch * accumulation
    order = train_data.epoch_order(n_rows, seed=3, epoch=1, n_steps=per_epoch, step_size=step_size)
    assert set(order) == set(range(n_rows)) and len(order) == per_epoch * step_size
    assert order == train_data.epoch_order(n_rows, seed=3, epoch=1, n_steps=per_epoch, step_size=step_size)
    assert order != train_data.epoch_order(n_rows, seed=3, epoch=2, n_steps=per_epoch, step_size=step_size)
    shares = [train_data.rank_indices(order, rank=r, world_size=world, batch_size=batch, accumulation=accumulation)
              for r in range(world)]
    assert sorted(i for share in shares for i in share) == sorted(order)
    per_step = batch * accumulation
    for step in range(per_epoch):
        rows = [i for share in shares for i in share[step * per_step:(step + 1) * per_step]]
        assert len(rows) == step_size
        resumed = [train_data.rank_indices(order, rank=r, world_size=world, batch_size=batch,
                                           accumulation=accumulation, start_step=step) for r in range(world)]
        assert all(resumed[r] == shares[r][step * per_step:] for r in range(world))


def test_token_normalised_accumulation_gives_the_full_batch_gradient(base, tiny_model_dir, tmp_path):
    """Two micro-batches with different answer lengths, each scaled as the loop does, give the gradient of the
    whole batch's mean token loss (a per-micro-batch mean would over-weight the short answers)."""
    from mevqa.collate import Collator, QADataset
    from mevqa.model import load_model_and_processor
    from mevqa.train.loop import answer_token_count, summed_loss
    from qa_rows import write_clip

    _, processor = load_model_and_processor(tiny_model_dir, dtype="float32", device="cpu")
    media = write_clip(tmp_path, "clip")
    answers = ["positive", "The action units present are: brow lowerer, lip pressor. Therefore, the fine-grained "
               "expression class is disgust, and the coarse expression class is negative.", "negative", "surprise"]
    rows = [{"id": f"samm_{i}", "question": "What is the coarse expression class?", "answer": a,
             "media": media} for i, a in enumerate(answers)]
    from mevqa.messages import resolve_media

    rows = [resolve_media(row, tmp_path, "test") for row in rows]
    dataset = QADataset(rows, "oao")
    collate = Collator(processor, train=True)
    whole = collate([dataset[i] for i in range(4)])
    micro = [collate([dataset[0], dataset[1]]), collate([dataset[2], dataset[3]])]

    def grads(loss_fn):
        base.zero_grad()
        loss_fn()
        return torch.cat([p.grad.flatten() for p in base.parameters() if p.grad is not None])

    expected = grads(lambda: base(**whole).loss.backward())
    total = sum(answer_token_count(b) for b in micro)
    got = grads(lambda: [(summed_loss(base, b) / total).backward() for b in micro])
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4)
    naive = grads(lambda: [(base(**b).loss / 2).backward() for b in micro])
    assert not torch.allclose(naive, expected, atol=1e-6, rtol=1e-4)


def test_a_best_metric_the_validation_file_cannot_give_fails_before_training():
    from mevqa import vocab
    from mevqa.train.loop import _check_metric_available

    coarse_only = [{"question": vocab.Q_COARSE, "answer": "positive"}]
    _check_metric_available(parse_args(["--metric_for_best", "uf1_coarse"]), coarse_only)
    with pytest.raises(MevqaError, match="metric_for_best=avg needs fine expression questions"):
        _check_metric_available(parse_args(["--eval_file", "val.jsonl"]), coarse_only)


def test_missing_data_files_fail_before_the_model_is_loaded(tmp_path):
    from mevqa.train.loop import load_for_training

    absent = str(tmp_path / "no-such-model")  # never reached: loading it would fail with another message
    with pytest.raises(MevqaError, match="config: train_file is required"):
        load_for_training(parse_args(["--model_name_or_path", absent]), None)
    with pytest.raises(MevqaError, match=r"train\.jsonl: train_file not found"):
        load_for_training(parse_args(["--model_name_or_path", absent, "--train_file", str(tmp_path / "train.jsonl")]),
                          None)
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(MevqaError, match=r"val\.jsonl: eval_file not found"):
        load_for_training(parse_args(["--model_name_or_path", absent, "--train_file", str(tmp_path / "train.jsonl"),
                                      "--eval_file", str(tmp_path / "val.jsonl")]), None)
