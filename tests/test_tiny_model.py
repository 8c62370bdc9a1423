"""The tiny Qwen2.5-VL: real classes, real processor, Qwen's tokens and chat template, loads back offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2_5_VLForConditionalGeneration

from mevqa import vocab
from mevqa.cli import main
from mevqa.models.tiny import QWEN_EXTRA_TOKENS, QWEN_SPECIAL_TOKENS


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    return model, AutoProcessor.from_pretrained(tiny_model_dir)


def test_writes_and_reloads_offline_with_the_real_classes(tiny_model_dir, tiny):
    model, processor = tiny
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "processor_config.json", "chat_template.jinja"):
        assert (tiny_model_dir / name).is_file(), name
    assert type(model) is Qwen2_5_VLForConditionalGeneration
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.tokenizer).__name__ == "Qwen2Tokenizer"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (64, 2, 4)
    assert (vision.depth, vision.hidden_size, vision.out_hidden_size) == (2, 32, 64)
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    # Initialised wide enough to learn from pixels in a short CPU run (mevqa.models.tiny.INIT_STD).
    assert 0.09 < model.model.visual.blocks[0].attn.qkv.weight.std().item() < 0.11
    assert 0.09 < model.model.language_model.layers[0].self_attn.q_proj.weight.std().item() < 0.11
    n_params = sum(p.numel() for p in model.parameters())
    assert 150_000 < n_params < 350_000, n_params


def test_tokenizer_has_qwens_special_tokens_in_qwens_order(tiny):
    model, processor = tiny
    tokenizer = processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS + QWEN_EXTRA_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(ids)))          # consecutive, Qwen's order
    assert ids[-1] == len(tokenizer) - 1 == model.config.text_config.vocab_size - 1
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == [tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                                    tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    # A special token is one id, whatever surrounds it; text round-trips through the byte-level BPE.
    encoded = tokenizer.encode("<|im_start|>assistant\nSurprise: 'café' 12%<|im_end|>", add_special_tokens=False)
    assert encoded[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert encoded[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(encoded) == "<|im_start|>assistant\nSurprise: 'café' 12%<|im_end|>"


def test_answers_are_few_tokens(tiny):
    tokenizer = tiny[1].tokenizer
    for label in (*vocab.COARSE_LABELS, *vocab.FINE_LABELS, "yes", "no", "left", "right"):
        assert len(tokenizer.encode(label, add_special_tokens=False)) == 1, label
    for name in vocab.OFFICIAL_AU_NAMES.values():
        assert len(tokenizer.encode(name, add_special_tokens=False)) <= 3, name


def test_chat_template_matches_qwen25vl(tiny):
    processor = tiny[1]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Hi?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}]
    assert processor.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|video_pad|><|vision_end|>"
        "Hi?<|im_end|>\n<|im_start|>assistant\nyes<|im_end|>\n")
    system = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, messages[0]]
    assert processor.apply_chat_template(system, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|video_pad|><|vision_end|>Hi?<|im_end|>\n<|im_start|>assistant\n")


def test_processor_and_model_take_three_images_and_an_8_frame_video(tiny):
    model, processor = tiny
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (100, 130, 3), dtype=np.uint8)) for _ in range(3)]
    frames = [Image.fromarray(rng.integers(0, 255, (90, 90, 3), dtype=np.uint8)) for _ in range(8)]
    content = [{"type": "image"}] * 3 + [{"type": "video"}, {"type": "text", "text": vocab.Q_COARSE}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)
    batch = processor(text=[text], images=images, videos=[frames], do_sample_frames=False, return_tensors="pt")
    assert batch["image_grid_thw"].shape == (3, 3)
    assert batch["video_grid_thw"][0, 0].item() == 4                      # 8 frames / temporal patch 2
    ids = batch["input_ids"][0]
    assert (ids == model.config.image_token_id).sum() == batch["image_grid_thw"].prod(-1).sum() // 4
    assert (ids == model.config.video_token_id).sum() == batch["video_grid_thw"].prod(-1).sum() // 4
    # Small default budgets: every image between 4x4 and 8x8 patches.
    patches = batch["image_grid_thw"][:, 1:].prod(-1)
    assert ((patches >= 16) & (patches <= 64)).all()
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, ids.shape[0], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


def test_cli_writes_a_model_seeded_as_asked(tiny_model_dir, tmp_path):
    out = tmp_path / "tiny-seed1"
    assert main(["tiny-model", "--out", str(out), "--seed", "1"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary folder left behind
    ours, theirs = load_file(out / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert any(not torch.equal(ours[k], theirs[k]) for k in ours)          # another seed, other weights
    # The tokenizer is trained deterministically: same vocabulary and merges for every seed.
    assert (json.loads((out / "tokenizer.json").read_text())["model"]
            == json.loads((tiny_model_dir / "tokenizer.json").read_text())["model"])
    # Written again over itself: the folder is replaced whole (seed 0's weights now), with nothing left beside it.
    (out / "stray.txt").write_text("from the earlier model's folder")
    assert main(["tiny-model", "--out", str(out), "--seed", "0"]) == 0
    assert not (out / "stray.txt").exists()
    assert load_file(out / "model.safetensors").keys() == theirs.keys()
    assert all(torch.equal(load_file(out / "model.safetensors")[k], theirs[k]) for k in theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-seed1"]


def test_cli_refuses_a_folder_holding_other_files(tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["tiny-model", "--out", str(out)]) == 2
    assert "holds files but no model (config.json)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_every_official_question_and_answer_is_compact_and_round_trips(tiny, public_data):
    """The real training and test files: every question has a kind-specific prompt and few tokens; answers are short."""
    from conftest import OFFICIAL_TEST, OFFICIAL_TRAIN
    from mevqa.jsonl import read_jsonl
    from mevqa.messages import GENERIC_SYSTEM_PROMPT, system_prompt_for

    tokenizer = tiny[1].tokenizer
    rows = read_jsonl(OFFICIAL_TRAIN) + [row for path in OFFICIAL_TEST for row in read_jsonl(path)]
    assert len(rows) > 1900
    longest = {}
    for row in rows:
        for field in ("question", "answer"):
            text = row[field]
            ids = tokenizer.encode(text, add_special_tokens=False)
            assert tokenizer.decode(ids) == text
            longest[field] = max(longest.get(field, 0), len(ids))
        assert system_prompt_for(row["question"]) != GENERIC_SYSTEM_PROMPT, row["question"]
        if vocab.question_kind(row["question"]) in (vocab.COARSE, vocab.FINE, vocab.PRESENCE, vocab.LATERALITY) \
                and row["answer"]:
            assert len(tokenizer.encode(row["answer"], add_special_tokens=False)) == 1, row["answer"]
    assert longest["question"] <= 30 and longest["answer"] <= 40, longest


def _blob_rows(root, n_per_class, seed):
    """Flow-mode rows whose coarse answer shows as a coloured blob in a class-specific place (jittered) on a
    background of random brightness."""
    rng = np.random.default_rng(seed)
    classes = {"positive": ((230, 60, 60), (22, 58)), "negative": ((60, 230, 60), (58, 22)),
               "surprise": ((60, 60, 230), (58, 58))}
    yy, xx = np.mgrid[:80, :80]
    rows = []
    for label, (colour, (cx, cy)) in classes.items():
        for k in range(n_per_class):
            image = rng.normal(rng.uniform(80, 140), 4, (80, 80, 3))
            x, y = cx + rng.integers(-4, 5), cy + rng.integers(-4, 5)
            image[(xx - x) ** 2 + (yy - y) ** 2 < 144] = colour
            path = root / f"{label}_{seed}_{k}.png"
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path)
            rows.append({"id": f"{label}_{seed}_{k}", "question": vocab.Q_COARSE, "answer": label,
                         "media": {"flow": {"image": str(path)}}})
    return rows


def test_the_tiny_model_learns_from_pixels(tiny_model_dir, tmp_path):
    """Same question, three images, three answers: a short CPU run teaches the tiny model to answer from the pixels
    alone, through the real processor, vision tower, merger and language model. (tests/test_recipes.py checks
    held-out generalisation through the training recipe.)"""
    from mevqa.answering.generation import generate_answers
    from mevqa.models.collate import Collator, QADataset
    from mevqa.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(tiny_model_dir)
    rows = _blob_rows(tmp_path, 1, seed=0)
    dataset = QADataset(rows, "flow", system_prompt=None)
    batch = Collator(processor, train=True)([dataset[i] for i in range(len(rows))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(60):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    answers = generate_answers(model, processor, rows, "flow", system_prompt=None, max_new_tokens=4)
    assert answers == ["positive", "negative", "surprise"]
