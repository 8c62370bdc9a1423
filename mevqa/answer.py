"""``mevqa answer``: ask a model one question about one clip (a folder of frames or a video file).

The clip goes through the same steps as a dataset clip in ``mevqa build-data``: onset/offset default to the first and
last frame, the apex is estimated with the builders' estimator (the frame most different from onset), and
:func:`mevqa.media.build_media` writes the inputs of the chosen input mode into a temporary folder. The prompt comes
from :mod:`mevqa.messages` and the answer from :func:`mevqa.generation.generate_answers`, as in training and
``mevqa predict``. Only the answer goes to stdout (logs go to stderr); ``--json`` prints the answer with the inputs
used and timings.

A model trained by mevqa carries ``train_config.yaml`` (in the adapter folder, or in a merged checkpoint): its input
mode, system prompt, pixel budgets and frame cap become the defaults, so the model is asked the way it was trained;
a flag given on the command line wins (and a difference is logged).

The helpers :func:`add_model_arguments`, :func:`add_media_arguments`, :func:`add_generation_arguments`,
:func:`clip_media` and their ``*_kwargs`` companions are shared with ``mevqa predict``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from mevqa.errors import MevqaError
from mevqa.messages import INPUT_MODES, resolve_media

log = logging.getLogger(__name__)


# --- arguments shared with `mevqa predict` ---------------------------------------------------------------------
def add_model_arguments(parser: argparse.ArgumentParser, *, model_required: bool) -> None:
    from mevqa.model import DEFAULT_MODEL

    group = parser.add_argument_group("model")
    group.add_argument("--model", required=model_required, default=None if model_required else DEFAULT_MODEL,
                       help="model folder or hub name: a base Qwen2.5-VL, a merged checkpoint or a tiny model"
                            + ("" if model_required else f" (default {DEFAULT_MODEL})"))
    group.add_argument("--adapter", type=Path, help="LoRA adapter folder to apply on top of --model")
    group.add_argument("--dtype", default="auto", help="auto (bf16 on a GPU that supports it, else float32), "
                                                       "bfloat16, float16 or float32")
    group.add_argument("--device", default=None, help="cuda, cuda:1, cpu, ... (default: cuda when available)")
    group.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager, flash_attention_2)")


def add_media_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inputs (use the settings the model was trained with)")
    group.add_argument("--inputs", choices=list(INPUT_MODES), default=None,
                       help="what the model sees: sampled video frames, onset/apex/offset images, the onset->apex "
                            "flow image, or the three frames plus the flow (default: as trained, else oao)")
    group.add_argument("--fps", type=float, help="frame rate of the clip (a video file's own rate is used "
                                                 "otherwise); needed for --inputs video on a frame folder")
    group.add_argument("--frames", type=int, default=8, help="video frames sampled uniformly onset..offset "
                                                             "(default 8, as build-data)")
    group.add_argument("--size", type=int, default=448, help="longer side of the images in pixels (default 448)")
    group.add_argument("--flow", choices=("farneback", "tvl1"), default="farneback", help="optical flow method")
    group.add_argument("--head-motion", choices=("nose", "median", "none"), default="nose",
                       help="how head motion is removed from the flow (default nose)")
    group.add_argument("--blend", type=float, default=0.0, help="weight of the grey onset frame under the flow "
                                                                "colours (0.5 as TIE)")
    group.add_argument("--face-crop", action="store_true", help="crop frames to the face found on the onset frame")


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation (greedy unless --do-sample)")
    group.add_argument("--max-new-tokens", type=int, default=64, help="longest answer in tokens (default 64)")
    group.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    group.add_argument("--temperature", type=float, default=1.0)
    group.add_argument("--top-p", type=float, default=1.0)
    group.add_argument("--top-k", type=int, default=None)
    group.add_argument("--repetition-penalty", type=float, default=1.0)
    group.add_argument("--seed", type=int, default=0, help="random seed for sampling (default 0)")
    group.add_argument("--system-prompt", default=None,
                       help="'default' (a prompt per question kind listing the allowed answers), 'none', or a text "
                            "used for every question (default: as trained, else 'default')")
    group.add_argument("--max-frames", type=int, help="cap on video frames given to the model (default: as trained)")
    group.add_argument("--video-fps", type=float,
                       help="frame rate told to the model for videos instead of the clip's true sampled rate "
                            "(default: as trained, else the true rate)")


# Training settings that decide what the model sees and is told; mevqa's trainers save them in train_config.yaml.
PIXEL_SETTINGS = ("min_pixels", "max_pixels", "video_min_pixels", "video_max_pixels")
DEFAULTS = {"inputs": "oao", "system_prompt": "default", "max_frames": None, "video_fps": None}


def trained_settings(model, adapter) -> tuple[dict, Path | None]:
    """(settings, file) from the ``train_config.yaml`` of the adapter folder, else of the model folder."""
    from mevqa.train.config import load_yaml

    for folder in (adapter, model):
        path = Path(str(folder)).expanduser() / "train_config.yaml" if folder else None
        if path is not None and path.is_file():
            config = load_yaml(path)  # the trainer's own reader: checked keys and types
            settings = {key: config.get(key) for key in (*DEFAULTS, *PIXEL_SETTINGS) if key in config}
            if "system_prompt" in settings and settings["system_prompt"] is None:
                settings["system_prompt"] = "none"
            return settings, path
    return {}, None


def resolve_settings(args: argparse.Namespace) -> None:
    """Fill ``inputs``, ``system_prompt``, ``max_frames`` and the pixel budgets on ``args``: the command line, else
    the model's training config, else mevqa's defaults."""
    trained, path = trained_settings(args.model, args.adapter)
    for key, default in DEFAULTS.items():
        given = getattr(args, key)
        if given is None:
            setattr(args, key, default if trained.get(key) is None else trained[key])
        elif key in trained and trained[key] is not None and str(given) != str(trained[key]):
            log.warning("--%s %s differs from the %s the model was trained with (%s)", key.replace("_", "-"), given,
                        trained[key], path)
    if args.inputs not in INPUT_MODES:
        raise MevqaError(f"{path}: inputs {args.inputs!r} is not an input mode ({', '.join(INPUT_MODES)})")
    args.pixels = {key: trained[key] for key in PIXEL_SETTINGS if trained.get(key) is not None}
    if path is not None:
        log.info("inputs %s, system prompt %s%s (defaults from %s)", args.inputs, args.system_prompt,
                 "".join(f", {key} {value}" for key, value in args.pixels.items()), path)


def model_kwargs(args: argparse.Namespace) -> dict:
    return dict(adapter=args.adapter, dtype=args.dtype, device=args.device, attn_implementation=args.attn,
                **getattr(args, "pixels", {}))


def media_kwargs(args: argparse.Namespace) -> dict:
    """build_media settings (everything but the clip, its frame numbers and fps) from the parsed arguments."""
    return dict(modes=INPUT_MODES[args.inputs].needs, num_frames=args.frames, size=args.size, flow_method=args.flow,
                head_motion=args.head_motion, blend=args.blend, face_crop=args.face_crop)


def generation_kwargs(args: argparse.Namespace) -> dict:
    if args.max_new_tokens < 1:
        raise MevqaError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    return dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
                top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty,
                system_prompt=None if args.system_prompt.lower() == "none" else args.system_prompt,
                max_frames=args.max_frames, video_fps=args.video_fps)


def load(args: argparse.Namespace):
    """(model, processor) for the model arguments, seeded for sampling."""
    import torch

    from mevqa.model import load_model_and_processor

    torch.manual_seed(args.seed)
    return load_model_and_processor(args.model, **model_kwargs(args))


# --- one clip -> media ------------------------------------------------------------------------------------------
def clip_media(clip_path, out_dir, *, onset: int | None = None, apex: int | None = None, offset: int | None = None,
               fps: float | None = None, modes=("oao",), timings: dict | None = None, **settings) -> dict:
    """Build the inputs of a raw clip (frame folder or video file) in ``out_dir`` as the data builders do.

    Returns ``{"clip": {...}, "media": {...}}`` with media paths absolute. Onset/offset default to the first/last
    frame and the apex to the builders' estimate. A second call with the same clip and settings reuses what is in
    ``out_dir`` (``build_media`` keeps ``media.json`` there), so a stopped run resumes.
    """
    from mevqa.media import build_media, estimate_apex, read_clip

    clip = read_clip(clip_path)
    first, last = clip.frame_numbers[0], clip.frame_numbers[-1]
    onset = first if onset is None else onset
    offset = last if offset is None else offset
    for number, what in ((onset, "onset"), (offset, "offset")):
        clip.check_has(number, what)
    if onset > offset:
        raise MevqaError(f"{clip.source}: onset {onset} is after offset {offset}")
    apex_method = "annotated"
    if apex is None:
        apex, apex_method = estimate_apex(clip, onset, offset, "max_diff")
    fps = fps or clip.fps
    if fps is None and "video" in modes:
        raise MevqaError(f"{clip.source}: a frame folder has no frame rate; give it with --fps (the video input "
                         "needs it: CASME II and SAMM are 200, SMIC-HS 100, CAS(ME)^3 30)")
    media = build_media(clip, onset, apex, offset, modes=modes, out_dir=out_dir, source_fps=fps,
                        apex_method=apex_method, timings=timings, **settings)
    resolve_media({"media": media}, out_dir, str(clip.source))
    info = {"source": str(clip.source), "onset": onset, "apex": apex, "offset": offset, "apex_method": apex_method,
            "fps": fps, "n_frames": len(clip.frame_numbers)}
    return {"clip": info, "media": media}


# --- the command ------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip", required=True, type=Path, help="a folder of numbered frames (jpg/png/bmp) or a "
                                                                 "video file (mp4/avi)")
    parser.add_argument("--question", required=True, help='the question, e.g. "What is the coarse expression class?"')
    parser.add_argument("--onset", type=int, help="onset frame number (default: the first frame)")
    parser.add_argument("--apex", type=int, help="apex frame number (default: estimated, the frame most different "
                                                 "from onset)")
    parser.add_argument("--offset", type=int, help="offset frame number (default: the last frame)")
    parser.add_argument("--json", action="store_true", help="print the answer with the inputs used and timings")
    add_model_arguments(parser, model_required=False)
    add_media_arguments(parser)
    add_generation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mevqa.generation import generate_answers

    question = args.question.strip()
    if not question:
        raise MevqaError("--question is empty")
    resolve_settings(args)
    gen = generation_kwargs(args)
    media_timings: dict[str, float] = {}
    timings: dict[str, float] = {}
    start = time.perf_counter()
    # Inputs first: a bad clip fails in a second, before a large model is loaded.
    with tempfile.TemporaryDirectory(prefix="mevqa-answer-") as work_dir:
        built = clip_media(args.clip, work_dir, onset=args.onset, apex=args.apex, offset=args.offset, fps=args.fps,
                           timings=media_timings, **media_kwargs(args))
        timings["inputs_s"] = time.perf_counter() - start
        start = time.perf_counter()
        model, processor = load(args)
        timings["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        row = {"id": "clip", "question": question, **built}
        answer = generate_answers(model, processor, [row], args.inputs, batch_size=1, **gen)[0]
        timings["generate_s"] = time.perf_counter() - start
    if not args.json:
        print(answer)
        return 0
    media = {key: {name: value for name, value in entry.items() if name not in ("frames", "image", "arrays")}
             for key, entry in built["media"].items() if isinstance(entry, dict)}
    report = {
        "answer": answer, "question": question, "inputs": args.inputs, "clip": built["clip"], "media": media,
        "model": str(args.model), "adapter": str(args.adapter) if args.adapter else None,
        "device": str(next(model.parameters()).device), "dtype": str(next(model.parameters()).dtype),
        "generation": gen, "pixels": args.pixels,
        "timings": {**{key: round(value, 4) for key, value in timings.items()},
                    **{f"inputs_{key}_s": round(value, 4) for key, value in media_timings.items()}},
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
