"""mevqa split: subject-independent folds (LOSO, k-fold, cross-dataset), class counts, media paths."""

from __future__ import annotations

import json

import pytest

from mevqa.cli import main
from mevqa.data_builders.build import BuildOptions, build_dataset
from mevqa.media import MediaSettings
from mevqa.data_builders.synth import write_synthetic_dataset
from mevqa.errors import MevqaError
from mevqa.jsonl import read_jsonl
from mevqa.split import load_rows, make_folds


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("split")
    files = {}
    for dataset, clips in (("casme2", 9), ("samm", 7), ("smic", 6)):
        paths = write_synthetic_dataset(dataset, base / "raw" / dataset, clips=clips, frames=6)
        out = base / "built" / dataset
        build_dataset(dataset, out, root=paths["root"], annotations=paths["annotations"],
                      options=BuildOptions(media=MediaSettings(modes=("oao",), size=48), progress=False))
        files[dataset] = out / "qa.jsonl"
    return files


def subjects_of(rows):
    return {f"{r['dataset']}/{r['subject']}" for r in rows}


def test_loso_one_fold_per_subject_no_leak(built, tmp_path):
    files = [built["casme2"], built["samm"]]
    assert main(["split", "--data", *map(str, files), "--by", "subject", "--scheme", "loso",
                 "--out", str(tmp_path)]) == 0
    all_rows = [r for f in files for r in read_jsonl(f)]
    subjects = subjects_of(all_rows)
    folds = sorted(tmp_path.glob("fold_*"))
    assert len(folds) == len(subjects) == 5  # casme2: 3 subjects (9 clips), samm: 2 (7 clips)
    held_out = []
    for fold in folds:
        train, val = read_jsonl(fold / "train.jsonl"), read_jsonl(fold / "val.jsonl")
        assert not subjects_of(train) & subjects_of(val)
        assert len(subjects_of(val)) == 1 and len(train) + len(val) == len(all_rows)
        held_out += subjects_of(val)
    assert sorted(held_out) == sorted(subjects)
    summary = json.loads((tmp_path / "folds.json").read_text())
    assert sum(entry["val"]["clips"] for entry in summary) == 16
    assert all(sum(entry["val"]["coarse"].values()) == entry["val"]["clips"] for entry in summary)


def test_kfold_groups_subjects_and_rewrites_media_paths(built, tmp_path):
    files = [built["casme2"], built["samm"], built["smic"]]
    assert main(["split", "--data", *map(str, files), "--scheme", "kfold:3", "--out", str(tmp_path / "k")]) == 0
    vals = []
    for fold in sorted((tmp_path / "k").glob("fold_*")):
        train, val = read_jsonl(fold / "train.jsonl"), read_jsonl(fold / "val.jsonl")
        assert not subjects_of(train) & subjects_of(val) and val
        vals.append(subjects_of(val))
        for row in train[:3] + val[:3]:
            for path in row["media"]["oao"]["frames"]:
                assert (fold / path).is_file()  # paths now relative to the fold's folder
    assert len(vals) == 3 and set.union(*vals) == subjects_of(r for f in files for r in read_jsonl(f))
    assert sum(len(v) for v in vals) == len(set.union(*vals))  # every subject validated exactly once


def test_folds_of_another_split_are_not_mixed_in(built, tmp_path, capsys):
    files = [str(built["casme2"]), str(built["samm"])]
    assert main(["split", "--data", *files, "--scheme", "loso", "--out", str(tmp_path)]) == 0  # 5 folds
    assert main(["split", "--data", *files, "--scheme", "loso", "--out", str(tmp_path)]) == 0  # the same again
    before = (tmp_path / "fold_0" / "val.jsonl").read_text()
    assert main(["split", "--data", *files, "--scheme", "kfold:2", "--out", str(tmp_path)]) == 2
    assert "holds fold_2, fold_3, fold_4 from another split" in capsys.readouterr().err
    assert (tmp_path / "fold_0" / "val.jsonl").read_text() == before


def test_cross_dataset_split(built, tmp_path, capsys):
    files = [built["casme2"], built["samm"], built["smic"]]
    assert main(["split", "--data", *map(str, files), "--scheme", "cross", "--train-datasets", "casme2,samm",
                 "--val-datasets", "smic", "--out", str(tmp_path)]) == 0
    train, val = read_jsonl(tmp_path / "fold_0" / "train.jsonl"), read_jsonl(tmp_path / "fold_0" / "val.jsonl")
    assert {r["dataset"] for r in train} == {"casme2", "samm"} and {r["dataset"] for r in val} == {"smic"}
    assert "fold_0" in capsys.readouterr().out


def test_bad_schemes(built):
    rows = load_rows([built["casme2"]])
    with pytest.raises(MevqaError, match="K must be between 2 and the number of subjects"):
        make_folds(rows, "kfold:50")
    with pytest.raises(MevqaError, match="no rows of dataset"):
        make_folds(rows, "cross", train_datasets=["casme2"], val_datasets=["smic"])
    with pytest.raises(MevqaError, match="unknown --scheme"):
        make_folds(rows, "random")


def test_rows_without_a_question_are_refused(tmp_path, capsys):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"id": "casme2_a_1", "subject": "sub01", "question": "What is the coarse expression class?", '
                    '"answer": "negative"}\n{"id": "casme2_b_1", "subject": "sub02", "answer": "positive"}\n')
    assert main(["split", "--data", str(data), "--out", str(tmp_path / "out")]) == 2
    assert f"{data}:2: missing field(s) question" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
