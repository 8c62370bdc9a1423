"""Training pieces in process: which modules get LoRA, what trains fully, learning rates per part, the data order
across processes and resumes, and the token-normalised loss over gradient accumulation."""

from __future__ import annotations

import importlib.util
import math
import re

import pytest
import torch

from mevqa.errors import MevqaError
from mevqa.models.families import FAMILIES, family_of
from mevqa.train import data as train_data
from mevqa.train.config import parse_args
from mevqa.train.parts import (apply_full, apply_lora, check_parts, lora_target_parameters, lora_target_regex,
                               param_groups)
from mevqa.train.parts import part_of as family_part_of

QWEN2_5_VL = FAMILIES["qwen2_5_vl"]
# Each family's merger-part Linear layers in the tiny models (Qwen3-VL: one DeepStack merger beside the main one).
MERGER_LINEARS = {
    "qwen2_vl": {"model.visual.merger.mlp.0", "model.visual.merger.mlp.2"},
    "qwen2_5_vl": {"model.visual.merger.mlp.0", "model.visual.merger.mlp.2"},
    "qwen3_vl": {"model.visual.merger.linear_fc1", "model.visual.merger.linear_fc2",
                 "model.visual.deepstack_merger_list.0.linear_fc1", "model.visual.deepstack_merger_list.0.linear_fc2"},
}


@pytest.fixture
def base(tiny_model_dir):
    from mevqa.models.loading import load_model_and_processor

    model, _ = load_model_and_processor(tiny_model_dir, dtype="float32", device="cpu")
    return model


@pytest.fixture
def family_base(tiny_family_dir):
    """The tiny model of each family in turn, float32 on the CPU."""
    from mevqa.models.loading import load_model_and_processor

    model, _ = load_model_and_processor(tiny_family_dir, dtype="float32", device="cpu")
    return model


def part_of(name, model):
    return family_part_of(name, family_of(model))


def lora_modules(model) -> set[str]:
    return {name.removeprefix("base_model.model.") for name, module in model.named_modules()
            if hasattr(module, "lora_A") and len(module.lora_A)}


def test_baseline_preset_puts_lora_on_vision_blocks_merger_and_llm_q_k(family_base):
    cfg = parse_args(["--vision", "lora", "--merger", "lora", "--llm", "lora", "--lora_llm_modules", "q_proj,k_proj",
                      "--lora_vision_modules", "qkv,proj"])
    merger = MERGER_LINEARS[family_base.config.model_type]
    model = apply_lora(family_base, cfg)
    expected = {f"model.visual.blocks.{i}.attn.{m}" for i in range(2) for m in ("qkv", "proj")}
    expected |= merger
    expected |= {f"model.language_model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "k_proj")}
    assert lora_modules(model) == expected
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_vision_mlp_role_names_each_family_s_own_layers(family_base):
    mlp = {"qwen2_vl": {"fc1", "fc2"}, "qwen2_5_vl": {"gate_proj", "up_proj", "down_proj"},
           "qwen3_vl": {"linear_fc1", "linear_fc2"}}[family_base.config.model_type]
    model = apply_lora(family_base, parse_args(["--vision", "lora", "--llm", "frozen", "--lora_vision_modules",
                                                "mlp"]))
    assert lora_modules(model) == {f"model.visual.blocks.{i}.mlp.{m}" for i in range(2) for m in mlp}


def test_a_layer_name_the_family_lacks_is_one_line():
    cfg = parse_args(["--vision", "lora", "--lora_vision_modules", "qkv,gate_proj"])
    with pytest.raises(MevqaError, match="lora_vision_modules names 'gate_proj', which Qwen3-VL \\(qwen3_vl\\) does "
                                         "not have; expected some of qkv, proj, linear_fc1, linear_fc2"):
        lora_target_regex(cfg, FAMILIES["qwen3_vl"])
    assert lora_target_regex(cfg, QWEN2_5_VL)


def test_lora_llm_with_fully_trained_vision_and_merger(family_base):
    cfg = parse_args(["--vision", "full", "--merger", "full", "--llm", "lora"])
    model = apply_lora(family_base, cfg)
    assert all(name.startswith("model.language_model.layers.") for name in lora_modules(model))
    saved = {name.split(".modules_to_save.")[0].removeprefix("base_model.model.")
             for name, p in model.named_parameters() if p.requires_grad and ".modules_to_save." in name}
    mergers = {"model.visual.merger"} | ({"model.visual.deepstack_merger_list.0"}
                                         if family_base.config.model_type == "qwen3_vl" else set())
    assert mergers <= saved
    for name, param in model.named_parameters():
        part = part_of(name, model)
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
                                          "--lora_vision_modules", "gate_proj"]), QWEN2_5_VL)
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


