"""`mevqa cv` on a synthetic CASME II with the tiny model over 3 leave-one-subject-out folds: trained and zero-shot
configs, pooled scores with intervals, the report, a real SIGKILL of the process group mid-fold and the rerun that
ends with the same pooled predictions; and the refusals that come before any run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, TINY_FAMILIES, tiny_family
from mevqa.cli import main
from mevqa.errors import MevqaError
from mevqa.eval import read_rows, score
from mevqa.experiments import cv

TINY_LORA = REPO_ROOT / "recipes" / "configs" / "tiny" / "lora.yaml"
TWO_GPUS = ["--gpus", "0,1"] if torch.cuda.device_count() >= 2 else []
TINY_FULL = REPO_ROOT / "recipes" / "configs" / "tiny" / "full.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def overrides(tiny_model_dir: Path) -> list[str]:
    # A few steps with a checkpoint every two, so a kill lands between checkpoints of a fold that is still training.
    # At the tiny config's learning rate the random model learns to stop at once on some held-out rows: mevqa predict
    # fails those rows (an empty answer) on every run, and cv must score them as the misses they are.
    return ["--model_name_or_path", str(tiny_model_dir), "--max_steps", "10", "--save_steps", "2",
            "--eval_max_new_tokens", "8"]


@pytest.fixture(scope="module")
def folds(tmp_path_factory) -> Path:
    """A synthetic CASME II of 9 clips from 3 subjects, built (onset/apex/offset, 64 px) and split leave one subject
    out, all through the real commands."""
    root = tmp_path_factory.mktemp("cv-data")
    raw, built, folds = root / "raw", root / "built", root / "folds"
    assert main(["synth-data", "casme2", "--out", str(raw), "--clips", "9"]) == 0
    assert main(["build-data", "casme2", "--root", str(raw / "CASME2_RAW_selected"), "--annotations",
                 str(raw / "CASME2-coding-20140508.xlsx"), "--out", str(built), "--inputs", "oao", "--size",
                 "64"]) == 0
    assert main(["split", "--data", str(built / "qa.jsonl"), "--scheme", "loso", "--out", str(folds)]) == 0
    assert len(json.loads((folds / "folds.json").read_text())) == 3
    return folds


@pytest.fixture(scope="module")
def zero_shot_config(tmp_path_factory, tiny_model_dir) -> Path:
    path = tmp_path_factory.mktemp("cv-configs") / "zero_shot.yaml"
    path.write_text(f"model_name_or_path: {tiny_model_dir}\ndtype: float32\ninputs: oao\nsystem_prompt: default\n"
                    "num_train_epochs: 0\nper_device_eval_batch_size: 8\n")
    return path


@pytest.fixture(scope="module")
def uninterrupted(folds, zero_shot_config, tiny_model_dir, tmp_path_factory) -> Path:
    """One uninterrupted cv of the tiny LoRA config and a zero-shot config, two runs at a time (--gpus 0,1) where the
    machine has two CUDA devices (mevqa cv refuses --gpus without them)."""
    out = tmp_path_factory.mktemp("cv-a") / "out"
    assert main(["cv", "--config", str(TINY_LORA), str(zero_shot_config), "--folds", str(folds), "--out", str(out),
                 *TWO_GPUS, "--bootstrap", "200", "--", *overrides(tiny_model_dir)]) == 0
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def scored(pred_rows: list[dict], gold_rows: list[dict], **options) -> dict:
    """What cv reports for these predictions: mevqa.eval.score plus the count of recorded empty answers."""
    report = score(pred_rows, gold_rows, **options)
    report["counts"]["empty_answers"] = sum(bool(row.get("empty_answer")) for row in pred_rows)
    return report


@pytest.mark.e2e
def test_cv_trains_predicts_pools_and_reports(uninterrupted, folds):
    out = uninterrupted
    fold_dirs = sorted(folds.glob("fold_*"))
    val_files = [folder / "val.jsonl" for folder in fold_dirs]
    gold = read_rows(val_files)
    for name in ("lora", "zero_shot"):
        # every held-out row answered once, pooled in fold order
        pooled = lines(out / name / "predictions.jsonl")
        assert [row["id"] for row in pooled] == [row["id"] for row in gold]
        scores = json.loads((out / name / "scores.json").read_text())
        assert scores["family"] == "qwen2_5_vl"
        assert scores["pooled"] == scored(read_rows(out / name / "predictions.jsonl"), gold, bootstrap=200, seed=0)
        assert scores["pooled"]["bootstrap"]["clips"] == {"overall": 9, "casme2": 9}
        assert scores["stamp"]["gold_files"].keys() == {str(path) for path in val_files}
        assert scores["stamp"]["config"]["num_train_epochs"] == (0 if name == "zero_shot" else 1)
        for folder, entry in zip(fold_dirs, scores["folds"]):
            fold_scores = json.loads((out / name / folder.name / "scores.json").read_text())
            ids = {row["id"] for row in read_rows(folder / "val.jsonl")}
            expected = scored([row for row in pooled if row["id"] in ids], read_rows(folder / "val.jsonl"))
            assert entry["report"] == {k: v for k, v in fold_scores.items() if k != "stamp"} == expected
    # rows the trained model answered with nothing: recorded per fold, pooled as empty answers, scored as misses
    empty_ids = set()
    for folder in fold_dirs:
        record = out / "lora" / folder.name / "empty_answers.json"
        ids = set(json.loads(record.read_text())["ids"]) if record.is_file() else set()
        answered = {row["id"] for row in lines(out / "lora" / folder.name / "predict" / "final_predictions.jsonl")}
        assert not ids & answered
        assert json.loads((out / "lora" / folder.name / "scores.json").read_text())["counts"]["empty_answers"] \
            == len(ids)
        empty_ids |= ids
    assert empty_ids, "the trained tiny model was expected to answer some rows with nothing"
    assert {row["id"] for row in lines(out / "lora" / "predictions.jsonl") if row.get("empty_answer")} == empty_ids
    assert all(row["answer"] == "" for row in lines(out / "lora" / "predictions.jsonl") if row["id"] in empty_ids)
    assert f"scored as misses: lora {len(empty_ids)}." in (out / "report.md").read_text()
    # trained: one recipe run per fold, its final weights answered; the recipe's own config stamps the fold scores
    for folder in fold_dirs:
        run = out / "lora" / folder.name
        assert (run / "model" / "final" / "adapter_config.json").is_file()
        trained = json.loads((run / "trained.json").read_text())
        assert "--eval_file" in trained["command"] and trained["command"][trained["command"].index("--eval_file")
                                                                          + 1] == "none"
        stamp = json.loads((run / "scores.json").read_text())["stamp"]
        assert stamp["config"]["train_file"] == str(folder / "train.jsonl") and stamp["config"]["max_steps"] == 10
        assert ("CUDA_VISIBLE_DEVICES=" in (run / "train.log").read_text()) == bool(TWO_GPUS)
    # zero-shot: nothing trained, one predict run over all folds with the config's input settings
    assert not list((out / "zero_shot").glob("fold_*/model"))
    predict_log = (out / "zero_shot" / "predict.log").read_text()
    assert "--inputs oao --system-prompt default" in predict_log
    assert all(str(path) in predict_log for path in val_files)
    if TWO_GPUS:  # the two GPUs were used side by side
        logs = "".join(p.read_text() for p in out.glob("*/**/*.log"))
        assert "CUDA_VISIBLE_DEVICES=0 " in logs and "CUDA_VISIBLE_DEVICES=1 " in logs
    # the report: one table with a row per config and split, every cell with its interval; the plots
    report = (out / "report.md").read_text()
    summary = json.loads((out / "scores.json").read_text())
    for name in ("lora", "zero_shot"):
        overall = summary["configs"][name]["pooled"]["overall"]
        row = next(line for line in report.splitlines() if line.startswith(f"| Overall | {name} |"))
        lo, hi = overall["avg_ci"]
        avg = "-" if overall["avg"] is None else f"{overall['avg']:.3f} [{lo:.3f}, {hi:.3f}]"
        assert row.rstrip(" |").endswith(avg)
        assert row.count("[") == 7
    assert set(summary["stamp"]["config"]) == {"lora", "zero_shot"}
    for image in ("avg_per_fold", "intervals", "lora_confusion_coarse", "zero_shot_confusion_fine"):
        assert (out / "plots" / f"{image}.png").read_bytes()[:8] == PNG
        assert f"(plots/{image}.png)" in report
    assert json.loads((out / "cv.json").read_text())["configs"]["zero_shot"]["zero_shot"] is True


@pytest.mark.e2e
def test_rerun_skips_finished_folds(uninterrupted, folds, zero_shot_config, tiny_model_dir, capsys):
    finished = ("*/fold_*/scores.json", "*/fold_*/predict/predictions.jsonl")
    before = {path: path.stat().st_mtime_ns for pattern in finished for path in uninterrupted.glob(pattern)}
    assert main(["cv", "--config", str(TINY_LORA), str(zero_shot_config), "--folds", str(folds), "--out",
                 str(uninterrupted), *TWO_GPUS, "--bootstrap", "200", "--", *overrides(tiny_model_dir)]) == 0
    assert "skipped (finished before)" in capsys.readouterr().err
    # nothing is trained, predicted or scored again
    assert before == {path: path.stat().st_mtime_ns for pattern in finished for path in uninterrupted.glob(pattern)}


@pytest.mark.e2e
def test_killed_cv_resumes_to_the_same_pooled_predictions(uninterrupted, folds, tiny_model_dir, tmp_path, capsys):
    """Folds 0 and 1 come finished from the uninterrupted run (so only fold 2 is left to do, which keeps the test
    short); cv is killed with SIGKILL, process group and all, while fold 2 trains, then the same command is rerun."""
    out = tmp_path / "out"
    for name in ("fold_0", "fold_1"):
        shutil.copytree(uninterrupted / "lora" / name, out / "lora" / name)
    argv = ["cv", "--config", str(TINY_LORA), "--folds", str(folds), "--out", str(out), "--bootstrap", "200", "--",
            *overrides(tiny_model_dir)]
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "mevqa", *argv], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 1500  # a hang guard, not a speed test
    while not list(out.glob("lora/fold_2/model/checkpoint-*")):
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)         # cv and the training processes it started
    assert process.wait() == -signal.SIGKILL
    log.close()
    fold = out / "lora" / "fold_2"
    assert not (fold / "scores.json").exists() and not (out / "lora" / "predictions.jsonl").exists()
    mid_training = not (fold / "model" / "final").exists()

    finished = {path: path.stat().st_mtime_ns for path in out.glob("lora/fold_[01]/scores.json")}
    assert main(argv) == 0                            # the same command again
    err = capsys.readouterr().err
    assert err.count("skipped (finished before)") == 2
    assert finished == {path: path.stat().st_mtime_ns for path in out.glob("lora/fold_[01]/scores.json")}
    if mid_training:                                  # (the kill may land just after the final weights were saved)
        assert "lora/fold_2: training resumes from" in err
    assert lines(fold / "predict" / "predictions.jsonl") == lines(
        uninterrupted / "lora" / "fold_2" / "predict" / "predictions.jsonl")
    assert lines(out / "lora" / "predictions.jsonl") == lines(uninterrupted / "lora" / "predictions.jsonl")
    assert (json.loads((out / "lora" / "scores.json").read_text())["pooled"]
            == json.loads((uninterrupted / "lora" / "scores.json").read_text())["pooled"])


@pytest.fixture(scope="module")
def two_folds(folds) -> Path:
    """The same synthetic CASME II split into 2 folds of whole subjects (2 and 1 subjects held out)."""
    out = folds.parent / "two-folds"
    assert main(["split", "--data", str(folds.parent / "built" / "qa.jsonl"), "--scheme", "kfold:2", "--out",
                 str(out)]) == 0
    return out


@pytest.mark.e2e
@pytest.mark.parametrize("family", [family for family in TINY_FAMILIES if family != "qwen2_5_vl"])
def test_cv_runs_on_each_family(family, two_folds, tiny_family_dirs, tmp_path):
    """A small cv on each other family's tiny model (Qwen2.5-VL's runs the LOSO cv tests above): a LoRA config of 2
    steps and a zero-shot config over 2 folds."""
    model = tiny_family(tiny_family_dirs, family)
    zero_shot = tmp_path / "zero_shot.yaml"
    zero_shot.write_text(f"model_name_or_path: {model}\ndtype: float32\ninputs: oao\nnum_train_epochs: 0\n"
                         "per_device_eval_batch_size: 8\neval_max_new_tokens: 8\n")
    out = tmp_path / "out"
    assert main(["cv", "--config", str(TINY_LORA), str(zero_shot), "--folds", str(two_folds), "--out", str(out),
                 "--bootstrap", "100", "--", "--model_name_or_path", str(model), "--max_steps", "2", "--save_steps",
                 "0", "--eval_max_new_tokens", "8"]) == 0
    val_files = sorted(two_folds.glob("fold_*/val.jsonl"))
    gold = read_rows(val_files)
    assert len(val_files) == 2
    recorded = json.loads((out / "cv.json").read_text())["configs"]
    for name in ("lora", "zero_shot"):
        assert recorded[name]["family"] == family
        pooled = lines(out / name / "predictions.jsonl")
        assert [row["id"] for row in pooled] == [row["id"] for row in gold]  # every held-out row, once
        scores = json.loads((out / name / "scores.json").read_text())
        assert scores["family"] == family
        assert scores["pooled"] == scored(read_rows(out / name / "predictions.jsonl"), gold, bootstrap=100, seed=0)
        assert [entry["fold"] for entry in scores["folds"]] == [0, 1]
        for entry, val in zip(scores["folds"], val_files):
            assert entry["report"] == scored([r for r in pooled if r["id"] in {g["id"] for g in read_rows(val)}],
                                             read_rows(val))
            assert isinstance(entry["report"]["avg"], float)  # a score per fold
    for fold in ("fold_0", "fold_1"):  # the trained config: the recipe's run on that family's model
        trained = out / "lora" / fold / "model"
        assert json.loads((trained / "final" / "adapter_config.json").read_text())["base_model_name_or_path"] \
            == str(model)
        assert [r["total_steps"] for r in lines(trained / "train_log.jsonl") if r["event"] == "start"] == [2]


# --- refused before any run -------------------------------------------------------------------------------------
def test_config_resolution(tmp_path):
    lora = cv.resolve_config(TINY_LORA, ["--max_steps", "3"])
    assert (lora.name, lora.recipe, lora.zero_shot) == ("lora", "lora", False)
    assert lora.values["max_steps"] == 3 and lora.values["output_dir"] is None and lora.values["train_file"] is None
    assert cv.resolve_config(TINY_FULL, []).recipe == "full"
    zero = tmp_path / "zs.yaml"
    zero.write_text("model_name_or_path: m\nnum_train_epochs: 0\ninputs: flow\nsystem_prompt: none\nmax_frames: 4\n")
    resolved = cv.resolve_config(zero, ["--max_steps", "3"])     # the trained configs' step count: still zero-shot
    assert resolved.zero_shot and resolved.recipe is None and resolved.values["num_train_epochs"] == 0
    command = cv.predict_command(resolved, [Path("v.jsonl")], Path("o"), None)
    assert command[command.index("predict"):] == [
        "predict", "--questions", "v.jsonl", "--out", "o", "--batch-size", "4", "--max-new-tokens", "64",
        "--model", "m", "--inputs", "flow", "--system-prompt", "none", "--max-frames", "4", "--strategy", "direct"]
    trained = cv.predict_command(lora, [Path("v.jsonl")], Path("o"), Path("run"))
    assert trained[-4:] == ["--model", "runs/tiny-model", "--adapter", "run/final"]
    full = cv.predict_command(cv.resolve_config(TINY_FULL, []), [Path("v.jsonl")], Path("o"), Path("run"))
    assert full[-2:] == ["--model", "run/final"]
    train = cv.train_command(lora, cv.Fold(0, Path("t.jsonl"), Path("v.jsonl")), Path("run"), ["--max_steps", "3"],
                             None)
    assert train[train.index(str(cv.recipe_path("lora"))):] == [
        str(cv.recipe_path("lora")), "--config", str(TINY_LORA), "--max_steps", "3", "--train_file", "t.jsonl",
        "--eval_file", "none", "--eval_strategy", "no", "--output_dir", "run"]
    launched = cv.train_command(lora, cv.Fold(0, Path("t.jsonl"), Path("v.jsonl")), Path("run"), [],
                                Path("single_gpu.yaml"))
    assert launched[launched.index("launch") + 1:launched.index("launch") + 3] == ["--config_file", "single_gpu.yaml"]


def test_configs_from_folders_and_globs(tmp_path):
    for name in ("b", "a"):
        (tmp_path / "grid" / f"{name}.yaml").parent.mkdir(exist_ok=True)
        (tmp_path / "grid" / f"{name}.yaml").write_text("num_train_epochs: 0\n")
    grid = tmp_path / "grid"
    assert cv.expand_configs([str(grid)]) == [grid / "a.yaml", grid / "b.yaml"]
    assert cv.expand_configs([str(grid / "b.yaml"), str(grid / "*.yaml")]) == [grid / "b.yaml", grid / "a.yaml"]
    with pytest.raises(MevqaError, match="the pattern matches no file"):
        cv.expand_configs([str(grid / "*.yml")])


def test_changed_config_on_rerun_is_refused(folds, tiny_model_dir, tmp_path):
    out, model = tmp_path / "out", ["--model_name_or_path", str(tiny_model_dir)]
    cv.check_settings(out, folds, [cv.resolve_config(TINY_LORA, model)], model)
    cv.check_settings(out, folds, [cv.resolve_config(TINY_LORA, model)], model)        # the same: fine
    assert json.loads((out / "cv.json").read_text())["configs"]["lora"]["family"] == "qwen2_5_vl"
    with pytest.raises(MevqaError, match=r"resolves differently .* \(learning_rate differ"):
        cv.check_settings(out, folds, [cv.resolve_config(TINY_LORA, [*model, "--learning_rate", "0.1"])],
                          [*model, "--learning_rate", "0.1"])
    with pytest.raises(MevqaError, match="runs/tiny-model: not a local folder"):  # before any run
        cv.check_settings(tmp_path / "other", folds, [cv.resolve_config(TINY_LORA, [])], [])


@pytest.mark.parametrize("make_argv, message", [
    (lambda d: ["--config", str(TINY_LORA), "--", "--output_dir", "x"], "output_dir is set by mevqa cv"),
    (lambda d: ["--config", str(TINY_LORA), "--", "--lr", "1"], "unknown config key 'lr'"),
    (lambda d: ["--config", str(TINY_LORA), str(d / "other" / "lora.yaml")], "two configs are named 'lora'"),
    (lambda d: ["--config", str(TINY_LORA), "--gpus", "0,,1"], "--gpus 0,,1: expected distinct GPU ids"),
    (lambda d: ["--config", str(TINY_LORA), "--gpus", "0,1", "--accelerate-config", str(d / "two.yaml")],
     "num_processes 2, but --gpus runs each fold on one GPU"),
    (lambda d: ["--config", str(d / "missing.yaml")], "missing.yaml: config file not found"),
])
def test_bad_invocations_fail_before_any_run(tmp_path, capsys, make_argv, message):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "lora.yaml").write_text("num_train_epochs: 0\n")
    (tmp_path / "two.yaml").write_text("num_processes: 2\n")
    (tmp_path / "folds").mkdir()
    out = tmp_path / "out"
    argv = make_argv(tmp_path)
    tail = argv[argv.index("--"):] if "--" in argv else []
    head = argv[:len(argv) - len(tail)]
    assert main(["cv", *head, "--folds", str(tmp_path / "folds"), "--out", str(out), *tail]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_zero_shot_pixel_budgets_and_answer_strategy_reach_predict(tmp_path):
    """mevqa predict takes the pixel budgets and the answer strategy, so zero-shot configs pass them on (a strategy
    option only where the strategy reads it; a list as the flag once per item)."""
    pixels = tmp_path / "pixels.yaml"
    pixels.write_text("model_name_or_path: m\nnum_train_epochs: 0\nmax_pixels: 200704\nvideo_max_pixels: 50176\n")
    config = cv.resolve_config(pixels, [])
    cv.check_predict_flags(config)                                  # no longer refused
    command = cv.predict_command(config, [Path("v.jsonl")], Path("o"), None)
    assert command[command.index("--max-pixels"):command.index("--max-pixels") + 2] == ["--max-pixels", "200704"]
    assert "--video-max-pixels" in command and command[-2:] == ["--strategy", "direct"]  # the config's default
    values = {**config.values, "answer_strategy": "au-rules+hierarchical", "answer_votes": 5,
              "answer_vote_temperature": 0.5, "answer_fine_labels": ["samm=anger,happiness"],
              "answer_au_tables": ["samm=emotion_qwen_vl", "casme2=casme2"], "answer_max_aus": 8}
    voting = cv.CvConfig("zs", pixels, values, zero_shot=True, recipe=None)
    cv.check_predict_flags(voting)
    command = cv.predict_command(voting, [Path("v.jsonl")], Path("o"), None)
    tail = command[command.index("--strategy"):]
    assert tail == ["--strategy", "au-rules+hierarchical", "--fine-labels", "samm=anger,happiness", "--au-rules",
                    "samm=emotion_qwen_vl", "--au-rules", "casme2=casme2"]


def test_folds_folder_must_be_a_split(tmp_path, capsys):
    (tmp_path / "folds").mkdir()
    assert main(["cv", "--config", str(TINY_LORA), "--folds", str(tmp_path / "folds"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "not a mevqa split folder (no folds.json)" in capsys.readouterr().err


def test_folds_must_hold_each_row_out_once(folds, tmp_path, capsys):
    shutil.copytree(folds, tmp_path / "folds")
    val = tmp_path / "folds" / "fold_1" / "val.jsonl"
    val.write_text(val.read_text() + (tmp_path / "folds" / "fold_0" / "val.jsonl").read_text().splitlines()[0] + "\n")
    out = tmp_path / "out"
    assert main(["cv", "--config", str(TINY_LORA), "--folds", str(tmp_path / "folds"), "--out", str(out)]) == 2
    assert f"{val}:{len(val.read_text().splitlines())}: row " in capsys.readouterr().err
    assert not out.exists()
    val.write_text(val.read_text().splitlines()[0] + "\n" + val.read_text())      # twice in one fold
    assert main(["cv", "--config", str(TINY_LORA), "--folds", str(tmp_path / "folds"), "--out", str(out)]) == 2
    assert f"{val}:2: row " in capsys.readouterr().err and not out.exists()


def test_a_folder_another_cv_runs_in_is_refused(folds, tmp_path, capsys):
    out = tmp_path / "out"
    with cv.locked(out):
        assert main(["cv", "--config", str(TINY_LORA), "--folds", str(folds), "--out", str(out)]) == 2
    assert "another mevqa cv is writing here" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [cv.LOCK]


@pytest.mark.parametrize("errors, expected", [
    ([], None),                                                               # predict failed before any row
    ([("a_1", "q.jsonl:1: the model gave an empty answer"), ("b_2", "q.jsonl:2: the model gave an empty answer")],
     {"a_1", "b_2"}),
    ([("a_1", "q.jsonl:1: the model gave an empty answer"), ("b_2", "q.jsonl:2: unreadable image")], None),
])
def test_only_rows_failed_by_an_empty_answer_are_taken_as_answered(tmp_path, errors, expected):
    if errors:
        (tmp_path / "errors.jsonl").write_text("".join(json.dumps({"id": i, "where": "q", "error": e}) + "\n"
                                                       for i, e in errors))
    assert cv.failed_only_by_empty_answers(tmp_path) == expected
