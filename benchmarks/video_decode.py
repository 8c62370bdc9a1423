"""Benchmark: decoding video files with PyAV and with decord (``MEVQA_VIDEO_BACKEND``), through ``read_clip``.

Two 640x480 mp4 files of a few hundred frames of a drifting, noisy texture: one where every frame is a key frame
(mpeg4, intra-only) and one with x264's default GOP (a key frame every 250 frames, P and B frames between). For each
file and backend it times, best of ``--repeats``:

- ``open``: ``read_clip`` (header, frame count and rate);
- ``all``: ``Clip.load`` of every frame, in frames/s: a video that is one clip, whose onset..offset span
  ``resolve_span`` holds, so that building its inputs decodes every frame once;
- ``window``: the 40 frames in the middle of the video: a clip's span inside a longer recording;
- ``sampled``: 9 frames spread over the video (8 evenly spaced and the middle one), asked for without a held span.

PyAV decodes from the start up to the last frame asked for; decord seeks to the key frame before each frame asked
for. Frames are checked equal between the backends before timing.

    python benchmarks/video_decode.py [--work /tmp/mevqa-video-bench] [--frames 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import cv2
import numpy as np

from mevqa.media import read_clip

WIDTH, HEIGHT, FPS = 640, 480, 30


def texture_frames(count: int):
    """A smooth texture drifting right and down, with sensor-like noise in every frame (without it x264 would code
    the P and B frames as little more than motion vectors, far cheaper to decode than a camera's)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8)
    big = cv2.resize(small, (WIDTH * 2, HEIGHT * 2), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    for index in range(count):
        x, y = (2 * index) % WIDTH, index % HEIGHT
        noise = rng.integers(-3, 4, (HEIGHT, WIDTH, 3), dtype=np.int16)
        yield np.clip(big[y: y + HEIGHT, x: x + WIDTH] + noise, 0, 255).astype(np.uint8)


def write_video(path: Path, codec: str, gop: int | None, count: int) -> Path:
    import av

    if path.exists():
        return path
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    with av.open(str(partial), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 8_000_000  # near the quality of a dataset's recordings, not the encoder's 200 kb/s
        else:
            stream.codec_context.options = {"crf": "12"}  # keep the noise, as a recording's bit rate would
        if gop is not None:
            stream.codec_context.gop_size = gop
        for frame in texture_frames(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path


def key_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(packet.is_keyframe for packet in container.demux(video=0) if packet.size)


def best_of(repeats: int, task) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(path: Path, backend: str, repeats: int) -> dict:
    os.environ["MEVQA_VIDEO_BACKEND"] = backend
    count = len(read_clip(path).frame_numbers)
    middle = count // 2
    requests = {
        "all": list(range(count)),
        "window": list(range(middle - 20, middle + 20)),
        "sampled": sorted({*np.linspace(0, count - 1, 8).round().astype(int).tolist(), 0, middle, count - 1}),
    }
    figures = {"open": best_of(repeats, lambda: read_clip(path))}
    for name, numbers in requests.items():
        figures[name] = best_of(repeats, lambda: read_clip(path).load(numbers))
        figures[name + "_frames"] = len(numbers)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mevqa-video-bench"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    backends = ["pyav"] + (["decord"] if importlib.util.find_spec("decord") else [])
    if len(backends) == 1:
        print("decord is not installed (pip install 'mevqa[decord]'): PyAV only")
    videos = {
        "all key frames (mpeg4 intra)": write_video(args.work / f"intra_{args.frames}.mp4", "mpeg4", 1, args.frames),
        "normal GOP (x264, crf 12)": write_video(args.work / f"gop_{args.frames}.mp4", "libx264", None, args.frames),
    }
    print(f"{WIDTH}x{HEIGHT}, {args.frames} frames, best of {args.repeats}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores, shared)")
    for title, path in videos.items():
        print(f"\n{title}: {path.name}, {path.stat().st_size / 2**20:.1f} MiB, {key_frames(path)} key frames")
        if "decord" in backends:  # the comparison is of equal work: the same frames, bit for bit
            os.environ["MEVQA_VIDEO_BACKEND"] = "pyav"
            reference = read_clip(path).load([0, args.frames // 2, args.frames - 1])
            os.environ["MEVQA_VIDEO_BACKEND"] = "decord"
            other = read_clip(path).load([0, args.frames // 2, args.frames - 1])
            assert all(np.array_equal(reference[n], other[n]) for n in reference), "decord's frames differ from PyAV's"
        results = {backend: measure(path, backend, args.repeats) for backend in backends}
        print(f"{'backend':<8}{'open ms':>9}{'all fr/s':>10}{'window ms':>11}{'(frames)':>9}{'sampled ms':>12}"
              f"{'(frames)':>9}")
        for backend, r in results.items():
            print(f"{backend:<8}{r['open'] * 1e3:>9.1f}{r['all_frames'] / r['all']:>10.0f}{r['window'] * 1e3:>11.1f}"
                  f"{r['window_frames']:>9}{r['sampled'] * 1e3:>12.1f}{r['sampled_frames']:>9}")
        if "decord" in results:
            pyav, decord = results["pyav"], results["decord"]
            print("decord speed-up: " + ", ".join(f"{name} {pyav[name] / decord[name]:.2f}x"
                                                  for name in ("open", "all", "window", "sampled")))
    os.environ.pop("MEVQA_VIDEO_BACKEND", None)


if __name__ == "__main__":
    main()
