"""Qwen3-VL-4B at its real size (random weights, bf16, on one GPU): one LoRA training step through mevqa's own
pieces on video and OAO inputs, the megc2025 baseline targets (vision blocks, the merger and its three DeepStack
mergers, LLM q/k). The architecture numbers are the checkpoint's (``benchmarks/qwen3_vl_configs.json``); the processor
is the tiny Qwen3-VL one (its tokenizer's ids fit the real vocabulary), so no weights are downloaded.

    pytest -m gpu tests/gpu/test_qwen3_vl_4b.py      # skipped without CUDA; run by benchmarks/gpu_check.sh

Written from the real config without a GPU at hand: it has been collected, not yet run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def model_and_processor():
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from mevqa.models.tiny import QWEN_SPECIAL_TOKENS, build_tiny_processor

    numbers = json.loads((REPO / "benchmarks" / "qwen3_vl_configs.json").read_text())
    processor = build_tiny_processor("qwen3_vl")
    ids = {t: processor.tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    arch = numbers["4b"]
    config = Qwen3VLConfig(text_config=arch["text_config"], vision_config=arch["vision_config"],
                           tie_word_embeddings=arch["tie_word_embeddings"], image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    processor.image_processor.size = {"shortest_edge": 64 * 64, "longest_edge": 448 * 448}
    processor.video_processor.size = {"shortest_edge": 64 * 64, "longest_edge": 8 * 224 * 224}
    return model, processor


@pytest.mark.parametrize("mode", ["video", "oao"])
def test_one_lora_step_of_qwen3_vl_4b(model_and_processor, mode):
    from PIL import Image

    from mevqa.messages import Vision
    from mevqa.models.collate import Sample, encode
    from mevqa.train.config import parse_args
    from mevqa.train.parts import apply_lora, enable_gradient_checkpointing, param_groups, trainable_summary

    base, processor = model_and_processor
    n_params = sum(p.numel() for p in base.parameters())
    assert 4.0e9 < n_params < 5.0e9, n_params
    cfg = parse_args(["--lora_preset", "megc2025_baseline", "--lora_r", "8"])
    model = apply_lora(base, cfg)
    enable_gradient_checkpointing(model)
    model.train()
    frames = np.random.default_rng(0).integers(0, 255, (8, 224, 224, 3), dtype=np.uint8)
    if mode == "video":
        content, vision = [{"type": "video"}], Vision([], [frames], [40.0])
    else:
        content = [{"type": "image"}] * 3
        vision = Vision([Image.fromarray(frames[i]).resize((448, 448)) for i in (0, 4, 7)], [], [])
    messages = [{"role": "user", "content": [*content, {"type": "text", "text": "What is the coarse expression class?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "positive"}]}]
    batch = encode(processor, [Sample({"id": "gpu"}, messages, vision)], train=True).to("cuda")
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=1e-4)
    torch.cuda.reset_peak_memory_stats()
    loss = model(**batch).loss
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    deepstack = [g for name, g in grads.items() if ".deepstack_merger_list." in name]
    assert deepstack and all(g is not None and torch.isfinite(g).all() for g in deepstack)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    assert torch.isfinite(loss)
    summary = trainable_summary(model)
    assert summary["other"]["total"] == 0 and all(summary[p]["trainable"] > 0 for p in ("vision", "merger", "llm"))
    print(f"qwen3-vl-4b {mode}: loss {loss.item():.3f}, {batch['input_ids'].shape[1]} tokens, "
          f"peak {torch.cuda.max_memory_allocated() / 2 ** 30:.1f} GiB")
    model.unload()  # the base without adapters, for the next mode
