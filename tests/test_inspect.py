"""`mevqa inspect`: token counts equal what the processor makes of each row, the resize rule is qwen-vl-utils', and
the activation-memory formula matches the tensors autograd keeps."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText

from mevqa.cli import main
from mevqa.errors import MevqaError
from mevqa.messages import INPUT_MODES
from mevqa.models.collate import QADataset, encode
from mevqa.models.families import family_of
from mevqa.rows import read_rows
from mevqa.train.inspect import (STATE_TERMS, Settings, activation_memory, image_tokens, inspect_files,
                                 inspect_rows, load_processor_and_config, saved_activation_bytes, state_memory, video_tokens)
from conftest import tiny_family
from qa_rows import write_qa_file

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = str(REPO / "recipes" / "configs" / "tiny" / "lora.yaml")


@pytest.fixture(scope="module")
def odd_rows(tmp_path_factory):
    """Two clips whose frames need resizing (333 x 187) and an odd frame count (7)."""
    return write_qa_file(tmp_path_factory.mktemp("odd"), clips=2, size=(333, 187), n_frames=7)


def _settings(tiny_model_dir, *overrides):
    return Settings.from_config(TINY_CONFIG, [f"model_name_or_path={tiny_model_dir}", *overrides])


def test_resize_rule_agrees_with_qwen_vl_utils():
    from qwen_vl_utils import smart_resize as reference
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize as video_smart_resize

    budgets = [(3136, 12544), (56 * 56, 28 * 28 * 1280), (4 * 28 * 28, 16384 * 28 * 28),
               (128 * 28 * 28, 768 * 28 * 28), (3136, 448 * 448)]
    checked = 0
    for low, high in budgets:
        for height in range(28, 1400, 23):
            for width in range(28, 1400, 37):
                if max(height, width) / min(height, width) > 8:
                    continue
                expected = reference(height, width, 28, low, high)
                assert smart_resize(height, width, 28, low, high) == expected, (height, width, low, high)
                assert video_smart_resize(height, width, 28, low, high) == expected
                if expected[0] * expected[1] >= low:
                    tokens = image_tokens(height, width, min_pixels=low, max_pixels=high)
                    assert tokens == (expected[0] // 28) * (expected[1] // 28)
                checked += 1
    assert checked > 5000
    # Outside real images (a side under 28 px) the two differ; inspect follows the processor, which is what runs.
    assert smart_resize(14, 102, 28, 3136, 12544) != reference(14, 102, 28, 3136, 12544)


def test_image_and_video_token_counts():
    # 640 x 480 under the 3B default image budget: 644 x 476 -> 23 x 17 tokens
    assert image_tokens(480, 640, min_pixels=3136, max_pixels=12845056) == 23 * 17
    # capped at 448 * 448 pixels: scaled by sqrt(448^2 / (640 * 480)) and floored to 504 x 364 -> 18 x 13
    assert image_tokens(480, 640, min_pixels=3136, max_pixels=448 * 448) == 18 * 13
    # 7 frames make 4 temporal patches (the last frame repeated)
    assert video_tokens(7, 112, 168, min_pixels=3136, max_pixels=112 * 168) == 4 * 4 * 6
    # Qwen3-VL (32 px factor) budgets the whole video: 8 frames of 448 x 336 under 8 x 448 x 336 px keep their size
    # (14 x 10.5 -> 14 x 10 tokens per temporal patch), under a quarter of that they halve each side
    assert video_tokens(8, 336, 448, min_pixels=4096, max_pixels=8 * 448 * 336, patch_size=16,
                        budget="video") == 4 * 14 * 10
    assert video_tokens(8, 336, 448, min_pixels=4096, max_pixels=2 * 448 * 336, patch_size=16,
                        budget="video") == 4 * 7 * 5
    with pytest.raises(MevqaError, match="aspect ratio"):
        image_tokens(10, 3000, min_pixels=3136, max_pixels=12544)


@pytest.mark.parametrize("mode", list(INPUT_MODES))
def test_token_counts_equal_the_processor_output(tiny_family_dir, odd_rows, mode):
    """For each family, with its own resize factor (28 or 32 px), video budget and Qwen3-VL's timestamp text."""
    rows = read_rows(odd_rows)
    settings = _settings(tiny_family_dir, f"inputs={mode}", "max_frames=3", "min_pixels=1000", "max_pixels=30000")
    processor, model_config = load_processor_and_config(settings)
    report = inspect_rows(rows, processor, model_config, settings, progress=False)
    dataset = QADataset(rows, mode, system_prompt=settings.system_prompt, max_frames=3)
    for i, entry in enumerate(report.rows):
        batch = encode(processor, [dataset[i]], train=True)
        assert entry.total == int(batch["attention_mask"].sum())
        pads = sum(int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids(t)).sum())
                   for t in ("<|image_pad|>", "<|video_pad|>"))
        assert entry.vision[mode] == pads
    # every mode the rows have media for is counted; the video's 7 frames are capped at 3 -> 2 temporal patches
    assert set(report.rows[0].vision) == set(INPUT_MODES)
    assert report.rows[0].vision["video"] % 2 == 0


