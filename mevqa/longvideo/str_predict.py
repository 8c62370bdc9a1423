"""``mevqa str-predict --spot-data OUT/spot.jsonl --method flow|vlm --out P``: spot and recognise the MEs of many long
videos (:mod:`mevqa.longvideo.spot`) and write ``P/pred.csv`` in the STRS format.

The spot data is ``mevqa build-spot``'s ``spot.jsonl``; for videos without annotations (a test set) a line per video
with ``subject``, ``video``, ``fps`` and ``frames`` (a frame folder or video file, relative to the file) is enough.
``--subjects`` keeps some subjects' videos only (those a spotter was not trained on).

The output folder:

| file | what |
|---|---|
| ``run.json`` | method, its settings, labels, model, adapter and inference settings; a rerun with others is refused |
| ``.str-predict.lock`` | held while a run writes here: a second run on the same folder is refused |
| ``videos.jsonl`` | one line per finished video (its detections and seconds), appended and synced as each ends; a rerun skips finished videos and drops a torn last line |
| ``work/<subject>_<video>/`` | inputs built for the vlm method and for recognition, reused on reruns |
| ``pred.csv`` | ``subject, video, onset, offset, emotion``, once every video is done |
| ``scores.json`` | when ``gt.csv`` (``mevqa build-spot``) lies beside ``spot.jsonl``: the ``mevqa str-eval --json`` report, stamped with ``run.json`` and the files' hashes |
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from mevqa.data_builders.spot import GT_FILE, read_spot_rows
from mevqa.dataset_facts import LONG_VIDEO_DATASETS
from mevqa.errors import MevqaError
from mevqa.jsonl import atomic_path, ensure_dir, read_json, write_json
from mevqa.log import is_main_process
from mevqa.longvideo.spot import add_method_arguments, load_for, settings_from_args, spot_video
from mevqa.paths import refuse_outputs_onto_inputs
from mevqa.runfolder import LogAppender, differences, folder_lock, read_log

log = logging.getLogger(__name__)

RUN_FILE, VIDEOS_FILE, PRED_FILE, SCORES_FILE = "run.json", "videos.jsonl", "pred.csv", "scores.json"
LOCK = ".str-predict.lock"
PRED_COLUMNS = ("subject", "video", "onset", "offset", "emotion")


def read_done(path: Path) -> dict[tuple[str, str], dict]:
    """Finished videos of ``videos.jsonl`` by (subject, video): the log read by :func:`mevqa.runfolder.read_log`
    (a torn last line, a kill mid-write, is dropped). The resumable-log rules live in :mod:`mevqa.runfolder`."""
    done = {}
    for number, record in read_log(path):
        if not isinstance(record.get("subject"), str) or not isinstance(record.get("video"), str):
            raise MevqaError(f"{path}:{number}: expected 'subject' and 'video' strings; delete the file to start over")
        done[(record["subject"], record["video"])] = record
    return done


def resume_run(out: Path, record: dict, what: str, videos: list, key) -> tuple[dict[tuple[str, str], dict], list]:
    """(finished, to do): the finished videos of ``out/videos.jsonl`` (:func:`read_done`) by key, and those of
    ``videos`` whose ``key(video)`` is not among them, after checking that ``out/run.json`` records the same settings as
    ``record`` when any video is finished (else one line naming what differs); then ``record`` is written as
    ``out/run.json``. ``what``: how the videos were handled ("spotted", "answered")."""
    done = read_done(out / VIDEOS_FILE)
    previous = out / RUN_FILE
    if done and previous.is_file():
        changed = differences(read_json(previous), record)
        if changed:
            raise MevqaError(f"{out}: holds videos {what} with other settings ({', '.join(changed)} differ, see "
                             f"{previous}); use another --out, or delete {out / VIDEOS_FILE} to start over")
    write_json(previous, record)
    todo = [video for video in videos if key(video) not in done]
    if len(todo) < len(videos):
        log.info("%d of %d videos already %s in %s; %d to go", len(videos) - len(todo), len(videos), what, out,
                 len(todo))
    return done, todo


def run_record(args: argparse.Namespace, inference) -> dict:
    flow, vlm = settings_from_args(args)
    model = None
    if args.model is not None:
        path = Path(args.model).expanduser()
        model = str(path.resolve()) if path.exists() else args.model
    return {"spot_data": str(Path(args.spot_data).resolve()), "subjects": args.subjects, "method": args.method,
            "labels": args.labels,
            "settings": asdict(flow) if args.method == "flow" else asdict(vlm), "model": model,
            "adapter": str(Path(args.adapter).expanduser().resolve()) if args.adapter else None,
            "inference": inference.record() if inference is not None else None}


def write_pred_csv(path: Path, records: list[dict]) -> int:
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PRED_COLUMNS)
        for record in records:
            for d in record["detections"]:
                writer.writerow([record["subject"], record["video"], d["onset"], d["offset"], d["emotion"]])
                count += 1
    return count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spot-data", required=True, type=Path, help="OUT/spot.jsonl of mevqa build-spot")
    parser.add_argument("--out", required=True, type=Path, help="output folder: pred.csv, videos.jsonl, run.json")
    parser.add_argument("--subjects", metavar="S1,S2,...", help="only these subjects' videos (e.g. the subjects a "
                        "spotter was not trained on)")
    add_method_arguments(parser)


def run(args: argparse.Namespace) -> int:
    videos = read_spot_rows(args.spot_data)
    if args.subjects:
        wanted = {name.strip() for name in args.subjects.split(",") if name.strip()}
        unknown = wanted - {str(row["subject"]) for row in videos}
        if unknown:
            raise MevqaError(f"{args.spot_data}: no video of subject(s) {', '.join(sorted(unknown))}")
        videos = [row for row in videos if str(row["subject"]) in wanted]
    settings_from_args(args)          # bad settings fail before the folder is made or a model loads
    refuse_outputs_onto_inputs(
        outputs={"--out": [args.out / name for name in (RUN_FILE, VIDEOS_FILE, PRED_FILE, SCORES_FILE, "work")]},
        into={"--out": args.out},
        inputs={"--spot-data": [args.spot_data, Path(args.spot_data).parent / GT_FILE],
                "the frames of --spot-data": [row["frames"] for row in videos], "--model": args.model,
                "--adapter": args.adapter})
    with folder_lock(ensure_dir(args.out), LOCK, "mevqa str-predict"):
        return predict_videos(args, videos, Path(args.out))


def predict_videos(args: argparse.Namespace, videos: list[dict], out: Path) -> int:
    flow, vlm = settings_from_args(args)
    model, processor, inference = load_for(args)
    record = run_record(args, inference)
    done, todo = resume_run(out, record, "spotted", videos, lambda row: (str(row["subject"]), str(row["video"])))
    with LogAppender(out / VIDEOS_FILE) as videos_log:
        for row in tqdm(todo, desc="videos", unit="video", disable=not is_main_process()):
            start = time.perf_counter()
            key = f"{row['subject']}_{row['video']}"
            try:
                detections = spot_video(row["frames"], args.method, fps=float(row["fps"]), flow=flow, vlm=vlm,
                                        model=model, processor=processor, inference=inference,
                                        work_dir=out / "work" / key, labels=args.labels,
                                        dataset=LONG_VIDEO_DATASETS.get(row.get("dataset")), progress=True)
            except MevqaError as exc:
                raise MevqaError(f"{row['_where']}: video {row['video']}: {exc}") from None
            line = {"subject": str(row["subject"]), "video": str(row["video"]), "dataset": row.get("dataset"),
                    "seconds": round(time.perf_counter() - start, 3), "detections": [asdict(d) for d in detections]}
            videos_log.append(line)
            done[(line["subject"], line["video"])] = line
    ordered = [done[(str(row["subject"]), str(row["video"]))] for row in videos]
    count = write_pred_csv(out / PRED_FILE, ordered)
    print(f"{len(videos)} videos, {count} intervals -> {out / PRED_FILE}")
    gt = Path(args.spot_data).parent / GT_FILE
    if gt.is_file():
        # lazy: the mevqa.eval package loads the VQA scorers (sacrebleu, rouge-score with nltk and scipy)
        from mevqa.eval.stamp import stamp
        from mevqa.eval.strs import format_table, strs_files

        report = strs_files(out / PRED_FILE, gt)
        for warning in report["warnings"]:
            log.warning("%s", warning)
        write_json(out / SCORES_FILE, stamp(report, config=record, pred_files=[out / PRED_FILE], gold_files=[gt]))
        print(format_table(report))
    return 0
