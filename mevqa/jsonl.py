"""JSON-lines reading with line-numbered errors, and atomic file writing.

Every file mevqa writes goes through :func:`atomic_path`: the content lands in a temporary file beside the target
and is renamed over it only once complete, so an error or a kill never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from mevqa.errors import MevqaError


def read_jsonl(path: str | os.PathLike, *, required: Iterable[str] = ()) -> list[dict]:
    """Read a JSON-lines file into a list of dicts.

    Blank lines are skipped. A line that is not a JSON object, or lacks one of ``required`` keys, raises
    :class:`MevqaError` naming the file and the 1-based line number.
    """
    path = Path(path)
    if not path.is_file():
        raise MevqaError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MevqaError(f"{path}:{line_no}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise MevqaError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            missing = [key for key in required if key not in row]
            if missing:
                raise MevqaError(f"{path}:{line_no}: missing field(s) {', '.join(missing)}")
            row["_line"] = line_no
            rows.append(row)
    return rows


def strip_private(row: dict) -> dict:
    """Drop bookkeeping keys (those starting with ``_``, such as ``_line``) before a row is written."""
    return {key: value for key, value in row.items() if not key.startswith("_")}


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give the result the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows atomically as JSON lines (UTF-8, non-ASCII kept, private ``_`` keys dropped)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(strip_private(row), ensure_ascii=False) + "\n")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write one JSON document atomically, indented for people."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