@pytest.mark.parametrize("n_frames", [1, 3])
def test_token_counts_of_tiny_frames_and_short_videos_equal_the_processor_output(tiny_family_dir, tmp_path,
                                                                                   n_frames):
    """Frames of 20 x 16 px (under one 28 or 32 px visual token: the processor enlarges them to its minimum) and
    videos of 1 frame (shorter than Qwen3-VL's temporal patch) or 3 (odd): counted as the processor encodes them."""
    rows = read_rows(write_qa_file(tmp_path, clips=1, size=(20, 16), n_frames=n_frames))
    for mode in ("video", "oao"):
        settings = _settings(tiny_family_dir, f"inputs={mode}")
        processor, model_config = load_processor_and_config(settings)
        report = inspect_rows(rows, processor, model_config, settings, progress=False)
        dataset = QADataset(rows, mode, system_prompt=settings.system_prompt)
        for i, entry in enumerate(report.rows):
            batch = encode(processor, [dataset[i]], train=True)
            assert entry.total == int(batch["attention_mask"].sum()), (mode, entry.id)
            pads = sum(int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids(t)).sum())
                       for t in ("<|image_pad|>", "<|video_pad|>"))
            assert entry.vision[mode] == pads > 0


def test_report_flags_rows_over_max_length_and_writes_json(tiny_model_dir, odd_rows, tmp_path, capsys):
    report = inspect_files([odd_rows], TINY_CONFIG, model=str(tiny_model_dir), overrides=["max_length=150"],
                           progress=False)
    totals = sorted(r.total for r in report.rows)
    over = [r for r in report.rows if r.total > 150]
    assert over and len(over) < len(report.rows)
    assert [r.id for r in report.over_max_length] == [r.id for r in over]
    assert report.longest.total == totals[-1]
    text = report.format()
    assert f"{len(over)} row(s) over" in text and report.longest.id in text

    out = tmp_path / "report.json"
    code = main(["inspect", "--config", TINY_CONFIG, "--model", str(tiny_model_dir), "--data", str(odd_rows),
                 "--set", "max_length=150", "--json", str(out)])
    assert code == 0
    assert "row(s) over" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["tokens"]["max"] == totals[-1]
    assert data["tokens"]["rows_over_max_length"] == [r.id for r in over]
    assert len(data["rows"]) == 10 and data["activation_memory"]["total_bytes"] > 0
    # the state table: the same numbers as state_memory; the launch options change them
    assert data["state_memory"]["bytes"] == report.state and data["state_memory"]["processes"] == 1
    assert data["state_memory"]["total_with_activations_bytes"] == (
        sum(data["state_memory"]["total_bytes"].values()) + data["activation_memory"]["total_bytes"])
    assert "weights, gradients and AdamW state per process (one process" in text and "come on top;" not in text
    assert main(["inspect", "--config", TINY_CONFIG, "--model", str(tiny_model_dir), "--data", str(odd_rows),
                 "--processes", "4", "--sharding", "zero3", "--json", str(out)]) == 0
    sharded = json.loads(out.read_text())["state_memory"]
    assert sharded["sharding"] == "zero3" and "4 processes, DeepSpeed ZeRO-3" in capsys.readouterr().out
    assert sharded["total_bytes"]["weights"] < data["state_memory"]["total_bytes"]["weights"] / 3


