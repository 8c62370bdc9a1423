"""The accelerate training loop shared by ``recipes/lora.py`` and ``recipes/full.py``.

One optimizer step reads ``gradient_accumulation_steps`` micro-batches per process. The loss is normalised by the
number of answer tokens in the whole step (all micro-batches, all processes), so every answer token weighs the same
whatever the padding, batch split or accumulation (the plain per-micro-batch mean over-weights short batches).

Checkpoints (``<output_dir>/checkpoint-<step>``) hold ``accelerator.save_state`` (trainable weights, optimizer,
scheduler, RNG), ``trainer_state.json`` (step, best metric) and the resolved ``train_config.yaml``. The data order is
a function of the seed and the epoch (:mod:`mevqa.train.data`), so a resumed run skips exactly the consumed
steps and ends with the same weights as an uninterrupted one. Folders are written under a temporary name and
renamed when complete: a killed run never leaves a half checkpoint for the next run to resume from.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mevqa.errors import MevqaError
from mevqa.train import data as train_data
from mevqa.train.config import TrainConfig, save_config, to_dict
from mevqa.train.parts import param_groups, trainable_summary

log = logging.getLogger(__name__)

STATE_NAME = "trainer_state.json"
LOG_NAME = "train_log.jsonl"
FINAL_DIR = "final"
BEST_DIR = "best"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Changing one of these changes which rows a step reads, so a checkpoint cannot be resumed under a different value.
_DATA_ORDER_KEYS = ("seed", "per_device_batch_size", "gradient_accumulation_steps", "train_file")


# --- set-up ---------------------------------------------------------------------------------------------------
def trackers(cfg: TrainConfig) -> list[str]:
    names = set()
    for name in cfg.report_to:
        if name == "auto":
            names.add("tensorboard")
            if importlib.util.find_spec("wandb") is not None:
                names.add("wandb")
        elif name != "none":
            names.add(name)
    if "wandb" in names and importlib.util.find_spec("wandb") is None:
        raise MevqaError("config: report_to includes wandb but wandb is not installed (pip install wandb)")
    return sorted(names)


def make_accelerator(cfg: TrainConfig):
    """An Accelerator for ``cfg``: mixed precision, gradient accumulation, trackers writing under output_dir."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    project = ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=str(Path(cfg.output_dir) / "logs"))
    accelerator = Accelerator(
        # Without an accelerator device accelerate only forms a multi-process (gloo) group when told it runs on CPU;
        # otherwise `accelerate launch --multi_gpu` silently starts independent single processes.
        cpu=not _has_accelerator_device(),
        mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=trackers(cfg) or None, project_config=project,
        # The schedule counts optimizer steps; without this accelerate steps it once per process.
        step_scheduler_with_optimizer=False,
    )
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        # No DataLoader goes through prepare() (mevqa orders the data itself), so DeepSpeed learns the batch size
        # and the clipping from the config rather than from "auto"; ZeRO-3 must gather weights to save a model.
        ds_config = plugin.deepspeed_config
        for key, value in (("train_micro_batch_size_per_gpu", cfg.per_device_batch_size),
                           ("gradient_clipping", cfg.max_grad_norm)):
            if ds_config.get(key, "auto") == "auto":
                ds_config[key] = value
        if ds_config.get("zero_optimization", {}).get("stage") == 3:
            ds_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    set_seed(cfg.seed)
    # accelerate logs every file of every checkpoint at INFO; mevqa logs one line per checkpoint instead.
    logging.getLogger("accelerate.checkpointing").setLevel(logging.WARNING)
    logging.getLogger("accelerate.accelerator").setLevel(logging.WARNING)
    return accelerator


def fill_deepspeed_sizes(ds_config: dict, model_config) -> None:
    """Fill ZeRO's ``"auto"`` bucket sizes from the language model's hidden size, as accelerate would: accelerate reads
    ``model.config.hidden_size``, which a transformers 5.x Qwen2.5-VL config keeps in ``text_config``, and stops
    with a ValueError when it is missing."""
    zero = ds_config.get("zero_optimization", {})
    hidden = model_config.get_text_config().hidden_size
    for key, value in (("reduce_bucket_size", hidden * hidden),
                       ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
                       ("stage3_param_persistence_threshold", 10 * hidden)):
        if zero.get(key) == "auto":
            zero[key] = value


