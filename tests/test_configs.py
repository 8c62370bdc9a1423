"""Training configs: every shipped YAML parses, CLI overrides are typed, unknown keys are errors naming the key, a
key in mevqa's former spelling names Trainer's, and a key twice in one YAML is an error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mevqa.errors import MevqaError
from mevqa.messages import INPUT_MODES
from mevqa.models.families import DEFAULT_FAMILY, FAMILIES
from mevqa.train.config import TrainConfig, config_dict, load_config, parse_args, save_config
from mevqa.train.parts import lora_target_regex

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "recipes" / "configs").rglob("*.yaml"))
ACCELERATE_CONFIGS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))


def test_the_configs_the_issue_asks_for_are_shipped():
    names = {path.relative_to(REPO / "recipes" / "configs").as_posix() for path in CONFIGS}
    assert {"tiny/lora.yaml", "tiny/full.yaml", "qwen2_5_vl_3b/lora_baseline.yaml", "qwen2_5_vl_7b/lora.yaml",
            "qwen2_5_vl_7b/full.yaml", "qwen2_5_vl_7b/qlora.yaml", "megc2025/rank1_emotion_qwen_vl.yaml",
            "megc2025/rank2_hiermeqa.yaml", "megc2025/rank3_tie.yaml", "qwen3_vl_4b/lora_baseline.yaml",
            "qwen3_vl_4b/full.yaml", "qwen3_vl_8b/lora_baseline.yaml", "qwen3_vl_8b/full.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "recipes" / "configs").as_posix())
def test_every_shipped_yaml_parses_into_the_config(path):
    written = yaml.safe_load(path.read_text())
    if written.get("num_train_epochs") == 0:  # zero-shot (baseline grid): as `mevqa cv` reads it, nothing trains
        from mevqa.experiments.cv import resolve_config

        resolved = resolve_config(path, [])
        assert resolved.zero_shot and resolved.recipe is None
        cfg = load_config(path, ["--num_train_epochs", "1"])
        written.pop("num_train_epochs")
    else:
        cfg = load_config(path)
    shown = config_dict(cfg)
    for key, value in written.items():
        assert shown[key] == (None if value == "none" else value), key
    assert cfg.inputs in INPUT_MODES
    if "lora" in (cfg.vision, cfg.merger, cfg.llm):
        # a LoRA config names its targets, layers its model's family has (the tiny configs: the default family)
        family = next((f for f in FAMILIES.values() if cfg.model_name_or_path in f.checkpoints),
                      FAMILIES[DEFAULT_FAMILY])
        lora_target_regex(cfg, family)


def test_a_lora_preset_fills_the_parts_and_explicit_keys_win(tmp_path):
    cfg = parse_args(["--lora_preset", "llm_lora_full_vision"])
    assert (cfg.vision, cfg.merger, cfg.llm) == ("full", "full", "lora") and "down_proj" in cfg.lora_llm_modules
    config = tmp_path / "c.yaml"
    config.write_text("lora_preset: megc2025_baseline\nmerger: frozen\n")
    cfg = parse_args(["--config", str(config), "--lora_llm_modules", "q_proj"])
    assert (cfg.vision, cfg.merger, cfg.llm) == ("lora", "frozen", "lora")
    assert cfg.lora_vision_modules == ["qkv", "proj"] and cfg.lora_llm_modules == ["q_proj"]
    with pytest.raises(MevqaError, match="lora_preset='qv': expected one of megc2025_baseline"):
        parse_args(["--lora_preset", "qv"])


def test_the_reproductions_carry_the_published_settings():
    load = lambda name: load_config(REPO / "recipes" / "configs" / name)  # noqa: E731
    baseline = load("qwen2_5_vl_3b/lora_baseline.yaml")
    assert (baseline.vision, baseline.merger, baseline.llm) == ("lora", "lora", "lora")
    assert baseline.lora_llm_modules == ["q_proj", "k_proj"] and "3B" in baseline.model_name_or_path
    rank1 = load("megc2025/rank1_emotion_qwen_vl.yaml")
    assert (rank1.learning_rate, rank1.lr_scheduler_type, rank1.warmup_steps, rank1.num_train_epochs) == \
        (2e-5, "cosine", 0.05, 20)
    assert (rank1.per_device_train_batch_size, rank1.gradient_accumulation_steps, rank1.system_prompt) == \
        (2, 2, "default")
    rank2 = load("megc2025/rank2_hiermeqa.yaml")
    assert (rank2.lora_r, rank2.lora_alpha, rank2.learning_rate, rank2.num_train_epochs, rank2.vision) == \
        (16, 32, 1e-4, 3, "full")
    assert rank2.bf16 and rank2.activation_checkpointing
    rank3 = load("megc2025/rank3_tie.yaml")
    assert (rank3.learning_rate, rank3.num_train_epochs, rank3.per_device_train_batch_size,
            rank3.gradient_accumulation_steps, rank3.inputs) == (5e-6, 2, 1, 8, "frames+flow")
    assert load("qwen2_5_vl_7b/qlora.yaml").load_in_4bit


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_load_and_name_existing_deepspeed_files(path):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(path))
    ds_file = (config.deepspeed_config or {}).get("deepspeed_config_file")
    if ds_file:
        stage = json.loads((REPO / ds_file).read_text())["zero_optimization"]["stage"]
        assert stage == (3 if "zero3" in path.name else 2)
    kinds = {p.name for p in ACCELERATE_CONFIGS}
    assert {"single_gpu.yaml", "multi_gpu.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "fsdp.yaml"} <= kinds


def test_command_line_overrides_are_typed_and_win_over_the_yaml(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("max_steps: 5\nlearning_rate: 1.0e-4\ninputs: oao\n")
    cfg = parse_args(["--config", str(config), "--max_steps", "7", "--learning-rate=3e-5", "--activation_checkpointing",
                      "true", "--lora_llm_modules", "q_proj,v_proj", "--eval_file", "none", "--inputs", "frames+flow",
                      "--lr_vision", "2e-6", "--model_name_or_path", "some/model", "--train_file", "t.jsonl",
                      "--output_dir", str(tmp_path / "out")])
    assert cfg.max_steps == 7 and cfg.learning_rate == 3e-5 and cfg.activation_checkpointing is True
    assert cfg.lora_llm_modules == ["q_proj", "v_proj"] and cfg.eval_file is None and cfg.inputs == "frames+flow"
    assert cfg.lr_vision == 2e-6 and cfg.model_name_or_path == "some/model"
    assert parse_args(["--lora_vision_modules", "[qkv, proj]"]).lora_vision_modules == ["qkv", "proj"]
    assert parse_args(["--lora_vision_modules", "qkv", "proj"]).lora_vision_modules == ["qkv", "proj"]
    assert config_dict(parse_args([])) == config_dict(load_config(None))


@pytest.mark.parametrize("argv, message", [
    (["--max_step", "3"], "unknown config key 'max_step' (did you mean max_steps"),
    (["--learning_rat", "1e-4"], "unknown config key 'learning_rat' (did you mean learning_rate?)"),
    (["--num_epochs", "3"], "'num_epochs' is now num_train_epochs (Trainer's name); rename the key"),
    (["--per_device_batch_size", "2"], "'per_device_batch_size' is now per_device_train_batch_size"),
    (["--metric_for_best", "avg"], "'metric_for_best' is now metric_for_best_model"),
    (["--mixed_precision", "bf16"], "'mixed_precision' is now bf16: true or fp16: true"),
    (["--warmup_ratio", "0.1"], "'warmup_ratio' is now warmup_steps (a value below 1 is a fraction"),
    (["--max_steps", "three"], "--max_steps/--max-steps: invalid int value: 'three'"),
    (["--learning_rate", "fast"], "--learning_rate/--learning-rate: invalid float value: 'fast'"),
    (["--activation_checkpointing", "maybe"], "Truthy value expected: got maybe"),
    (["--lr_scheduler_type", "cosin"], "invalid choice: 'cosin'"),
    (["--vision", "half"], "vision='half': expected frozen | lora | full"),
    (["--inputs", "vid"], "inputs='vid': expected video | oao | flow"),
    (["--max_steps"], "--max_steps/--max-steps: expected one argument"),
    (["stray"], "unrecognized arguments: stray"),
    (["--num_train_epochs", "0"], "nothing to train"),
    (["--max_steps", "0"], "max_steps=0: expected -1 (train num_train_epochs) or a positive number of steps"),
    (["--max_steps", "-5"], "max_steps=-5: expected -1 (train num_train_epochs) or a positive number"),
    (["--output_dir", ""], "output_dir is empty"),
    (["--metric_for_best_model", "accuracy"], "metric_for_best_model='accuracy': expected eval_loss | avg"),
    (["--eval_generate", "false"], "metric_for_best_model='avg' needs eval_generate: true"),
    (["--learning_rate", "nan"], "learning_rate=nan: expected a finite number > 0"),
    (["--learning_rate=-1e-4"], "learning_rate=-0.0001: expected a finite number > 0"),
    (["--lr_vision", "inf"], "lr_vision=inf: expected a finite number > 0"),
    (["--lora_alpha", "0"], "lora_alpha=0: expected a positive integer"),
    (["--lora_alpha", "16.5"], "--lora_alpha/--lora-alpha: invalid int value: '16.5'"),
    (["--adam_beta2", "1.0"], "adam_beta2=1.0: expected a fraction in [0, 1)"),
    (["--weight_decay", "nan"], "weight_decay=nan: expected a finite number >= 0"),
    (["--video_fps", "0"], "video_fps=0.0: expected a finite number > 0"),
    (["--min_pixels", "5000", "--max_pixels", "4000"], "min_pixels=5000 exceeds max_pixels=4000"),
    (["--seed", "-1"], "seed=-1: expected an integer in [0, 2**32)"),
    (["--seed", str(2 ** 32)], "seed=4294967296: expected an integer in [0, 2**32)"),
    (["--lora_target_regex", "(q|k"], "lora_target_regex='(q|k': expected a regular expression"),
    (["--media_settings", "[1, 2]"], "media_settings=[1, 2]: expected a mapping of names to plain values"),
    (["--config", "a.yaml", "--max_steps", "3", "--config=b.yaml"], "--config given twice"),
    # transformers would keep activation_checkpointing and drop its old name's other value without a word
    (["--activation_checkpointing", "true", "--gradient_checkpointing", "false"],
     "gradient_checkpointing=False disagrees with activation_checkpointing=True; gradient_checkpointing is "
     "transformers' old name for activation_checkpointing, which wins: set activation_checkpointing"),
])
def test_bad_command_lines_are_one_line_errors(argv, message):
    with pytest.raises(MevqaError, match=re.escape(message)):
        parse_args(argv)


@pytest.mark.parametrize("text, message", [
    ("max_steps: 3\nlora_rank: 8\n", "c.yaml: unknown config key 'lora_rank'"),
    ("lora_r: 8.5\n", "c.yaml: argument --lora_r/--lora-r: invalid int value: '8.5'"),
    ("lr_scheduler: cosine\n", "c.yaml: 'lr_scheduler' is now lr_scheduler_type"),
    ("learning_rate: 1.0e-4\nseed: 1\nlearning_rate: 1.0e-3\n", "c.yaml: line 3: key 'learning_rate' given twice"),
    ("lr_scheduler_type: cosin\n", "c.yaml: argument --lr_scheduler_type/--lr-scheduler-type: invalid choice: 'cosin'"),
    ("lora_r: null\n", "c.yaml: lora_r: expected a value, got none"),
    ("- a\n- b\n", "expected a mapping"),
    (None, "c.yaml: config file not found"),
])
def test_yaml_errors_name_the_file_and_key(tmp_path, text, message):
    config = tmp_path / "c.yaml"
    if text is not None:
        config.write_text(text)
    with pytest.raises(MevqaError, match=re.escape(message)):
        load_config(config)


def test_saved_config_reloads_to_the_same_config(tmp_path):
    cfg = parse_args(["--max_steps", "9", "--lr_merger", "1e-5", "--eval_file", "val.jsonl", "--system_prompt",
                      "none", "--lr_scheduler_type", "constant_with_warmup", "--media_settings", "{frames: 4}"])
    path = save_config(cfg, tmp_path)
    assert path.name == "train_config.yaml"
    assert config_dict(load_config(path)) == config_dict(cfg)


def test_help_lists_every_field_with_its_type_default_and_help():
    import dataclasses

    from mevqa.train.config import help_text

    text = " ".join(help_text("recipes/lora.py", "LoRA.").split())  # argparse wraps the lines
    for item in dataclasses.fields(TrainConfig):
        if item.init:
            assert f"--{item.name} " in text, item.name
    from transformers import TrainingArguments

    for item in dataclasses.fields(TrainConfig):  # mevqa's fields and the defaults it changes: each explained
        if item.name in TrainConfig.__annotations__ or item.name not in TrainingArguments.__dataclass_fields__:
            assert " ".join(item.metadata["help"].split()) in text, item.name
    assert "--lora_llm_modules str [str ...]" in text and "(default: ['q_proj', 'k_proj', 'v_proj', 'o_proj'])" in text
    assert "--max_steps int" in text and "--video_fps float" in text and "--learning_rate float" in text
    assert "(default: 0.0001)" in text


def test_resume_compares_every_field_except_the_result_neutral_ones_and_the_run_length():
    """A field added to TrainConfig, by mevqa or by transformers, counts by default: only the explicit allow-list
    may differ on resume."""
    from mevqa.train.config import RESULT_NEUTRAL, RUN_LENGTH, resume_differences

    saved = config_dict(TrainConfig())
    assert RESULT_NEUTRAL | RUN_LENGTH <= set(saved)
    for name in saved:
        differences = resume_differences(saved, {**saved, name: ["another value"]})
        if name in RESULT_NEUTRAL | RUN_LENGTH:
            assert differences == [], name
        else:
            assert len(differences) == 1 and differences[0].startswith(f"{name} ("), (name, differences)
    assert {"learning_rate", "seed", "model_name_or_path", "inputs", "train_file", "eval_file", "metric_for_best_model",
            "eval_strategy", "eval_steps", "bf16", "fp16", "attn_implementation", "answer_strategy",
            "lr_scheduler_type", "warmup_steps", "optim", "weight_decay", "hierarchical_prompt",
            "media_settings"}.isdisjoint(RESULT_NEUTRAL)


def _trained_on_a_released_checkpoint(path: Path) -> bool:
    written = yaml.safe_load(path.read_text())
    released = any(written.get("model_name_or_path") in f.checkpoints for f in FAMILIES.values())
    return released and written.get("num_train_epochs") != 0


@pytest.mark.parametrize("path", [path for path in CONFIGS if _trained_on_a_released_checkpoint(path)],
                         ids=lambda p: p.relative_to(REPO / "recipes" / "configs").as_posix())
def test_every_trained_config_on_a_released_checkpoint_says_how_its_memory_note_is_reproduced(path):
    comments = " ".join(line[2:] for line in path.read_text().splitlines() if line.startswith("# "))
    note = re.search(r"Memory \(`python benchmarks/config_memory\.py`: .*? micro-batch of \d+ x \d+ tokens .*?"
                     r"about \d+\.\d\d GiB (?:with|without) checkpointing; per process of the launch above \(.+?\) "
                     r"weights \d+\.\d\d GiB, gradients \d+\.\d\d GiB and AdamW state \d+\.\d\d GiB: "
                     r"\d+\.\d\d GiB in all", comments)
    assert note, f"{path.name}: no memory note naming `python benchmarks/config_memory.py` (run it with --write)"
