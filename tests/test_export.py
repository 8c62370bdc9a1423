"""`mevqa export`: the hf DatasetDict loads with the right values; the LLaMA-Factory and ms-swift files follow their
documented layouts and ask exactly what mevqa trains on."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from mevqa.cli import main
from mevqa.errors import MevqaError
from mevqa.messages import build_messages
from mevqa.rows import read_rows
from mevqa.train.export import ExportSettings, export
from qa_rows import write_qa_file


def _with_ids(path: Path, prefix: str) -> Path:
    """Give the rows of ``path`` their own ids (every synthetic file starts at synth_clip0_1)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**row, "id": prefix + row["id"]}) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def qa_files(tmp_path_factory):
    """train.jsonl (2 clips) and val.jsonl (1 clip), the val clip with 6 frames, each with media beside it."""
    root = tmp_path_factory.mktemp("qa")
    train = write_qa_file(root / "a", clips=2, name="train.jsonl")
    val = _with_ids(write_qa_file(root / "b", clips=1, name="val.jsonl", n_frames=6, step=4, source_fps=100.0), "v_")
    return train, val


@pytest.fixture(scope="module")
def test_questions(tmp_path_factory):
    """Official-test-style rows (video_id, video, empty answers) with media."""
    root = tmp_path_factory.mktemp("test")
    path = write_qa_file(root, clips=1)
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        row = json.loads(line)
        rows.append({"video_id": f"x_test_V-1_{i}", "video": "V-1", "question": row["question"], "answer": "",
                     "media": row["media"]})
    out = root / "test.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _mevqa_user_text(row, mode, **kwargs):
    messages, _ = build_messages(row, mode, **kwargs)
    return messages


# --- hf --------------------------------------------------------------------------------------------------------------
def test_hf_export_loads_with_images_messages_and_metadata(qa_files, tmp_path):
    train, val = qa_files
    out = tmp_path / "hf"
    manifest = export([train, val], out, ExportSettings(format="hf", inputs="frames+flow"), progress=False)
    assert manifest["splits"] == {"train": {"rows": 10, "file": "train"}, "val": {"rows": 5, "file": "val"}}

    loaded = datasets.load_from_disk(str(out))
    assert set(loaded) == {"train", "val"} and loaded["train"].num_rows == 10 and loaded["val"].num_rows == 5
    features = loaded["train"].features
    assert features["images"] == datasets.List(datasets.Image())
    assert "video_frames" not in features
    rows = read_rows(train)
    for got, row in zip(loaded["train"], rows):
        assert (got["id"], got["question"], got["answer"], got["subject"]) == \
               (row["id"], row["question"], row["answer"], row["subject"])
        assert got["video_id"] is None
        # the images are the files' pixels, in mevqa's order: onset, apex, offset, flow
        paths = [*row["media"]["oao"]["frames"], row["media"]["flow"]["image"]]
        assert len(got["images"]) == 4
        for image, path in zip(got["images"], paths):
            assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(Image.open(path).convert("RGB")))
        # the chat is mevqa's, placeholders where the images go
        messages = _mevqa_user_text(row, "frames+flow", with_answer=True)
        assert [m["role"] for m in got["messages"]] == [m["role"] for m in messages]
        assert got["messages"][0]["content"][0]["text"] == messages[0]["content"][0]["text"]
        user = got["messages"][1]["content"]
        assert [c["type"] for c in user] == ["image"] * 4 + ["text"]
        assert user[-1]["text"] == messages[1]["content"][-1]["text"]
        assert got["messages"][2]["content"][0]["text"] == row["answer"]


