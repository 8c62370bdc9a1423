"""Prompts: one builder for every input mode and system-prompt choice; QA files with media resolved and checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.messages import GENERIC_SYSTEM_PROMPT, INPUT_MODES, build_messages, system_prompt_for
from mevqa.rows import read_rows
from qa_rows import APEX, FLOW, OFFSET, ONSET, write_qa_file


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return read_rows(write_qa_file(tmp_path_factory.mktemp("qa")))


def _colour(image):
    return tuple(int(c) for c in np.asarray(image).reshape(-1, 3).mean(0).round())


def test_read_qa_rows_makes_media_paths_absolute(rows):
    assert len(rows) == 10 and rows[0]["_line"] == 1
    media = rows[0]["media"]
    paths = media["video"]["frames"] + media["oao"]["frames"] + [media["flow"]["image"]]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)


def test_read_qa_rows_names_file_line_and_path_of_missing_media(tmp_path):
    qa = write_qa_file(tmp_path, clips=1)
    lines = qa.read_text().splitlines()
    row = json.loads(lines[2])
    row["media"]["oao"]["frames"][1] = "media/clip0/nope.png"
    lines[2] = json.dumps(row)
    qa.write_text("\n".join(lines) + "\n")
    with pytest.raises(MevqaError, match=r"qa\.jsonl:3: media\.oao\.frames\[1\] media/clip0/nope\.png does not exist"):
        read_rows(qa)


@pytest.mark.parametrize("mode, kinds, colours", [
    ("video", ["video"], None),
    ("oao", ["image"] * 3, [ONSET, APEX, OFFSET]),
    ("flow", ["image"], [FLOW]),
    ("frames+flow", ["image"] * 4, [ONSET, APEX, OFFSET, FLOW]),
])
def test_each_input_mode_builds_its_vision_content(rows, mode, kinds, colours):
    row = rows[0]
    messages, vision = build_messages(row, mode, with_answer=False)
    assert [m["role"] for m in messages] == ["system", "user"]
    content = messages[1]["content"]
    assert [item["type"] for item in content] == kinds + ["text"]
    assert content[-1]["text"] == f"{INPUT_MODES[mode].caption}\n{row['question']}"
    if mode == "video":
        assert vision.images == [] and len(vision.videos) == 1
        assert vision.videos[0].shape == (8, 100, 120, 3) and vision.videos[0].dtype == np.uint8
        assert vision.video_fps == [pytest.approx(row["media"]["video"]["sample_fps"])]
        assert content[0]["video"] == row["media"]["video"]["frames"]
    else:
        assert vision.videos == [] and [_colour(image) for image in vision.images] == colours
        assert all(image.mode == "RGB" for image in vision.images)


def test_system_prompt_per_question_kind_lists_the_allowed_answers():
    coarse = system_prompt_for(vocab.Q_COARSE)
    assert all(label in coarse for label in vocab.COARSE_LABELS) and "happiness" not in coarse
    fine = system_prompt_for(vocab.Q_FINE)
    assert all(label in fine for label in vocab.FINE_LABELS)
    au = system_prompt_for(vocab.Q_AU_MANY)
    assert all(name in au for name in vocab.OFFICIAL_AU_NAMES.values())
    assert "left or right" in system_prompt_for(vocab.Q_LATERALITY.format(au="lip corner puller"))
    assert "yes or no" in system_prompt_for(vocab.Q_PRESENCE.format(au="brow lowerer"))
    composite = system_prompt_for(vocab.Q_COMPOSITE_ONE)
    assert "Therefore, the fine-grained expression class is" in composite
    assert system_prompt_for("How old is this person?") == GENERIC_SYSTEM_PROMPT


def test_system_prompt_choices(rows):
    row = rows[1]  # fine-grained question
    default, _ = build_messages(row, "flow")
    assert default[0]["content"][0]["text"] == system_prompt_for(vocab.Q_FINE)
    off, _ = build_messages(row, "flow", system_prompt=None)
    assert [m["role"] for m in off] == ["user"]
    custom, _ = build_messages(row, "flow", system_prompt="Answer in one word.")
    assert custom[0] == {"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]}


def test_question_outside_the_official_set_still_works(rows):
    row = dict(rows[0], question="  Which eyebrow moves first?  ")
    messages, vision = build_messages(row, "oao")
    assert messages[0]["content"][0]["text"] == GENERIC_SYSTEM_PROMPT
    assert messages[1]["content"][-1]["text"].endswith("\nWhich eyebrow moves first?")
    assert len(vision.images) == 3


def test_with_answer_appends_the_assistant_turn(rows):
    messages, _ = build_messages(rows[4], "oao", with_answer=True)
    assert messages[-1] == {"role": "assistant", "content": [{"type": "text", "text": rows[4]["answer"]}]}
    with pytest.raises(MevqaError, match="synth_clip0_1: training needs a non-empty answer"):
        build_messages(dict(rows[0], answer=""), "oao", with_answer=True)


def test_frame_cap_keeps_uniform_frames_and_their_true_fps(rows):
    video = rows[0]["media"]["video"]            # 8 frames, numbers 10, 15, ..., 45 at 200 fps -> 40 fps
    assert video["sample_fps"] == pytest.approx(40.0)
    messages, vision = build_messages(rows[0], "video", max_frames=4)
    kept = messages[-1]["content"][0]["video"]
    assert kept == [video["frames"][i] for i in (0, 2, 5, 7)]         # frame numbers 10, 20, 35, 45
    assert len(vision.videos[0]) == 4
    assert vision.video_fps == [pytest.approx(200.0 * 3 / 35)]
    _, uncapped = build_messages(rows[0], "video", max_frames=16)
    assert len(uncapped.videos[0]) == 8 and uncapped.video_fps == [pytest.approx(40.0)]


def test_bad_mode_and_missing_media_are_clear_errors(rows):
    with pytest.raises(MevqaError, match="unknown input mode 'optical'; choose one of video, oao, flow, frames"):
        build_messages(rows[0], "optical")
    row = dict(rows[0], media={"video": rows[0]["media"]["video"]})
    with pytest.raises(MevqaError, match=r"row synth_clip0_1: input mode 'frames\+flow' needs media\.oao, "
                                         r"media\.flow \(the row has: video\)"):
        build_messages(row, "frames+flow")
    malformed = dict(rows[0], media={"oao": {"images": rows[0]["media"]["oao"]["frames"]}})
    with pytest.raises(MevqaError, match=r"row synth_clip0_1: malformed media for input mode 'oao' \(KeyError: 'frames'\)"):
        build_messages(malformed, "oao")
    no_fps = dict(rows[0], media={"video": {"frames": rows[0]["media"]["video"]["frames"]}})
    with pytest.raises(MevqaError, match="synth_clip0_1: media.video has no sample_fps"):
        build_messages(no_fps, "video")


def test_unreadable_image_is_a_clear_error(tmp_path, rows):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    row = dict(rows[0], media={"flow": {"image": str(broken)}})
    with pytest.raises(MevqaError, match=r"synth_clip0_1: .*broken\.png: cannot read image"):
        build_messages(row, "flow")


def test_video_frames_of_different_sizes_are_an_error(tmp_path, rows):
    from PIL import Image

    odd = tmp_path / "odd.png"
    Image.new("RGB", (64, 64)).save(odd)
    video = dict(rows[0]["media"]["video"])
    video["frames"] = video["frames"][:-1] + [str(odd)]
    with pytest.raises(MevqaError, match=r"synth_clip0_1: media.video.frames differ in size"):
        build_messages(dict(rows[0], media={"video": video}), "video")
