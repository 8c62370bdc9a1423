"""build-data on synthetic trees of every dataset, in every input mode; --official; bad input; resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mevqa import vocab
from mevqa.cli import main
from mevqa.data_builders.build import BuildOptions, build_dataset
from mevqa.data_builders.qa import parse_aus
from mevqa.data_builders.synth import write_synthetic_dataset
from mevqa.errors import MevqaError
from mevqa.jsonl import read_jsonl
from mevqa.media import MediaSettings
from mevqa.media import read_frame
from mevqa.models.families import FAMILIES

from conftest import OFFICIAL_TEST

DATASETS = ("casme2", "samm", "smic", "casme3", "4dme")
# dataset -> (question kinds per clip before LR/Y expansion, image_id pattern check)
KIND_ORDER = {"C": vocab.COARSE, "F": vocab.FINE, "A": vocab.AU, "L": vocab.LATERALITY, "Y": vocab.PRESENCE,
              "X": vocab.COMPOSITE}
SHEET_QUESTIONS = {"casme2": "CFALYX", "samm": "CFALYX", "smic": "C", "casme3": "CFALYX", "4dme": "CALY"}
CLIPS = 5


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Every dataset's synthetic tree, written by ``mevqa synth-data``; paths from the command it prints."""
    import contextlib
    import io
    import shlex

    base = tmp_path_factory.mktemp("synth")
    trees = {}
    for name in DATASETS:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert cli("synth-data", name, "--out", base / name, "--clips", CLIPS, "--seed", 3, "--frames", 8) == 0
        command = shlex.split(printed.getvalue().split("build it with: ", 1)[1])
        option = lambda flag: Path(command[command.index(flag) + 1]) if flag in command else None  # noqa: E731
        assert command[:3] == ["mevqa", "build-data", name]
        trees[name] = {"root": option("--root"), "annotations": option("--annotations")}
    api = write_synthetic_dataset("samm", base / "api", clips=CLIPS, seed=3, frames=8)
    assert (api["root"] / "006").is_dir() and api["annotations"].name == "SAMM_Micro_FACS_Codes_v2.xlsx"
    return trees


def cli(*args) -> int:
    return main([str(a) for a in args])


def build_args(dataset, paths, out, *extra):
    args = ["build-data", dataset, "--root", paths["root"], "--out", out, *extra]
    if paths["annotations"] is not None:
        args += ["--annotations", paths["annotations"]]
    return args


def check_rows(rows, dataset):
    """Ids, per-clip question order, templates and answers' vocabulary."""
    clips: dict[str, list[dict]] = {}
    for row in rows:
        clips.setdefault(row["image_id"], []).append(row)
    for image_id, clip_rows in clips.items():
        assert [r["id"] for r in clip_rows] == [f"{dataset}_{image_id}_{k}" for k in range(1, len(clip_rows) + 1)]
        kinds = [vocab.question_kind(r["question"]) for r in clip_rows]
        assert None not in kinds
        expected = []
        for code in SHEET_QUESTIONS[dataset]:
            if code == "L":
                if vocab.LATERALITY in kinds:
                    expected.append(vocab.LATERALITY)
            elif code == "Y":
                expected += [vocab.PRESENCE, vocab.PRESENCE]
            else:
                expected.append(KIND_ORDER[code])
        assert kinds == expected, image_id
        answers = {kind: r["answer"] for kind, r in zip(kinds, clip_rows)}
        assert answers[vocab.COARSE] in vocab.COARSE_LABELS
        if vocab.FINE in answers:
            assert answers[vocab.FINE] in vocab.FINE_LABELS
            assert vocab.FINE_TO_COARSE[answers[vocab.FINE]] == answers[vocab.COARSE]
        if vocab.AU in answers:
            names = answers[vocab.AU].split(", ")
            assert all(name in vocab.AU_CODES for name in names)
            assert clip_rows[kinds.index(vocab.AU)]["question"] == vocab.au_question(names)
            presence = [r for r in clip_rows if vocab.question_kind(r["question"]) == vocab.PRESENCE]
            assert [r["answer"] for r in presence] == ["yes", "no"]
            assert vocab.question_au(presence[0]["question"]) in names
            assert vocab.question_au(presence[1]["question"]) not in names
        if vocab.COMPOSITE in answers:
            assert answers[vocab.COMPOSITE] == vocab.composite_answer(names, answers[vocab.FINE],
                                                                      answers[vocab.COARSE])
        for row in clip_rows:
            assert set(row) >= {"id", "dataset", "image_id", "subject", "filename", "question", "answer", "clip"}
            assert row["dataset"] == dataset and row["clip"]["source"] == dataset
    return clips


