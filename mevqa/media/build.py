"""Building a clip's model inputs: the settings (defined once), and :func:`build_media` with its per-clip cache.

:class:`MediaSettings` holds how inputs are built and is the only place their defaults live: ``mevqa build-data``,
``mevqa answer`` and ``mevqa predict`` take their options from it (:func:`add_media_arguments`), and its
:meth:`~MediaSettings.record`, keyed by the build-data option names (``frames``, ``size``, ``flow``,
``head_motion``, ``blend``, ``face_crop``, and ``face_model`` where given), is what ``OUT/build.json``, every row's
``media.settings`` and a trained model's ``train_config.yaml`` (``media_settings``) carry.

:func:`build_media` takes a clip, its resolved :class:`~mevqa.media.span.Span`, the settings and an output folder,
and writes there the sampled video frames (``video/00.jpg``...), ``onset.jpg``/``apex.jpg``/``offset.jpg``,
``flow.jpg`` and ``flow.npz``, as the settings' modes ask. ``media.json`` in the folder keeps the media dict under
a key of everything that decides it (settings, span, frame rate, the clip's source and frames), so a second call
with the same key returns it without decoding anything, and any change rebuilds.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from mevqa.errors import MevqaError
from mevqa.jsonl import atomic_path
from mevqa.media.clips import Clip, read_clip
from mevqa.media.face import centre_box, detect_face_box, face_detector_name
from mevqa.media.flow import (DEFAULT_FLOW_METHOD, DEFAULT_HEAD_MOTION, FLOW_METHODS, HEAD_MOTION, check_flow_method,
                              compute_flow, remove_head_motion, render_flow)
from mevqa.media.span import Span

log = logging.getLogger(__name__)

MODES = ("video", "oao", "flow")
JPEG_QUALITY = 95
CACHE = "media.json"


@dataclass
class MediaSettings:
    """How inputs are built (validated on creation). ``modes`` says which inputs are built; the other fields say
    how, and make up the settings record."""

    modes: tuple[str, ...] = MODES
    num_frames: int = 8                 # video frames sampled uniformly onset..offset
    size: int | None = 448              # longer side of the written images; None (or 0) keeps the source size
    flow_method: str = DEFAULT_FLOW_METHOD  # farneback | tvl1
    head_motion: str = DEFAULT_HEAD_MOTION  # nose | median | none
    blend: float = 0.0                  # weight of the grey onset frame under the flow colours
    face_crop: bool = False
    face_model: str | None = None       # YuNet .onnx; implies face_crop

    # field -> its build-data option name, which keys the settings record
    OPTIONS: ClassVar[dict[str, str]] = {"num_frames": "frames", "size": "size", "flow_method": "flow",
                                         "head_motion": "head_motion", "blend": "blend", "face_crop": "face_crop",
                                         "face_model": "face_model"}

    def __post_init__(self):
        self.modes = tuple(self.modes)
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise MevqaError(f"unknown input mode(s) {', '.join(unknown)}; expected some of {', '.join(MODES)}")
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise MevqaError(f"the number of video frames must be positive, got {self.num_frames}")
        if self.size == 0:
            self.size = None
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            raise MevqaError(f"the image size must be a positive number of pixels (0 keeps the source size), "
                             f"got {self.size}")
        if self.flow_method not in FLOW_METHODS:
            raise MevqaError(f"unknown flow method {self.flow_method!r}; expected one of {', '.join(FLOW_METHODS)}")
        if self.head_motion not in HEAD_MOTION:
            raise MevqaError(f"unknown head-motion region {self.head_motion!r}; "
                             f"expected one of {', '.join(HEAD_MOTION)}")
        if isinstance(self.blend, bool) or not isinstance(self.blend, (int, float)) \
                or not (math.isfinite(self.blend) and 0.0 <= self.blend <= 1.0):
            raise MevqaError(f"the flow blend weight must be between 0 and 1, got {self.blend}")
        self.blend = float(self.blend)
        if not isinstance(self.face_crop, bool):
            raise MevqaError(f"face_crop must be true or false, got {self.face_crop!r}")
        if self.face_model is not None:
            self.face_model = str(self.face_model)
            self.face_crop = True
        if "flow" in self.modes:
            check_flow_method(self.flow_method)

    def record(self) -> dict:
        """The settings keyed by the build-data option names (``face_model`` only where given)."""
        return {option: getattr(self, name) for name, option in self.OPTIONS.items()
                if name != "face_model" or self.face_model is not None}

    @classmethod
    def from_record(cls, record: dict, *, modes=MODES, where: str = "media settings") -> "MediaSettings":
        """Settings from a record (keys as :meth:`record`; a key left out takes its default); ``where`` names the
        record's file in errors."""
        if not isinstance(record, dict):
            raise MevqaError(f"{where}: expected a mapping of build-data options ({', '.join(cls.OPTIONS.values())}),"
                             f" got {type(record).__name__}")
        names = {option: name for name, option in cls.OPTIONS.items()}
        unknown = [key for key in record if key not in names]
        if unknown:
            raise MevqaError(f"{where}: unknown media setting(s) {', '.join(map(str, unknown))}; expected some of "
                             f"{', '.join(names)}")
        try:
            return cls(modes=modes, **{names[key]: value for key, value in record.items()})
        except MevqaError as exc:
            raise MevqaError(f"{where}: {exc}") from None

    def replace(self, **options) -> "MediaSettings":
        """A copy with some settings changed, given by their option names."""
        return MediaSettings.from_record({**self.record(), **options}, modes=self.modes)


