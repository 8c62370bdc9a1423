"""Video files read by PyAV or decord: the same frames, count and rate; the choice between them; damaged files.

decord is an optional extra (x86-64 wheels only); the tests that need it are skipped where it is not installed, and
one test hides it to check what an install without it does.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from mevqa.cli import main
from mevqa.errors import MevqaError
from mevqa.media import read_clip

needs_decord = pytest.mark.skipif(importlib.util.find_spec("decord") is None,
                                  reason="decord is not installed (pip install 'mevqa[decord]', x86-64 only)")

WIDTH, HEIGHT, COUNT, FPS = 128, 96, 30, 25


def moving_texture(index: int) -> np.ndarray:
    """Frame ``index`` of a smooth colour texture drifting right and down, which inter-frame codecs predict from
    the frames before (so P and B frames carry real motion, not copies)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (HEIGHT // 4, WIDTH // 4, 3), dtype=np.uint8)
    big = cv2.resize(small, (WIDTH * 2, HEIGHT * 2), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(big[index: index + HEIGHT, 2 * index: 2 * index + WIDTH])


def write_video(path, codec: str, gop: int | None = None, options: dict | None = None):
    """A COUNT-frame video at FPS; ``gop=1`` makes every frame a key frame. Returns the path."""
    import av

    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        for index in range(COUNT):
            for packet in stream.encode(av.VideoFrame.from_ndarray(moving_texture(index), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def key_frames(path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(packet.is_keyframe for packet in container.demux(video=0) if packet.size)


VIDEOS = {  # name: (file name, codec, GOP size: 1 for all key frames, None for the encoder's default)
    "mpeg4-intra": ("intra.mp4", "mpeg4", 1),         # every frame a key frame
    "h264-intra": ("intra264.mp4", "libx264", 1),
    "h264-gop": ("gop.mp4", "libx264", None),          # x264's defaults: a key frame, then P and B frames
    "mpeg4-gop-avi": ("gop.avi", "mpeg4", 12),          # avi, a key frame every 12
}


def read_all(path, backend, monkeypatch):
    monkeypatch.setenv("MEVQA_VIDEO_BACKEND", backend)
    clip = read_clip(path)
    assert clip.backend == backend
    return clip, clip.load(clip.frame_numbers)


@needs_decord
@pytest.mark.parametrize("name", list(VIDEOS))
def test_decord_gives_pyavs_frames_bit_for_bit(tmp_path, monkeypatch, name):
    file_name, codec, gop = VIDEOS[name]
    path = write_video(tmp_path / file_name, codec, gop)
    keys = key_frames(path)
    assert (keys == COUNT) if gop == 1 else (1 <= keys < COUNT // 2)  # the file is what the case says it is

    pyav_clip, pyav_frames = read_all(path, "pyav", monkeypatch)
    decord_clip, decord_frames = read_all(path, "decord", monkeypatch)
    assert decord_clip.frame_numbers == pyav_clip.frame_numbers == list(range(COUNT))
    assert decord_clip.fps == pyav_clip.fps == pytest.approx(FPS)
    assert decord_clip.size == pyav_clip.size == (WIDTH, HEIGHT)
    for index in range(COUNT):
        assert decord_frames[index].dtype == np.uint8 and decord_frames[index].shape == (HEIGHT, WIDTH, 3)
        assert np.array_equal(decord_frames[index], pyav_frames[index]), f"frame {index} differs"
    # the frames are the video's, in order: each is nearer to the picture encoded at its index than to its neighbours'
    for index in (0, 10, COUNT - 1):
        errors = {n: np.abs(pyav_frames[index].astype(int) - moving_texture(n)).mean()
                  for n in range(max(0, index - 3), min(COUNT, index + 4))}
        assert min(errors, key=errors.get) == index, errors

    # frames asked for one by one out of order, which decord reaches by seeking, are the same frames
    sparse_clip = read_clip(path)
    assert sparse_clip.backend == "decord"
    sparse = sparse_clip.load([COUNT - 1, 13, 2])
    assert all(np.array_equal(sparse[n], pyav_frames[n]) for n in (2, 13, COUNT - 1))


@needs_decord
def test_decord_reads_mp4_and_avi_by_default_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MEVQA_VIDEO_BACKEND", raising=False)
    mp4 = write_video(tmp_path / "clip.mp4", "mpeg4", 1)
    avi = write_video(tmp_path / "clip.avi", "mpeg4", 1)
    mkv = write_video(tmp_path / "clip.mkv", "mpeg4", 1)
    with caplog.at_level(logging.DEBUG, logger="mevqa.media.clips"):
        clip = read_clip(mp4)
        clip.load([3])
    assert clip.backend == "decord"
    assert f"{mp4}: {COUNT} frames at {float(FPS)} fps, {WIDTH}x{HEIGHT}, read with decord" in caplog.messages
    assert f"{mp4}: decoding 1 frames with decord" in caplog.messages
    assert read_clip(avi).backend == "decord"
    assert read_clip(mkv).backend == "pyav"  # other containers stay with PyAV unless asked
    monkeypatch.setenv("MEVQA_VIDEO_BACKEND", "pyav")
    assert read_clip(mp4).backend == "pyav"
    monkeypatch.setenv("MEVQA_VIDEO_BACKEND", "decord")
    assert read_clip(mkv).backend == "decord"  # the variable covers every video file
    assert np.array_equal(read_clip(mkv).load([5])[5], read_clip(mp4).load([5])[5])
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "img1.jpg"), moving_texture(0))
    assert read_clip(folder).backend is None  # a folder of frames is read by OpenCV, whatever the variable


def test_an_unknown_backend_is_a_one_line_error(tmp_path, monkeypatch, capfd):
    path = write_video(tmp_path / "clip.mp4", "mpeg4", 1)
    for value in ("ffmpeg", "PyAV", "decord "):
        monkeypatch.setenv("MEVQA_VIDEO_BACKEND", value)
        with pytest.raises(MevqaError) as caught:
            read_clip(path)
        assert str(caught.value) == f"MEVQA_VIDEO_BACKEND={value!r}: expected one of pyav, decord"
    monkeypatch.setenv("MEVQA_VIDEO_BACKEND", "ffmpeg")
    capfd.readouterr()
    assert main(["spot", "--video", str(path), "--method", "flow"]) == 2
    assert capfd.readouterr().err.splitlines() == [
        "mevqa spot: error: MEVQA_VIDEO_BACKEND='ffmpeg': expected one of pyav, decord"]


# A finder ahead of all others that reports decord as not installed, as on a machine without the extra.
WITHOUT_DECORD = """
import importlib.abc, os, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'decord':
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from mevqa.errors import MevqaError
from mevqa.media import read_clip
os.environ.pop('MEVQA_VIDEO_BACKEND', None)
clip = read_clip(sys.argv[1])
print(clip.backend, len(clip.frame_numbers), int(clip.load([4])[4].mean()))
os.environ['MEVQA_VIDEO_BACKEND'] = 'decord'
try:
    read_clip(sys.argv[1])
except MevqaError as exc:
    print(exc)
"""


def test_without_decord_pyav_reads_and_asking_for_decord_is_an_error(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "mpeg4", 1)
    done = subprocess.run([sys.executable, "-c", WITHOUT_DECORD, str(path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, done.stderr
    backend, count, mean = done.stdout.splitlines()[0].split()
    assert (backend, int(count)) == ("pyav", COUNT)
    assert abs(int(mean) - int(moving_texture(4).mean())) < 8
    assert done.stdout.splitlines()[1:] == [
        "MEVQA_VIDEO_BACKEND=decord, but decord is not installed: pip install 'mevqa[decord]' (wheels for x86-64 only)"]


def overwrite_middle(path):
    """Replace the middle third of the file with random bytes (a damaged copy)."""
    data = bytearray(path.read_bytes())
    start, stop = len(data) // 3, 2 * len(data) // 3
    data[start:stop] = np.random.default_rng(1).integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGED = {  # name: (file name, codec, gop, muxer options, damage, the error each backend gives)
    "bytes overwritten": ("clip.mp4", "mpeg4", 1, None, overwrite_middle,
                          {"pyav": "unreadable video (", "decord": "unreadable video (decord: "}),
    # moov first (faststart): the header lists every frame, the data of the second half is gone
    "mp4 cut short": ("clip.mp4", "mpeg4", 1, {"movflags": "faststart"}, cut_in_half,
                      {"pyav": "video ends before frame ", "decord": "unreadable video (decord: "}),
    "avi cut short": ("clip.avi", "mpeg4", 12, None, cut_in_half,
                      {"pyav": "video ends before frame ",
                       "decord": f"damaged video (its header declares {COUNT} frames, "}),
    "mp4 without its index": ("clip.mp4", "mpeg4", 1, None, cut_in_half,  # moov last: nothing to open
                              {"pyav": "unreadable video (", "decord": "unreadable video ("}),
    "not a video": ("clip.mp4", None, None, None, None, {"pyav": "unreadable video (", "decord": "unreadable video ("}),
}


@pytest.mark.parametrize("backend", ["pyav", pytest.param("decord", marks=needs_decord)])
@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_video_is_a_one_line_error(tmp_path, monkeypatch, capfd, backend, name):
    file_name, codec, gop, options, damage, expected = DAMAGED[name]
    path = tmp_path / file_name
    if codec is None:
        path.write_text("not a video\n" * 100)
    else:
        write_video(path, codec, gop, options)
        damage(path)
    monkeypatch.setenv("MEVQA_VIDEO_BACKEND", backend)
    capfd.readouterr()
    with pytest.raises(MevqaError) as caught:
        clip = read_clip(path)
        clip.load(clip.frame_numbers)
    message = str(caught.value)
    assert message.startswith(f"{path}: {expected[backend]}"), message
    assert "\n" not in message
    assert capfd.readouterr().err == ""  # neither library's FFmpeg writes to the terminal


@pytest.mark.parametrize("backend", ["pyav", pytest.param("decord", marks=needs_decord)])
def test_the_command_line_reports_a_damaged_video_in_one_line(tmp_path, monkeypatch, capfd, backend):
    path = write_video(tmp_path / "clip.mp4", "mpeg4", 1)
    overwrite_middle(path)
    monkeypatch.setenv("MEVQA_VIDEO_BACKEND", backend)
    capfd.readouterr()
    assert main(["spot", "--video", str(path), "--method", "flow"]) == 2
    # stderr holds the spotter's progress bar (the damage is met part way) and then the error, nothing else
    lines = [line for line in capfd.readouterr().err.splitlines() if line and not line.startswith("flow clip.mp4: ")]
    assert len(lines) == 1 and lines[0].startswith(f"mevqa spot: error: {path}: unreadable video ("), lines
