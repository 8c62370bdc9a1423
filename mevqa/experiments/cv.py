"""``mevqa cv``: cross-validate training configs over the folds of ``mevqa split``, in one resumable command.

For each config and each fold ``DIR/fold_K`` it trains on ``fold_K/train.jsonl`` with the recipe (``accelerate launch
recipes/lora.py`` when any part of the config is ``lora``, else ``recipes/full.py``), answers the held-out
``fold_K/val.jsonl`` with ``mevqa predict`` and scores the answers. The folds' predictions are then pooled into one
file per config and scored together, as leave-one-subject-out papers report, with 95% intervals from resampled clips;
the per-fold scores stand beside them. Every step is the real command a user would run, started as a subprocess
and logged; its output goes to a log file next to its results.

Rules:
- Training sees only the fold's training file: ``--eval_file none --eval_strategy no`` are passed, so the held-out fold
  never selects a checkpoint; the final weights (``final/``) are scored. What follows ``--`` on the command line
  overrides config fields for every run (``train_file``, ``eval_file`` and ``output_dir`` are cv's to set).
- Zero-shot: a config file with ``num_train_epochs: 0`` and no positive ``max_steps`` trains nothing (overrides of those
  two after ``--`` do not change that). Its model (``model_name_or_path``) answers the held-out rows of every fold
  in one ``mevqa predict`` run, with the config's ``inputs``, ``system_prompt``, ``max_frames``, ``video_fps``,
  pixel budgets and answer strategy (``answer_*``) passed as flags (a setting ``mevqa predict`` has no flag for is
  refused before any run). A trained model is answered with the strategy its ``train_config.yaml`` records.
- Answers are generated with the config's ``per_device_eval_batch_size`` and ``eval_max_new_tokens``; a trained
  model's input settings come from the ``train_config.yaml`` the recipe saved with it, as ``mevqa predict`` always
  does.
- Resuming: a fold whose predictions are complete and scored is skipped; otherwise its training command is rerun
  (the recipe resumes from its latest checkpoint) unless training finished before, and ``mevqa predict`` answers only
  the rows not yet answered. ``OUT/cv.json`` records the resolved configs and the folds; a rerun whose config
  resolves differently, or with other folds, is refused, so results of different settings never mix.
- Empty answers: ``mevqa predict`` counts a row the model answers with nothing as failed and asks it again on its
  next run, which, decoding greedily, gives the same nothing. When every row a predict run left unanswered failed
  for that reason alone, cv records those rows (``empty_answers.json``), warns, and scores them as the empty
  answers they are (misses; ``counts.empty_answers``) instead of failing the fold on every rerun. Any other failed
  row fails the fold.
- ``--gpus 0,1,2,3`` runs one fold per GPU at a time (``CUDA_VISIBLE_DEVICES`` per subprocess; use a one-process
  accelerate config); without it the folds run one after another. After a failure no new run starts; the runs
  under way finish, and the error names the failed command and its log.

Output folder::

    OUT/cv.json                       folds, resolved configs (with each model's family) and overrides
    OUT/<config>/fold_K/model/        the recipe's output_dir (checkpoint-N/, final/)
    OUT/<config>/fold_K/predict/      mevqa predict's output folder for the fold's held-out rows
    OUT/<config>/fold_K/*.log         each step's command and output
    OUT/<config>/fold_K/scores.json   the fold's scores (stamped)
    OUT/<config>/fold_K/empty_answers.json   held-out rows the model answered with nothing (scored as misses)
    OUT/<config>/predict/             zero-shot configs: one mevqa predict run over all folds' held-out rows
                                      (and OUT/<config>/empty_answers.json)
    OUT/<config>/predictions.jsonl    all folds' predictions, in fold order
    OUT/<config>/scores.json          the model family, pooled scores with 95% intervals, per-fold scores (stamped)
    OUT/scores.json                   every config's pooled and per-fold scores (stamped)
    OUT/report.md, OUT/plots/*.png    the table with intervals, Avg per fold, intervals per config, confusion matrices
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import glob
import json
import logging
import os
import queue
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from mevqa.cli_style import HelpFormatter
from mevqa.errors import MevqaError
from mevqa.eval import read_rows, row_id, score, stamp
from mevqa.eval.bootstrap import check_resampling
from mevqa.eval.report import confusion_pngs, cv_markdown, fold_avg_png, intervals_png, pooled_markdown
from mevqa.eval.stamp import file_sha256
from mevqa.jsonl import atomic_path, ensure_dir, read_json, read_jsonl, write_json, write_jsonl
from mevqa.models.families import family_of_source
from mevqa.options import AS_TRAINED_OPTIONS
from mevqa.paths import console_command, recipe_path, refuse_outputs_onto_inputs, seed as seed_type
from mevqa.runfolder import differences, folder_lock, read_log

log = logging.getLogger(__name__)

# LAZY: mevqa cv only orchestrates; training and prediction run in subprocesses. The modules of those stages (predict,
# strategies: torch and transformers; train.config: the training stack) are imported inside the functions that read
# their names, so that starting cv, and `mevqa cv --help`, does not load the model stack.

# Config fields cv sets for each fold; an override of them would break the fold layout.
FOLD_FIELDS = ("train_file", "eval_file", "output_dir")
# Config fields that decide what a zero-shot model is shown and how it answers, and the `mevqa predict` flag that
# carries each (a list is passed as the flag once per item). A trained model's predict reads them from the
# train_config.yaml saved with it.
ZERO_SHOT_FLAGS = AS_TRAINED_OPTIONS
SETTINGS = "cv.json"
EMPTY_ANSWERS = "empty_answers.json"
# How mevqa predict's errors.jsonl words a row whose answer came back empty (mevqa.answering.inference);
# tests/test_cv.py runs the real predict on a model that answers some rows with nothing, so a change of wording fails
# there.
EMPTY_ANSWER_ERROR = "the model gave an empty answer"
LOCK = ".cv.lock"
TAIL_LINES = 20


# --- configs and folds ------------------------------------------------------------------------------------------
@dataclass
class CvConfig:
    name: str
    path: Path
    values: dict            # the resolved config (fold fields left to cv)
    zero_shot: bool
    recipe: str | None      # "lora" | "full"; None for zero-shot

    @functools.cached_property
    def family(self) -> str:
        """``config.model_type`` of the model the config trains or answers with, from its config.json (an
        unsupported model is one line, before any run)."""
        return family_of_source(self.values["model_name_or_path"]).model_type


@dataclass
class Fold:
    index: int
    train: Path
    val: Path
    val_subjects: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"fold_{self.index}"


def expand_configs(specs: list[str]) -> list[Path]:
    """Config files from files, folders (their ``*.yaml``, sorted) and glob patterns, in the order given."""
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
            if not found:
                raise MevqaError(f"{path}: folder holds no *.yaml config")
        elif path.is_file():
            found = [path]
        elif glob.has_magic(spec):
            found = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
            if not found:
                raise MevqaError(f"--config {spec}: the pattern matches no file")
        else:
            raise MevqaError(f"{path}: config file not found")
        paths += [p for p in found if p.resolve() not in {q.resolve() for q in paths}]
    return paths


def resolve_config(path: Path, overrides: list[str]) -> CvConfig:
    """Read a training config with the overrides, as the recipe will, and decide zero-shot and the recipe.

    Zero-shot is decided by the file alone (``num_train_epochs: 0`` and no positive ``max_steps``), so overrides such as
    ``--max_steps 8`` given for the trained configs of the same command leave a zero-shot config zero-shot.
    """
    from mevqa.train.config import config_dict, load_config, load_yaml  # lazy: see LAZY below
    from mevqa.train.parts import PARTS  # lazy: torch, peft (the part names' one owner)

    raw = load_yaml(path)
    zero_shot = raw.get("num_train_epochs", 1) == 0 and raw.get("max_steps", -1) <= 0
    # A zero-shot config is checked as if it trained one epoch: every other field must still be valid.
    cfg = load_config(path, overrides + (["--num_train_epochs", "1", "--max_steps", "-1"] if zero_shot else []))
    values = {**config_dict(cfg), **({"num_train_epochs": 0} if zero_shot else {}),
              **{key: None for key in FOLD_FIELDS}}
    recipe = None if zero_shot else ("lora" if any(values[part] == "lora" for part in PARTS) else "full")
    return CvConfig(name=path.stem, path=path, values=values, zero_shot=zero_shot, recipe=recipe)


def read_folds(folds_dir: Path) -> list[Fold]:
    """The folds of a ``mevqa split`` folder (``folds.json`` and ``fold_K/{train,val}.jsonl``)."""
    summary_path = folds_dir / "folds.json"
    if not summary_path.is_file():
        raise MevqaError(f"{folds_dir}: not a mevqa split folder (no folds.json); make one with mevqa split")
    summary = read_json(summary_path)
    if not isinstance(summary, list) or not summary:
        raise MevqaError(f"{summary_path}: expected a non-empty list of folds")
    folds = []
    for entry in summary:
        if not isinstance(entry, dict) or not isinstance(entry.get("fold"), int):
            raise MevqaError(f"{summary_path}: expected entries with an integer 'fold', got {entry!r:.80}")
        fold = Fold(entry["fold"], folds_dir / f"fold_{entry['fold']}" / "train.jsonl",
                    folds_dir / f"fold_{entry['fold']}" / "val.jsonl", list(entry.get("val_subjects", [])))
        for path in (fold.train, fold.val):
            if not path.is_file():
                raise MevqaError(f"{path}: missing (listed in {summary_path})")
        folds.append(fold)
    # Pooling needs every held-out row once: a row held out twice (in two folds, or twice in one) would be scored
    # twice.
    held_out: dict[str, str] = {}
    for fold in folds:
        for row in read_jsonl(fold.val):
            where = f"{fold.val}:{row['_line']}"
            first = held_out.setdefault(row_id(row), where)
            if first != where:
                raise MevqaError(f"{where}: row {row_id(row)!r} is held out at {first} too; every row must be held "
                                 f"out once")
    return folds


def parse_gpus(text: str | None) -> list[str]:
    if text is None:
        return []
    gpus = [part.strip() for part in text.split(",")]
    if not all(gpus) or len(set(gpus)) != len(gpus):
        raise MevqaError(f"--gpus {text}: expected distinct GPU ids separated by commas, e.g. 0,1,2,3")
    return gpus


def check_gpus(gpus: list[str]) -> None:
    """--gpus names CUDA devices of this machine: without CUDA every run would train on the CPU, one per "GPU" at a
    time, without a word. Ids that are not numbers (GPU or MIG UUIDs) are left to CUDA."""
    import torch  # lazy: see LAZY

    count = torch.cuda.device_count()
    if count == 0:
        raise MevqaError(f"--gpus {','.join(gpus)}: this machine has no CUDA device (torch {torch.__version__}, "
                         "CUDA available: no); leave out --gpus to run the folds one after another")
    beyond = [gpu for gpu in gpus if gpu.isdigit() and int(gpu) >= count]
    if beyond:
        raise MevqaError(f"--gpus {','.join(gpus)}: GPU {beyond[0]} does not exist (this machine has {count}: "
                         f"0..{count - 1})")


def check_single_process(accelerate_config: Path) -> None:
    """--gpus gives each run one GPU: an accelerate config asking for several processes cannot run there."""
    try:
        data = yaml.safe_load(accelerate_config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MevqaError(f"{accelerate_config}: cannot read the accelerate config ({exc})") from None
    processes = data.get("num_processes", 1) if isinstance(data, dict) else 1
    if processes != 1:
        raise MevqaError(f"{accelerate_config}: num_processes {processes}, but --gpus runs each fold on one GPU; "
                         f"use a one-process config (e.g. recipes/accelerate/single_gpu.yaml) or leave out --gpus")


# --- commands ---------------------------------------------------------------------------------------------------
def train_command(config: CvConfig, fold: Fold, run_dir: Path, overrides: list[str],
                  accelerate_config: Path | None) -> list[str]:
    launcher = (["--config_file", str(accelerate_config)] if accelerate_config else
                # One process; mixed precision is then whatever the training config says.
                ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"])
    launch = console_command("accelerate", "accelerate.commands.launch", ["launch"])
    return [*launch, *launcher, str(recipe_path(config.recipe)), "--config", str(config.path), *overrides,
            "--train_file", str(fold.train), "--eval_file", "none", "--eval_strategy", "no",
            "--output_dir", str(run_dir)]


def predict_command(config: CvConfig, questions: list[Path], out: Path, model_dir: Path | None) -> list[str]:
    """``mevqa predict`` for the held-out rows: with the trained model (``model_dir/final``) or zero-shot."""
    values = config.values
    command = [*console_command("mevqa", "mevqa"), "predict", "--questions", *map(str, questions), "--out", str(out),
               "--batch-size", str(values["per_device_eval_batch_size"]),
               "--max-new-tokens", str(values["eval_max_new_tokens"])]
    if config.zero_shot:
        from mevqa.answering.strategies import uses_option  # lazy: torch

        command += ["--model", values["model_name_or_path"]]
        for key, flag in ZERO_SHOT_FLAGS.items():
            value = values.get(key)
            option = key.removeprefix("answer_")
            if key.startswith("answer_") and key != "answer_strategy" and \
                    not uses_option(values.get("answer_strategy") or "direct", option):
                continue  # every config holds every option; predict takes only those its strategy reads
            if key == "system_prompt" and value is None:
                value = "none"
            if isinstance(value, list):
                command += [part for item in value for part in (flag, str(item))]
            elif value is not None:
                command += [flag, str(value)]
    elif config.recipe == "lora":
        command += ["--model", values["model_name_or_path"], "--adapter", str(model_dir / "final")]
    else:
        command += ["--model", str(model_dir / "final")]
    return command


def check_predict_flags(config: CvConfig) -> None:
    """Fail before any run when a zero-shot setting has no ``mevqa predict`` flag to carry it."""
    from mevqa.answering import predict  # lazy: torch and transformers

    parser = argparse.ArgumentParser(add_help=False)
    predict.add_arguments(parser)
    command = predict_command(config, [Path("q.jsonl")], Path("out"), None)
    _, unknown = parser.parse_known_args(command[command.index("predict") + 1:])
    flags = [arg for arg in unknown if arg.startswith("--")]
    if flags:
        keys = [key for key, flag in ZERO_SHOT_FLAGS.items() if flag in flags]
        raise MevqaError(f"{config.path}: zero-shot config sets {', '.join(keys)}, which mevqa predict has no "
                         f"option for ({', '.join(flags)}); leave them out of the zero-shot config")


# --- running ----------------------------------------------------------------------------------------------------
class StepFailed(Exception):
    def __init__(self, what: str, command: list[str], status: int, log_path: Path):
        super().__init__(what)
        self.what, self.command, self.status, self.log_path = what, command, status, log_path


def run_step(what: str, command: list[str], log_path: Path, gpu: str | None) -> float:
    """Run one command with its output appended to ``log_path``; StepFailed on a non-zero exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    prefix = ""
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
        prefix = f"CUDA_VISIBLE_DEVICES={gpu} "
    shown = prefix + shlex.join(command)
    log.info("%s: $ %s", what, shown)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shown}\n")
        handle.flush()
        status = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise StepFailed(what, command, status, log_path)
    return time.perf_counter() - start


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    # Progress bars rewrite their line with carriage returns; keep the last state of each line.
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.rstrip().splitlines()[-lines:])


