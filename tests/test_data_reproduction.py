"""Reproduction of the official MEGC2025 training file.

From annotation sheets re-created out of the official file (per clip: subject, filename, AU codes with the
laterality the file asks about, emotion), in the real sheet layouts, the builders must give the official C, F, A,
LR and X rows for all 133 SAMM and 145 CASME II clips (and the C rows of all 164 SMIC clips, from folders named as
on disk), and Y rows that ask a present AU for yes and an absent one for no.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import cv2
import numpy as np
import pytest

from mevqa import vocab
from mevqa.data_builders.build import BuildOptions, build_dataset
from mevqa.media import MediaSettings
from mevqa.data_builders.synth import _write_xlsx
from mevqa.jsonl import read_jsonl

from conftest import OFFICIAL_TRAIN

CASME2_SHEET_EMOTION = str.lower   # the sheets spell emotions lower case (CASME II) or capitalised (SAMM)
SAMM_SHEET_EMOTION = str.capitalize


@pytest.fixture(scope="module")
def official_clips(public_data):
    clips: dict[tuple[str, str], list[dict]] = OrderedDict()
    for row in read_jsonl(OFFICIAL_TRAIN):
        clips.setdefault((row["dataset"], row["image_id"]), []).append(row)
    return clips


def sheet_aus(rows: list[dict]) -> str | int:
    """The AU cell of a clip: codes in the official order, the LR-questioned AU with its L/R prefix."""
    names = next(r["answer"] for r in rows if vocab.question_kind(r["question"]) == vocab.AU).split(", ")
    lateral = next(((vocab.question_au(r["question"]), r["answer"]) for r in rows
                    if vocab.question_kind(r["question"]) == vocab.LATERALITY), None)
    parts = []
    for name in names:
        prefix = lateral[1][0].upper() if lateral and lateral[0] == name else ""
        parts.append(f"{prefix}{vocab.AU_CODES[name]}")
    return int(parts[0]) if len(parts) == 1 and parts[0].isdigit() else "+".join(parts)


def answer_of(rows, kind):
    return next(r["answer"] for r in rows if vocab.question_kind(r["question"]) == kind)


def write_sheets(official_clips, folder):
    casme2 = [["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
               "Estimated Emotion"]]
    samm = [[f"note {i}" if i % 3 else None] for i in range(13)] + [[
        "Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration", "Micro",
        "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]]
    for (dataset, _), rows in official_clips.items():
        first = rows[0]
        if dataset == "casme2":
            casme2.append([int(first["subject"][3:]), first["filename"], None, 10, "/" if len(casme2) % 7 == 0
                           else 15, 20, None, sheet_aus(rows), CASME2_SHEET_EMOTION(answer_of(rows, vocab.FINE))])
        elif dataset == "samm":
            samm.append([int(first["subject"]), first["filename"], 1, 100, 105, 110, 11, "Micro - 1/2",
                         sheet_aus(rows), SAMM_SHEET_EMOTION(answer_of(rows, vocab.FINE)), 1, None])
    _write_xlsx(folder / "CASME2-coding-20140508.xlsx", casme2)
    _write_xlsx(folder / "SAMM_Micro_FACS_Codes_v2.xlsx", samm)


def check_clip(built: list[dict], official: list[dict]) -> None:
    assert [r["id"] for r in built] == [r["id"] for r in official]
    for mine, theirs in zip(built, official):
        for key in ("dataset", "image_id", "subject", "filename"):
            assert mine[key] == theirs[key]
        kind = vocab.question_kind(theirs["question"])
        if kind == vocab.PRESENCE:
            assert vocab.question_kind(mine["question"]) == vocab.PRESENCE and mine["answer"] == theirs["answer"]
            names = answer_of(official, vocab.AU).split(", ")
            asked = vocab.question_au(mine["question"])
            assert (asked in names) == (mine["answer"] == "yes"), mine
            assert asked in vocab.AU_CODES
        else:
            assert (mine["question"], mine["answer"]) == (theirs["question"], theirs["answer"]), mine["id"]


@pytest.mark.parametrize("dataset, clips", [("casme2", 145), ("samm", 133)])
def test_sheets_reproduce_the_official_rows(official_clips, tmp_path, dataset, clips):
    write_sheets(official_clips, tmp_path)
    sheet = tmp_path / {"casme2": "CASME2-coding-20140508.xlsx", "samm": "SAMM_Micro_FACS_Codes_v2.xlsx"}[dataset]
    build_dataset(dataset, tmp_path / "out", annotations=sheet,
                  options=BuildOptions(media=MediaSettings(modes=()), progress=False))
    built: dict[str, list[dict]] = OrderedDict()
    for row in read_jsonl(tmp_path / "out" / "qa.jsonl"):
        built.setdefault(row["image_id"], []).append(row)
    official = OrderedDict((image_id, rows) for (d, image_id), rows in official_clips.items() if d == dataset)
    assert len(official) == clips and list(built) == list(official)
    for image_id, rows in official.items():
        check_clip(built[image_id], rows)
    lateral = sum(vocab.question_kind(r["question"]) == vocab.LATERALITY for rows in built.values() for r in rows)
    assert lateral == {"casme2": 41, "samm": 30}[dataset]


def test_official_mode_keeps_the_official_rows_and_adds_clip_metadata(official_clips, tmp_path):
    write_sheets(official_clips, tmp_path)
    build_dataset("casme2", tmp_path / "out", annotations=tmp_path / "CASME2-coding-20140508.xlsx",
                  official=OFFICIAL_TRAIN, options=BuildOptions(media=MediaSettings(modes=()), progress=False))
    rows = read_jsonl(tmp_path / "out" / "qa.jsonl")
    official = [r for clip in official_clips.values() for r in clip if r["dataset"] == "casme2"]
    assert len(rows) == len(official) == 911
    for mine, theirs in zip(rows, official):
        assert {k: mine[k] for k in theirs if k != "_line"} == {k: v for k, v in theirs.items() if k != "_line"}
        assert mine["clip"]["onset"] == 10 and mine["clip"]["offset"] == 20


def test_smic_folders_reproduce_the_official_coarse_rows(official_clips, tmp_path):
    codes = {"ne": "negative", "po": "positive", "sur": "surprise"}
    frame = np.zeros((8, 8, 3), np.uint8)
    official = [(image_id, rows) for (d, image_id), rows in official_clips.items() if d == "smic"]
    for image_id, _ in official:
        subject, code, index = re.match(r"s(\d+)_(ne|po|sur)_(\d+)", image_id).groups()
        folder = (tmp_path / "SMIC_all_cropped" / "HS" / f"s{int(subject)}" / "micro" / codes[code] /
                  f"s{int(subject)}_{code}_{index}")
        folder.mkdir(parents=True)
        for n in (120, 121, 122):
            cv2.imwrite(str(folder / f"reg_image{n:06d}.bmp"), frame)
    build_dataset("smic", tmp_path / "out", root=tmp_path / "SMIC_all_cropped",
                  options=BuildOptions(media=MediaSettings(modes=()), progress=False))
    rows = read_jsonl(tmp_path / "out" / "qa.jsonl")
    assert len(official) == 164
    mine = {r["id"]: r for r in rows}
    for _, (theirs,) in official:
        got = mine[theirs["id"]]
        assert {k: got[k] for k in ("dataset", "image_id", "subject", "filename", "question", "answer")} == {
            k: theirs[k] for k in ("dataset", "image_id", "subject", "filename", "question", "answer")}
        assert got["clip"]["fps"] == 100.0 and got["clip"]["apex"] == 121
    assert len(rows) == 164
