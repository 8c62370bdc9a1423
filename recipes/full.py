"""Full fine-tuning of Qwen2.5-VL on mevqa QA jsonl: each of vision / merger / LLM frozen or fully trained.

    accelerate launch --config_file recipes/accelerate/deepspeed_zero3.yaml recipes/full.py \\
        --config recipes/configs/qwen2_5_vl_7b/full.yaml --train_file data/train.jsonl --output_dir runs/full7b

The model and the processor land in <output_dir>/final, a standalone checkpoint:
`mevqa answer --model <output_dir>/final`.
"""

import sys

from mevqa.cli import run_reporting_errors
from mevqa.log import configure_logging

if __name__ == "__main__":
    configure_logging()  # first: importing the trainer imports bitsandbytes, whose import-time warning it quiets
    from mevqa.train.run import main

    sys.exit(run_reporting_errors("recipes/full.py", main, "full", sys.argv[1:], __doc__))