def answered_ids(path: Path) -> set[str]:
    """Ids answered in a ``mevqa predict`` predictions file; a last line cut short by a kill is not counted."""
    return {row_id(record) for _, record in read_log(path, repair=False)}  # predict repairs its own log


def val_ids(fold: Fold) -> list[str]:
    return [row_id(row) for row in read_jsonl(fold.val)]


def failed_only_by_empty_answers(predict_dir: Path) -> set[str] | None:
    """The rows of mevqa predict's last run (``errors.jsonl``) if every one failed only because the model's answer was
    empty, else None (no errors file, no failed row, or a row that failed for another reason)."""
    from mevqa.answering.predict import ERRORS  # lazy: torch and transformers

    path = predict_dir / ERRORS
    if not path.is_file():
        return None
    errors = read_jsonl(path)
    if not errors or not all(str(entry.get("error", "")).endswith(EMPTY_ANSWER_ERROR) for entry in errors):
        return None
    return {str(entry["id"]) for entry in errors}


@dataclass
class Job:
    config: CvConfig
    folds: list[Fold]               # one fold for a trained config, all folds for a zero-shot config

    @property
    def name(self) -> str:
        return f"{self.config.name}/{self.folds[0].name}" if not self.config.zero_shot else \
            f"{self.config.name}/zero-shot"