def test_frozen_merger_freezes_the_deepstack_mergers_too(family_base):
    model = apply_full(family_base, parse_args(["--vision", "full", "--merger", "frozen", "--llm", "frozen"]))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("model.visual.blocks.", "model.visual.patch_embed.",
                                              "model.visual.pos_embed.")) for name in trainable)
    assert not any("merger" in name for name in trainable)


def test_full_freezes_exactly_the_frozen_parts_and_groups_learning_rates(family_base):
    cfg = parse_args(["--vision", "frozen", "--merger", "full", "--llm", "full", "--learning_rate", "1e-5",
                      "--lr_merger", "1e-4", "--weight_decay", "0.1"])
    model = apply_full(family_base, cfg)
    for name, param in model.named_parameters():
        assert param.requires_grad == (part_of(name, model) != "vision"), name
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


def test_run_order_is_what_accelerate_deals_each_process_and_resumes_exactly():
    """RunOrder through a DataLoader batch sampler, sharded by accelerate as Trainer's dataloader is: each process's
    batches are rank_indices' rows, the order only grows when the run gets longer, and skipping k steps of batches
    gives the rows from step k on."""
    from accelerate.data_loader import BatchSamplerShard

    n_rows, world, batch, accumulation, total = 13, 2, 2, 3, 7
    step_size = world * batch * accumulation
    order = train_data.RunOrder(n_rows, seed=5, step_size=step_size, total_steps=total)
    indices = list(order)
    assert len(indices) == len(order) == total * step_size
    per_epoch = train_data.steps_per_epoch(n_rows, world, batch, accumulation)
    epochs = [train_data.epoch_order(n_rows, 5, e, per_epoch, step_size) for e in range(math.ceil(total / per_epoch))]
    assert indices == [i for epoch in epochs for i in epoch][:total * step_size]
    assert list(train_data.RunOrder(n_rows, seed=5, step_size=step_size, total_steps=total + 3))[:len(indices)] \
        == indices
    sampler = torch.utils.data.BatchSampler(order, batch_size=batch, drop_last=False)
    for rank in range(world):
        dealt = [i for b in BatchSamplerShard(sampler, num_processes=world, process_index=rank) for i in b]
        first_epoch = dealt[:per_epoch * batch * accumulation]
        assert first_epoch == train_data.rank_indices(epochs[0], rank=rank, world_size=world, batch_size=batch,
                                                      accumulation=accumulation)
        resumed = train_data.rank_indices(epochs[0], rank=rank, world_size=world, batch_size=batch,
                                          accumulation=accumulation, start_step=1)
        assert first_epoch[batch * accumulation:] == resumed


