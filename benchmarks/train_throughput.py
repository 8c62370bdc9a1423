"""Training throughput of a recipe config through the recipes' own engine: samples/s, tokens/s, peak memory and
(on GPU) MFU.

    python benchmarks/train_throughput.py --model tiny --config recipes/configs/tiny/lora.yaml --steps 20
    python benchmarks/train_throughput.py --model 3b --config recipes/configs/qwen2_5_vl_3b/lora_baseline.yaml \
        --steps 5          # on a GPU: random weights, real 3B compute

The steps timed are ``MevqaTrainer.train()``'s own (``mevqa.train.trainer``): the config's trainable parts (LoRA /
full / frozen per part), its TrainingArguments (``mevqa.train.run.training_arguments``: mixed precision, gradient
accumulation, clipping, scheduler), Trainer's optimizer step and the token-normalised loss; nothing is re-implemented
here. A callback times each optimizer step from its first micro-batch to its end (the batches are collated just
before, by the recipe's collator); the first ``--warmup`` steps are not counted, and the peak memory is that of the
counted steps.

``--model 3b`` / ``7b`` builds Qwen2.5-VL from the real architecture numbers (``qwen2_5_vl_configs.json`` beside
this script) with random weights, on the GPU: nothing is downloaded, and the compute and memory are those of the real
model. The tiny model's processor (real Qwen2.5-VL image/video processors, offline tokenizer) prepares the inputs
with the config's pixel budgets, so the visual token counts are the real ones; text is a few tokens shorter than with
Qwen's own tokenizer. Inputs are synthetic clips (noise frames of ``--image-size`` pixels) asked every official
question. QLoRA configs need a quantised checkpoint on disk and are not built from random weights here.

MFU counts 2 FLOPs per parameter per token forward, 2 more for the input gradient through every part gradients flow
through, and 2 more for the weight gradient of fully trained parts (LoRA adapters' own FLOPs are ignored); vision
parameters count per patch, language-model parameters per sequence token; attention's quadratic term is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import TrainerCallback

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
    """Qwen2.5-VL-3B/7B's architecture with random weights, built on ``device``."""
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


def part_sizes(model) -> dict[str, int]:
    from mevqa.models.families import family_of
    from mevqa.train.parts import part_of

    family = family_of(model)
    counts = {"vision": 0, "merger": 0, "llm": 0}
    for name, param in model.named_parameters():
        part = part_of(name, family)
        if part and "lora_" not in name and "modules_to_save" not in name:
            counts[part] += param.numel()
    return counts


def flops_of(counts: dict[str, int], batch, cfg) -> float:
    """Training FLOPs of one micro-batch (see the module docstring)."""
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