def test_hf_video_export_carries_the_true_fps_of_the_frames_shown(qa_files, tmp_path):
    train, val = qa_files
    out = tmp_path / "hf-video"
    export([val], out, ExportSettings(format="hf", inputs="video", max_frames=4), progress=False)
    loaded = datasets.load_from_disk(str(out))["val"]
    assert loaded.features["video_frames"] == datasets.List(datasets.Image())
    first = loaded[0]
    # 6 frames 4 source frames apart at 100 fps; 4 kept (indices 0, 2, 3, 5 -> frames 10, 18, 22, 30)
    assert first["video_frame_numbers"] == [10, 18, 22, 30]
    assert first["video_fps"] == pytest.approx(100.0 * 3 / 20)
    assert len(first["video_frames"]) == 4
    assert [c["type"] for c in first["messages"][1]["content"]] == ["video", "text"]


def test_hf_export_keeps_test_rows_and_clip_metadata(test_questions, qa_files, tmp_path):
    train, _ = qa_files
    # build-data style clip metadata on the training rows
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    for row in rows:
        row["clip"] = {"source": "synth", "onset": 10, "apex": 25, "offset": 45, "apex_method": "annotated",
                       "fps": 200.0, "aus": ["12"], "emotion": "happiness"}
    with_clip = train.parent / "with_clip.jsonl"
    with_clip.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "hf"
    export([with_clip, test_questions], out, ExportSettings(format="hf", inputs="oao"), progress=False)
    loaded = datasets.load_from_disk(str(out))
    assert loaded["with_clip"][0]["clip"] == rows[0]["clip"]
    test = loaded["test"][0]
    assert (test["video_id"], test["video"], test["answer"], test["id"], test["clip"]) == \
           ("x_test_V-1_1", "V-1", "", None, None)
    assert [m["role"] for m in test["messages"]] == ["system", "user"]  # no answer, no assistant turn

    rows[0]["clip"]["camera"] = "x"
    bad = train.parent / "bad_clip.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MevqaError, match=r"clip\.camera has no column"):
        export([bad], tmp_path / "hf-bad", ExportSettings(format="hf", inputs="oao"), progress=False)
    assert not (tmp_path / "hf-bad").exists()
    assert not list(tmp_path.glob(".hf-bad*"))  # nothing half-written is left behind


def test_hf_export_reads_in_trl_as_mevqa_encodes_it(qa_files, tmp_path, tiny_model_dir):
    """TRL 1.16's vision collator (trl/data_utils.py, prepare_multimodal_messages) puts the ``images`` column, in
    order, into the user items ``{"type": "image"}`` WITHOUT an ``"image"`` key, then tokenises with the processor's
    chat template. datasets writes every message item with every key of the schema (absent ones as None), so the items
    must have no ``image`` / ``video`` key at all, or TRL counts no placeholder and fails; the same steps here give the
    tokens and grids of mevqa's own training batch."""
    from transformers import AutoProcessor

    from mevqa.models.collate import QADataset, encode

    train, _ = qa_files
    out = tmp_path / "hf"
    export([train], out, ExportSettings(format="hf", inputs="oao"), progress=False)
    data = datasets.load_from_disk(str(out))["train"]
    item = data.features["messages"].feature["content"].feature
    assert set(item) == {"type", "text"}
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    mevqa_rows = QADataset(read_rows(train), "oao", with_answer=True)
    for i in (0, 5):
        example = data[i]
        images = iter(example["images"])
        assert all(part["text"] is None for m in example["messages"] for part in m["content"] if part["type"] != "text")
        messages = [{**m, "content": [{**part, "image": next(images)} if part["type"] == "image" else part
                                      for part in m["content"]]} for m in example["messages"]]
        assert next(images, None) is None  # one placeholder per image
        trl = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
        ours = encode(processor, [mevqa_rows[i]], train=True)
        assert trl["input_ids"].tolist() == ours["input_ids"].tolist()
        assert trl["image_grid_thw"].tolist() == ours["image_grid_thw"].tolist() == [[1, 8, 8]] * 3


