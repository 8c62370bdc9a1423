"""Command-line options that several commands share, declared once: the model group (every command that loads a
model) and the ``--json PATH`` output option (every command that can write its result as JSON).

Help strings say what an option does; a default worth telling is shown the one way every mevqa command shows it,
``(default: X)``, by :class:`HelpFormatter`, which :mod:`mevqa.cli` gives every subcommand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mevqa.messages import INPUT_MODES

# What a trained model's train_config.yaml records about how it is shown a row and answers: config field -> the
# option of ``mevqa answer``/``mevqa predict`` that overrides it (left out, the record decides). ``mevqa cv`` passes a
# zero-shot config's fields to predict by this table; :mod:`mevqa.answering.inference` reads the fields back by it.
AS_TRAINED_OPTIONS = {"inputs": "--inputs", "system_prompt": "--system-prompt", "max_frames": "--max-frames",
                      "video_fps": "--video-fps", "min_pixels": "--min-pixels", "max_pixels": "--max-pixels",
                      "video_min_pixels": "--video-min-pixels", "video_max_pixels": "--video-max-pixels",
                      "answer_strategy": "--strategy", "answer_votes": "--votes",
                      "answer_vote_temperature": "--vote-temperature", "answer_fine_labels": "--fine-labels",
                      "answer_au_tables": "--au-rules", "answer_max_aus": "--max-aus"}


def dest(option: str) -> str:
    """The argparse attribute of an option (``--vote-temperature`` -> ``vote_temperature``)."""
    return option.lstrip("-").replace("-", "_")


def add_model_arguments(parser: argparse.ArgumentParser, *, default_model: str | None, model_help: str,
                        title: str = "model") -> None:
    """The model options every command that loads a model shares (``answer``, ``predict``, ``spot``,
    ``str-predict``): how it is loaded (``--model --adapter --dtype --device --attn``) and how it is shown a row
    (``--inputs --system-prompt --max-frames --video-fps``; left out, as the model was trained). ``model_help`` says
    what ``--model`` is for in that command."""
    group = parser.add_argument_group(title)
    group.add_argument("--model", default=default_model, help=model_help)
    group.add_argument("--adapter", type=Path, help="LoRA adapter folder to apply on top of --model")
    group.add_argument("--dtype", default="auto", help="auto (bf16 on a GPU that supports it, else float32), "
                                                       "bfloat16, float16 or float32")
    group.add_argument("--device", default=None, help="cuda, cuda:1, cpu, ... (default: cuda when available)")
    group.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager, flash_attention_2)")
    group.add_argument("--inputs", choices=list(INPUT_MODES), default=None,
                       help="sampled video frames, onset/apex/offset images, the onset->apex flow image, or the "
                            "three frames plus the flow (default: as trained, else oao)")
    group.add_argument("--system-prompt", default=None,
                       help="'default' (a prompt per question kind listing the allowed answers), 'none', or a text "
                            "used for every question (default: as trained, else 'default')")
    group.add_argument("--max-frames", type=int, help="cap on video frames given to the model (default: as trained)")
    group.add_argument("--video-fps", type=float,
                       help="frame rate told to the model for videos instead of the clip's true sampled rate "
                            "(default: as trained, else the true rate)")
