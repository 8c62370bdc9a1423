"""Synthetic raw clips for the inference tests: numbered frame folders and mp4 files, a face-like blob whose mouth
opens towards the middle of the clip (so the estimated apex is the middle frame); and a model that answers ""."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from conftest import OFFICIAL_TEST


def face_frames(n_frames: int = 12, size: tuple[int, int] = (80, 96), seed: int = 0) -> list[np.ndarray]:
    """``n_frames`` BGR uint8 frames (width, height = ``size``); the motion peaks at frame ``n_frames // 2``."""
    rng = np.random.default_rng(seed)
    width, height = size
    skin = tuple(int(v) for v in rng.integers(120, 200, 3))
    frames = []
    for i in range(n_frames):
        image = np.full((height, width, 3), 90, np.uint8)
        cv2.ellipse(image, (width // 2, height // 2), (width * 3 // 8, height * 2 // 5), 0, 0, 360, skin, -1)
        opening = 2 + 2 * (n_frames // 2 - abs(n_frames // 2 - i))
        cv2.ellipse(image, (width // 2, height * 3 // 4), (width // 8, opening), 0, 0, 360, (40, 40, 110), -1)
        frames.append(image)
    return frames


def write_frame_folder(folder: Path, *, n_frames: int = 12, first: int = 1, pattern: str = "img{}.jpg",
                       seed: int = 0) -> Path:
    """Frames ``first``..``first + n_frames - 1`` named by ``pattern`` (e.g. ``img{}.jpg``, ``{:05d}.png``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(face_frames(n_frames, seed=seed)):
        cv2.imwrite(str(folder / pattern.format(first + i)), image)
    return folder


def write_video(path: Path, *, n_frames: int = 12, fps: float = 30.0, seed: int = 0) -> Path:
    """An mp4 (OpenCV's mp4v codec, the one that works offline) of the same synthetic face."""
    frames = face_frames(n_frames, seed=seed)
    height, width = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for image in frames:
        writer.write(image)
    writer.release()
    return path


def write_test_clips(root: Path, *, n_frames: int = 8) -> Path:
    """A clip folder for every clip the official test files name (SAMM-1..SAMM-7, CAS-1..CAS-17), in the layout
    of the test media (``root/SAMM/SAMM-1/``, ``root/CAS/CAS-1/``), with each dataset's frame naming."""
    import json

    names = sorted({json.loads(line)["video"] for path in OFFICIAL_TEST for line in path.read_text().splitlines()
                    if line.strip()})
    for seed, name in enumerate(names):
        group, pattern = ("SAMM", "{:05d}.jpg") if name.startswith("SAMM") else ("CAS", "{}.jpg")
        write_frame_folder(root / group / name, n_frames=n_frames, first=100, pattern=pattern, seed=seed)
    return root


def write_silent_model(model_dir: Path, out: Path) -> Path:
    """A copy of a real (tiny) model whose generation config allows nothing but the end of its turn: it answers ""."""
    import json
    import shutil

    from transformers import AutoTokenizer

    model = shutil.copytree(model_dir, out)
    tokenizer = AutoTokenizer.from_pretrained(model)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = json.loads((model / "generation_config.json").read_text())
    config["suppress_tokens"] = [i for i in range(len(tokenizer)) if i != end]
    (model / "generation_config.json").write_text(json.dumps(config))
    return model