def test_hf_without_datasets_is_a_clear_error(qa_files, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(MevqaError, match=r"pip install 'mevqa\[datasets\]'"):
        export([qa_files[0]], tmp_path / "hf", ExportSettings(format="hf", inputs="oao"), progress=False)


# --- LLaMA-Factory and ms-swift -----------------------------------------------------------------------------------
def _check_chat(record, *, system_tag="system"):
    """Roles as LLaMA-Factory's sharegpt reader and ms-swift accept them; one placeholder per media item."""
    roles = [m["role"] for m in record["messages"]]
    if roles[0] == system_tag:
        roles = roles[1:]
    assert roles[0::2] == ["user"] * len(roles[0::2]) and roles[1::2] == ["assistant"] * len(roles[1::2])
    text = "".join(m["content"] for m in record["messages"])
    assert text.count("<image>") == len(record.get("images", []))
    assert text.count("<video>") == len(record.get("videos", []))


def _qwen_rendering(processor, messages):
    """How LLaMA-Factory's and ms-swift's Qwen2-VL templates expand the placeholders, rendered by the chat template."""
    expanded = [{**m, "content": m["content"].replace("<image>", "<|vision_start|><|image_pad|><|vision_end|>")
                 .replace("<video>", "<|vision_start|><|video_pad|><|vision_end|>")} for m in messages]
    return processor.apply_chat_template(expanded, tokenize=False)


@pytest.mark.parametrize("mode", ["oao", "video", "frames+flow"])
def test_llamafactory_export_follows_its_dataset_format(qa_files, tmp_path, tiny_family_dir, mode):
    tiny_model_dir = tiny_family_dir  # the exported chat renders as mevqa's under each family's chat template
    from transformers import AutoProcessor

    train, val = qa_files
    out = tmp_path / "lf"
    export([train, val], out, ExportSettings(format="llamafactory", inputs=mode), progress=False)
    info = json.loads((out / "dataset_info.json").read_text())
    media_column = "videos" if mode == "video" else "images"
    assert set(info) == {"mevqa_train", "mevqa_val"}
    for name, entry in info.items():
        assert entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "messages", media_column: media_column}
        assert entry["tags"] == {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                 "assistant_tag": "assistant", "system_tag": "system"}
        assert (out / entry["file_name"]).is_file()

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    records = json.loads((out / "train.json").read_text())
    rows = read_rows(train)
    assert len(records) == len(rows) == 10
    for record, row in zip(records, rows):
        _check_chat(record)
        assert record["id"] == row["id"]
        if mode == "video":
            assert [len(v) for v in record["videos"]] == [8]
            assert record["video_fps"] == pytest.approx(row["media"]["video"]["sample_fps"])
            assert all(Path(p).is_absolute() and Path(p).is_file() for p in record["videos"][0])
        else:
            assert all(Path(p).is_absolute() and Path(p).is_file() for p in record["images"])
        # the exported chat renders to exactly the text mevqa trains on
        messages = _mevqa_user_text(row, mode, with_answer=True)
        assert _qwen_rendering(processor, record["messages"]) == processor.apply_chat_template(messages,
                                                                                              tokenize=False)


def test_swift_export_follows_its_dataset_format(qa_files, test_questions, tmp_path, tiny_model_dir):
    from transformers import AutoProcessor

    train, _ = qa_files
    out = tmp_path / "swift"
    manifest = export([train, test_questions], out, ExportSettings(format="swift", inputs="video", max_frames=4,
                                                                   system_prompt=None), progress=False)
    assert manifest["settings"]["system_prompt"] is None
    assert manifest["video_sample_fps"]["min"] == pytest.approx(200.0 * 3 / 35, abs=1e-4)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    lines = (out / "train.jsonl").read_text().splitlines()
    rows = read_rows(train)
    assert len(lines) == 10
    for line, row in zip(lines, rows):
        record = json.loads(line)
        assert set(record) == {"id", "messages", "videos", "video_fps"}
        _check_chat(record)
        assert record["messages"][0]["role"] == "user"  # system_prompt none: the tool's default system turn
        (frames,) = record["videos"]
        assert len(frames) == 4 and all(Path(p).is_file() for p in frames)
        messages = _mevqa_user_text(row, "video", with_answer=True, system_prompt=None, max_frames=4)
        assert _qwen_rendering(processor, record["messages"]) == processor.apply_chat_template(messages,
                                                                                              tokenize=False)
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert [m["role"] for m in test[0]["messages"]] == ["user"]  # a question to answer
    _check_chat(test[0])