def test_settings_follow_the_training_config(tiny_model_dir):
    settings = _settings(tiny_model_dir, "lora_preset=llm_attention", "per_device_train_batch_size=3")
    assert settings.per_device_train_batch_size == 3
    # the YAML sets vision/merger to lora explicitly, which wins over the preset, as in the recipes
    assert (settings.vision, settings.merger, settings.llm) == ("lora", "lora", "lora")
    assert settings.inputs == "oao" and settings.max_length == 1024
    with pytest.raises(MevqaError, match="unknown config key"):
        Settings.from_config(TINY_CONFIG, ["max_pixel=3"])
    with pytest.raises(MevqaError, match="KEY=VALUE"):
        Settings.from_config(TINY_CONFIG, ["max_pixels"])


def test_unloadable_model_is_a_clear_error(tmp_path, odd_rows, tiny_model_dir):
    with pytest.raises(MevqaError, match="not a model folder"):
        inspect_files([odd_rows], TINY_CONFIG, model=str(tmp_path), progress=False)
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())  # no processor files
    with pytest.raises(MevqaError, match="cannot load the processor and config"):
        inspect_files([odd_rows], TINY_CONFIG, model=str(tmp_path), progress=False)


def layer_formula_and_autograd(model, config, dtype, lora_dropout, batch, modules) -> tuple[float, float]:
    """(formula, measured) bytes per token of the last language layer of ``model`` (built from ``config``): the
    tensors autograd saves with and without that layer, against :func:`activation_memory` on the two configs.
    ``lora_dropout`` None: the layers train fully; else LoRA on ``modules`` with that dropout (a mixture of experts'
    fused parameters among them through PEFT's target_parameters)."""
    from peft import LoraConfig, get_peft_model

    model.config._attn_implementation = "sdpa"
    model.train()
    layers = model.model.language_model.layers
    if lora_dropout is not None:
        fam = family_of(model)
        experts = fam.lora_parameters(modules)
        linear = [name for name in modules if name not in fam.llm_experts]
        target = r".*language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:" + "|".join(linear) + ")"
        target = target if linear else None  # only expert parameters
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=lora_dropout,
                                                 target_modules=target, target_parameters=experts or None))
    ids = torch.randint(0, 600, (batch, 40))
    mask = torch.ones_like(ids)
    mask[0, -6:] = 0 if batch > 1 else 1

    def run():
        model(input_ids=ids, attention_mask=mask, labels=ids)

    both = saved_activation_bytes(model, run)
    last = layers[-1]
    del layers[-1]
    one = saved_activation_bytes(model, run)
    layers.append(last)
    measured = (both - one) / ids.numel()

    settings = Settings.from_config(None, [f"dtype={dtype}", f"per_device_train_batch_size={batch}", "vision=frozen",
                                           "merger=frozen", "llm=full" if lora_dropout is None else "llm=lora",
                                           "lora_r=8", f"lora_dropout={lora_dropout or 0.0}",
                                           "lora_llm_modules=" + ",".join(modules)])
    fewer = copy.deepcopy(config)
    fewer.text_config.num_hidden_layers -= 1
    # the CPU dropout kernel keeps a float32 mask (CUDA's is one byte)
    formula = (activation_memory(ids.numel(), 0, config, settings, mask_bytes=4)["language_model"]
               - activation_memory(ids.numel(), 0, fewer, settings, mask_bytes=4)["language_model"]) / ids.numel()
    return formula, measured


@pytest.mark.parametrize("dtype, lora_dropout, batch", [("float32", None, 1), ("bfloat16", None, 2),
                                                        ("bfloat16", 0.1, 2), ("bfloat16", 0.0, 1)])
