"""QA rows: the one row type, the one reader, the one row id, and where a row's media may live.

Public API::

    QARow                                   # the row type (a TypedDict: rows stay plain dicts for every consumer)
    read_rows(paths, *, required=("question",), unique=True) -> list[QARow]
    row_id(row) -> str                      # "id", else "video_id"
    clip_of(row) -> str, clip_key(row) -> tuple     # the clip a row asks about (the one clip rule)
    cell_int(value, where, what) -> int     # an integer frame number from a sheet cell or a row field
    where(row) -> str                       # "file:line" for messages
    resolve_media(row, base_dir, where) -> row      # media paths made absolute, confined and checked
    relative_media(media, target_dir) -> dict       # the inverse, for writing rows into another folder
    media_settings_of(rows) -> dict | None  # the one media settings record the rows' media were built with
    clip_name(value, where) -> str          # a clip named in a question file: one plain folder or file name

A QA row is the official row (training-style ``id, dataset, image_id, subject, filename, question, answer``;
test-style ``video_id, video, question, answer``) plus mevqa's optional ``clip`` and ``media`` (docs/design.md). Rows
read by :func:`read_rows` carry ``_file`` and ``_line``, so every message names the real file and line.

Where media may live (checked on every read):

- a row's media paths are relative to its *media root*: ``media.root``, itself relative to the folder of the jsonl
  file that holds the row; without ``media.root`` the root is that folder (``mevqa build-data`` writes
  ``OUT/qa.jsonl`` with its media under ``OUT/media/``);
- every path, joined to the root and normalised, must lie under the root: ``..`` or an absolute path that leaves it
  is an error, so a row file cannot make mevqa read files from elsewhere;
- a root other than the file's own folder must be the output folder of a build (it holds ``build.json``): that is
  how ``mevqa split`` writes folds whose rows keep their media in the build folder they came from. The row's
  ``media.settings`` must be the ``media_settings`` that ``build.json`` records: a build rebuilt with other settings
  after the folds were written has other media under the same paths.

In memory, after reading, the root and the media paths are absolute; :func:`relative_media` turns them back.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Iterable, TypedDict

from mevqa.dataset_facts import row_dataset
from mevqa.errors import MevqaError
from mevqa.jsonl import read_json, read_jsonl

BUILD_RECORD = "build.json"          # marks a build-data output folder (a valid media root)
MEDIA_PATH_FIELDS = ("frames", "image", "arrays")
MEDIA_RECORDS = ("root", "settings")  # media keys that describe the media instead of holding files


class QARow(TypedDict, total=False):
    id: str                 # training-style rows
    dataset: str
    image_id: str
    subject: str
    filename: str
    video_id: str           # test-style rows
    video: str              # the clip's folder or video file name under --clips / --root
    question: str
    answer: str
    clip: dict              # onset, apex, offset, apex_method, fps, aus, emotion (docs/design.md)
    media: dict             # input files per mode, the settings they were built with, their root
    _file: str              # the file the row was read from
    _line: int              # its 1-based line


def where(row: dict, default: str = "<rows>") -> str:
    """``file:line`` of a row read by :func:`read_rows` (or ``default``/its file when it has no line)."""
    line = row.get("_line")
    return f"{row.get('_file', default)}:{line}" if line is not None else str(row.get("_file", default))


def row_id(row: dict) -> str:
    """The row's id: ``id`` for training-style rows, ``video_id`` for test-style rows."""
    value = row.get("id", row.get("video_id"))
    if not isinstance(value, str) or not value.strip():
        raise MevqaError(f"{where(row)}: expected a non-empty string 'id' or 'video_id', got {value!r}")
    return value


