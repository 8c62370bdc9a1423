"""The memory note of every shipped training config, reproducibly: ``mevqa inspect`` on a fixed synthetic CASME II
build with each config's real checkpoint geometry, for one process of the launch its header shows.

    python benchmarks/config_memory.py                  # print the table
    python benchmarks/config_memory.py --write          # also rewrite each config's "# Memory (...)" comment
    python benchmarks/config_memory.py --markdown       # the table as docs/benchmarks.md shows it
    python benchmarks/config_memory.py --work DIR       # keep the build and model folders in DIR (default: a temp)

Offline and deterministic; about 18 s on 2 CPU cores.

1. Data: ``mevqa synth-data casme2`` (12 clips of 12 frames, 640 x 480, CASME II's recorded frame size, seed 0),
   then ``mevqa build-data casme2`` with its defaults (every input mode, images at most 448 px on the longest side,
   8 video frames, seed 0). One build serves every config: inspect reads the config's input mode from the rows.
2. Models: for each released checkpoint a config names, a folder holding the checkpoint's config.json (built from
   ``qwen2_5_vl_configs.json`` / ``qwen3_vl_configs.json`` / ``qwen3_vl_moe_configs.json`` beside this script, token
   ids from the processor) and the tiny family's processor (:func:`mevqa.models.tiny.build_tiny_processor`) with the
   real processor's pixel budgets (``REAL_PIXELS``). The config's own budgets then replace them as in training.
3. :func:`mevqa.train.inspect.inspect_files` for every shipped config whose ``model_name_or_path`` is a released
   checkpoint and that trains (zero-shot configs, ``num_train_epochs: 0``, and the tiny configs are left out), for
   one process of the config's intended launch: the first ``accelerate launch`` command of its header comment gives
   the accelerate config (``ACCELERATE`` maps it to inspect's ``--sharding``), ``--num_processes`` (else the
   accelerate config's own) and the recipe options it adds (``--dtype bfloat16``: config overrides, as in training).

Text tokens are counted by the tiny model's tokenizer: inspect counts text with the processor's tokenizer (it has no
tokenizer-independent count), and Qwen's real tokenizer is not available offline. The tiny tokenizer is a byte-level
BPE with Qwen2's pre-tokenisation and a 662-entry vocabulary trained on mevqa's prompts and the official questions:
it keeps the official questions' words whole ("What is the coarse expression class?" is 7 tokens, as in Qwen's
151k vocabulary) but splits other text more finely ("You are a helpful assistant." is 15 tokens, 6 in Qwen's), so
its text counts lean high; each note says how many of the row's tokens are text. The table's "text B" counts that
row's chat at one token per UTF-8 byte (each special token one), which no byte-level BPE can exceed, and "GiB bound"
is the estimate at that count: a tokenizer-independent upper bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml  # noqa: E402

from mevqa.messages import build_messages  # noqa: E402
from mevqa.models.families import FAMILIES  # noqa: E402
from mevqa.train.inspect import GIB, SHARDING, STATE_TERMS, activation_memory, inspect_files  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMMAND = "python benchmarks/config_memory.py"

# A config's model_name_or_path -> (architecture numbers beside this script, their key).
CHECKPOINTS = {
    "Qwen/Qwen2.5-VL-3B-Instruct": ("qwen2_5_vl_configs.json", "3b"),
    "Qwen/Qwen2.5-VL-7B-Instruct": ("qwen2_5_vl_configs.json", "7b"),
    "Qwen/Qwen3-VL-4B-Instruct": ("qwen3_vl_configs.json", "4b"),
    "Qwen/Qwen3-VL-8B-Instruct": ("qwen3_vl_configs.json", "8b"),
    "Qwen/Qwen3-VL-30B-A3B-Instruct": ("qwen3_vl_moe_configs.json", "30b_a3b"),
}

# The released processors' pixel budgets (min, max), image and video, as the public checkpoints' files give them
# (not downloaded here; every shipped config sets its own max, so the mins are what counts). Qwen2.5-VL-3B/7B-Instruct's
# preprocessor_config.json: min_pixels 3136, max_pixels 12845056; those checkpoints ship no
# video_preprocessor_config.json, so transformers' video processor reads the same file (video_processing_utils).
# Qwen3-VL-Instruct's preprocessor_config.json: size 65536..16777216; its video_preprocessor_config.json:
# 4096..25165824 for the whole video (also in qwen3_vl_configs.json, "processor").
_QWEN3_PIXELS = {"image": (65536, 16777216), "video": (4096, 25165824)}
REAL_PIXELS = {"qwen2_5_vl": {"image": (3136, 12845056), "video": (3136, 12845056)},
               "qwen3_vl": _QWEN3_PIXELS, "qwen3_vl_moe": _QWEN3_PIXELS}

SYNTH = {"clips": 12, "frames": 12, "size": (640, 480), "seed": 0}   # mevqa synth-data casme2's options
BUILD = ["--seed", "0"]
BUILD_NOTE = "a synthetic CASME II build (synth-data: 12 clips of 640 x 480, seed 0; build-data defaults)"

# recipes/accelerate/<name>.yaml -> inspect's --sharding
ACCELERATE = {"single_gpu": "none", "multi_gpu": "none", "deepspeed_zero2": "zero2", "deepspeed_zero3": "zero3",
              "fsdp": "fsdp"}
# options of a launch line that name files, not settings
FILE_OPTIONS = ("--config", "--train_file", "--eval_file")

MEMORY_START = "# Memory ("
MEMORY_END = "before a long run."


def mevqa(*argv: str) -> None:
    from mevqa.cli import main

    if main(list(argv)) != 0:
        raise SystemExit(f"mevqa {' '.join(argv)} failed")


def build_data(work: Path) -> Path:
    from mevqa.data_builders.synth import write_synthetic_dataset

    qa = work / "casme2" / "qa.jsonl"
    if not qa.exists():
        raw = write_synthetic_dataset("casme2", work / "raw", **SYNTH)
        mevqa("build-data", "casme2", "--root", str(raw["root"]), "--annotations", str(raw["annotations"]),
              "--out", str(work / "casme2"), *BUILD)
    return qa


def model_folder(work: Path, checkpoint: str) -> Path:
    """A folder with ``checkpoint``'s config.json and the tiny family's processor at the real pixel budgets."""
    from transformers import AutoConfig

    from mevqa.models.tiny import build_tiny_processor

    fam = family_of_checkpoint(checkpoint)
    out = work / "models" / checkpoint.replace("/", "--")
    if (out / "config.json").exists():
        return out
    if checkpoint not in CHECKPOINTS:
        raise SystemExit(f"{checkpoint}: no architecture numbers beside this script; add them to CHECKPOINTS")
    file, key = CHECKPOINTS[checkpoint]
    arch = json.loads((HERE / file).read_text())[key]
    processor = build_tiny_processor(fam.model_type)
    for part, name in (("image_processor", "image"), ("video_processor", "video")):
        low, high = REAL_PIXELS[fam.model_type][name]
        getattr(processor, part).size = {"shortest_edge": low, "longest_edge": high}
    ids = {key: processor.tokenizer.convert_tokens_to_ids(token) for key, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    config = AutoConfig.for_model(fam.model_type, text_config=arch["text_config"],
                                  vision_config=arch["vision_config"],
                                  tie_word_embeddings=arch["tie_word_embeddings"], **ids)
    processor.save_pretrained(out)
    config.save_pretrained(out)
    return out


def family_of_checkpoint(checkpoint: str):
    return next(f for f in FAMILIES.values() if checkpoint in f.checkpoints)


def shipped_configs() -> list[Path]:
    """Shipped configs on a released checkpoint that train."""
    chosen = []
    for path in sorted((REPO / "recipes" / "configs").rglob("*.yaml")):
        written = yaml.safe_load(path.read_text())
        released = any(written.get("model_name_or_path") in f.checkpoints for f in FAMILIES.values())
        if released and written.get("num_train_epochs") != 0:
            chosen.append(path)
    return chosen


@dataclasses.dataclass
class Figure:
    config: str
    checkpoint: str
    family: str
    inputs: str
    batch: int
    tokens: int            # the longest row: text (tiny tokenizer) + visual
    visual: int
    text_bytes: int        # that row's text at one token per UTF-8 byte (an upper bound on its text tokens)
    checkpointing: bool
    gib: float
    gib_bound: float       # the estimate with the longest row's text at its byte count
    launch: str            # the accelerate config's name
    processes: int
    sharding: str
    state_gib: dict        # weights, gradients, optimizer -> GiB per process
    overrides: list        # KEY=VALUE the launch line adds to the config

    @property
    def rerun_options(self) -> str:
        options = (f" --processes {self.processes}" if self.processes > 1 else "") + \
            (f" --sharding {self.sharding}" if self.sharding != "none" else "")
        return options + "".join(f" --set {item}" for item in self.overrides)

    @property
    def total_gib(self) -> float:
        return self.gib + sum(self.state_gib.values())

    @property
    def launch_words(self) -> str:
        if self.processes == 1:
            return "one GPU"
        kind = "DDP" if self.sharding == "none" else SHARDING[self.sharding].split(" (")[0].split(",")[0]
        return f"{kind}, {self.processes} processes"

    def note(self) -> list[str]:
        """The config's memory comment."""
        name = self.checkpoint.split("/")[-1]
        w, g, o = (self.state_gib[key] for key in STATE_TERMS)
        text = (f"Memory (`{COMMAND}`: mevqa inspect with {name}'s config.json and pixel budgets on {BUILD_NOTE}, "
                f"inputs {self.inputs}, text counted by the tiny model's tokenizer): activations of one micro-batch "
                f"of {self.batch}\0x\0{self.tokens} tokens ({self.tokens - self.visual} of them text) about "
                f"{self.gib:.2f}\0GiB {'with' if self.checkpointing else 'without'} checkpointing; per process of "
                f"the launch above ({self.launch_words}) weights {w:.2f}\0GiB, gradients {g:.2f}\0GiB and AdamW "
                f"state {o:.2f}\0GiB: {self.total_gib:.2f}\0GiB in all. Rerun `mevqa inspect --config this"
                f"{self.rerun_options}` on your own data {MEMORY_END}")
        # \0 keeps "2 x 604" and "2.62 GiB" on one line
        return ["# " + line.replace("\0", " ") for line in textwrap.wrap(text, 118)]