def test_token_normalised_accumulation_gives_the_full_batch_gradient(family_base, tiny_family_dir, tmp_path):
    """Two micro-batches with different answer lengths, each given the answer tokens of both (Trainer's
    num_items_in_batch), give the gradient of the whole batch's mean token loss (a per-micro-batch mean would
    over-weight the short answers)."""
    from mevqa.models.collate import Collator, QADataset
    from mevqa.models.loading import load_model_and_processor
    from mevqa.train.trainer import answer_token_loss
    from qa_rows import write_clip

    base = family_base
    _, processor = load_model_and_processor(tiny_family_dir, dtype="float32", device="cpu")
    media = write_clip(tmp_path, "clip")
    answers = ["positive", "The action units present are: brow lowerer, lip pressor. Therefore, the fine-grained "
               "expression class is disgust, and the coarse expression class is negative.", "negative", "surprise"]
    rows = [{"id": f"samm_{i}", "question": "What is the coarse expression class?", "answer": a,
             "media": media} for i, a in enumerate(answers)]
    from mevqa.rows import resolve_media

    rows = [resolve_media(row, tmp_path, "test") for row in rows]
    dataset = QADataset(rows, "oao")
    collate = Collator(processor, train=True)
    whole = collate([dataset[i] for i in range(4)])
    micro = [collate([dataset[0], dataset[1]]), collate([dataset[2], dataset[3]])]

    def grads(loss_fn):
        base.zero_grad()
        loss_fn()
        return torch.cat([p.grad.flatten() for p in base.parameters() if p.grad is not None])

    def loss(batch, items):
        inputs = dict(batch)
        labels = inputs.pop("labels")
        return answer_token_loss(base(**inputs), labels, items)

    expected = grads(lambda: base(**whole).loss.backward())
    total = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
    got = grads(lambda: [loss(b, total).backward() for b in micro])
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4)
    naive = grads(lambda: [(base(**b).loss / 2).backward() for b in micro])
    assert not torch.allclose(naive, expected, atol=1e-6, rtol=1e-4)


def test_a_best_metric_the_validation_file_cannot_give_fails_before_training():
    from mevqa import vocab
    from mevqa.train.run import check_metric_available

    coarse_only = [{"question": vocab.Q_COARSE, "answer": "positive"}]
    check_metric_available(parse_args(["--metric_for_best_model", "uf1_coarse"]), coarse_only)
    with pytest.raises(MevqaError, match="metric_for_best_model=avg needs fine expression questions"):
        check_metric_available(parse_args(["--eval_file", "val.jsonl"]), coarse_only)


def test_missing_data_files_fail_before_the_model_is_loaded(tmp_path):
    from mevqa.train.run import main

    absent = str(tmp_path / "no-such-model")  # never reached: loading it would fail with another message
    base = ["--model_name_or_path", absent, "--output_dir", str(tmp_path / "out")]
    with pytest.raises(MevqaError, match="config: train_file is required"):
        main("lora", base)
    with pytest.raises(MevqaError, match=r"train\.jsonl: file not found"):
        main("lora", [*base, "--train_file", str(tmp_path / "train.jsonl")])
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(MevqaError, match=r"train\.jsonl: the training file has no rows"):
        main("lora", [*base, "--train_file", str(tmp_path / "train.jsonl")])


def test_qlora_leaves_the_vision_tower_and_merger_unquantised(tiny_family_dir):
    """transformers 5.x matches llm_int8_skip_modules from the start of the module name: "model.visual" keeps the
    whole tower (merger and DeepStack mergers included) in bf16, where a bare "visual" quantised all of it."""
    bnb = pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForImageTextToText

    from mevqa.train.parts import apply_lora, quantization_config

    cfg = parse_args(["--load_in_4bit", "true", "--lora_preset", "llm_lora_full_vision",
                      "--model_name_or_path", str(tiny_family_dir)])
    model = AutoModelForImageTextToText.from_pretrained(tiny_family_dir, dtype=torch.bfloat16,
                                                        quantization_config=quantization_config(cfg),
                                                        device_map={"": "cpu"})
    quantised = [name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert quantised and all(name.startswith("model.language_model.layers.") for name in quantised)
    assert {name.rsplit(".", 1)[-1] for name in quantised} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                              "up_proj", "down_proj"}
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    model = apply_lora(model, cfg)
    trainable = {part_of(name, model) for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"vision", "merger", "llm"}
    assert all(p.dtype == torch.float32 for name, p in model.named_parameters()
               if p.requires_grad and part_of(name, model) in ("vision", "merger"))
    assert not any(isinstance(module, bnb.nn.Linear4bit) for name, module in model.named_modules()
                   if ".visual." in name)


