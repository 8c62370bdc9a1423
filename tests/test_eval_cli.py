"""`mevqa eval`: the table, --json and --plot on the real submissions, and every bad-input case through the CLI."""

from __future__ import annotations

import json

import pytest

from conftest import MEGC2025
from mevqa import vocab
from mevqa.cli import main
from mevqa.eval import score_files

RANK1 = sorted((MEGC2025 / "predictions" / "rank1").glob("*.jsonl"))
RANK3 = sorted((MEGC2025 / "predictions" / "rank3").glob("*.jsonl"))


def test_eval_prints_table_and_writes_json_and_plots(public_data, tmp_path, capsys):
    out, plots = tmp_path / "out" / "report.json", tmp_path / "plots"
    argv = ["eval", "--pred", *map(str, RANK3), "--gold", *map(str, RANK1), "--json", str(out), "--plot", str(plots)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].split() == ["Split", "Rows", "UF1-C", "UAR-C", "UF1-F", "UAR-F", "BLEU", "ROUGE-1"]
    report = json.loads(out.read_text())
    assert report == score_files(RANK3, RANK1)
    overall = next(line for line in lines if line.startswith("Overall")).split()
    assert overall[1] == "120"
    assert overall[2:] == [f"{report['overall'][key]:.4f}" for key in
                           ("uf1_coarse", "uar_coarse", "uf1_fine", "uar_fine", "bleu", "rouge1")]
    assert [line.split()[0] for line in lines[2:5]] == ["SAMM", "CAS", "Overall"]
    assert f"Avg (mean of the six Overall figures): {report['avg']:.4f}" in table
    assert "rows scored: 120 (coarse 24, fine 24)" in table
    assert "unparseable answers: coarse 0, fine 6" in table
    assert "missing prediction rows: 0" in table
    for kind in ("coarse", "fine"):
        assert (plots / f"confusion_{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def write(path, rows_or_lines):
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows_or_lines]
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOLD = [{"id": "samm_a_1", "dataset": "samm", "question": vocab.Q_COARSE, "answer": "negative"},
        {"id": "samm_a_2", "dataset": "samm", "question": vocab.Q_FINE, "answer": "anger"},
        {"id": "samm_a_3", "dataset": "samm", "question": vocab.Q_AU_ONE, "answer": "brow lowerer"}]
PRED = [{"id": row["id"], "question": row["question"], "answer": row["answer"]} for row in GOLD]


def test_missing_prediction_rows_are_a_warning(tmp_path, capsys):
    gold, pred = write(tmp_path / "gold.jsonl", GOLD), write(tmp_path / "pred.jsonl", PRED[:2])
    out = tmp_path / "report.json"
    assert main(["eval", "--pred", str(pred), "--gold", str(gold), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["counts"]["missing"] == 1
    assert report["overall"]["uf1_coarse"] == 1.0 and report["overall"]["rouge1"] == pytest.approx(2 / 3)
    assert "missing prediction rows: 1" in capsys.readouterr().out


def test_predictions_may_come_in_several_files(tmp_path):
    gold = write(tmp_path / "gold.jsonl", GOLD)
    first, second = write(tmp_path / "p1.jsonl", PRED[:1]), write(tmp_path / "p2.jsonl", PRED[1:])
    out = tmp_path / "report.json"
    assert main(["eval", "--pred", str(first), str(second), "--gold", str(gold), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["counts"]["predictions"] == 3 and report["counts"]["missing"] == 0
    assert report["overall"]["uf1_fine"] == report["overall"]["rouge1"] == 1.0


@pytest.mark.parametrize("pred_lines, gold_lines, message", [
    ([json.dumps(PRED[0]), '{"id": "samm_a_2", "answer": "anger"', json.dumps(PRED[2])], GOLD,
     "pred.jsonl:2: malformed JSON"),
    (PRED, GOLD[:2] + [{"question": vocab.Q_AU_ONE, "answer": "brow lowerer"}],
     "gold.jsonl:3: expected a non-empty string 'id' or 'video_id'"),
    ([PRED[0], {"id": "samm_a_2", "question": vocab.Q_FINE}, PRED[2]], GOLD,
     "pred.jsonl:2: expected a string field 'answer'"),
    (PRED, [GOLD[0], {"id": "samm_a_2", "answer": "anger"}, GOLD[2]],
     "gold.jsonl:2: expected a string field 'question'"),
    (PRED, GOLD + [GOLD[1]], "gold.jsonl:4: duplicate gold id 'samm_a_2'"),
    (PRED + [PRED[0]], GOLD, "pred.jsonl:4: duplicate prediction id 'samm_a_1'"),
    ([PRED[2]], [GOLD[2]], "gold.jsonl:1: the gold rows have no coarse or fine expression question"),
    (PRED + [{"id": "samm_b_1", "answer": "negative"}], GOLD, "pred.jsonl:4: prediction id 'samm_b_1' is not in"),
    (PRED, [{**row, "answer": ""} for row in GOLD], "gold.jsonl:1: gold row 'samm_a_1' has an empty answer"),
    (PRED, [GOLD[0], {**GOLD[1], "answer": "others"}, GOLD[2]], "gold.jsonl:2: gold answer 'others'"),
    (PRED, GOLD + ["[1, 2]"], "gold.jsonl:4: expected a JSON object"),
])
def test_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, pred_lines, gold_lines, message):
    pred, gold = write(tmp_path / "pred.jsonl", pred_lines), write(tmp_path / "gold.jsonl", gold_lines)
    out, plots = tmp_path / "out" / "report.json", tmp_path / "plots"
    argv = ["eval", "--pred", str(pred), "--gold", str(gold), "--json", str(out), "--plot", str(plots)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1  # one line
    assert not out.exists() and not out.parent.exists() and not plots.exists()


def test_missing_file_exits_nonzero(tmp_path, capsys):
    gold = write(tmp_path / "gold.jsonl", GOLD)
    out = tmp_path / "report.json"
    assert main(["eval", "--pred", str(tmp_path / "nope.jsonl"), "--gold", str(gold), "--json", str(out)]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    assert not out.exists()
