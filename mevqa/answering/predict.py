"""``mevqa predict``: answer question files in batches, as you go and resumably, then write the submission files.

Question rows are either official test rows (``video_id``, ``video``, ``question``; the clip is the folder or video
file named ``video`` under ``--clips``, ``video`` being one plain name) or training-style rows that carry ``media``
from ``mevqa build-data`` (read and confined by :func:`mevqa.rows.read_rows`). Raw clips get their inputs built once,
with the media settings the model was trained with (:mod:`mevqa.answering.inference`), under ``OUT/media/<video>/``;
rows that carry media built with other settings are refused (:func:`check_row_media`).

Answers come from the answer strategy (``--strategy``, :mod:`mevqa.answering.strategies`; default: the one the model's
``train_config.yaml`` names, else ``direct``), a batch being whole clips (:func:`mevqa.answering.consistency.clip_key`),
so that ``hierarchical``, ``au-rules`` and ``constrained`` composites use the clip's own answers. Each dataset of the
questions may have its own model (``--model-for DATASET=MODEL``, ``--adapter-for DATASET=ADAPTER``): each model is
loaded once, answers its datasets' rows with the settings of its own ``train_config.yaml`` (inputs built for it),
and is released before the next loads. Once every row is answered, the answers are made consistent per clip
(:func:`mevqa.answering.consistency.consistent_answers`; ``--consistent``, by default for the rows of official
``*_to_answer`` files only) into ``final_predictions.jsonl``, which the submission files and ``--gold`` scores read;
``predictions.jsonl`` keeps the answers as the model gave them, so that a rerun resumes from it.

Output folder::

    OUT/predictions.jsonl   one line per answered row as answered (the question row with ``answer`` filled, plus how
                            it was reached: ``label_probs``, ``votes``, ``rule``, ``coarse_hint``, ...), appended
                            and synced batch by batch; a rerun skips the rows already there
    OUT/final_predictions.jsonl   the answers submitted and scored: every answered row in question order, made
                            consistent per clip where --consistent applies (a changed answer says why in
                            ``consistency``); rewritten from predictions.jsonl at the end of every run
    OUT/errors.jsonl        rows that could not be answered in the last run (``id``, ``where``, ``error``)
    OUT/run.json            models, adapters, a fingerprint of their weights, and the settings of the answers
                            (strategy included); a rerun with other settings or changed weights is refused
    OUT/media/<video>/      inputs built from raw clips
    OUT/<official>_pred.jsonl, OUT/submission.zip   when every row of official ``*_to_answer.jsonl`` files is answered
    OUT/scores.json         with ``--gold``
    OUT/.predict.lock       held while a run writes here: a second run on the same folder is refused

A failed row (missing clip, unreadable frame, no input for the mode, an empty answer) is recorded in
``errors.jsonl`` and the run goes on, ending with exit status 1; ``--strict`` stops at the first one (status 2). A
rerun retries the failed rows. A model none of whose rows has its inputs is not loaded.

The weights fingerprint is the SHA-256 of every weight file (``*.safetensors``, ``*model*.bin``) of the model and
adapter folders (a hub name: its snapshot in the Hugging Face cache, whose blobs are named by their SHA-256, so
nothing is read). Hashing a local 7B checkpoint takes about a minute, so ``run.json`` keeps each file's size and
modification time beside its digest, and on a rerun a file whose size and modification time are unchanged keeps its
digest; a retrain in place rewrites the file, changes its time, and is hashed again.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from tqdm.auto import tqdm

from mevqa import vocab
from mevqa.answering.consistency import consistent_answers
from mevqa.answering.inference import (ClipInputs, InferenceSettings, add_arguments as add_inference_arguments,
                                       answer_batch, check_weight_files, load_model, resolve_settings)
from mevqa.answering.strategies import Answer, parse_dataset_items
from mevqa.answering.submission import ZIP_NAME, pred_file_name, write_submission
from mevqa.cli_style import HelpFormatter
from mevqa.errors import MevqaError
from mevqa.eval import read_rows as read_gold, score
from mevqa.eval.report import format_table
from mevqa.eval.stamp import stamp
from mevqa.jsonl import ensure_dir, file_sha256, read_json, strip_private, write_json, write_jsonl
from mevqa.log import is_main_process
from mevqa.longvideo import lvqa
from mevqa.models.families import family_of_source
from mevqa.paths import refuse_outputs_onto_inputs
from mevqa.rows import clip_key, clip_name, read_rows, row_id, where
from mevqa.runfolder import LogAppender, differences, drop_torn_line, folder_lock

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
FINAL = "final_predictions.jsonl"
ERRORS = "errors.jsonl"
RUN_CONFIG = "run.json"
SCORES = "scores.json"
BOOTSTRAP_RESAMPLES = 1000  # --gold: 95% intervals from clip resamples (seed 0), as mevqa eval gives by default
LOCK = ".predict.lock"
WEIGHT_PATTERNS = ("*.safetensors", "*model*.bin")


# --- questions ----------------------------------------------------------------------------------------------------
def is_official(path) -> bool:
    """An official question file (``*_to_answer*.jsonl``): predictions for it go into submission files."""
    return "_to_answer" in Path(path).stem


# --- the output folder ------------------------------------------------------------------------------------------
def read_predictions(path: Path) -> dict[str, dict]:
    """Answered rows by id. A last line cut short by a kill is dropped (and cut from the file); rows with an empty
    answer (written by an older mevqa) are dropped from the file so that they are asked again; any other bad line
    is an error, since that file was not written by a run of this command."""
    drop_torn_line(path)
    if not path.is_file():
        return {}
    rows = read_rows(path, required=("answer",))
    answered = [row for row in rows if row["answer"].strip()]
    if len(answered) < len(rows):
        log.warning("%s: %d empty answers dropped; those rows are asked again", path, len(rows) - len(answered))
        write_jsonl(path, answered)
    return {row_id(row): row for row in answered}


def refuse_answers_to_other_questions(rows: list[dict], answered: dict[str, dict], out: Path) -> None:
    """Answers are kept by id, so a row whose id the folder answered for another question (an edited question file,
    or another file with the same ids: the 2025 and 2026 test files share theirs) would take that answer. Refused
    before anything is written."""
    for row in rows:
        before = answered.get(row_id(row))
        if before is not None and str(before.get("question", "")).strip() != row["question"].strip():
            raise MevqaError(f"{where(row)}: id {row_id(row)!r} asks {row['question']!r}, but {where(before)} holds "
                             f"the answer to {before.get('question')!r} under that id; use another --out, or delete "
                             f"{out / PREDICTIONS} to start over")


def model_folder(name) -> Path | None:
    """The local folder of a model: the folder given, else the hub cache's snapshot of that name (None if not
    cached)."""
    path = Path(str(name)).expanduser()
    if path.is_dir():
        return path
    try:
        return Path(snapshot_download(str(name), local_files_only=True))
    except (OSError, ValueError):
        return None


def weights_fingerprint(folder, previous: dict | None = None) -> dict:
    """``{file name: {"size", "mtime_ns", "sha256"}}`` for the weight files of ``folder`` (see the module
    docstring); an entry of ``previous`` whose size and mtime match is reused instead of hashing again."""
    previous = previous or {}
    fingerprint = {}
    local = model_folder(folder)
    if local is None:
        return {}
    for path in sorted({p for pattern in WEIGHT_PATTERNS for p in local.glob(pattern) if p.is_file()}):
        stat = path.stat()
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        before = previous.get(path.name)
        same = isinstance(before, dict) and all(before.get(k) == v for k, v in entry.items())
        entry["sha256"] = before["sha256"] if same and "sha256" in before else _sha256(path)
        fingerprint[path.name] = entry
    return fingerprint


def _sha256(path: Path) -> str:
    """The file's SHA-256. A weight file in the Hugging Face cache is a link to a blob named by that very digest, so
    a hub model costs nothing to fingerprint; any other file is read."""
    target = path.resolve()
    if path.is_symlink() and target.parent.name == "blobs" and len(target.name) == 64 \
            and all(c in "0123456789abcdef" for c in target.name):
        return target.name
    return file_sha256(path)


@dataclass
class ModelRun:
    """One model (with its adapter) and the question rows it answers."""
    model: str | None
    adapter: Path | None
    datasets: list[str] | None               # the datasets it was named for; None: every dataset without its own
    rows: list[dict] = field(default_factory=list)
    settings: InferenceSettings | None = None

    @property
    def key(self) -> tuple:
        return self.model, self.adapter

    def describe(self) -> str:
        named = f"datasets {', '.join(self.datasets)}" if self.datasets else "the other rows"
        return f"{self.model}{f' + adapter {self.adapter}' if self.adapter else ''} ({named})"


def plan_models(args: argparse.Namespace, rows: list[dict]) -> list[ModelRun]:
    """Which model answers which rows: a dataset's ``--model-for``/``--adapter-for``, else ``--model`` (with
    ``--adapter``). A dataset's adapter without its own model goes on ``--model``. Runs of the same model and
    adapter are one (loaded once)."""
    model_for = parse_dataset_items(getattr(args, "model_for", None), "--model-for", "MODEL")
    adapter_for = {dataset: Path(value) for dataset, value in
                   parse_dataset_items(getattr(args, "adapter_for", None), "--adapter-for", "ADAPTER").items()}
    present: dict[str, dict] = {}
    for row in rows:
        present.setdefault(vocab.row_dataset(row), row)
    for flag, named in (("--model-for", model_for), ("--adapter-for", adapter_for)):
        for dataset in named:
            if dataset not in present:
                have = ", ".join(sorted(str(d) for d in present if d)) or "no known dataset"
                raise MevqaError(f"{flag} {dataset}: no question row is of dataset {dataset} (the rows are of "
                                 f"{have})")
    runs: dict[tuple, ModelRun] = {}
    if any(dataset not in model_for and dataset not in adapter_for for dataset in present):
        if args.model is None:
            dataset = next(d for d in present if d not in model_for and d not in adapter_for)
            raise MevqaError(f"--model is needed: {where(present[dataset])} and the other rows of "
                             f"{dataset or 'an unknown dataset'} have no --model-for")
        runs[(args.model, args.adapter)] = ModelRun(args.model, args.adapter, None)
    elif args.adapter is not None:
        raise MevqaError("--adapter answers no row: every dataset of the questions has its own --model-for or "
                         "--adapter-for")
    elif args.model is not None and all(dataset in model_for for dataset in present):
        log.warning("--model %s answers no row: every dataset of the questions has its own --model-for", args.model)
    for dataset in present:
        if dataset not in model_for and dataset not in adapter_for:
            continue
        model = model_for.get(dataset, args.model)
        if model is None:
            raise MevqaError(f"--adapter-for {dataset} needs the model it applies to: --model, or --model-for "
                             f"{dataset}")
        adapter = adapter_for.get(dataset)
        run = runs.setdefault((model, adapter), ModelRun(model, adapter, []))
        if run.datasets is not None:
            run.datasets.append(dataset)
    for row in rows:
        dataset = vocab.row_dataset(row)
        named = dataset in model_for or dataset in adapter_for
        key = (model_for.get(dataset, args.model), adapter_for.get(dataset)) if named else (args.model, args.adapter)
        runs[key].rows.append(row)
    return list(runs.values())


def check_row_media(rows: list[dict], settings: InferenceSettings) -> None:
    """Rows that carry inputs from ``mevqa build-data`` must have been built as the model's inputs are: the media
    settings its ``train_config.yaml`` records, or the media flags given instead (with their warning). Checked only
    for a model that records them, and for rows whose media record theirs."""
    if settings.trained_media is None:
        return
    wanted = settings.media.record()
    for row in rows:
        built = (row.get("media") or {}).get("settings")
        if built is not None and built != wanted:
            differs = ", ".join(f"{key} {built.get(key)!r}" for key in wanted if built.get(key) != wanted.get(key))
            shown = ", ".join(f"{key} {wanted.get(key)!r}" for key in wanted if built.get(key) != wanted.get(key))
            raise MevqaError(f"{where(row)}: media built with {differs or built}, but the model is shown inputs built "
                             f"with {shown or wanted} ({settings.trained_config}: media_settings); rebuild the rows "
                             "with those settings, or give the media options that match the rows (e.g. "
                             "--flow, --blend), which are used with a warning")


def model_record(model, adapter, settings: InferenceSettings | None, previous: dict | None = None) -> dict:
    """One model's part of ``run.json``: where it is, its family (``config.model_type``), the fingerprint of its
    weights, and its settings."""
    previous = previous or {}
    weights = previous.get("weights") or {}
    path = Path(str(model)).expanduser()
    return {"model": str(path.resolve()) if path.exists() else model,
            "family": family_of_source(model).model_type,
            "adapter": str(Path(adapter).expanduser().resolve()) if adapter else None,
            "weights": {"model": weights_fingerprint(model, weights.get("model")),
                        "adapter": weights_fingerprint(adapter, weights.get("adapter")) if adapter else None},
            "settings": settings.record() if settings else None}


def run_config(args: argparse.Namespace, runs: list[ModelRun], previous: dict | None = None) -> dict:
    """What decides the answers: a rerun into the same folder must match it. The model of the rows without a
    model of their own is at the top (all null when every dataset has one); ``dataset_models`` holds each
    dataset's own."""
    previous = previous or {}
    default = next((run for run in runs if run.datasets is None), None)
    top = model_record(default.model, default.adapter, default.settings, previous) if default else \
        {"model": None, "adapter": None, "weights": None, "settings": None}
    config = {"model": top["model"], "family": top.get("family"), "adapter": top["adapter"], "dtype": args.dtype,
              "weights": top["weights"], "settings": top["settings"], "dataset_models": {}}
    before = previous.get("dataset_models") or {}
    for run in runs:
        for dataset in run.datasets or ():
            config["dataset_models"][dataset] = model_record(run.model, run.adapter, run.settings,
                                                             before.get(dataset))
    config["consistent"] = "official files" if args.consistent is None else args.consistent
    return config


