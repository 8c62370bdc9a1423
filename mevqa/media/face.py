"""Face crop: one box found on the onset frame and applied to every frame, so the frames stay registered.

Detectors, first available wins: OpenCV's YuNet (``cv2.FaceDetectorYN``) when a model file is given
(``--face-model``; it is not bundled and cannot be downloaded here), OpenCV's Haar cascade where the OpenCV build
ships its cascade files (4.x does; 5.0 does not). The box is widened by 20% to take in brows and chin. Where no
detector is available or no face is found, the fallback is the centred square of the frame's shorter side (logged):
the datasets' subjects sit centred facing the camera, so the centre square keeps the face and drops background.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mevqa.errors import MevqaError
from mevqa.media.flow import gray


def face_detector_name(model: str | Path | None = None) -> str | None:
    """Which face detector :func:`detect_face_box` will use: ``yunet`` (an ONNX model file given), ``haar``
    (OpenCV 4.x ships the cascade files; OpenCV 5 dropped them), or None (no detector: centre-square fallback)."""
    if model is not None:
        return "yunet"
    if hasattr(cv2, "CascadeClassifier") and _haar_file().is_file():
        return "haar"
    return None


def _haar_file() -> Path:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
    return Path(folder) / "haarcascade_frontalface_default.xml"


def detect_face_box(image: np.ndarray, model: str | Path | None = None) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of the largest face, widened by 20% and made square, inside the image; None when no face
    is found or no detector is available (see :func:`face_detector_name`)."""
    backend = face_detector_name(model)
    if backend == "yunet":
        if not Path(model).is_file():
            raise MevqaError(f"{model}: face detector model not found (expected a YuNet .onnx file)")
        detector = cv2.FaceDetectorYN.create(str(model), "", (image.shape[1], image.shape[0]), 0.7)
        _, found = detector.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
        faces = [] if found is None else [tuple(int(v) for v in face[:4]) for face in found]
    elif backend == "haar":
        cascade = cv2.CascadeClassifier(str(_haar_file()))
        grey = gray(image)
        faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                         minSize=(max(24, min(grey.shape) // 6),) * 2)
    else:
        return None
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    side = int(round(max(w, h) * 1.2))
    return _square_inside(x + w / 2, y + h / 2, side, image.shape[1], image.shape[0])


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side, side


def _square_inside(cx: float, cy: float, side: int, width: int, height: int) -> tuple[int, int, int, int]:
    side = min(side, width, height)
    x = int(round(min(max(cx - side / 2, 0), width - side)))
    y = int(round(min(max(cy - side / 2, 0), height - side)))
    return x, y, side, side
