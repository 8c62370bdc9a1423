"""Batched greedy generation: same answers as one by one, only new tokens decoded, stops at the end of the turn."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from mevqa.answering.generation import generate_answers, iter_answers
from mevqa.models.collate import Collator, QADataset
from mevqa.models.loading import load_model_and_processor
from mevqa.rows import read_rows
from qa_rows import write_qa_file


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return read_rows(write_qa_file(tmp_path_factory.mktemp("qa"), clips=2))



@pytest.mark.parametrize("mode", ["video", "oao", "frames+flow"])
def test_batched_and_one_by_one_greedy_answers_are_identical(tiny, rows, mode):
    model, processor = tiny
    picked = rows[:6]  # questions of different lengths, so the batch is really left padded
    batched = generate_answers(model, processor, picked, mode, batch_size=4, max_new_tokens=12)
    single = generate_answers(model, processor, picked, mode, batch_size=1, max_new_tokens=12)
    assert batched == single
    assert len(batched) == len(picked) and all(isinstance(a, str) and a == a.strip() for a in batched)
    lengths = Collator(processor, train=False)(
        [QADataset(picked, mode, with_answer=False)[i] for i in range(4)])["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) > 1


def test_answers_hold_only_the_new_tokens(tiny, rows):
    model, processor = tiny
    tokenizer = processor.tokenizer
    one_token = {tokenizer.decode([i], skip_special_tokens=True).strip() for i in range(len(tokenizer))}
    answers = generate_answers(model, processor, rows[:3], "flow", batch_size=3, max_new_tokens=1)
    assert all(answer in one_token for answer in answers)           # not the prompt: one generated token each


def test_iter_answers_yields_rows_in_order(tiny, rows):
    model, processor = tiny
    pairs = list(iter_answers(model, processor, rows[:5], "oao", batch_size=2, max_new_tokens=3))
    assert [row["id"] for row, _ in pairs] == [row["id"] for row in rows[:5]]
    assert not model.training


def test_a_checkpoints_generation_config_does_not_change_the_decoding_asked_for(tiny_model_dir, rows):
    model, processor = load_model_and_processor(tiny_model_dir)
    greedy = generate_answers(model, processor, rows[:4], "flow", max_new_tokens=6)
    # What Qwen2.5-VL-Instruct ships: "sampling" that is greedy in effect, with a repetition penalty.
    model.generation_config.update(do_sample=True, top_k=1, top_p=0.001, temperature=1e-6, repetition_penalty=1.05)
    assert generate_answers(model, processor, rows[:4], "flow", max_new_tokens=6) == greedy
    sampled = set()
    for seed in range(4):
        torch.manual_seed(seed)
        sampled.add(tuple(generate_answers(model, processor, rows[:4], "flow", max_new_tokens=6, do_sample=True)))
    assert len(sampled) > 1                                       # real sampling, not the checkpoint's top_k=1


def test_a_model_taught_the_answers_generates_them_exactly(tiny_model_dir, rows):
    """Overfit the tiny model on four rows; greedy generation must return the answers, nothing more."""
    model, processor = load_model_and_processor(tiny_model_dir)
    picked = rows[:4]                                        # coarse, fine, AU and yes/no questions of one clip
    batch = Collator(processor, train=True)([QADataset(picked, "flow")[i] for i in range(len(picked))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(30):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    assert loss.item() < 0.6
    answers = generate_answers(model, processor, copy.deepcopy(picked), "flow", batch_size=4, max_new_tokens=8)
    assert answers == [row["answer"] for row in picked]


def test_peft_wrapped_model_generates_the_same_batched_and_one_by_one(tiny_model_dir, rows):
    model, processor = load_model_and_processor(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "qkv"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.eval()
    batched = generate_answers(peft_model, processor, rows[:4], "video", batch_size=4, max_new_tokens=6)
    assert batched == generate_answers(peft_model, processor, rows[:4], "video", batch_size=1, max_new_tokens=6)
    with peft_model.disable_adapter():
        plain = generate_answers(peft_model, processor, rows[:4], "video", batch_size=4, max_new_tokens=6)
    assert plain != batched                                       # the adapter is really used
