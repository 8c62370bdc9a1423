"""LoRA fine-tuning of Qwen2.5-VL on mevqa QA jsonl: LoRA on any of vision / merger / LLM, the other parts frozen or
fully trained; QLoRA with load_in_4bit.

    accelerate launch recipes/lora.py --config recipes/configs/qwen2_5_vl_3b/lora_baseline.yaml \\
        --train_file data/train.jsonl --eval_file data/val.jsonl --output_dir runs/baseline

The adapter (with any fully trained parts inside it) and the processor land in <output_dir>/final: load them with
`mevqa answer --adapter <output_dir>/final`, or fold them into the base with `mevqa merge`.
"""

import sys

from mevqa.cli import run_reporting_errors
from mevqa.log import configure_logging

if __name__ == "__main__":
    configure_logging()  # first: importing the trainer imports bitsandbytes, whose import-time warning it quiets
    from mevqa.train.run import main

    sys.exit(run_reporting_errors("recipes/lora.py", main, "lora", sys.argv[1:], __doc__))
