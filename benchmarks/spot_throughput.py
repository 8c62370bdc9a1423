"""Throughput of ME-STR spotting: frames/s of the flow baseline on a long video, windows/s of the vlm method.

    .venv/bin/python benchmarks/spot_throughput.py [--frames 10000] [--size 640 480] [--vlm-frames 300]
        [--video /tmp/mevqa-spot-bench/long.mp4] [--rounds 2]

1. Writes (once; reused on later runs) a synthetic long video of ``--frames`` frames at ``--size`` (default 10,000
   frames of 640x480, 30 fps, H.264) with planted movements (:mod:`mevqa.data_builders.synth_long`), and times
   :func:`mevqa.longvideo.spot.spot_flow` on it: streaming decode, grey frames resized to the flow size, Farneback flow
   with head-motion removal, peak picking. The fastest of ``--rounds`` passes counts (on a shared machine the slow
   passes are other people's load).
2. Writes the tiny random Qwen2.5-VL and times the vlm method's window loop
   (:func:`mevqa.longvideo.spot.window_probabilities`: each window's span, its inputs built as ``mevqa build-spot
   --windows`` builds them, P(yes) from the label-constrained scorer) over the first ``--vlm-frames`` frames of the same
   video, unpacked to jpg first as ``mevqa spot`` does; a second pass, whose inputs are already built, shows what the
   scoring costs.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--video", type=Path, default=Path(tempfile.gettempdir()) / "mevqa-spot-bench" / "long.mp4",
                        help="where the synthetic video is written (reused when it exists with the same settings)")
    parser.add_argument("--vlm-frames", type=int, default=300, help="frames the vlm windows cover (default 300)")
    parser.add_argument("--inputs", default="oao", help="the vlm method's input mode (default oao)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from mevqa.data_builders.synth_long import plan_video, render_frames, write_mp4
    from mevqa.longvideo.spot import FlowSettings, VlmSettings, spot_flow, unpack_video, window_probabilities
    from mevqa.media import MediaSettings, read_clip

    width, height = args.size
    stamp = args.video.with_suffix(".json")
    wanted = {"frames": args.frames, "size": [width, height], "fps": args.fps}
    video = plan_video("casme3", 1, 1, args.frames, random.Random(0), first=0)
    if not (args.video.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted):
        start = time.perf_counter()
        write_mp4(args.video, render_frames(video, width, height, seed=0), args.fps)
        stamp.write_text(json.dumps(wanted))
        print(f"wrote {args.video} ({args.frames} frames {width}x{height}) in {time.perf_counter() - start:.1f} s")
    clip = read_clip(args.video)
    if len(clip.frame_numbers) != args.frames:
        print(f"{args.video}: {len(clip.frame_numbers)} frames, expected {args.frames}", file=sys.stderr)
        return 1

    settings, best, found = FlowSettings(), 0.0, []
    for _ in range(args.rounds):
        start = time.perf_counter()
        found = spot_flow(clip, args.fps, settings)
        best = max(best, len(clip.frame_numbers) / (time.perf_counter() - start))
    planted = [m for m in video.movements if m.kind == "micro"]
    hits = sum(any(d.onset <= m.apex <= d.offset for d in found) for m in planted)
    print(f"flow baseline: {best:.0f} frames/s on {args.frames} frames of {width}x{height} (decode, flow at "
          f"{settings.flow_size} px, peaks); {len(found)} interval(s), {hits} of {len(planted)} planted MEs found")

    import torch

    from mevqa.answering.inference import InferenceSettings
    from mevqa.messages import INPUT_MODES
    from mevqa.models.loading import load_model_and_processor
    from mevqa.models.tiny import write_tiny_model

    with tempfile.TemporaryDirectory(prefix="mevqa-spot-bench-") as tmp:
        tmp = Path(tmp)
        model_dir = write_tiny_model(tmp / "tiny-model")
        model, processor = load_model_and_processor(str(model_dir), dtype="float32")
        inference = InferenceSettings(inputs=args.inputs, system_prompt="default", max_frames=None, video_fps=None,
                                      pixels={}, media=MediaSettings(modes=INPUT_MODES[args.inputs].needs))
        frames = unpack_video(clip, tmp / "frames")
        from mevqa.media import Clip

        short = Clip(frames.source, frames.frame_numbers[:args.vlm_frames], None,
                     {n: frames.paths[n] for n in frames.frame_numbers[:args.vlm_frames]})
        vlm = VlmSettings()
        rates = []
        for round_ in range(args.rounds):
            start = time.perf_counter()
            spans, _ = window_probabilities(model, processor, short, args.fps, inference, vlm, tmp / f"r{round_}")
            rates.append((len(spans) / (time.perf_counter() - start), len(spans)))
        # A second pass finds every window's inputs built (media.json cache): mostly the scoring.
        start = time.perf_counter()
        spans, _ = window_probabilities(model, processor, short, args.fps, inference, vlm, tmp / "r0")
        scoring = len(spans) / (time.perf_counter() - start)
    rate, windows = max(rates)
    print(f"vlm ({args.inputs}, tiny model, {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads "
          f"{torch.get_num_threads()}): {rate:.1f} windows/s building inputs, {scoring:.1f} windows/s with the inputs "
          f"already built ({windows} windows of {vlm.window} s every {vlm.stride} s over {args.vlm_frames} frames)")
    print(json.dumps({"flow_frames_per_s": round(best, 1), "flow_found": hits, "planted": len(planted),
                      "vlm_windows_per_s": round(rate, 2), "vlm_scoring_windows_per_s": round(scoring, 2),
                      "windows": windows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
