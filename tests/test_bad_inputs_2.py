"""The second hostile-input campaign (issue 20): each case runs the real command line (``mevqa.cli.main``) and must
end with exit status 2, one stderr line ``mevqa <command>: error: ...`` naming the file, row, field or option, and an
unchanged disk, as the first table (``tests/test_bad_inputs.py``) requires. Outputs pointed at inputs have their own
table (``tests/test_outputs_onto_inputs.py``); the cases whose right result is not an error follow the table.

A case is ``(id, builder)``; a builder gets a :class:`Case` and returns ``(argv, text the error line must contain)``.
It may prepare files in its folder first (a damaged sheet, a killed run's leftovers); the disk is compared from the
moment it returns. docs/reliability.md reports how many cases there are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT
from mevqa.cli import main
from test_bad_inputs import RANK1, Case, assert_refused, shared  # noqa: F401 (shared: the module's fixture)

SEED_RANGE = "--seed must be an integer between 0 and 4294967295 (2**32 - 1)"


def _zero_shot(case: Case) -> Path:
    return case.file("zs.yaml", f"model_name_or_path: {case.model}\ndtype: float32\ninputs: oao\nnum_train_epochs: 0\n")


def _folds(case: Case) -> Path:
    assert main(["split", "--data", str(case.data / "qa.jsonl"), "--scheme", "kfold:2", "--out",
                 str(case.tmp / "folds")]) == 0
    return case.tmp / "folds"


def _edited_fold(case: Case) -> tuple[list[str], str]:
    """A cv whose runs were made over the folds (its cv.json records them), then a fold file edited."""
    from mevqa.experiments import cv

    folds, out = _folds(case), case.tmp / "cv"
    out.mkdir()
    (out / cv.LOCK).touch()
    cv.check_settings(out, folds, [], [])
    val = folds / "fold_1" / "val.jsonl"
    val.write_text("".join(val.read_text().splitlines(keepends=True)[1:]))  # one held-out row fewer
    return (["cv", "--config", str(_zero_shot(case)), "--folds", str(folds), "--out", str(out)],
            f"{val}: changed since the runs in {out} were made over it")


def _gpus_without_cuda(case: Case) -> tuple[list[str], str]:
    count = torch.cuda.device_count()
    message = ("this machine has no CUDA device" if count == 0 else f"GPU {count} does not exist")
    return (["cv", "--config", str(_zero_shot(case)), "--folds", str(case.tmp), "--out", str(case.tmp / "out"),
             "--gpus", f"0,{max(count, 1)}"], message)


def _edit_sheet(path: Path, column: str, value, *, row_type: str | None = None) -> None:
    """Set ``column`` of the first data row (of Type ``row_type`` when given) of a synthetic sheet."""
    from openpyxl import load_workbook

    book = load_workbook(path)
    sheet = book[book.sheetnames[0]] if "FACS_Movement_Only" not in book.sheetnames else book["FACS_Movement_Only"]
    header = next(row for row in sheet.iter_rows() if any(cell.value == column for cell in row))
    names = {cell.value: cell.column for cell in header}
    target = next(row[0].row for row in sheet.iter_rows(min_row=header[0].row + 1)
                  if row[names[column] - 1].value is not None
                  and (row_type is None or str(row[names["Type"] - 1].value).startswith(row_type)))
    sheet.cell(target, names[column]).value = value
    book.save(path)


def _smic_e_absolute_filename(case: Case) -> tuple[list[str], str]:
    from mevqa.data_builders.synth_long import write_long_dataset

    paths = write_long_dataset("smic-e", case.tmp / "raw", videos=1, frames=400, seed=0)
    _edit_sheet(paths["annotations"], "Filename", str(case.tmp / "elsewhere"))
    return (["build-spot", "smic-e", "--root", str(paths["root"]), "--annotations", str(paths["annotations"]),
             "--out", str(case.tmp / "out")], f"Filename name '{case.tmp / 'elsewhere'}' must be one plain")


def _samm_lv_other_subject(case: Case) -> tuple[list[str], str]:
    from mevqa.data_builders.synth_long import write_long_dataset

    paths = write_long_dataset("samm-lv", case.tmp / "raw", videos=1, frames=1000, seed=0)
    _edit_sheet(paths["annotations"], "Subject", 7, row_type="Macro")
    return (["build-spot", "samm-lv", "--root", str(paths["root"]), "--annotations", str(paths["annotations"]),
             "--emotions", str(paths["emotions"]), "--out", str(case.tmp / "out")],
            "Subject 7 contradicts Filename 006_1_")


def _linked_frame(case: Case) -> tuple[list[str], str]:
    """A build whose apex frame of one clip is a symlink to a file outside the build."""
    build = shutil.copytree(case.data, case.tmp / "build")
    row = json.loads((build / "qa.jsonl").read_text().splitlines()[0])
    frame = build / row["media"]["oao"]["frames"][1]
    outside = shutil.copy(frame, case.tmp / "private.jpg")
    frame.unlink()
    frame.symlink_to(outside)
    return (["export", "--data", str(build / "qa.jsonl"), "--inputs", "oao", "--format", "swift", "--copy-media",
             "--out", str(case.tmp / "exported")], f"is a link to {outside}, outside the media root {build}")


def _adapter_without_config(case: Case) -> Path:
    folder = case.tmp / "adapter"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    return folder


CASES = [
    # --- seeds: 0..2**32-1 everywhere, refused where parsed ----------------------------------------------------------
    ("split --seed -1", lambda c: (["split", "--data", str(c.data / "qa.jsonl"), "--scheme", "kfold:2", "--seed", "-1",
                                    "--out", str(c.tmp / "out")], f"{SEED_RANGE}, got -1")),
    ("split --seed 2**32", lambda c: (["split", "--data", str(c.data / "qa.jsonl"), "--seed", str(2**32), "--out",
                                       str(c.tmp / "out")], f"{SEED_RANGE}, got 4294967296")),
    ("tiny-model --seed 10**20", lambda c: (["tiny-model", "--out", str(c.tmp / "m"), "--seed", str(10**20)],
                                            f"{SEED_RANGE}, got {10**20}")),
    ("predict --seed 2**32", lambda c: (c.predict("--out", c.tmp / "out", "--seed", str(2**32)), SEED_RANGE)),
    ("build-data --seed x", lambda c: (c.build("--out", c.tmp / "out", "--seed", "x"),
                                       "--seed must be an integer between 0 and 4294967295, got 'x'")),
    ("eval --seed 2**32", lambda c: (["eval", "--pred", str(RANK1), "--gold", str(RANK1), "--seed", str(2**32)],
                                     SEED_RANGE)),
    # --- bootstrap resamples: 100..1,000,000 ------------------------------------------------------------------------
    ("eval --bootstrap 1", lambda c: (["eval", "--pred", str(RANK1), "--gold", str(RANK1), "--bootstrap", "1"],
                                      "--bootstrap must be 0 (no intervals) or between 100 and 1,000,000 resamples, "
                                      "got 1")),
    ("eval --bootstrap 10**9", lambda c: (["eval", "--pred", str(RANK1), "--gold", str(RANK1), "--bootstrap",
                                           str(10**9)], "between 100 and 1,000,000 resamples, got 1000000000")),
    ("compare --bootstrap 99", lambda c: (["compare", "--gold", str(RANK1), "--a", str(RANK1), "--b", str(RANK1),
                                           "--bootstrap", "99"], "--bootstrap must be between 100 and 1,000,000")),
    ("cv --bootstrap 1000001", lambda c: (["cv", "--config", str(_zero_shot(c)), "--folds", str(c.tmp), "--out",
                                           str(c.tmp / "out"), "--bootstrap", "1000001"],
                                          "--bootstrap must be between 100 and 1,000,000")),
    # --- eval on predictions that do not cover the gold rows ---------------------------------------------------------
    ("eval on an empty prediction file", lambda c: (["eval", "--pred", str(c.file("empty.jsonl", "")), "--gold",
                                                     str(RANK1)], "35 of 35 gold rows have no prediction in")),
    ("eval on partial predictions", lambda c: (["eval", "--pred", str(c.file("part.jsonl", "".join(
        RANK1.read_text().splitlines(keepends=True)[:30]))), "--gold", str(RANK1)],
        "5 of 35 gold rows have no prediction in")),
    # --- cv ---------------------------------------------------------------------------------------------------------
    ("cv --gpus beyond this machine's", _gpus_without_cuda),
    ("cv over a fold file edited after its runs", _edited_fold),
    # --- merge: refused before the base loads ---------------------------------------------------------------------
    ("merge --base that does not exist", lambda c: (["merge", "--base", str(c.tmp / "no-model"), "--adapter",
                                                     str(_adapter_without_config(c)), "--out", str(c.tmp / "m")],
                                                    f"{c.tmp / 'no-model'}: model folder does not exist")),
    ("merge an adapter folder without adapter_config.json", lambda c: (
        ["merge", "--base", str(c.model), "--adapter", str(_adapter_without_config(c)), "--out", str(c.tmp / "m")],
        "adapter: not a PEFT adapter folder (no adapter_config.json)")),
    # --- long-video sheets --------------------------------------------------------------------------------------------
    ("build-spot smic-e with an absolute Filename", _smic_e_absolute_filename),
    ("build-spot samm-lv with a Subject contradicting its Filename", _samm_lv_other_subject),
    # --- paths confined by where they resolve --------------------------------------------------------------------------
    ("export --copy-media of a frame linked outside its build", _linked_frame),
    # --- synth-data ---------------------------------------------------------------------------------------------------
    ("synth-data into a non-empty folder", lambda c: (["synth-data", "samm", "--out", str(c.file("d/notes.txt").parent)],
                                                      "not empty; write a synthetic dataset into a new or empty")),
]


@pytest.mark.parametrize("name, make", CASES, ids=[name for name, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(shared, tmp_path, capsys, name, make):  # noqa: F811
    case = Case(tmp_path, shared["data"], shared["raw"], shared["clips"], shared["model"])
    assert_refused(*make(case), capsys, tmp_path, shared["base"])


def test_the_table_is_as_long_as_the_reliability_page_says():
    page = " ".join((REPO_ROOT / "docs" / "reliability.md").read_text(encoding="utf-8").split())
    assert f"`tests/test_bad_inputs_2.py` runs {len(CASES)} hostile inputs" in page


# --- the cases whose right result is not an error -------------------------------------------------------------------

def test_allow_missing_scores_the_missing_rows_as_misses_and_says_how_many(capsys, tmp_path):
    part = tmp_path / "part.jsonl"
    part.write_text("".join(RANK1.read_text().splitlines(keepends=True)[:30]))
    assert main(["eval", "--pred", str(part), "--gold", str(RANK1), "--allow-missing", "--bootstrap", "0", "--json",
                 str(tmp_path / "s.json")]) == 0
    assert "5 of 35 gold rows have no prediction; scored as empty answers" in capsys.readouterr().err
    assert json.loads((tmp_path / "s.json").read_text())["counts"]["missing"] == 5


@pytest.fixture()
def full_disk(tmp_path):
    """A folder on a 64 KiB tmpfs: writing more than that fails with ENOSPC, as on a full disk. Mounting needs root;
    elsewhere the test is skipped (a file system cannot be filled honestly without one)."""
    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)]).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)  # still busy: detach it


@pytest.mark.parametrize("command", ["export --format hf", "merge", "tiny-model"])
def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing(shared, full_disk, tmp_path, capsys, command):
    out = full_disk / "out"
    if command == "merge":
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(shared["model"])
        get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "adapter")
        argv = ["merge", "--base", str(shared["model"]), "--adapter", str(tmp_path / "adapter"), "--out", str(out)]
    elif command == "tiny-model":
        argv = ["tiny-model", "--out", str(out)]
    else:
        argv = ["export", "--data", str(shared["data"] / "qa.jsonl"), "--inputs", "oao", "--format", "hf", "--out",
                str(out)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {out}: no space left on the device while writing" in err and "Traceback" not in err
    assert list(full_disk.iterdir()) == []  # nothing half-written, no temporary folder left


def test_a_killed_export_leaves_nothing_the_next_run_does_not_remove(shared, tmp_path):
    """An export killed with SIGKILL while writing leaves its temporary folder (named with its process id); the
    next export into the same --out removes it, since that process no longer runs."""
    out = tmp_path / "exported"
    argv = ["export", "--data", str(shared["data"] / "qa.jsonl"), "--inputs", "oao", "--format", "swift",
            "--copy-media", "--out", str(out)]
    victim = subprocess.Popen(["sleep", "0"])
    victim.wait()  # a process id that no longer runs
    stale = tmp_path / f".exported.{victim.pid}-x1y2z3.tmp"
    (stale / "media").mkdir(parents=True)
    (stale / "media" / "half.jpg").write_bytes(b"\xff\xd8 cut short")
    running = tmp_path / f".exported.{os.getpid()}-a1b2c3.tmp"  # an export in progress (this process) is left
    running.mkdir()
    assert main(argv) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([running.name, "exported"])


@pytest.mark.e2e
def test_an_export_killed_while_writing_is_cleaned_by_the_next(shared, tmp_path):
    """The real thing: `mevqa export --format hf` killed with SIGKILL once its temporary folder exists, then run
    again: the rerun removes what the killed run left and nothing else remains beside the export."""
    import signal
    import sys
    import time

    argv = ["export", "--data", str(shared["data"] / "qa.jsonl"), "--inputs", "oao", "--format", "hf", "--out",
            str(tmp_path / "exported")]
    process = subprocess.Popen([sys.executable, "-m", "mevqa", *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".exported.*.tmp")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = [path.name for path in tmp_path.iterdir()]
    if not any(name.endswith(".tmp") for name in left):
        pytest.skip(f"the export ended before it could be killed while writing (left: {left})")
    assert main(argv) == 0
    assert [path.name for path in tmp_path.iterdir()] == ["exported"]
