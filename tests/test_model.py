"""Model loading (dtype, device, adapters, clear errors), part lookup by name, pixel budgets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image
from safetensors.torch import load_file, save_file

from mevqa.errors import MevqaError
from mevqa.models.collate import QADataset, encode
from mevqa.models.families import FAMILIES, family, family_of_source
from mevqa.models.loading import load_model_and_processor, model_parts, part_of, resolve_dtype, set_pixel_budgets
from mevqa.rows import read_rows
from conftest import TINY_FAMILIES, tiny_family
from qa_rows import write_qa_file



@pytest.fixture(scope="module")
def batch(tiny, tmp_path_factory):
    rows = read_rows(write_qa_file(tmp_path_factory.mktemp("qa"), clips=1))
    return encode(tiny[1], [QADataset(rows, "oao")[i] for i in (0, 1)], train=True)


def test_loads_on_cpu_in_float32_for_auto(tiny):
    model, processor = tiny
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32 and next(model.parameters()).device.type == "cpu"
    assert model.config._attn_implementation == "sdpa"
    assert processor.tokenizer.padding_side == "left"


def test_resolve_dtype():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16") == resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype(torch.float16) == torch.float16
    with pytest.raises(MevqaError, match="unknown dtype 'int8'"):
        resolve_dtype("int8")


def test_loads_in_the_asked_dtype(tiny_model_dir):
    model, _ = load_model_and_processor(tiny_model_dir, dtype="bfloat16", attn_implementation="eager")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "eager"


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(MevqaError, match=r"no-such-model: model folder does not exist"):
        load_model_and_processor(str(tmp_path / "no-such-model"))
    with pytest.raises(MevqaError, match=r"not a model folder \(no config.json\)"):
        load_model_and_processor(tmp_path)
    # conftest sets HF_HUB_OFFLINE=1: a hub id that is not cached cannot be fetched.
    with pytest.raises(MevqaError, match=r"nobody/not-a-model: not a local folder and not in the Hugging Face cache"):
        load_model_and_processor("nobody/not-a-model")


def test_model_parts_plain_and_peft_wrapped(tiny_model_dir):
    model, _ = load_model_and_processor(tiny_model_dir)
    parts = model_parts(model)
    assert parts.vision is model.model.visual
    assert parts.merger is model.model.visual.merger
    assert parts.language_model is model.model.language_model
    assert parts.lm_head is model.lm_head
    assert parts.names == {"vision": "model.visual", "merger": "model.visual.merger",
                           "language_model": "model.language_model", "lm_head": "lm_head"}
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "qkv"],
                                                  modules_to_save=["lm_head"]))
    wrapped = model_parts(peft_model)
    assert wrapped.vision is parts.vision and wrapped.merger is parts.merger
    assert wrapped.language_model is parts.language_model
    assert wrapped.names["vision"] == "base_model.model.model.visual"
    assert wrapped.names["lm_head"] == "base_model.model.lm_head"
    assert type(wrapped.lm_head).__name__ == "ModulesToSaveWrapper"     # trained in full under LoRA
    assert wrapped.lm_head.original_module is parts.lm_head
    with pytest.raises(MevqaError, match="model_type None is not supported; mevqa supports qwen2_vl, qwen2_5_vl"):
        model_parts(torch.nn.Linear(2, 2))


# Where each parameter of each family belongs, by its module path (the family table's facts, checked on the real
# classes): every parameter has exactly one part; Qwen3-VL's DeepStack mergers and position table are placed.
EXPECTED_PARTS = {
    "model.visual.patch_embed.": "vision", "model.visual.pos_embed.": "vision", "model.visual.blocks.": "vision",
    "model.visual.merger.": "merger", "model.visual.deepstack_merger_list.": "merger",
    "model.language_model.": "language_model", "lm_head.": "lm_head",
}


def expected_part(name: str) -> str:
    [part] = [part for prefix, part in EXPECTED_PARTS.items() if name.startswith(prefix)]
    return part


@pytest.mark.parametrize("family_name", (*TINY_FAMILIES, "qwen3_vl_moe"))
def test_every_parameter_of_each_family_has_its_part(family_name, tiny_family_dirs):
    model_dir = tiny_family(tiny_family_dirs, family_name)
    model, _ = load_model_and_processor(model_dir, device="cpu")
    fam = family_of_source(model_dir)
    assert fam.model_type == model.config.model_type == family_name
    names = [name for name, _ in model.named_parameters()]
    assert {name: part_of(name, fam) for name in names} == {name: expected_part(name) for name in names}
    assert {part_of(name, fam) for name in names} == {"vision", "merger", "language_model", "lm_head"}
    deepstack = [name for name in names if ".deepstack_merger_list." in name]
    assert bool(deepstack) == (fam.model_type in ("qwen3_vl", "qwen3_vl_moe"))
    # Qwen3-VL-MoE: the experts are fused 3-D parameters of the language model, with no Linear layer to adapt.
    experts = {name: param for name, param in model.named_parameters() if ".mlp.experts." in name}
    assert bool(experts) == (fam.model_type == "qwen3_vl_moe")
    assert all(param.ndim == 3 and part_of(name, fam) == "language_model" for name, param in experts.items())
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "qkv"], modules_to_save=["lm_head"]))
    for name, _ in peft_model.named_parameters():
        bare = name.removeprefix("base_model.model.").replace(".modules_to_save.default", "") \
            .replace(".original_module", "")
        bare = bare.replace(".lora_A.default", "").replace(".lora_B.default", "").replace(".base_layer", "")
        assert part_of(name, fam) == expected_part(bare), name
    assert part_of("model.visual_extra.weight", fam) is None


@pytest.mark.parametrize("family_name", sorted(FAMILIES))
def test_the_family_table_names_the_real_modules(family_name, tiny_family_dirs):
    """Every module path and LoRA layer name of each family's table entry, checked on the real class (the tiny model
    built from its config.json on the meta device)."""
    from mevqa.models.families import model_skeleton

    fam = FAMILIES[family_name]
    skeleton = model_skeleton(tiny_family(tiny_family_dirs, family_name))
    modules = dict(skeleton.named_modules())
    linear = {name for name, module in modules.items() if isinstance(module, torch.nn.Linear)}
    for part in ("vision", "merger", "language_model", "lm_head"):
        assert all(path in modules for path in fam.part_modules(part)), part
    for blocks, roles in ((fam.vision_blocks, fam.vision_lora), (fam.language_layers, fam.llm_lora)):
        for role, names in roles.items():
            assert all(any(name.startswith(blocks) and name.endswith(f".{n}") for name in linear) for n in names)
    # Every role names something LoRA can adapt: Linear layers, or a mixture of experts' fused parameters.
    assert all(fam.lora_roles("vision").values()) and all(fam.lora_roles("llm").values())
    parameters = [name for name, _ in skeleton.named_parameters()]
    for suffix in fam.lora_parameters(fam.llm_experts):
        assert sum(name.startswith(fam.language_layers) and name.endswith(f".{suffix}") for name in parameters) == \
            skeleton.config.text_config.num_hidden_layers, suffix
    for regex in fam.merger_lora:
        assert any(re.fullmatch(regex, name) for name in linear), regex
    assert fam.resize_factor(skeleton.config) == fam.resize_factor_released  # the tiny models keep the patch size
    assert (fam.llm_lora["mlp"] == ()) == bool(fam.llm_experts) == any(".mlp.experts" in name for name in modules)


def test_an_unsupported_model_type_is_one_line_before_any_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", "architectures": ["X"]}))
    (tmp_path / "model.safetensors").write_bytes(b"not read")
    expected = (r"config.json: model_type 'llava' is not supported; mevqa supports qwen2_vl, qwen2_5_vl, qwen3_vl, "
                r"qwen3_vl_moe \(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3-VL-MoE\)$")
    with pytest.raises(MevqaError, match=expected):
        load_model_and_processor(tmp_path)
    # The recipes (before the output folder is touched) and mevqa cv (before any run) say the same.
    from mevqa.experiments import cv
    from mevqa.train.run import main
    from qa_rows import write_qa_file

    train = write_qa_file(tmp_path / "data", clips=1)
    with pytest.raises(MevqaError, match=expected):
        main("lora", ["--config", "recipes/configs/tiny/lora.yaml", "--model_name_or_path", str(tmp_path),
                      "--train_file", str(train), "--output_dir", str(tmp_path / "out"), "--report_to", "none"])
    assert not (tmp_path / "out" / "train_config.yaml").exists()
    with pytest.raises(MevqaError, match=expected):
        cv.resolve_config(Path("recipes/configs/tiny/lora.yaml"), ["--model_name_or_path", str(tmp_path)]).family
    with pytest.raises(MevqaError, match="is not supported"):
        family("qwen2_audio")
    assert set(FAMILIES) == {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"}


def test_pixel_budgets_set_image_and_video_processors(tiny_model_dir):
    _, processor = load_model_and_processor(tiny_model_dir, min_pixels=28 * 28, max_pixels=56 * 56,
                                            video_max_pixels=84 * 84, max_frames=16)
    assert processor.image_processor.size == {"shortest_edge": 784, "longest_edge": 3136}
    assert processor.video_processor.size["longest_edge"] == 84 * 84
    assert processor.video_processor.max_frames == 16
    image = Image.fromarray(np.zeros((200, 300, 3), dtype=np.uint8))
    grid = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
    assert grid[1] * grid[2] * 14 * 14 <= 56 * 56
    set_pixel_budgets(processor, max_pixels=112 * 112)          # None keeps the other bound
    assert processor.image_processor.size == {"shortest_edge": 784, "longest_edge": 12544}
    with pytest.raises(MevqaError, match="0 < min_pixels <= max_pixels"):
        set_pixel_budgets(processor, min_pixels=10_000, max_pixels=100)


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter on the vision tower and the language model, with non-zero (trained-like) weights."""
    model, _ = load_model_and_processor(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "qkv"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def test_adapter_loads_and_changes_the_output(tiny, tiny_model_dir, adapter_dir, batch):
    base, _ = tiny
    adapted, _ = load_model_and_processor(tiny_model_dir, adapter=adapter_dir)
    assert type(adapted).__name__ == "PeftModel" and not adapted.training
    with torch.no_grad():
        base_logits = base(**batch).logits
        adapted_logits = adapted(**batch).logits
        merged_logits = adapted.merge_and_unload()(**batch).logits
    assert not torch.allclose(base_logits, adapted_logits, atol=1e-4)
    assert torch.allclose(adapted_logits, merged_logits, atol=1e-5)


def test_adapter_that_does_not_fit_is_a_clear_error(tiny_model_dir, adapter_dir, tmp_path):
    with pytest.raises(MevqaError, match="adapter folder does not exist"):
        load_model_and_processor(tiny_model_dir, adapter=tmp_path / "missing")
    with pytest.raises(MevqaError, match="not a PEFT adapter folder"):
        load_model_and_processor(tiny_model_dir, adapter=tmp_path)
    # A damaged adapter_config.json: malformed JSON, or not UTF-8.
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "adapter_config.json").write_text('{"r": 8,')
    with pytest.raises(MevqaError, match=r"damaged/adapter_config\.json: malformed JSON"):
        load_model_and_processor(tiny_model_dir, adapter=damaged)
    (damaged / "adapter_config.json").write_bytes('{"note": "gr\u00f6\u00dfer"}'.encode("latin-1"))
    with pytest.raises(MevqaError, match=r"adapter_config\.json: not UTF-8 text \(byte 0xf6\)"):
        load_model_and_processor(tiny_model_dir, adapter=damaged)
    # Target modules another architecture has.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    (foreign / "adapter_config.json").write_text(json.dumps(dict(config, target_modules=["c_attn", "q_proj"])))
    with pytest.raises(MevqaError, match=r"adapter target modules \['c_attn'\] are not in the base model"):
        load_model_and_processor(tiny_model_dir, adapter=foreign)
    # Same names, other shapes (an adapter trained on a bigger base).
    wider = tmp_path / "wider"
    wider.mkdir()
    (wider / "adapter_config.json").write_text((adapter_dir / "adapter_config.json").read_text())
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    save_file({k: torch.zeros(v.shape[0], v.shape[1] * 2) if "lora_A" in k else v for k, v in weights.items()},
              wider / "adapter_model.safetensors")
    with pytest.raises(MevqaError, match="adapter weights do not fit the base model"):
        load_model_and_processor(tiny_model_dir, adapter=wider)


