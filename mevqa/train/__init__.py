"""Training pieces shared by the recipes under ``recipes/``.

- :mod:`mevqa.train.config`: ``TrainConfig`` (one typed dataclass with help per field), YAML + ``--field value``
  overrides, the fields a resume may change.
- :mod:`mevqa.train.data`: the train/eval files read and checked, the deterministic per-process data order.
- :mod:`mevqa.train.parts`: frozen / LoRA / full per part (vision, merger, LLM), QLoRA config, per-part param groups.
- :mod:`mevqa.train.trainer`: ``MevqaTrainer``, transformers' Trainer with mevqa's loss, order, evaluation and
  checkpoints.
- :mod:`mevqa.train.run`: the recipes' driver: checks before the model loads, the output-folder lock, the resume rule.
"""