def launch_of(config: Path) -> tuple[str, int, list[str]]:
    """(accelerate config name, processes, KEY=VALUE overrides) of the first ``accelerate launch`` command in the
    config's header comment."""
    header = []
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    first = next((i for i, line in enumerate(header) if line.startswith("accelerate launch ")), None)
    if first is None:
        raise SystemExit(f"{config}: its header names no `accelerate launch` command")
    command = [header[first]]
    while command[-1].endswith("\\"):
        command[-1] = command[-1][:-1]
        command.append(header[first + len(command)])
    words = shlex.split(" ".join(command))[2:]
    script = next(i for i, word in enumerate(words) if word.endswith(".py"))
    options = dict(zip(words[:script:2], words[1:script:2]))
    name = Path(options["--config_file"]).stem
    if name not in ACCELERATE:
        raise SystemExit(f"{config}: launches with {name}.yaml, which ACCELERATE does not map to a sharding")
    accelerate = yaml.safe_load((REPO / "recipes" / "accelerate" / f"{name}.yaml").read_text())
    processes = int(options.get("--num_processes", accelerate.get("num_processes", 1)))
    recipe = words[script + 1:]
    overrides = [f"{key[2:]}={value}" for key, value in zip(recipe[::2], recipe[1::2])
                 if key.startswith("--") and key not in FILE_OPTIONS]
    return name, processes, overrides