def test_a_resume_removes_what_a_killed_save_of_final_or_best_left(tmp_path):
    """The trainer writes best/ and final/ into .<name>.tmp and puts them in place with mevqa.runfolder.replace_folder;
    a kill part-way leaves the .tmp folder or the old folder set aside (.<name>.<pid>-*.old); the next launch
    removes both and keeps the finished folders and checkpoints."""
    from mevqa.train.run import clear_previous_run

    out = tmp_path / "run"
    (out / "best").mkdir(parents=True)
    (out / "best" / "adapter_model.safetensors").write_text("kept")
    (out / ".best.tmp").mkdir()
    (out / ".final.tmp").mkdir()
    (out / ".best.4194305-x1y2.old").mkdir()  # above any pid_max: its writer is gone
    for step in (2, 4):
        (out / f"checkpoint-{step}").mkdir()
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (out / "checkpoint-2" / "run_state.json").write_text("{}")
    clear_previous_run(out, keep=out / "checkpoint-2")
    assert sorted(p.name for p in out.iterdir()) == ["best", "checkpoint-2"]   # checkpoint-4 had no run_state.json
    assert (out / "best" / "adapter_model.safetensors").read_text() == "kept"


def _weightless_copy(model_dir, out, **vision_config):
    """The model folder without its weights (config and processor files only), its vision config edited: a run
    that reaches the weights fails there with another message."""
    import json
    import shutil

    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((out / "config.json").read_text())
    config["vision_config"].update(vision_config)
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_a_pattern_that_matches_nothing_fails_before_the_weights_load(tiny_family_dir, tmp_path):
    from mevqa.models.families import family_of_source
    from mevqa.train.run import main
    from qa_rows import write_qa_file

    fam = family_of_source(tiny_family_dir)
    train = write_qa_file(tmp_path / "data", clips=2)
    no_blocks = _weightless_copy(tiny_family_dir, tmp_path / "no-vision-blocks", depth=0)
    intact = _weightless_copy(tiny_family_dir, tmp_path / "intact")

    def run(model, *extra):
        main("lora", ["--config", "recipes/configs/tiny/lora.yaml", "--model_name_or_path", str(model),
                      "--train_file", str(train), "--output_dir", str(tmp_path / "out"), "--report_to", "none",
                      *extra])

    where = rf"config: {re.escape(fam.name)} \({fam.model_type}\) at .*no-vision-blocks: "
    # A config whose vision tower has no blocks: the vision part's LoRA targets match nothing.
    with pytest.raises(MevqaError, match=where + r"the vision LoRA targets '\.\*model\\\.visual\\\.blocks.*' "
                                               r"match no Linear layer of the model \(built from its config\.json\)"):
        run(no_blocks, "--merger", "frozen", "--llm", "frozen")
    with pytest.raises(MevqaError, match=r"the lora_target_regex LoRA targets '\.\*visual\\\.nothing' match no"):
        run(no_blocks, "--lora_target_regex", r".*visual\.nothing")
    # A layer name the family does not have, before any weights too (it used to surface in PEFT after loading).
    other = "gate_proj" if fam.model_type == "qwen3_vl" else "linear_fc1"
    with pytest.raises(MevqaError, match=f"lora_vision_modules names '{other}', which {re.escape(fam.name)}"):
        run(intact, "--lora_vision_modules", other)
    # The same launch on the intact config passes the check and fails only where the weights load.
    with pytest.raises(MevqaError, match=r"intact: cannot load model"):
        run(intact)