class Runner:
    def __init__(self, out: Path, overrides: list[str], accelerate_config: Path | None):
        self.out, self.overrides, self.accelerate_config = out, overrides, accelerate_config
        self.stop = threading.Event()

    def fold_dir(self, config: CvConfig, fold: Fold) -> Path:
        return self.out / config.name / fold.name

    def predictions_of(self, config: CvConfig, fold: Fold) -> Path:
        base = self.out / config.name / "predict" if config.zero_shot else self.fold_dir(config, fold) / "predict"
        from mevqa.answering.predict import FINAL  # lazy: torch and transformers

        return base / FINAL  # what predict submits and scores: its answers made consistent per clip where asked

    def empty_answers_path(self, config: CvConfig, fold: Fold) -> Path:
        return self.predictions_of(config, fold).parent.parent / EMPTY_ANSWERS

    def empty_answers(self, config: CvConfig, fold: Fold) -> set[str]:
        path = self.empty_answers_path(config, fold)
        return set(read_json(path)["ids"]) if path.is_file() else set()

    def done_ids(self, config: CvConfig, fold: Fold) -> set[str]:
        """Held-out rows predict answered, or whose empty answer is recorded."""
        return answered_ids(self.predictions_of(config, fold)) | self.empty_answers(config, fold)

    def finished(self, config: CvConfig, fold: Fold) -> bool:
        return (self.fold_dir(config, fold) / "scores.json").is_file() and \
            set(val_ids(fold)) <= self.done_ids(config, fold)

    def predict(self, job: Job, command: list[str], log_path: Path, gpu: str | None) -> None:
        """Run mevqa predict; rows it could not answer only because the model answered them with nothing are
        recorded as empty answers (module docstring), any other failure stops the job."""
        predict_dir = self.predictions_of(job.config, job.folds[0]).parent
        record = self.empty_answers_path(job.config, job.folds[0])
        try:
            run_step(f"{job.name} predict", command, log_path, gpu)
        except StepFailed as failed:
            # Status 1 is predict's "finished, some rows failed"; anything else (an error, a kill) stops the job.
            empty = failed_only_by_empty_answers(predict_dir) if failed.status == 1 else None
            if empty is None:
                raise
            write_json(record, {"ids": sorted(empty), "why": f"mevqa predict: {EMPTY_ANSWER_ERROR}; scored as an "
                                                             "empty answer", "log": str(log_path)})
            log.warning("%s: the model answered %d held-out row(s) with nothing (first: %s); they are scored as empty "
                        "answers, listed in %s", job.name, len(empty), min(empty), record)
        else:
            record.unlink(missing_ok=True)   # answered now (sampling may differ between runs)

    def run(self, job: Job, gpu: str | None) -> str:
        """Train (unless done), predict (unless done) and score each fold of the job; returns what it did."""
        config = job.config
        todo = [fold for fold in job.folds if not self.finished(config, fold)]
        if not todo:
            return "skipped (finished before)"
        if self.stop.is_set():
            return "not started (an earlier run failed)"
        if config.zero_shot:
            predictions = self.predictions_of(config, todo[0])
            if not {i for fold in job.folds for i in val_ids(fold)} <= self.done_ids(config, todo[0]):
                self.predict(job, predict_command(config, [fold.val for fold in job.folds], predictions.parent, None),
                             self.out / config.name / "predict.log", gpu)
        else:
            (fold,) = todo
            folder = self.fold_dir(config, fold)
            model_dir, trained = folder / "model", folder / "trained.json"
            if not (trained.is_file() and (model_dir / "final").is_dir()):
                checkpoints = sorted(model_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                                     if p.name.split("-")[-1].isdigit() else -1)
                if checkpoints:
                    log.info("%s: training resumes from %s", job.name, checkpoints[-1])
                command = train_command(config, fold, model_dir, self.overrides, self.accelerate_config)
                seconds = run_step(f"{job.name} train", command, folder / "train.log", gpu)
                write_json(trained, {"command": command, "seconds": round(seconds, 1)})
            if not set(val_ids(fold)) <= self.done_ids(config, fold):
                self.predict(job, predict_command(config, [fold.val], folder / "predict", model_dir),
                             folder / "predict.log", gpu)
        for fold in todo:
            self.score_fold(config, fold)
        return "done"

    def held_out_predictions(self, config: CvConfig, fold: Fold) -> list[dict]:
        """The fold's predictions in held-out row order: predict's answers, and ``""`` for each recorded empty
        answer (flagged ``empty_answer``)."""
        path = self.predictions_of(config, fold)
        answers = {row_id(row): row for row in read_rows(path)} if path.is_file() else {}  # none: all empty
        empty = self.empty_answers(config, fold)
        rows = []
        for rid in val_ids(fold):
            if rid in answers:
                rows.append(answers[rid])
            elif rid in empty:
                rows.append({"id": rid, "answer": "", "empty_answer": True})
        return rows

    def score_fold(self, config: CvConfig, fold: Fold) -> dict:
        gold = read_rows(fold.val)
        preds = self.held_out_predictions(config, fold)
        report = with_empty_count(score(preds, gold), preds)
        predictions = self.predictions_of(config, fold)
        if report["counts"]["missing"]:
            raise MevqaError(f"{predictions}: {report['counts']['missing']} held-out rows of {fold.val} have no "
                             f"prediction after mevqa predict finished")
        folder = self.fold_dir(config, fold)
        write_json(folder / "scores.json", stamp(report, config=trained_config(config, folder / "model"),
                                                 seed=config.values["seed"],
                                                 pred_files=[predictions] if predictions.is_file() else [],
                                                 gold_files=[fold.val]))
        return report