# Recorded, but free to change between runs: it shapes only final_predictions.jsonl, which every run rewrites.
NEUTRAL = ("consistent",)


def check_run_config(out: Path, config: dict, previous: dict | None, resuming: bool) -> None:
    """Refuse to mix answers from different models, weights or settings in one output folder."""
    if resuming and previous is not None:
        changed = [name for name in differences(previous, config, by_digest=("weights",)) if name not in NEUTRAL
                   and not (name.rpartition(".")[2] == "family" and _lookup(previous, name) is None)]
        if changed:
            raise MevqaError(f"{out}: holds answers made with other settings ({', '.join(changed)} differ, see "
                             f"{out / RUN_CONFIG}); use another --out, or delete {out / PREDICTIONS} to start over")
    write_json(out / RUN_CONFIG, config)


def _lookup(record: dict, dotted: str):
    """The entry a dotted name of :func:`mevqa.runfolder.differences` points at (None when absent): a run.json
    written before the family was recorded holds none, and its weights fingerprint still decides."""
    for key in dotted.split("."):
        record = record.get(key) if isinstance(record, dict) else None
    return record


def read_run_config(out: Path) -> dict | None:
    path = out / RUN_CONFIG
    if not path.is_file():
        return None
    config = read_json(path)
    return config if isinstance(config, dict) else None


