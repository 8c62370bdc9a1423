"""Optical flow from onset to apex: computing it, removing head motion, and rendering it as an image.

- Flow is computed onset -> apex on grayscale frames at the output size: Farneback (core OpenCV, the default) or
  TV-L1 (OpenCV's contrib build) with the settings of the 2025 3rd-place team (TIE).
- Head motion is removed by subtracting the flow of a stable region: ``nose`` (median flow in a central box, where
  the nose tip of a roughly centred face is; the box is 16% of the width by 12% of the height, centred at 50%/55%),
  ``median`` (median flow of the whole frame, right when the face fills the frame), or ``none``.
- The picture is the HSV colour wheel (hue = direction, value = magnitude / the largest magnitude), optionally
  blended over the grey onset frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from mevqa.errors import MevqaError

FLOW_METHODS = ("farneback", "tvl1")
HEAD_MOTION = ("nose", "median", "none")
# The defaults of the whole package (build-data, answer/predict, build-spot, spot): the first of each list.
DEFAULT_FLOW_METHOD, DEFAULT_HEAD_MOTION = FLOW_METHODS[0], HEAD_MOTION[0]


def gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def check_flow_method(method: str) -> None:
    """Raise the one-line error for an unknown method, or for TV-L1 where OpenCV's contrib build is missing."""
    if method not in FLOW_METHODS:
        raise MevqaError(f"unknown flow method {method!r}; expected one of {', '.join(FLOW_METHODS)}")
    if method == "tvl1" and not hasattr(cv2, "optflow"):
        raise MevqaError("TV-L1 flow needs OpenCV's contrib build, which replaces the plain one: pip uninstall -y "
                         "opencv-python-headless && pip install opencv-contrib-python-headless; or use --flow "
                         "farneback")


def compute_flow(onset: np.ndarray, apex: np.ndarray, method: str = DEFAULT_FLOW_METHOD) -> np.ndarray:
    """Dense flow (H, W, 2) float32 from ``onset`` to ``apex`` (RGB or grey uint8 arrays of the same size):
    ``flow[y, x] = (dx, dy)`` moves the onset pixel at (x, y) to where it is at apex."""
    check_flow_method(method)
    prev, nxt = gray(onset), gray(apex)
    if prev.shape != nxt.shape:
        raise MevqaError(f"onset and apex frames differ in size: {prev.shape} vs {nxt.shape}")
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                            poly_n=5, poly_sigma=1.2, flags=0)
    # The settings of the 2025 3rd-place team (TIE, Humphrey-0125/MEGC2025).
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(tau=0.25, lambda_=0.15, theta=0.3, nscales=1, warps=5)
    return tvl1.calc(prev, nxt, None)


def nose_box(height: int, width: int) -> tuple[slice, slice]:
    """The central region where a roughly centred face has its nose tip (rows, columns)."""
    half_h, half_w = max(1, round(0.06 * height)), max(1, round(0.08 * width))
    cy, cx = round(0.55 * height), round(0.5 * width)
    return slice(max(0, cy - half_h), cy + half_h), slice(max(0, cx - half_w), cx + half_w)


def remove_head_motion(flow: np.ndarray, region: str = DEFAULT_HEAD_MOTION) -> np.ndarray:
    """Subtract the flow of a stable region (see the module docstring) so a global head shift cancels."""
    if region == "none":
        return flow
    if region == "nose":
        rows, cols = nose_box(*flow.shape[:2])
        reference = np.median(flow[rows, cols].reshape(-1, 2), axis=0)
    elif region == "median":
        reference = np.median(flow.reshape(-1, 2), axis=0)
    else:
        raise MevqaError(f"unknown head-motion region {region!r}; expected one of {', '.join(HEAD_MOTION)}")
    return (flow - reference.astype(np.float32)).astype(np.float32)


def render_flow(flow: np.ndarray, onset: np.ndarray | None = None, blend: float = 0.0) -> np.ndarray:
    """The HSV colour wheel of a flow field as RGB uint8: hue = direction, value = magnitude / the largest
    magnitude (no motion stays black).
    With ``onset`` and ``blend`` > 0, the colour is mixed with the grey onset frame (weight ``blend`` on the face)."""
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1])
    hsv = np.zeros((*flow.shape[:2], 3), np.uint8)
    hsv[..., 0] = (angle * 180 / np.pi / 2).astype(np.uint8)
    hsv[..., 1] = 255
    peak = float(magnitude.max())
    hsv[..., 2] = np.clip(magnitude * (255.0 / peak), 0, 255).astype(np.uint8) if peak > 0 else 0
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if onset is not None and blend > 0:
        grey = cv2.cvtColor(gray(onset), cv2.COLOR_GRAY2RGB)
        colour = cv2.addWeighted(grey, blend, colour, 1 - blend, 0)
    return colour