def with_empty_count(report: dict, predictions: list[dict]) -> dict:
    """``report`` with ``counts.empty_answers``: the rows whose answer is a recorded empty answer."""
    report["counts"]["empty_answers"] = sum(bool(row.get("empty_answer")) for row in predictions)
    return report


def trained_config(config: CvConfig, model_dir: Path) -> dict:
    """The config the recipe recorded with the final weights (what really ran), else cv's resolved one."""
    from mevqa.train.config import CONFIG_NAME, load_yaml  # lazy: see LAZY below

    recorded = model_dir / "final" / CONFIG_NAME
    return load_yaml(recorded) if not config.zero_shot and recorded.is_file() else config.values


def run_jobs(runner: Runner, jobs: list[Job], gpus: list[str]) -> None:
    """Run the jobs one at a time, or one per GPU at a time; after a failure start no new job."""
    free: queue.Queue = queue.Queue()
    for gpu in gpus or [None]:
        free.put(gpu)
    failures: list[tuple[Job, Exception]] = []

    def work(job: Job) -> str:
        gpu = free.get()
        try:
            return runner.run(job, gpu)
        except (StepFailed, MevqaError):
            runner.stop.set()
            raise
        finally:
            free.put(gpu)

    bar = tqdm(total=len(jobs), desc="cv", unit="run", dynamic_ncols=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(gpus))) as pool:
        futures = {pool.submit(work, job): job for job in jobs}
        try:
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                try:
                    log.info("%s: %s", job.name, future.result())
                except (StepFailed, MevqaError) as exc:
                    failures.append((job, exc))
                bar.update(1)
        except BaseException:  # Ctrl-C: the runs under way get the signal too; start no other
            runner.stop.set()
            for future in futures:
                future.cancel()
            raise
    bar.close()
    if failures:
        for job, exc in failures:
            if isinstance(exc, StepFailed):
                log.error("%s failed with exit status %d: $ %s\n--- last lines of %s ---\n%s", exc.what, exc.status,
                          shlex.join(exc.command), exc.log_path, log_tail(exc.log_path))
            else:
                log.error("%s failed: %s", job.name, exc)
        first_job, first = failures[0]
        detail = (f"{first.what} exited with status {first.status} (command and output in {first.log_path})"
                  if isinstance(first, StepFailed) else f"{first_job.name}: {first}")
        raise MevqaError(f"{len(failures)} of {len(jobs)} runs failed; first: {detail}; rerun the same command to "
                         f"resume once fixed")