def prediction_row(row: dict, answer: str | Answer) -> dict:
    """The question row as it goes into predictions.jsonl: its own fields, without media, with the answer (and, for
    an :class:`mevqa.answering.strategies.Answer`, how it was reached:
    :meth:`~mevqa.answering.strategies.Answer.record`)."""
    kept = {key: value for key, value in strip_private(row).items() if key not in ("media", "clip")}
    if isinstance(answer, Answer):
        return {**kept, "answer": answer.text, **answer.record()}
    return {**kept, "answer": answer}


_RECORD_FIELDS = tuple(f.name for f in fields(Answer) if f.name != "text")


def answer_of(prediction: dict) -> Answer:
    """The :class:`mevqa.answering.strategies.Answer` a predictions.jsonl row holds."""
    return Answer(prediction["answer"], **{key: prediction[key] for key in _RECORD_FIELDS if key in prediction})


def final_predictions(questions: list[dict], answered: dict[str, dict], consistent) -> tuple[list[dict], int]:
    """(final rows, answers changed): the answered rows in question order, made consistent per clip
    (:func:`mevqa.answering.consistency.consistent_answers`) for the rows ``consistent`` covers: True all, False none,
    None the rows of official question files."""
    pairs = [(question, answered[row_id(question)]) for question in questions if row_id(question) in answered]
    rows = [prediction for _, prediction in pairs]
    covered = [i for i, (question, _) in enumerate(pairs)
               if consistent or (consistent is None and is_official(question["_file"]))]
    final = [strip_private(row) for row in rows]
    if not covered:
        return final, 0
    made = consistent_answers([rows[i] for i in covered], [answer_of(rows[i]) for i in covered])
    changed = 0
    for i, answer in zip(covered, made):
        if answer.text != rows[i]["answer"]:
            changed += 1
            final[i] = {**final[i], "answer": answer.text, **answer.record()}
    return final, changed