def measure(config: Path, data: Path, work: Path) -> Figure:
    written = yaml.safe_load(config.read_text())
    checkpoint = written["model_name_or_path"]
    folder = model_folder(work, checkpoint)
    launch, processes, overrides = launch_of(config)
    report = inspect_files([data], config, model=str(folder), overrides=overrides, progress=False,
                           processes=processes, sharding=ACCELERATE[launch])
    s = report.settings
    longest = report.longest
    row = next(r for r in _rows(data) if _id(r) == longest.id)
    messages, vision = build_messages(row, s.inputs, system_prompt=s.system_prompt, with_answer=True,
                                      max_frames=s.max_frames)
    text_bytes = chat_bytes(folder, messages, len(vision.images) + len(vision.videos))
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(folder)
    bound_tokens = longest.vision[s.inputs] + text_bytes
    bound = activation_memory(s.per_device_train_batch_size * bound_tokens, report.patches, model_config, s)
    return Figure(config=config.relative_to(REPO / "recipes" / "configs").as_posix(), checkpoint=checkpoint,
                  family=family_of_checkpoint(checkpoint).name, inputs=s.inputs, batch=s.per_device_train_batch_size,
                  tokens=longest.total, visual=longest.vision[s.inputs], text_bytes=text_bytes,
                  checkpointing=s.gradient_checkpointing, gib=sum(report.memory.values()) / GIB,
                  gib_bound=sum(bound.values()) / GIB, launch=launch, processes=processes,
                  sharding=ACCELERATE[launch], overrides=overrides,
                  state_gib={key: sum(e[key] for e in report.state.values()) / GIB for key in STATE_TERMS})