# --- settings, pooling and the report ------------------------------------------------------------------------
@contextlib.contextmanager
def locked(out: Path):
    """Make ``out`` and hold its lock while the block runs: a second mevqa cv there is refused."""
    with folder_lock(ensure_dir(out), LOCK, "mevqa cv"):
        yield


def check_settings(out: Path, folds_dir: Path, configs: list[CvConfig], overrides: list[str]) -> None:
    """Record the runs' settings in ``OUT/cv.json``; refuse configs that resolve differently from earlier runs."""
    path = out / SETTINGS
    # The fold files' hashes too: a fold edited after its runs finished would be pooled over other rows silently.
    folds = {"folder": str(folds_dir.resolve()), "folds_json_sha256": file_sha256(folds_dir / "folds.json"),
             "files_sha256": {path.relative_to(folds_dir).as_posix(): file_sha256(path)
                              for path in sorted(folds_dir.glob("fold_*/*.jsonl"))}}
    previous = read_json(path) if path.is_file() else {"configs": {}}
    before = previous.get("folds")
    if before is not None and {**before, "files_sha256": None} != {**folds, "files_sha256": None}:
        raise MevqaError(f"{out}: holds runs over other folds ({before['folder']}, see {path}); use another --out")
    changed = differences(before["files_sha256"], folds["files_sha256"]) if before and "files_sha256" in before else []
    if changed:
        raise MevqaError(f"{folds_dir / changed[0]}: changed since the runs in {out} were made over it (sha256 "
                         f"recorded in {path}); restore the fold file or use another --out")
    recorded = dict(previous["configs"])
    for config in configs:
        before, values = recorded.get(config.name), _jsonable(config.values)
        changed = differences(before["values"], values) if before is not None else []
        if changed:
            raise MevqaError(f"{config.path}: resolves differently from the config {config.name!r} already run in "
                             f"{out} ({', '.join(changed)} differ, see {path}); use another --out or another name")
        recorded[config.name] = {"file": str(config.path), "values": values, "zero_shot": config.zero_shot,
                                 "recipe": config.recipe, "family": config.family, "overrides": overrides}
    write_json(path, {"folds": folds, "configs": recorded})