# --- the loop ---------------------------------------------------------------------------------------------------
def predict(model, processor, rows: list[dict], out: Path, settings: InferenceSettings, *, inputs: ClipInputs,
            batch_size: int = 8, strict: bool = False, progress: bool = True, append_errors: bool = False) -> dict:
    """Answer ``rows`` not yet in ``out/predictions.jsonl`` with the settings' strategy, appending each batch as it
    is done. A batch is whole clips (:func:`mevqa.answering.consistency.clip_key`), at least ``batch_size`` rows unless
    the rows run out; ``batch_size`` is also the rows per generation batch and the candidates per scoring pass.

    Returns ``{"answered": n, "failed": n, "skipped": n, "seconds": s, "media_seconds": s}``. Rows that fail
    (MevqaError, an empty answer included) go to ``out/errors.jsonl`` (started afresh unless ``append_errors``);
    with ``strict`` the first failure is raised.
    """
    if batch_size < 1:
        raise MevqaError(f"--batch-size must be at least 1, got {batch_size}")
    ensure_dir(out)
    done = read_predictions(out / PREDICTIONS)
    todo = [row for row in rows if row_id(row) not in done]
    stats = {"answered": 0, "failed": 0, "skipped": len(rows) - len(todo), "seconds": 0.0, "media_seconds": 0.0}
    if stats["skipped"]:
        log.info("%d of %d rows already answered in %s; %d to go", stats["skipped"], len(rows), out / PREDICTIONS,
                 len(todo))
    predictions, errors = LogAppender(out / PREDICTIONS), LogAppender(out / ERRORS, fresh=not append_errors)
    bar = tqdm(total=len(todo), desc="predict", unit="row", dynamic_ncols=True, disable=not progress
               or not is_main_process())
    start = time.perf_counter()

    def fail(row: dict, exc: MevqaError) -> None:
        if strict:
            raise exc
        log.warning("row %s failed: %s", row_id(row), exc)
        errors.append({"id": row_id(row), "where": where(row), "error": str(exc)})
        stats["failed"] += 1
        bar.update(1)

    def answer(batch: list[dict]) -> None:
        for row, result in answer_batch(model, processor, batch, settings, batch_size=batch_size):
            if isinstance(result, MevqaError):
                fail(row, result)
                continue
            predictions.add(prediction_row(row, result))
            stats["answered"] += 1
            bar.update(1)
        predictions.sync()

    clips: dict[tuple, list[dict]] = {}
    for row in todo:
        clips.setdefault(clip_key(row), []).append(row)
    try:
        pending = []
        for clip_rows in clips.values():
            for row in clip_rows:
                try:
                    pending.append(inputs.prepare(row))
                except MevqaError as exc:
                    fail(row, exc)
            if len(pending) >= batch_size:
                answer(pending)
                pending = []
        if pending:
            answer(pending)
    finally:
        bar.close()
        predictions.close()
        errors.close()
        stats["seconds"] = time.perf_counter() - start
        stats["media_seconds"] = inputs.seconds
    return stats


