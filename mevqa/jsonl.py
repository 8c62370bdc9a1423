"""JSON-lines reading with line-numbered errors, and writing that never leaves half a file.

Every file mevqa writes goes through :func:`atomic_path`: the content lands in a temporary file beside the target
and is renamed over it only once complete, so an error or a kill never leaves a half-written output. Folders are made
with :func:`ensure_dir`, and a command that must be the only one writing in its output folder holds
:func:`mevqa.runfolder.folder_lock`. Both turn what the file system refuses (a path that is a file where a folder is
needed, a folder where a file is needed, a folder without write permission) into one-line :class:`MevqaError` messages.

:func:`read_jsonl` is the low-level line reader; QA rows are read with :func:`mevqa.rows.read_rows`, which adds the
row checks on top of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from mevqa.errors import MevqaError
from mevqa.runfolder import current_umask, folder_lock  # noqa: F401 (folder_lock: its old import path)


def _refuse_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def read_jsonl(path: str | os.PathLike, *, required: Iterable[str] = ()) -> list[dict]:
    """Read a JSON-lines file into a list of dicts, each with ``_line`` (its 1-based line number).

    Blank lines are skipped; a UTF-8 byte-order mark is accepted. A line that is not UTF-8, not a JSON object, holds
    ``NaN``/``Infinity`` (not JSON, though Python writes them), or lacks one of ``required`` keys raises
    :class:`MevqaError` naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise MevqaError(f"{path}: {'is a folder, expected a jsonl file' if path.is_dir() else 'file not found'}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MevqaError(f"{path}: cannot read the file ({exc.strerror})") from None
    rows = []
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise MevqaError(f"{path}:{line_no}: not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                             f"{exc.start + 1}); save the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise MevqaError(f"{path}:{line_no}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        except ValueError as exc:
            raise MevqaError(f"{path}:{line_no}: {exc} (JSON allows only finite numbers)") from None
        if not isinstance(row, dict):
            raise MevqaError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
        missing = [key for key in required if key not in row]
        if missing:
            raise MevqaError(f"{path}:{line_no}: missing field(s) {', '.join(missing)}")
        row["_line"] = line_no
        rows.append(row)
    return rows


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def strip_private(row: dict) -> dict:
    """Drop bookkeeping keys (those starting with ``_``, such as ``_line``) before a row is written."""
    return {key: value for key, value in row.items() if not key.startswith("_")}


def ensure_dir(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` (and its parents) if needed and check that files can be written in it; returns it.

    A path that exists as a file, a parent that is a file, or a folder without write permission raises one line."""
    folder = _make_dir(Path(folder), what)
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".mevqa-write-check-"):
            pass
    except OSError as exc:
        raise MevqaError(f"{folder}: cannot write in the {what} ({exc.strerror})") from None
    return folder


def _make_dir(folder: Path, what: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise MevqaError(f"{folder}: cannot be the {what}: {blocker} is a file") from None
    except OSError as exc:
        raise MevqaError(f"{folder}: cannot create the {what} ({exc.strerror})") from None
    return folder


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only if the block succeeds."""
    target = Path(target)
    if target.is_dir():
        raise MevqaError(f"{target}: is a folder, expected a file path")
    _make_dir(target.parent, "folder")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise MevqaError(f"{target}: cannot write ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give the result the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~current_umask())
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise MevqaError(f"{target}: cannot write ({exc.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: str | os.PathLike):
    """One JSON document (a mevqa record, an adapter's config): malformed JSON or text that is not UTF-8 is one line
    naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MevqaError(f"{path}: malformed JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise MevqaError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); expected a JSON file") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows atomically as JSON lines (UTF-8, non-ASCII kept, private ``_`` keys dropped)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(strip_private(row), ensure_ascii=False, allow_nan=False) + "\n")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write one JSON document atomically, indented for people."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