def _has_accelerator_device() -> bool:
    from accelerate.utils import is_mps_available, is_npu_available, is_xpu_available

    return torch.cuda.is_available() or is_xpu_available() or is_npu_available() or is_mps_available()


def load_for_training(cfg: TrainConfig, accelerator):
    """Load the base model (QLoRA: 4-bit on this process's GPU) and its processor with the config's budgets."""
    from mevqa.model import load_model_and_processor, set_pixel_budgets

    # Before a model of many GB is loaded: a missing data file fails in a second.
    if not cfg.train_file:
        raise MevqaError("config: train_file is required")
    for name in ("train_file", "eval_file"):
        path = getattr(cfg, name)
        if path and not Path(path).is_file():
            raise MevqaError(f"{path}: {name} not found")
    budgets = dict(min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, video_min_pixels=cfg.video_min_pixels,
                   video_max_pixels=cfg.video_max_pixels)
    if not cfg.load_in_4bit:
        model, processor = load_model_and_processor(cfg.model_name_or_path, dtype=cfg.dtype,
                                                    attn_implementation=cfg.attn_implementation, device=False,
                                                    **budgets)
    else:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from mevqa.train.parts import quantization_config

        if not torch.cuda.is_available():
            raise MevqaError("config: load_in_4bit (QLoRA) needs a CUDA GPU and bitsandbytes")
        processor = AutoProcessor.from_pretrained(cfg.model_name_or_path)
        set_pixel_budgets(processor, **budgets)
        model = AutoModelForImageTextToText.from_pretrained(
            cfg.model_name_or_path, dtype=torch.bfloat16, attn_implementation=cfg.attn_implementation,
            quantization_config=quantization_config(cfg), device_map={"": accelerator.local_process_index})
    model.config.use_cache = False
    return model, processor


def read_rows(path: str, what: str) -> list[dict]:
    from mevqa.messages import read_qa_rows

    rows = read_qa_rows(path)
    if not rows:
        raise MevqaError(f"{path}: the {what} file has no rows")
    missing = [row for row in rows if not str(row.get("answer", "")).strip()]
    if missing:
        raise MevqaError(f"{path}:{missing[0]['_line']}: {what} rows need an answer (is this a question file?)")
    return rows


# --- checkpoints ----------------------------------------------------------------------------------------------
def latest_checkpoint(output_dir: str | Path) -> Path | None:
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
             and (p / STATE_NAME).is_file()]
    return max(found)[1] if found else None


def resolve_resume(cfg: TrainConfig) -> Path | None:
    choice = cfg.resume_from_checkpoint
    if choice is None or choice.lower() in ("none", "no", "false"):
        return None
    if choice == "auto":
        return latest_checkpoint(cfg.output_dir)
    path = Path(choice)
    if not (path / STATE_NAME).is_file():
        raise MevqaError(f"{path}: not a mevqa checkpoint (no {STATE_NAME})")
    return path


def _atomic_dir(accelerator, target: Path, write) -> None:
    """Run ``write(tmp_dir)`` on every process, then (main process) replace ``target`` by ``tmp_dir``."""
    tmp = target.with_name(f".{target.name}.tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    write(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    accelerator.wait_for_everyone()


def register_trainable_only_state(accelerator, model) -> None:
    """Make ``save_state`` keep only trainable weights (a 7B LoRA checkpoint is megabytes, not 15 GB)."""
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}

    def keep_trainable(models, weights, output_dir):
        for i, state in enumerate(weights):
            weights[i] = {key: value for key, value in state.items() if key in trainable}

    def check_complete(models, input_dir):
        from safetensors import safe_open

        weights_file = Path(input_dir) / "model.safetensors"
        if models and weights_file.is_file():
            with safe_open(str(weights_file), framework="pt") as handle:
                saved = set(handle.keys())
            missing = sorted(trainable - saved)
            if missing:
                raise MevqaError(f"{input_dir}: checkpoint lacks trainable weights ({missing[0]}, ...); it was "
                                 f"made with a different set of trainable parts")

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator.register_load_state_pre_hook(check_complete)


