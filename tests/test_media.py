"""mevqa.media: frame listing, reading, video files, apex, optical flow, head motion, inputs and resuming."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mevqa.errors import MevqaError
from mevqa.media import (MediaSettings, Span, build_media, compute_flow, detect_face_box, estimate_apex, list_frames,
                         read_clip, read_frame, remove_head_motion, render_flow, resolve_span, sample_fps,
                         sample_uniform)


def settings(modes, **fields):
    return MediaSettings(modes=tuple(modes), **fields)


def textured(height=96, width=128, seed=0):
    """A smooth random texture that optical flow can track."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (height // 8, width // 8)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), (5, 5), 0).astype(
        np.uint8)


def shifted(image, dx, dy):
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT)


def test_list_frames_sorts_numerically_and_ignores_non_images(tmp_path):
    names = ["img10.jpg", "img9.jpg", "img100.jpg", "Desktop - Shortcut.lnk", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert [(n, p.name) for n, p in list_frames(tmp_path)] == [(9, "img9.jpg"), (10, "img10.jpg"),
                                                              (100, "img100.jpg")]


@pytest.mark.parametrize("names, numbers", [
    (["006_05562.jpg", "006_5563.jpg", "006_005561.jpg"], [5561, 5562, 5563]),  # SAMM, mixed padding
    (["reg_image000123.bmp", "reg_image000124.bmp"], [123, 124]),             # SMIC
    (["1568.jpg", "1570.jpg", "1569.png"], [1568, 1569, 1570]),               # CAS(ME)^3 (png counts too)
    (["reg_img46.jpg", "reg_img47.jpg"], [46, 47]),                           # CASME II Cropped
])
def test_list_frames_real_namings(tmp_path, names, numbers):
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert [n for n, _ in list_frames(tmp_path)] == numbers


def test_list_frames_rejects_duplicate_numbers_and_missing_folder(tmp_path):
    (tmp_path / "img5.jpg").write_bytes(b"x")
    (tmp_path / "img005.jpg").write_bytes(b"x")
    with pytest.raises(MevqaError, match="two frames numbered 5"):
        list_frames(tmp_path)
    with pytest.raises(MevqaError, match="clip folder not found"):
        list_frames(tmp_path / "nope")


def test_grayscale_frames_become_three_channels(tmp_path):
    grey = textured()
    cv2.imwrite(str(tmp_path / "006_0001.jpg"), grey)
    image = read_frame(tmp_path / "006_0001.jpg")
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(MevqaError, match="bad.jpg: unreadable image"):
        read_frame(tmp_path / "bad.jpg")


def write_video_file(path, count):
    """An mp4 whose frame i is uniformly 20 * i grey."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(count):
            rgb = np.full((48, 64, 3), 20 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_read_clip_from_video_file_decodes_requested_frames(tmp_path):
    path = write_video_file(tmp_path / "clip.mp4", 10)
    clip = read_clip(path)
    assert clip.frame_numbers == list(range(10)) and clip.fps == pytest.approx(30)
    frames = clip.load([2, 7])
    assert set(frames) == {2, 7} and frames[7].shape == (48, 64, 3)
    assert abs(int(frames[7].mean()) - 140) < 8 and abs(int(frames[2].mean()) - 40) < 8
    media = build_media(clip, resolve_span(clip), settings(["video", "oao"], num_frames=4, size=None),
                        tmp_path / "out")
    assert media["video"]["frame_numbers"] == [0, 3, 6, 9]
    assert media["video"]["source_fps"] == pytest.approx(30)
    assert media["oao"]["frame_numbers"] == [0, 9, 9]  # the last frame differs most from the first
    assert media["oao"]["apex_method"] == "max_diff"


@pytest.mark.parametrize("dx, dy", [(3.0, 0.0), (0.0, -2.0), (-2.0, 2.0)])
def test_flow_of_a_known_shift_has_that_direction_and_size(dx, dy):
    onset = textured()
    flow = compute_flow(onset, shifted(onset, dx, dy), "farneback")
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    median = np.median(inner, axis=0)
    assert median == pytest.approx([dx, dy], abs=0.25)


def test_head_motion_removal_cancels_a_global_shift():
    onset = textured(seed=1)
    # the whole face moves 2 px right; a patch in the upper right also moves 3 px down (the expression)
    apex = shifted(onset, 2.0, 0.0)
    patch = (slice(10, 40), slice(80, 120))
    apex[patch] = shifted(onset, 2.0, 3.0)[patch]
    flow = compute_flow(onset, apex)
    for region in ("nose", "median"):
        cleaned = remove_head_motion(flow, region)
        background = np.concatenate([cleaned[50:90, 10:70].reshape(-1, 2)])
        assert np.abs(np.median(background, axis=0)).max() < 0.2, region
        moved = np.median(cleaned[18:32, 88:112].reshape(-1, 2), axis=0)
        assert moved[1] > 2.0 and abs(moved[0]) < 0.5, region
    assert np.median(remove_head_motion(flow, "none")[50:90, 10:70].reshape(-1, 2), axis=0)[0] > 1.7


def test_render_flow_colours_direction_and_blends_onset():
    flow = np.zeros((32, 32, 2), np.float32)
    flow[:, :16, 0] = 2.0   # left half moves right
    flow[:, 16:, 1] = 2.0   # right half moves down
    picture = render_flow(flow)
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8
    assert not np.array_equal(picture[5, 5], picture[5, 25])
    hsv = cv2.cvtColor(picture, cv2.COLOR_RGB2HSV)
    assert hsv[5, 5, 0] == 0 and hsv[5, 25, 0] == 45  # hue = angle/2: 0 deg and 90 deg
    onset = np.full((32, 32, 3), 200, np.uint8)
    blended = render_flow(flow, onset, blend=0.5)
    assert not np.array_equal(blended, picture)


def test_tvl1_without_contrib_is_a_clear_error():
    if hasattr(cv2, "optflow"):
        pytest.skip("opencv-contrib is installed")
    with pytest.raises(MevqaError, match="opencv-contrib-python-headless"):
        compute_flow(textured(), textured(), "tvl1")


def test_sampling_and_sample_fps():
    assert sample_uniform(list(range(46, 87)), 5) == [46, 56, 66, 76, 86]
    assert sample_uniform([1, 2, 3], 8) == [1, 2, 3]
    assert sample_fps([46, 56, 66, 76, 86], 200.0) == pytest.approx(20.0)
    assert sample_fps([7], 30.0) == 30.0


def write_clip(folder, count=10, apex_at=6, pattern="img{}.jpg", start=46):
    folder.mkdir(parents=True, exist_ok=True)
    base = textured(72, 96)
    for i in range(count):
        shift = 4.0 * (1 - abs(i - apex_at) / apex_at) if i <= 2 * apex_at else 0
        cv2.imwrite(str(folder / pattern.format(start + i)), cv2.cvtColor(shifted(base, 0, shift), cv2.COLOR_GRAY2BGR))
    return folder


def test_estimate_apex_max_diff_and_midpoint(tmp_path):
    clip = read_clip(write_clip(tmp_path / "c", count=12, apex_at=7))
    assert estimate_apex(clip, 46, 57, "max_diff") == (53, "max_diff")
    assert estimate_apex(clip, 46, 57, "midpoint") == (51, "midpoint")


def test_build_media_writes_every_mode_and_resumes(tmp_path):
    clip = read_clip(write_clip(tmp_path / "frames"))
    out = tmp_path / "OUT" / "media" / "casme2" / "sub01_EP02_01f"
    span, every = Span(46, 52, 55, "annotated"), settings(["video", "oao", "flow"], num_frames=4, size=64)
    media = build_media(clip, span, every, out, rel_to=tmp_path / "OUT", fps=200.0)
    assert media["video"]["frames"][0] == "media/casme2/sub01_EP02_01f/video/00.jpg"
    assert media["video"]["frame_numbers"] == [46, 49, 52, 55]
    assert media["video"]["sample_fps"] == pytest.approx(200 * 3 / 9)
    assert media["oao"]["frame_numbers"] == [46, 52, 55]
    assert media["flow"]["image"] == "media/casme2/sub01_EP02_01f/flow.jpg"
    arrays = np.load(tmp_path / "OUT" / media["flow"]["arrays"])
    assert set(arrays.files) == {"u", "v", "magnitude"} and arrays["u"].shape == (48, 64)
    for path in media["video"]["frames"] + media["oao"]["frames"] + [media["flow"]["image"]]:
        image = read_frame(tmp_path / "OUT" / path)
        assert image.shape == (48, 64, 3)
    stamp = (out / "flow.jpg").stat().st_mtime_ns
    assert media["settings"] == {"frames": 4, "size": 64, "flow": "farneback", "head_motion": "nose", "blend": 0.0,
                                 "face_crop": False}
    again = build_media(clip, span, every, out, rel_to=tmp_path / "OUT", fps=200.0)
    assert again == media and (out / "flow.jpg").stat().st_mtime_ns == stamp  # reused, not rewritten
    changed = build_media(clip, span, settings(["video"], num_frames=3, size=64), out, rel_to=tmp_path / "OUT",
                          fps=200.0)
    assert changed["video"]["frame_numbers"] == [46, 50, 55] and "flow" not in changed
    assert json.loads((out / "media.json").read_text())["media"] == changed


def test_build_media_bad_input(tmp_path):
    clip = read_clip(write_clip(tmp_path / "frames"))
    oao = settings(["oao"])
    with pytest.raises(MevqaError, match="apex 70 outside the clip 46..55"):
        build_media(clip, Span(46, 70, 55, "annotated"), oao, tmp_path / "o", fps=200.0)
    (tmp_path / "frames" / "img50.jpg").unlink()
    with pytest.raises(MevqaError, match="apex frame 50 missing in .*frames"):
        build_media(read_clip(tmp_path / "frames"), Span(46, 50, 55, "annotated"), oao, tmp_path / "o")
    with pytest.raises(MevqaError, match="unknown input mode"):
        settings(["audio"])
    with pytest.raises(MevqaError, match="blend weight must be between 0 and 1, got 1.5"):
        settings(["flow"], blend=1.5)
    with pytest.raises(MevqaError, match="blend weight must be between 0 and 1, got nan"):
        settings(["flow"], blend=float("nan"))
    with pytest.raises(MevqaError, match="image size must be a positive number of pixels"):
        settings(["oao"], size=-1)
    with pytest.raises(MevqaError, match="frame rate must be a positive number, got -200.0"):
        build_media(clip, Span(46, 52, 55, "annotated"), settings(["video"]), tmp_path / "o", fps=-200.0)
    with pytest.raises(MevqaError, match="frame rate must be a positive number, got inf"):
        build_media(clip, Span(46, 52, 55, "annotated"), settings(["video"]), tmp_path / "o", fps=float("inf"))
    assert not (tmp_path / "o").exists()


def test_resolve_span_is_the_one_set_of_rules(tmp_path):
    clip = read_clip(write_clip(tmp_path / "c", count=12, apex_at=7))  # frames 46..57, most different at 53
    assert resolve_span(clip) == Span(46, 53, 57, "max_diff")
    assert resolve_span(clip, 47, None, 56, missing_apex="midpoint") == Span(47, 51, 56, "midpoint")
    assert resolve_span(clip, 46, 50, 55) == Span(46, 50, 55, "annotated")
    with pytest.raises(MevqaError, match=r"^onset 55 is after offset 46$"):
        resolve_span(clip, 55, None, 46)
    with pytest.raises(MevqaError, match=r"^apex 70 outside the clip 46..55 \(hint\)$"):
        resolve_span(clip, 46, 70, 55, hint=" (hint)")
    assert resolve_span(clip, 46, 70, 57, bad_apex="estimate") == Span(46, 53, 57, "max_diff")
    with pytest.raises(MevqaError, match=r"^offset frame 99 missing in .*c \(the clip has frames 46..57, 12 in all\)"):
        resolve_span(clip, 46, None, 99)
    # without the frames (a build without inputs): only what the numbers tell
    assert resolve_span(None, 10, None, 20, missing_apex="midpoint") == Span(10, 15, 20, "midpoint")
    assert resolve_span(None, 10, None, 20) == Span(10, None, 20, None)
    assert resolve_span(None, 10, 12, 20) == Span(10, 12, 20, "annotated")
    with pytest.raises(MevqaError, match="onset 30 is after offset 20"):
        resolve_span(None, 30, None, 20)


def test_media_settings_record_uses_the_build_data_option_names():
    default = MediaSettings()
    assert default.record() == {"frames": 8, "size": 448, "flow": "farneback", "head_motion": "nose", "blend": 0.0,
                                "face_crop": False}
    tie = MediaSettings.from_record({"head_motion": "median", "blend": 0.5, "size": 0})
    assert (tie.head_motion, tie.blend, tie.size, tie.num_frames) == ("median", 0.5, None, 8)
    assert MediaSettings.from_record(tie.record(), modes=("oao",)) == MediaSettings(("oao",), size=None,
                                                                                   head_motion="median", blend=0.5)
    cropped = MediaSettings(face_model="yunet.onnx")
    assert cropped.face_crop and cropped.record()["face_model"] == "yunet.onnx"
    with pytest.raises(MevqaError, match=r"^cfg.yaml: unknown media setting\(s\) flow_method; expected some of frames"):
        MediaSettings.from_record({"flow_method": "farneback"}, where="cfg.yaml")
    with pytest.raises(MevqaError, match=r"^cfg.yaml: the number of video frames must be positive, got 2.5"):
        MediaSettings.from_record({"frames": 2.5}, where="cfg.yaml")
    with pytest.raises(MevqaError, match="face_crop must be true or false, got 'yes'"):
        MediaSettings.from_record({"face_crop": "yes"})
    with pytest.raises(MevqaError, match="expected a mapping of build-data options"):
        MediaSettings.from_record(["frames", 8])


@pytest.mark.parametrize("suffix, cut", [(".jpg", 0.9), (".jpg", 0.5), (".png", 0.95), (".bmp", 0.8)])
def test_truncated_frames_are_refused_not_filled(tmp_path, suffix, cut):
    """A file cut short (a broken copy) would decode with its missing part filled grey; it is an error instead,
    wherever frames are read."""
    folder = write_clip(tmp_path / "c", count=6, apex_at=3, pattern="img{}" + suffix)
    victim = folder / f"img48{suffix}"
    data = victim.read_bytes()
    victim.write_bytes(data[:int(len(data) * cut)])
    clip = read_clip(folder)
    message = rf"img48\{suffix}: unreadable image \(truncated (JPEG|PNG|BMP)"
    with pytest.raises(MevqaError, match=message):
        read_frame(victim)
    with pytest.raises(MevqaError, match=message):
        estimate_apex(clip, 46, 51)
    with pytest.raises(MevqaError, match=message):
        build_media(clip, Span(46, 48, 51, "annotated"), settings(["oao"]), tmp_path / "o")
    assert not (tmp_path / "o" / "apex.jpg").exists()


def test_a_video_is_decoded_once_per_clip(tmp_path, monkeypatch):
    """Apex estimate, face box and inputs all read the frames of one decoding pass."""
    from mevqa.media import clips

    path = write_video_file(tmp_path / "clip.mp4", 12)
    passes = []
    decode = clips._decode_video
    monkeypatch.setattr(clips, "_decode_video", lambda *a: passes.append(1) or decode(*a))
    clip = read_clip(path)
    span = resolve_span(clip)
    build_media(clip, span, settings(["video", "oao", "flow"], num_frames=4, face_crop=True), tmp_path / "o")
    assert len(passes) == 1


def test_media_of_another_copy_of_a_clip_is_not_reused(tmp_path):
    """CASME II ships raw and Cropped/ frames with the same numbers: built into one folder, each gets its own."""
    raw = read_clip(write_clip(tmp_path / "raw"))
    cropped = read_clip(write_clip(tmp_path / "Cropped", pattern="reg_img{}.jpg"))
    for path in cropped.paths.values():  # a different picture, same frame numbers
        cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    out = tmp_path / "media"
    build_media(raw, Span(46, 52, 55, "annotated"), settings(["oao"], size=None), out)
    first = read_frame(out / "apex.jpg")
    build_media(cropped, Span(46, 52, 55, "annotated"), settings(["oao"], size=None), out)
    second = read_frame(out / "apex.jpg")
    assert np.abs(first.astype(int) + second.astype(int) - 255).mean() < 3  # the inverted picture was written


def test_a_rebuild_stopped_half_way_never_hands_out_the_old_record(tmp_path):
    """Files of other settings overwrite the old ones before the new record is written: a build stopped in between
    (here: a file where the video folder goes) must leave no record, so a later build with the old settings
    rebuilds instead of taking the old record over the new files."""
    clip = read_clip(write_clip(tmp_path / "frames"))
    span, out = Span(46, 52, 55, "annotated"), tmp_path / "media"
    build_media(clip, span, settings(["oao"], size=64), out)
    (out / "video").write_text("in the way")
    with pytest.raises(MevqaError, match="video.*is a file"):
        build_media(clip, span, settings(["oao", "video"], size=32), out, fps=200.0)
    assert read_frame(out / "apex.jpg").shape == (24, 32, 3) and not (out / "media.json").exists()
    build_media(clip, span, settings(["oao"], size=64), out)
    assert read_frame(out / "apex.jpg").shape == (48, 64, 3)


def test_face_crop_uses_one_box_and_falls_back_to_centre_square(tmp_path):
    clip = read_clip(write_clip(tmp_path / "frames"))
    assert detect_face_box(clip.load([46])[46]) is None  # a texture has no face: fallback
    media = build_media(clip, Span(46, 52, 55, "annotated"), settings(["oao"], face_crop=True, size=None),
                        tmp_path / "o", fps=200.0)
    assert media["face_crop"] == {"box": [12, 0, 72, 72], "detector": "centre"}
    assert read_frame(tmp_path / "o" / "apex.jpg").shape == (72, 72, 3)


def test_option_defaults_come_from_media_settings():
    """build-data's options default to the dataclass; answer/predict's default to None (the model decides)."""
    import argparse

    from mevqa.media import add_media_arguments, given_media_options

    build = argparse.ArgumentParser()
    add_media_arguments(build)
    assert MediaSettings.from_record(given_media_options(build.parse_args([]))) == MediaSettings()
    assert given_media_options(build.parse_args(["--blend", "0.5", "--flow", "tvl1"]))["flow"] == "tvl1"
    inference = argparse.ArgumentParser()
    add_media_arguments(inference, as_trained=True)
    assert given_media_options(inference.parse_args([])) == {}
    assert given_media_options(inference.parse_args(["--no-face-crop"])) == {"face_crop": False}
