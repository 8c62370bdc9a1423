"""`mevqa compare`: paired clip-bootstrap differences; a file against itself, a strictly better file, bad input."""

from __future__ import annotations

import json

import pytest

from conftest import MEGC2025
from mevqa.cli import main
from mevqa.eval import compare, read_rows, score
from mevqa.eval.bootstrap import FIGURES, clip_statistics, resampled_figures
from mevqa.eval.metrics import join

RANK1 = sorted((MEGC2025 / "predictions" / "rank1").glob("*.jsonl"))
RANK3 = sorted((MEGC2025 / "predictions" / "rank3").glob("*.jsonl"))


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_file_against_itself_differs_by_zero(public_data, tmp_path, capsys):
    out = tmp_path / "compare.json"
    assert main(["compare", "--gold", *map(str, RANK1), "--a", *map(str, RANK3), "--b", *map(str, RANK3),
                 "--json", str(out), "--bootstrap", "300"]) == 0
    result = json.loads(out.read_text())
    for split in ("overall", "samm", "cas"):
        for key in FIGURES:
            entry = result["difference"][split][key]
            assert entry["difference"] == 0.0 and entry["ci"] == [0.0, 0.0], (split, key)
            assert entry["b_beats_a"] == 0.0 <= 0.5          # a tie never counts as B beating A
            assert entry["a"] == entry["b"] == result["a"][split][key]
    assert result["a"] == score(read_rows(RANK3), read_rows(RANK1))
    assert result["bootstrap"]["resamples"] == 300 and result["bootstrap"]["clips"]["overall"] == 24
    assert result["files"] == {"a": list(map(str, RANK3)), "b": list(map(str, RANK3)), "gold": list(map(str, RANK1))}
    assert set(result["stamp"]["pred_files"]) == set(map(str, RANK3)) and result["stamp"]["seed"] == 0
    table = capsys.readouterr().out
    assert "B beats A" in table
    assert [line.split()[:2] for line in table.splitlines() if line.startswith("Overall")] == [["Overall", "(24"]]


def test_a_strictly_better_file_is_detected(public_data, tmp_path):
    """B answers every question as the gold file does; A is rank 3's real submission."""
    gold = read_rows(RANK1)
    result = compare(read_rows(RANK3), [dict(row) for row in gold], gold, resamples=500, seed=1)
    avg = result["difference"]["overall"]["avg"]
    assert avg["b"] == 1.0 and avg["difference"] == pytest.approx(1.0 - result["a"]["avg"])
    assert avg["ci"][0] > 0.3 and avg["b_beats_a"] == 1.0
    for key in FIGURES:
        entry = result["difference"]["overall"][key]
        assert entry["difference"] > 0 and entry["ci"][0] > 0 and entry["b_beats_a"] > 0.97, key


def test_same_draws_for_both_systems():
    """A small real difference: B fixes one of twelve clips. On the paired draws B never does worse (share of
    non-negative differences is 1), and B beats A exactly in the resamples that drew the fixed clip."""
    from mevqa import vocab

    gold, pred_a, pred_b = [], [], []
    for c in range(12):
        for k, (question, answer) in enumerate([(vocab.Q_COARSE, "negative"), (vocab.Q_FINE, "anger"),
                                                (vocab.Q_AU_ONE, "brow lowerer")], 1):
            rid = f"samm_clip{c}_{k}"
            gold.append({"id": rid, "question": question, "answer": answer})
            pred_a.append({"id": rid, "answer": answer if c else "lips part"})
            pred_b.append({"id": rid, "answer": answer})
    result = compare(pred_a, pred_b, gold, resamples=2000, seed=0)
    clips_a, clips_b = clip_statistics(join(pred_a, gold)), clip_statistics(join(pred_b, gold))
    drawn_a, drawn_b = resampled_figures([clips_a, clips_b], resamples=2000, seed=0)
    diff = drawn_b["overall"]["rouge1"] - drawn_a["overall"]["rouge1"]
    assert diff.min() == 0.0 and (diff > 0).mean() == result["difference"]["overall"]["rouge1"]["b_beats_a"]
    rouge = result["difference"]["overall"]["rouge1"]
    assert rouge["ci"][0] == 0.0 and rouge["difference"] == pytest.approx(1 / 12)
    # P(clip 0 drawn at least once in 12 draws) = 1 - (11/12)^12 = 0.648
    assert rouge["b_beats_a"] == pytest.approx(1 - (11 / 12) ** 12, abs=0.03)


def test_mismatched_files_are_refused(tmp_path, capsys):
    gold = write(tmp_path / "gold.jsonl", [{"id": "samm_a_1", "question": "What is the coarse expression class?",
                                            "answer": "negative"}])
    a = write(tmp_path / "a.jsonl", [{"id": "samm_a_1", "answer": "negative"}])
    b = write(tmp_path / "b.jsonl", [{"id": "samm_b_1", "answer": "negative"}])
    out = tmp_path / "compare.json"
    assert main(["compare", "--gold", str(gold), "--a", str(a), "--b", str(b), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "b.jsonl:1: prediction id 'samm_b_1' is not in the gold rows" in err and err.count("\n") == 1
    assert not out.exists()
    assert main(["compare", "--gold", str(gold), "--a", str(a), "--b", str(a), "--bootstrap", "0"]) == 2
    assert "--bootstrap must be between 100 and 1,000,000 resamples, got 0" in capsys.readouterr().err