# --- the command ------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", nargs="+", required=True, type=Path, metavar="Q.jsonl",
                        help="question files: official *_to_answer.jsonl test files or QA jsonl from build-data")
    parser.add_argument("--clips", type=Path, metavar="DIR",
                        help="folder holding the clips the rows name ('video'): DIR/<video> or found by name below")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (see below)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="rows per generation batch and candidates per scoring pass; a batch is whole clips of "
                             "at least this many rows (default: 8)")
    parser.add_argument("--limit", type=int, help="answer only the first N rows (a rerun without it resumes)")
    parser.add_argument("--gold", nargs="+", type=Path, metavar="G.jsonl", help="score the predictions against "
                                                                                 "these gold files at the end")
    parser.add_argument("--strict", action="store_true", help="stop at the first row that fails")
    parser.add_argument("--consistent", action=argparse.BooleanOptionalAction, default=None,
                        help="make each clip's answers agree in final_predictions.jsonl: coarse with fine (under "
                             "constrained the more confident decides), one AU list, the composite assembled from the "
                             "clip's own answers (default: on for the rows of official *_to_answer files, off for "
                             "others)")
    group = parser.add_argument_group("one model per dataset (each loaded once; the rest use --model)")
    group.add_argument("--model-for", action="append", metavar="DATASET=MODEL",
                       help="the model answering a dataset's rows (samm, casme3, casme2, smic, 4dme; the dataset is "
                            "the row's 'dataset' or its id prefix), e.g. samm=runs/samm/merged; repeat per dataset")
    group.add_argument("--adapter-for", action="append", metavar="DATASET=ADAPTER",
                       help="the adapter answering a dataset's rows, on --model-for DATASET if given, else on --model")
    add_inference_arguments(parser, default_model=False)
    parser.epilog = __doc__[__doc__.index("Output folder::"):__doc__.index("A failed row")].replace("::", ":")
    parser.formatter_class = HelpFormatter  # the description's layout is kept


