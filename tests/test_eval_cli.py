"""`mevqa eval`: the table with intervals, stamped --json, --samples and --plot on the real submissions, and every
bad-input case through the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU

from conftest import MEGC2025, REPO_ROOT
from mevqa import __version__, vocab
from mevqa.cli import main
from mevqa.eval import score_files

RANK1 = sorted((MEGC2025 / "predictions" / "rank1").glob("*.jsonl"))
RANK3 = sorted((MEGC2025 / "predictions" / "rank3").glob("*.jsonl"))


def test_eval_prints_table_and_writes_json_and_plots(public_data, tmp_path, capsys):
    out, plots = tmp_path / "out" / "report.json", tmp_path / "plots"
    argv = ["eval", "--pred", *map(str, RANK3), "--gold", *map(str, RANK1), "--json", str(out), "--plot", str(plots),
            "--seed", "3"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].split() == ["Split", "Rows", "UF1-C", "UAR-C", "UF1-F", "UAR-F", "BLEU", "ROUGE-1", "Avg"]
    report = json.loads(out.read_text())
    stamp = report.pop("stamp")
    # the default: 1000 resamples of clips; the JSON is exactly the library's report
    assert report == score_files(RANK3, RANK1, bootstrap=1000, seed=3)
    assert report["bootstrap"] == {"resamples": 1000, "seed": 3, "unit": "clip", "confidence": 0.95,
                                   "method": "percentile", "clips": {"overall": 24, "samm": 7, "cas": 17}}
    overall = next(line for line in lines if line.startswith("Overall")).split()
    assert overall[1] == "120"
    keys = ("uf1_coarse", "uar_coarse", "uf1_fine", "uar_fine", "bleu", "rouge1", "avg")
    assert overall[2:] == [f"{report['overall'][key]:.4f}" for key in keys]
    ci_line = lines[lines.index(next(line for line in lines if line.startswith("Overall"))) + 1].split()
    assert ci_line[:2] == ["95%", "CI"]
    assert ci_line[2:] == [f"{report['overall'][key + '_ci'][0]:.3f}-{report['overall'][key + '_ci'][1]:.3f}"
                           for key in keys]
    assert [line.split()[0] for line in lines[2:8:2]] == ["SAMM", "CAS", "Overall"]
    lo, hi = report["avg_ci"]
    assert f"Avg (mean of the six Overall figures): {report['avg']:.4f}, 95% CI {lo:.3f}-{hi:.3f}" in table
    assert "rows scored: 120 (coarse 24, fine 24)" in table
    assert "unparseable answers: coarse 0, fine 6" in table
    assert "missing prediction rows: 0" in table
    for kind in ("coarse", "fine"):
        assert (plots / f"confusion_{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the stamp: version, the checkout's commit, versions of what shapes results, and the files' hashes
    assert stamp["mevqa_version"] == __version__ and stamp["seed"] == 3 and stamp["config"] is None
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert stamp["git_commit"] == head.stdout.strip()
    assert stamp["packages"]["sacrebleu"] == sacrebleu.__version__
    assert {"rouge-score", "scikit-learn", "numpy", "transformers", "torch", "peft", "python"} <= set(stamp["packages"])
    assert stamp["pred_files"] == {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in RANK3}
    assert stamp["gold_files"] == {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in RANK1}


def test_eval_without_bootstrap_has_no_intervals(public_data, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["eval", "--pred", *map(str, RANK3), "--gold", *map(str, RANK1), "--json", str(out),
                 "--bootstrap", "0"]) == 0
    report = json.loads(out.read_text())
    assert report["stamp"]["seed"] is None
    del report["stamp"]
    assert report == score_files(RANK3, RANK1)
    assert "avg_ci" not in report and "uf1_coarse_ci" not in report["overall"]
    assert "95% CI" not in capsys.readouterr().out


def test_samples_give_each_rows_labels_and_text_contributions(public_data, tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "report.json"
    assert main(["eval", "--pred", *map(str, RANK3), "--gold", *map(str, RANK1), "--samples", str(samples),
                 "--json", str(out), "--bootstrap", "0"]) == 0
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    report = json.loads(out.read_text())
    gold = [json.loads(line) for path in RANK1 for line in path.read_text().splitlines()]
    preds = {row["video_id"]: row for path in RANK3 for line in path.read_text().splitlines()
             for row in [json.loads(line)]}
    assert [record["id"] for record in records] == [row["video_id"] for row in gold]
    fine = [record for record in records if record["kind"] == "fine"]
    assert len(fine) == 24 and sum(record["label"] == "unknown" for record in fine) == 6
    for record in records:
        row = preds[record["id"]]
        assert record["prediction"] == row["answer"] and record["missing"] is False
        assert record["clip"] == row["video"] and record["split"] in ("samm", "cas")
        if record["kind"] in ("coarse", "fine"):
            assert record["gold_label"] == record["gold"].strip().lower()
            assert record["match"] == (record["label"] == record["gold_label"])
        else:
            assert record["label"] is None and record["match"] is None
        assert record["exact"] == (" ".join(row["answer"].lower().split()) == " ".join(record["gold"].lower().split()))
        # sentence BLEU is sacrebleu's own sentence_score of the row
        assert record["sentence_bleu"] == pytest.approx(
            sacrebleu.sentence_bleu(row["answer"], [record["gold"]], lowercase=True).score / 100, abs=1e-12)
    # class figures follow from the per-row labels: coarse accuracy of the samples = the confusion diagonal
    coarse = [record for record in records if record["kind"] == "coarse"]
    matrix = report["overall"]["coarse"]["confusion"]
    diagonal = sum(matrix["matrix"][i][matrix["labels"].index(name)] for i, name in enumerate(matrix["labels"])
                   if name in report["overall"]["coarse"]["classes"])
    assert sum(record["match"] for record in coarse) == diagonal
    # the rows' statistics add up to the split figures: mean ROUGE-1 recall, corpus BLEU from summed n-gram counts
    for split in ("overall", "samm", "cas"):
        part = [record for record in records if split == "overall" or record["split"] == split]
        assert sum(record["rouge1"] for record in part) / len(part) == pytest.approx(report[split]["rouge1"], abs=1e-12)
        totals = [sum(record["bleu_stats"]["hyp_len"] for record in part),
                  sum(record["bleu_stats"]["ref_len"] for record in part)]
        totals += [sum(record["bleu_stats"]["correct"][n] for record in part) for n in range(4)]
        totals += [sum(record["bleu_stats"]["total"][n] for record in part) for n in range(4)]
        corpus = BLEU(lowercase=True)._compute_score_from_stats(totals).score / 100
        assert corpus == pytest.approx(report[split]["bleu"], abs=1e-12)


def write(path, rows_or_lines):
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows_or_lines]
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOLD = [{"id": "samm_a_1", "dataset": "samm", "question": vocab.Q_COARSE, "answer": "negative"},
        {"id": "samm_a_2", "dataset": "samm", "question": vocab.Q_FINE, "answer": "anger"},
        {"id": "samm_a_3", "dataset": "samm", "question": vocab.Q_AU_ONE, "answer": "brow lowerer"}]
PRED = [{"id": row["id"], "question": row["question"], "answer": row["answer"]} for row in GOLD]


def test_missing_prediction_rows_are_an_error_unless_allowed(tmp_path, capsys):
    gold, pred = write(tmp_path / "gold.jsonl", GOLD), write(tmp_path / "pred.jsonl", PRED[:2])
    out = tmp_path / "report.json"
    assert main(["eval", "--pred", str(pred), "--gold", str(gold), "--json", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"mevqa eval: error: 1 of 3 gold rows have no prediction in {pred} "
                                               "(first: samm_a_3); finish the predictions or pass --allow-missing "
                                               "to score them as misses")
    assert not out.exists()
    assert main(["eval", "--pred", str(pred), "--gold", str(gold), "--json", str(out), "--allow-missing"]) == 0
    report = json.loads(out.read_text())
    assert report["counts"]["missing"] == 1
    assert report["overall"]["uf1_coarse"] == 1.0 and report["overall"]["rouge1"] == pytest.approx(2 / 3)
    captured = capsys.readouterr()
    assert "missing prediction rows: 1" in captured.out
    assert "1 of 3 gold rows have no prediction; scored as empty answers (first: samm_a_3)" in captured.err


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
    out, plots, samples = tmp_path / "out" / "report.json", tmp_path / "plots", tmp_path / "s" / "samples.jsonl"
    argv = ["eval", "--pred", str(pred), "--gold", str(gold), "--json", str(out), "--plot", str(plots),
            "--samples", str(samples)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1  # one line
    assert not out.exists() and not out.parent.exists() and not plots.exists() and not samples.parent.exists()


def test_missing_file_exits_nonzero(tmp_path, capsys):
    gold = write(tmp_path / "gold.jsonl", GOLD)
    out = tmp_path / "report.json"
    assert main(["eval", "--pred", str(tmp_path / "nope.jsonl"), "--gold", str(gold), "--json", str(out)]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["eval", "--pred", "{pred}", "--gold", "{gold}", "--bootstrap", "-5"],
     "--bootstrap must be 0 (no intervals) or between 100 and 1,000,000 resamples, got -5"),
    (["eval", "--pred", "{pred}", "--gold", "{gold}", "--seed", "-1"],
     "--seed must be an integer between 0 and 4294967295 (2**32 - 1), got -1"),
    (["compare", "--gold", "{gold}", "--a", "{pred}", "--b", "{pred}", "--seed", "-1"],
     "--seed must be an integer between 0 and 4294967295 (2**32 - 1), got -1"),
    (["compare", "--gold", "{gold}", "--a", "{pred}", "--b", "{pred}", "--bootstrap", "0"],
     "--bootstrap must be between 100 and 1,000,000 resamples, got 0"),
    (["cv", "--config", "{config}", "--folds", "{tmp}", "--out", "{out}", "--seed", "-3"],
     "--seed must be an integer between 0 and 4294967295 (2**32 - 1), got -3"),
    (["cv", "--config", "{config}", "--folds", "{tmp}", "--out", "{out}", "--bootstrap", "0"],
     "--bootstrap must be between 100 and 1,000,000 resamples, got 0"),
])
def test_bad_resampling_settings_are_refused(tmp_path, capsys, argv, message):
    values = {"gold": write(tmp_path / "gold.jsonl", GOLD), "pred": write(tmp_path / "pred.jsonl", PRED),
              "config": tmp_path / "zs.yaml", "tmp": tmp_path, "out": tmp_path / "out"}
    values["config"].write_text("model_name_or_path: m\nnum_train_epochs: 0\n")
    assert main([part.format(**values) for part in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_interval_plot_takes_a_value_outside_its_percentile_interval():
    """A percentile interval need not hold the full-data value (a skewed figure on few clips); the plot still draws."""
    from mevqa.eval.report import intervals_png

    report = {"overall": {"uf1_coarse": 0.5, "uf1_coarse_ci": [0.55, 0.7], "avg": 0.4, "avg_ci": [0.1, 0.35]}}
    assert intervals_png({"a": report}).startswith(b"\x89PNG\r\n\x1a\n")
