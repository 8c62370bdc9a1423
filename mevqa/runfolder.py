"""The run folder: the rules every command that writes a resumable or replaceable output folder shares.

Public API::

    folder_lock(folder, name, who)          # one writer per folder; the system drops it when the process dies
    read_log(path, *, repair=True) -> list[(line, record)]   # an append-only jsonl log, torn last line dropped
    drop_torn_line(path) -> bool            # cut what follows the last newline (a kill mid-write)
    LogAppender(path, *, fresh=False)       # the writer's side: lines added whole, synced before the next work
    differences(before, now, *, by_digest=()) -> list[str]   # dotted names where two run records differ
    set_aside(paths, why) -> list[Path]     # stale outputs renamed <name>.stale-<YYYYmmdd-HHMMSS>[-n]
    atomic_folder(target) -> Path           # build a folder beside ``target``; it replaces ``target`` at the end
    replace_folder(new, target)             # that last step alone (a finished folder renamed into place)
    remove_killed_folders(target)           # what a killed writer of ``target`` left beside it
    current_umask() -> int                  # the mode a plain open()/mkdir() would give, for files made private

A resumable command (``predict``, ``str-predict``, ``lvqa-predict``) appends one JSON line per finished piece of
work to its log through :class:`LogAppender` (so does training, to ``train_log.jsonl``); ``cv`` reads predict's log
while it is written. A kill can cut the last line short and nothing else (lines are written whole, then synced): so
a reader keeps every line up to the last newline and drops the rest; any other malformed line is an error, since no
run of the command wrote it. The run record (``run_config.json``, ``run.json``) says what settings made the log; a
rerun with other settings is refused by :func:`differences`, never mixed in.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Iterable, Iterator

from mevqa.errors import MevqaError

log = logging.getLogger(__name__)

STALE = "stale"


# --- the lock -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str, who: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``fcntl.flock`` on ``folder/name``) while the block runs. A second
    holder is refused with one line saying that another ``who`` writes there. The system drops the lock when the
    process ends, even by ``kill -9``, so a killed run never leaves the folder locked."""
    import fcntl  # POSIX only: imported where it is used, so that reading and scoring work everywhere

    folder = Path(folder)
    try:
        handle = (folder / name).open("a")
    except OSError as exc:
        raise MevqaError(f"{folder}: cannot write in the output folder ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MevqaError(f"{folder}: another {who} is writing here ({folder / name} is locked); wait for it to "
                             "finish or use another output folder") from None
        yield
    finally:
        handle.close()