def add_media_arguments(parser: argparse.ArgumentParser, *, as_trained: bool = False) -> None:
    """The media options (``--frames --size --flow --head-motion --blend --face-crop --face-model``), with their
    defaults from :class:`MediaSettings`. With ``as_trained`` (``answer``, ``predict``) an option left out is None,
    so that the model's recorded settings decide."""
    defaults = MediaSettings()

    def default(value):
        return None if as_trained else value

    def told(value) -> str:
        return f" (default: as the model was trained, else {value})" if as_trained else f" (default: {value})"

    group = parser.add_argument_group("how inputs are built (as mevqa build-data builds them)")
    group.add_argument("--frames", type=int, default=default(defaults.num_frames),
                       help="video frames sampled uniformly onset..offset" + told(defaults.num_frames))
    group.add_argument("--size", type=int, default=default(defaults.size),
                       help="longest side of written images in pixels (aspect kept, never enlarged); 0 keeps the "
                            "source size" + told(defaults.size))
    group.add_argument("--flow", choices=FLOW_METHODS, default=default(defaults.flow_method),
                       help="optical flow method; tvl1 needs opencv-contrib-python-headless"
                            + told(defaults.flow_method))
    group.add_argument("--head-motion", choices=HEAD_MOTION, default=default(defaults.head_motion),
                       help="flow of which region is subtracted to cancel head motion" + told(defaults.head_motion))
    group.add_argument("--blend", type=float, default=default(defaults.blend),
                       help="weight of the grey onset frame blended under the flow colours, 0..1 (TIE used 0.5)"
                            + told(defaults.blend))
    group.add_argument("--face-crop", action=argparse.BooleanOptionalAction, default=default(defaults.face_crop),
                       help="crop every frame to one face box found on the onset frame (YuNet with --face-model, "
                            "else OpenCV's Haar cascade where the build ships it, else the centred square)"
                            + told(defaults.face_crop))
    group.add_argument("--face-model", default=default(defaults.face_model),
                       help="YuNet face detector .onnx for --face-crop (OpenCV FaceDetectorYN)")


def parse_inputs(text: str) -> tuple[str, ...]:
    """``--inputs video,oao`` -> the input modes to build (``none`` or empty: none); argparse turns the error into a
    usage error naming the option (exit 2)."""
    if text.strip().lower() in ("", "none"):
        return ()
    modes = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown input mode(s) {', '.join(unknown)}; expected some of "
                                         f"{', '.join(MODES)} (or none)")
    return modes


def given_media_options(args: argparse.Namespace) -> dict:
    """The media options on ``args`` that have a value, keyed by option name."""
    return {option: getattr(args, option) for option in MediaSettings.OPTIONS.values()
            if getattr(args, option, None) is not None}


# --- sampling and sizes -----------------------------------------------------------------------------------------

def sample_uniform(numbers: list[int], count: int) -> list[int]:
    """``count`` frame numbers spread evenly over ``numbers`` (first and last included; all when fewer)."""
    if count <= 0:
        raise MevqaError(f"--frames must be positive, got {count}")
    if len(numbers) <= count:
        return list(numbers)
    picks = np.linspace(0, len(numbers) - 1, count).round().astype(int)
    return [numbers[i] for i in picks]