@pytest.mark.gpu
def test_auto_dtype_on_cuda_is_bfloat16_and_generation_runs(tiny_model_dir, batch):
    from mevqa.answering.generation import generate_answers

    model, processor = load_model_and_processor(tiny_model_dir)
    assert next(model.parameters()).device.type == "cuda"
    assert next(model.parameters()).dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    with torch.no_grad():
        loss = model(**{key: value.to("cuda") for key, value in batch.items()}).loss
    assert torch.isfinite(loss)
    rows = read_rows(write_qa_file(tiny_model_dir.parent / "gpu-qa", clips=1))
    answers = generate_answers(model, processor, rows, "video", batch_size=4, max_new_tokens=4)
    assert len(answers) == len(rows)


def test_an_adapter_that_does_not_fit_is_refused_before_the_base_weights_load(tiny_model_dir, adapter_dir, tmp_path):
    """Checked on the base built from config.json on the meta device: the base here has no weights at all, so
    reaching them would fail with another message."""
    import shutil

    base = tmp_path / "weightless-base"
    shutil.copytree(tiny_model_dir, base, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    for key, value, message in (("target_modules", ["c_attn", "q_proj"], r"target modules \['c_attn'\]"),
                                ("modules_to_save", ["score"], r"modules_to_save \['score'\]")):
        foreign = tmp_path / key
        foreign.mkdir()
        (foreign / "adapter_config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(MevqaError, match=message + " are not in the base model"):
            load_model_and_processor(base, adapter=foreign)
    with pytest.raises(MevqaError, match="weightless-base: cannot load model"):  # the fitting adapter passes
        load_model_and_processor(base, adapter=adapter_dir)
