"""Rows per second of ``mevqa predict`` on the tiny random Qwen2.5-VL, at batch size 1 and 8, in one run.

    .venv/bin/python benchmarks/predict_throughput.py [--clips 10] [--max-new-tokens 32] [--inputs oao]

Builds a synthetic CASME II dataset (``mevqa synth-data`` + ``mevqa build-data``), writes the tiny model, loads it
once (load time printed separately), then runs the prediction loop of ``mevqa predict``
(:func:`mevqa.answering.predict.predict`: batching, generation, writing and syncing each batch) over the same rows at
each batch size, into fresh output folders, interleaving the batch sizes over ``--rounds`` passes and keeping each one's
fastest. Exits 1 if batch 8 is not at least 3x faster per row than batch 1, or if the answers differ.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10, help="synthetic clips (about 6.5 questions each)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--inputs", default="oao")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--min-speedup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed passes per batch size, interleaved; the fastest counts (on a shared machine the "
                             "slow passes are other people's load)")
    args = parser.parse_args()

    start = time.perf_counter()
    import torch
    import transformers.models.qwen2_5_vl  # noqa: F401  (the model code the loader needs)

    import_seconds = time.perf_counter() - start

    from mevqa.answering.inference import ClipInputs, InferenceSettings
    from mevqa.answering.predict import predict, read_predictions
    from mevqa.cli import main as mevqa
    from mevqa.media import MediaSettings
    from mevqa.messages import INPUT_MODES
    from mevqa.models.loading import load_model_and_processor
    from mevqa.models.tiny import write_tiny_model
    from mevqa.rows import read_rows

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mevqa-bench-") as tmp:
        tmp = Path(tmp)
        raw, data = tmp / "raw", tmp / "data"
        for argv in (["synth-data", "casme2", "--out", str(raw), "--clips", str(args.clips)],
                     ["build-data", "casme2", "--root", str(raw / "CASME2_RAW_selected"), "--annotations",
                      str(raw / "CASME2-coding-20140508.xlsx"), "--out", str(data)]):
            if mevqa(argv) != 0:
                return 1
        logging.getLogger().setLevel(logging.WARNING)
        model_dir = write_tiny_model(tmp / "tiny-model")
        qa = data / "qa.jsonl"
        rows = read_rows(qa)

        start = time.perf_counter()
        model, processor = load_model_and_processor(str(model_dir))
        load_seconds = time.perf_counter() - start

        settings = InferenceSettings(inputs=args.inputs, system_prompt="default", max_frames=None, video_fps=None,
                                     pixels={}, media=MediaSettings(modes=INPUT_MODES[args.inputs].needs),
                                     generation={"max_new_tokens": args.max_new_tokens})
        # Warm-up (first-call allocations and kernel choices), not timed.
        predict(model, processor, rows[:8], tmp / "warmup", settings, batch_size=8,
                inputs=ClipInputs(settings, tmp / "media"), progress=False)
        results, answers = {b: 0.0 for b in args.batch_sizes}, {}
        for round_ in range(args.rounds):
            for batch_size in args.batch_sizes:
                out = tmp / f"round{round_}-batch{batch_size}"
                stats = predict(model, processor, rows, out, settings, batch_size=batch_size, progress=False,
                                inputs=ClipInputs(settings, tmp / "media"))
                results[batch_size] = max(results[batch_size], stats["answered"] / stats["seconds"])
                answers[batch_size] = {rid: row["answer"]
                                       for rid, row in read_predictions(out / "predictions.jsonl").items()}

    first, last = args.batch_sizes[0], args.batch_sizes[-1]
    speedup = results[last] / results[first]
    same = all(answers[b] == answers[first] for b in args.batch_sizes)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads: {torch.get_num_threads()}, "
          f"inputs: {args.inputs}, rows: {len(rows)}, max new tokens: {args.max_new_tokens}")
    print(f"imports (torch, transformers): {import_seconds:.2f} s; "
          f"model load (weights and processor): {load_seconds:.2f} s")
    for batch_size, rate in results.items():
        print(f"batch {batch_size:>2}: {rate:7.2f} rows/s  ({1000 / rate:6.1f} ms/row)")
    print(f"speedup batch {last} vs {first}: {speedup:.2f}x (required >= {args.min_speedup}x); "
          f"answers identical across batch sizes: {same}")
    print(json.dumps({"import_s": round(import_seconds, 3), "load_s": round(load_seconds, 3), "rows": len(rows),
                      "rows_per_s": {str(b): round(r, 3) for b, r in results.items()},
                      "speedup": round(speedup, 3), "same_answers": same}))
    return 0 if speedup >= args.min_speedup and same else 1


if __name__ == "__main__":
    sys.exit(main())
