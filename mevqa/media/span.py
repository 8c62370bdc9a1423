"""A clip's span: onset, apex and offset, with the one set of rules the builders, ``answer`` and ``predict`` share.

:func:`resolve_span` fills what the source does not give and checks what it does:

- onset and offset default to the clip's first and last frame (a raw test clip is the whole clip); onset must not
  come after offset, and both must be frames of the clip;
- a given apex must lie in onset..offset (else an error, or estimated instead with ``bad_apex="estimate"``) and be a
  frame of the clip;
- a missing apex is estimated: ``max_diff`` (default), the frame most different from onset (mean absolute grey
  difference; frame folders at 1/4 size), or ``midpoint``, the existing frame nearest ``(onset + offset) // 2``.

Without the clip's frames (a build that writes questions only) the frames cannot be checked and ``max_diff`` cannot
run: the apex is then left unknown (``apex_method`` None) unless the midpoint is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mevqa.errors import MevqaError
from mevqa.media.clips import Clip

APEX_METHODS = ("annotated", "midpoint", "max_diff")


@dataclass(frozen=True)
class Span:
    onset: int
    apex: int | None
    offset: int
    apex_method: str | None     # annotated | midpoint | max_diff; None: apex unknown (no frames were read)


def estimate_apex(clip: Clip, onset: int, offset: int, method: str = "max_diff") -> tuple[int, str]:
    """``(apex, method)``: ``max_diff`` = the frame most different from onset (mean absolute grey difference at
    reduced size), ``midpoint`` = the frame nearest ``(onset + offset) // 2`` that exists."""
    numbers = clip.between(onset, offset)
    if not numbers:
        raise MevqaError(f"{clip.source}: no frames between onset {onset} and offset {offset}")
    if method == "midpoint":
        middle = (onset + offset) // 2
        return min(numbers, key=lambda n: (abs(n - middle), n)), "midpoint"
    if method != "max_diff":
        raise MevqaError(f"unknown apex method {method!r}; expected midpoint or max_diff")
    # A JPEG decoded at 1/4 size is plenty to find where the face moved most, and cheap; a video's frames are
    # decoded in full anyway, and compared at that size.
    frames = clip.load(numbers, reduce=4 if not clip.is_video else 1, gray=True)
    base = frames[numbers[0]].astype(np.int16)
    scores = [float(np.abs(frames[n].astype(np.int16) - base).mean()) for n in numbers]
    return numbers[int(np.argmax(scores))], "max_diff"


def resolve_span(clip: Clip | None, onset: int | None = None, apex: int | None = None, offset: int | None = None,
                 *, missing_apex: str = "max_diff", bad_apex: str = "error", hint: str = "") -> Span:
    """The clip's :class:`Span` by the rules of the module docstring. ``bad_apex`` is ``error`` or ``estimate``;
    ``hint`` is appended to the message of an apex outside the clip (the builders say which option estimates it).
    A missing frame's error names the clip's source."""
    if clip is not None:
        onset = clip.frame_numbers[0] if onset is None else onset
        offset = clip.frame_numbers[-1] if offset is None else offset
    elif onset is None or offset is None:
        raise MevqaError("onset and offset are needed when the clip's frames are not read")
    if onset > offset:
        raise MevqaError(f"onset {onset} is after offset {offset}")
    if apex is not None and not onset <= apex <= offset:
        if bad_apex != "estimate":
            raise MevqaError(f"apex {apex} outside the clip {onset}..{offset}{hint}")
        apex = None
    if clip is None:
        if apex is not None:
            return Span(onset, apex, offset, "annotated")
        if missing_apex == "midpoint":
            return Span(onset, (onset + offset) // 2, offset, "midpoint")
        return Span(onset, None, offset, None)
    for number, what in ((onset, "onset"), (offset, "offset"), (apex, "apex")):
        if number is not None:
            clip.check_has(number, what)
    clip.hold(onset, offset)
    if apex is not None:
        return Span(onset, apex, offset, "annotated")
    apex, method = estimate_apex(clip, onset, offset, missing_apex)
    return Span(onset, apex, offset, method)