def save_model_dir(accelerator, model, processor, cfg: TrainConfig, target: Path) -> None:
    """The loadable result: a PEFT adapter (LoRA) or a full model, plus processor and config, written atomically."""
    state_dict = accelerator.get_state_dict(model)  # every process: gathers ZeRO-3 / FSDP shards

    def write(tmp: Path):
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            processor.save_pretrained(tmp)
            save_config(cfg, tmp)

    _atomic_dir(accelerator, target, write)


def save_checkpoint(accelerator, cfg: TrainConfig, state: dict) -> Path:
    target = Path(cfg.output_dir) / f"checkpoint-{state['global_step']}"

    def write(tmp: Path):
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            from mevqa.jsonl import write_json

            write_json(tmp / STATE_NAME, state)
            save_config(cfg, tmp)

    _atomic_dir(accelerator, target, write)
    if accelerator.is_main_process:
        checkpoints = sorted((int(m.group(1)), p) for p in Path(cfg.output_dir).iterdir()
                             if (m := _CHECKPOINT.match(p.name)))
        for _, old in checkpoints[:-cfg.save_total_limit]:
            shutil.rmtree(old)
    return target


# --- loss and evaluation ----------------------------------------------------------------------------------------
def answer_token_count(batch) -> int:
    """Tokens that count in the loss: labels other than -100, after the one-token shift of causal LM training."""
    return int((batch["labels"][:, 1:] != -100).sum())


def summed_loss(model, batch) -> torch.Tensor:
    """Sum (not mean) of the answer tokens' cross-entropy over the batch."""
    outputs = model(**batch)
    return outputs.loss * answer_token_count(batch)


def _loader(dataset, collator, indices, cfg: TrainConfig, batch_size: int, seed: int):
    # An own generator: the DataLoader then draws nothing from the global RNG, which resume restores exactly.
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=indices, collate_fn=collator,
                                       num_workers=cfg.dataloader_num_workers,
                                       generator=torch.Generator().manual_seed(seed))


def _padded_shard(n: int, rank: int, world: int) -> tuple[list[int], list[bool]]:
    """Rank ``rank``'s strided share of ``range(n)``, padded by repeating its last row so that every rank runs the
    same number of batches (ZeRO-3 and FSDP gather weights inside forward and generate: all ranks must take part);
    the second list is False for the padding."""
    size = math.ceil(n / world)
    mine = train_data.shard(list(range(n)), rank, world)
    filler = mine[-1] if mine else 0
    return mine + [filler] * (size - len(mine)), [True] * len(mine) + [False] * (size - len(mine))


@torch.no_grad()
def evaluate(accelerator, model, processor, eval_rows: list[dict], cfg: TrainConfig) -> dict:
    """Validation loss over ``eval_rows`` and, with ``eval_generate``, the leaderboard metrics of generated answers."""
    from accelerate.utils import gather_object

    from mevqa.collate import Collator, QADataset

    model.eval()
    indices, real = _padded_shard(len(eval_rows), accelerator.process_index, accelerator.num_processes)
    dataset = QADataset(eval_rows, cfg.inputs, system_prompt=cfg.system_prompt, with_answer=True,
                        max_frames=cfg.max_frames)
    collator = Collator(processor, train=True, max_length=cfg.max_length, video_fps=cfg.video_fps)
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for start in range(0, len(indices), cfg.eval_batch_size):
        batch = collator([dataset[i] for i in indices[start:start + cfg.eval_batch_size]]).to(accelerator.device)
        keep = torch.tensor(real[start:start + cfg.eval_batch_size], device=accelerator.device)
        labels = batch.pop("labels")[:, 1:]
        logits = model(**batch).logits[:, :-1]
        token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, reduction="none",
                                                       ignore_index=-100)
        totals[0] += (token_loss.sum(dim=1) * keep).sum().double()
        totals[1] += ((labels != -100).sum(dim=1) * keep).sum()
    totals = accelerator.reduce(totals, reduction="sum")
    metrics = {"eval_loss": float(totals[0] / totals[1])}
    if cfg.eval_generate:
        from mevqa.eval import row_id, score
        from mevqa.generation import generate_answers

        rows = [eval_rows[i] for i in indices]
        answers = generate_answers(accelerator.unwrap_model(model), processor, rows, cfg.inputs,
                                   batch_size=cfg.eval_batch_size, max_new_tokens=cfg.eval_max_new_tokens,
                                   system_prompt=cfg.system_prompt, max_frames=cfg.max_frames,
                                   video_fps=cfg.video_fps)
        predictions = gather_object([{"id": row_id(row), "answer": answer}
                                     for row, answer, is_real in zip(rows, answers, real) if is_real])
        report = score(predictions, eval_rows)
        metrics.update({key: value for key, value in report["overall"].items()
                        if isinstance(value, (int, float)) and not isinstance(value, bool)})
        metrics["avg"] = report["avg"]
    model.train()
    return metrics