def clip_of(row: dict) -> str:
    """The clip a row belongs to: ``image_id``, else ``video``, else its id without the trailing ``_<k>``.

    The one clip rule: the scorer resamples these clips (:mod:`mevqa.eval.bootstrap`), the answer strategies and
    folds group by them (:func:`clip_key`)."""
    for key in ("image_id", "video"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    rid = row_id(row)
    stem, sep, k = rid.rpartition("_")
    return stem if sep and stem and k.isdigit() else rid


def clip_key(row: dict) -> tuple:
    """The clip a row asks about: ``(dataset, clip)``, the clip by :func:`clip_of`, with the row's dataset
    (:func:`mevqa.dataset_facts.row_dataset`), so equal names in two datasets differ."""
    return (row_dataset(row) or str(row.get("dataset", "")), clip_of(row))


def cell_int(value, where: str, what: str) -> int:
    """An integer frame number written in a sheet cell or a row field (``46``, ``46.0``, ``"46"``)."""
    if isinstance(value, bool) or value is None:
        raise MevqaError(f"{where}: {what} is empty, expected an integer frame number")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise MevqaError(f"{where}: {what} is {value!r}, expected an integer frame number") from None
    if not number.is_integer():
        raise MevqaError(f"{where}: {what} is {value!r}, expected an integer frame number")
    return int(number)


def clip_name(value, where: str, what: str = "clip") -> str:
    """``value`` if it is one plain folder or file name: a non-empty string, not ``.`` or ``..``, without a path
    separator (so not absolute either). The clip it names then lies directly under the folder given."""
    separators = {"/", "\\", os.sep, os.altsep or "/", "\0"}
    if not isinstance(value, str) or not value.strip() or value in (".", "..") \
            or any(sep in value for sep in separators):
        raise MevqaError(f"{where}: {what} name {value!r} must be one plain folder or file name (not absolute, "
                         "not . or .., no path separator)")
    return value


def media_paths(media: dict):
    """``(mode key, field, index or None, path)`` for every file path in a row's media dict."""
    for key, entry in media.items():
        if key in MEDIA_RECORDS or not isinstance(entry, dict):
            continue
        for name, value in entry.items():
            if name not in MEDIA_PATH_FIELDS:
                continue
            if isinstance(value, list):
                for i, path in enumerate(value):
                    yield key, name, i, path
            else:
                yield key, name, None, value


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def resolve_media(row: dict, base_dir, where: str) -> dict:
    """Make the media paths of ``row`` absolute against its media root (see the module docstring), check that each
    stays under the root and exists. ``base_dir`` is the folder of the file holding the row (for rows built in code:
    the folder their paths are relative to); ``where`` names the row in errors. Returns ``row`` with a new ``media``
    dict (a dict shared between rows is not changed)."""
    media = row.get("media")
    if media is None:
        return row
    if not isinstance(media, dict):
        raise MevqaError(f"{where}: media must be an object, got {type(media).__name__}")
    base = os.path.normpath(os.path.abspath(base_dir))
    root_value = media.get("root", ".")
    if not isinstance(root_value, str) or not root_value:
        raise MevqaError(f"{where}: media.root must be a folder path, got {root_value!r}")
    root = os.path.normpath(os.path.join(base, root_value))
    if root != base:
        record = os.path.join(root, BUILD_RECORD)
        if not os.path.isfile(record):
            raise MevqaError(f"{where}: media.root {root_value} ({root}) is not the output folder of a build (no "
                             f"{BUILD_RECORD}); media may only live beside the row file or in the build that made "
                             "them")
        built = _build_settings(record, os.stat(record).st_mtime_ns)
        if "settings" in media and media["settings"] != built:
            raise MevqaError(f"{where}: media built with {_describe(media['settings'], built)}, but the build in "
                             f"{root} now holds media built with {_describe(built, media['settings'])} (it was "
                             "rebuilt after this file was written); split the build's new qa.jsonl again")
    resolved = _copy(media)
    resolved["root"] = root
    for key, name, index, path in list(media_paths(media)):
        label = f"media.{key}.{name}" + (f"[{index}]" if index is not None else "")
        if not isinstance(path, str) or not path:
            raise MevqaError(f"{where}: {label} must be a file path, got {path!r}")
        full = os.path.normpath(os.path.join(root, path))
        if not _inside(full, root):
            raise MevqaError(f"{where}: {label} {path} lies outside the media root {root}; media paths must stay "
                             "under the folder of the file that holds them (or the build recorded in media.root)")
        if not os.path.exists(full):
            raise MevqaError(f"{where}: {label} {path} does not exist (looked for {full})")
        real = os.path.realpath(full)
        if not _inside(real, real_root := os.path.realpath(root)):  # a symlink is confined by where it points
            raise MevqaError(f"{where}: {label} {path} is a link to {real}, outside the media root {real_root}; "
                             "media must lie under the root, not only their links")
        if index is None:
            resolved[key][name] = full
        else:
            resolved[key][name][index] = full
    return {**row, "media": resolved}


def build_record(folder: str | os.PathLike) -> dict | None:
    """What a build folder's ``build.json`` records (``build-data``, ``build-spot``), None when there is none; a
    damaged one is one line naming it (:func:`mevqa.jsonl.read_json`)."""
    path = Path(folder) / BUILD_RECORD
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict):
        raise MevqaError(f"{path}: expected a JSON object (a build record), got {type(record).__name__}; rebuild")
    return record


