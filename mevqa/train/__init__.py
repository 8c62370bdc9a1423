"""Training pieces shared by the recipes under ``recipes/``.

- :mod:`mevqa.train.config`: ``TrainConfig`` (one typed dataclass), YAML + ``--field value`` overrides.
- :mod:`mevqa.train.parts`: frozen / LoRA / full per part (vision, merger, LLM), QLoRA config, per-part param groups.
- :mod:`mevqa.train.data`: the deterministic, resumable, per-process data order.
- :mod:`mevqa.train.loop`: the accelerate loop (token-normalised loss, evaluation, checkpoints, resume, final save).
"""
