"""Bootstrap speed: 95% intervals of every figure from clip resamples, over realistic rows.

    python benchmarks/bootstrap.py [--rows 2000] [--resamples 1000] [--seed 0]

Rows and predictions come from ``score_throughput.build_rows`` (per clip the C, F, A, Y, Y, X questions, SMIC clips
C only, over SAMM, CAS, CASME II and SMIC; answers imitate real model output). The target: 1000 resamples over 2,000
rows in at most 2 s on the 2-core development machine. Printed: the time to join and score the rows once, the time
of the resamples alone (the figures of every split recomputed on each), and Overall Avg with its interval.
"""

from __future__ import annotations

import argparse
import time

from score_throughput import build_rows

from mevqa.eval.bootstrap import add_intervals
from mevqa.eval.metrics import join, report_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gold, preds = build_rows(args.rows, args.seed)
    start, start_cpu = time.perf_counter(), time.process_time()
    joined = join(preds, gold)
    result = report_of(joined)
    scored, scored_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    add_intervals(result, joined, resamples=args.resamples, seed=args.seed)
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    clips = result["bootstrap"]["clips"]
    splits = ", ".join(f"{split} {n}" for split, n in clips.items() if split != "overall")
    # CPU seconds too: on a shared machine the wall time also measures the neighbours.
    print(f"{len(gold)} rows, {clips['overall']} clips ({splits})")
    print(f"score once: {scored:.3f} s wall ({scored_cpu:.3f} s CPU)")
    print(f"{args.resamples} resamples: {total - scored:.3f} s wall ({total_cpu - scored_cpu:.3f} s CPU)")
    print(f"score + resamples: {total:.3f} s wall ({total_cpu:.3f} s CPU); target <= 2 s")
    lo, hi = result["avg_ci"]
    print(f"Overall Avg {result['avg']:.4f}, 95% CI [{lo:.4f}, {hi:.4f}]")


if __name__ == "__main__":
    main()
