"""Model-core throughput on the tiny Qwen2.5-VL: batch encoding (messages + processor) and batched greedy generation.

    python benchmarks/model_core.py [--clips 8] [--modes video oao flow frames+flow] [--batch-sizes 1 8]
                                    [--max-new-tokens 16] [--frame-size 640 480] [--work /tmp/mevqa-core-bench]

Writes ``--clips`` clips (8 video frames, onset/apex/offset and a flow image at ``--frame-size``, like the real
640x480 CASME II frames) with 5 questions each, then per input mode prints: the time to encode one sample for
training (image decoding included, first pass and cached), and generation rows/s at each batch size (with the
check that batched and one-by-one greedy answers agree). The model is tiny and random, so these numbers measure
the harness (decoding, resizing, padding, generate's loop), not a real model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from qa_rows import write_qa_file  # noqa: E402

from mevqa.answering.generation import generate_answers  # noqa: E402
from mevqa.messages import _decode_image  # noqa: E402
from mevqa.models.collate import QADataset, encode  # noqa: E402
from mevqa.models.loading import load_model_and_processor  # noqa: E402
from mevqa.models.tiny import write_tiny_model  # noqa: E402
from mevqa.rows import read_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["video", "oao", "flow", "frames+flow"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--frame-size", nargs=2, type=int, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/mevqa-core-bench"))
    args = parser.parse_args()

    start = time.perf_counter()
    model_dir = write_tiny_model(args.work / "tiny", seed=0)
    print(f"tiny model written in {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    model, processor = load_model_and_processor(model_dir, device="cpu")
    print(f"model + processor loaded in {time.perf_counter() - start:.2f} s; torch threads {torch.get_num_threads()}")
    qa = write_qa_file(args.work / "data", clips=args.clips, size=tuple(args.frame_size))
    rows = read_rows(qa)
    print(f"{len(rows)} rows, {args.clips} clips, frames {args.frame_size[0]}x{args.frame_size[1]}")

    for mode in args.modes:
        _decode_image.cache_clear()
        dataset = QADataset(rows, mode)
        t0 = time.perf_counter()
        for i in range(len(rows)):
            encode(processor, [dataset[i]], train=True)
        cold = (time.perf_counter() - t0) / len(rows)
        t0 = time.perf_counter()
        for i in range(len(rows)):
            encode(processor, [dataset[i]], train=True)
        warm = (time.perf_counter() - t0) / len(rows)
        line = f"{mode:12s} encode {cold * 1e3:6.1f} ms/sample (first pass), {warm * 1e3:6.1f} ms (images cached)"
        answers = {}
        for batch_size in args.batch_sizes:
            t0 = time.perf_counter()
            answers[batch_size] = generate_answers(model, processor, rows, mode, batch_size=batch_size,
                                                   max_new_tokens=args.max_new_tokens)
            line += f" | batch {batch_size}: {len(rows) / (time.perf_counter() - t0):6.1f} rows/s"
        same = len({tuple(a) for a in answers.values()}) == 1
        print(line + f" | batched == one-by-one: {same}")


if __name__ == "__main__":
    main()
