"""Training configs: every shipped YAML parses, CLI overrides are typed, unknown keys are errors naming the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mevqa.errors import MevqaError
from mevqa.messages import INPUT_MODES
from mevqa.train.config import TrainConfig, load_config, parse_args, save_config
from mevqa.families import DEFAULT_FAMILY, FAMILIES
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
    if written.get("num_epochs") == 0:  # zero-shot (baseline grid): read as `mevqa cv` reads it, nothing trains
        from mevqa.cv import resolve_config

        resolved = resolve_config(path, [])
        assert resolved.zero_shot and resolved.recipe is None
        cfg = TrainConfig(**resolved.values)
    else:
        cfg = load_config(path)
    for key, value in written.items():
        assert getattr(cfg, key) == (None if value == "none" else value), key
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
    assert (rank1.learning_rate, rank1.lr_scheduler, rank1.warmup_ratio, rank1.num_epochs) == (2e-5, "cosine", 0.05, 20)
    assert (rank1.per_device_batch_size, rank1.gradient_accumulation_steps, rank1.system_prompt) == (2, 2, "default")
    rank2 = load("megc2025/rank2_hiermeqa.yaml")
    assert (rank2.lora_r, rank2.lora_alpha, rank2.learning_rate, rank2.num_epochs, rank2.vision) == \
        (16, 32, 1e-4, 3, "full")
    rank3 = load("megc2025/rank3_tie.yaml")
    assert (rank3.learning_rate, rank3.num_epochs, rank3.per_device_batch_size, rank3.gradient_accumulation_steps,
            rank3.inputs) == (5e-6, 2, 1, 8, "frames+flow")
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
    cfg = parse_args(["--config", str(config), "--max_steps", "7", "--learning-rate=3e-5", "--gradient_checkpointing",
                      "true", "--lora_llm_modules", "q_proj,v_proj", "--eval_file", "none", "--inputs", "frames+flow",
                      "--lr_vision", "2e-6", "--model_name_or_path", "some/model", "--train_file", "t.jsonl",
                      "--output_dir", str(tmp_path / "out")])
    assert cfg.max_steps == 7 and cfg.learning_rate == 3e-5 and cfg.gradient_checkpointing is True
    assert cfg.lora_llm_modules == ["q_proj", "v_proj"] and cfg.eval_file is None and cfg.inputs == "frames+flow"
    assert cfg.lr_vision == 2e-6 and cfg.model_name_or_path == "some/model"
    assert parse_args(["--lora_vision_modules", "[qkv, proj]"]).lora_vision_modules == ["qkv", "proj"]
    assert parse_args([]) == TrainConfig()


@pytest.mark.parametrize("argv, message", [
    (["--max_step", "3"], "unknown config key 'max_step'"),
    (["--max_steps", "three"], "max_steps: expected an integer"),
    (["--learning_rate", "fast"], "learning_rate: expected a number"),
    (["--gradient_checkpointing", "maybe"], "gradient_checkpointing: expected true or false"),
    (["--vision", "half"], "vision='half': expected frozen | lora | full"),
    (["--inputs", "vid"], "inputs='vid': expected video | oao | flow"),
    (["--max_steps"], "--max_steps needs a value"),
    (["stray"], "unexpected argument 'stray'"),
    (["--max_steps", "0", "--num_epochs", "0"], "nothing to train"),
    (["--report_to", "mlflow"], "unknown tracker 'mlflow'"),
    (["--metric_for_best", "accuracy"], "metric_for_best='accuracy': expected eval_loss | avg"),
    (["--eval_generate", "false"], "metric_for_best='avg' needs eval_generate: true"),
    (["--learning_rate", "nan"], "learning_rate=nan: expected a finite number > 0"),
    (["--learning_rate", "-1e-4"], "learning_rate=-0.0001: expected a finite number > 0"),
    (["--lr_vision", "inf"], "lr_vision=inf: expected a finite number > 0"),
    (["--lora_alpha", "0"], "lora_alpha=0: expected a positive integer"),
    (["--lora_alpha", "16.5"], "lora_alpha: expected an integer"),
    (["--adam_beta2", "1.0"], "adam_beta2=1.0: expected a fraction in [0, 1)"),
    (["--weight_decay", "nan"], "weight_decay=nan: expected a finite number >= 0"),
    (["--video_fps", "0"], "video_fps=0.0: expected a finite number > 0"),
    (["--min_pixels", "5000", "--max_pixels", "4000"], "min_pixels=5000 exceeds max_pixels=4000"),
    (["--seed", "-1"], "seed=-1: expected an integer in [0, 2**32)"),
    (["--seed", str(2 ** 32)], "seed=4294967296: expected an integer in [0, 2**32)"),
    (["--lora_target_regex", "(q|k"], "lora_target_regex='(q|k': expected a regular expression"),
    (["--config", "a.yaml", "--max_steps", "3", "--config=b.yaml"], "--config given twice"),
])
def test_bad_command_lines_are_one_line_errors(argv, message):
    with pytest.raises(MevqaError, match=re.escape(message)):
        parse_args(argv)


def test_yaml_errors_name_the_file_and_key(tmp_path):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("max_steps: 3\nlora_rank: 8\n")
    with pytest.raises(MevqaError, match=r"bad_key.yaml: unknown config key 'lora_rank'"):
        load_config(bad_key)
    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("lora_r: 8.5\n")
    with pytest.raises(MevqaError, match=r"bad_type.yaml: lora_r: expected an integer"):
        load_config(bad_type)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- a\n- b\n")
    with pytest.raises(MevqaError, match="expected a mapping"):
        load_config(not_mapping)
    with pytest.raises(MevqaError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_reloads_to_the_same_config(tmp_path):
    cfg = parse_args(["--max_steps", "9", "--lr_merger", "1e-5", "--eval_file", "val.jsonl", "--system_prompt",
                      "none"])
    path = save_config(cfg, tmp_path)
    assert path.name == "train_config.yaml"
    assert load_config(path) == cfg


def test_help_lists_every_field_with_its_type_default_and_help():
    import dataclasses

    from mevqa.train.config import help_text

    text = help_text("recipes/lora.py", "LoRA.")
    for item in dataclasses.fields(TrainConfig):
        assert item.metadata.get("help"), f"{item.name} has no help"
        assert f"--{item.name} " in text and item.metadata["help"] in text
    assert "--lora_llm_modules list of str (a,b or [a, b])  (default: [q_proj, k_proj, v_proj, o_proj])" in text
    assert "--max_steps int  (default: -1)" in text and "--video_fps float or none  (default: none)" in text


def _another_value(value, hint):
    """A valid-typed value different from ``value`` (for the resume rule's field-by-field test)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return value + ["x"]
    return "other" if value != "other" else "another"


def test_resume_compares_every_field_except_the_result_neutral_ones_and_the_run_length():
    """A field added to TrainConfig counts by default: only the explicit allow-list may differ on resume."""
    import dataclasses

    from mevqa.train.config import RESULT_NEUTRAL, RUN_LENGTH, resume_differences

    names = {item.name for item in dataclasses.fields(TrainConfig)}
    assert RESULT_NEUTRAL | RUN_LENGTH <= names
    saved = TrainConfig()
    for item in dataclasses.fields(TrainConfig):
        changed = dataclasses.replace(saved, **{item.name: _another_value(getattr(saved, item.name), item.type)})
        differences = resume_differences(saved, changed)
        if item.name in RESULT_NEUTRAL | RUN_LENGTH:
            assert differences == [], item.name
        else:
            assert len(differences) == 1 and differences[0].startswith(f"{item.name} ("), (item.name, differences)
    assert {"learning_rate", "seed", "model_name_or_path", "inputs", "train_file", "eval_file", "metric_for_best",
            "eval_steps", "mixed_precision", "attn_implementation", "answer_strategy", "hierarchical_prompt",
            "media_settings"}.isdisjoint(RESULT_NEUTRAL)
    # A row longer than max_length stops a run (nothing is truncated): raising it must let the run go on.
    assert resume_differences(saved, dataclasses.replace(saved, max_length=2 * saved.max_length)) == []