# --- append-only logs ---------------------------------------------------------------------------------------------
def drop_torn_line(path: str | os.PathLike) -> bool:
    """Cut ``path`` after its last newline (the line a kill cut short); True if something was cut."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as handle:  # the last byte decides; a long log is read whole only when it is torn
        if handle.seek(0, os.SEEK_END) == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return False
    data = path.read_bytes()
    log.warning("%s: dropping an unfinished last line (the previous run was stopped while writing it)", path)
    with path.open("r+b") as handle:
        handle.truncate(data.rfind(b"\n") + 1)
    return True


def read_log(path: str | os.PathLike, *, repair: bool = True) -> list[tuple[int, dict]]:
    """``(line number, record)`` for every complete line of an append-only jsonl log (none if there is no file).

    What follows the last newline is a line cut short by a kill: with ``repair`` it is cut from the file (the writer
    appends after it next), without (a reader watching another process's log) it is only left out. Any complete
    line that is not a JSON object is an error naming the file and line."""
    path = Path(path)
    if repair:
        drop_torn_line(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    records = []
    for number, line in enumerate(data[:data.rfind(b"\n") + 1].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise MevqaError(f"{path}:{number}: malformed log line ({detail}); this file was not written by a run of "
                             "this command: delete it to start over") from None
        if not isinstance(record, dict):
            raise MevqaError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    return records


class LogAppender:
    """The writing side of an append-only jsonl log (``predictions.jsonl``, ``videos.jsonl``, ``train_log.jsonl``).

    Opening it cuts a torn last line first (:func:`drop_torn_line`), so the first line this run adds starts on a
    line of its own; ``fresh`` starts the file empty instead (a log of the last run only, ``errors.jsonl``). Each
    record is written as one whole line; :meth:`sync` flushes what was added to the disk (a batch's lines, then one
    sync), :meth:`append` is one line synced at once. Use it as a context manager; closing syncs."""

    def __init__(self, path: str | os.PathLike, *, fresh: bool = False):
        self.path = Path(path)
        if not fresh:
            drop_torn_line(self.path)
        try:
            self.handle: IO[str] = self.path.open("w" if fresh else "a", encoding="utf-8")
        except OSError as exc:
            raise MevqaError(f"{self.path}: cannot write the log ({exc.strerror})") from None

    def add(self, record: dict) -> None:
        """Write one line (not yet synced: call :meth:`sync` when the piece of work it records is done)."""
        try:
            line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        except ValueError as exc:  # NaN or infinity: not JSON, and no reader could take it back
            raise MevqaError(f"{self.path}: cannot log a record with {exc}: {record!r:.200}") from None
        self.handle.write(line + "\n")

    def sync(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def append(self, record: dict) -> None:
        """One line, on the disk before this returns, so that a kill loses at most the line being written."""
        self.add(record)
        self.sync()

    def close(self) -> None:
        if not self.handle.closed:
            try:
                self.sync()
            finally:
                self.handle.close()

    def __enter__(self) -> "LogAppender":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --- run records --------------------------------------------------------------------------------------------------
def differences(before: dict, now: dict, *, by_digest: Iterable[str] = (), prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two run records, nested mappings compared entry by entry.

    Under a key named in ``by_digest`` (``weights``), a mapping that carries ``sha256`` is compared by that digest
    alone (the file's path or time may change, its content may not)."""
    by_digest = tuple(by_digest)
    changed = []
    for key in sorted(set(before) | set(now), key=str):
        a, b = before.get(key), now.get(key)
        name = f"{prefix}{key}"
        digested = any(prefix.startswith(f"{part}.") or f".{part}." in prefix for part in by_digest)
        if digested and isinstance(a, dict) and isinstance(b, dict) and "sha256" in b:
            if a.get("sha256") != b["sha256"]:
                changed.append(name)
        elif isinstance(a, dict) and isinstance(b, dict):
            changed += differences(a, b, by_digest=by_digest, prefix=f"{name}.")
        elif a != b:
            changed.append(name)
    return changed


# --- stale outputs ------------------------------------------------------------------------------------------------
def set_aside(paths: Iterable[str | os.PathLike], why: str) -> list[Path]:
    """Rename the existing ``paths`` to ``<name>.stale-<YYYYmmdd-HHMMSS>`` (``-<n>`` added where that name is taken;
    one suffix for all of them, so they stay recognisably one set); returns the new paths. Call before any output
    they describe is touched, so a stopped rebuild never leaves rows whose record differs from what they point at."""
    paths = [Path(path) for path in paths if Path(path).exists()]
    if not paths:
        return []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = f"{STALE}-{stamp}"
    for n in range(1, 1000):
        if not any(path.with_name(f"{path.name}.{suffix}").exists() for path in paths):
            break
        suffix = f"{STALE}-{stamp}-{n}"
    moved = []
    for path in paths:
        aside = path.with_name(f"{path.name}.{suffix}")
        try:
            path.rename(aside)
        except OSError as exc:
            raise MevqaError(f"{path}: cannot set it aside before rebuilding ({exc.strerror})") from None
        moved.append(aside)
    log.warning("%s: %s; set aside %s before rebuilding", paths[0].parent, why, ", ".join(p.name for p in moved))
    return moved


# --- whole folders ------------------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no other portable way)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a new temporary folder beside ``target``, private to this run; when the block succeeds it becomes
    ``target``. An existing ``target`` is replaced (moved aside, then removed) with ``replace``; without, only an
    empty one is (a concurrent writer's folder is refused). On failure the temporary folder is removed and
    ``target`` is as it was. The temporary folders are named with the writer's process id, so the folders a killed
    writer left (``kill -9`` runs no clean-up) are removed by the next one (:func:`remove_killed_folders`)."""
    target = Path(target)
    remove_killed_folders(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise MevqaError(f"{target}: cannot write the folder ({exc.strerror})") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; give it a plain mkdir's mode
        try:
            replace_folder(tmp, target, replace=replace)
        except OSError as exc:
            raise MevqaError(f"{target}: cannot replace the folder ({exc.strerror}); nothing was changed") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_killed_folders(target: str | os.PathLike) -> None:
    """Remove the temporary folders (``.<name>.<pid>-*.tmp`` / ``.old``) that a writer of ``target`` killed before
    its end left beside it. A folder whose process still runs belongs to a writer at work and is kept."""
    target = Path(target)
    for stale in sorted(target.parent.glob(f".{glob.escape(target.name)}.*-*.tmp")) + \
            sorted(target.parent.glob(f".{glob.escape(target.name)}.*-*.old")):
        pid = stale.name[len(target.name) + 2:].split("-", 1)[0]
        if not pid.isdigit() or not stale.is_dir() or _process_runs(int(pid)):
            continue
        log.info("removing %s, left by a run that was stopped", stale)
        shutil.rmtree(stale)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: digits no process id can have
        return False
    except PermissionError:  # another user's process
        return True
    return True


def replace_folder(new: str | os.PathLike, target: str | os.PathLike, *, replace: bool = True) -> None:
    """Put the finished folder ``new`` at ``target`` by renames only (same file system): an existing ``target`` is
    moved aside, ``new`` renamed into its place, then the old one removed; if the rename fails the old one is put
    back. Without ``replace`` only an empty ``target`` is replaced. (:func:`atomic_folder` ends with this; a
    multi-process writer such as the trainer, whose processes all write ``new`` first, calls it on the main one.)"""
    new, target = Path(new), Path(target)
    if target.exists() and not replace:
        try:
            target.rmdir()
        except OSError:
            raise MevqaError(f"{target}: another run wrote here meanwhile; remove it or choose another folder") \
                from None
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".old", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        new.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old)