def _check_metric_available(cfg: TrainConfig, eval_rows: list[dict]) -> None:
    """Fail before training, not at the first evaluation, when the validation file cannot give metric_for_best."""
    from mevqa import vocab

    kinds = {vocab.question_kind(str(row.get("question", ""))) for row in eval_rows}
    needs = {"avg": {vocab.COARSE, vocab.FINE}, "uf1_coarse": {vocab.COARSE}, "uar_coarse": {vocab.COARSE},
             "uf1_fine": {vocab.FINE}, "uar_fine": {vocab.FINE}}.get(cfg.metric_for_best, set())
    missing = needs - kinds
    if missing:
        raise MevqaError(f"{cfg.eval_file}: metric_for_best={cfg.metric_for_best} needs {' and '.join(sorted(missing))} "
                         f"expression questions, which the validation file lacks; choose another metric_for_best "
                         f"(e.g. eval_loss)")


def _is_better(value, best, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "eval_loss" else value > best


# --- the loop -----------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, accelerator, model, processor) -> Path:
    """Train ``model`` (already frozen / LoRA-wrapped per ``cfg``) and save ``<output_dir>/final``; returns it."""
    from accelerate.utils import DistributedType
    from transformers import get_scheduler

    from mevqa.collate import Collator, QADataset

    output_dir = Path(cfg.output_dir)
    is_main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    train_rows = read_rows(cfg.train_file, "training") if cfg.train_file else None
    if train_rows is None:
        raise MevqaError("config: train_file is required")
    eval_rows = read_rows(cfg.eval_file, "validation") if cfg.eval_file else None
    if eval_rows is not None:
        _check_metric_available(cfg, eval_rows)

    per_epoch = train_data.steps_per_epoch(len(train_rows), world, cfg.per_device_batch_size,
                                           cfg.gradient_accumulation_steps)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else cfg.num_epochs * per_epoch
    step_size = world * cfg.per_device_batch_size * cfg.gradient_accumulation_steps
    warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else math.ceil(cfg.warmup_ratio * total_steps)

    summary = trainable_summary(model)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.learning_rate,
                                  betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon)
    scheduler = get_scheduler(cfg.lr_scheduler if cfg.lr_scheduler != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    if accelerator.state.deepspeed_plugin is not None:
        fill_deepspeed_sizes(accelerator.state.deepspeed_plugin.deepspeed_config, model.config)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    register_trainable_only_state(accelerator, model)
    group_names = [group["name"] for group in optimizer.param_groups]

    log.info("world size %d (%s), process %d is main; %d training rows, %d per step (%d per process x %d "
             "accumulation x %d processes), %d steps per epoch, %d steps, warmup %d",
             world, accelerator.distributed_type, rank, len(train_rows), step_size, cfg.per_device_batch_size,
             cfg.gradient_accumulation_steps, world, per_epoch, total_steps, warmup)
    for part, counts in summary.items():
        if counts["total"]:
            log.info("  %-6s %12s trainable of %12s parameters", part, f"{counts['trainable']:,}",
                     f"{counts['total']:,}")

    state = {"global_step": 0, "best_metric": None, "best_step": None, "world_size": world,
             "train_rows": len(train_rows), "config": {key: getattr(cfg, key) for key in _DATA_ORDER_KEYS}}
    resume = resolve_resume(cfg)
    if resume is not None:
        saved = json.loads((resume / STATE_NAME).read_text(encoding="utf-8"))
        for key in _DATA_ORDER_KEYS:
            if saved["config"].get(key) != getattr(cfg, key):
                raise MevqaError(f"{resume}: made with {key}={saved['config'].get(key)!r}, this run has "
                                 f"{getattr(cfg, key)!r}; resuming needs the same data order")
        for key in ("world_size", "train_rows"):
            if saved[key] != state[key]:
                raise MevqaError(f"{resume}: made with {key}={saved[key]}, this run has {state[key]}; resuming "
                                 f"needs the same data order")
        # Checkpoints hold only the trainable weights (DeepSpeed keeps its own complete format).
        strict = {} if accelerator.distributed_type == DistributedType.DEEPSPEED else {"strict": False}
        accelerator.load_state(str(resume), **strict)
        state.update(global_step=saved["global_step"], best_metric=saved["best_metric"],
                     best_step=saved["best_step"])
        log.info("resumed from %s at step %d of %d", resume, state["global_step"], total_steps)

    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output_dir)
        epoch0 = train_data.epoch_order(len(train_rows), cfg.seed, 0, per_epoch, step_size)
        shards = {r: sorted({train_rows[i]["id"] if "id" in train_rows[i] else train_rows[i]["_line"]
                             for i in train_data.rank_indices(epoch0, rank=r, world_size=world,
                                                              batch_size=cfg.per_device_batch_size,
                                                              accumulation=cfg.gradient_accumulation_steps)})
                  for r in range(world)}
        _append_log(output_dir, {"event": "start", "world_size": world, "distributed_type":
                                 str(accelerator.distributed_type), "resumed_from": str(resume) if resume else None,
                                 "global_step": state["global_step"], "total_steps": total_steps,
                                 "epoch0_rows_per_rank": shards})
    accelerator.init_trackers(cfg.run_name or output_dir.name, config=_tracker_config(cfg))

    dataset = QADataset(train_rows, cfg.inputs, system_prompt=cfg.system_prompt, with_answer=True,
                        max_frames=cfg.max_frames)
    collator = Collator(processor, train=True, max_length=cfg.max_length, video_fps=cfg.video_fps)
    metric = cfg.metric_for_best

    model.train()
    bar = tqdm(total=total_steps, initial=state["global_step"], desc="train", disable=not is_main, dynamic_ncols=True)
    steps_this_launch = 0
    window_loss = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    tic, tokens_seen, samples_seen = time.perf_counter(), 0, 0
    batches = None
    while state["global_step"] < total_steps:
        step = state["global_step"]
        epoch, step_in_epoch = divmod(step, per_epoch)
        if batches is None or step_in_epoch == 0:
            order = train_data.epoch_order(len(train_rows), cfg.seed, epoch, per_epoch, step_size)
            indices = train_data.rank_indices(order, rank=rank, world_size=world,
                                              batch_size=cfg.per_device_batch_size,
                                              accumulation=cfg.gradient_accumulation_steps,
                                              start_step=step_in_epoch)
            batches = iter(_loader(dataset, collator, indices, cfg, cfg.per_device_batch_size, cfg.seed + epoch))
        window = [next(batches).to(accelerator.device) for _ in range(cfg.gradient_accumulation_steps)]
        local_tokens = sum(answer_token_count(batch) for batch in window)
        step_tokens = accelerator.reduce(torch.tensor(float(local_tokens), device=accelerator.device), "sum")
        # backward() divides by the accumulation steps and DDP averages over processes; undo both so the gradient
        # is that of (sum of token losses in the whole step) / (answer tokens in the whole step).
        scale = cfg.gradient_accumulation_steps * world / step_tokens
        for batch in window:
            with accelerator.accumulate(model):
                loss_sum = summed_loss(model, batch)
                accelerator.backward(loss_sum * scale)
            window_loss[0] += loss_sum.detach().double()
            tokens_seen += int(batch["attention_mask"].sum())
            samples_seen += batch["input_ids"].shape[0]
        window_loss[1] += local_tokens
        # All parameters (frozen ones have no gradient and do not count): under FSDP accelerate takes the global norm
        # only when given exactly model.parameters(); for any other list each rank would clip by its own shard's norm.
        grad_norm = None
        if cfg.max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["global_step"] = step = step + 1
        steps_this_launch += 1
        bar.update(1)

        if step % cfg.logging_steps == 0 or step == total_steps:
            totals = accelerator.reduce(window_loss, "sum")
            counts = accelerator.reduce(torch.tensor([tokens_seen, samples_seen], dtype=torch.float64,
                                                     device=accelerator.device), "sum")
            elapsed = time.perf_counter() - tic
            record = {"step": step, "epoch": step / per_epoch, "loss": float(totals[0] / totals[1]),
                      "tokens_per_s": float(counts[0]) / elapsed, "samples_per_s": float(counts[1]) / elapsed}
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            for name, lr in zip(group_names, scheduler.get_last_lr()):
                record[f"lr_{name}"] = lr
            if not math.isfinite(record["loss"]):
                raise MevqaError(f"step {step}: the loss is {record['loss']}; lower the learning rate or check the "
                                 f"data (mixed precision: use bf16, not fp16)")
            accelerator.log(record, step=step)
            if is_main:
                _append_log(output_dir, {"event": "train", **record})
                bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            window_loss.zero_()
            tic, tokens_seen, samples_seen = time.perf_counter(), 0, 0

        last = step == total_steps
        stopping = cfg.stop_after_steps and steps_this_launch >= cfg.stop_after_steps and not last
        if eval_rows is not None and ((cfg.eval_steps and step % cfg.eval_steps == 0) or last):
            metrics = evaluate(accelerator, model, processor, eval_rows, cfg)
            if metric not in metrics or metrics[metric] is None:
                raise MevqaError(f"config: metric_for_best={metric!r} is not available from this evaluation "
                                 f"(have: {', '.join(k for k, v in metrics.items() if v is not None)})")
            accelerator.log({f"eval/{key}": value for key, value in metrics.items() if value is not None}, step=step)
            log.info("step %d eval: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None))
            if _is_better(metrics[metric], state["best_metric"], metric):
                state["best_metric"], state["best_step"] = metrics[metric], step
                save_model_dir(accelerator, model, processor, cfg, output_dir / BEST_DIR)
                if is_main:
                    from mevqa.jsonl import write_json

                    write_json(output_dir / BEST_DIR / "eval_metrics.json", {"step": step, **metrics})
            if is_main:
                _append_log(output_dir, {"event": "eval", "step": step, **metrics})
            tic = time.perf_counter()  # evaluation time is not training throughput
        if (cfg.save_steps and step % cfg.save_steps == 0) or last or stopping:
            where = save_checkpoint(accelerator, cfg, state)
            log.info("step %d: checkpoint %s", step, where)
            tic = time.perf_counter()
        if stopping:
            log.info("stopping after %d steps of this launch (stop_after_steps); resume with the same command",
                     steps_this_launch)
            break
    bar.close()

    final = output_dir / FINAL_DIR
    if state["global_step"] >= total_steps:
        save_model_dir(accelerator, model, processor, cfg, final)
        if is_main:
            _append_log(output_dir, {"event": "saved", "path": str(final), "step": state["global_step"]})
        log.info("saved %s", final)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _append_log(output_dir: Path, record: dict) -> None:
    """One JSON line per event in ``<output_dir>/train_log.jsonl`` (main process; a log, appended as it happens)."""
    with (output_dir / LOG_NAME).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": time.time(), **record}) + "\n")


def _tracker_config(cfg: TrainConfig) -> dict:
    # TensorBoard's hparams take scalars and strings only.
    return {key: value if isinstance(value, (int, float, str, bool)) else str(value)
            for key, value in to_dict(cfg).items()}
