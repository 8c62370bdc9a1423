"""Reading annotation sheets as distributed, and finding clip folders in the datasets' real layouts.

Sheets are matched by column *name*, never position: the header row is the first of the top 40 rows that holds
every required column (so SAMM's 13 notes rows and a header on row 1 both work). Names compare case-insensitively
with spaces collapsed and a trailing apostrophe dropped (4DME's ``video emo'``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mevqa.errors import MevqaError
from mevqa.rows import cell_int, clip_name  # noqa: F401 (cell_int: the builders read sheet cells with it)

HEADER_SCAN_ROWS = 40


def _norm(name) -> str:
    return " ".join(str(name).strip().rstrip("'").lower().split())


def is_blank(value) -> bool:
    return value is None or (isinstance(value, float) and value != value) or (isinstance(value, str)
                                                                               and not value.strip())


@dataclass
class SheetRow:
    values: dict            # field -> cell value
    where: str              # "file row N" (N = the spreadsheet's own 1-based row number)


def read_sheet(path: str | Path, columns: dict[str, tuple[str, ...]], *, sheet: str | None = None,
               optional: tuple[str, ...] = ()) -> list[SheetRow]:
    """Rows of an xlsx/xls/csv sheet as ``{field: value}``, each field found under one of its accepted headers.

    ``columns`` maps a field to the header names accepted for it; fields in ``optional`` may be absent. Rows whose
    cells for the required fields are all blank (notes, spacers, trailing text) are skipped.
    """
    import pandas as pd  # lazy: pandas (half a second), only to read a sheet

    path = Path(path)
    if not path.is_file():
        what = "is a folder, expected the annotation file" if path.is_dir() else "annotation file not found"
        raise MevqaError(f"{path}: {what}")
    try:
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path, header=None, dtype=object)
        else:
            with pd.ExcelFile(path) as book:
                name = sheet if sheet in book.sheet_names else book.sheet_names[0]
                table = book.parse(name, header=None, dtype=object)
    except Exception as exc:  # noqa: BLE001 - a damaged workbook surfaces as any of a dozen reader exceptions
        # (zip, XML, xlrd, openpyxl, codec errors); each is the same fact for the user: the file cannot be read.
        detail = " ".join(str(exc).split())[:200]
        raise MevqaError(f"{path}: cannot read the annotation sheet ({type(exc).__name__}: {detail}); expected "
                         "an intact xlsx, xls or csv file") from None
    required = [f for f in columns if f not in optional]
    best: tuple[int, int, list] = (-1, -1, [])
    for index in range(min(HEADER_SCAN_ROWS, len(table))):
        cells = [_norm(v) if not is_blank(v) else "" for v in table.iloc[index].tolist()]
        found = {f: next((cells.index(_norm(n)) for n in names if _norm(n) in cells), None)
                 for f, names in columns.items()}
        hits = sum(found[f] is not None for f in required)
        if hits > best[0]:
            best = (hits, index, table.iloc[index].tolist())
        if hits == len(required):
            header_index, positions = index, {f: p for f, p in found.items() if p is not None}
            break
    else:
        _, index, header = best
        seen = [str(v).strip() for v in header if not is_blank(v)]
        missing = [f"{columns[f][0]}" for f in required
                   if not any(_norm(n) in [_norm(s) for s in seen] for n in columns[f])]
        raise MevqaError(f"{path}: missing column(s) {', '.join(missing)}; the header row found"
                         f"{f' (row {index + 1})' if index >= 0 else ''} has: {', '.join(seen) or 'nothing'}")
    rows = []
    for index in range(header_index + 1, len(table)):
        raw = table.iloc[index].tolist()
        values = {f: (None if is_blank(raw[p]) else raw[p]) for f, p in positions.items()}
        if all(values.get(f) is None for f in required):
            continue
        rows.append(SheetRow(values, f"{path.name} row {index + 1}"))
    return rows


def cell_text(value) -> str:
    """A text cell with int-looking floats written as ints (``6.0`` -> ``6``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def clip_dir(root: Path | None, *parts: str, where: str = "") -> Path | None:
    """The clip folder ``root/parts...`` as found on disk (:func:`find_dir`), else the path where it should be
    (reported as missing when its frames are needed); None without a root. Each part must be one plain folder name
    (sheet cells name them), so the folder lies under ``root``."""
    for part in parts:
        clip_name(part, where or str(root), "folder")
    if root is None:
        return None
    return find_dir(root, *parts) or root.joinpath(*parts)


def find_dir(root: Path, *parts: str, case_insensitive: bool = True) -> Path | None:
    """``root/parts...``, matching each part case-insensitively, also where the archive unpacked into a doubled
    top folder (``CASME2_RAW_selected/CASME2_RAW_selected/``)."""
    starts = [root] + [child for child in sorted(root.iterdir()) if child.is_dir()] if root.is_dir() else []
    for start in starts:
        current: Path | None = start
        for part in parts:
            current = _child(current, part, case_insensitive)
            if current is None:
                break
        if current is not None:
            return current
    return None


def _child(folder: Path, name: str, case_insensitive: bool) -> Path | None:
    exact = folder / name
    if exact.exists():
        return exact
    if not case_insensitive or not folder.is_dir():
        return None
    lowered = name.lower()
    return next((child for child in folder.iterdir() if child.name.lower() == lowered), None)


def number_in(text: str, where: str, what: str) -> int:
    digits = re.findall(r"\d+", str(text))
    if not digits:
        raise MevqaError(f"{where}: {what} {text!r} has no number")
    return int(digits[-1])