def sample_fps(frame_numbers: list[int], source_fps: float) -> float:
    """The true rate of sampled frames: ``source_fps * (n - 1) / (last - first)``."""
    span = frame_numbers[-1] - frame_numbers[0]
    return float(source_fps) if span <= 0 else float(source_fps) * (len(frame_numbers) - 1) / span


def output_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) with the longer side at most ``size`` (aspect kept, never enlarged); ``None``/0 keeps the
    frame's size."""
    if not size or max(width, height) <= size:
        return width, height
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _reduction(width: int, height: int, size: int | None) -> int:
    """The largest JPEG decode reduction (1, 2, 4, 8) that still leaves the longer side >= ``size``."""
    if not size:
        return 1
    reduce = 1
    while reduce < 8 and max(width, height) / (reduce * 2) >= size:
        reduce *= 2
    return reduce


# --- building ---------------------------------------------------------------------------------------------------

def build_media(clip: Clip | str | Path, span: Span, settings: MediaSettings, out_dir: str | Path, *,
                rel_to: str | Path | None = None, fps: float | None = None, timings: dict | None = None) -> dict:
    """Write the inputs of ``clip`` over ``span`` under ``out_dir`` and return the ``media`` dict (docs/design.md),
    paths relative to ``rel_to`` (default ``out_dir``), ``settings`` recorded as ``media["settings"]``.

    ``fps`` is the clip's frame rate (default: a video file's own); only the video input needs it. ``timings`` (if
    given) accumulates seconds spent under ``decode``, ``flow`` and ``write``.
    """
    clip = clip if isinstance(clip, Clip) else read_clip(clip)
    out_dir, timings = Path(out_dir), timings if timings is not None else {}
    rel_to = Path(rel_to) if rel_to is not None else out_dir
    fps = fps or clip.fps
    if fps is None and "video" in settings.modes:  # only sampled video frames are timed
        raise MevqaError(f"{clip.source}: the frame rate is unknown; give the source fps (the video input needs it)")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise MevqaError(f"{clip.source}: the frame rate must be a positive number, got {fps}")
    if span.apex is None or not span.onset <= span.apex <= span.offset:
        raise MevqaError(f"{clip.source}: apex {span.apex} outside the clip {span.onset}..{span.offset}")
    for number, what in ((span.onset, "onset"), (span.apex, "apex"), (span.offset, "offset")):
        clip.check_has(number, what)

    # The source is part of the key: another copy of the clip (CASME II's Cropped/ beside the raw frames) has the
    # same frame numbers, and its media must not be taken for this one's.
    key = {"settings": settings.record(), "modes": list(settings.modes), "span": dataclasses.asdict(span),
           "fps": fps, "source": str(Path(clip.source).resolve()),
           "frames": [clip.frame_numbers[0], clip.frame_numbers[-1], len(clip.frame_numbers)]}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()
    stored = _cached(out_dir, digest, rel_to)
    if stored is not None:
        return stored

    onset, apex, offset = span.onset, span.apex, span.offset
    video_numbers = sample_uniform(clip.between(onset, offset), settings.num_frames) \
        if "video" in settings.modes else []
    needed = set(video_numbers)
    if "oao" in settings.modes:
        needed |= {onset, apex, offset}
    if "flow" in settings.modes:
        needed |= {onset, apex}

    start = time.perf_counter()
    frames, box, detector = _load_frames(clip, needed, onset, settings)
    _add(timings, "decode", start)

    # The files are about to be overwritten: drop the old record first, so that a build stopped half-way can never
    # hand out the old record over a mixture of old and new files.
    try:
        (out_dir / CACHE).unlink(missing_ok=True)
    except OSError as exc:
        raise MevqaError(f"{out_dir / CACHE}: cannot replace the media record ({exc.strerror})") from None
    media: dict = {}
    files: list[Path] = []
    if "flow" in settings.modes:
        start = time.perf_counter()
        flow = remove_head_motion(compute_flow(frames[onset], frames[apex], settings.flow_method),
                                  settings.head_motion)
        picture = render_flow(flow, frames[onset], settings.blend)
        _add(timings, "flow", start)
        start = time.perf_counter()
        _write_image(out_dir / "flow.jpg", picture)
        with atomic_path(out_dir / "flow.npz") as tmp:
            with tmp.open("wb") as handle:
                np.savez(handle, u=flow[..., 0].astype(np.float16), v=flow[..., 1].astype(np.float16),
                         magnitude=np.hypot(flow[..., 0], flow[..., 1]).astype(np.float16))
        files += [out_dir / "flow.jpg", out_dir / "flow.npz"]
        media["flow"] = {"image": _rel(out_dir / "flow.jpg", rel_to), "arrays": _rel(out_dir / "flow.npz", rel_to),
                         "frame_numbers": [onset, apex], "method": settings.flow_method,
                         "head_motion": settings.head_motion}
        _add(timings, "write", start)
    start = time.perf_counter()
    if "oao" in settings.modes:
        names = []
        for name, number in (("onset", onset), ("apex", apex), ("offset", offset)):
            _write_image(out_dir / f"{name}.jpg", frames[number])
            files.append(out_dir / f"{name}.jpg")
            names.append(_rel(out_dir / f"{name}.jpg", rel_to))
        media["oao"] = {"frames": names, "frame_numbers": [onset, apex, offset], "apex_method": span.apex_method}
    if "video" in settings.modes:
        digits = max(2, len(str(len(video_numbers) - 1)))
        names = []
        for index, number in enumerate(video_numbers):
            path = out_dir / "video" / f"{index:0{digits}d}.jpg"
            _write_image(path, frames[number])
            files.append(path)
            names.append(_rel(path, rel_to))
        media["video"] = {"frames": names, "frame_numbers": video_numbers, "source_fps": float(fps),
                          "sample_fps": round(sample_fps(video_numbers, fps), 6)}
    if box is not None:
        media["face_crop"] = {"box": [int(v) for v in box], "detector": detector}
    media["settings"] = settings.record()
    with atomic_path(out_dir / CACHE) as tmp:
        tmp.write_text(json.dumps({"key": digest, "rel_to": _rel(out_dir, rel_to), "media": media,
                                   "files": [str(p.relative_to(out_dir)) for p in files]}), encoding="utf-8")
    _add(timings, "write", start)
    return media


