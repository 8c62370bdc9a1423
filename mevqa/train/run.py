"""What ``recipes/lora.py`` and ``recipes/full.py`` run: :func:`main`.

Everything that can be checked is checked before the model loads, each failure one line: the config, the train and
eval files, the output folder (a folder, writable, and not in use: the main process holds
:func:`mevqa.runfolder.folder_lock` on it for the whole run), and the checkpoint to resume. The resume rule
(docs/design.md, "Training engine"; docs/training.md): ``auto`` takes the latest complete checkpoint (its
``run_state.json``, written last, exists); it is resumed only when its ``train_config.yaml`` equals the current
config outside :data:`~mevqa.train.config.RESULT_NEUTRAL` and the run length, its ``run_state.json`` equals the
current launch and data, it lies within the run, and every file it needs is intact. ``none`` starts over, removing
the previous run's outputs.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import math
import os
import pickle
import re
import shutil
import zipfile
from importlib.metadata import version
from pathlib import Path

import safetensors
import torch
import yaml
from packaging.version import Version
from transformers import AutoModelForImageTextToText, AutoProcessor, set_seed
from transformers.integrations import TensorBoardCallback
from transformers.trainer_pt_utils import safe_globals

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.eval import row_id
from mevqa.jsonl import ensure_dir, file_sha256
from mevqa.log import is_main_process
from mevqa.models.collate import Collator, QADataset
from mevqa.models.families import model_skeleton
from mevqa.models.loading import load_model_and_processor, set_pixel_budgets
from mevqa.rows import media_settings_of
from mevqa.runfolder import differences, folder_lock, remove_killed_folders
from mevqa.train import data as train_data
from mevqa.train.config import (BEST_DIR, CONFIG_NAME, FINAL_DIR, LOG_NAME, RUN_STATE_NAME, TRAINER_STATE_NAME,
                                TrainConfig, config_dict, help_text, launched_with, parse_args, resume_differences,
                                save_config)
from mevqa.train.parts import (apply_full, apply_lora, check_parts, check_selection, quantization_config,
                               trainable_summary)
from mevqa.train.trainer import MevqaTrainer, RunControl, append_log

log = logging.getLogger(__name__)

LOCK_NAME = ".train.lock"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def main(recipe: str, argv: list[str], summary: str = "") -> int:
    """Train with ``recipes/<recipe>.py`` (``recipe`` is "lora" or "full") on the command line ``argv``.

    The model loads only once the config, the data files, the output folder and the checkpoint have passed their
    checks: a mistake there fails before the slow part."""
    if "-h" in argv or "--help" in argv:
        if is_main_process():
            print(help_text(f"recipes/{recipe}.py", summary.strip()))
        return 0
    cfg = parse_args(argv)
    check_parts(cfg, recipe)
    if not cfg.train_file:
        raise MevqaError("config: train_file is required")
    train_rows = train_data.read_rows(cfg.train_file, "training", cfg)
    eval_rows = train_data.read_rows(cfg.eval_file, "validation", cfg) if cfg.eval_file else None
    if eval_rows is not None:
        check_metric_available(cfg, eval_rows)
    cfg.media_settings = media_settings(cfg, train_rows + (eval_rows or []))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    train_data.check_batch_sizes(cfg, world, len(train_rows), len(eval_rows) if eval_rows is not None else None)
    per_epoch = train_data.steps_per_epoch(len(train_rows), world, cfg.per_device_train_batch_size,
                                           cfg.gradient_accumulation_steps)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * per_epoch)
    output_dir = Path(cfg.output_dir)
    with contextlib.ExitStack() as held:
        if is_main_process():  # the lock lives as long as this process: the system drops it even on kill -9
            ensure_dir(output_dir, "output_dir")
            held.enter_context(folder_lock(output_dir, LOCK_NAME, "training run"))
        try:
            resume = resume_point(cfg, output_dir)
            if cfg.load_in_4bit:
                check_4bit()
            check_trackers(cfg)
            # Trainer's arguments: the config with the run's length in steps (RunOrder is one long epoch). Asking for
            # the world size forms the process group (and, under ZeRO-3, lets the model load sharded).
            args = copy.copy(cfg)
            args.max_steps = total_steps
            if args.world_size != world:
                raise MevqaError(f"the launcher's WORLD_SIZE={world} differs from the {args.world_size} processes "
                                 f"accelerate sees; launch with accelerate launch, mevqa train or torchrun")
            backend = backend_of(args)
            if launched_with("FSDP") and backend != "FSDP":
                raise MevqaError(f"FSDP was asked for, but accelerate turns FSDP on only for GPU-like devices and "
                                 f"this launch runs {backend}: it would silently be plain data parallel; launch FSDP "
                                 f"on GPUs, or DDP here (--multi_gpu)")
            if backend == "FSDP" and eval_rows is not None and cfg.eval_generate \
                    and cfg.answer_strategy != "direct":
                # FSDP gathers each layer inside its forward, a collective every process must join: generate keeps
                # the processes in step (synced_gpus), but the other strategies run different numbers of forward
                # passes per process, which would hang.
                raise MevqaError(f"config: answer_strategy={cfg.answer_strategy!r} cannot evaluate under FSDP "
                                 f"(only direct can); evaluate with --answer_strategy direct and answer with the "
                                 f"strategy after training (mevqa predict --strategy ...), or train with DeepSpeed "
                                 f"or DDP")
            run_state = {"world_size": args.world_size, "backend": backend,
                         "mixed_precision": args.mixed_precision, "train_file_sha256": file_sha256(cfg.train_file),
                         "eval_file_sha256": file_sha256(cfg.eval_file) if cfg.eval_file else None}
            start_step = check_resume(resume, cfg, run_state, total_steps) if resume is not None else 0
            check_model_modules(cfg, recipe)
            if is_main_process():
                clear_previous_run(output_dir, keep=resume)
                save_config(cfg, output_dir)
            args.distributed_state.wait_for_everyone()
            return _train(recipe, cfg, args, train_rows, eval_rows, run_state, resume, start_step, total_steps,
                          per_epoch)
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


def _train(recipe, cfg, args, train_rows, eval_rows, run_state, resume, start_step, total_steps, per_epoch) -> int:
    set_seed(cfg.seed)  # before LoRA's random init, so every process and every rerun starts from the same weights
    # A full run resumes with the checkpoint's weights loaded by the model's own loader: the checkpoint holds them
    # under Qwen's file names, which Trainer's non-strict load_state_dict would miss. DeepSpeed and FSDP resume from
    # their own files.
    plain_full = recipe == "full" and not args.deepspeed and run_state["backend"] != "FSDP"
    model, processor = load_model(cfg, args, weights=resume if resume is not None and plain_full else None)
    model = apply_lora(model, cfg) if recipe == "lora" else apply_full(model, cfg)

    def dataset(rows):
        return QADataset(rows, cfg.inputs, system_prompt=cfg.system_prompt, with_answer=True,
                         max_frames=cfg.max_frames, gold_coarse_hint=cfg.hierarchical_prompt)

    trainer = MevqaTrainer(
        model=model, args=args, train_dataset=dataset(train_rows),
        eval_dataset=dataset(eval_rows) if eval_rows is not None else None,
        data_collator=Collator(processor, train=True, max_length=cfg.max_length, video_fps=cfg.video_fps),
        processing_class=processor, callbacks=[RunControl(cfg, run_state, has_eval=eval_rows is not None)],
        cfg=cfg, eval_rows=eval_rows)
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(Path(cfg.output_dir) / "logs")

    world, batch, accumulation = args.world_size, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    log.info("world size %d (%s), process %d is main; %d training rows, %d per step (%d per process x %d "
             "accumulation x %d processes), %d steps per epoch, %d steps%s", world,
             trainer.accelerator.distributed_type, args.process_index, len(train_rows), world * batch * accumulation,
             batch, accumulation, world, per_epoch, total_steps, f", resuming at step {start_step} from {resume}"
             if resume else "")
    for part, counts in trainable_summary(trainer.model).items():
        if counts["total"]:
            log.info("  %-6s %12s trainable of %12s parameters", part, f"{counts['trainable']:,}",
                     f"{counts['total']:,}")
    if trainer.is_world_process_zero():
        order = train_data.epoch_order(len(train_rows), cfg.seed, 0, per_epoch, world * batch * accumulation)
        shards = {rank: sorted({row_id(train_rows[i]) for i in train_data.rank_indices(
            order, rank=rank, world_size=world, batch_size=batch, accumulation=accumulation)}) for rank in range(world)}
        append_log(cfg.output_dir, {"event": "start", "world_size": world, "distributed_type":
                                    str(trainer.accelerator.distributed_type), "resumed_from": str(resume) if resume
                                    else None, "global_step": start_step, "total_steps": total_steps,
                                    "epoch0_rows_per_rank": shards})

    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if trainer.state.global_step >= total_steps:
        final = Path(cfg.output_dir) / FINAL_DIR
        trainer.save_result(final)
        if trainer.is_world_process_zero():
            append_log(cfg.output_dir, {"event": "saved", "path": str(final), "step": trainer.state.global_step})
        log.info("saved %s", final)
    trainer.accelerator.wait_for_everyone()
    return 0


# --- checks before the model loads ---------------------------------------------------------------------------------
def check_model_modules(cfg: TrainConfig, recipe: str) -> None:
    """The config's module patterns (LoRA targets per part, fully trained parts, QLoRA's unquantised modules) each
    match the model, checked on the model built from its config.json on the meta device (no weights, well under a
    second for an 8B config), so a pattern that matches nothing fails before the weights load, not after."""
    check_selection(cfg, recipe, model_skeleton(cfg.model_name_or_path))


def check_metric_available(cfg: TrainConfig, eval_rows: list[dict]) -> None:
    """Fail before training, not at the first evaluation, when the validation file cannot give metric_for_best."""
    kinds = {vocab.question_kind(str(row.get("question", ""))) for row in eval_rows}
    needs = {"avg": {vocab.COARSE, vocab.FINE}, "uf1_coarse": {vocab.COARSE}, "uar_coarse": {vocab.COARSE},
             "uf1_fine": {vocab.FINE}, "uar_fine": {vocab.FINE}}.get(cfg.metric_for_best_model, set())
    missing = needs - kinds
    if missing:
        raise MevqaError(f"{cfg.eval_file}: metric_for_best_model={cfg.metric_for_best_model} needs "
                         f"{' and '.join(sorted(missing))} expression questions, which the validation file lacks; "
                         f"choose another metric_for_best_model (e.g. eval_loss)")


def media_settings(cfg: TrainConfig, rows: list[dict]) -> dict | None:
    """The build-data settings every training and validation row's inputs were made with (one set: a mixture is an
    error naming the first row that differs), checked against ``media_settings`` when the config gives it."""
    found = media_settings_of(rows)
    if cfg.media_settings is not None and cfg.media_settings != found:
        raise MevqaError(f"config: media_settings={cfg.media_settings!r}, but the rows' inputs were built with "
                         f"{found!r}; rebuild the data, or drop media_settings from the config")
    return found


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``checkpoint-N`` folders in ``output_dir``, by step."""
    if not output_dir.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name)))