@pytest.mark.parametrize("dataset", DATASETS)
def test_synthetic_tree_builds_in_every_input_mode(synthetic, tmp_path, dataset):
    paths = synthetic[dataset]
    out = tmp_path / "out"
    # all three modes at once, then each mode alone (reusing nothing: separate folders)
    for modes in ("video,oao,flow", "video", "oao", "flow"):
        target = out / modes.replace(",", "_")
        assert cli(*build_args(dataset, paths, target, "--inputs", modes, "--frames", 4, "--size", 64)) == 0
        rows = read_jsonl(target / "qa.jsonl")
        clips = check_rows(rows, dataset)
        assert len(clips) == CLIPS
        recorded = json.loads((target / "build.json").read_text())["media_settings"]
        assert recorded == {"frames": 4, "size": 64, "flow": "farneback", "head_motion": "nose", "blend": 0.0,
                            "face_crop": False}
        for row in rows:
            assert set(row["media"]) == set(modes.split(",")) | {"settings"}
            assert row["media"]["settings"] == recorded
            clip = row["clip"]
            assert clip["onset"] <= clip["apex"] <= clip["offset"]
            if "video" in row["media"]:
                video = row["media"]["video"]
                assert len(video["frames"]) == 4 and video["frame_numbers"][0] == clip["onset"]
                assert video["frame_numbers"][-1] == clip["offset"]
                assert video["source_fps"] == clip["fps"]
                span = video["frame_numbers"][-1] - video["frame_numbers"][0]
                assert video["sample_fps"] == pytest.approx(clip["fps"] * 3 / span)
            if "oao" in row["media"]:
                assert row["media"]["oao"]["frame_numbers"] == [clip["onset"], clip["apex"], clip["offset"]]
            files = [f for mode, entry in row["media"].items() if mode != "settings" for key in ("frames", "image")
                     for f in ([entry[key]] if isinstance(entry.get(key), str) else entry.get(key, []))]
            for name in files:
                image = read_frame(target / name)
                assert image.ndim == 3 and image.shape[2] == 3 and max(image.shape[:2]) <= 64


def test_row_counts_and_dataset_quirks(synthetic, tmp_path):
    rows = {}
    for dataset in DATASETS:
        build_dataset(dataset, tmp_path / dataset, root=synthetic[dataset]["root"],
                      annotations=synthetic[dataset]["annotations"],
                      options=BuildOptions(media=MediaSettings(modes=("oao",), size=64), progress=False))
        rows[dataset] = read_jsonl(tmp_path / dataset / "qa.jsonl")
        summary = json.loads((tmp_path / dataset / "build.json").read_text())
        assert summary["clips"] == CLIPS and summary["excluded_by_label"] == (0 if dataset == "smic" else 1)
    assert len(rows["smic"]) == CLIPS
    # SMIC: unpadded folders s1/s1_ne_01 -> official s01 / s01_ne_01, midpoint apex
    assert {r["subject"] for r in rows["smic"]} == {"s01", "s02"}
    assert all(r["image_id"].startswith(r["subject"] + "_") for r in rows["smic"])
    assert {r["clip"]["apex_method"] for r in rows["smic"]} == {"midpoint"}
    # CASME II: integer subject -> sub01, "/" apex estimated, EP06_02_01 kept, stray .lnk ignored
    casme2 = {r["image_id"]: r for r in rows["casme2"]}
    assert any(image_id.endswith("_EP06_02_01") for image_id in casme2)
    assert sorted(r["clip"]["apex_method"] for r in casme2.values()).count("max_diff") == 1
    assert {r["subject"] for r in rows["casme2"]} == {"sub01", "sub02"}
    # SAMM: subject "6", image_id = filename; "R6 + R12" gives the LR question on the first lateral AU
    samm = [r for r in rows["samm"] if r["image_id"].startswith("006_1_")]
    assert samm[0]["subject"] == "6" and samm[0]["filename"] == samm[0]["image_id"]
    assert samm[3]["question"] == "Is the action unit cheek raiser located on the left or right face?"
    assert samm[3]["answer"] == "right"
    # CAS(ME)^3: two MEs of one video get distinct ids carrying the onset; folder spNo.* found for label spNO.*
    casme3 = sorted({r["image_id"] for r in rows["casme3"]})
    assert all(image_id.startswith("spNO.") for image_id in casme3)
    assert len({image_id.rsplit("_", 1)[0] for image_id in casme3}) < len(casme3)
    # 4DME: static (k) AUs are not asked about; no fine/composite questions
    assert not any(vocab.question_kind(r["question"]) in (vocab.FINE, vocab.COMPOSITE) for r in rows["4dme"])
    assert all("(k)" not in r["answer"] for r in rows["4dme"])


