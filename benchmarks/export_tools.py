"""Do LLaMA-Factory, TRL and ms-swift read ``mevqa export`` as mevqa reads the rows? Side by side, per row.

    python benchmarks/export_tools.py --venvs /work/wt/toolvenvs                 # or MEVQA_TOOL_VENVS=...
    python benchmarks/export_tools.py --venvs /work/wt/toolvenvs --train-step    # plus one training step per tool

Each tool runs in its OWN virtual environment (they pin other transformers versions than mevqa's):
``VENVS/llamafactory`` (llamafactory 0.9.5), ``VENVS/trl`` (trl 1.16), ``VENVS/swift`` (ms-swift 4.6), or the
interpreters given by ``--llamafactory-python`` / ``--trl-python`` / ``--swift-python``. This script runs in mevqa's
environment and starts this same file in each tool's one (``worker`` mode, which imports the tool and never mevqa).

What is compared: a small synthetic CASME II build (``mevqa synth-data --size 448 336`` + ``build-data``; frames of
448x336 px) is exported for the tiny Qwen2.5-VL and the tiny Qwen3-VL (``mevqa tiny-model --family``) with
``--model``, in the ``oao`` and ``video`` input modes. For every row the grids (``image_grid_thw`` /
``video_grid_thw``), the number of visual pad tokens and the whole token sequence that each tool's own preprocessing
makes (LLaMA-Factory: ``get_dataset`` + its SFT collator, with the export's ``dataset_info.json`` and the
``tool_settings`` of ``export.json``; TRL: ``DataCollatorForVisionLanguageModeling`` over ``load_from_disk`` of the
``hf`` export; ms-swift: ``get_template(...).encode`` of the ``swift`` jsonl rows, with the ``tool_settings``
environment) are set beside mevqa's own training batch (``mevqa.models.collate.encode``, processor budgets), and the
script reports equal / unequal. It also encodes the oao rows in ms-swift WITHOUT the tool_settings environment, to
show how many more visual tokens its defaults give, and compares an oao export made with ``--config`` (a training
config with its own ``max_pixels``: mevqa's batch then uses that budget, TRL gets the processor sizes of
``tool_settings["trl"]``). ``--train-step`` runs one optimizer step on the tiny model, for every family and mode,
through each tool's own trainer (``llamafactory-cli train``, TRL ``SFTTrainer``, ``swift sft``) and reports success
or the tool's last error line. ms-swift's Qwen templates hard-code the released checkpoints' pad token ids; with the
tiny vocabulary the benchmark sets them to the tiny tokenizer's (``worker_swift``, ``SWIFT_SCRIPT``). Not part of
any test tier (pytest collects only tests/); results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
TOOLS = ("llamafactory", "trl", "swift")
FAMILIES = ("qwen2_5_vl", "qwen3_vl")
MODES = ("oao", "video")
FORMAT = {"llamafactory": "llamafactory", "trl": "hf", "swift": "swift"}


# ================================================================================================================
# worker side: runs in a tool's own environment; imports that tool and the standard library, never mevqa
# ================================================================================================================
def _grids(batch) -> dict:
    out = {}
    for key in ("image_grid_thw", "video_grid_thw"):
        value = batch.get(key) if hasattr(batch, "get") else None
        if value is not None and len(value):
            out[key] = [[int(x) for x in row] for row in value]
    return out


def _row_result(batch, input_ids, image_token_id, video_token_id) -> dict:
    ids = [int(i) for i in input_ids]
    out = {**_grids(batch), "visual_tokens": sum(1 for i in ids if i in (image_token_id, video_token_id)),
           "input_ids": ids}
    timing = batch.get("second_per_grid_ts") if hasattr(batch, "get") else None
    if timing is not None:   # Qwen2.5-VL's video timing (Qwen3-VL writes its timestamps into the tokens)
        out["second_per_grid_ts"] = [round(float(t), 6) for t in timing]
    return out


def worker_llamafactory(job: dict) -> list[dict]:
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    lf = dict(job["tool_settings"]["llamafactory"])
    args = {"model_name_or_path": job["model"], "stage": "sft", "do_train": True, "finetuning_type": "lora",
            "dataset": "mevqa_train", "dataset_dir": job["export"], "cutoff_len": 8192, "overwrite_cache": True,
            "output_dir": job["scratch"], "report_to": "none", "use_cpu": True, **lf}
    model_args, data_args, training_args, *_ = get_train_args(args)
    module = load_tokenizer(model_args)
    tokenizer = module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, stage="sft", **module)["train_dataset"]
    collator = SFTDataCollatorWith4DAttentionMask(template=template, model=None, pad_to_multiple_of=None,
                                                  label_pad_token_id=-100, **module)
    image_id, video_id = tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>"])
    rows = []
    for example in dataset:
        batch = collator([example])
        ids = batch["input_ids"][0][batch["attention_mask"][0].bool()] if batch["attention_mask"].dim() == 2 \
            else batch["input_ids"][0]
        rows.append(_row_result(batch, ids, image_id, video_id))
    return rows


def worker_trl(job: dict) -> list[dict]:
    import datasets
    from transformers import AutoProcessor
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    data = datasets.load_from_disk(job["export"])["train"]
    if "images" not in data.column_names:
        # sft_trainer.py: _is_vision_dataset = "image" in dataset_sample or "images" in dataset_sample
        raise RuntimeError("TRL's SFTTrainer treats a dataset as vision data only with an 'image' or 'images' "
                           "column (trl/trainer/sft_trainer.py, _is_vision_dataset); its collator passes no videos")
    processor = AutoProcessor.from_pretrained(job["model"])
    # the processor the user passes as processing_class, with the sizes tool_settings gives for TRL
    processor.image_processor.size = dict(job["tool_settings"]["trl"]["image_processor.size"])
    processor.video_processor.size = dict(job["tool_settings"]["trl"]["video_processor.size"])
    collator = DataCollatorForVisionLanguageModeling(processor)
    tokenizer = processor.tokenizer
    image_id, video_id = tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>"])
    rows = []
    for example in data:
        example = {key: example[key] for key in ("messages", "images")}  # what the trainer keeps (signature columns)
        batch = collator([example])
        rows.append(_row_result(batch, batch["input_ids"][0][batch["attention_mask"][0].bool()], image_id, video_id))
    return rows


def worker_swift(job: dict) -> list[dict]:
    # ms-swift reads its pixel budgets from the environment when the processor is loaded
    if job.get("swift_env", True):
        os.environ.update({key: str(value) for key, value in job["tool_settings"]["swift"]["env"].items()})
    from swift import get_processor, get_template

    processor = get_processor(job["model"], model_type=job["model_type"])
    template = get_template(processor, template_type=job["tool_settings"]["swift"]["template"], max_length=8192)
    template.set_mode("train")
    tokenizer = processor.tokenizer
    image_id, video_id = tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>"])
    # ms-swift's Qwen templates hard-code the released checkpoints' pad ids (151655 / 151656,
    # swift/template/templates/qwen.py, Qwen2VLTemplate); the tiny model's vocabulary has its own
    template.image_token_id, template.video_token_id = image_id, video_id
    rows = []
    with open(Path(job["export"]) / "train.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            encoded = template.encode({key: record[key] for key in ("messages", "images", "videos") if key in record})
            rows.append(_row_result(encoded, encoded["input_ids"], image_id, video_id))
    return rows


def worker_main(tool: str, job_file: str, out_file: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    job = json.loads(Path(job_file).read_text())
    result = {"tool": tool, "versions": _versions(tool)}
    try:
        result["rows"] = {"llamafactory": worker_llamafactory, "trl": worker_trl, "swift": worker_swift}[tool](job)
    except Exception as exc:  # reported beside the others: the benchmark says what failed, per tool
        import traceback

        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
        result["traceback"] = traceback.format_exc()[-3000:]
    Path(out_file).write_text(json.dumps(result))


def _versions(tool: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    names = {"llamafactory": "llamafactory", "trl": "trl", "swift": "ms_swift"}
    out = {}
    for name in (names[tool], "transformers", "torch", "datasets", "qwen_vl_utils"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None  # not installed in this tool's venv: printed as such
    return out


# ================================================================================================================
# orchestrator side: mevqa's environment
# ================================================================================================================
def build_workspace(work: Path) -> dict:
    """The synthetic build and the tiny models (written once; reused when present)."""
    from mevqa.cli import main as mevqa

    data = work / "data" / "qa.jsonl"
    if not data.is_file():
        raw = work / "raw"
        for argv in (["synth-data", "casme2", "--out", str(raw), "--clips", "6", "--size", "448", "336"],
                     ["build-data", "casme2", "--root", str(raw / "CASME2_RAW_selected"), "--annotations",
                      str(raw / "CASME2-coding-20140508.xlsx"), "--out", str(work / "data")]):
            if mevqa(argv) != 0:
                raise SystemExit(f"mevqa {argv[0]} failed")
    models = {}
    for family in FAMILIES:
        models[family] = work / f"tiny-{family}"
        if not (models[family] / "config.json").is_file():
            if mevqa(["tiny-model", "--family", family, "--out", str(models[family])]) != 0:
                raise SystemExit("mevqa tiny-model failed")
    # one clip's questions (the coarse and the fine question of every clip would repeat the same inputs)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    first_of_clip, seen = [], set()
    for row in rows:
        if row["image_id"] not in seen:
            seen.add(row["image_id"])
            first_of_clip.append(row)
    train = data.parent / "train.jsonl"   # beside qa.jsonl: its media paths stay relative to the build
    text = "".join(json.dumps(row) + "\n" for row in first_of_clip)
    if not train.is_file() or train.read_text() != text:
        train.write_text(text)
    return {"train": train, "models": models}


def mevqa_reference(train: Path, model: Path, mode: str, max_pixels: int | None = None) -> list[dict]:
    """mevqa's own training batch of each row, one row at a time (the processor's budgets, or a config's
    ``max_pixels`` set on the processor as the trainer sets it)."""
    from transformers import AutoProcessor

    from mevqa.models.collate import QADataset, encode
    from mevqa.models.loading import set_pixel_budgets
    from mevqa.rows import read_rows

    processor = AutoProcessor.from_pretrained(model)
    set_pixel_budgets(processor, max_pixels=max_pixels)
    dataset = QADataset(read_rows([train]), mode, with_answer=True)
    image_id, video_id = processor.tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>"])
    out = []
    for i in range(len(dataset)):
        batch = encode(processor, [dataset[i]], train=True)
        out.append(_row_result(batch, batch["input_ids"][0][batch["attention_mask"][0].bool()], image_id, video_id))
    return out


def export_for(tool: str, train: Path, model: Path, mode: str, out: Path, config: Path | None) -> dict:
    from mevqa.train.export import ExportSettings, export

    settings = ExportSettings(format=FORMAT[tool], inputs=mode, model=str(model),
                              config=str(config) if config else None)
    shutil.rmtree(out, ignore_errors=True)   # this script's own folder: a fresh export each run
    return export([train], out, settings, progress=False)


def training_config(work: Path, model: Path, max_pixels: int) -> Path:
    """A training config that sets an image budget other than the processor's (oao)."""
    path = work / f"train-{model.name}-max_pixels{max_pixels}.yaml"
    path.write_text(f"model_name_or_path: {model}\ninputs: oao\nmax_pixels: {max_pixels}\n")
    return path


