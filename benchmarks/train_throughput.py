"""Training throughput of a recipe config: samples/s, tokens/s, peak memory and (on GPU) MFU.

    python benchmarks/train_throughput.py --model tiny --config recipes/configs/tiny/lora.yaml --steps 20
    python benchmarks/train_throughput.py --model 3b --config recipes/configs/qwen2_5_vl_3b/lora_baseline.yaml \
        --inputs oao --batch-size 4 --steps 20          # on a GPU: random weights, real 3B compute

``--model 3b`` / ``7b`` builds Qwen2.5-VL from the real architecture numbers (``qwen2_5_vl_configs.json`` beside
this script) with random weights: nothing is downloaded, and the compute and memory are those of the real model.
The tiny model's processor (real Qwen2.5-VL image/video processors, offline tokenizer) prepares the inputs, with the
config's pixel budgets, so the visual token counts are the real ones; text is a few tokens shorter than with Qwen's
own tokenizer. Inputs are synthetic clips (noise frames of ``--image-size`` pixels) asked every official question.

Each step is the recipe's: the config's trainable parts (LoRA / full / frozen per part), AdamW over its parameter
groups, token-normalised loss, backward, clipping, optimizer step; ``--steps`` are timed after ``--warmup`` steps.
MFU counts 2 FLOPs per parameter per token forward, 2 more for the input gradient through every part gradients flow
through, and 2 more for the weight gradient of fully trained parts (LoRA adapters' own FLOPs are ignored); vision
parameters count per patch, language-model parameters per sequence token; attention's quadratic term is left out.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mevqa import vocab
from mevqa.train.config import load_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0,
                    "4090": 165.0, "3090": 71.0}


def synthetic_rows(root: Path, n_clips: int, image_size: int, n_frames: int, seed: int) -> list[dict]:
    """QA rows in the design format, with every official question per clip and real image files on disk."""
    rng = np.random.default_rng(seed)
    fines = ["happiness", "disgust", "surprise", "fear", "anger", "sadness"]
    aus_pool = list(vocab.OFFICIAL_AU_NAMES.values())
    rows = []
    for c in range(n_clips):
        clip = root / f"clip{c}"
        clip.mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(n_frames):
            path = clip / f"{i:02d}.jpg"
            Image.fromarray(rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)).save(path)
            frames.append(str(path))
        flow = clip / "flow.jpg"
        Image.fromarray(rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)).save(flow)
        media = {"video": {"frames": frames, "frame_numbers": list(range(0, 4 * n_frames, 4)), "source_fps": 200.0,
                           "sample_fps": 50.0},
                 "oao": {"frames": [frames[0], frames[n_frames // 2], frames[-1]]},
                 "flow": {"image": str(flow)}}
        fine = fines[c % len(fines)]
        coarse = vocab.FINE_TO_COARSE[fine]
        aus = [aus_pool[(3 * c) % len(aus_pool)], aus_pool[(3 * c + 7) % len(aus_pool)]]
        for k, (question, answer) in enumerate([
                (vocab.Q_COARSE, coarse), (vocab.Q_FINE, fine), (vocab.au_question(aus), vocab.au_answer(aus)),
                (vocab.Q_PRESENCE.format(au=aus[0]), "yes"),
                (vocab.composite_question(aus), vocab.composite_answer(aus, fine, coarse))], start=1):
            rows.append({"id": f"samm_bench{c}_{k}", "question": question, "answer": answer, "media": media})
    return rows


def build_model(name: str, processor, dtype: torch.dtype, device: torch.device, attn_implementation: str):
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLConfig

    tokenizer = processor.tokenizer
    ids = {key: tokenizer.convert_tokens_to_ids(tok) for key, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    numbers = json.loads((HERE / "qwen2_5_vl_configs.json").read_text())[name]
    text = dict(numbers["text_config"], bos_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=numbers["vision_config"],
                              tie_word_embeddings=numbers["tie_word_embeddings"], **ids)
    config._attn_implementation = attn_implementation
    with device:
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    return model


def flops_per_step(model, batch, cfg) -> float:
    """Training FLOPs of one micro-batch (see the module docstring)."""
    from mevqa.train.parts import part_of

    counts = {"vision": 0, "merger": 0, "llm": 0}
    for name, param in model.named_parameters():
        part = part_of(name)
        if part and "lora_" not in name and "modules_to_save" not in name:
            counts[part] += param.numel()
    merge = 4  # 2x2 patches per visual token
    patches = sum(int(batch[key].shape[0]) for key in ("pixel_values", "pixel_values_videos") if key in batch)
    tokens = int(batch["attention_mask"].sum())

    def factor(part: str) -> int:
        """2 (forward) + 2 (input gradient, when a trained part sits at or below) + 2 (weight gradient, full)."""
        below = {"vision": ("vision",), "merger": ("vision", "merger"), "llm": ("vision", "merger", "llm")}[part]
        gradient_flows = any(getattr(cfg, p) != "frozen" for p in below)
        return 2 + 2 * gradient_flows + 2 * (getattr(cfg, part) == "full")

    return (factor("vision") * counts["vision"] * patches + factor("merger") * counts["merger"] * patches / merge
            + factor("llm") * counts["llm"] * tokens)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["tiny", "3b", "7b"], default="tiny")
    parser.add_argument("--config", type=Path, default=REPO / "recipes/configs/tiny/lora.yaml",
                        help="recipe config whose trainable parts, LoRA and optimizer settings are timed")
    parser.add_argument("--recipe", choices=["lora", "full"], default=None,
                        help="default: lora when a part is set to lora, else full")
    parser.add_argument("--inputs", default=None, help="input mode (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None, help="per-step batch (default: the config's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=448, help="side of the synthetic frames in pixels")
    parser.add_argument("--frames", type=int, default=8, help="frames per synthetic video")
    parser.add_argument("--gradient-checkpointing", choices=["config", "on", "off"], default="config")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak for MFU (default: by GPU name)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from mevqa.collate import Collator, QADataset
    from mevqa.model import load_model_and_processor, set_pixel_budgets
    from mevqa.tiny import write_tiny_model
    from mevqa.train.loop import answer_token_count, summed_loss
    from mevqa.train.parts import apply_full, apply_lora, enable_gradient_checkpointing, param_groups

    cfg = load_config(args.config)
    recipe = args.recipe or ("lora" if "lora" in (cfg.vision, cfg.merger, cfg.llm) else "full")
    inputs = args.inputs or cfg.inputs
    batch_size = args.batch_size or cfg.per_device_batch_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.type == "cuda"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    attn = cfg.attn_implementation if on_gpu else "sdpa"
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        tiny_dir = write_tiny_model(Path(tmp) / "tiny", seed=args.seed)
        model, processor = load_model_and_processor(tiny_dir, dtype=dtype, device=device)
        if args.model != "tiny":
            set_pixel_budgets(processor, min_pixels=cfg.min_pixels or 3136, max_pixels=cfg.max_pixels or 200704,
                              video_min_pixels=cfg.video_min_pixels or 3136,
                              video_max_pixels=cfg.video_max_pixels or 50176)
            del model
            model = build_model(args.model, processor, dtype, device, attn)
        checkpointing = cfg.gradient_checkpointing if args.gradient_checkpointing == "config" else \
            args.gradient_checkpointing == "on"
        if checkpointing:
            enable_gradient_checkpointing(model)
        model.config.use_cache = False
        model = apply_lora(model, cfg) if recipe == "lora" else apply_full(model, cfg)
        model.train()
        optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.learning_rate, fused=on_gpu)
        trainable = [p for p in model.parameters() if p.requires_grad]

        rows = synthetic_rows(Path(tmp) / "clips", n_clips=max(2, math.ceil(batch_size / 5) + 1),
                              image_size=args.image_size, n_frames=args.frames, seed=args.seed)
        dataset = QADataset(rows, inputs, system_prompt=cfg.system_prompt, max_frames=cfg.max_frames)
        collate = Collator(processor, train=True)
        batches = [collate([dataset[(s * batch_size + i) % len(rows)] for i in range(batch_size)]).to(device)
                   for s in range(min(len(rows), 8))]

        def step(batch):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
                loss = summed_loss(model, batch) / answer_token_count(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        for i in range(args.warmup):
            step(batches[i % len(batches)])
        if on_gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        tokens = samples = visual = 0
        flops = 0.0
        start = time.perf_counter()
        for i in range(args.steps):
            batch = batches[i % len(batches)]
            loss = step(batch)
            tokens += int(batch["attention_mask"].sum())
            samples += batch["input_ids"].shape[0]
            visual += int(sum((batch[k].prod(-1) // 4).sum() for k in ("image_grid_thw", "video_grid_thw")
                              if k in batch))
            flops += flops_per_step(model, batch, cfg)
        if on_gpu:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if not torch.isfinite(loss):
            raise SystemExit(f"loss is {loss.item()}")

    n_total = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in trainable)
    print(f"model {args.model}, recipe {recipe} ({args.config}), inputs {inputs}, batch {batch_size}, "
          f"image {args.image_size}px, gradient checkpointing {'on' if checkpointing else 'off'}, {device.type}"
          + (f" ({torch.cuda.get_device_name()})" if on_gpu else ""))
    print(f"parameters: {n_total / 1e6:.1f} M, trainable {n_train / 1e6:.2f} M")
    print(f"per sample: {tokens / samples:.0f} tokens ({visual / samples:.0f} visual)")
    print(f"samples/s: {samples / elapsed:.2f}")
    print(f"tokens/s: {tokens / elapsed:.0f} (visual tokens/s: {visual / elapsed:.0f})")
    print(f"step time: {elapsed / args.steps * 1000:.1f} ms")
    if on_gpu:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        peak = args.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items()
                                         if k in torch.cuda.get_device_name()), None)
        if peak:
            print(f"MFU: {flops / elapsed / (peak * 1e12) * 100:.1f}% of {peak:.0f} bf16 TFLOP/s")
        else:
            print("MFU: unknown GPU peak; pass --peak-tflops")
    else:
        print(f"peak process memory (RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