def test_language_layer_formula_matches_autograd(tiny_model_dir, dtype, lora_dropout, batch):
    """One language layer's activations, measured as the tensors autograd saves, against the formula."""
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=getattr(torch, dtype))
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    formula, measured = layer_formula_and_autograd(model, AutoConfig.from_pretrained(tiny_model_dir), dtype,
                                                   lora_dropout, batch, modules)
    assert formula == pytest.approx(measured, rel=0.05)


def test_memory_parts_follow_what_trains_and_checkpointing():
    from transformers import Qwen2_5_VLConfig

    arch = json.loads((REPO / "benchmarks" / "qwen2_5_vl_configs.json").read_text())["3b"]
    config = Qwen2_5_VLConfig(text_config=arch["text_config"], vision_config=arch["vision_config"])
    base = ["dtype=bfloat16", "per_device_train_batch_size=1", "llm=lora", "lora_llm_modules=q_proj,k_proj"]
    frozen_vision = activation_memory(800, 2000, config, Settings.from_config(None, base + ["vision=frozen",
                                                                                          "merger=frozen"]))
    assert frozen_vision["vision"] == 0 and frozen_vision["merger"] == 0
    lora_vision = activation_memory(800, 2000, config, Settings.from_config(None, base + ["vision=lora",
                                                                                        "merger=lora"]))
    assert lora_vision["vision"] > 0 and lora_vision["merger"] > 0
    assert lora_vision["language_model"] == frozen_vision["language_model"]
    checkpointed = activation_memory(800, 2000, config, Settings.from_config(
        None, base + ["vision=lora", "merger=lora", "gradient_checkpointing=true"]))
    assert checkpointed["language_model"] < lora_vision["language_model"] / 5
    assert checkpointed["vision"] < lora_vision["vision"] / 5
    assert checkpointed["logits"] == lora_vision["logits"] == 800 * 151936 * (2 + 8)


_ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.mark.parametrize("family_name, dtype, lora_dropout, batch, router_loss, modules", [
    ("qwen3_vl", "float32", None, 1, False, _ATTENTION + ["gate_proj", "up_proj", "down_proj"]),
    ("qwen3_vl", "bfloat16", 0.1, 2, False, _ATTENTION + ["gate_proj", "up_proj", "down_proj"]),
    ("qwen3_vl_moe", "float32", None, 1, False, []), ("qwen3_vl_moe", "bfloat16", None, 2, True, []),
    ("qwen3_vl_moe", "bfloat16", 0.1, 2, False, _ATTENTION), ("qwen3_vl_moe", "bfloat16", 0.0, 1, True, _ATTENTION),
    ("qwen3_vl_moe", "bfloat16", 0.0, 1, False, _ATTENTION + ["gate_up_proj", "down_proj"]),
    ("qwen3_vl_moe", "float32", 0.0, 2, True, ["gate_up_proj", "down_proj"]),
    ("qwen3_vl_moe", "bfloat16", 0.0, 2, True, _ATTENTION + ["gate_up_proj", "down_proj"]),
    ("qwen3_vl_moe", "bfloat16", 0.0, 2, False, ["down_proj"])])
def test_qwen3_layer_formula_matches_autograd(tiny_family_dirs, family_name, dtype, lora_dropout, batch,
                                              router_loss, modules):
    """Qwen3-VL's language layer (q/k norms, query width != hidden width) and Qwen3-VL-MoE's mixture-of-experts
    layer (top-k routing, router softmax, optional load-balancing loss; LoRA on attention, and on the experts' fused
    parameters, whose updated copies are a per-layer constant), measured as the tensors autograd saves, against the
    formula."""
    config = AutoConfig.from_pretrained(tiny_family(tiny_family_dirs, family_name))
    config.text_config.head_dim = 32  # 4 query heads x 32 = 128 wide, the hidden size is 64 (as 4096 vs 2560 in 4B)
    if router_loss:
        config.text_config.output_router_logits = True
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
    formula, measured = layer_formula_and_autograd(model, config, dtype, lora_dropout, batch, modules)
    assert formula == pytest.approx(measured, rel=0.05)