class RecordingCollator:
    """The recipe's collator, noting what each batch holds (for tokens/s and FLOPs of the timed steps)."""

    def __init__(self, collator):
        self.collator, self.batches = collator, []

    def __call__(self, samples):
        batch = self.collator(samples)
        visual = int(sum((batch[k].prod(-1) // 4).sum() for k in ("image_grid_thw", "video_grid_thw") if k in batch))
        self.batches.append({"batch": {k: batch[k] for k in ("attention_mask", "pixel_values", "pixel_values_videos")
                                       if k in batch}, "samples": int(batch["input_ids"].shape[0]),
                             "tokens": int(batch["attention_mask"].sum()), "visual": visual})
        return batch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["tiny", "3b", "7b"], default="tiny")
    parser.add_argument("--config", type=Path, default=REPO / "recipes/configs/tiny/lora.yaml",
                        help="recipe config whose trainable parts, LoRA and optimizer settings are timed")
    parser.add_argument("--recipe", choices=["lora", "full"], default=None,
                        help="default: lora when a part is set to lora, else full")
    parser.add_argument("--inputs", default=None, help="input mode (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None, help="per-device batch (default: the config's)")
    parser.add_argument("--accumulation", type=int, default=1,
                        help="micro-batches per optimizer step (default 1, so each timed step is one micro-batch)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=448, help="side of the synthetic frames in pixels")
    parser.add_argument("--frames", type=int, default=8, help="frames per synthetic video")
    parser.add_argument("--gradient-checkpointing", choices=["config", "on", "off"], default="config")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak for MFU (default: by GPU name)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from transformers.trainer_utils import SaveStrategy

    from mevqa.models.collate import Collator, QADataset
    from mevqa.models.loading import load_model_and_processor, set_pixel_budgets
    from mevqa.models.tiny import write_tiny_model
    from mevqa.train.parts import apply_full, apply_lora, enable_gradient_checkpointing
    from mevqa.train.run import training_arguments
    from mevqa.train.trainer import MevqaTrainer

    cfg = load_config(args.config)
    if cfg.load_in_4bit:
        raise SystemExit(f"{args.config}: QLoRA needs a quantised checkpoint on disk; this benchmark builds random "
                         "weights (use the config without load_in_4bit)")
    recipe = args.recipe or ("lora" if "lora" in (cfg.vision, cfg.merger, cfg.llm) else "full")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.type == "cuda"
    checkpointing = cfg.gradient_checkpointing if args.gradient_checkpointing == "config" else \
        args.gradient_checkpointing == "on"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(
            cfg, inputs=args.inputs or cfg.inputs, per_device_batch_size=args.batch_size or cfg.per_device_batch_size,
            gradient_accumulation_steps=args.accumulation, max_steps=args.warmup + args.steps, eval_file=None,
            output_dir=str(Path(tmp) / "run"), report_to=["none"], logging_steps=1, seed=args.seed,
            attn_implementation=cfg.attn_implementation if on_gpu else "sdpa",
            mixed_precision=cfg.mixed_precision if on_gpu else "no", gradient_checkpointing=checkpointing)
        torch.manual_seed(args.seed)
        tiny_dir = write_tiny_model(Path(tmp) / "tiny", seed=args.seed)
        dtype = cfg.dtype if (on_gpu or args.model == "tiny") else "float32"
        model, processor = load_model_and_processor(tiny_dir, dtype=dtype, device=device)
        if args.model != "tiny":
            set_pixel_budgets(processor, min_pixels=cfg.min_pixels or 3136, max_pixels=cfg.max_pixels or 200704,
                              video_min_pixels=cfg.video_min_pixels or 3136,
                              video_max_pixels=cfg.video_max_pixels or 50176)
            del model
            model = build_model(args.model, processor, getattr(torch, dtype), device, cfg.attn_implementation)
        if checkpointing:
            enable_gradient_checkpointing(model)
        model.config.use_cache = False
        model = apply_lora(model, cfg) if recipe == "lora" else apply_full(model, cfg)
        counts = part_sizes(model)

        rows = synthetic_rows(Path(tmp) / "clips", n_clips=max(2, math.ceil(cfg.per_device_batch_size / 5) + 1),
                              image_size=args.image_size, n_frames=args.frames, seed=args.seed)
        training_args = training_arguments(cfg, cfg.max_steps, has_eval=False)
        training_args.save_strategy = SaveStrategy.NO
        collator = RecordingCollator(Collator(processor, train=True, max_length=cfg.max_length,
                                              video_fps=cfg.video_fps))
        timer = StepTimer(args.warmup, on_gpu)
        trainer = MevqaTrainer(model=model, args=training_args,
                               train_dataset=QADataset(rows, cfg.inputs, system_prompt=cfg.system_prompt,
                                                       max_frames=cfg.max_frames),
                               data_collator=collator, processing_class=processor, callbacks=[timer], cfg=cfg,
                               eval_rows=None, run_state={})
        trainer.train()
        losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
        if not all(math.isfinite(loss) for loss in losses):
            raise SystemExit(f"loss is not finite: {losses}")

    timed = collator.batches[args.warmup * args.accumulation:]
    elapsed = sum(timer.seconds)
    tokens, samples, visual = (sum(b[key] for b in timed) for key in ("tokens", "samples", "visual"))
    flops = sum(flops_of(counts, b["batch"], cfg) for b in timed)
    n_total = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"model {args.model}, recipe {recipe} ({args.config}), inputs {cfg.inputs}, batch "
          f"{cfg.per_device_batch_size} x {args.accumulation} accumulation, image {args.image_size}px, gradient "
          f"checkpointing {'on' if checkpointing else 'off'}, {training_args.mixed_precision} mixed precision, "
          f"{device.type}" + (f" ({torch.cuda.get_device_name()})" if on_gpu else ""))
    print(f"parameters: {n_total / 1e6:.1f} M, trainable {n_train / 1e6:.2f} M")
    print(f"per sample: {tokens / samples:.0f} tokens ({visual / samples:.0f} visual)")
    print(f"samples/s: {samples / elapsed:.2f}")
    print(f"tokens/s: {tokens / elapsed:.0f} (visual tokens/s: {visual / elapsed:.0f})")
    print(f"step time: median {statistics.median(timer.seconds) * 1000:.1f} ms over {len(timer.seconds)} steps")
    if on_gpu:
        print(f"peak GPU memory: {timer.peak_bytes / 2**30:.2f} GiB")
        peak = args.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items()
                                         if k in torch.cuda.get_device_name()), None)
        if peak:
            print(f"MFU: {flops / elapsed / (peak * 1e12) * 100:.1f}% of {peak:.0f} bf16 TFLOP/s")
        else:
            print("MFU: unknown GPU peak; pass --peak-tflops")
    else:
        print(f"peak process memory (RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


def _sync(on_gpu: bool) -> None:
    if on_gpu:
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Seconds of each optimizer step after ``warmup``, and the peak GPU memory over them."""

    def __init__(self, warmup: int, on_gpu: bool):
        self.warmup, self.on_gpu, self.seconds, self.peak_bytes = warmup, on_gpu, [], 0

    def on_step_begin(self, args, state, control, **kwargs):
        _sync(self.on_gpu)
        if state.global_step == self.warmup and self.on_gpu:
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _sync(self.on_gpu)
        if state.global_step > self.warmup:
            self.seconds.append(time.perf_counter() - self.started)
            if self.on_gpu:
                self.peak_bytes = torch.cuda.max_memory_allocated()


if __name__ == "__main__":
    main()
