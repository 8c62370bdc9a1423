"""LoRA fine-tuning of Qwen2.5-VL on mevqa QA jsonl (LoRA on any of vision / merger / LLM, other parts frozen or full).

    accelerate launch recipes/lora.py --config recipes/configs/qwen2_5_vl_3b/lora_baseline.yaml \
        --train_file data/train.jsonl --eval_file data/val.jsonl --output_dir runs/baseline

Every config field can be overridden as ``--field value``; see ``mevqa/train/config.py`` for the fields. The adapter
(with any fully trained parts inside it) and the processor land in ``<output_dir>/final``: load them with
``mevqa answer --adapter <output_dir>/final`` or fold them into the base with ``mevqa merge``.
"""

import sys

from mevqa.cli import run_reporting_errors
from mevqa.log import configure_logging
from mevqa.train.config import parse_args
from mevqa.train.loop import load_for_training, make_accelerator, train
from mevqa.train.parts import apply_lora, enable_gradient_checkpointing


def main(argv: list[str]) -> None:
    cfg = parse_args(argv)
    accelerator = make_accelerator(cfg)
    model, processor = load_for_training(cfg, accelerator)
    if cfg.gradient_checkpointing and not cfg.load_in_4bit:  # QLoRA's k-bit preparation enables it itself
        enable_gradient_checkpointing(model)
    model = apply_lora(model, cfg)
    train(cfg, accelerator, model, processor)


if __name__ == "__main__":
    configure_logging()
    sys.exit(run_reporting_errors("recipes/lora.py", main, sys.argv[1:]))
