"""``mevqa synth-data DATASET --out DIR``: a small synthetic dataset in a real dataset's on-disk layout: short
clips (:mod:`mevqa.data_builders.synth`) or, for the spotting sets and ``--long``, long videos
(:mod:`mevqa.data_builders.synth_long`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mevqa.data_builders import synth, synth_long
from mevqa.errors import MevqaError
from mevqa.paths import seed as seed_type


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=list(dict.fromkeys([*synth.WRITERS, *synth_long.LONG_DATASETS])),
                        help="whose on-disk layout to write (samm-lv, smic-e and casme3 --long: long videos)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the dataset into")
    parser.add_argument("--clips", type=int, default=12, help="usable clips (default: 12)")
    parser.add_argument("--frames", type=int, default=12, help="frames per clip (default: 12)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=None,
                        help="frame size (default: 96x72; SAMM 96x65)")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the clips' labels and movements (default: 0)")
    synth_long.add_long_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.long or args.dataset not in synth.WRITERS:  # long videos for spotting: mevqa.data_builders.synth_long
        return synth_long.run(args)
    # Two sets written into one folder would share clip folders, mixing their frames (as synth_long refuses too).
    if args.out.is_dir() and any(args.out.iterdir()):
        raise MevqaError(f"{args.out}: not empty; write a synthetic dataset into a new or empty folder (a second set "
                         "would mix its frames into the first one's clip folders)")
    paths = synth.write_synthetic_dataset(args.dataset, args.out, clips=args.clips, seed=args.seed,
                                          frames=args.frames, size=tuple(args.size) if args.size else None)
    command = f"mevqa build-data {args.dataset} --root {paths['root']}"
    if paths["annotations"] is not None:
        command += f" --annotations '{paths['annotations']}'"
    print(f"wrote a synthetic {args.dataset} dataset under {args.out}\nbuild it with: {command} --out OUT")
    return 0
