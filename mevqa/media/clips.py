"""Reading clips: a folder of numbered frames or a video file, decoded strictly.

- Frames are named by number in every dataset (``img46.jpg``, ``006_05562.jpg``, ``reg_image000123.bmp``,
  ``1568.jpg``): the frame number is the last run of digits in the file name, sorted numerically. Non-image files
  (``Desktop - Shortcut.lnk``) are ignored.
- Every frame comes back as an RGB ``uint8`` array with 3 channels (grayscale SAMM frames are repeated), or grey
  when asked for.
- Only the frames an input needs are decoded. A JPEG larger than needed is decoded at 1/2, 1/4 or 1/8 scale by the
  codec itself (``cv2.IMREAD_REDUCED_*``), which is several times faster than decoding in full and resizing.
- A damaged file is an error, never a frame: a JPEG without its end-of-image marker, a PNG without its end chunk or
  a BMP shorter than its header says is refused before decoding (a decoder would fill the missing part with grey).
- A video file (mp4/avi/..., decoding on several threads) is decoded once per clip: the frames between the clip's
  onset and offset (:meth:`Clip.hold`) are kept in memory after the first pass, so estimating the apex, detecting the
  face and writing the inputs read the same decoded frames.
- Two libraries read video files (:func:`video_backend`): PyAV, always installed, and decord (``pip install
  "mevqa[decord]"``, x86-64 wheels only), which reads mp4 and avi when it is installed. Both give the same RGB frames
  bit for bit (``tests/test_video_backends.py``); decord seeks to the frames asked for where PyAV decodes every frame
  up to the last one, which is several times faster when every frame is a key frame
  (``benchmarks/video_decode.py``). ``MEVQA_VIDEO_BACKEND=pyav|decord`` chooses one for every video file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import av
import cv2
import numpy as np
from PIL import Image

from mevqa.errors import MevqaError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
VIDEO_BACKENDS = ("pyav", "decord")
BACKEND_VARIABLE = "MEVQA_VIDEO_BACKEND"
DECORD_SUFFIXES = {".mp4", ".avi"}  # read by decord when it is installed (the containers its frames are tested on)
# decord fills a frame it cannot decode with its neighbour unless the count of such frames passes ``fault_tol``; a
# fraction this small of the frame count is under one frame, so the first filled frame is an error.
_DECORD_FAULT_TOL = "1e-9"
# decord's C++ errors start with "[hh:mm:ss] source/file.cc:123: ", sometimes twice.
_DECORD_LOG_PREFIX = re.compile(r"^(\[\d\d:\d\d:\d\d\] \S+:\d+: )+")
_DIGITS = re.compile(r"(\d+)")
_DECODE_FLAGS = {  # (grey, reduce) -> OpenCV decode flag
    (False, 1): cv2.IMREAD_COLOR, (False, 2): cv2.IMREAD_REDUCED_COLOR_2, (False, 4): cv2.IMREAD_REDUCED_COLOR_4,
    (False, 8): cv2.IMREAD_REDUCED_COLOR_8, (True, 1): cv2.IMREAD_GRAYSCALE, (True, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (True, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4, (True, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def frame_number(path: str | Path) -> int | None:
    """The frame number in a file name: the last run of digits of its stem (``006_05562.jpg`` -> 5562)."""
    runs = _DIGITS.findall(Path(path).stem)
    return int(runs[-1]) if runs else None


def list_frames(folder: str | Path) -> list[tuple[int, Path]]:
    """``(number, path)`` for every image in ``folder``, sorted by number, whatever the padding."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MevqaError(f"{folder}: clip folder not found")
    frames: dict[int, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        number = frame_number(path)
        if number is None:
            continue
        if number in frames:
            raise MevqaError(f"{folder}: two frames numbered {number} ({frames[number].name}, {path.name})")
        frames[number] = path
    return sorted(frames.items())


def damage(data: bytes) -> str | None:
    """What is wrong with an image file's bytes, judged from its own structure (None when nothing is seen):
    empty, a JPEG without its end-of-image marker, a PNG without its IEND chunk, a BMP shorter than its header."""
    if not data:
        return "empty file"
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return "truncated JPEG: no end-of-image marker"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and not data.endswith(b"IEND\xaeB`\x82"):
        return "truncated PNG: no IEND chunk"
    if data[:2] == b"BM" and len(data) >= 6 and int.from_bytes(data[2:6], "little") > len(data):
        return f"truncated BMP: {len(data)} of {int.from_bytes(data[2:6], 'little')} bytes"
    return None


def decode_image(path: str | Path, reduce: int = 1, gray: bool = False) -> np.ndarray:
    """An image file as RGB (H, W, 3) or grey (H, W) uint8; ``reduce`` in 1/2/4/8 decodes at that fraction of the
    size. A damaged or unreadable file raises :class:`MevqaError` naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MevqaError(f"{path}: unreadable image ({exc.strerror})") from None
    problem = damage(data)
    if problem:
        raise MevqaError(f"{path}: unreadable image ({problem})")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _DECODE_FLAGS[gray, reduce])
    if image is None:
        raise MevqaError(f"{path}: unreadable image")
    return image if gray else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame(path: str | Path, reduce: int = 1) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3)."""
    return decode_image(path, reduce)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image, from its header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as exc:
        raise MevqaError(f"{path}: unreadable image ({exc})") from None


@dataclass
class Clip:
    """The frames of one clip: a folder of numbered images or a video file (frames numbered from 0).

    ``load(numbers)`` decodes only the frames asked for. ``fps`` is the video's own rate (None for folders).
    """

    source: Path
    frame_numbers: list[int]
    fps: float | None = None
    paths: dict[int, Path] = field(default_factory=dict, repr=False)
    size: tuple[int, int] | None = None                     # (width, height) of a video's frames
    backend: str | None = None                              # the library that reads a video ("pyav", "decord")

    numbers: set[int] = field(init=False, repr=False)
    _held: tuple[int, int] | None = field(default=None, init=False, repr=False)
    _decoded: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        self.numbers = set(self.frame_numbers)

    @property
    def is_video(self) -> bool:
        return not self.paths

    def check_has(self, number: int, what: str) -> None:
        if number not in self.numbers:
            raise MevqaError(f"{what} frame {number} missing in {self.source} (the clip has frames "
                             f"{self.frame_numbers[0]}..{self.frame_numbers[-1]}, {len(self.frame_numbers)} in all)")

    def between(self, first: int, last: int) -> list[int]:
        return [n for n in self.frame_numbers if first <= n <= last]

    def hold(self, first: int, last: int) -> None:
        """Keep a video's frames ``first..last`` in memory once decoded, so that one pass serves every later
        :meth:`load` of them (a no-op for frame folders, whose frames are read one file at a time)."""
        self._held = (first, last)

    def load(self, numbers: Iterable[int], reduce: int = 1, gray: bool = False) -> dict[int, np.ndarray]:
        wanted = sorted(set(numbers))
        for number in wanted:
            self.check_has(number, "requested")
        if not self.is_video:
            return {n: decode_image(self.paths[n], reduce, gray) for n in wanted}
        out = {}
        for n, image in self._video_frames(wanted).items():
            if reduce > 1:
                image = cv2.resize(image, (max(1, image.shape[1] // reduce), max(1, image.shape[0] // reduce)),
                                   interpolation=cv2.INTER_AREA)
            out[n] = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if gray else image
        return out

    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the clip's frames."""
        if self.is_video:
            return self.size
        return image_size(self.paths[self.frame_numbers[0]])

    def _video_frames(self, wanted: list[int]) -> dict[int, np.ndarray]:
        missing = [n for n in wanted if n not in self._decoded]
        if missing:
            keep = set(missing)
            if self._held is not None:  # one pass decodes the whole held range
                keep |= set(self.between(*self._held))
            self._decoded.update(_decode_video(self.source, keep, self.backend or "pyav"))
        out = {n: self._decoded[n] for n in wanted}
        if self._held is None:
            self._decoded.clear()
        else:
            for n in [n for n in self._decoded if not self._held[0] <= n <= self._held[1]]:
                del self._decoded[n]
        return out


def video_backend(path: str | Path) -> str:
    """The library that reads the video file ``path``: ``MEVQA_VIDEO_BACKEND`` when it is set (``pyav`` or
    ``decord``, for every video file), else decord for mp4/avi when it is installed, else PyAV."""
    chosen = os.environ.get(BACKEND_VARIABLE, "")
    if chosen:
        if chosen not in VIDEO_BACKENDS:
            raise MevqaError(f"{BACKEND_VARIABLE}={chosen!r}: expected one of {', '.join(VIDEO_BACKENDS)}")
        if chosen == "decord" and _decord() is None:
            raise MevqaError(f"{BACKEND_VARIABLE}=decord, but decord is not installed: pip install 'mevqa[decord]' "
                             "(wheels for x86-64 only)")
        return chosen
    return "decord" if Path(path).suffix.lower() in DECORD_SUFFIXES and _decord() is not None else "pyav"


def read_clip(path: str | Path) -> Clip:
    """A clip from a folder of numbered frames or a video file (mp4/avi/..., read by :func:`video_backend`'s
    library)."""
    path = Path(path)
    if path.is_dir():
        frames = list_frames(path)
        if not frames:
            raise MevqaError(f"{path}: no image frames in the clip folder")
        return Clip(path, [n for n, _ in frames], None, dict(frames))
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        backend = video_backend(path)
        count, fps, size = _probe_video(path, backend)
        log.debug("%s: %d frames at %s fps, %dx%d, read with %s", path, count, fps, *size, backend)
        return Clip(path, list(range(count)), fps, size=size, backend=backend)
    if path.is_file():
        raise MevqaError(f"{path}: not a frame folder or a video file ({', '.join(sorted(VIDEO_SUFFIXES))})")
    raise MevqaError(f"{path}: clip folder or video file not found")


def _probe_video(path: Path, backend: str = "pyav") -> tuple[int, float | None, tuple[int, int]]:
    """(frame count, frames per second, (width, height)) of a video file.

    The container's header is read by PyAV for both backends: it gives the frame size (decord has no getter for it
    short of decoding a frame) and refuses a file FFmpeg cannot open before decord sees it. PyAV takes the count the
    header declares, decoding the stream only where none is declared; decord counts the packets it indexes, and a
    count that differs from a declared one (a cut-off file) is an error.
    """
    declared, fps, size = _read_header(path)
    if backend == "decord":
        with _decord_errors(path):
            reader = _open_decord(path)
            count, decord_fps = len(reader), float(reader.get_avg_fps())
        if declared and declared != count:
            raise MevqaError(f"{path}: damaged video (its header declares {declared} frames, {count} are stored)")
        if math.isfinite(decord_fps) and decord_fps > 0:
            fps = decord_fps
    else:
        count = declared or _count_frames(path)
    if not count or not all(size):
        raise MevqaError(f"{path}: video has no frames")
    return count, fps, size


def _read_header(path: Path) -> tuple[int, float | None, tuple[int, int]]:
    """(declared frame count, or 0 where the container declares none; fps; (width, height)), by PyAV."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or None
            return stream.frames, fps, (stream.codec_context.width, stream.codec_context.height)
    except (av.error.FFmpegError, IndexError) as exc:
        raise MevqaError(f"{path}: unreadable video ({exc})") from None


def _count_frames(path: Path) -> int:
    """The frame count of a container that does not store it, by decoding every frame with PyAV."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return sum(1 for _ in container.decode(stream))
    except av.error.FFmpegError as exc:
        raise MevqaError(f"{path}: unreadable video ({exc})") from None


def _decode_video(path: Path, wanted: set[int], backend: str = "pyav") -> dict[int, np.ndarray]:
    """Decode the frames ``wanted`` (indices from 0) with ``backend``'s library: RGB uint8 (H, W, 3) each."""
    log.debug("%s: decoding %d frames with %s", path, len(wanted), backend)
    if backend == "decord":
        return _decode_video_decord(path, wanted)
    return _decode_video_pyav(path, wanted)


def _decode_video_pyav(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """PyAV decodes in one pass from the start, stopping after the last frame wanted."""
    last, out = max(wanted), {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame- and slice-threaded decoding
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    out[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
    except av.error.FFmpegError as exc:
        raise MevqaError(f"{path}: unreadable video ({exc})") from None
    missing = wanted - out.keys()
    if missing:
        raise MevqaError(f"{path}: video ends before frame {min(missing)}")
    return out


def _decode_video_decord(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """decord seeks to the key frame before each frame wanted (unless it is already there) and decodes from it."""
    indices = sorted(wanted)
    with _decord_errors(path):
        reader = _open_decord(path)
        beyond = [n for n in indices if n >= len(reader)]
        if beyond:
            raise MevqaError(f"{path}: video ends before frame {beyond[0]}")
        batch = reader.get_batch(indices).asnumpy()
    return {n: batch[i] for i, n in enumerate(indices)}


@functools.cache
def _decord():
    """The decord module, or None when it is not installed."""
    try:
        import decord  # optional backend (pip install decord)

    except ImportError:
        return None
    except OSError as exc:  # installed, but its library does not load
        raise MevqaError(f"decord is installed but does not load ({exc}); reinstall it, or set "
                         f"{BACKEND_VARIABLE}=pyav") from None
    # Its own copy of FFmpeg would print every concealed decoding error to stderr (PyAV's is silent by default);
    # the errors that matter reach mevqa as exceptions.
    decord.logging.set_level(decord.logging.QUIET)
    return decord


def _open_decord(path: Path):
    decord = _decord()
    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0, fault_tol=_DECORD_FAULT_TOL)


@contextlib.contextmanager
def _decord_errors(path: Path):
    """decord's exceptions (C++ errors with their source locations, over several lines) as one-line errors."""
    decord = _decord()
    try:
        yield
    except (decord.DECORDError, decord.DECORDLimitReachedError, RuntimeError, AssertionError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        message = _DECORD_LOG_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
        raise MevqaError(f"{path}: unreadable video (decord: {message})") from None
