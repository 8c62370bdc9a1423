"""mevqa split: subject-independent folds (LOSO, k-fold, cross-dataset), class counts, media paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mevqa.cli import main
from mevqa.data_builders.build import BuildOptions, build_dataset
from mevqa.data_builders.synth import write_synthetic_dataset
from mevqa.errors import MevqaError
from mevqa.experiments.split import load_rows, make_folds
from mevqa.jsonl import read_jsonl
from mevqa.media import MediaSettings
from mevqa.rows import read_rows


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
    record = json.loads((tmp_path / "split.json").read_text())
    assert record["scheme"] == "loso" and record["folds"] == 5 and list(record["data"]) == list(map(str, files))
    assert all(len(digest) == 64 for digest in record["data"].values())
    assert all(sum(entry["val"]["coarse"].values()) == entry["val"]["clips"] for entry in summary)


def test_kfold_groups_subjects_and_keeps_media_in_their_build(built, tmp_path):
    files = [built["casme2"], built["samm"], built["smic"]]
    assert main(["split", "--data", *map(str, files), "--scheme", "kfold:3", "--out", str(tmp_path / "k")]) == 0
    vals = []
    for fold in sorted((tmp_path / "k").glob("fold_*")):
        train, val = read_jsonl(fold / "train.jsonl"), read_jsonl(fold / "val.jsonl")
        assert not subjects_of(train) & subjects_of(val) and val
        vals.append(subjects_of(val))
        for row in train[:3] + val[:3]:
            # the row names its build folder relative to the fold, and its paths stay relative to that build
            build = built[row["dataset"]].parent
            assert (fold / row["media"]["root"]).resolve() == build.resolve()
            assert row["media"]["oao"]["frames"][0].startswith("media/")
            for path in row["media"]["oao"]["frames"]:
                assert (build / path).is_file()
        # the one reader resolves them to the very files the build wrote
        resolved = read_rows(fold / "val.jsonl")
        assert Path(resolved[0]["media"]["oao"]["frames"][1]).is_file()
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


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_the_same_file_twice_or_an_id_with_two_answers_is_refused(built, tmp_path, capsys):
    qa = built["casme2"]
    assert main(["split", "--data", str(qa), str(qa), "--out", str(tmp_path / "twice")]) == 2
    err = capsys.readouterr().err
    assert f"{qa}:1: duplicate id 'casme2_" in err and f"(first at {qa}:1)" in err and err.count("\n") == 1
    assert not (tmp_path / "twice").exists()

    rows = read_jsonl(qa)
    conflicting = dict(rows[0], answer="negative" if rows[0]["answer"] != "negative" else "positive")
    other = _write(qa.parent / "more.jsonl", [{k: v for k, v in conflicting.items() if k != "_line"}])
    assert main(["split", "--data", str(qa), str(other), "--out", str(tmp_path / "conflict")]) == 2
    assert f"{other}:1: duplicate id {rows[0]['id']!r} (first at {qa}:1)" in capsys.readouterr().err
    assert not (tmp_path / "conflict").exists()
    other.unlink()


def test_subjects_differing_only_by_spaces_are_one_subject(tmp_path):
    question = "What is the coarse expression class?"
    rows = [{"id": f"samm_{i}", "dataset": "samm", "subject": subject, "image_id": f"clip{i}", "question": question,
             "answer": answer} for i, (subject, answer) in
            enumerate([("6", "negative"), (" 6 ", "positive"), ("7", "surprise"), (7, "negative")])]
    data = _write(tmp_path / "qa.jsonl", rows)
    assert main(["split", "--data", str(data), "--scheme", "loso", "--out", str(tmp_path / "out")]) == 0
    folds = sorted((tmp_path / "out").glob("fold_*"))
    assert len(folds) == 2  # "6" and " 6 " are one subject, 7 and "7" another
    for fold in folds:
        train, val = read_jsonl(fold / "train.jsonl"), read_jsonl(fold / "val.jsonl")
        assert {str(r["subject"]).strip() for r in train}.isdisjoint({str(r["subject"]).strip() for r in val})
        assert len(train) == len(val) == 2


def test_rows_whose_media_are_not_in_a_build_are_refused(tmp_path, capsys):
    """Hand-written rows keep their media beside their file; a fold elsewhere could not point back to it (only a
    build folder may be a media root), so split says so and writes nothing."""
    from qa_rows import write_qa_file

    qa = write_qa_file(tmp_path / "hand", clips=2)
    assert main(["split", "--data", str(qa), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{qa}:1: its media live in {tmp_path / 'hand'}, which is not the output folder of mevqa build-data" in err
    assert not (tmp_path / "out").exists()


def test_split_output_is_readable_from_a_moved_tree(built, tmp_path):
    """Folds and builds moved together keep working: every path is relative."""
    tree = tmp_path / "tree"
    shutil.copytree(built["samm"].parent, tree / "built" / "samm")
    assert main(["split", "--data", str(tree / "built" / "samm" / "qa.jsonl"), "--out", str(tree / "folds")]) == 0
    moved = shutil.move(str(tree), str(tmp_path / "moved"))
    rows = read_rows(Path(moved) / "folds" / "fold_0" / "val.jsonl")
    assert all(Path(p).is_file() and p.startswith(moved) for r in rows for p in r["media"]["oao"]["frames"])


def test_folds_of_a_build_rebuilt_with_other_settings_are_refused(tmp_path, capsys):
    """The folds keep their media in the build; a rebuild there with other settings puts other media under the same
    paths. From the moment the rebuild starts (build.json set aside) until the folds are split again, reading them
    is an error naming the row, not a silent mixture."""
    raw = write_synthetic_dataset("samm", tmp_path / "raw", clips=4, frames=6)
    build = ["build-data", "samm", "--root", str(raw["root"]), "--annotations", str(raw["annotations"]), "--out",
             str(tmp_path / "built"), "--inputs", "oao", "--size", "48"]
    assert main(build) == 0
    assert main(["split", "--data", str(tmp_path / "built" / "qa.jsonl"), "--out", str(tmp_path / "folds")]) == 0
    fold = tmp_path / "folds" / "fold_0" / "train.jsonl"
    assert read_rows(fold)
    clip = sorted(raw["root"].rglob("*.jpg"))[0].parent
    for frame in clip.glob("*.jpg"):  # the rebuild stops at this clip
        frame.write_bytes(frame.read_bytes()[:100])
    assert main(build[:-1] + ["32"]) == 2
    assert sorted(p.name.split(".stale")[0] for p in (tmp_path / "built").glob("*.stale-*")) == ["build.json",
                                                                                                  "qa.jsonl"]
    with pytest.raises(MevqaError, match=rf"{fold}:1: media.root .* is not the output folder of a build"):
        read_rows(fold)
    assert main(build[:-1] + ["32", "--skip-bad"]) == 0
    with pytest.raises(MevqaError, match=rf"{fold}:1: media built with size 48, but the build in .*built now holds "
                                         r"media built with size 32 \(it was rebuilt after this file was written\)"):
        read_rows(fold)
