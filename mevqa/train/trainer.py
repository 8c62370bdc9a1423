"""mevqa's training engine: ``transformers.Trainer`` with mevqa's data order, loss, optimizer groups and evaluation.

Trainer does, as it is: the loop, gradient accumulation, clipping, the scheduler, mixed precision, activation
checkpointing, DDP / DeepSpeed / FSDP (wrapping, DeepSpeed's "auto" sizes, their checkpoint formats), checkpoints
(``checkpoint-N/`` in its own layout: a PEFT adapter for LoRA runs, the whole model for full runs, optimizer,
scheduler, RNG, ``trainer_state.json``), their rotation, trackers, and resuming (``resume_from_checkpoint``: weights,
optimizer, scheduler, RNG, skipping the consumed batches). :class:`MevqaTrainer` changes, each for a reason:

- data order (``_get_train_sampler``, the one private method overridden): :class:`mevqa.train.data.RunOrder`, every
  step the same rows whatever the process count; tests/test_recipes.py pins it (2 processes reach the weights of 1
  process accumulating twice as many micro-batches; a resumed run ends with the uninterrupted run's weights).
- loss: :func:`answer_token_loss` over the answer tokens of the whole optimizer step, which Trainer counts
  (``num_items_in_batch``, summed over processes). Qwen2.5-VL sets ``accepts_loss_kwargs=False``: without it Trainer
  would average per micro-batch and over-weight short answers.
- optimizer: AdamW with one group per part and decay (:func:`mevqa.train.parts.param_groups`), the one road for
  learning rates.
- evaluation: the loss over every answer token, and answers from one :func:`mevqa.answering.strategies.answer_rows` call
  per process (the config's ``answer_strategy``), scored with :func:`mevqa.eval.score`; ``best/`` by
  ``metric_for_best_model`` (Trainer keeps ``best_metric`` in its state). Generation sees whole weights: ZeRO-3
  gathers them once per evaluation (DeepSpeed's ``unwrap_model_for_generation``, which also lifts its per-layer
  hooks), FSDP1 generates inside the root's ``summon_full_params``, FSDP2 through the ``generate`` Trainer registers
  as an FSDP forward method; activation checkpointing is off meanwhile.
- each checkpoint also holds ``train_config.yaml`` and, written last, ``run_state.json`` (:class:`RunControl`);
  :mod:`mevqa.train.run` checks every file before the model loads.
- logs: tokens/s and samples/s over training time only, the learning rate of each group, ``train_log.jsonl``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from accelerate.utils import gather_object
from transformers import Trainer, TrainerCallback

from mevqa.answering.strategies import answer_rows
from mevqa.errors import MevqaError
from mevqa.eval import row_id, score
from mevqa.jsonl import write_json
from mevqa.runfolder import LogAppender, replace_folder
from mevqa.train import data as train_data
from mevqa.train.config import BEST_DIR, LOG_NAME, RUN_STATE_NAME, TrainConfig, save_config, strategy_options
from mevqa.train.parts import checkpointing_off, param_groups

log = logging.getLogger(__name__)


def answer_token_loss(outputs, labels, num_items_in_batch):
    """The micro-batch's summed cross-entropy over answer tokens (labels != -100, after the causal shift), divided
    by the answer tokens of the whole optimizer step."""
    logits = outputs.logits[:, :-1].float()
    targets = labels[:, 1:].to(logits.device)
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                              ignore_index=-100, reduction="sum")
    return total / num_items_in_batch


def append_log(output_dir: str | Path, record: dict) -> None:
    """One JSON line per event in ``<output_dir>/train_log.jsonl`` (main process; a log, appended as it happens)."""
    with LogAppender(Path(output_dir) / LOG_NAME) as train_log:
        train_log.append({"time": time.time(), **record})


def padded_shard(n: int, rank: int, world: int) -> tuple[list[int], list[bool]]:
    """Process ``rank``'s strided share of ``range(n)``, padded by repeating its last row so that every process runs
    as many batches (ZeRO-3 and FSDP gather weights inside forward: all processes must take part); the second list
    is False for the padding."""
    size = math.ceil(n / world)
    mine = list(range(rank, n, world))
    filler = mine[-1] if mine else 0
    return mine + [filler] * (size - len(mine)), [True] * len(mine) + [False] * (size - len(mine))


class RunControl(TrainerCallback):
    """Log the last step, evaluate at the end when there is a validation file, stop with a checkpoint after
    ``stop_after`` steps of this launch (0: never), and complete each checkpoint with the config and, last, the
    run state (a checkpoint without ``run_state.json`` is unfinished)."""

    def __init__(self, cfg: TrainConfig, run_state: dict, *, has_eval: bool):
        self.cfg, self.run_state, self.has_eval, self.first_step = cfg, run_state, has_eval, 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = control.should_save = True
            control.should_evaluate = control.should_evaluate or self.has_eval
        elif self.cfg.stop_after_steps and state.global_step - self.first_step >= self.cfg.stop_after_steps:
            log.info("stopping after %d steps of this launch (stop_after_steps); rerun the same command to go on",
                     self.cfg.stop_after_steps)
            control.should_save = control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_config(self.cfg, checkpoint)
            write_json(checkpoint / RUN_STATE_NAME, self.run_state)
            log.info("step %d: checkpoint saved", state.global_step)
        return control


class MevqaTrainer(Trainer):
    """Trainer for the recipes; see the module docstring. ``cfg`` is the run's config as given (``args`` is it with
    the run's length in steps)."""

    def __init__(self, *args, cfg: TrainConfig, eval_rows: list[dict] | None, **kwargs):
        super().__init__(*args, compute_loss_func=answer_token_loss, **kwargs)
        self.cfg, self.eval_rows = cfg, eval_rows
        self.output_dir = Path(cfg.output_dir)
        self.step_size = self.args.world_size * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
        self.steps_per_epoch = math.ceil(len(self.train_dataset) / self.step_size)
        self._window_start: float | None = None  # throughput window: wall time, minus evaluation and saving
        self._untimed = 0.0
        self._window_samples = 0
        self._window_tokens = torch.zeros((), dtype=torch.float64, device=self.args.device)

    # --- data, loss, optimizer ------------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        return train_data.RunOrder(len(self.train_dataset), seed=self.cfg.seed, step_size=self.step_size,
                                   total_steps=self.args.max_steps)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(param_groups(model, self.cfg), **kwargs)
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._window_start is None:
            self._window_start = time.perf_counter()
        self._window_samples += int(inputs["input_ids"].shape[0])
        self._window_tokens += inputs["attention_mask"].sum().to(self._window_tokens)
        return super().training_step(model, inputs, num_items_in_batch)

    # --- logging --------------------------------------------------------------------------------------------------
    def log(self, logs: dict, start_time: float | None = None) -> None:
        training = "loss" in logs
        if training:  # every process logs the same steps, so the reduction below is collective-safe
            seconds = max(time.perf_counter() - (self._window_start or time.perf_counter()) - self._untimed, 1e-9)
            counts = torch.stack([self._window_tokens,
                                  torch.tensor(float(self._window_samples), dtype=torch.float64,
                                               device=self._window_tokens.device)])
            counts = self.accelerator.reduce(counts, reduction="sum")
            logs["tokens_per_s"] = float(counts[0]) / seconds
            logs["samples_per_s"] = float(counts[1]) / seconds
            for i, group in enumerate(self.optimizer.param_groups):
                logs[f"lr_{group.get('name', i)}"] = group["lr"]
            self._window_start, self._untimed, self._window_samples = time.perf_counter(), 0.0, 0
            self._window_tokens.zero_()
            if not math.isfinite(logs["loss"]):
                raise MevqaError(f"step {self.state.global_step}: the loss is {logs['loss']}; lower the learning rate "
                                 f"or check the data (mixed precision: use bf16, not fp16)")
        self.state.epoch = self.state.global_step / self.steps_per_epoch  # mevqa's epochs (RunOrder is one long one)
        super().log(logs, start_time)
        if training and self.is_world_process_zero():
            append_log(self.output_dir, {"event": "train", "step": self.state.global_step, **logs})

    # --- evaluation -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """Validation loss and scored answers over ``eval_rows``; keeps ``best/``. Returns Trainer-style metrics."""
        started = time.perf_counter()
        cfg, rows, model = self.cfg, self.eval_rows, self.model_wrapped
        indices, real = padded_shard(len(rows), self.args.process_index, self.args.world_size)
        model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.args.device)
        size = cfg.per_device_eval_batch_size
        for begin in range(0, len(indices), size):
            batch = self.data_collator([self.eval_dataset[i] for i in indices[begin:begin + size]])
            keep = torch.tensor(real[begin:begin + size], device=self.args.device)
            labels = batch.pop("labels")[:, 1:].to(self.args.device)
            logits = model(**self._prepare_inputs(batch)).logits[:, :-1]
            token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels,
                                                           reduction="none", ignore_index=-100)
            totals[0] += (token_loss.sum(dim=1) * keep).sum().double()
            totals[1] += ((labels != -100).sum(dim=1) * keep).sum()
        totals = self.accelerator.reduce(totals, reduction="sum")
        metrics = {"eval_loss": float(totals[0] / totals[1])}
        if cfg.eval_generate:
            mine = [rows[i] for i in indices]
            with self.model_for_generation() as generator:
                answers = [answer.text for answer in answer_rows(
                    generator, self.processing_class, mine, cfg.inputs, cfg.answer_strategy,
                    options=strategy_options(cfg), batch_size=size, system_prompt=cfg.system_prompt,
                    max_frames=cfg.max_frames, video_fps=cfg.video_fps)]
            predictions = gather_object([{"id": row_id(row), "answer": answer}
                                         for row, answer, is_real in zip(mine, answers, real) if is_real])
            report = score(predictions, rows)
            metrics.update({key: value for key, value in report["overall"].items()
                            if isinstance(value, (int, float)) and not isinstance(value, bool)})
            metrics["avg"] = report["avg"]
        model.train()

        metric, step = cfg.metric_for_best_model, self.state.global_step
        if metrics.get(metric) is None:
            raise MevqaError(f"config: metric_for_best_model={metric!r} is not available from this evaluation (have: "
                             f"{', '.join(k for k, v in metrics.items() if v is not None)})")
        log.info("step %d eval: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None))
        best = self.state.best_metric  # Trainer updates it from what this returns (metric_for_best_model)
        if best is None or (metrics[metric] > best if self.args.greater_is_better else metrics[metric] < best):
            self.save_result(self.output_dir / BEST_DIR, {"step": step, **metrics})
        if self.is_world_process_zero():
            append_log(self.output_dir, {"event": "eval", "step": step, **metrics})
        logged = {key if key.startswith("eval_") else f"eval_{key}": value for key, value in metrics.items()
                  if value is not None}
        self.log(logged)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, logged)
        self._untimed += time.perf_counter() - started
        return logged

    @contextlib.contextmanager
    def model_for_generation(self):
        """The whole model, ready for ``generate``, for the length of one evaluation (see the module docstring)."""
        wrapped = self.model_wrapped
        unwrapped = self.accelerator.unwrap_model(wrapped)
        plugin = self.accelerator.state.fsdp_plugin if self.is_fsdp_enabled else None
        with checkpointing_off(unwrapped):
            if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
                from deepspeed.runtime.zero import unwrap_model_for_generation  # optional: DeepSpeed runs only

                with unwrap_model_for_generation(wrapped):
                    # Whole weights, DeepSpeed's hooks lifted: generating needs no collective. transformers' default
                    # under ZeRO-3 (synced_gpus: an all-reduce per token) would hang strategies that generate a
                    # different number of times on each process.
                    unwrapped.generate = functools.partial(unwrapped.generate, synced_gpus=False)
                    try:
                        yield unwrapped
                    finally:
                        del unwrapped.generate
            elif plugin is not None and plugin.fsdp_version == 1:
                # FSDP runs only: a torch built without distributed support has no torch.distributed.fsdp
                from torch.distributed.fsdp import FullyShardedDataParallel

                with FullyShardedDataParallel.summon_full_params(wrapped, recurse=False, writeback=False):
                    yield unwrapped
            else:  # plain, DDP, ZeRO-1/2 (whole weights everywhere), FSDP2 (generate registered by Trainer)
                yield unwrapped

    # --- saving ---------------------------------------------------------------------------------------------------
    def replace_dir(self, target: Path, write) -> None:
        """``write(tmp)`` on every process, then (main process) ``tmp`` put in place of ``target`` by
        :func:`mevqa.runfolder.replace_folder`: never half a folder. Every process must name the same ``tmp``, so
        it is ``.<name>.tmp``, not :func:`~mevqa.runfolder.atomic_folder`'s per-process name; the one a killed run
        left is removed here, or when the next run starts (:func:`mevqa.train.run.clear_previous_run`)."""
        tmp = target.with_name(f".{target.name}.tmp")
        if self.is_world_process_zero() and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        write(tmp)
        self.accelerator.wait_for_everyone()
        if self.is_world_process_zero():
            replace_folder(tmp, target)
        self.accelerator.wait_for_everyone()

    def save_result(self, target: Path, metrics: dict | None = None) -> None:
        """A loadable result folder (``final/``, ``best/``): adapter or model, processor, ``train_config.yaml``."""
        def write(tmp: Path):
            self.save_model(str(tmp))  # every process: ZeRO-3 / FSDP gather inside
            if self.is_world_process_zero():
                save_config(self.cfg, tmp)
                if metrics is not None:
                    write_json(tmp / "eval_metrics.json", metrics)

        started = time.perf_counter()
        self.replace_dir(target, write)
        self._untimed += time.perf_counter() - started