def _cached(out_dir: Path, digest: str, rel_to: Path) -> dict | None:
    """The media dict kept in ``out_dir/media.json`` if it was built under ``digest`` and its files are all there."""
    stored = out_dir / CACHE
    if not stored.is_file():
        return None
    try:
        previous = json.loads(stored.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(previous, dict) or previous.get("key") != digest or previous.get("rel_to") != _rel(out_dir,
                                                                                                         rel_to):
        return None
    if not all((out_dir / p).is_file() for p in previous.get("files", [])):
        return None
    return previous.get("media")


def _load_frames(clip: Clip, needed: set[int], onset: int, settings: MediaSettings):
    """The needed frames cropped and resized as the settings say: ``(frames, face box or None, detector)``."""
    box, detector = None, None
    width, height = clip.frame_size()
    if settings.face_crop:
        onset_full = clip.load([onset])[onset]
        box = detect_face_box(onset_full, settings.face_model)
        detector = face_detector_name(settings.face_model) if box is not None else "centre"
        if box is None:
            box = centre_box(width, height)
            log.warning("%s: %s; cropping the centred square", clip.source,
                        "no face found on the onset frame" if face_detector_name(settings.face_model) else
                        "no face detector available")
        width, height = box[2], box[3]
    # A video's frames are decoded in full anyway; a JPEG is decoded at a reduced scale by the codec.
    reduce = 1 if clip.is_video else _reduction(width, height, settings.size)
    frames = clip.load(needed, reduce=reduce)
    for number, image in frames.items():
        if box is not None:
            x, y, w, h = (round(v / reduce) for v in box)
            image = image[y:y + h, x:x + w]
        target = output_size(image.shape[1], image.shape[0], settings.size)
        if (image.shape[1], image.shape[0]) != target:
            image = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
        frames[number] = image
    return frames, box, detector


def _write_image(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise MevqaError(f"{path}: could not encode image")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def _add(timings: dict, what: str, start: float) -> None:
    timings[what] = timings.get(what, 0.0) + time.perf_counter() - start