def run(args: argparse.Namespace) -> int:
    rows = read_rows(args.questions)  # ids unique across the files, questions non-empty, media confined
    for row in rows:
        lvqa.refuse_in_clip_task(row["question"], where(row), "answer ME-LVQA files with mevqa lvqa-predict")
        if row.get("media") is None and "video" in row:
            clip_name(row["video"], where(row), "video")  # a clip lies directly under --clips
    if args.limit is not None and args.limit < 1:
        raise MevqaError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise MevqaError(f"--batch-size must be at least 1, got {args.batch_size}")
    rows_to_answer = rows if args.limit is None else rows[:args.limit]
    if args.clips is not None and not args.clips.is_dir():
        raise MevqaError(f"{args.clips}: clips folder not found")
    runs = plan_models(args, rows)
    for run in runs:
        try:
            run.settings = resolve_settings(args, model_and_adapter=run.key)
            check_row_media(run.rows, run.settings)
            check_weight_files(*run.key)  # a damaged file fails here, before anything is written
        except MevqaError as exc:
            raise MevqaError(f"{exc} (model {run.describe()})" if len(runs) > 1 else str(exc)) from None
    written = [args.out / name for name in (PREDICTIONS, FINAL, ERRORS, RUN_CONFIG, SCORES, "media", ZIP_NAME)]
    written += [args.out / pred_file_name(path) for path in args.questions if is_official(path)]
    refuse_outputs_onto_inputs(outputs={"--out": written}, into={"--out": args.out}, inputs={
        "--questions": args.questions, "--clips": args.clips, "--gold": args.gold,
        "--model": [run.model for run in runs], "--adapter": [run.adapter for run in runs]})
    out = ensure_dir(args.out)
    with folder_lock(out, LOCK, "mevqa predict"):  # a second run here would append a second copy of every answer
        previous = read_run_config(out)
        refuse_answers_to_other_questions(rows, read_predictions(out / PREDICTIONS), out)
        answered_before = (out / PREDICTIONS).is_file() and (out / PREDICTIONS).stat().st_size > 0
        check_run_config(out, run_config(args, runs, previous), previous, resuming=answered_before)
        return _answer_and_report(args, rows, rows_to_answer, runs, out)


