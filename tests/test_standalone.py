"""The repository stands alone: no file points readers or code at a folder outside it."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".venv", "build", "__pycache__", ".pytest_cache", "mevqa.egg-info"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".txt", ".json", ".sh", ""}
# Spelled in pieces so that this file does not match itself.
OUTSIDE = ("../" + "shared", "shared" + "/spec", "shared" + "/data")


def test_no_file_refers_to_a_path_outside_the_repository():
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix not in TEXT_SUFFIXES or path.stat().st_size > 2_000_000:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            found += [f"{path.relative_to(REPO)}: {needle}" for needle in OUTSIDE if needle in text]
    assert not found, found
