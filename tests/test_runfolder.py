"""The run folder's shared rules (mevqa.runfolder): the logs a kill can tear, run-record comparison, stale outputs set
aside under one naming rule, folders replaced whole."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from mevqa.errors import MevqaError
from mevqa.runfolder import LogAppender, atomic_folder, differences, drop_torn_line, read_log, set_aside


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


def test_an_appender_starts_after_a_torn_line_on_a_line_of_its_own(tmp_path):
    """A kill mid-write leaves a torn last line: the next run's first line must not be glued onto it."""
    path = tmp_path / "predictions.jsonl"
    with LogAppender(path) as log:
        log.append({"id": "a"})
        log.add({"id": "b"})
        log.add({"id": "c"})
        log.sync()
    with path.open("a", encoding="utf-8") as handle:  # what a kill -9 in the middle of a write leaves
        handle.write('{"id": "d", "ans')
    assert [record for _, record in read_log(path, repair=False)] == [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    with LogAppender(path) as log:
        log.append({"id": "e"})
    assert path.read_text().splitlines() == ['{"id": "a"}', '{"id": "b"}', '{"id": "c"}', '{"id": "e"}']


def test_a_fresh_log_starts_empty_and_a_non_finite_number_is_refused(tmp_path):
    path = tmp_path / "errors.jsonl"
    path.write_text('{"id": "old"}\n')
    with LogAppender(path, fresh=True) as log:
        log.append({"id": "new", "score": 0.5})
        with pytest.raises(MevqaError, match=r"errors\.jsonl: cannot log a record with .*nan"):
            log.append({"id": "bad", "score": float("nan")})
    assert read_log(path) == [(1, {"id": "new", "score": 0.5})]


def test_the_synced_lines_survive_a_real_kill(tmp_path):
    """A real SIGKILL of a writer between two records: every appended line is whole on the disk."""
    path = tmp_path / "videos.jsonl"
    code = ("import os, signal, sys\n"
            "from mevqa.runfolder import LogAppender\n"
            "log = LogAppender(sys.argv[1])\n"
            "for i in range(3):\n"
            "    log.append({'video': i})\n"
            "log.handle.write('{\"video\": 3, \"det')\n"  # a line half written, then the process is killed
            "log.handle.flush()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    process = subprocess.run([sys.executable, "-c", code, str(path)])
    assert process.returncode == -signal.SIGKILL
    assert [record for _, record in read_log(path)] == [{"video": 0}, {"video": 1}, {"video": 2}]
    assert path.read_bytes().endswith(b'{"video": 2}\n')  # the torn line was cut by the repairing read