# The tools' names for each family's chat template, and how each takes pixel budgets (the family table's facts).
TEMPLATES = {"qwen2_vl": ("qwen2_vl", "qwen2_vl"), "qwen2_5_vl": ("qwen2_vl", "qwen2_5_vl"),
             "qwen3_vl": ("qwen3_vl_nothink", "qwen3_vl")}


@pytest.mark.parametrize("mode", ["video", "oao"])
def test_export_for_a_model_records_each_tool_s_settings(qa_files, tmp_path, tiny_family_dir, mode):
    from transformers import AutoProcessor

    train, val = qa_files
    processor = AutoProcessor.from_pretrained(tiny_family_dir)
    model_type = json.loads((tiny_family_dir / "config.json").read_text())["model_type"]
    manifest = export([train, val], tmp_path / "lf", ExportSettings(format="llamafactory", inputs=mode,
                                                                    model=str(tiny_family_dir)), progress=False)
    tools = manifest["tool_settings"]
    assert json.loads((tmp_path / "lf" / "export.json").read_text())["tool_settings"] == tools
    assert (tools["llamafactory"]["template"], tools["swift"]["template"]) == TEMPLATES[model_type]
    factor = 32 if model_type == "qwen3_vl" else 28
    assert tools["resize_factor"] == factor
    image = processor.image_processor.size
    assert tools["processor_image_pixels"] == [image["shortest_edge"], image["longest_edge"]]
    lf, env = tools["llamafactory"], tools["swift"]["env"]
    # LLaMA-Factory resizes before the processor: its bounds are the inputs' own pixel range (120 x 100 px files),
    # so it never resizes and the model's processor applies its budget alone, as in mevqa
    kind = "video" if mode == "video" else "image"
    assert (lf[f"{kind}_min_pixels"], lf[f"{kind}_max_pixels"]) == (120 * 100, 120 * 100)
    assert not {key for key in lf if key.startswith("video_" if kind == "image" else "image_")}
    # frame lists are taken whole: no frame cap that would only bound the sampling of video files
    assert "video_maxlen" not in lf and "FPS_MAX_FRAMES" not in env
    video = processor.video_processor.size
    if mode == "video":
        # the true rates: 8 frames 5 apart at 200 fps (40 fps) and 6 frames 4 apart at 100 fps (125 fps)
        assert lf["video_fps"] == env["FPS"] == pytest.approx(40.0)
        assert "one rate for all" in tools["notes"][-1]
        lf_note = "LLaMA-Factory 0.9.5 writes the per-frame timestamps" in tools["notes"][0]
        assert lf_note == (model_type == "qwen3_vl")
    else:
        assert "video_fps" not in lf and "FPS" not in env
    # ms-swift bounds each frame; Qwen3-VL's processor bounds the whole video (8 frames the longest)
    per_frame = video["longest_edge"] // 8 if model_type == "qwen3_vl" and mode == "video" else video["longest_edge"]
    assert tools["processor_video_pixels"][1] == per_frame
    # the names qwen-vl-utils 0.0.14 reads (Qwen3-VL) / ms-swift converts for Qwen2/2.5-VL (factor 28)
    if model_type == "qwen3_vl":
        assert env == {"IMAGE_MIN_TOKEN_NUM": image["shortest_edge"] // factor ** 2,
                       "IMAGE_MAX_TOKEN_NUM": image["longest_edge"] // factor ** 2,
                       "VIDEO_MIN_TOKEN_NUM": tools["processor_video_pixels"][0] // factor ** 2,
                       "VIDEO_MAX_TOKEN_NUM": per_frame // factor ** 2, **({"FPS": env["FPS"]} if mode == "video"
                                                                          else {})}
    else:
        assert env["MAX_PIXELS"] == image["longest_edge"] and env["VIDEO_MAX_PIXELS"] == per_frame
        assert not any(key.endswith("TOKEN_NUM") for key in env)


