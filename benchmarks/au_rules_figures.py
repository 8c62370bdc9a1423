"""How often each shipped AU rule table recovers the gold fine class from the gold AUs, per dataset of the official
MEGC2025 training file.

    python benchmarks/au_rules_figures.py [--train data/megc2025/train/me_vqa_samm_casme2_smic.jsonl]
                                          [--table PATH ...]

For every clip with an AU and a fine question (SAMM and CASME II; SMIC has coarse labels only), the table is applied
to the gold AU answer and its class compared with the gold fine answer. Columns: clips, clips where a rule fired,
recovered = correct / clips (a clip where no rule fires counts as not recovered: the au-rules strategy then keeps
the model's answer), precision = correct / fired. ``--table`` adds user tables (YAML files) to the shipped ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mevqa.answering.au_rules import SHIPPED_TABLES, gold_clips, load_table, recovery
from mevqa.jsonl import read_jsonl

OFFICIAL_TRAIN = Path(__file__).resolve().parents[1] / "data" / "megc2025" / "train" / "me_vqa_samm_casme2_smic.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, default=OFFICIAL_TRAIN, help="official training QA file")
    parser.add_argument("--table", nargs="*", default=[], help="more rule tables (YAML files) to measure")
    args = parser.parse_args()
    clips = gold_clips(read_jsonl(args.train))
    datasets = sorted({clip["dataset"] for clip in clips})
    tables = [load_table(name) for name in [*SHIPPED_TABLES, *args.table]]
    print(f"{'table':<16} {'dataset':<8} {'clips':>5} {'fired':>5} {'correct':>7} {'recovered':>9} {'precision':>9}")
    for table in tables:
        for dataset in datasets:
            figures = recovery([clip for clip in clips if clip["dataset"] == dataset], table)
            print(f"{table.name:<16} {dataset:<8} {figures['clips']:>5} {figures['fired']:>5} {figures['correct']:>7} "
                  f"{figures['recovered']:>9.3f} {figures['precision']:>9.3f}")


if __name__ == "__main__":
    main()