def resume_point(cfg: TrainConfig, output_dir: Path) -> Path | None:
    """The checkpoint this launch resumes from, or None to start over (see the module docstring)."""
    choice = cfg.resume_from_checkpoint
    if choice is None or choice.lower() in ("none", "no", "false"):
        _check_start_over(output_dir)
        return None
    if choice != "auto":
        path = Path(choice)
        if not complete(path):
            raise MevqaError(f"{path}: not a complete checkpoint (no {TRAINER_STATE_NAME} and {RUN_STATE_NAME})")
        return path
    finished = [path for _, path in checkpoints(output_dir) if complete(path)]
    if finished:
        return finished[-1]
    earlier = [name for name in (FINAL_DIR, BEST_DIR) if (output_dir / name).exists()]
    if earlier:
        raise MevqaError(f"{output_dir}: holds a previous run's {earlier[0]}/ but no checkpoint to resume from; "
                         f"choose a new output_dir, or start over there with --resume_from_checkpoint none")
    _check_start_over(output_dir)
    return None


def complete(checkpoint: Path) -> bool:
    """Trainer's files are written (trainer_state.json) and then mevqa's, run_state.json last."""
    return (checkpoint / TRAINER_STATE_NAME).is_file() and (checkpoint / RUN_STATE_NAME).is_file()