def test_coarse_classes_are_visible_in_the_flow(synthetic, tmp_path):
    """The synthetic blob moves up (positive), down (negative) or left (surprise): the flow arrays show it."""
    import numpy as np

    build_dataset("casme2", tmp_path, root=synthetic["casme2"]["root"], annotations=synthetic["casme2"]["annotations"],
                  options=BuildOptions(media=MediaSettings(modes=("flow",), size=None), progress=False))
    seen = set()
    for row in read_jsonl(tmp_path / "qa.jsonl"):
        if vocab.question_kind(row["question"]) != vocab.COARSE:
            continue
        arrays = np.load(tmp_path / row["media"]["flow"]["arrays"])
        u, v, magnitude = (arrays[k].astype(np.float32) for k in ("u", "v", "magnitude"))
        strong = magnitude > 0.5 * magnitude.max()
        mean_u, mean_v = float(u[strong].mean()), float(v[strong].mean())
        expected = {"positive": mean_v < -abs(mean_u), "negative": mean_v > abs(mean_u),
                    "surprise": mean_u < -abs(mean_v)}[row["answer"]]
        assert expected, (row["image_id"], row["answer"], mean_u, mean_v)
        seen.add(row["answer"])
    assert seen == {"positive", "negative", "surprise"}


def test_second_run_reuses_media_and_workers_give_the_same_rows(synthetic, tmp_path):
    paths = synthetic["samm"]
    assert cli(*build_args("samm", paths, tmp_path / "a", "--size", 64, "--frames", 4)) == 0
    first = (tmp_path / "a" / "qa.jsonl").read_text()
    flow = next((tmp_path / "a" / "media" / "samm").glob("*/flow.jpg"))
    stamp = flow.stat().st_mtime_ns
    assert cli(*build_args("samm", paths, tmp_path / "a", "--size", 64, "--frames", 4)) == 0
    assert flow.stat().st_mtime_ns == stamp
    assert (tmp_path / "a" / "qa.jsonl").read_text() == first
    assert json.loads((tmp_path / "a" / "build.json").read_text())["timings"].get("flow", 0) == 0
    assert cli(*build_args("samm", paths, tmp_path / "b", "--size", 64, "--frames", 4, "--workers", 2)) == 0
    assert (tmp_path / "b" / "qa.jsonl").read_text() == first
    assert cli(*build_args("samm", paths, tmp_path / "c", "--size", 64, "--frames", 4, "--seed", 1)) == 0
    assert (tmp_path / "c" / "qa.jsonl").read_text() != first  # the yes/no draws follow the seed


