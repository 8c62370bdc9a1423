"""Small QA files with real media on disk, in the docs/design.md row format, for the model-core tests.

The images are written with PIL here (not by the data builders) so these tests depend only on the model core.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mevqa import vocab

# Distinct colours so a test can tell which file became which input.
ONSET, APEX, OFFSET, FLOW = (200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)


def _save(path: Path, rgb, size=(120, 100), noise_seed=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.empty((size[1], size[0], 3), dtype=np.uint8)
    array[:] = rgb
    if noise_seed is not None:
        array = (array + np.random.default_rng(noise_seed).integers(0, 40, array.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)


def write_clip(root: Path, name: str, *, n_frames=8, first=10, step=5, source_fps=200.0, size=(120, 100)) -> dict:
    """Write one clip's media under ``root/media/name`` and return its ``media`` dict (paths relative to root)."""
    rel = Path("media") / name
    frames, numbers = [], []
    for i in range(n_frames):
        path = rel / "video" / f"{i:02d}.jpg"
        _save(root / path, (40 + 20 * i, 80, 120), size, noise_seed=i)
        frames.append(path.as_posix())
        numbers.append(first + i * step)
    for file, rgb in (("onset.png", ONSET), ("apex.png", APEX), ("offset.png", OFFSET), ("flow.png", FLOW)):
        _save(root / rel / file, rgb, size)
    # As build-data records it (mevqa.media.build.sample_fps): one frame has the source rate.
    sample_fps = source_fps * (n_frames - 1) / (numbers[-1] - numbers[0]) if n_frames > 1 else source_fps
    return {"video": {"frames": frames, "frame_numbers": numbers, "source_fps": source_fps, "sample_fps": sample_fps},
            "oao": {"frames": [(rel / f).as_posix() for f in ("onset.png", "apex.png", "offset.png")],
                    "frame_numbers": [numbers[0], numbers[n_frames // 2], numbers[-1]]},
            "flow": {"image": (rel / "flow.png").as_posix()}}


def write_qa_file(root: Path, *, clips=2, name="qa.jsonl", **clip_kwargs) -> Path:
    """A QA jsonl with the official question order per clip (C, F, A, Y, X), media beside it."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    fines = ["happiness", "disgust", "surprise", "fear"]
    for c in range(clips):
        media = write_clip(root, f"clip{c}", **clip_kwargs)
        fine = fines[c % len(fines)]
        coarse = vocab.FINE_TO_COARSE[fine]
        aus = ["lip corner puller"] if c % 2 == 0 else ["brow lowerer", "nose wrinkler"]
        qa = [(vocab.Q_COARSE, coarse), (vocab.Q_FINE, fine), (vocab.au_question(aus), vocab.au_answer(aus)),
              (vocab.Q_PRESENCE.format(au=aus[0]), "yes"),
              (vocab.composite_question(aus), vocab.composite_answer(aus, fine, coarse))]
        for k, (question, answer) in enumerate(qa, start=1):
            rows.append({"id": f"synth_clip{c}_{k}", "dataset": "synth", "image_id": f"clip{c}", "subject": f"s{c}",
                         "filename": f"clip{c}", "question": question, "answer": answer, "media": media})
    path = root / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
