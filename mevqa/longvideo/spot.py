"""Spotting micro-expressions in long videos, then recognising them (ME-STR); ``mevqa spot`` on one video.

Public API::

    FlowSettings, VlmSettings, Detection
    motion_signal(clip, fps, settings, progress=False) -> (frame numbers, signal, k)
    flow_detections(numbers, signal, k, fps, settings) -> list[Detection]
    spot_flow(clip, fps, settings, progress=False) -> list[Detection]
    spot_macro_flow(clip, fps, settings, micro, macro_seconds, progress=False) -> list[Detection]   # type "macro"
    window_probabilities(model, processor, clip, fps, inference, settings, work_dir, progress=False)
        -> (windows, P(yes) per window)
    vlm_detections(windows, probabilities, settings) -> list[Detection]
    recognise(model, processor, clip, fps, detections, inference, work_dir, labels="coarse", dataset=None)
    spot_video(path, method, *, fps, flow=None, vlm=None, model=None, processor=None, inference=None,
               work_dir, labels="coarse", dataset=None, progress=False) -> list[Detection]
    unpack_video(clip, folder, progress=False) -> Clip        # a video file's frames as a numbered jpg folder

**flow** (model-free, runs on a CPU; the main-directional-maximal-difference family). With ``k`` = half the typical
ME length (``--me-seconds``, default 0.3 s), each frame ``t`` gets the optical flow from ``t - k`` to ``t``
(Farneback on grey frames with the longer side at most ``--flow-size`` px, head motion removed with
:func:`mevqa.media.remove_head_motion`), summarised as the mean magnitude of the 3 most moving cells of a 6 x 6 grid
(an ME moves a small part of the face). An ME moves the face out and back, so at its apex ``t`` the face differs both
from ``t - k`` and from ``t + k``: the spotting signal is ``s(t) = min(m(t), m(t + k))``, which stays low for
movements that do not come back within ``2k``. The threshold is relative to the video's own signal:
``T = median(s) + p (max(s) - median(s))`` (``--flow-threshold p``, default 0.2). Each run of frames above ``T``
(runs less than ``k`` frames apart joined) is a movement; runs longer than ``--max-seconds`` (default 0.5 s, the
longest ME) are taken for macro-expressions and dropped; each remaining run gives one interval ``[peak - k, peak + k]``
around its highest frame, and overlapping intervals are merged into the strongest.

**macro-expressions** (``spot_macro_flow``, for ME-LVQA, which counts them): the same signal at the macro scale,
``K`` = half of ``macro_seconds`` (a macro-expression is a slower out-and-back). A run there (same relative
threshold, runs less than ``k`` apart joined) is *slow* when the ME-scale signal around it stays under
``SLOW_RATIO`` (0.65) of its peak: the face moved far, but never far within the ME scale (on the synthetic videos
MEs give 0.75-1.2, macro-expressions 0.2-0.66). The MEs found, except those inside a slow run, are then masked
together with their echoes (the macro-scale signal is also high where ``t - K`` and ``t + K`` both fall in
movements), so that they no longer set the threshold, and the slow runs of the masked signal whose peak exceeds
``NOISE_FLOOR`` (3) times the median are macro-expressions, each ``macro_seconds`` around its peak. An ME interval
inside a macro-expression is part of it (``mevqa lvqa-predict`` drops it).

**vlm**: windows of ``--window`` seconds every ``--stride`` seconds (as ``mevqa build-spot --windows`` makes them:
first and last frame as onset and offset, the frame most different from the first as apex, inputs built with the
model's media settings) are scored with P(yes) to "Is there a micro-expression in this clip?" by the
label-constrained scorer (:func:`mevqa.answering.label_scoring.choice_probabilities`); the scores are smoothed over
``--smooth`` neighbouring windows; each run of windows at or above ``--threshold`` (default 0.5) is one detection
at its best window, and detections that still overlap are merged into the stronger one.

**recognition** (both methods, when a model is given): each detection's onset, apex and offset inputs are built and
the model's most probable answer among the coarse classes (``labels="coarse"``) or the dataset's fine classes
(``"fine"``) is its emotion; without a model the emotion is ``others``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
from tqdm import tqdm

from mevqa import vocab
from mevqa.cli_style import add_json_option, json_file, json_to_stdout, write_json_output
from mevqa.dataset_facts import LONG_VIDEO_FPS
from mevqa.errors import MevqaError
from mevqa.jsonl import atomic_path, ensure_dir, write_json
from mevqa.log import is_main_process
from mevqa.media import (FLOW_METHODS, HEAD_MOTION, Clip, Span, add_media_arguments, build_media, compute_flow,
                         decode_image, output_size, read_clip, remove_head_motion)
from mevqa.media.flow import DEFAULT_FLOW_METHOD, DEFAULT_HEAD_MOTION
from mevqa.media.windows import (MAX_ME_SECONDS, STRIDE_SECONDS, WINDOW_SECONDS, check_window, sliding_windows,
                                 window_frames, window_span)
from mevqa.options import add_model_arguments
from mevqa.paths import refuse_outputs_onto_inputs
from mevqa.rows import resolve_media

log = logging.getLogger(__name__)

METHODS = ("flow", "vlm")
LABEL_SETS = ("coarse", "fine")
NO_MODEL_EMOTION = "others"
GRID, TOP_CELLS = 6, 3
# A macro-scale peak whose ME-scale signal nearby stays under this share of it is a slow movement (macro-expression).
SLOW_RATIO = 0.65
# ... and one under this many times the video's median macro-scale signal is the noise of a still face.
NOISE_FLOOR = 3.0
JPEG_QUALITY = 95


@dataclass
class FlowSettings:
    me_seconds: float = 0.3        # typical ME length: k is half of it
    max_seconds: float = MAX_ME_SECONDS  # runs above the threshold longer than this are macro-expressions
    threshold: float = 0.2         # p in T = median + p (max - median)
    flow_size: int = 128           # longer side of the frames the flow is computed on
    flow_method: str = DEFAULT_FLOW_METHOD
    head_motion: str = DEFAULT_HEAD_MOTION

    def __post_init__(self):
        if not self.me_seconds > 0 or not self.max_seconds > 0:
            raise MevqaError(f"--me-seconds and --max-seconds must be positive, got {self.me_seconds} and "
                             f"{self.max_seconds}")
        if not 0 <= self.threshold <= 1:
            raise MevqaError(f"the flow threshold p must be between 0 and 1, got {self.threshold}")
        if self.flow_size < 16:
            raise MevqaError(f"--flow-size must be at least 16 pixels, got {self.flow_size}")
        if self.flow_method not in FLOW_METHODS:
            raise MevqaError(f"unknown flow method {self.flow_method!r}; expected one of {', '.join(FLOW_METHODS)}")
        if self.head_motion not in HEAD_MOTION:
            raise MevqaError(f"unknown head-motion region {self.head_motion!r}; expected one of "
                             f"{', '.join(HEAD_MOTION)}")


@dataclass
class VlmSettings:
    window: float = WINDOW_SECONDS  # seconds, as mevqa build-spot --windows
    stride: float = STRIDE_SECONDS
    threshold: float = 0.5         # smoothed P(yes) a detection needs
    smooth: int = 3                # windows averaged (odd)
    batch_size: int = 8            # candidate answers per forward pass

    def __post_init__(self):
        check_window(self.window, self.stride)
        if not 0 <= self.threshold <= 1:
            raise MevqaError(f"the vlm threshold must be a probability, got {self.threshold}")
        if self.smooth < 1 or self.smooth % 2 == 0:
            raise MevqaError(f"--smooth must be an odd number of windows, got {self.smooth}")
        if self.batch_size < 1:
            raise MevqaError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass
class Detection:
    onset: int
    apex: int
    offset: int
    score: float                   # the flow signal at the peak, or the smoothed P(yes)
    emotion: str = NO_MODEL_EMOTION
    emotion_scores: dict = field(default_factory=dict)
    type: str = "micro"            # micro, or macro (spot_macro_flow)


# --- frames -------------------------------------------------------------------------------------------------------

def _fit(image: np.ndarray, size: int) -> np.ndarray:
    target = output_size(image.shape[1], image.shape[0], size)
    if target == (image.shape[1], image.shape[0]):
        return image
    return cv2.resize(image, target, interpolation=cv2.INTER_AREA)


def gray_frames(clip: Clip, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(number, grey frame)`` for every frame of the clip, in order, the longer side at most ``size``. Frames are
    decoded one at a time (a video file in one streaming pass), so a long video never sits in memory."""
    if not clip.is_video:
        width, height = clip.frame_size()
        reduce = 1
        while reduce < 8 and max(width, height) / (reduce * 2) >= size:
            reduce *= 2  # JPEG decoding at 1/2, 1/4, 1/8 scale is much faster than decoding in full
        for number in clip.frame_numbers:
            yield number, _fit(decode_image(clip.paths[number], reduce, gray=True), size)
        return
    out_w, out_h = output_size(*clip.size, size)
    try:
        with av.open(str(clip.source)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for number, frame in enumerate(container.decode(stream)):
                yield number, frame.reformat(width=out_w, height=out_h, format="gray").to_ndarray()
    except av.error.FFmpegError as exc:
        raise MevqaError(f"{clip.source}: unreadable video ({exc})") from None


def unpack_video(clip: Clip, folder: Path, progress: bool = False) -> Clip:
    """A video file's frames written once as ``folder/<key>/000000.jpg``... (numbered as the video's frames, from 0),
    so that windows read only their own frames. ``key`` is a digest of the video's path, size and modification time,
    and ``source.json`` beside the frames, written last, names the video: a finished folder of this very video is
    reused, never one of another video."""
    stat = Path(clip.source).stat()
    source = {"video": str(Path(clip.source).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
              "frames": len(clip.frame_numbers)}
    folder = Path(folder) / hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:12]
    marker = folder / "source.json"
    if marker.is_file():
        return read_clip(folder)
    ensure_dir(folder)
    try:
        with av.open(str(clip.source)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for number, frame in enumerate(tqdm(container.decode(stream), total=len(clip.frame_numbers),
                                                desc=f"unpacking {clip.source.name}", unit="frame",
                                                disable=not (progress and is_main_process()))):
                ok, encoded = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"),
                                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise MevqaError(f"{clip.source}: could not encode frame {number}")
                with atomic_path(folder / f"{number:06d}.jpg") as tmp:
                    tmp.write_bytes(encoded.tobytes())
    except av.error.FFmpegError as exc:
        raise MevqaError(f"{clip.source}: unreadable video ({exc})") from None
    write_json(marker, source)
    return read_clip(folder)


# --- flow ---------------------------------------------------------------------------------------------------------

def _moving_cells(magnitude: np.ndarray) -> float:
    height, width = magnitude.shape
    rows = np.linspace(0, height, GRID + 1).astype(int)
    cols = np.linspace(0, width, GRID + 1).astype(int)
    cells = [magnitude[rows[r]:rows[r + 1], cols[c]:cols[c + 1]].mean() for r in range(GRID) for c in range(GRID)]
    return float(np.mean(sorted(cells)[-TOP_CELLS:]))


def motion_signal(clip: Clip, fps: float, settings: FlowSettings, progress: bool = False):
    """``(frame numbers, m, k)``: ``m[i]`` is how much the face moved from frame ``i - k`` to frame ``i`` (0 for the
    first ``k`` frames), with ``k = round(me_seconds * fps / 2)``."""
    k = max(1, round(settings.me_seconds * fps / 2))
    numbers, signal, recent = [], [], []
    for number, frame in tqdm(gray_frames(clip, settings.flow_size), total=len(clip.frame_numbers),
                              desc=f"flow {Path(clip.source).name}", unit="frame",
                              disable=not (progress and is_main_process())):
        recent.append(frame)
        if len(recent) > k + 1:
            recent.pop(0)
        value = 0.0
        if len(recent) == k + 1:
            flow = remove_head_motion(compute_flow(recent[0], frame, settings.flow_method), settings.head_motion)
            value = _moving_cells(np.hypot(flow[..., 0], flow[..., 1]))
        numbers.append(number)
        signal.append(value)
    if not numbers:
        raise MevqaError(f"{clip.source}: no frames")
    return numbers, np.asarray(signal, dtype=np.float64), k


def spotting_signal(m: np.ndarray, k: int) -> np.ndarray:
    """``s(t) = min(m(t), m(t + k))``: high where the face moved away and came back (0 where ``t + k`` is past the
    end)."""
    s = np.zeros_like(m)
    if len(m) > k:
        s[:len(m) - k] = np.minimum(m[:len(m) - k], m[k:])
    return s


def flow_detections(numbers: list[int], m: np.ndarray, k: int, fps: float, settings: FlowSettings) -> list[Detection]:
    """The flow method's intervals from the motion signal (module docstring)."""
    s = spotting_signal(m, k)
    longest = settings.max_seconds * fps
    detections = []
    for first, last in _signal_runs(s, settings.threshold, k):
        if last - first + 1 > longest:
            continue  # moves for too long to be a micro-expression
        peak = first + int(np.argmax(s[first:last + 1]))
        start, end = max(0, peak - k), min(len(numbers) - 1, peak + k)
        detections.append(Detection(numbers[start], numbers[peak], numbers[end], round(float(s[peak]), 6)))
    return merge_overlapping(detections)


def _signal_runs(s: np.ndarray, p: float, bridge: int) -> list[tuple[int, int]]:
    """Index runs of ``s`` above ``T = median(s) + p (max(s) - median(s))``, bridged (:func:`_runs`)."""
    if len(s) == 0 or not np.any(s > 0):
        return []
    base = float(np.median(s))
    return _runs(s > base + p * (float(s.max()) - base), bridge=bridge)


def _runs(mask: np.ndarray, bridge: int) -> list[tuple[int, int]]:
    """``(first, last)`` index runs where ``mask`` holds, runs fewer than ``bridge`` frames apart joined (the signal
    of one movement can dip below the threshold for a few frames)."""
    runs: list[list[int]] = []
    for index in np.flatnonzero(mask):
        if runs and index - runs[-1][1] <= bridge:
            runs[-1][1] = int(index)
        else:
            runs.append([int(index), int(index)])
    return [(first, last) for first, last in runs]


def merge_overlapping(detections: list[Detection]) -> list[Detection]:
    """Overlapping detections merged into the strongest of them, in onset order."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        if all(detection.offset < other.onset or detection.onset > other.offset for other in kept):
            kept.append(detection)
    return sorted(kept, key=lambda d: d.onset)


def spot_flow(clip: Clip, fps: float, settings: FlowSettings, progress: bool = False) -> list[Detection]:
    numbers, m, k = motion_signal(clip, fps, settings, progress)
    return flow_detections(numbers, m, k, fps, settings)


def spot_macro_flow(clip: Clip, fps: float, settings: FlowSettings, micro: list[Detection], macro_seconds: float,
                    progress: bool = False, micro_signal: tuple | None = None) -> list[Detection]:
    """The macro-expressions of a video whose MEs ``micro`` are already spotted (module docstring), in onset
    order, each a :class:`Detection` of type ``macro`` of ``macro_seconds`` around its peak. ``micro_signal``:
    :func:`motion_signal`'s result at the ME scale, when already computed."""
    if not macro_seconds > settings.max_seconds:
        raise MevqaError(f"--macro-seconds must exceed --max-seconds ({settings.max_seconds}), got {macro_seconds}")
    numbers, m, k = micro_signal or motion_signal(clip, fps, settings, progress)
    _, m_macro, big_k = motion_signal(clip, fps, replace(settings, me_seconds=macro_seconds), progress)
    s, s_macro = spotting_signal(m, k), spotting_signal(m_macro, big_k)

    def slow_runs(signal):  # (first, last, peak) of runs where the face moved far, never far within the ME scale
        runs = []
        for first, last in _signal_runs(signal, settings.threshold, k):
            peak = first + int(np.argmax(signal[first:last + 1]))
            if s[max(0, first - k):last + k + 1].max() < SLOW_RATIO * signal[peak]:
                runs.append((first, last, peak))
        return runs

    # The MEs found, except those inside a slow run (parts of a macro-expression), are masked with their echoes:
    # s_macro(t) is also high where t - K and t + K both fall in movements. Masked, they no longer set the threshold,
    # which a macro-expression weaker than the strongest ME would not reach.
    slow = slow_runs(s_macro)
    spans = [(int(np.searchsorted(numbers, d.onset)), int(np.searchsorted(numbers, d.offset, side="right")) - 1)
             for d in micro]
    masked = s_macro.copy()
    for a, b in spans:
        if not any(a <= last and first <= b for first, last, _ in slow):
            for shift in (-big_k, 0, big_k):
                masked[max(0, a + shift - k):max(0, b + shift + k + 1)] = 0
    floor = NOISE_FLOOR * float(np.median(s_macro))
    found = []
    for first, last, peak in slow_runs(masked):
        if masked[peak] < floor:
            continue  # a ripple of a still face
        start, end = max(0, peak - big_k), min(len(numbers) - 1, peak + big_k)
        found.append(Detection(numbers[start], numbers[peak], numbers[end], round(float(masked[peak]), 6),
                               type="macro"))
    return merge_overlapping(found)


# --- vlm ----------------------------------------------------------------------------------------------------------

def interval_row(row_id: str, question: str, media: dict, base: Path, fps: float, span: Span) -> dict:
    """A QA row asking ``question`` about one interval of a long video, its inputs ``media`` built in ``base``."""
    row = {"id": row_id, "question": question, "_file": str(base),
           "clip": {"onset": span.onset, "apex": span.apex, "offset": span.offset, "fps": fps}, "media": media}
    return resolve_media(row, base, row_id)


def window_probabilities(model, processor, clip: Clip, fps: float, inference, settings: VlmSettings,
                         work_dir: Path, progress: bool = False, name: str | None = None
                         ) -> tuple[list[Span], list[float]]:
    """Every window's span and P(yes) to the spotting question (inputs under ``work_dir/windows/``)."""
    from mevqa.answering.label_scoring import choice_probabilities  # torch: only the vlm method and emotions need it

    length, stride = window_frames(fps, settings.window, settings.stride)
    spans, scores, batch = [], [], []

    def flush():
        probabilities = choice_probabilities(model, processor, [row for row, _ in batch], inference.inputs,
                                             [["yes", "no"]] * len(batch), batch_size=settings.batch_size,
                                             system_prompt=inference.system_prompt, max_frames=inference.max_frames,
                                             video_fps=inference.video_fps)
        for (_, span), p in zip(batch, probabilities):
            spans.append(span)
            scores.append(p["yes"])
        batch.clear()

    windows = sliding_windows(clip.frame_numbers, length, stride)
    for first, last in tqdm(windows, desc=f"windows {name or Path(clip.source).name}", unit="window",
                            disable=not (progress and is_main_process())):
        span = window_span(clip, first, last)
        out = work_dir / "windows" / f"w{first}"
        media = build_media(clip, span, inference.media, out, fps=fps)
        batch.append((interval_row(f"w{first}", vocab.Q_SPOT, media, out, fps, span), span))
        if len(batch) >= 16:
            flush()
    if batch:
        flush()
    return spans, scores


def smooth(values: list[float], width: int) -> list[float]:
    """Moving average over ``width`` neighbours (fewer at the ends)."""
    half, out = width // 2, []
    for i in range(len(values)):
        part = values[max(0, i - half):i + half + 1]
        out.append(sum(part) / len(part))
    return out


def vlm_detections(spans: list[Span], probabilities: list[float], settings: VlmSettings) -> list[Detection]:
    """Runs of windows at or above the threshold (smoothed) -> one detection each at the best window; detections
    that overlap are merged into the stronger one."""
    smoothed = smooth(probabilities, settings.smooth)
    found, i = [], 0
    while i < len(spans):
        if smoothed[i] < settings.threshold:
            i += 1
            continue
        j = i
        while j + 1 < len(spans) and smoothed[j + 1] >= settings.threshold:
            j += 1
        best = max(range(i, j + 1), key=lambda n: (smoothed[n], -n))
        span = spans[best]
        found.append(Detection(span.onset, span.apex, span.offset, round(smoothed[best], 6)))
        i = j + 1
    return merge_overlapping(found)


def recognise(model, processor, clip: Clip, fps: float, detections: list[Detection], inference, work_dir: Path,
              labels: str = "coarse", dataset: str | None = None) -> list[Detection]:
    """Each detection's emotion: the model's most probable class given its onset/apex/offset inputs."""
    from mevqa.answering.label_scoring import best, choice_probabilities  # torch: only with a model

    if not detections:
        return detections
    if labels == "coarse":
        question, choices = vocab.Q_COARSE, list(vocab.COARSE_LABELS)
    else:
        question, choices = vocab.Q_FINE, list(vocab.fine_labels_for(dataset))
    rows = []
    for d in detections:
        span = Span(d.onset, d.apex, d.offset, "max_diff")
        out = work_dir / "detections" / f"d{d.onset}_{d.offset}"
        rows.append(interval_row(f"d{d.onset}", question, build_media(clip, span, inference.media, out, fps=fps), out, fps,
                         span))
    probabilities = choice_probabilities(model, processor, rows, inference.inputs, [choices] * len(rows),
                                         system_prompt=inference.system_prompt, max_frames=inference.max_frames,
                                         video_fps=inference.video_fps)
    for d, p in zip(detections, probabilities):
        d.emotion, d.emotion_scores = best(p), {key: round(value, 6) for key, value in p.items()}
    return detections


# --- one video ----------------------------------------------------------------------------------------------------

def check_fps(clip: Clip, fps: float | None) -> float:
    """The frame rate to spot at: ``fps`` if given, else the video file's own; a positive finite number."""
    if fps is None:
        fps = clip.fps
        if fps is None:
            raise MevqaError(f"{clip.source}: a frame folder has no frame rate; give it with --fps ("
                             + ", ".join(f"{name} {rate:g}" for name, rate in LONG_VIDEO_FPS.items()) + ")")
    if not 0 < fps < math.inf:
        raise MevqaError(f"{clip.source}: the frame rate must be a positive number, got {fps}")
    return float(fps)


def spot_video(path, method: str, *, fps: float | None, flow: FlowSettings | None = None,
               vlm: VlmSettings | None = None, model=None, processor=None, inference=None, work_dir: Path,
               labels: str = "coarse", dataset: str | None = None, progress: bool = False,
               emotions: bool = True) -> list[Detection]:
    """Spot (and, with a model and ``emotions``, recognise) the MEs of one long video: a frame folder or a video
    file."""
    if method not in METHODS:
        raise MevqaError(f"unknown spotting method {method!r}; expected one of {', '.join(METHODS)}")
    clip = path if isinstance(path, Clip) else read_clip(path)
    fps = check_fps(clip, fps)
    if method == "vlm" and model is None:
        raise MevqaError("--method vlm needs --model (a spotter trained on mevqa build-spot --windows rows)")
    work_dir, name = Path(work_dir), Path(clip.source).name
    if method == "flow":
        detections = spot_flow(clip, fps, flow or FlowSettings(), progress)
    else:
        if clip.is_video:  # windows decode only their own frames from a frame folder
            clip = unpack_video(clip, work_dir / "frames", progress)
        spans, probabilities = window_probabilities(model, processor, clip, fps, inference, vlm or VlmSettings(),
                                                    work_dir, progress, name)
        detections = vlm_detections(spans, probabilities, vlm or VlmSettings())
    if model is not None and emotions:
        if clip.is_video and detections:
            clip = unpack_video(clip, work_dir / "frames", progress)
        recognise(model, processor, clip, fps, detections, inference, work_dir, labels, dataset)
    return detections


# --- the command --------------------------------------------------------------------------------------------------

def add_method_arguments(parser: argparse.ArgumentParser, *, method_option: str = "--method") -> None:
    """The method and model options ``mevqa spot``, ``mevqa str-predict`` and ``mevqa lvqa-predict`` share; the
    spotting method is ``args.method``, given as ``method_option`` (lvqa-predict's own ``--method`` is another)."""
    parser.add_argument(method_option, dest="method", choices=METHODS, required=method_option == "--method",
                        default=None if method_option == "--method" else "flow",
                        help="flow: optical-flow baseline, no model needed; vlm: windows scored by a trained spotter")
    parser.add_argument("--labels", choices=LABEL_SETS, default="coarse",
                        help="emotions asked of the model: coarse classes or the dataset's fine classes")
    group = parser.add_argument_group("flow method")
    defaults = FlowSettings()
    group.add_argument("--me-seconds", type=float, default=defaults.me_seconds,
                       help=f"typical ME length in seconds; intervals are this long (default: {defaults.me_seconds})")
    group.add_argument("--max-seconds", type=float, default=defaults.max_seconds,
                       help="longer movements are macro-expressions: dropped by spot and str-predict, typed macro by "
                            f"lvqa-predict (default: {defaults.max_seconds})")
    group.add_argument("--flow-threshold", type=float, default=defaults.threshold,
                       help="p in T = median + p (max - median) of the video's signal (default: "
                            f"{defaults.threshold})")
    group.add_argument("--flow-size", type=int, default=defaults.flow_size,
                       help=f"longer side of the frames the flow is computed on (default: {defaults.flow_size})")
    group = parser.add_argument_group("vlm method")
    vlm = VlmSettings()
    group.add_argument("--window", type=float, default=vlm.window, help=f"window seconds (default: {vlm.window}, as "
                       "build-spot)")
    group.add_argument("--stride", type=float, default=vlm.stride, help="window stride seconds")
    group.add_argument("--threshold", type=float, default=vlm.threshold,
                       help=f"smoothed P(yes) a detection needs (default: {vlm.threshold})")
    group.add_argument("--smooth", type=int, default=vlm.smooth, help="windows averaged (an odd number)")
    group.add_argument("--batch-size", type=int, default=vlm.batch_size,
                       help=f"candidate answers per forward pass (default: {vlm.batch_size})")
    add_model_arguments(parser, default_model=None, title="model (vlm; for flow, optional: it names each "
                        "interval's emotion)", model_help="model folder or hub name (a trained spotter for vlm)")
    add_media_arguments(parser, as_trained=True)
    # Answers are chosen by label-constrained scoring, never generated: the generation settings stay at rest.
    parser.set_defaults(max_new_tokens=8, do_sample=False, temperature=1.0, top_p=1.0, top_k=None,
                        repetition_penalty=1.0, seed=0)


def settings_from_args(args: argparse.Namespace) -> tuple[FlowSettings, VlmSettings]:
    # --flow and --head-motion (the media options) also choose the baseline's flow and head-motion removal.
    flow = FlowSettings(me_seconds=args.me_seconds, max_seconds=args.max_seconds, threshold=args.flow_threshold,
                        flow_size=args.flow_size, flow_method=args.flow or DEFAULT_FLOW_METHOD,
                        head_motion=args.head_motion or DEFAULT_HEAD_MOTION)
    vlm = VlmSettings(window=args.window, stride=args.stride, threshold=args.threshold, smooth=args.smooth,
                      batch_size=args.batch_size)
    if args.method == "flow":  # the flow baseline never reads the windows: a changed one would be silently ignored
        changed = [f"--{name}" for name in ("window", "stride", "threshold", "smooth")
                   if getattr(vlm, name) != getattr(VlmSettings(), name)]
        if changed:
            raise MevqaError(f"{', '.join(changed)}: {'options' if len(changed) > 1 else 'an option'} of the vlm "
                             "spotting method, which this run does not use (it spots with flow; --flow-threshold is "
                             "the flow baseline's threshold)")
    return flow, vlm


def load_for(args: argparse.Namespace):
    """(model, processor, inference settings) for the model arguments, or (None, None, None) without --model."""
    if args.model is None:
        if args.method == "vlm":
            raise MevqaError("--method vlm needs --model (a spotter trained on mevqa build-spot --windows rows)")
        return None, None, None
    from mevqa.answering.inference import load_model, resolve_settings  # torch and transformers: only with a model

    inference = resolve_settings(args)
    model, processor = load_model(args, inference)
    return model, processor, inference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, type=Path, help="a long video: a folder of numbered frames or a "
                                                                  "video file (mp4/avi)")
    parser.add_argument("--fps", type=float, help="frame rate (needed for a frame folder; a video file's own rate "
                                                  "otherwise)")
    parser.add_argument("--work", type=Path, help="keep intermediate inputs here (default: a temporary folder)")
    add_json_option(parser, "the detections with their scores and the settings")
    add_method_arguments(parser)


def run(args: argparse.Namespace) -> int:
    flow, vlm = settings_from_args(args)
    refuse_outputs_onto_inputs(outputs={"--json": json_file(args.json)}, into={"--work": args.work},
                               inputs={"--video": args.video, "--model": args.model, "--adapter": args.adapter})
    clip = read_clip(args.video)  # a bad path, frame rate or --work folder fails before a model is loaded
    check_fps(clip, args.fps)
    if args.work is not None:
        ensure_dir(args.work, "--work folder")
    model, processor, inference = load_for(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mevqa-spot-") as scratch:
        detections = spot_video(clip, args.method, fps=args.fps, flow=flow, vlm=vlm, model=model,
                                processor=processor, inference=inference, work_dir=args.work or Path(scratch),
                                labels=args.labels, progress=True)
    seconds = time.perf_counter() - start
    if args.json is not None:
        report = {"video": str(args.video), "method": args.method, "frames": len(clip.frame_numbers),
                  "seconds": round(seconds, 3), "settings": asdict(flow) if args.method == "flow" else asdict(vlm),
                  "model": args.model, "adapter": str(args.adapter) if args.adapter else None,
                  "detections": [asdict(d) for d in detections]}
        write_json_output(args.json, report)
    if json_to_stdout(args.json):
        return 0
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["onset", "apex", "offset", "score", "emotion"])
    for d in detections:
        writer.writerow([d.onset, d.apex, d.offset, d.score, d.emotion])
    log.info("%d interval(s) in %d frames (%.1f s, %.0f frames/s)", len(detections), len(clip.frame_numbers),
             seconds, len(clip.frame_numbers) / max(seconds, 1e-9))
    return 0


__all__ = ["Detection", "FlowSettings", "VlmSettings", "flow_detections", "motion_signal", "recognise", "smooth",
           "spot_flow", "spot_macro_flow", "spot_video", "spotting_signal", "unpack_video", "vlm_detections", "window_probabilities"]