def _answer_and_report(args, rows, rows_to_answer, runs: list[ModelRun], out: Path) -> int:
    wanted = {row_id(row) for row in rows_to_answer}
    done = set(read_predictions(out / PREDICTIONS))
    stats = {"answered": 0, "failed": 0, "skipped": 0}
    (out / ERRORS).write_text("", encoding="utf-8")  # the rows that fail in this run
    for run in runs:
        todo = [row for row in run.rows if row_id(row) in wanted]
        if all(row_id(row) in done for row in todo):
            stats["skipped"] += len(todo)
            continue
        inputs = ClipInputs(run.settings, out / "media", args.clips)
        if any(_prepares(inputs, row) for row in todo if row_id(row) not in done):
            start = time.perf_counter()
            model, processor = load_model(args, run.settings, model_and_adapter=run.key)
            log.info("model %s loaded in %.1f s", run.describe(), time.perf_counter() - start)
        else:  # every row fails before the model is needed (its clips are missing, ...): its rows go to errors.jsonl
            log.warning("no row for model %s has its inputs; the model is not loaded", run.describe())
            model = processor = None
        try:
            run_stats = predict(model, processor, todo, out, run.settings, inputs=inputs, batch_size=args.batch_size,
                                strict=args.strict, append_errors=True)
        finally:
            del model, processor  # the next model loads into the memory this one held
            gc.collect()
            _empty_device_cache()
        rate = run_stats["answered"] / run_stats["seconds"] if run_stats["seconds"] else 0.0
        log.info("answered %d rows in %.1f s (%.2f rows/s, inputs built in %.1f s), %d failed, %d already done",
                 run_stats["answered"], run_stats["seconds"], rate, run_stats["media_seconds"], run_stats["failed"],
                 run_stats["skipped"])
        for key in stats:
            stats[key] += run_stats[key]

    answers = read_predictions(out / PREDICTIONS)
    pred_rows, changed = final_predictions(rows, answers, args.consistent)
    write_jsonl(out / FINAL, pred_rows)
    missing = len(rows) - len(pred_rows)
    print(f"predictions: {out / PREDICTIONS} ({len(pred_rows)} of {len(rows)} rows answered)")
    print(f"final: {out / FINAL} ({changed} answers changed to agree within their clip)")
    if stats["failed"]:
        print(f"errors: {out / ERRORS} ({stats['failed']} rows failed; fix them and rerun to answer only those)")
    official = [path for path in args.questions if is_official(path)]
    if official and not missing:
        official_ids = {row_id(row) for row in rows if is_official(row["_file"])}
        for path in write_submission(official, [row for row in pred_rows if row_id(row) in official_ids], out):
            print(f"submission: {path}")
    elif official:
        print(f"submission: not written, {missing} rows unanswered (rerun to finish them)")
    if args.gold:
        report = score(pred_rows, read_gold(args.gold), bootstrap=BOOTSTRAP_RESAMPLES)
        write_json(out / SCORES, stamp(report, config=read_run_config(out), seed=0, pred_files=[out / FINAL],
                                       gold_files=args.gold))
        print(format_table(report))
    return 1 if stats["failed"] else 0


def _prepares(inputs: ClipInputs, row: dict) -> bool:
    """Whether the row's inputs can be made (built once; :class:`ClipInputs` keeps them, and failures, per clip)."""
    try:
        inputs.prepare(row)
    except MevqaError:
        return False
    return True


def _empty_device_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
