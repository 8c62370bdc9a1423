"""ME-STR data and the flow baseline: synthetic long videos in the real layouts, `mevqa build-spot` reading them back,
`mevqa str-predict --method flow` finding the planted intervals (and resuming), `mevqa spot` on a video file."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from mevqa import vocab
from mevqa.cli import main
from mevqa.data_builders.spot import IOU_POSITIVE, WindowOptions, build_spot
from mevqa.data_builders.synth_long import FPS, FRAME_SIZES, plan_video, render_frames, write_long_dataset, write_mp4
from mevqa.jsonl import read_jsonl
from mevqa.longvideo.spot import FlowSettings, flow_detections
from mevqa.media import MediaSettings
from mevqa.media.windows import sliding_windows, span_iou
from mevqa.rows import read_rows

# Frames per synthetic video: room for three MEs and a macro-expression at each dataset's frame rate.
FRAMES = {"samm-lv": 1000, "casme3": 240, "smic-e": 400}
COARSE = {"happiness": "positive", "happy": "positive", "positive": "positive", "surprise": "surprise",
          "others": "others"}


def coarse_of_sheet_label(label: str) -> str:
    return COARSE.get(label.lower(), "negative")


def make_built(dataset, root):
    """A synthetic long-video dataset, and build-spot's output on it."""
    paths = write_long_dataset(dataset, root / "raw", videos=2, frames=FRAMES[dataset], seed=1)
    out = root / "built"
    summary = build_spot(dataset, out, root=paths["root"], annotations=paths["annotations"],
                         emotions=paths.get("emotions"), macro=paths.get("macro"), progress=False)
    return {"dataset": dataset, "paths": paths, "out": out, "summary": summary}


@pytest.fixture(scope="module", params=["samm-lv", "casme3", "smic-e"])
def built(request, tmp_path_factory):
    return make_built(request.param, tmp_path_factory.mktemp(request.param))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_build_spot_reads_back_the_planted_intervals(built):
    planted = built["paths"]["intervals"]
    rows = read_jsonl(built["out"] / "spot.jsonl")
    assert len(rows) == 2 and built["summary"]["videos"] == 2
    read_back = sorted((row["subject"], row["video"], i["onset"], i["apex"], i["offset"], i["type"])
                       for row in rows for i in row["intervals"])
    expected = sorted((p["subject"].lstrip("0") if built["dataset"] == "samm-lv" else p["subject"], p["video"],
                       p["onset"], p["apex"] if built["dataset"] != "smic-e" else (p["onset"] + p["offset"]) // 2,
                       p["offset"], p["type"]) for p in planted)
    assert read_back == expected  # SMIC-E has no apex: the midpoint
    for row in rows:
        assert row["fps"] == FPS[built["dataset"]]
        frames = (built["out"] / row["frames"]).resolve()
        assert frames.is_dir() and row["frame_count"] == len(list(frames.iterdir()))
    gt = read_csv(built["out"] / "gt.csv")
    micro = [p for p in planted if p["type"] == "micro"]
    assert len(gt) == len(micro) == built["summary"]["micro"]
    assert {(r["video"], int(r["onset"]), int(r["offset"]), r["emotion"]) for r in gt} == \
        {(p["video"], p["onset"], p["offset"], coarse_of_sheet_label(p["label"])) for p in micro}


def test_layout_quirks_are_read(built):
    rows = read_jsonl(built["out"] / "spot.jsonl")
    if built["dataset"] == "samm-lv":
        # 006_1/006_1_0001.jpg; the "Blink" row of the sheet is not a micro or macro row
        assert [row["video"] for row in rows] == ["006_1", "006_2"] and rows[0]["first_frame"] == 1
        assert sum(len(row["intervals"]) for row in rows) == 8  # 2 x (3 micro + 1 macro), no blink
        assert all(i["aus"] for row in rows for i in row["intervals"])
    elif built["dataset"] == "casme3":
        # spNo.1 folders for spNO.1 labels, an upper-case filename, one dropped frame, the macro sheet's rows
        assert [(row["subject"], row["video"]) for row in rows] == [("spNO.1", "b"), ("spNO.1", "c")]
        assert rows[0]["frame_count"] == FRAMES["casme3"] - 1
        assert sum(i["type"] == "macro" for row in rows for i in row["intervals"]) == 2
    else:
        # absolute frame numbers from FirstF, trailing notes rows skipped, one emotion per clip
        assert all(row["first_frame"] == 101 for row in rows)
        assert all(len({i["emotion"] for i in row["intervals"]}) == 1 for row in rows)


