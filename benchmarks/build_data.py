"""Benchmark: build all three input modes for 442 clips of the real frame sizes.

CASME II 145 clips at 640x480 RGB, SAMM 133 at 960x650 grayscale, SMIC 164 at 640x480 (the MEGC2025 training
clips), synthetic frames in the real layouts (``mevqa.data_builders.synth``). Prints clips/s for all modes built
together (the target: <= 60 s for the 442 clips) and for each mode alone, and the time spent decoding, computing
flow and writing (summed over worker processes, so CPU-seconds).

    python benchmarks/build_data.py [--work /tmp/mevqa-bench] [--workers 2] [--frames-per-clip 20]

The synthetic trees are written once under ``--work`` and reused by later runs; the builds start from empty output
folders each time (no media reused).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mevqa.data_builders.build import BuildOptions, build_dataset
from mevqa.media import MediaSettings
from mevqa.data_builders.synth import write_synthetic_dataset

TREES = {"casme2": (145, (640, 480)), "samm": (133, (960, 650)), "smic": (164, (640, 480))}


def make_tree(args) -> tuple[str, dict, float]:
    dataset, work, frames = args
    clips, size = TREES[dataset]
    folder = Path(work) / "raw" / dataset
    marker = folder / f".done-{clips}-{frames}"
    start = time.perf_counter()
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        paths = write_synthetic_dataset(dataset, folder, clips=clips, seed=0, frames=frames, size=size)
        marker.write_text(json.dumps({k: str(v) if v else None for k, v in paths.items()}))
    paths = {k: Path(v) if v else None for k, v in json.loads(marker.read_text()).items()}
    return dataset, paths, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mevqa-bench"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames-per-clip", type=int, default=20, help="synthetic clip length (only the frames "
                        "used are decoded, so this mostly costs tree-writing time)")
    parser.add_argument("--frames", type=int, default=8, help="video frames sampled per clip")
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--per-mode", action=argparse.BooleanOptionalAction, default=True,
                        help="also build each mode alone")
    args = parser.parse_args()

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        trees = {d: p for d, p, _ in pool.map(make_tree, [(d, str(args.work), args.frames_per_clip) for d in TREES])}
    print(f"synthetic trees ready in {time.perf_counter() - start:.1f} s under {args.work}")
    print(f"load average before the builds: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores, shared)")

    runs = [("video,oao,flow", ("video", "oao", "flow"))]
    if args.per_mode:
        runs += [(m, (m,)) for m in ("video", "oao", "flow")]
    print(f"\n{'modes':<16}{'clips':>6}{'seconds':>9}{'clips/s':>9}{'decode':>9}{'flow':>8}{'write':>8}")
    for name, modes in runs:
        out_root = args.work / "out" / name.replace(",", "_")
        shutil.rmtree(out_root, ignore_errors=True)
        totals = {"clips": 0, "decode": 0.0, "flow": 0.0, "write": 0.0}
        start = time.perf_counter()
        for dataset, paths in trees.items():
            summary = build_dataset(dataset, out_root / dataset, root=paths["root"], annotations=paths["annotations"],
                                    options=BuildOptions(media=MediaSettings(modes, args.frames, args.size),
                                                         workers=args.workers, progress=False))
            totals["clips"] += summary["clips"]
            for key in ("decode", "flow", "write"):
                totals[key] += summary["timings"].get(key, 0.0)
        seconds = time.perf_counter() - start
        print(f"{name:<16}{totals['clips']:>6}{seconds:>9.1f}{totals['clips'] / seconds:>9.1f}"
              f"{totals['decode']:>9.1f}{totals['flow']:>8.1f}{totals['write']:>8.1f}")
    print("\n(decode/flow/write are CPU-seconds summed over the worker processes)")


if __name__ == "__main__":
    main()