def test_export_for_a_training_config_gives_the_tools_its_budgets_and_rate(qa_files, tmp_path, tiny_model_dir,
                                                                            capsys):
    """With --config the tools get the budgets and video_fps mevqa trains with (tiny Qwen2.5-VL, factor 28)."""
    train, _ = qa_files
    config = tmp_path / "train.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\ninputs: video\nmax_frames: 4\nmax_pixels: 4704\n"
                      "video_min_pixels: 784\nvideo_max_pixels: 3136\nvideo_fps: 2.0\n")
    out = tmp_path / "swift"
    assert main(["export", "--data", str(train), "--inputs", "video", "--max-frames", "4", "--format", "swift",
                 "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    tools = json.loads((out / "export.json").read_text())["tool_settings"]
    assert tools["model"] == str(tiny_model_dir) and tools["config"] == str(config)
    assert tools["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    env = tools["swift"]["env"]
    assert (env["MAX_PIXELS"], env["VIDEO_MIN_PIXELS"], env["VIDEO_MAX_PIXELS"], env["FPS"]) == (4704, 784, 3136, 2.0)
    assert tools["llamafactory"]["video_max_pixels"] == 3136 and tools["llamafactory"]["video_fps"] == 2.0
    assert tools["trl"]["video_processor.size"] == {"shortest_edge": 784, "longest_edge": 3136}
    assert "not the config's video budget" in printed and "one rate for all" not in printed  # the config's one rate
    # the config asks other inputs than the export: refused, nothing written
    with pytest.raises(MevqaError, match="its max_frames is 4 but the export's --max-frames is 8"):
        export([train], tmp_path / "other", ExportSettings(format="swift", inputs="video", max_frames=8,
                                                           config=str(config)), progress=False)
    assert not (tmp_path / "other").exists()


def test_copy_media_makes_the_export_movable(qa_files, tmp_path):
    train, val = qa_files
    out = tmp_path / "lf"
    export([train, val], out, ExportSettings(format="llamafactory", inputs="oao", copy_media=True), progress=False)
    moved = tmp_path / "elsewhere" / "lf"
    shutil.move(str(out), str(moved))
    sources = {Path(p).name for row in read_rows(train) for p in row["media"]["oao"]["frames"]}
    for split in ("train", "val"):
        for record in json.loads((moved / f"{split}.json").read_text()):
            assert all(not Path(p).is_absolute() and (moved / p).is_file() for p in record["images"])
            assert {Path(p).name for p in record["images"]} <= sources
    # media of both input files, and only what the mode shows (no video frames)
    copied = sorted(p.relative_to(moved / "media").as_posix() for p in (moved / "media").rglob("*") if p.is_file())
    assert len(copied) == 3 * 3 and not any("/video/" in p for p in copied)
    with pytest.raises(MevqaError, match="--copy-media applies to llamafactory and swift"):
        export([train], tmp_path / "hf", ExportSettings(format="hf", inputs="oao", copy_media=True), progress=False)


# --- output folder, splits, command line --------------------------------------------------------------------------
def test_existing_output_is_replaced_only_by_the_same_export(qa_files, tmp_path):
    train, val = qa_files
    out = tmp_path / "out"
    settings = ExportSettings(format="swift", inputs="oao")
    export([train], out, settings, progress=False)
    first = (out / "train.jsonl").read_text()
    export([train], out, settings, progress=False)  # the same files and settings: written again
    assert (out / "train.jsonl").read_text() == first
    with pytest.raises(MevqaError, match="holds another export \\(its settings differ\\)"):
        export([train], out, ExportSettings(format="swift", inputs="flow"), progress=False)
    with pytest.raises(MevqaError, match="its sources differ"):
        export([train, val], out, settings, progress=False)
    assert (out / "train.jsonl").read_text() == first and not (out / "val.jsonl").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(MevqaError, match="holds no export.json"):
        export([train], other, settings, progress=False)
    assert (other / "notes.txt").read_text() == "mine"


def test_split_names(qa_files, tmp_path):
    train, val = qa_files
    same_stem = tmp_path / "x" / "train.jsonl"
    same_stem.parent.mkdir()
    shutil.copytree(train.parent / "media", same_stem.parent / "media")
    shutil.copy(train, same_stem)
    _with_ids(same_stem, "x_")
    settings = ExportSettings(format="swift", inputs="flow")
    with pytest.raises(MevqaError, match="share the stem 'train'"):
        export([train, same_stem], tmp_path / "o1", settings, progress=False)
    manifest = export([train, same_stem, val], tmp_path / "o2", settings, splits=["train", "train", "dev"],
                      progress=False)
    assert {k: v["rows"] for k, v in manifest["splits"].items()} == {"train": 20, "dev": 5}
    with pytest.raises(MevqaError, match="one name per file"):
        export([train, val], tmp_path / "o3", settings, splits=["train"], progress=False)


def test_mixed_answered_and_unanswered_rows_in_one_split_are_refused(qa_files, test_questions, tmp_path):
    with pytest.raises(MevqaError, match="mixes rows with and without answers"):
        export([qa_files[0], test_questions], tmp_path / "o", ExportSettings(format="swift", inputs="oao"),
               splits=["all", "all"], progress=False)


def test_export_command(qa_files, tmp_path, capsys):
    train, val = qa_files
    out = tmp_path / "cli"
    code = main(["export", "--data", str(train), str(val), "--inputs", "video", "--format", "llamafactory",
                 "--out", str(out), "--system-prompt", "none", "--max-frames", "4", "--name", "megc"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"train: 10 rows -> {out / 'train.json'}" in printed and "video_fps" in printed
    assert set(json.loads((out / "dataset_info.json").read_text())) == {"megc_train", "megc_val"}
    assert json.loads((out / "export.json").read_text())["settings"]["system_prompt"] is None
    # an hf export of videos: TRL's SFTTrainer would not read them, and the summary says so
    assert main(["export", "--data", str(val), "--inputs", "video", "--format", "hf", "--out", str(tmp_path / "hf"),
                 "--max-frames", "2"]) == 0
    assert "TRL's SFTTrainer (1.16) trains on images only" in capsys.readouterr().out
    code = main(["export", "--data", str(tmp_path / "missing.jsonl"), "--inputs", "oao", "--format", "swift",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err


@pytest.mark.parametrize("case, message", [
    ("out is a file", "afile: exists and is not a folder"),
    ("out under a file", "afile: cannot be the folder of --out"),
    ("out in a folder nothing can be written to", "locked: cannot write in the folder of --out"),
])
def test_unusable_output_folder_is_a_one_line_error(qa_files, tmp_path, capsys, case, message):
    """Checked before any work, with nothing left behind (chattr +i makes a folder unwritable even for root)."""
    import subprocess

    (tmp_path / "afile").write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    out = {"out is a file": tmp_path / "afile", "out under a file": tmp_path / "afile" / "out",
           "out in a folder nothing can be written to": locked / "out"}[case]
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        assert main(["export", "--data", str(qa_files[0]), "--inputs", "oao", "--format", "swift",
                     "--out", str(out)]) == 2
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not list(locked.iterdir()) and (tmp_path / "afile").read_text() == "x"
