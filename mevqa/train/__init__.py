"""Training: the pieces the recipes under ``recipes/`` share, and the commands around a training run.

- :mod:`mevqa.train.config`: ``TrainConfig``, a ``TrainingArguments`` with mevqa's fields, read from YAML +
  ``--field value`` overrides by ``HfArgumentParser``; the fields a resume may change.
- :mod:`mevqa.train.data`: the train/eval files read and checked, the deterministic per-process data order.
- :mod:`mevqa.train.parts`: frozen / LoRA / full per part (vision, merger, LLM), QLoRA config, per-part param groups.
- :mod:`mevqa.train.trainer`: ``MevqaTrainer``, transformers' Trainer with mevqa's loss, order, parameter groups
  and evaluation; checkpoints are Trainer's.
- :mod:`mevqa.train.run`: the recipes' driver: checks before the model loads, the output-folder lock, the resume rule.
- :mod:`mevqa.train.launch`: ``mevqa train``, which runs ``accelerate launch`` on a recipe. docs/training.md.
- :mod:`mevqa.train.export`: ``mevqa export``, QA rows with their inputs for other trainers (datasets, LLaMA-Factory,
  ms-swift).
- :mod:`mevqa.train.inspect`: ``mevqa inspect``, tokens per row, max_length and activation memory before training.
"""