# --- weights, gradients and optimizer state -----------------------------------------------------------------------
TINY_FULL = str(REPO / "recipes" / "configs" / "tiny" / "full.yaml")


def _built(model_dir, recipe: str, *options: str):
    """The parsed config, its inspect settings, the model loaded and wrapped as recipes/<recipe>.py does, and its
    meta-device skeleton."""
    from mevqa.models.families import model_skeleton
    from mevqa.models.loading import load_model_and_processor
    from mevqa.train.config import parse_args
    from mevqa.train.parts import apply_full, apply_lora, quantization_config

    cfg = parse_args(["--config", TINY_CONFIG if recipe == "lora" else TINY_FULL,
                      "--model_name_or_path", str(model_dir), *options])
    settings = Settings(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(Settings)})
    if cfg.load_in_4bit:  # as mevqa.train.run.load_model
        model = AutoModelForImageTextToText.from_pretrained(
            str(model_dir), dtype=torch.bfloat16, quantization_config=quantization_config(cfg),
            device_map={"": "cpu"})
    else:
        model, _ = load_model_and_processor(model_dir, dtype=cfg.dtype, device="cpu")
    model = apply_lora(model, cfg) if recipe == "lora" else apply_full(model, cfg)
    return settings, model, model_skeleton(model_dir)


def _measured_state(model) -> dict[str, dict[str, int]]:
    """Per part: bytes of the parameters (for a 4-bit weight, its packed values and bitsandbytes' quantisation
    constants), of the gradients after one backward, and of AdamW's state after one step (the per-tensor step
    counters left out)."""
    from mevqa.train.parts import part_of

    fam = family_of(model)
    parts: dict[str, dict[str, int]] = {}
    where = {}
    for name, param in model.named_parameters():
        part = part_of(name, fam) or "other"
        where[id(param)] = entry = parts.setdefault(part, {"weights": 0, "gradients": 0, "optimizer": 0})
        entry["weights"] += param.numel() * param.element_size()
        state = getattr(param, "quant_state", None)
        if state is not None:  # nf4 with double quantisation: uint8 absmax, nested float32 absmax, offset
            entry["weights"] += sum(t.numel() * t.element_size() for t in (state.absmax, state.state2.absmax,
                                                                           state.offset))
    trainable = [p for p in model.parameters() if p.requires_grad]
    sum(p.float().sum() for p in trainable).backward()
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    optimizer.step()
    for param in trainable:
        where[id(param)]["gradients"] += param.grad.numel() * param.grad.element_size()
        where[id(param)]["optimizer"] += sum(t.numel() * t.element_size() for key, t in optimizer.state[param].items()
                                             if key != "step")
    return parts


def _estimated(state: dict) -> dict[str, dict[str, int]]:
    return {part: {key: entry[key] for key in STATE_TERMS} for part, entry in state.items()
            if entry["parameters"] or entry["trainable"]}


@pytest.mark.parametrize("family_name, options", [
    ("qwen2_5_vl", []),
    ("qwen3_vl", []),
    ("qwen3_vl_moe", ["--lora_llm_modules", "attention,mlp", "--lora_dropout", "0"]),
])
def test_state_memory_of_lora_is_the_wrapped_models_bytes(tiny_family_dirs, family_name, options):
    """bf16 weights, float32 adapters (PEFT), on Linear layers and on the experts' fused parameters (r E x in+out)."""
    settings, model, skeleton = _built(tiny_family(tiny_family_dirs, family_name), "lora", "--dtype", "bfloat16",
                                       *options)
    state = state_memory(skeleton, settings)
    assert _estimated(state) == _measured_state(model)
    assert state["llm"]["trainable"] == sum(p.numel() for n, p in model.named_parameters()
                                            if p.requires_grad and "language_model" in n)
    if family_name == "qwen3_vl_moe":  # the experts carry adapters: r E (in + out) each
        experts = [p for n, p in model.named_parameters() if "experts" in n and "lora_A" in n]
        assert experts and experts[0].shape[0] == settings.lora_r * 4


