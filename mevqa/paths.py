"""The rule that no command writes onto what it reads, and the argument types shared by every command.

:func:`refuse_outputs_onto_inputs` is called by every command that writes, before it writes anything (not even an
output folder is made first). Paths are compared after resolving symlinks, so a link to an input is the input. The
rule, for each output path ``O`` the command writes or replaces and each path ``I`` it reads:

- ``O`` is ``I`` (``mevqa eval --json GOLD`` would replace the gold file);
- ``O`` lies inside ``I`` where ``I`` is a folder read as data (``build-data --out`` inside ``--root``, ``predict
  --out`` inside ``--clips``): writing there changes what the command, or its next run, reads;
- ``I`` lies inside ``O`` where ``O`` is written or replaced whole (``export --out`` replaced by the export of rows
  that live in it, ``split --out`` whose ``fold_0/train.jsonl`` is the ``--data`` being split).

A command that only adds named files to a folder passes the folder in ``into`` (checked against the first two
rules) and the named files in ``outputs``, so a question file that merely sits in ``predict --out`` stays allowed.

The module imports only :mod:`mevqa.errors` and the standard library, so every layer may use it.
"""

from __future__ import annotations

import errno
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping, Union

from mevqa.errors import MevqaError

PathsArg = Union[str, os.PathLike, Iterable[Union[str, os.PathLike, None]], None]

SEED_MAX = 2**32 - 1  # numpy, torch and sklearn all take seeds in 0..2**32-1


def _flatten(named: Mapping[str, PathsArg]) -> list[tuple[str, Path]]:
    pairs = []
    for flag, value in named.items():
        values = [value] if value is None or isinstance(value, (str, os.PathLike)) else list(value)
        pairs.extend((flag, Path(v)) for v in values if v is not None and str(v) != "")
    return pairs


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and folder in path.parents


def refuse_outputs_onto_inputs(*, outputs: Mapping[str, PathsArg] = {}, inputs: Mapping[str, PathsArg],
                               into: Mapping[str, PathsArg] = {}) -> None:
    """Raise one line when an output would overwrite, replace or land inside something the command reads.

    ``outputs``: flag -> path(s) written or replaced whole (files, and folders whose content the command owns);
    ``into``: flag -> folder(s) the command adds named files to (pass those files in ``outputs``); ``inputs``: flag
    -> path(s) read (files, and folders read as data; a path that does not exist, such as a hub model id, is
    skipped). Nothing is created or written here."""
    read = [(flag, path, _resolved(path)) for flag, path in _flatten(inputs) if os.path.lexists(path)]
    # The folders first: "--out is the input --folds" says more than "--out/cv.json lies inside --folds".
    written = [(flag, path, _resolved(path), False) for flag, path in _flatten(into)]
    written += [(flag, path, _resolved(path), True) for flag, path in _flatten(outputs)]
    for out_flag, out, real_out, whole in written:
        for in_flag, source, real_in in read:
            if real_out == real_in:
                raise MevqaError(f"{out}: {out_flag} is the input {in_flag} {source}"
                                 f"{_via_link(out, source, real_in)}; writing there would change the input, choose "
                                 "another path")
            if _inside(real_out, real_in) and real_in.is_dir():
                raise MevqaError(f"{out}: {out_flag} lies inside {in_flag} {source}, a folder this command reads as "
                                 "data; choose an output outside it")
            if whole and _inside(real_in, real_out):
                raise MevqaError(f"{out}: {out_flag} holds the input {in_flag} {source}, which writing it would "
                                 "replace; choose another output")


def _via_link(out: Path, source: Path, real: Path) -> str:
    return f" (both resolve to {real})" if out.absolute() != source.absolute() else ""


def seed(text: str) -> int:
    """argparse type of every ``--seed``: an integer in 0..2**32-1, the range numpy, torch and sklearn accept. A bad
    value raises :class:`MevqaError` (one line, exit 2: :func:`mevqa.cli.main` reports errors of parsing too)."""
    try:
        value = int(text)
    except ValueError:
        raise MevqaError(f"--seed must be an integer between 0 and {SEED_MAX}, got {text!r}") from None
    return check_seed(value)


def check_seed(value, what: str = "--seed") -> int:
    """The same range for a seed given in code or a config file."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise MevqaError(f"{what} must be an integer between 0 and {SEED_MAX} (2**32 - 1), got {value!r}")
    return value


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, reports a full disk: an ``OSError`` with ``ENOSPC``, or a
    library's own error carrying the system's message (safetensors raises ``SafetensorError("... No space left on
    device ...")``; datasets wraps the ``OSError`` in its ``DatasetGenerationError``)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc) \
                or "StorageFull" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# --- what a command runs in a child process ---------------------------------------------------------------------
def console_command(name: str, module: str, subcommand: Iterable[str] = ()) -> list[str]:
    """The console script ``name`` beside this Python (the venv's) followed by ``subcommand``; where there is none,
    ``python -m module``, a module that is that command with its subcommand already chosen."""
    script = Path(sys.executable).parent / name
    return [str(script), *subcommand] if script.is_file() else [sys.executable, "-m", module]


def recipe_path(recipe: str) -> Path:
    """``<recipe>.py`` (``lora``, ``full``) of the installed ``mevqa.recipes`` package, which training launches."""
    path = Path(str(resources.files("mevqa.recipes"))) / f"{recipe}.py"
    if not path.is_file():
        raise MevqaError(f"{path}: missing from the installed mevqa.recipes package (reinstall mevqa)")
    return path