def test_fine_labels(built, tmp_path):
    paths = built["paths"]
    build_spot(built["dataset"], tmp_path, root=paths["root"], annotations=paths["annotations"],
               emotions=paths.get("emotions"), macro=paths.get("macro"), labels="fine", progress=False)
    fine = {r["emotion"] for r in read_csv(tmp_path / "gt.csv")}
    expected = {"samm-lv": {"happiness", "anger", "surprise", "others", "contempt"},
                "casme3": {"happiness", "disgust", "surprise", "others", "sadness"},
                "smic-e": {"negative", "positive", "surprise"}}[built["dataset"]]
    assert fine <= expected and len(fine) >= 2


def test_flow_baseline_finds_the_planted_intervals(built, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["str-predict", "--spot-data", str(built["out"] / "spot.jsonl"), "--method", "flow",
                 "--out", str(out)]) == 0
    report = json.loads((out / "scores.json").read_text())
    spotting = report["overall"]["spotting"]
    assert spotting["f1"] >= 0.8, spotting
    assert report["overall"]["counts"]["gt_counted"] == built["summary"]["micro"]
    assert {row["emotion"] for row in read_csv(out / "pred.csv")} == {"others"}  # no model: others
    assert "Overall" in capsys.readouterr().out


def test_str_predict_resumes_per_video_and_refuses_other_settings(tmp_path, capsys):
    built = make_built("casme3", tmp_path)
    out = tmp_path / "pred"
    argv = ["str-predict", "--spot-data", str(built["out"] / "spot.jsonl"), "--method", "flow", "--out", str(out)]
    assert main(argv) == 0
    first = (out / "pred.csv").read_text()
    lines = (out / "videos.jsonl").read_text().splitlines()
    # a run killed while writing its second video's line: the torn line is dropped and that video is redone
    (out / "videos.jsonl").write_text(lines[0] + "\n" + lines[1][:20])
    capsys.readouterr()
    assert main(argv) == 0
    assert (out / "pred.csv").read_text() == first
    redone = (out / "videos.jsonl").read_text().splitlines()
    assert redone[0] == lines[0] and json.loads(redone[1])["video"] == json.loads(lines[1])["video"]
    assert main(argv + ["--flow-threshold", "0.5"]) == 2
    assert "settings.threshold differ" in capsys.readouterr().err
    assert main(argv[:-1] + [str(tmp_path / "other"), "--subjects", "spNO.9"]) == 2
    assert "no video of subject(s) spNO.9" in capsys.readouterr().err
    # The vlm method's window options are refused with flow (they would be ignored), before any folder is made.
    assert main(argv[:-1] + [str(tmp_path / "flow-with-vlm-options"), "--threshold", "0.7", "--smooth", "5"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "mevqa str-predict: error: --threshold, --smooth: options of the vlm spotting method, which this run does not "
        "use (it spots with flow; --flow-threshold is the flow baseline's threshold)"]
    assert not (tmp_path / "flow-with-vlm-options").exists()


def test_windows_are_labelled_by_iou_with_micro_intervals(tmp_path):
    paths = write_long_dataset("casme3", tmp_path / "raw", videos=2, seed=3)
    options = WindowOptions(seconds=0.3, stride_seconds=0.1, negatives=1.0, seed=0,
                            media=MediaSettings(modes=("oao", "flow"), size=112))
    summary = build_spot("casme3", tmp_path / "built", root=paths["root"], annotations=paths["annotations"],
                         windows=options, progress=False)
    rows = read_rows(tmp_path / "built" / "windows.jsonl")  # the project's reader: media resolve under OUT
    micro = [p for p in paths["intervals"] if p["type"] == "micro"]
    spot_rows = [r for r in rows if r["question"] == vocab.Q_SPOT]
    assert summary["positive_windows"] == summary["negative_windows"] > 0
    for row in spot_rows:
        window = (row["clip"]["onset"], row["clip"]["offset"])
        best = max(span_iou(window, (p["onset"], p["offset"])) for p in micro if p["video"] == row["filename"])
        assert row["answer"] == ("yes" if best >= IOU_POSITIVE else "no"), row["id"]
        assert row["clip"]["onset"] <= row["clip"]["apex"] <= row["clip"]["offset"]
        assert set(row["media"]) >= {"oao", "flow", "settings"}
    coarse = [r for r in rows if r["question"] == vocab.Q_COARSE]
    assert coarse and all(r["answer"] in vocab.COARSE_LABELS for r in coarse)
    assert {r["image_id"] for r in coarse} <= {r["image_id"] for r in spot_rows if r["answer"] == "yes"}
    record = json.loads((tmp_path / "built" / "build.json").read_text())
    assert record["windows"]["window"] == 0.3 and record["windows"]["media_settings"]["size"] == 112


def test_sliding_windows_cover_the_video_over_existing_frames():
    numbers = [n for n in range(1, 41) if n != 7]  # a dropped frame
    windows = sliding_windows(numbers, 9, 3)
    assert windows[0] == (1, 10) and windows[-1] == (32, 40)
    assert all(len([n for n in numbers if a <= n <= b]) == 9 for a, b in windows)


def test_flow_detections_drop_long_movements_and_join_dips():
    fps, k = 30.0, 4
    m = np.full(300, 0.1)
    m[50:60] = 3.0            # an ME-length movement
    m[100:104] = 2.0          # a movement whose signal dips for two frames ...
    m[106:110] = 2.0          # ... stays one movement
    m[200:260] = 2.5          # two seconds of movement: a macro-expression
    numbers = list(range(1000, 1300))
    found = flow_detections(numbers, m, k, fps, FlowSettings(me_seconds=2 * k / fps, threshold=0.2))
    peaks = [d.apex - 1000 for d in found]
    assert len(found) == 2 and 50 <= peaks[0] < 60 and 96 <= peaks[1] < 110
    assert all(d.offset - d.onset == 2 * k for d in found)


def test_spot_on_a_video_file_finds_the_planted_movements(tmp_path, capsys):
    video = plan_video("casme3", 3, 1, 150, random.Random(7), first=0, macro=False)
    width, height, gray = FRAME_SIZES["casme3"]
    path = write_mp4(tmp_path / "long.mp4", render_frames(video, width, height, gray, seed=2), 30.0)
    assert main(["spot", "--video", str(path), "--method", "flow", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 150 and report["method"] == "flow"
    found = [(d["onset"], d["offset"]) for d in report["detections"]]
    for move in video.movements:
        assert max(span_iou(span, (move.onset, move.offset)) for span in found) >= IOU_POSITIVE


@pytest.mark.parametrize("argv, message", [
    (["build-spot", "samm-lv", "--annotations", "{lv}", "--root", "{root}", "--out", "{out}"],
     "samm-lv needs --emotions"),
    (["spot", "--video", "{frames}", "--method", "flow"], "a frame folder has no frame rate; give it with --fps"),
    (["spot", "--video", "{frames}", "--method", "vlm", "--fps", "200"], "--method vlm needs --model"),
    (["spot", "--video", "{frames}", "--method", "flow", "--fps", "nan"], "the frame rate must be a positive number"),
    (["spot", "--video", "{frames}", "--method", "flow", "--fps", "-200"], "the frame rate must be a positive number"),
    (["spot", "--video", "{frames}", "--method", "flow", "--fps", "200", "--window", "inf"],
     "window and stride must be positive seconds"),
    (["spot", "--video", "{frames}", "--method", "flow", "--fps", "200", "--work", "{lv}"],
     "cannot be the --work folder"),
    (["build-spot", "samm-lv", "--annotations", "{lv}", "--emotions", "{emotions}", "--root", "{root}", "--out",
      "{out}", "--fps", "inf"], "--fps must be a positive number, got inf"),
    (["build-spot", "samm-lv", "--annotations", "{lv}", "--emotions", "{emotions}", "--root", "{root}", "--out",
      "{out}", "--windows", "--negatives", "nan"], "--negatives must be zero or more, got nan"),
    (["build-spot", "samm-lv", "--annotations", "{lv}", "--emotions", "{emotions}", "--root", "{root}", "--out",
      "{out}", "--windows", "--stride", "inf"], "window and stride must be positive seconds"),
    (["build-spot", "samm-lv", "--annotations", "{lv}", "--emotions", "{emotions}", "--root", "{root}", "--out",
      "{out}", "--windows", "--window", "0.01"], "no 0.01 s window overlaps a micro interval at IoU >= 0.5"),
    (["synth-data", "samm-lv", "--out", "{lv}"], "cannot be the output folder"),
    (["synth-data", "samm-lv", "--out", "{root}", "--videos", "1", "--video-frames", "900"],
     "not empty; write synthetic long videos into a new or empty folder"),
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, argv, message):
    paths = write_long_dataset("samm-lv", tmp_path / "raw", videos=1, frames=900, seed=0)
    values = {"lv": paths["annotations"], "emotions": paths["emotions"], "root": paths["root"],
              "out": tmp_path / "out", "frames": paths["root"] / "006_1"}
    assert main([part.format(**values) for part in argv]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]  # progress logs
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()          # nothing written, not even the folder


def test_sheet_names_cannot_leave_the_output_folder(tmp_path, capsys):
    """A Filename that names a path (../x_1) would put the windows' media outside OUT: refused before anything."""
    from openpyxl import load_workbook

    paths = write_long_dataset("samm-lv", tmp_path / "raw", videos=1, frames=900, seed=0)
    book = load_workbook(paths["annotations"])
    sheet = book["FACS_Movement_Only"]
    header = next(row for row in sheet.iter_rows() if any(cell.value == "Filename" for cell in row))
    column = {cell.value: cell.column for cell in header}
    macro = next(row[0].row for row in sheet.iter_rows(min_row=header[0].row + 1)
                 if str(row[column["Type"] - 1].value).startswith("Macro"))   # a row that needs no emotion
    sheet.cell(macro, column["Filename"]).value = "../../escape_1"
    book.save(paths["annotations"])
    assert main(["build-spot", "samm-lv", "--root", str(paths["root"]), "--annotations", str(paths["annotations"]),
                 "--emotions", str(paths["emotions"]), "--out", str(tmp_path / "out"), "--windows"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert len(err) == 1 and "video name '../../escape' must be one plain folder or file name" in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


def test_rebuild_with_other_window_settings_sets_the_old_rows_aside(tmp_path):
    paths = write_long_dataset("samm-lv", tmp_path / "raw", videos=1, frames=900, seed=0)
    out = tmp_path / "out"

    def build(size):
        return build_spot("samm-lv", out, root=paths["root"], annotations=paths["annotations"],
                          emotions=paths["emotions"], windows=WindowOptions(media=MediaSettings(modes=("oao",),
                                                                                                size=size)),
                          progress=False)

    build(32)
    first = (out / "windows.jsonl").read_text()
    build(32)                                         # the same settings: rebuilt in place, nothing set aside
    assert not list(out.glob("windows.jsonl.stale-*")) and (out / "windows.jsonl").read_text() == first
    build(48)
    (aside,) = out.glob("windows.jsonl.stale-*")
    assert aside.read_text() == first
    assert {row["media"]["settings"]["size"] for row in read_rows(out / "windows.jsonl")} == {48}


@pytest.mark.parametrize("edit, message", [
    (lambda row: {**row, "video": "../../x"}, "video name '../../x' must be one plain folder or file name"),
    (lambda row: {**row, "subject": None}, "subject name None must be one plain folder or file name"),
    (lambda row: {**row, "fps": 0}, "fps must be a positive number, got 0"),
    (lambda row: {**row, "frames": 3}, "frames must be the path of a frame folder or video file, got 3"),
    (lambda row: None, "no video (expected one line per long video"),
])
def test_bad_spot_data_is_a_one_line_error(tmp_path, capsys, edit, message):
    paths = write_long_dataset("samm-lv", tmp_path / "raw", videos=1, frames=900, seed=0)
    row = {"subject": "6", "video": "006_1", "fps": 200, "frames": str(paths["root"] / "006_1")}
    edited = edit(row)
    spot = tmp_path / "spot.jsonl"
    spot.write_text("" if edited is None else json.dumps(edited) + "\n")
    assert main(["str-predict", "--spot-data", str(spot), "--method", "flow", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "spot.jsonl" in err[0]
    assert not (tmp_path / "p").exists()


def test_str_predict_refuses_a_folder_another_run_writes(tmp_path, capsys):
    from mevqa.longvideo import str_predict
    from mevqa.runfolder import folder_lock

    paths = write_long_dataset("samm-lv", tmp_path / "raw", videos=1, frames=900, seed=0)
    spot = tmp_path / "spot.jsonl"
    spot.write_text(json.dumps({"subject": "6", "video": "006_1", "fps": 200,
                                "frames": str(paths["root"] / "006_1")}) + "\n")
    out = tmp_path / "p"
    out.mkdir()
    with folder_lock(out, str_predict.LOCK, "mevqa str-predict"):      # a run in progress
        assert main(["str-predict", "--spot-data", str(spot), "--method", "flow", "--out", str(out)]) == 2
    assert "another mevqa str-predict is writing here" in capsys.readouterr().err
    assert not (out / "videos.jsonl").exists()


def test_a_micro_row_without_emotion_is_an_error(tmp_path, capsys):
    from openpyxl import load_workbook

    paths = write_long_dataset("samm-lv", tmp_path / "raw", videos=1, frames=900, seed=0)
    book = load_workbook(paths["emotions"])
    sheet = book.active
    sheet.delete_rows(sheet.max_row)  # the last micro row loses its emotion
    book.save(paths["emotions"])
    assert main(["build-spot", "samm-lv", "--root", str(paths["root"]), "--annotations", str(paths["annotations"]),
                 "--emotions", str(paths["emotions"]), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "SAMM_LongVideos_V3_Release.xlsx row" in err and "has no row in SAMM_Micro_FACS_Codes_v2.xlsx" in err
    assert not (tmp_path / "out" / "spot.jsonl").exists()


def test_unpacked_frames_belong_to_their_video(tmp_path):
    """Two videos of the same length unpacked into one folder keep their own frames; a rerun reuses them."""
    from mevqa.longvideo.spot import unpack_video
    from mevqa.media import read_clip

    width, height, gray = FRAME_SIZES["casme3"]
    clips = []
    for subject in (1, 2):
        video = plan_video("casme3", subject, 1, 90, random.Random(subject), first=0, macro=False)
        clips.append(read_clip(write_mp4(tmp_path / f"v{subject}.mp4",
                                         render_frames(video, width, height, gray, seed=subject), 30.0)))
    first, second = (unpack_video(clip, tmp_path / "frames") for clip in clips)
    assert first.source != second.source and len(first.frame_numbers) == len(second.frame_numbers) == 90
    assert (tmp_path / "frames" / first.source.name / "000005.jpg").read_bytes() != \
        (tmp_path / "frames" / second.source.name / "000005.jpg").read_bytes()
    written = {p: p.stat().st_mtime_ns for p in first.source.glob("*.jpg")}
    assert unpack_video(clips[0], tmp_path / "frames").source == first.source
    assert written == {p: p.stat().st_mtime_ns for p in first.source.glob("*.jpg")}


@pytest.mark.parametrize("family", ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"))
def test_spot_vlm_runs_on_each_family(family, tiny_family_dirs, tmp_path, capsys):
    """``mevqa spot --method vlm`` with each family's (untrained) tiny model on a short video: every window is asked
    and the report is well formed, whatever the random model answers."""
    from conftest import tiny_family

    video = plan_video("casme3", 9, 1, 72, random.Random(5), first=0, macro=False)
    width, height, gray = FRAME_SIZES["casme3"]
    path = write_mp4(tmp_path / "short.mp4", render_frames(video, width, height, gray, seed=1), 30.0)
    assert main(["spot", "--video", str(path), "--method", "vlm", "--model", str(tiny_family(tiny_family_dirs, family)),
                 "--work", str(tmp_path / "work"), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "vlm" and report["frames"] == 72
    assert len(list((tmp_path / "work" / "windows").iterdir())) == 22  # 9-frame windows every 3 frames
    for d in report["detections"]:
        assert 0 <= d["onset"] <= d["apex"] <= d["offset"] <= 71 and d["score"] >= 0.5
        assert set(d["emotion_scores"]) == set(vocab.COARSE_LABELS)
