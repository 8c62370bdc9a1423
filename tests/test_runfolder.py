"""The run folder's shared rules (mevqa.runfolder): the logs a kill can tear, run-record comparison, stale outputs set
aside under one naming rule, folders replaced whole."""

from __future__ import annotations

import json
import re

import pytest

from mevqa.errors import MevqaError
from mevqa.runfolder import atomic_folder, differences, drop_torn_line, read_log, set_aside


def test_a_torn_last_line_is_dropped_and_cut_only_when_repairing(tmp_path):
    log = tmp_path / "videos.jsonl"
    log.write_text('{"video": "a"}\n{"video": "b"}\n{"vid')
    assert read_log(log, repair=False) == [(1, {"video": "a"}), (2, {"video": "b"})]
    assert log.read_text().endswith('{"vid')           # an observer leaves the writer's file alone
    assert read_log(log) == [(1, {"video": "a"}), (2, {"video": "b"})]
    assert log.read_text() == '{"video": "a"}\n{"video": "b"}\n'
    assert drop_torn_line(log) is False
    assert read_log(tmp_path / "none.jsonl") == []


def test_a_malformed_complete_line_is_an_error_naming_file_and_line(tmp_path):
    log = tmp_path / "videos.jsonl"
    log.write_text('{"video": "a"}\nnot json\n{"video": "c"}\n')
    with pytest.raises(MevqaError, match=r"videos\.jsonl:2: malformed log line"):
        read_log(log)
    log.write_text('[1, 2]\n')
    with pytest.raises(MevqaError, match=r"videos\.jsonl:1: expected a JSON object, got list"):
        read_log(log)


def test_differences_name_nested_entries_and_compare_weights_by_digest():
    before = {"model": "m", "settings": {"threshold": 0.2, "size": 128},
              "weights": {"a.safetensors": {"sha256": "x", "path": "/old"}}}
    moved = {"model": "m", "settings": {"threshold": 0.2, "size": 128},
             "weights": {"a.safetensors": {"sha256": "x", "path": "/new"}}}
    assert differences(before, moved, by_digest=("weights",)) == []
    assert differences(before, moved) == ["weights.a.safetensors.path"]
    changed = {**moved, "settings": {"threshold": 0.5}, "weights": {"a.safetensors": {"sha256": "y"}}}
    assert differences(before, changed, by_digest=("weights",)) == ["settings.size", "settings.threshold",
                                                                      "weights.a.safetensors"]


def test_stale_outputs_get_one_suffix_and_never_overwrite_an_earlier_set(tmp_path):
    qa, record = tmp_path / "qa.jsonl", tmp_path / "build.json"
    qa.write_text("first\n")
    record.write_text("{}")
    first = set_aside([qa, record, tmp_path / "absent.jsonl"], "built with other settings")
    assert [p.name.split(".stale-")[0] for p in first] == ["qa.jsonl", "build.json"]
    suffix = first[0].name.split("qa.jsonl.")[1]
    assert re.fullmatch(r"stale-\d{8}-\d{6}", suffix) and first[1].name == f"build.json.{suffix}"
    qa.write_text("second\n")
    second = set_aside([qa], "again")              # within the same second: a numbered suffix, nothing lost
    assert second[0] != first[0] and first[0].read_text() == "first\n" and second[0].read_text() == "second\n"
    assert set_aside([tmp_path / "absent.jsonl"], "nothing") == []


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("stopped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"] and (out / "old.txt").is_file()
    with atomic_folder(out) as tmp:
        (tmp / "new.txt").write_text(json.dumps("new"))
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    with pytest.raises(MevqaError, match="another run wrote here meanwhile"):
        with atomic_folder(out, replace=False):
            pass