def test_official_test_file_gets_inputs(tmp_path, public_data):
    """A *_to_answer.jsonl file with per-clip frame folders ROOT/<video>/: official rows kept, inputs attached."""
    official = OFFICIAL_TEST[0]  # SAMM test questions
    from mevqa.data_builders.synth import SynthClip, _write_frames

    videos = sorted({row["video"] for row in read_jsonl(official)})
    for i, video in enumerate(videos):
        clip = SynthClip(6 + i, 1, "Anger", "negative", 0, 100, 104, 109, None)
        _write_frames(tmp_path / "frames" / video, clip, lambda n: f"{video}_{n:05d}.jpg", (64, 48, True), 0)
    out = tmp_path / "out"
    assert cli("build-data", "samm", "--official", official, "--root", tmp_path / "frames", "--out", out,
               "--frames", 4, "--size", 64) == 0
    rows = read_jsonl(out / "qa.jsonl")
    original = read_jsonl(official)
    assert [r["video_id"] for r in rows] == [r["video_id"] for r in original]
    assert all(r["question"] == o["question"] and r["answer"] == "" for r, o in zip(rows, original))
    for row in rows:
        assert row["clip"]["onset"] == 100 and row["clip"]["offset"] == 109
        # the blob is furthest from its onset place at frame 104; the mean-difference estimate lands within a frame
        assert abs(row["clip"]["apex"] - 104) <= 1 and row["clip"]["apex_method"] == "max_diff"
        assert row["media"]["video"]["source_fps"] == 200.0
        assert (out / row["media"]["flow"]["image"]).is_file()


def test_parse_aus_forms():
    assert [u.label for u in parse_aus("4+7+L10", "x")] == ["4", "7", "L10"]
    assert [u.label for u in parse_aus("R12 + R15", "x")] == ["R12", "R15"]
    assert [u.label for u in parse_aus("R14A", "x")] == ["R14A"]
    assert [u.label for u in parse_aus("L14 or R14", "x")] == ["L14", "R14"]
    assert [u.label for u in parse_aus("AUR2+12(k)+45", "x")] == ["R2", "12(k)", "45"]
    assert [u.label for u in parse_aus("1，2,T4", "x")] == ["1", "2", "T4"]
    assert [u.label for u in parse_aus(14.0, "x")] == ["14"]
    with pytest.raises(MevqaError, match="row 7: unknown action unit code 99"):
        parse_aus("4+99", "row 7")
    with pytest.raises(MevqaError, match="cannot read action unit 'X4'"):
        parse_aus("X4", "row 7")


# --- bad input ------------------------------------------------------------------------------------------------

def edit_sheet(path: Path, header: str, data_row: int, value, header_row: int = 1) -> None:
    """Set the cell under ``header`` in the ``data_row``-th data row (1-based) of an xlsx sheet."""
    from openpyxl import load_workbook

    book = load_workbook(path)
    table = book.worksheets[0]
    column = next(c.column for c in table[header_row] if c.value == header)
    table.cell(row=header_row + data_row, column=column, value=value)
    book.save(path)


def copy_tree(paths, tmp_path):
    import shutil

    base = Path(paths["root"]).parent
    shutil.copytree(base, tmp_path / "data")
    return {"root": tmp_path / "data" / Path(paths["root"]).relative_to(base),
            "annotations": tmp_path / "data" / Path(paths["annotations"]).relative_to(base)}


def run_bad(dataset, paths, tmp_path, capsys, *extra):
    out = tmp_path / "out"
    code = cli(*build_args(dataset, paths, out, "--inputs", "oao", "--size", 64, *extra))
    return code, capsys.readouterr().err, out


