"""``mevqa train CONFIG [--gpus N | --accelerate-config FILE] [-- --field value ...]``: one command for training.

It reads and checks the config (with the overrides) here first, picks the recipe (``recipes/lora.py`` when a part
is ``lora``, a LoRA regex or QLoRA is asked for, else ``recipes/full.py``) and runs ``accelerate launch`` with the
settings of the chosen backend: one process (the default: one GPU, or the CPU), DDP over N processes (``--gpus N``),
or an accelerate config file (``--accelerate-config``: a file, or the name of one shipped in
``recipes/accelerate/``: single_gpu, multi_gpu, deepspeed_zero2, deepspeed_zero3, fsdp). Mixed precision is the
config's (``bf16`` / ``fp16``, Trainer's fields), unless the accelerate config file sets it.

The child's output is passed through as it comes, until it fails: then only its one error line is shown (each
process prints it; it is shown once), never the launcher's traceback, and the status is 2.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

from mevqa.errors import MevqaError
from mevqa.paths import console_command, recipe_path

SHIPPED = ("single_gpu", "multi_gpu", "deepspeed_zero2", "deepspeed_zero3", "fsdp")
# A recipe's failure as run_reporting_errors prints it.
_ERROR_LINE = re.compile(r"^\S*(lora|full)\.py: error: ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="training config YAML (recipes/configs/)")
    _add_launch_options(parser)
    # REMAINDER: argparse gives a positional list after CONFIG nothing once an option follows CONFIG, so the launch
    # options written after CONFIG are read from here again (run()).
    parser.add_argument("overrides", nargs=argparse.REMAINDER, metavar="-- --field value",
                        help="config fields overriding the YAML (Trainer's names; recipes/lora.py --help lists them)")
    parser.epilog = __doc__.split("\n\n", 1)[1]


def _add_launch_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpus", type=int, default=None, help="processes, one per GPU (DDP when > 1; default 1)")
    where.add_argument("--accelerate-config", default=None,
                       help=f"an accelerate config file, or a shipped one: {', '.join(SHIPPED)}")


class _Refusing(argparse.ArgumentParser):
    def error(self, message):
        raise MevqaError(message)


def split_launch_options(args: argparse.Namespace) -> list[str]:
    """The config overrides; launch options written after CONFIG (argparse leaves them in the remainder) go into
    ``args``."""
    rest = list(args.overrides)
    parser = _Refusing(prog="mevqa train", add_help=False)
    _add_launch_options(parser)
    if "--" in rest:
        cut = rest.index("--")
        given, overrides = parser.parse_args(rest[:cut]), rest[cut + 1:]
    else:
        given, overrides = parser.parse_known_args(rest)
    if given.gpus is not None or given.accelerate_config is not None:
        if args.gpus is not None or args.accelerate_config is not None:
            raise MevqaError("give --gpus or --accelerate-config once")
        args.gpus, args.accelerate_config = given.gpus, given.accelerate_config  # each parser allows one of them
    return overrides


def recipe_of(cfg) -> str:
    parts = (cfg.vision, cfg.merger, cfg.llm)
    return "lora" if "lora" in parts or cfg.lora_target_regex or cfg.load_in_4bit else "full"


def accelerate_file(name: str) -> Path:
    path = Path(name)
    if name in SHIPPED:
        path = Path(str(resources.files("mevqa.recipes"))) / "accelerate" / f"{name}.yaml"
    if not path.is_file():
        raise MevqaError(f"{name}: accelerate config not found (a file, or one of {', '.join(SHIPPED)})")
    return path


def launch_command(recipe: Path, args: argparse.Namespace, overrides: list[str]) -> list[str]:
    if args.gpus is not None and args.gpus < 1:
        raise MevqaError(f"--gpus {args.gpus}: expected a positive number of processes")
    if args.accelerate_config:
        launcher = ["--config_file", str(accelerate_file(args.accelerate_config))]
    else:
        processes = args.gpus or 1
        launcher = ["--multi_gpu"] if processes > 1 else []
        launcher += ["--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
                     "--dynamo_backend", "no"]
    launch = console_command("accelerate", "accelerate.commands.launch", ["launch"])
    return [*launch, "-q", *launcher, str(recipe), "--config", str(args.config), *overrides]


def run_child(command: list[str]) -> int:
    """Run ``command``, passing its output through until a failure starts (an error line or a traceback); on
    failure show the one error line and return 2."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    error, held = None, []
    for line in process.stderr:
        if _ERROR_LINE.match(line):
            error = error or line.rstrip("\n")
        elif held or line.startswith("Traceback (most recent call last)"):
            held.append(line)
        elif error is None:
            sys.stderr.write(line)
    status = process.wait()
    if status == 0:
        sys.stderr.writelines(held)
        return 0
    if error is None:  # a crash without mevqa's line: the exception's own last line
        last = next((line.strip() for line in reversed(held) if line.strip() and not line.startswith(" ")), None)
        error = f"training: error: {last or f'the training process ended with status {status}'}"
    print(error, file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from mevqa.train.config import load_config  # lazy: transformers (seconds), so `mevqa train --help` stays quick

    overrides = split_launch_options(args)
    cfg = load_config(args.config, overrides)  # a config mistake is one line here, before any launch
    return run_child(launch_command(recipe_path(recipe_of(cfg)), args, overrides))