def test_moe_role_mlp_is_the_experts_fused_parameters():
    """On a mixture of experts the role ``mlp`` names the experts' fused parameters (PEFT target_parameters), not a
    Linear-layer regex; attention stays a regex."""
    moe = FAMILIES["qwen3_vl_moe"]
    assert moe.lora_names("llm", ["attention", "mlp"]) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj",
                                                            "down_proj"]
    cfg = parse_args(["--vision", "frozen", "--merger", "frozen", "--llm", "lora", "--lora_llm_modules",
                      "q_proj,down_proj", "--lora_dropout", "0"])
    assert lora_target_parameters(cfg, moe) == ["mlp.experts.down_proj"]
    assert lora_target_regex(cfg, moe) == r"(?:.*model\.language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:q_proj))"
    only_experts = parse_args(["--vision", "frozen", "--merger", "frozen", "--llm", "lora", "--lora_llm_modules", "mlp",
                               "--lora_dropout", "0"])
    assert lora_target_regex(only_experts, moe) is None
    assert lora_target_parameters(only_experts, moe) == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    check_parts(only_experts, "lora", moe)
    # A dense family's mlp is Linear layers; no target parameters.
    assert lora_target_parameters(cfg, FAMILIES["qwen3_vl"]) == []
    with pytest.raises(MevqaError, match=r"use_dora false .*got lora_dropout 0, use_dora true$"):
        check_parts(parse_args(["--llm", "lora", "--lora_llm_modules", "mlp", "--lora_dropout", "0", "--use_dora",
                                "true"]), "lora", moe)
    # bitsandbytes would leave the experts unquantised (and QLoRA's preparation cast them to float32).
    with pytest.raises(MevqaError, match=r"load_in_4bit \(QLoRA\) on Qwen3-VL-MoE quantises only its Linear layers"):
        check_parts(parse_args(["--llm", "lora", "--lora_llm_modules", "attention", "--load_in_4bit", "true"]),
                    "lora", moe)


@pytest.mark.e2e
@pytest.mark.parametrize("family", ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"))
def test_each_recipe_mode_trains_what_it_names_on_each_family(family, tiny_family_dirs, tmp_path):
    """Through the recipes' entry point, in process, one step each: LoRA on each part alone, a full fine-tune of one
    part, and QLoRA (4-bit language model, CPU bitsandbytes); each trains that part and nothing else."""
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from conftest import tiny_family
    from mevqa.train.parts import PARTS
    from mevqa.train.run import main
    from qa_rows import write_qa_file

    model_dir = tiny_family(tiny_family_dirs, family)
    fam = FAMILIES[family]
    train = write_qa_file(tmp_path / "data", clips=2)

    def run(name, recipe, *extra):
        out = tmp_path / name
        assert main(recipe, ["--config", f"recipes/configs/tiny/{recipe}.yaml", "--model_name_or_path",
                             str(model_dir), "--train_file", str(train), "--output_dir", str(out), "--max_steps", "1",
                             "--save_steps", "0", "--report_to", "none", *extra]) == 0
        return out / "final"

    def only(part):
        return [x for other in PARTS for x in (f"--{other}", "lora" if other == part else "frozen")]

    for part in PARTS:
        adapter = load_file(run(f"lora-{part}", "lora", *only(part)) / "adapter_model.safetensors")
        assert adapter and {family_part_of(key, fam) for key in adapter} == {part}, part
    base = AutoModelForImageTextToText.from_pretrained(model_dir).state_dict()
    tuned = AutoModelForImageTextToText.from_pretrained(run("full", "full", "--vision", "frozen", "--merger", "full",
                                                            "--llm", "frozen")).state_dict()
    changed = {family_part_of(key, fam) for key in base if not torch.equal(base[key], tuned[key])}
    assert changed == {"merger"}
    if importlib.util.find_spec("bitsandbytes") is not None:  # the qlora extra; installed in the dev venv
        adapter = load_file(run("qlora", "lora", "--load_in_4bit", "true", "--dtype", "bfloat16", *only("llm"))
                            / "adapter_model.safetensors")
        assert adapter and {family_part_of(key, fam) for key in adapter} == {"llm"}