@pytest.mark.parametrize("case, pattern", [
    ("missing_column", r"missing column\(s\) Estimated Emotion; the header row found \(row 1\) has: Subject, "
                       r"Filename, OnsetFrame"),
    ("missing_folder", r"row 2 \(sub01/EP02_01f\): clip folder .*EP02_01f not found"),
    ("missing_frame", r"row 2 \(sub01/EP02_01f\): apex frame \d+ missing"),
    ("unreadable_image", r"row 2 \(sub01/EP02_01f\): \S+/img\d+\.jpg: unreadable image"),
    ("onset_after_offset", r"row 2 \(sub01/EP02_01f\): onset 900 is after offset"),
    ("apex_outside", r"row 2 \(sub01/EP02_01f\): apex 5 outside the clip \d+\.\.\d+ \(--estimate-bad-apex "
                     r"estimates it instead\)"),
    ("unknown_au", r"row 2 \(sub01/EP02_01f\): unknown action unit code 77"),
    ("unknown_emotion", r"row 2: unknown emotion 'joy'"),
    ("empty", r"casme2: no clips to build"),
    ("truncated_frame", r"row 2 \(sub01/EP02_01f\): \S+/img\d+\.jpg: unreadable image \(truncated JPEG: no "
                        r"end-of-image marker\)"),
    ("escaping_filename", r"row 2: folder name '\.\./\.\./escape' must be one plain folder or file name"),
])
def test_bad_input_stops_with_one_clear_line_and_no_qa_file(synthetic, tmp_path, capsys, case, pattern):
    paths = copy_tree(synthetic["casme2"], tmp_path)
    sheet = paths["annotations"]
    first = next(p for p in Path(paths["root"]).rglob("EP02_01f") if p.is_dir())
    frames = sorted(first.glob("img*.jpg"), key=lambda p: int(p.stem[3:]))
    if case == "missing_column":
        edit_sheet(sheet, "Estimated Emotion", 0, "Feeling")
    elif case == "missing_folder":
        import shutil

        shutil.rmtree(first)
    elif case == "missing_frame":
        frames[len(frames) // 2].unlink()
    elif case == "unreadable_image":
        frames[0].write_bytes(b"\xff\xd8 broken")
    elif case == "truncated_frame":  # a copy cut short: decoders would fill the rest grey
        data = frames[len(frames) // 2].read_bytes()
        frames[len(frames) // 2].write_bytes(data[:len(data) * 2 // 3])
    elif case == "escaping_filename":
        edit_sheet(sheet, "Filename", 1, "../../escape")
    elif case == "onset_after_offset":
        edit_sheet(sheet, "OnsetFrame", 1, 900)
    elif case == "apex_outside":
        edit_sheet(sheet, "ApexFrame", 1, 5)
    elif case == "unknown_au":
        edit_sheet(sheet, "Action Units", 1, "4+77")
    elif case == "unknown_emotion":
        edit_sheet(sheet, "Estimated Emotion", 1, "joy")
    elif case == "empty":
        from openpyxl import load_workbook

        book = load_workbook(sheet)
        book.worksheets[0].delete_rows(2, 100)
        book.save(sheet)
    code, err, out = run_bad("casme2", paths, tmp_path, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("mevqa build-data: error: ")
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert not (out / "qa.jsonl").exists()
    if case not in ("missing_column", "empty"):
        code, err, out = run_bad("casme2", paths, tmp_path, capsys, "--skip-bad")
        assert not (tmp_path / "escape").exists()
        assert code == 0
        skipped = read_jsonl(out / "skipped.jsonl")
        assert len(skipped) == 1 and re.search(pattern, skipped[0]["error"])
        clips = {r["image_id"] for r in read_jsonl(out / "qa.jsonl")}
        assert len(clips) == CLIPS - 1 and not any(c.endswith("_EP02_01f") for c in clips)


@pytest.mark.parametrize("option, message", [
    (["--inputs", "oao,foo"], "argument --inputs: unknown input mode(s) foo"),
    (["--blend", "3"], "blend weight must be between 0 and 1, got 3.0"),
    (["--size", "-5"], "image size must be a positive number of pixels (0 keeps the source size), got -5"),
    (["--fps", "-3"], "--fps must be positive, got -3.0"),
    (["--frames", "0"], "number of video frames must be positive, got 0"),
])
def test_bad_options_exit_2_before_any_work(synthetic, tmp_path, capsys, option, message):
    out = tmp_path / "out"
    args = build_args("samm", synthetic["samm"], out, *option)
    if option[0] == "--inputs":  # an argparse usage error
        with pytest.raises(SystemExit) as exit_info:
            cli(*args)
        assert exit_info.value.code == 2
    else:
        assert cli(*args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_casme3_pre_cut_release_gives_the_same_rows(synthetic, tmp_path):
    """Part_A_ME_clip/frame/spNO.1_a_166/166.jpg: one folder per ME instead of one per video."""
    import shutil

    paths = synthetic["casme3"]
    options = BuildOptions(media=MediaSettings(modes=("oao",), size=64), progress=False)
    build_dataset("casme3", tmp_path / "split", root=paths["root"], annotations=paths["annotations"], options=options)
    split_rows = read_jsonl(tmp_path / "split" / "qa.jsonl")
    frame_root = tmp_path / "Part_A_ME_clip" / "frame"
    for row in split_rows:
        folder = frame_root / row["image_id"]
        if not folder.exists():
            video = next(Path(paths["root"]).rglob(f"spNo.{row['subject'].split('.')[1]}")) / row["filename"]
            folder.mkdir(parents=True)
            for number in range(row["clip"]["onset"], row["clip"]["offset"] + 1):
                if (video / "color" / f"{number}.jpg").exists():
                    shutil.copy(video / "color" / f"{number}.jpg", folder)
    build_dataset("casme3", tmp_path / "pre-cut", root=frame_root, annotations=paths["annotations"],
                  options=options)
    pre_cut_rows = read_jsonl(tmp_path / "pre-cut" / "qa.jsonl")
    assert len({r["image_id"] for r in pre_cut_rows}) == CLIPS
    assert [{k: v for k, v in r.items() if k != "media"} for r in pre_cut_rows] == [
        {k: v for k, v in r.items() if k != "media"} for r in split_rows]


def test_samm_header_found_after_notes_and_on_row_one(synthetic, tmp_path):
    from openpyxl import load_workbook

    paths = copy_tree(synthetic["samm"], tmp_path)
    book = load_workbook(paths["annotations"])
    assert book.worksheets[0].cell(row=14, column=1).value == "Subject"
    build_dataset("samm", tmp_path / "a", root=paths["root"], annotations=paths["annotations"],
                  options=BuildOptions(media=MediaSettings(modes=()), progress=False))
    book.worksheets[0].delete_rows(1, 13)
    book.save(paths["annotations"])
    build_dataset("samm", tmp_path / "b", root=paths["root"], annotations=paths["annotations"],
                  options=BuildOptions(media=MediaSettings(modes=()), progress=False))
    assert (tmp_path / "a" / "qa.jsonl").read_text() == (tmp_path / "b" / "qa.jsonl").read_text()


def test_apex_outside_can_be_estimated_instead(synthetic, tmp_path, capsys):
    paths = copy_tree(synthetic["casme2"], tmp_path)
    edit_sheet(paths["annotations"], "ApexFrame", 1, 5)
    code, _, out = run_bad("casme2", paths, tmp_path, capsys, "--estimate-bad-apex")
    assert code == 0
    first = next(r for r in read_jsonl(out / "qa.jsonl") if r["image_id"].endswith("_EP02_01f"))
    assert first["clip"]["apex_method"] == "max_diff"
    assert first["clip"]["onset"] < first["clip"]["apex"] <= first["clip"]["offset"]


def test_official_test_rows_with_frame_ranges(tmp_path):
    """Test rows that give onset_frame/offset_frame and image_id: frames from ROOT/<subject>/<filename>/."""
    from mevqa.data_builders.synth import SynthClip, _write_frames
    from mevqa.jsonl import write_jsonl

    clip = SynthClip(1, 1, "happy", "positive", 0, 330, 340, 350, None)
    _write_frames(tmp_path / "frames" / "dzw" / "a1", clip, lambda n: f"{n}.jpg", (64, 48, False), 0)
    questions = [{"id": f"samm_test_dzw_a1_338_{k}", "dataset": "samm_test", "image_id": "dzw_a1_338",
                  "subject": "dzw", "filename": "a1", "onset_frame": 338, "offset_frame": 346, "question": q,
                  "answer": ""} for k, q in enumerate((vocab.Q_COARSE, vocab.Q_FINE), start=1)]
    write_jsonl(tmp_path / "q.jsonl", questions)
    build_dataset("casme3", tmp_path / "out", root=tmp_path / "frames", official=tmp_path / "q.jsonl",
                  options=BuildOptions(media=MediaSettings(modes=("video",), num_frames=3, size=None),
                                       progress=False))
    rows = read_jsonl(tmp_path / "out" / "qa.jsonl")
    assert [r["id"] for r in rows] == [q["id"] for q in questions]
    assert rows[0]["media"]["video"]["frame_numbers"] == [338, 342, 346]
    assert rows[0]["media"]["video"]["sample_fps"] == pytest.approx(30 * 2 / 8)


# --- outputs that never mix, and confinement ---------------------------------------------------------------------

def test_rebuild_with_other_settings_sets_the_old_rows_aside_first(synthetic, tmp_path, capsys):
    """A rebuild into the same --out with other media settings that fails part-way leaves no qa.jsonl: the old one
    was set aside before any media was touched. A rebuild with the same settings keeps it."""
    paths = copy_tree(synthetic["casme2"], tmp_path)
    out = tmp_path / "out"
    assert cli(*build_args("casme2", paths, out, "--inputs", "oao,flow", "--size", 64)) == 0
    old = (out / "qa.jsonl").read_text()
    assert cli(*build_args("casme2", paths, out, "--inputs", "oao,flow", "--size", 64)) == 0
    assert (out / "qa.jsonl").read_text() == old and not list(out.glob("qa.jsonl.stale-*"))

    last = read_jsonl(out / "qa.jsonl")[-1]  # the last clip built: the others are rebuilt before it fails
    folder = next(Path(paths["root"]).rglob(f"{last['subject']}/{last['filename']}"))
    broken = folder / f"img{last['clip']['onset']}.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    code = cli(*build_args("casme2", paths, out, "--inputs", "oao,flow", "--size", 64, "--head-motion", "median",
                           "--blend", "0.5"))
    assert code == 2 and "unreadable image" in capsys.readouterr().err
    assert not (out / "qa.jsonl").exists()
    [aside] = out.glob("qa.jsonl.stale-*")
    assert aside.read_text() == old
    assert not (out / "build.json").exists() and len(list(out.glob("build.json.stale-*"))) == 1
    # some clips' media were rebuilt with the new settings before the failure: they are not listed by any qa.jsonl
    rebuilt = [json.loads(p.read_text())["media"]["settings"] for p in out.glob("media/casme2/*/media.json")]
    assert sum(r["head_motion"] == "median" and r["blend"] == 0.5 for r in rebuilt) == len(rebuilt) - 1

    broken.unlink()  # the frame is gone: only that clip is bad now; skip it and finish
    assert cli(*build_args("casme2", paths, out, "--inputs", "oao,flow", "--size", 64, "--head-motion", "median",
                           "--blend", "0.5", "--skip-bad")) == 0
    rows = read_jsonl(out / "qa.jsonl")
    assert {json.dumps(r["media"]["settings"], sort_keys=True) for r in rows} == {json.dumps(
        {"frames": 8, "size": 64, "flow": "farneback", "head_motion": "median", "blend": 0.5, "face_crop": False},
        sort_keys=True)}
    assert json.loads((out / "build.json").read_text())["media_settings"]["head_motion"] == "median"


def test_a_second_build_into_the_same_folder_is_refused_while_one_runs(synthetic, tmp_path, capsys):
    """Two builds with other settings in one folder would overwrite each other's media: the folder is locked."""
    from mevqa.runfolder import folder_lock

    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out, ".build.lock", "test"):  # as a running build holds it
        assert cli(*build_args("casme2", synthetic["casme2"], out, "--inputs", "oao", "--size", 32)) == 2
    assert f"{out}: another mevqa build-data is writing here" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == [".build.lock"]
    assert cli(*build_args("casme2", synthetic["casme2"], out, "--inputs", "oao", "--size", 32)) == 0


@pytest.mark.e2e
def test_a_rebuild_killed_mid_way_never_leaves_rows_over_other_media(tmp_path):
    """A real SIGKILL while a rebuild with other settings is writing media: qa.jsonl is already set aside."""
    from processes import kill_when

    raw = write_synthetic_dataset("casme2", tmp_path / "raw", clips=40, frames=10, size=(480, 360))
    out = tmp_path / "out"
    base = ["build-data", "casme2", "--root", str(raw["root"]), "--annotations", str(raw["annotations"]),
            "--out", str(out), "--inputs", "video,oao,flow", "--size", "0"]
    assert cli(*base) == 0
    kill_when(base + ["--head-motion", "median"],
              lambda: any('"median"' in p.read_text() for p in out.glob("media/casme2/*/media.json")))
    assert not (out / "qa.jsonl").exists()
    assert len(list(out.glob("qa.jsonl.stale-*"))) == 1


@pytest.mark.parametrize("video", ["../outside", "/tmp", ".", "..", "a/b", ""])
def test_official_test_file_clip_names_stay_under_root(tmp_path, capsys, video):
    """A clip named by a test file is one plain name under --root: nothing is read or written elsewhere."""
    from mevqa.jsonl import write_jsonl

    (tmp_path / "outside").mkdir()
    from mevqa.data_builders.synth import SynthClip, _write_frames

    clip = SynthClip(6, 1, "Anger", "negative", 0, 100, 104, 109, None)
    _write_frames(tmp_path / "outside", clip, lambda n: f"{n:05d}.jpg", (64, 48, True), 0)
    (tmp_path / "root").mkdir()
    questions = tmp_path / "root" / "me_vqa_samm_test_to_answer.jsonl"
    write_jsonl(questions, [{"video_id": "samm_test_X_1", "video": video, "question": vocab.Q_COARSE,
                             "answer": ""}])
    before = sorted(p.name for p in (tmp_path / "outside").iterdir())
    out = tmp_path / "out"
    assert cli("build-data", "samm", "--official", questions, "--root", tmp_path / "root", "--out", out) == 2
    err = capsys.readouterr().err
    assert f"error: {questions}:1: video name {video!r} must be one plain folder or file name" in err
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == before
    assert not out.exists() and not (tmp_path / "media.json").exists()


def test_duplicate_ids_in_an_official_file_are_refused(tmp_path, capsys):
    rows = read_jsonl(OFFICIAL_TEST[0])[:3]
    rows.append(dict(rows[1], question=vocab.Q_FINE))
    questions = tmp_path / "me_vqa_samm_test_to_answer.jsonl"
    questions.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_line"}) + "\n" for r in rows))
    assert cli("build-data", "samm", "--official", questions, "--root", tmp_path, "--out", tmp_path / "out") == 2
    assert f"{questions}:4: duplicate id 'samm_test_SAMM-1_2' (first at {questions}:2)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- the token summary ---------------------------------------------------------------------------------------------

def test_build_data_prints_the_inspect_summary_with_the_model_given(synthetic, tmp_path, capsys, tiny_family_dir):
    """--inspect-model prints what `mevqa inspect --data OUT/qa.jsonl --model MODEL` prints; the input mode falls
    back to one the build made inputs for; without the option, the command that gives the summary is printed.
    Each family's tiny model: its own resize factor."""
    from mevqa.train.inspect import inspect_files

    out = tmp_path / "out"
    assert cli(*build_args("casme2", synthetic["casme2"], out, "--inputs", "video", "--size", 32,
                           "--inspect-model", tiny_family_dir)) == 0
    printed = capsys.readouterr().out
    expected = inspect_files([out / "qa.jsonl"], model=str(tiny_family_dir), overrides=["inputs=video"],
                             progress=False).format()
    assert expected in printed and "text + visual tokens per row (video)" in printed
    factor = FAMILIES[json.loads((tiny_family_dir / "config.json").read_text())["model_type"]].resize_factor_released
    assert f"one visual token per {factor}x{factor} px" in printed
    assert cli(*build_args("casme2", synthetic["casme2"], out, "--inputs", "video", "--size", 32)) == 0
    assert f"mevqa inspect --data {out / 'qa.jsonl'} --config" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--inspect-model", "{tmp}/nowhere"], "{tmp}/nowhere: model folder does not exist"),
    (["--inputs", "none", "--inspect-model", "{model}"], "--inputs none builds none"),
    (["--inputs", "video", "--inspect-config", "{repo}/recipes/configs/tiny/lora.yaml"],
     "lora.yaml: inputs oao needs media that --inputs video does not build"),
])
def test_a_token_summary_that_cannot_be_made_fails_before_the_build(synthetic, tmp_path, capsys, tiny_model_dir,
                                                                     extra, message):
    from conftest import REPO_ROOT

    names = {"tmp": tmp_path, "model": tiny_model_dir, "repo": REPO_ROOT}
    out = tmp_path / "out"
    assert cli(*build_args("casme2", synthetic["casme2"], out, *[e.format(**names) for e in extra])) == 2
    assert message.format(**names) in capsys.readouterr().err
    assert not out.exists()