def test_state_memory_of_full_parts_and_of_a_full_part_under_lora(tiny_model_dir):
    # full recipe: the trained parts' weights, gradients and AdamW state in the loaded dtype, the frozen one's
    # weights only
    settings, model, skeleton = _built(tiny_model_dir, "full", "--dtype", "bfloat16", "--vision", "frozen")
    state = state_memory(skeleton, settings)
    assert _estimated(state) == _measured_state(model)
    assert state["vision"]["gradients"] == 0 and state["llm"]["optimizer"] == 2 * state["llm"]["weights"]
    # LoRA recipe, merger full: PEFT's modules_to_save keeps the original and a trainable copy
    settings, model, skeleton = _built(tiny_model_dir, "lora", "--dtype", "bfloat16", "--merger", "full",
                                       "--vision", "frozen")
    state = state_memory(skeleton, settings)
    assert _estimated(state) == _measured_state(model)
    assert state["merger"]["weights"] == 2 * state["merger"]["gradients"]


def test_state_memory_of_qlora_counts_nf4_and_the_float32_cast(tiny_model_dir):
    pytest.importorskip("bitsandbytes")
    settings, model, skeleton = _built(tiny_model_dir, "lora", "--load_in_4bit", "true", "--vision", "frozen",
                                       "--merger", "frozen", "--llm", "lora")
    state = state_memory(skeleton, settings)
    assert _estimated(state) == _measured_state(model)
    # prepare_model_for_kbit_training: the unquantised vision tower is float32
    assert state["vision"]["weights"] == 4 * state["vision"]["parameters"]


def test_state_memory_sharding_rules(tiny_model_dir):
    from mevqa.models.families import model_skeleton

    skeleton = model_skeleton(tiny_model_dir)
    full = Settings.from_config(TINY_FULL, [f"model_name_or_path={tiny_model_dir}", "dtype=bfloat16", "bf16=true"])

    def total(settings, **launch):
        state = state_memory(skeleton, settings, **launch)
        return {key: sum(entry[key] for entry in state.values()) for key in ("parameters", "trainable",
                                                                              *STATE_TERMS)}

    one = total(full)
    n = one["parameters"]
    assert one["trainable"] == n and (one["weights"], one["gradients"], one["optimizer"]) == (2 * n, 2 * n, 4 * n)
    # DDP: every process holds everything, and the reducer's buckets a second copy of the gradients
    assert total(full, processes=4) == {**one, "gradients": 4 * n}
    # DeepSpeed, mixed precision: 2 + 2 + 12 bytes per parameter (16-bit weights and gradients; float32 master
    # weights, exp_avg, exp_avg_sq); ZeRO-2 shards gradients and optimizer state, ZeRO-3 the weights too
    zero3_one = total(full, sharding="zero3")
    assert (zero3_one["weights"], zero3_one["gradients"], zero3_one["optimizer"]) == (2 * n, 2 * n, 12 * n)
    zero3 = total(full, processes=4, sharding="zero3")
    assert all(zero3[key] == math.ceil(zero3_one[key] / 4) for key in STATE_TERMS)
    zero2 = total(full, processes=4, sharding="zero2")
    assert zero2["weights"] == 2 * n and zero2["gradients"] == zero3["gradients"]
    assert zero2["optimizer"] == zero3["optimizer"]
    # FSDP: everything sharded, the trainable flat parameters upcast to float32 (accelerate, mixed precision)
    fsdp = total(full, processes=4, sharding="fsdp")
    assert (fsdp["weights"], fsdp["gradients"], fsdp["optimizer"]) == (n, n, 2 * n)
    qlora = Settings.from_config(TINY_CONFIG, [f"model_name_or_path={tiny_model_dir}", "load_in_4bit=true"])
    with pytest.raises(MevqaError, match="one model copy per process"):
        state_memory(skeleton, qlora, processes=2, sharding="zero2")