@functools.lru_cache(maxsize=64)
def _build_settings(path: str, mtime_ns: int) -> dict | None:
    """The ``media_settings`` a build's ``build.json`` records (read once per version of the file)."""
    try:
        record = build_record(Path(path).parent)
    except OSError as exc:
        raise MevqaError(f"{path}: unreadable build record ({exc.strerror}); rebuild with mevqa build-data") from None
    return record.get("media_settings") if record is not None else None


def _copy(media: dict) -> dict:
    """A copy of a media dict whose entries and path lists can be changed without touching the original."""
    return {key: ({name: list(value) if isinstance(value, list) else value for name, value in entry.items()}
                  if isinstance(entry, dict) else entry) for key, entry in media.items()}


def relative_media(media: dict, target_dir) -> dict:
    """Resolved ``media`` (absolute paths and root) written for a row file in ``target_dir``: paths relative to the
    root, and the root relative to ``target_dir`` (left out when it is ``target_dir`` itself)."""
    root = media["root"]
    out = _copy(media)
    del out["root"]
    for key, name, index, path in list(media_paths(media)):
        relative = Path(os.path.relpath(path, root)).as_posix()
        if index is None:
            out[key][name] = relative
        else:
            out[key][name][index] = relative
    rel_root = Path(os.path.relpath(root, os.path.abspath(target_dir))).as_posix()
    if rel_root != ".":
        out["root"] = rel_root
    return out


def read_rows(paths, *, required: Iterable[str] = ("question",), unique: bool = True,
              check_media: bool = True) -> list[QARow]:
    """The rows of one or more QA jsonl files, in order, each with ``_file`` and ``_line``.

    Checked, with errors naming ``file:line``: the lines (:func:`mevqa.jsonl.read_jsonl`: UTF-8, JSON objects,
    finite numbers), the ``required`` fields, an id on every row (:func:`row_id`), a non-empty ``question`` string
    where ``question`` is required, a string ``answer`` where there is one, ids unique across all the files
    (``unique``), and every media path (:func:`resolve_media`, which makes them absolute; ``check_media=False``
    leaves media as written, for readers that never open them, such as scoring and submission files).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    required = tuple(required)
    rows: list[QARow] = []
    seen: dict[str, str] = {}
    for path in map(Path, paths):
        for row in read_jsonl(path, required=required):
            row["_file"] = str(path)
            here = where(row)
            rid = row_id(row)
            if "question" in required and (not isinstance(row["question"], str) or not row["question"].strip()):
                raise MevqaError(f"{here}: expected a non-empty 'question' string, got {row['question']!r}")
            if "answer" in row and not isinstance(row["answer"], str):
                raise MevqaError(f"{here}: expected 'answer' to be a string, got {row['answer']!r}")
            if unique:
                if rid in seen:
                    raise MevqaError(f"{here}: duplicate id {rid!r} (first at {seen[rid]})")
                seen[rid] = here
            rows.append(resolve_media(row, path.parent, here) if check_media else row)
    return rows


def refuse_empty_files(paths, rows: Iterable[dict], what: str) -> None:
    """One line naming the first of ``paths`` that gave none of ``rows`` (read by :func:`read_rows`): an empty file
    among several (cut short, or the wrong one) would otherwise drop out of a run without a word."""
    given = {row["_file"] for row in rows}
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        if str(Path(path)) not in given:
            raise MevqaError(f"{path}: no {what}")


def media_settings_of(rows: Iterable[dict]) -> dict | None:
    """The one media settings record (``media.settings``, keyed by the build-data option names) shared by the rows
    that have media; None when no row has media. Rows whose media carry no record (written by hand or by an older
    mevqa) count as built with unknown settings. A row that differs from the first raises one line naming both."""
    first = None
    for row in rows:
        media = row.get("media")
        if not media:
            continue
        record = media.get("settings")
        if first is None:
            first = (row, record)
        elif record != first[1]:
            raise MevqaError(f"{where(row)}: media built with {_describe(record, first[1])}, but {where(first[0])} "
                             f"with {_describe(first[1], record)}; rows built with different media settings "
                             "cannot be mixed (rebuild them with one set of build-data options)")
    return None if first is None else first[1]


def _describe(record: dict | None, other: dict | None) -> str:
    if not isinstance(record, dict):
        return "unrecorded settings"
    other = other if isinstance(other, dict) else {}
    keys = [key for key in record if record.get(key) != other.get(key)] or list(record)
    return ", ".join(f"{key} {record.get(key)!r}" for key in keys)
