"""Full fine-tuning of Qwen2.5-VL on mevqa QA jsonl (each of vision / merger / LLM frozen or fully trained).

    accelerate launch --config_file recipes/accelerate/deepspeed_zero3.yaml recipes/full.py \
        --config recipes/configs/qwen2_5_vl_7b/full.yaml --train_file data/train.jsonl --output_dir runs/full7b

Every config field can be overridden as ``--field value``; see ``mevqa/train/config.py`` for the fields. The model
and the processor land in ``<output_dir>/final``, a standalone checkpoint: ``mevqa answer --model <output_dir>/final``.
"""

import sys

from mevqa.cli import run_reporting_errors
from mevqa.log import configure_logging
from mevqa.train.config import parse_args
from mevqa.train.loop import load_for_training, make_accelerator, train
from mevqa.train.parts import apply_full, enable_gradient_checkpointing


def main(argv: list[str]) -> None:
    cfg = parse_args(argv)
    if cfg.load_in_4bit:
        from mevqa.errors import MevqaError

        raise MevqaError("config: load_in_4bit (QLoRA) trains adapters; use recipes/lora.py")
    accelerator = make_accelerator(cfg)
    model, processor = load_for_training(cfg, accelerator)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model = apply_full(model, cfg)
    train(cfg, accelerator, model, processor)


if __name__ == "__main__":
    configure_logging()
    sys.exit(run_reporting_errors("recipes/full.py", main, sys.argv[1:]))