def _rows(data: Path) -> list[dict]:
    from mevqa.rows import read_rows

    return read_rows([data])


def _id(row: dict) -> str:
    from mevqa.messages import row_id

    return row_id(row)


def chat_bytes(folder: Path, messages: list[dict], placeholders: int) -> int:
    """An upper bound on the text tokens of ``messages`` under any byte-level BPE with Qwen's special tokens: the
    chat as the template renders it, each special token one, every other UTF-8 byte one (vision placeholders out)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    text = processor.apply_chat_template(messages, tokenize=False)
    special = processor.tokenizer.all_special_tokens + list(processor.tokenizer.added_tokens_encoder)
    pattern = "|".join(re.escape(token) for token in sorted(set(special), key=len, reverse=True))
    pieces = re.split(f"({pattern})", text)
    markers = sum(1 for piece in pieces[1::2])
    return markers - placeholders + sum(len(piece.encode()) for piece in pieces[0::2])


def rewrite_note(config: Path, note: list[str]) -> bool:
    """Replace the config's memory comment (``# Memory (`` .. ``before a long run.``) with ``note``, or add it at
    the end of the leading comment block; nothing else changes. True when the file changed."""
    lines = config.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(MEMORY_START)), None)
    if start is None:
        start = end = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    else:
        end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith(MEMORY_END)) + 1
    new = lines[:start] + [line + "\n" for line in note] + lines[end:]
    if new == lines:
        return False
    tmp = config.with_suffix(".yaml.tmp")
    tmp.write_text("".join(new))
    tmp.replace(config)
    return True


def table(figures: list[Figure]) -> str:
    head = (f"{'config':<36}{'family':<14}{'inputs':<13}{'batch x tokens':>15}{'visual':>8}{'text B':>8}"
            f"{'ckpt':>6}{'GiB':>8}{'GiB bound':>11}  {'launch':<20}{'weights':>8}{'grads':>8}{'optim':>8}{'total':>8}")
    rows = [f"{f.config:<36}{f.family:<14}{f.inputs:<13}{f'{f.batch} x {f.tokens}':>15}{f.visual:>8}"
            f"{f.text_bytes:>8}{'on' if f.checkpointing else 'off':>6}{f.gib:>8.2f}{f.gib_bound:>11.2f}  "
            f"{f'{f.launch} x{f.processes}':<20}" + "".join(f"{f.state_gib[key]:>8.2f}" for key in STATE_TERMS)
            + f"{f.total_gib:>8.2f}" for f in figures]
    return "\n".join([head, *rows])


def markdown(figures: list[Figure]) -> str:
    """The table docs/benchmarks.md shows."""
    rows = [f"| `{f.config}` | {f.inputs} | {f.batch} x {f.tokens} ({f.tokens - f.visual}) | {f.gib:.2f} | "
            f"{f.gib_bound:.2f} | {f.launch_words} | "
            + " + ".join(f"{f.state_gib[key]:.2f}" for key in STATE_TERMS) + f" | {f.total_gib:.2f} |"
            for f in figures]
    return "\n".join(["| config | inputs | batch x tokens (text) | activations GiB | GiB bound | launch | weights + "
                      "gradients + AdamW GiB | total GiB |", "|---|---|---|---|---|---|---|---|", *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite each config's memory comment in place")
    parser.add_argument("--markdown", action="store_true", help="print the table as docs/benchmarks.md shows it")
    parser.add_argument("--work", type=Path, help="folder for the build and model folders (default: a temp folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = build_data(work)
        figures = [measure(config, data, work) for config in shipped_configs()]
    print(markdown(figures) if args.markdown else table(figures))
    print("activations of one micro-batch of the longest row, text tokens by the tiny tokenizer; 'text B' and "
          "'GiB bound': that row's chat at one token per UTF-8 byte; weights, gradients and AdamW state per process "
          "of the config's launch (the first `accelerate launch` of its header), total = activations + those")
    if args.write:
        for f in figures:
            if rewrite_note(REPO / "recipes" / "configs" / f.config, f.note()):
                print(f"rewrote the memory note of {f.config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
