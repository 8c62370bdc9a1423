"""Windows sliding over a long video (ME-STR): their length and stride in frames, where they fall, their overlap
with an interval, and the onset/apex/offset a window's inputs are built from.

``mevqa build-spot --windows`` (training rows) and ``mevqa spot --method vlm`` (answering) both cut windows here, so
a spotter is asked about windows cut exactly as the ones it was trained on.
"""

from __future__ import annotations

import math

from mevqa.errors import MevqaError
from mevqa.media.span import Span, estimate_apex

# Window length and stride in seconds (micro-expressions last at most 0.5 s): the defaults of build-spot and spot.
WINDOW_SECONDS, STRIDE_SECONDS = 0.3, 0.1
MAX_ME_SECONDS = 0.5
# The rate at which window settings are checked before a video's own rate is known (the slowest dataset's).
_CHECK_FPS = 30.0


def window_frames(fps: float, seconds: float, stride_seconds: float) -> tuple[int, int]:
    """(length, stride) in frames of windows of ``seconds`` sliding by ``stride_seconds`` at ``fps``."""
    if not (0 < seconds < math.inf and 0 < stride_seconds < math.inf):
        raise MevqaError(f"window and stride must be positive seconds, got {seconds} and {stride_seconds}")
    return max(3, round(seconds * fps)), max(1, round(stride_seconds * fps))


def check_window(seconds: float, stride_seconds: float) -> None:
    """The window settings' one-line error, before any video is read."""
    window_frames(_CHECK_FPS, seconds, stride_seconds)


def sliding_windows(frame_numbers: list[int], length: int, stride: int) -> list[tuple[int, int]]:
    """``(first, last)`` frame numbers of windows of ``length`` existing frames every ``stride`` frames; the last
    window ends on the last frame, so the whole video is covered."""
    count = len(frame_numbers)
    if count <= length:
        return [(frame_numbers[0], frame_numbers[-1])]
    starts = list(range(0, count - length + 1, stride))
    if starts[-1] != count - length:
        starts.append(count - length)
    return [(frame_numbers[i], frame_numbers[i + length - 1]) for i in starts]


def span_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two inclusive frame ranges (the STRS rule)."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union if union else 0.0


def window_span(clip, first: int, last: int) -> Span:
    """A window's onset, apex and offset: its first frame, the frame most different from it, its last frame."""
    apex, method = estimate_apex(clip, first, last, "max_diff")
    return Span(first, apex, last, method)