def run_worker(python: Path, tool: str, job: dict, folder: Path, timeout: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    job_file, out_file = folder / "job.json", folder / "result.json"
    job_file.write_text(json.dumps(job))
    out_file.unlink(missing_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": "", "TOKENIZERS_PARALLELISM": "false"}
    for key in ("MAX_PIXELS", "MIN_PIXELS", "VIDEO_MAX_PIXELS", "VIDEO_MIN_PIXELS", "IMAGE_MAX_TOKEN_NUM",
                "IMAGE_MIN_TOKEN_NUM", "VIDEO_MAX_TOKEN_NUM", "VIDEO_MIN_TOKEN_NUM", "FPS", "FPS_MAX_FRAMES"):
        env.pop(key, None)
    proc = subprocess.run([str(python), str(HERE), "worker", tool, str(job_file), str(out_file)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=folder)
    if not out_file.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"tool": tool, "error": f"worker exited {proc.returncode}: {tail[0][:400]}"}
    return json.loads(out_file.read_text())


def compare(reference: list[dict], got: dict) -> dict:
    if "error" in got:
        return {"status": "error", "error": got["error"]}
    rows = got["rows"]
    if len(rows) != len(reference):
        return {"status": "unequal", "error": f"{len(rows)} rows, mevqa {len(reference)}"}
    def count(same):
        return sum(1 for a, b in zip(reference, rows) if same(a, b))
    n = len(reference)
    grids = count(lambda a, b: _grid_key(a) == _grid_key(b))
    tokens = count(lambda a, b: a["visual_tokens"] == b["visual_tokens"])
    ids = count(lambda a, b: a["input_ids"] == b["input_ids"])
    timing = count(lambda a, b: a.get("second_per_grid_ts") == b.get("second_per_grid_ts"))
    return {"status": "equal" if grids == tokens == n else "unequal", "rows": n, "grids_equal": grids,
            "visual_tokens_equal": tokens, "input_ids_equal": ids, "second_per_grid_ts_equal": timing,
            "first_row": {"mevqa": _show(reference[0]), "tool": _show(rows[0])}}


def _grid_key(row: dict):
    return row.get("image_grid_thw"), row.get("video_grid_thw")


def _show(row: dict) -> str:
    grid = row.get("image_grid_thw") or row.get("video_grid_thw")
    kind = "image" if row.get("image_grid_thw") else "video"
    timing = f" second_per_grid_ts={row['second_per_grid_ts']}" if "second_per_grid_ts" in row else ""
    return f"{kind}_grid_thw={grid} visual_tokens={row['visual_tokens']} tokens={len(row['input_ids'])}{timing}"


# --- one training step per tool ----------------------------------------------------------------------------------
def train_step(python: Path, tool: str, model: Path, model_type: str, export_dir: Path, tools: dict,
               folder: Path, timeout: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    bin_dir = python.parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": "", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false",
           "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "true"}
    out = folder / "out"
    if tool == "llamafactory":
        lf = tools["llamafactory"]
        config = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
                  "lora_target": "all", "dataset": "mevqa_train", "dataset_dir": str(export_dir),
                  "cutoff_len": 8192, "overwrite_cache": True, "output_dir": str(out), "overwrite_output_dir": True,
                  "per_device_train_batch_size": 2, "max_steps": 1, "learning_rate": 1e-4, "logging_steps": 1,
                  "save_strategy": "no", "report_to": "none", "use_cpu": True, "bf16": False, **lf}
        path = folder / "train.yaml"
        path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in config.items()))
        argv = [str(bin_dir / "llamafactory-cli"), "train", str(path)]
    elif tool == "trl":
        script = folder / "sft.py"
        script.write_text(TRL_SCRIPT)
        argv = [str(python), str(script), str(model), str(export_dir), str(out)]
    else:
        sw = tools["swift"]
        env.update({key: str(value) for key, value in sw["env"].items()})
        script = folder / "sft.py"
        script.write_text(SWIFT_SCRIPT)
        argv = [str(python), str(script), str(model), "--model", str(model), "--model_type", model_type, "--template",
                sw["template"], "--dataset", str(export_dir / "train.jsonl"), "--tuner_type", "lora",
                "--max_steps", "1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
                "--output_dir", str(out),
                "--save_strategy", "no", "--report_to", "none", "--torch_dtype", "float32",
                "--dataset_num_proc", "1", "--dataloader_num_workers", "0", "--split_dataset_ratio", "0",
                "--use_hf", "true"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=folder)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": timeout}
    (folder / "log.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    seconds = round(time.perf_counter() - start, 1)
    text = proc.stdout + proc.stderr
    loss = _last_loss(text)
    if proc.returncode == 0:
        return {"status": "ok", "seconds": seconds, "loss": loss}
    import re

    errors = [line for line in text.splitlines() if re.match(r"\w*(Error|Exception)\b.*:", line.strip())]
    lines = [line for line in text.splitlines() if line.strip()]
    return {"status": "failed", "seconds": seconds, "returncode": proc.returncode,
            "error": (errors or lines or [""])[-1].strip()[:400]}


def _last_loss(text: str):
    import re

    found = re.findall(r"'(?:train_)?loss': '?([0-9.]+)", text)
    return float(found[-1]) if found else None


TRL_SCRIPT = '''import sys
import datasets
from trl import SFTConfig, SFTTrainer

model, data, out = sys.argv[1:4]
train = datasets.load_from_disk(data)["train"]
args = SFTConfig(output_dir=out, max_steps=1, per_device_train_batch_size=2, learning_rate=1e-4, logging_steps=1,
                 save_strategy="no", report_to="none", use_cpu=True, bf16=False, max_length=None,
                 dataloader_num_workers=0)
trainer = SFTTrainer(model=model, args=args, train_dataset=train)
trainer.train()
print("loss", trainer.state.log_history[-1])
'''


# `swift sft` (swift/cli/sft.py) with one change: the Qwen templates' pad ids set to the tiny vocabulary's. ms-swift
# hard-codes the released checkpoints' ids (151655 / 151656); with another vocabulary it finds no pad token to expand
# and the step runs on 3 pad tokens for 36 image features (masked_scatter in Template._get_inputs_embeds_hf takes
# the first 3 and raises nothing).
SWIFT_SCRIPT = '''import sys
from transformers import AutoTokenizer
from swift.template.templates import qwen

tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
qwen.Qwen2VLTemplate.image_token_id, qwen.Qwen2VLTemplate.video_token_id = tokenizer.convert_tokens_to_ids(
    ["<|image_pad|>", "<|video_pad|>"])
from swift.pipelines import sft_main

sft_main(sys.argv[2:])
'''


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venvs", type=Path, default=os.environ.get("MEVQA_TOOL_VENVS"),
                        help="folder holding llamafactory/, trl/ and swift/ virtual environments "
                             "(default: $MEVQA_TOOL_VENVS)")
    for tool in TOOLS:
        parser.add_argument(f"--{tool}-python", type=Path, help=f"the {tool} environment's python "
                                                                f"(default: VENVS/{tool}/bin/python)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mevqa-export-tools"),
                        help="working folder: the synthetic build, tiny models, exports, logs")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--train-step", action="store_true",
                        help="also run one training step per tool, family and mode")
    parser.add_argument("--config-max-pixels", type=int, default=4704,
                        help="also compare an oao export made with --config, a training config whose max_pixels is "
                             "this (default: 4704, 6 tokens of 28x28 px; 0: skip)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per tool run")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args(argv)
    pythons = {}
    for tool in args.tools:
        python = getattr(args, f"{tool}_python") or (args.venvs / tool / "bin" / "python" if args.venvs else None)
        if python is None or not Path(python).is_file():
            parser.error(f"no python for {tool}: give --venvs (or MEVQA_TOOL_VENVS) or --{tool}-python")
        pythons[tool] = Path(python)
    os.environ["HF_HUB_OFFLINE"] = "1"
    work = args.work.resolve()
    space = build_workspace(work)
    results = []
    for family in args.families:
        model = space["models"][family]
        cases = [(mode, None) for mode in args.modes]
        if args.config_max_pixels and "oao" in args.modes:
            cases.append(("oao", training_config(work, model, args.config_max_pixels)))
        for mode, config in cases:
            reference = mevqa_reference(space["train"], model, mode, args.config_max_pixels if config else None)
            case = f"{mode}, --config max_pixels={args.config_max_pixels}" if config else mode
            print(f"\n== {family}, {case}: {len(reference)} rows; mevqa row 1: {_show(reference[0])}")
            for tool in args.tools:
                folder = work / "runs" / f"{family}-{mode}{'-config' if config else ''}-{tool}"
                manifest = export_for(tool, space["train"], model, mode, folder / "export", config)
                tools = manifest["tool_settings"]
                job = {"model": str(model), "model_type": family, "export": str(folder / "export"),
                       "tool_settings": tools, "scratch": str(folder / "scratch")}
                got = run_worker(pythons[tool], tool, job, folder, args.timeout)
                verdict = compare(reference, got)
                entry = {"family": family, "mode": mode, "config": str(config) if config else None, "tool": tool,
                         "versions": got.get("versions"), **verdict, "notes": tools["notes"]}
                if tool == "swift" and mode == "oao" and not config and "error" not in got:
                    bare = run_worker(pythons[tool], tool, {**job, "swift_env": False}, folder / "no-env",
                                      args.timeout)
                    if "rows" in bare:
                        entry["swift_without_env_visual_tokens"] = bare["rows"][0]["visual_tokens"]
                        entry["swift_without_env_grid"] = bare["rows"][0].get("image_grid_thw")
                    else:
                        entry["swift_without_env_error"] = bare.get("error")
                if args.train_step and not config:   # also where the reading failed: the trainer shows its error
                    entry["train_step"] = train_step(pythons[tool], tool, model, family, folder / "export", tools,
                                                     folder / "train", args.timeout)
                results.append(entry)
                line = f"  {tool:12s} {entry['status']}"
                if "error" in entry:
                    line += f": {entry['error']}"
                else:
                    n = entry["rows"]
                    line += (f" (rows equal of {n}: grids {entry['grids_equal']}, visual tokens "
                             f"{entry['visual_tokens_equal']}, all token ids {entry['input_ids_equal']}, "
                             f"second_per_grid_ts {entry['second_per_grid_ts_equal']}) row 1: "
                             f"{entry['first_row']['tool']}")
                if "swift_without_env_visual_tokens" in entry:
                    line += (f"; without the tool_settings environment: "
                             f"{entry['swift_without_env_visual_tokens']} visual tokens "
                             f"(grids {entry['swift_without_env_grid']})")
                if "train_step" in entry:
                    line += f"\n  {'':12s} train step: {json.dumps(entry['train_step'])}"
                print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(*sys.argv[2:5])
    else:
        sys.exit(main())