def _jsonable(values: dict) -> dict:
    return json.loads(json.dumps(values))


def pool_config(runner: Runner, config: CvConfig, folds: list[Fold], *, resamples: int, seed: int) -> dict:
    """Pool a config's fold predictions (fold order, held-out row order), score them with intervals, and write
    ``OUT/<config>/predictions.jsonl`` and ``scores.json``. Returns the per-config scores."""
    pooled, gold, fold_scores = [], [], []
    for fold in folds:
        pooled += runner.held_out_predictions(config, fold)
        gold += read_rows(fold.val)
        report = read_json(runner.fold_dir(config, fold) / "scores.json")
        report.pop("stamp", None)
        fold_scores.append({"fold": fold.index, "val_subjects": fold.val_subjects, "report": report})
    folder = runner.out / config.name
    write_jsonl(folder / "predictions.jsonl", pooled)
    result = {"family": config.family,
              "pooled": with_empty_count(score(pooled, gold, bootstrap=resamples, seed=seed), pooled),
              "folds": fold_scores}
    write_json(folder / "scores.json", stamp(result, config=_jsonable(config.values), seed=seed,
                                             pred_files=[folder / "predictions.jsonl"],
                                             gold_files=[fold.val for fold in folds]))
    return result


def write_report(out: Path, folds: list[Fold], configs: list[CvConfig], results: dict[str, dict]) -> Path:
    """``OUT/report.md`` and ``OUT/plots/``: the pooled table with intervals, Avg per fold, intervals per config,
    and each config's pooled confusion matrices."""
    pooled = {name: result["pooled"] for name, result in results.items()}
    fold_avgs = {name: [entry["report"]["avg"] for entry in result["folds"]] for name, result in results.items()}
    files = {"plots/avg_per_fold.png": fold_avg_png(fold_avgs, [fold.name for fold in folds], pooled),
             "plots/intervals.png": intervals_png(pooled)}
    for name, report in pooled.items():
        files.update({f"plots/{name}_confusion_{kind}.png": png for kind, png in confusion_pngs(report).items()})
    markdown = cv_markdown(pooled, fold_avgs, folds=[(fold.name, fold.val_subjects) for fold in folds],
                           zero_shot={config.name: config.zero_shot for config in configs}, images=list(files))
    files["report.md"] = markdown.encode("utf-8")
    for name, data in files.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
    return out / "report.md"


