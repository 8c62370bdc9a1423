"""``mevqa build-lvqa samm-lv|casme3 --root DIR --annotations FILE [--emotions FILE | --macro FILE] --out OUT``:
long videos and their sheets (read by ``mevqa build-spot``'s readers) -> ME-LVQA rows with gold answers.

Writes, atomically and only when the whole build succeeds:

- ``OUT/lvqa.jsonl``: per video, the six official questions in the official order and wording
  (:func:`mevqa.longvideo.lvqa.video_questions`), each row in the official format (``video_id, video, question,
  answer``) plus ``dataset``, ``subject``, ``fps``, ``frames`` (the frame folder, relative to OUT, which ``mevqa
  lvqa-predict`` reads) and ``events`` (the video's events in answer order: ``onset, offset, type, aus``). The two
  type questions ask about two distinct events drawn with ``random.Random("lvqa:<seed>:<dataset>:<subject>:<video>")``
  (so a video's draw does not depend on the other videos), in the order drawn, as the official files do; a video
  with one event gets one. ``--all-events`` asks about every event, in order. ``video_id`` is
  ``<samm|casme3>_<video>_<k>``; ``video`` is the SAMM-LV video name (``006_1``) or ``<subject>_<task>``
  (``spNO.1_a``) for CAS(ME)^3.
- ``--official FILE...``: the official rows instead, in their order and wording (every question must be of an
  ME-LVQA kind), answered from the video of the sheets that their ``video`` names.
- ``OUT/build.json``: what was read (paths and SHA-256 of the sheets and official files) and every setting.

CAS(ME)^3 needs ``--macro`` (its macro-expressions are in the macro+micro sheet): without it every macro count
would be 0. Events are numbered by onset (:func:`mevqa.longvideo.lvqa.number_events`).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from pathlib import Path

from mevqa.data_builders.spot import QA_DATASET, read_videos
from mevqa.errors import MevqaError
from mevqa.jsonl import ensure_dir, file_sha256, write_json, write_jsonl
from mevqa.longvideo import lvqa
from mevqa.paths import refuse_outputs_onto_inputs, seed as seed_type
from mevqa.rows import read_rows, refuse_empty_files, row_id, where
from mevqa.runfolder import folder_lock

log = logging.getLogger(__name__)

LVQA_DATASETS = ("samm-lv", "casme3")
LVQA_FILE, BUILD_FILE = "lvqa.jsonl", "build.json"
TYPE_QUESTIONS = 2


def video_name(video) -> str:
    """The name a long video goes by in LVQA rows: SAMM-LV's own (``006_1``), CAS(ME)^3's subject and task."""
    return video.video if video.dataset == "samm-lv" else f"{video.subject}_{video.video}"


def video_events(video) -> list[lvqa.Event]:
    return lvqa.number_events([lvqa.Event(i.onset, i.offset, i.type, lvqa.au_names_of(i.aus, i.where))
                               for i in video.intervals])


def type_numbers(video, count: int, *, all_events: bool, seed: int) -> list[int]:
    """Which events the type questions ask about (module docstring)."""
    if all_events:
        return list(range(1, count + 1))
    rng = random.Random(f"lvqa:{seed}:{video.dataset}:{video.subject}:{video.video}")
    return rng.sample(range(1, count + 1), min(TYPE_QUESTIONS, count))


def _base(video, events: list[lvqa.Event], out: Path) -> dict:
    return {"dataset": QA_DATASET[video.dataset], "subject": video.subject, "fps": video.fps,
            "frames": Path(os.path.relpath(video.frames.resolve(), out.resolve())).as_posix(),
            "events": [event.as_dict() for event in events]}


def generated_rows(videos, out: Path, *, all_events: bool, seed: int) -> list[dict]:
    rows = []
    for video in videos:
        events = video_events(video)
        name = video_name(video)
        questions = lvqa.video_questions(type_numbers(video, len(events), all_events=all_events, seed=seed))
        for k, question in enumerate(questions, start=1):
            text, _ = lvqa.answer(lvqa.recognise(question, name), events)
            rows.append({"video_id": f"{QA_DATASET[video.dataset]}_{name}_{k}", "video": name, "question": question,
                         "answer": text, **_base(video, events, out)})
    return rows


def official_rows(paths: list[Path], videos, out: Path) -> list[dict]:
    """The official rows, answered from the videos they name; an unknown question kind or video is one line."""
    by_name = {video_name(video): video for video in videos}
    rows = []
    read = read_rows(paths, required=("question", "video"), unique=True, check_media=False)
    refuse_empty_files(paths, read, "question rows; expected official ME-LVQA rows (video_id, video, question)")
    for row in read:
        here = where(row)
        question = lvqa.recognise(row["question"], here)
        video = by_name.get(str(row["video"]))
        if video is None:
            raise MevqaError(f"{here}: video {row['video']!r} is not among the sheets' long videos (named "
                             f"{', '.join(sorted(by_name)[:5])}{', ...' if len(by_name) > 5 else ''})")
        events = video_events(video)
        text, note = lvqa.answer(question, events)
        if note:
            raise MevqaError(f"{here}: {row_id(row)} asks about event {question.n} of {row['video']}, which has "
                             f"{len(events)}")
        kept = {key: value for key, value in row.items() if not key.startswith("_")}
        rows.append({**kept, "answer": text, **_base(video, events, out)})
    return rows


def build_lvqa(dataset: str, out: str | Path, *, root: Path, annotations: Path, emotions: Path | None = None,
               macro: Path | None = None, official: list[Path] | None = None, all_events: bool = False,
               seed: int = 0) -> dict:
    """Read the sheets and write OUT/lvqa.jsonl and OUT/build.json; returns the build record."""
    if dataset not in LVQA_DATASETS:
        raise MevqaError(f"build-lvqa reads {', '.join(LVQA_DATASETS)}, got {dataset!r}")
    if dataset == "casme3" and macro is None:
        raise MevqaError("casme3 needs --macro (the macro+micro sheet, CAS(ME)3_part_A_v2.xls): the macro-expression "
                         "events are there")
    if official and all_events:
        raise MevqaError("--all-events chooses generated questions; --official takes the official file's questions")
    start = time.perf_counter()
    videos = read_videos(dataset, root, annotations, emotions=emotions, macro=macro)
    out_path = Path(out)
    rows = (official_rows(official, videos, out_path) if official
            else generated_rows(videos, out_path, all_events=all_events, seed=seed))
    kinds: dict[str, int] = {}
    for row in rows:
        kind = lvqa.recognise(row["question"], row["video_id"]).kind
        kinds[kind] = kinds.get(kind, 0) + 1
    record = {"command": "build-lvqa", "dataset": dataset,
              "sources": {name: None if path is None else {"path": str(Path(path).resolve()),
                                                           "sha256": file_sha256(path)}
                          for name, path in (("annotations", annotations), ("emotions", emotions), ("macro", macro))},
              "root": str(Path(root).resolve()),
              "official": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in official or []],
              "all_events": all_events, "seed": seed, "type_questions": "all" if all_events else TYPE_QUESTIONS,
              "videos": len(videos), "rows": len(rows), "questions": kinds,
              "events": {kind: sum(i.type == kind for v in videos for i in v.intervals)
                         for kind in (lvqa.MICRO, lvqa.MACRO)}}
    out_path = ensure_dir(out_path)  # after the sheets are read: a bad sheet or option writes nothing
    with folder_lock(out_path, ".build-lvqa.lock", "mevqa build-lvqa"):
        write_jsonl(out_path / LVQA_FILE, rows)
        record["seconds"] = round(time.perf_counter() - start, 2)
        write_json(out_path / BUILD_FILE, record)
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=LVQA_DATASETS, help="which long-video dataset's sheets to read")
    parser.add_argument("--root", type=Path, required=True,
                        help="the long-video frames: SAMM_longvideos or part_A/data/part_A_split/part_A")
    parser.add_argument("--annotations", type=Path, required=True,
                        help="SAMM_LongVideos_V3_Release.xlsx or cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")
    parser.add_argument("--emotions", type=Path, help="samm-lv: the SAMM micro sheet (SAMM_Micro_FACS_Codes_v2.xlsx), "
                        "as build-spot reads it")
    parser.add_argument("--macro", type=Path, help="casme3 (needed): the macro+micro sheet (CAS(ME)3_part_A_v2.xls)")
    parser.add_argument("--out", type=Path, required=True, help="output folder: lvqa.jsonl, build.json")
    parser.add_argument("--all-events", action="store_true",
                        help="ask the type question for every event instead of two drawn per video")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the two events drawn per video (default: 0)")
    parser.add_argument("--official", type=Path, nargs="+", metavar="FILE",
                        help="official LVQA question files: their rows, answered from the sheets")


def run(args: argparse.Namespace) -> int:
    refuse_outputs_onto_inputs(outputs={"--out": Path(args.out) / LVQA_FILE}, into={"--out": args.out},
                               inputs={"--root": args.root, "--annotations": args.annotations,
                                       "--emotions": args.emotions, "--macro": args.macro, "--official": args.official})
    record = build_lvqa(args.dataset, args.out, root=args.root, annotations=args.annotations, emotions=args.emotions,
                        macro=args.macro, official=args.official, all_events=args.all_events, seed=args.seed)
    print(f"{args.dataset}: {record['videos']} long videos, {record['events']['micro']} micro and "
          f"{record['events']['macro']} macro events -> {record['rows']} rows in {Path(args.out) / LVQA_FILE}")
    return 0