def _previous_outputs(output_dir: Path) -> list[Path]:
    """What a training run writes in ``output_dir``, as far as it is there (what starting over removes)."""
    names = (FINAL_DIR, BEST_DIR, "logs", LOG_NAME, CONFIG_NAME)
    return [path for _, path in checkpoints(output_dir)] + [output_dir / n for n in names if (output_dir / n).exists()]


def _check_start_over(output_dir: Path) -> None:
    """Starting over removes only a training run's own outputs: a folder holding such names without the
    ``train_config.yaml`` every run writes first is someone else's."""
    found = _previous_outputs(output_dir)
    if found and not (output_dir / CONFIG_NAME).is_file():
        raise MevqaError(f"{output_dir}: holds {', '.join(sorted(p.name for p in found))} but no {CONFIG_NAME}, so "
                         f"not the outputs of a training run, which starting over would remove; choose a new "
                         f"output_dir")


def check_resume(checkpoint: Path, cfg: TrainConfig, run_state: dict, total_steps: int) -> int:
    """Refuse a checkpoint made by another configuration, launch or data, past the run's end, or incomplete;
    returns its step."""
    step = _read_json(checkpoint / TRAINER_STATE_NAME).get("global_step")
    if not isinstance(step, int):
        raise MevqaError(f"{checkpoint / TRAINER_STATE_NAME}: no integer global_step")
    for name in (CONFIG_NAME, RUN_STATE_NAME):
        _need(checkpoint / name)
    with loading(checkpoint / CONFIG_NAME):
        saved_cfg = yaml.safe_load((checkpoint / CONFIG_NAME).read_text(encoding="utf-8"))
    if not isinstance(saved_cfg, dict):
        raise MevqaError(f"{checkpoint / CONFIG_NAME}: expected a mapping of config keys")
    saved_run = _read_json(checkpoint / RUN_STATE_NAME)
    current = yaml.safe_load(yaml.safe_dump(config_dict(cfg), sort_keys=False))  # as save_config writes it
    changed = resume_differences(saved_cfg, current) + [
        f"{key} ({saved_run.get(key)!r} -> {run_state[key]!r})" if not key.endswith("sha256") else
        f"{key.removesuffix('_sha256')} content"
        for key in differences({key: saved_run.get(key) for key in run_state}, run_state)]
    if changed:
        raise MevqaError(f"{checkpoint}: made with another configuration ({'; '.join(changed)}); resuming would "
                         f"mix two runs: start over with --resume_from_checkpoint none, or use a new output_dir")
    if step > total_steps:
        raise MevqaError(f"{checkpoint}: at step {step}, past this run's {total_steps} steps (max_steps / "
                         f"num_epochs); raise max_steps, start over with --resume_from_checkpoint none, or use a new "
                         f"output_dir")
    verify_checkpoint_files(checkpoint, step, run_state["backend"], run_state["world_size"])
    return step