def cross_validate(configs: list[CvConfig], folds_dir: Path, out: Path, *, overrides: list[str],
                   gpus: list[str], accelerate_config: Path | None, resamples: int, seed: int) -> dict:
    """Run every config over every fold (resuming), pool, score and write the report. Returns OUT/scores.json's
    content."""
    folds = read_folds(folds_dir)
    with locked(out):
        check_settings(out, folds_dir, configs, overrides)
        runner = Runner(out, overrides, accelerate_config)
        jobs = []
        for config in configs:  # a zero-shot config is one job over all folds (one model load)
            jobs += [Job(config, folds)] if config.zero_shot else [Job(config, [fold]) for fold in folds]
        log.info("%d configs x %d folds: %d runs (%s)", len(configs), len(folds), len(jobs),
                 f"one per GPU at a time on {','.join(gpus)}" if gpus else "one after another")
        run_jobs(runner, jobs, gpus)
        results = {config.name: pool_config(runner, config, folds, resamples=resamples, seed=seed)
                   for config in configs}
        summary = {"folds": str(folds_dir), "configs": results}
        write_json(out / "scores.json", stamp(summary, config={c.name: _jsonable(c.values) for c in configs},
                                              seed=seed, pred_files=[out / c.name / "predictions.jsonl"
                                                                     for c in configs],
                                              gold_files=[fold.val for fold in folds]))
        write_report(out, folds, configs, results)
    return summary


