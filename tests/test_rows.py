"""mevqa.rows: the one reader, the one row id, where media may live, and the media settings rows share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mevqa.errors import MevqaError
from mevqa.rows import clip_name, media_settings_of, read_rows, relative_media, row_id
from qa_rows import write_qa_file

QUESTION = "What is the coarse expression class?"
SETTINGS = {"frames": 8, "size": 448, "flow": "farneback", "head_motion": "nose", "blend": 0.0, "face_crop": False}


def write_rows(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def test_rows_carry_their_file_and_line_and_absolute_media(tmp_path):
    qa = write_qa_file(tmp_path / "data", clips=1)
    rows = read_rows(qa)
    assert [(r["_file"], r["_line"]) for r in rows] == [(str(qa), n) for n in range(1, 6)]
    media = rows[0]["media"]
    assert media["root"] == str(tmp_path / "data")
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in media["oao"]["frames"])


def test_row_id_is_id_else_video_id_and_never_empty():
    assert row_id({"id": "a", "video_id": "b"}) == "a"
    assert row_id({"video_id": "b"}) == "b"
    for bad in ({}, {"id": ""}, {"id": 7}, {"video_id": "  "}):
        with pytest.raises(MevqaError, match="expected a non-empty string 'id' or 'video_id'"):
            row_id({**bad, "_file": "q.jsonl", "_line": 3})


@pytest.mark.parametrize("row, message", [
    ({"id": "a", "question": ""}, ":1: expected a non-empty 'question' string, got ''"),
    ({"id": "a", "question": 5}, ":1: expected a non-empty 'question' string, got 5"),
    ({"id": "a", "question": QUESTION, "answer": None}, ":1: expected 'answer' to be a string, got None"),
    ({"question": QUESTION}, ":1: expected a non-empty string 'id' or 'video_id', got None"),
    ({"id": "a"}, ":1: missing field(s) question"),
    ('{"id": "a", "question": "Q", "onset_frame": NaN}', ":1: non-finite number NaN (JSON allows only finite "),
    ('{"id": "a", "question": "Q", "x": -Infinity}', ":1: non-finite number -Infinity"),
    ("[1, 2]", ":1: expected a JSON object, got list"),
])
def test_bad_rows_are_one_line_naming_file_and_line(tmp_path, row, message):
    path = write_rows(tmp_path / "q.jsonl", [row])
    with pytest.raises(MevqaError) as info:
        read_rows(path)
    assert f"{path}{message}" in str(info.value) and "\n" not in str(info.value)


def test_encodings(tmp_path):
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(json.dumps({"id": "a", "question": QUESTION}).encode() + b"\n" +
                      '{"id": "b", "question": "caf\xe9?"}\n'.encode("latin-1"))
    with pytest.raises(MevqaError, match=rf"^{latin}:2: not UTF-8 text \(byte 0xe9 at column 29\); save the file as UTF-8$"):
        read_rows(latin)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "a", "question": QUESTION}).encode() + b"\n")
    assert read_rows(bom)[0]["id"] == "a"


def test_ids_are_unique_across_files(tmp_path):
    first = write_rows(tmp_path / "a.jsonl", [{"id": "x", "question": QUESTION}])
    second = write_rows(tmp_path / "b.jsonl", [{"id": "y", "question": QUESTION}, {"id": "x", "question": QUESTION}])
    with pytest.raises(MevqaError, match=rf"^{second}:2: duplicate id 'x' \(first at {first}:1\)$"):
        read_rows([first, second])
    assert len(read_rows([first, second], unique=False)) == 3


@pytest.mark.parametrize("path", ["../outside.png", "media/../../outside.png", "/etc/hostname", "OUTSIDE"])
def test_media_paths_may_not_leave_the_folder_of_their_file(tmp_path, path):
    (tmp_path / "outside.png").write_bytes(b"x")
    if path == "OUTSIDE":
        path = str(tmp_path / "outside.png")  # absolute, but not under the file's folder
    qa = write_rows(tmp_path / "data" / "qa.jsonl", [{"id": "a", "question": QUESTION,
                                                      "media": {"flow": {"image": path}}}])
    with pytest.raises(MevqaError, match=r"qa\.jsonl:1: media\.flow\.image .* lies outside the media root"):
        read_rows(qa)


def test_an_absolute_path_inside_the_folder_is_fine(tmp_path):
    (tmp_path / "data" / "media").mkdir(parents=True)
    (tmp_path / "data" / "media" / "f.png").write_bytes(b"x")
    qa = write_rows(tmp_path / "data" / "qa.jsonl", [{"id": "a", "question": QUESTION, "media": {
        "flow": {"image": str(tmp_path / "data" / "media" / "f.png")}}}])
    assert read_rows(qa)[0]["media"]["flow"]["image"] == str(tmp_path / "data" / "media" / "f.png")


def test_a_media_root_must_be_a_build_folder(tmp_path):
    build = tmp_path / "build"
    (build / "media").mkdir(parents=True)
    (build / "media" / "f.png").write_bytes(b"x")
    row = {"id": "a", "question": QUESTION, "media": {"root": "../build", "flow": {"image": "media/f.png"}}}
    fold = write_rows(tmp_path / "fold" / "val.jsonl", [row])
    with pytest.raises(MevqaError, match=r"val\.jsonl:1: media\.root \.\./build .* is not the output folder of a "
                                         r"build \(no build\.json\)"):
        read_rows(fold)
    (build / "build.json").write_text("{}")
    media = read_rows(fold)[0]["media"]
    assert media["flow"]["image"] == str(build / "media" / "f.png") and media["root"] == str(build)
    escaping = {**row, "media": {"root": "../build", "flow": {"image": "../fold/val.jsonl"}}}
    with pytest.raises(MevqaError, match="lies outside the media root"):
        read_rows(write_rows(tmp_path / "fold" / "val.jsonl", [escaping]))
    # written back for a file elsewhere: paths stay relative to the root, the root relative to the file
    assert relative_media(media, tmp_path / "elsewhere" / "deeper") == {
        "flow": {"image": "media/f.png"}, "root": "../../build"}
    assert relative_media(media, build) == {"flow": {"image": "media/f.png"}}


def test_media_settings_of_rows(tmp_path):
    def row(i, settings="same"):
        media = {"oao": {"frames": []}}
        if settings is not None:
            media["settings"] = SETTINGS if settings == "same" else {**SETTINGS, **settings}
        return {"id": f"r{i}", "question": QUESTION, "media": media, "_file": "train.jsonl", "_line": i}

    assert media_settings_of([row(1), row(2), {"id": "r3", "question": QUESTION}]) == SETTINGS
    assert media_settings_of([{"id": "a", "question": QUESTION}]) is None
    with pytest.raises(MevqaError, match=r"^train.jsonl:3: media built with blend 0.5, but train.jsonl:1 with "
                                         r"blend 0.0; rows built with different media settings cannot be mixed"):
        media_settings_of([row(1), row(2), row(3, {"blend": 0.5})])
    with pytest.raises(MevqaError, match=r"^train.jsonl:2: media built with unrecorded settings, but train.jsonl:1"):
        media_settings_of([row(1), row(2, None)])


@pytest.mark.parametrize("name", ["", " ", ".", "..", "../x", "/abs", "a/b", "a\\b", "x\0y", 7, None])
def test_clip_names_are_one_plain_name(name):
    with pytest.raises(MevqaError, match="must be one plain folder or file name"):
        clip_name(name, "q.jsonl:3")


def test_plain_clip_names_pass():
    for name in ("SAMM-1", "CAS-17", "006_1_2", "spNO.1_a_166", "clip.mp4", "..hidden"):
        assert clip_name(name, "q") == name