def verify_checkpoint_files(checkpoint: Path, step: int, backend: str, world_size: int) -> None:
    """Every file resuming needs is there and intact; else an error names it."""
    rng = ["rng_state.pth"] if world_size == 1 else [f"rng_state_{rank}.pth" for rank in range(world_size)]
    if backend.startswith("DEEPSPEED"):
        needed = ["latest", f"global_step{step}", "scheduler.pt"]
    elif backend == "FSDP":
        needed = ["scheduler.pt", _either(checkpoint, "pytorch_model_fsdp.bin", "pytorch_model_fsdp_0"),
                  _either(checkpoint, "optimizer.bin", "optimizer_0")]
    else:  # Trainer's layout: a PEFT adapter, or the whole model (one file or shards)
        weights = _either(checkpoint, "adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
        needed = [weights, "optimizer.pt", "scheduler.pt"]
        if weights.endswith(".index.json"):
            needed += sorted(set(_read_json(checkpoint / weights).get("weight_map", {}).values()))
    for name in [*rng, *needed]:
        path = _need(checkpoint / name)
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            _check_intact(file)
    for name in [*rng, "scheduler.pt"]:  # small: read in full (RNG files hold numpy states, as Trainer reads them)
        with loading(checkpoint / name), safe_globals():
            torch.load(checkpoint / name, weights_only=True)


@contextlib.contextmanager
def loading(path: Path):
    """Turn a failure to read a checkpoint file into one line naming it."""
    try:
        yield
    except MevqaError:
        raise
    except (OSError, RuntimeError, ValueError, EOFError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile,
            safetensors.SafetensorError, yaml.YAMLError) as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise MevqaError(f"{path}: cannot be loaded ({type(exc).__name__}: {detail}); resume from an earlier "
                         f"checkpoint (--resume_from_checkpoint DIR) or start over (--resume_from_checkpoint none)"
                         ) from None


def _either(checkpoint: Path, *names: str) -> str:
    return next((name for name in names if (checkpoint / name).exists()), names[0])


def _need(path: Path) -> Path:
    if not path.exists():
        raise MevqaError(f"{path}: missing, so the checkpoint cannot be resumed in full; resume from an earlier one "
                         f"(--resume_from_checkpoint DIR) or start over (--resume_from_checkpoint none)")
    return path


def _check_intact(path: Path) -> None:
    """A truncated torch file has lost its zip directory; a truncated safetensors file its promised size."""
    with loading(path):
        if path.suffix in (".pt", ".pth", ".bin"):
            zipfile.ZipFile(path).close()
        elif path.suffix == ".safetensors":
            size = path.stat().st_size
            with path.open("rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
            if 8 + length + end != size:
                raise ValueError(f"{size} bytes where its header describes {8 + length + end}")


def _read_json(path: Path) -> dict:
    with loading(_need(path)):
        value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise MevqaError(f"{path}: expected a JSON object")
    return value


def clear_previous_run(output_dir: Path, keep: Path | None) -> None:
    """Starting over: remove the previous run's outputs. Resuming: remove checkpoints a killed save left half
    written, and unfinished result folders (:meth:`mevqa.train.trainer.MevqaTrainer.replace_dir`'s)."""
    for name in (FINAL_DIR, BEST_DIR):
        remove_killed_folders(output_dir / name)  # the old folder a kill left aside mid-replacement
    names = [p for p in output_dir.iterdir() if p.name in (f".{FINAL_DIR}.tmp", f".{BEST_DIR}.tmp")]
    if keep is None:
        names += _previous_outputs(output_dir)
    else:
        names += [path for _, path in checkpoints(output_dir) if not complete(path)]
    removed = []
    for path in names:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path.name)
    if removed:
        log.info("%s: removed %s (%s)", output_dir, ", ".join(sorted(removed)),
                 "unfinished" if keep is not None else "previous run's outputs, starting over")


def check_4bit() -> None:
    """QLoRA needs bitsandbytes; 4-bit layers run on CUDA, or on CPU from bitsandbytes 0.48."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MevqaError('config: load_in_4bit needs bitsandbytes (pip install "mevqa[qlora]")')
    if launched_with("DEEPSPEED") or launched_with("FSDP"):
        raise MevqaError("config: load_in_4bit runs one model copy per process (DDP or one GPU), not under "
                         "DeepSpeed or FSDP")
    if not torch.cuda.is_available():
        if Version(version("bitsandbytes")) < Version("0.48"):
            raise MevqaError(f"config: load_in_4bit without a CUDA GPU needs bitsandbytes >= 0.48 (installed: "
                             f"{version('bitsandbytes')})")


def check_trackers(cfg: TrainConfig) -> None:
    """Trainer fails deep inside its set-up on a tracker that is not installed; fail first, in one line."""
    for name, module in (("wandb", "wandb"), ("tensorboard", "tensorboard"), ("trackio", "trackio"),
                         ("mlflow", "mlflow"), ("comet_ml", "comet_ml")):
        if name in cfg.report_to and importlib.util.find_spec(module) is None:
            raise MevqaError(f"config: report_to includes {name}, which is not installed (pip install {module})")


def backend_of(args) -> str:
    """The distributed backend a checkpoint is made under: NO, MULTI_CPU, MULTI_GPU, DEEPSPEED-zero<k>, FSDP..."""
    kind = args.distributed_state.distributed_type.name
    if kind == "DEEPSPEED":
        return f"DEEPSPEED-zero{args.hf_deepspeed_config.config.get('zero_optimization', {}).get('stage', 0)}"
    # accelerate gives the FSDP type to the Accelerator's state (built later by Trainer), for GPU-like devices only
    return "FSDP" if launched_with("FSDP") and kind.startswith("MULTI_") and kind != "MULTI_CPU" else kind


def load_model(cfg: TrainConfig, args, weights: Path | None = None):
    """The base model (QLoRA: its language model in 4 bits, on this process's device) and its processor; with
    ``weights``, a full run's checkpoint folder, the model's weights come from there."""
    budgets = dict(min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, video_min_pixels=cfg.video_min_pixels,
                   video_max_pixels=cfg.video_max_pixels)
    if not cfg.load_in_4bit:
        model, processor = load_model_and_processor(weights or cfg.model_name_or_path, dtype=cfg.dtype,
                                                    attn_implementation=cfg.attn_implementation, device=False,
                                                    **budgets)
    else:
        processor = AutoProcessor.from_pretrained(cfg.model_name_or_path)
        processor.tokenizer.padding_side = "left"
        set_pixel_budgets(processor, **budgets)
        device = args.local_process_index if torch.cuda.is_available() else "cpu"
        model = AutoModelForImageTextToText.from_pretrained(
            cfg.model_name_or_path, dtype=torch.bfloat16, attn_implementation=cfg.attn_implementation,
            quantization_config=quantization_config(cfg), device_map={"": device})
    model.config.use_cache = False
    return model, processor