# --- the command ------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="extend", nargs="+", required=True, metavar="CFG",
                        help="training config(s): YAML files, folders of them, or quoted glob patterns; repeatable")
    parser.add_argument("--folds", required=True, type=Path, metavar="DIR", help="a mevqa split output folder")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT", help="output folder (see below)")
    parser.add_argument("--gpus", metavar="0,1,...", help="run one fold per GPU at a time on these GPUs")
    parser.add_argument("--accelerate-config", type=Path, metavar="F",
                        help="accelerate config file for the training launches (default: one process)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="resamples of clips for the pooled 95%% intervals (default: 1000)")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the resampling (default: 0)")
    parser.add_argument("overrides", nargs="*", metavar="-- --field value",
                        help="config overrides for every run, after --")
    parser.epilog = __doc__[__doc__.index("Output folder::"):].replace("::", ":")
    parser.formatter_class = HelpFormatter  # the description's layout is kept


def run(args: argparse.Namespace) -> int:
    from mevqa.train.config import parse_overrides  # lazy: see LAZY below

    check_resampling(args.bootstrap, args.seed)
    overrides = list(args.overrides)
    taken = sorted(set(parse_overrides(overrides)) & set(FOLD_FIELDS))
    if taken:
        raise MevqaError(f"-- overrides: {', '.join(taken)} is set by mevqa cv for each fold; leave it out")
    gpus = parse_gpus(args.gpus)
    if args.accelerate_config is not None:
        if not args.accelerate_config.is_file():
            raise MevqaError(f"{args.accelerate_config}: accelerate config not found")
        if gpus:
            check_single_process(args.accelerate_config)
    if gpus:
        check_gpus(gpus)
    configs = [resolve_config(path, overrides) for path in expand_configs(args.config)]
    names = [config.name for config in configs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise MevqaError(f"--config: two configs are named {repeated[0]!r} (file stems name the runs); rename one")
    for config in configs:
        if config.zero_shot:
            check_predict_flags(config)
        else:
            recipe_path(config.recipe)
    refuse_outputs_onto_inputs(
        outputs={"--out": [args.out / name for name in (SETTINGS, "scores.json", "report.md", "plots", *names)]},
        into={"--out": args.out}, inputs={"--folds": args.folds, "--config": [config.path for config in configs],
                                          "--accelerate-config": args.accelerate_config})
    summary = cross_validate(configs, args.folds, args.out, overrides=overrides, gpus=gpus,
                             accelerate_config=args.accelerate_config, resamples=args.bootstrap, seed=args.seed)
    print(pooled_markdown({name: result["pooled"] for name, result in summary["configs"].items()}))
    print(f"\nreport: {args.out / 'report.md'}; scores: {args.out / 'scores.json'}")
    return 0
