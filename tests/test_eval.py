"""mevqa.eval: label extraction, splits, and the leaderboard metrics, on hand-checked cases and the real files."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn.metrics import f1_score, recall_score

from conftest import MEGC2025, OFFICIAL_TRAIN
from mevqa import vocab
from mevqa.errors import MevqaError
from mevqa.eval import PRIMARY_KEYS, extract_label, leaderboard_avg, read_rows, row_id, score, score_files, split_of

RANKS = {rank: sorted((MEGC2025 / "predictions" / rank).glob("*.jsonl")) for rank in ("rank1", "rank3")}
Q_A = vocab.Q_AU_ONE


def rows(*items, prefix="samm_clip"):
    """Gold and prediction rows from (question, gold answer, predicted answer) triples, all in the SAMM split."""
    gold = [{"id": f"{prefix}_{i}", "question": q, "answer": a} for i, (q, a, _) in enumerate(items)]
    preds = [{"id": f"{prefix}_{i}", "answer": p} for i, (_, _, p) in enumerate(items)]
    return preds, gold


# --- label extraction ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, expected", [
    ("negative", vocab.COARSE, "negative"),
    ("  Surprise \n", vocab.COARSE, "surprise"),
    # the composite template: the phrase decides, although "surprise" (a coarse label) comes first
    ("The fine-grained expression class is surprise, and the coarse expression class is negative.",
     vocab.COARSE, "negative"),
    ("The fine-grained expression class is surprise, and the coarse expression class is negative.",
     vocab.FINE, "surprise"),
    ("fine-grained expression class: disgust. coarse expression class: negative.", vocab.COARSE, "negative"),
    ("The fine-grained expression class is: anger", vocab.FINE, "anger"),
    # no phrase: the first whole-word label wins
    ("It looks negative, maybe surprise.", vocab.COARSE, "negative"),
    ("sadness or fear", vocab.FINE, "sadness"),
    # whole words only, and a phrase naming a non-label falls through to the word search
    ("happy", vocab.FINE, "unknown"),
    ("unhappiness", vocab.FINE, "unknown"),
    ("the coarse expression class is happy", vocab.COARSE, "unknown"),
    ("confused", vocab.FINE, "unknown"),
    ("", vocab.COARSE, "unknown"),
])
def test_extract_label(text, kind, expected):
    assert extract_label(text, kind) == expected


def test_extract_label_with_own_labels_and_bad_kind():
    assert extract_label("Mostly Joy.", vocab.FINE, ["joy", "fear"]) == "joy"
    with pytest.raises(ValueError):
        extract_label("negative", vocab.AU)


# --- ids and splits --------------------------------------------------------------------------------------------

def test_row_id_and_split():
    assert row_id({"id": "samm_006_1_2_1", "video_id": "x"}) == "samm_006_1_2_1"
    assert row_id({"video_id": "casme3_test_CAS-1_1"}) == "casme3_test_CAS-1_1"
    with pytest.raises(MevqaError, match="id"):
        row_id({"question": "q", "_file": "f.jsonl", "_line": 4})
    assert split_of({"id": "x_1", "dataset": "casme2"}) == "casme2"
    assert split_of({"id": "x_1", "dataset": "casme3"}) == "cas"
    assert split_of({"video_id": "samm_test_SAMM-1_1"}) == "samm"
    assert split_of({"video_id": "casme3_test_CAS-1_1"}) == "cas"
    assert split_of({"id": "smic_s01_po_01_1"}) == "smic"
    assert split_of({"id": "4dme_a_1"}) == split_of({"id": "a_1", "dataset": "4DME"}) == "4dme"
    with pytest.raises(MevqaError, match="f.jsonl:7: cannot tell the split"):
        split_of({"id": "clip7_1", "_file": "f.jsonl", "_line": 7})


# --- hand-checked metrics --------------------------------------------------------------------------------------

def test_uf1_uar_unparseable_is_a_miss():
    preds, gold = rows((vocab.Q_COARSE, "positive", "positive"),
                       (vocab.Q_COARSE, "positive", "I cannot tell"),      # unknown: a miss for positive
                       (vocab.Q_COARSE, "negative", "negative"),
                       (vocab.Q_COARSE, "negative", "positive"),
                       (vocab.Q_COARSE, "surprise", "Surprise."))
    report = score(preds, gold)["overall"]
    # positive: TP 1, FN 1, FP 1 -> P 1/2, R 1/2, F1 1/2
    # negative: TP 1, FN 1, FP 0 -> P 1,   R 1/2, F1 2/3
    # surprise: TP 1             -> P 1,   R 1,   F1 1
    assert report["uf1_coarse"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)   # 0.7222
    assert report["uar_coarse"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)   # 0.6667
    assert report["coarse"]["f1"] == pytest.approx({"positive": 0.5, "negative": 2 / 3, "surprise": 1.0})
    assert report["counts"]["unparseable_coarse"] == 1
    assert report["uf1_fine"] is None and report["uar_fine"] is None    # no fine rows in this split
    assert score(preds, gold)["avg"] is None


def test_uf1_uar_ignore_classes_only_in_predictions():
    preds, gold = rows((vocab.Q_COARSE, "negative", "negative"),
                       (vocab.Q_FINE, "happiness", "happiness"),
                       (vocab.Q_FINE, "happiness", "anger"),              # anger is in no gold row
                       (vocab.Q_FINE, "disgust", "disgust"))
    report = score(preds, gold)["overall"]
    # happiness: TP 1, FN 1 -> P 1, R 1/2, F1 2/3; disgust: F1 1, R 1. Counting anger (F1 0) would give 0.5556.
    assert report["uf1_fine"] == pytest.approx((2 / 3 + 1) / 2)            # 0.8333
    assert report["uar_fine"] == pytest.approx((1 / 2 + 1) / 2)            # 0.75
    assert report["fine"]["classes"] == ["happiness", "disgust"]
    assert "anger" in report["fine"]["confusion"]["labels"]                # shown in the matrix, not scored
    # the same numbers as sklearn's own macro F1 / recall over the gold classes
    true, pred = ["happiness", "happiness", "disgust"], ["happiness", "anger", "disgust"]
    assert report["uf1_fine"] == pytest.approx(f1_score(true, pred, labels=["happiness", "disgust"], average="macro"))
    assert report["uar_fine"] == pytest.approx(recall_score(true, pred, labels=["happiness", "disgust"],
                                                            average="macro"))


def test_corpus_bleu_by_hand():
    preds, gold = rows((vocab.Q_COARSE, "negative", "negative"),
                       (Q_A, "the cat sat on the mat", "The cat sat on the mat"),
                       (Q_A, "a dog ran", "a cat"))
    # lower-cased 13a tokens; hyp length 1 + 6 + 2 = 9, ref length 1 + 6 + 3 = 10
    # 1-grams: 1 + 6 + 1 ("a") correct of 9; 2-grams: 0 + 5 + 0 of 6; 3-grams 4 of 4; 4-grams 3 of 3
    # BLEU = exp(1 - 10/9) * (8/9 * 5/6 * 1 * 1) ** (1/4) = 0.8948 * 0.9277 = 0.8302
    expected = math.exp(1 - 10 / 9) * (8 / 9 * 5 / 6) ** 0.25
    report = score(preds, gold)["overall"]
    assert report["bleu"] == pytest.approx(expected, abs=1e-9)
    assert report["bleu"] == pytest.approx(0.8302, abs=1e-4)


def test_rouge1_recall_by_hand():
    preds, gold = rows((vocab.Q_COARSE, "negative", "negative"),                     # R 1,   P 1,   F 1
                       (Q_A, "The action unit present is: lip corner puller.", "lip corner puller"),
                       # 3 of 8 reference unigrams: R 3/8, P 1, F 2*(3/8)/(11/8) = 6/11
                       ("Is the action unit lips part shown on the face?", "yes", "Yes, it is."),
                       # R 1, P 1/3, F 1/2
                       (Q_A, "the the cat", "the cat cat"),
                       # clipped overlap min(2,1) + min(1,2) = 2: R 2/3, P 2/3, F 2/3
                       (Q_A, "lip pressor", ""))                                       # R 0, F 0
    report = score(preds, gold)["overall"]
    assert report["rouge1"] == pytest.approx((1 + 3 / 8 + 1 + 2 / 3 + 0) / 5)            # 0.6083
    assert report["rouge1_f"] == pytest.approx((1 + 6 / 11 + 1 / 2 + 2 / 3 + 0) / 5)     # 0.5424


def test_table4_avg_arithmetic():
    figures = dict(zip(PRIMARY_KEYS, (0.733, 0.722, 0.368, 0.408, 0.615, 0.607)))
    assert leaderboard_avg(figures) == pytest.approx(0.5755)


def test_missing_predictions_score_as_empty_answers(caplog):
    preds, gold = rows((vocab.Q_COARSE, "negative", "negative"),
                       (vocab.Q_FINE, "anger", "anger"),
                       (vocab.Q_FINE, "sadness", "sadness"),
                       (Q_A, "brow lowerer", "brow lowerer"))
    report = score(preds[:2], gold)
    assert report["counts"]["missing"] == 2 and report["counts"]["predictions"] == 2
    assert report["counts"]["unparseable_fine"] == 0                 # a missing row is counted as missing only
    assert report["overall"]["uar_fine"] == pytest.approx(0.5)      # sadness missed
    assert report["overall"]["rouge1"] == pytest.approx(0.5)        # two of four rows empty
    assert "2 of 4 gold rows have no prediction" in caplog.text


@pytest.mark.parametrize("mutate, message", [
    (lambda p, g: p.append(dict(p[0])), "duplicate prediction id 'samm_clip_0'"),
    (lambda p, g: g.append(dict(g[1])), "duplicate gold id 'samm_clip_1'"),
    (lambda p, g: p.append({"id": "samm_clip_9", "answer": "x"}), "prediction id 'samm_clip_9' is not in the gold"),
    (lambda p, g: g[0].pop("question"), "expected a string field 'question'"),
    (lambda p, g: p[1].update(answer=None), "expected a string field 'answer'"),
    (lambda p, g: g[1].update(answer=" "), "has an empty answer"),
    (lambda p, g: g[1].update(answer="joy"), "gold answer 'joy' to a fine question is not one of"),
    (lambda p, g: p[0].update(question=vocab.Q_FINE), "answers 'What is the fine-grained"),
    (lambda p, g: [row.update(question=Q_A) for row in g[:2]], "have no coarse or fine expression question"),
])
def test_score_refuses_bad_rows(mutate, message):
    preds, gold = rows((vocab.Q_COARSE, "negative", "negative"), (vocab.Q_FINE, "anger", "anger"),
                       (Q_A, "brow lowerer", "brow lowerer"))
    mutate(preds, gold)
    with pytest.raises(MevqaError, match=message):
        score(preds, gold)


# --- the real challenge files ----------------------------------------------------------------------------------

def test_official_training_file_scored_against_itself_is_perfect(public_data):
    report = score_files(OFFICIAL_TRAIN, OFFICIAL_TRAIN)
    assert report["avg"] == 1.0
    for split in ("overall", "samm", "casme2"):
        assert [report[split][key] for key in PRIMARY_KEYS] == [1.0] * 6, split
        assert report[split]["rouge1_f"] == 1.0 and report[split]["sentence_bleu"] == 1.0
    # SMIC has coarse questions only: no fine figures, and one-word answers have no 4-grams, so corpus BLEU-4 is 0
    assert report["smic"]["uf1_coarse"] == report["smic"]["uar_coarse"] == report["smic"]["rouge1"] == 1.0
    assert report["smic"]["uf1_fine"] is None and report["smic"]["bleu"] == 0.0
    assert report["counts"] == {"rows": 1903, "missing": 0, "coarse": 442, "unparseable_coarse": 0, "fine": 278,
                                "unparseable_fine": 0, "predictions": 1903}
    assert report["samm"]["fine"]["classes"] == ["happiness", "surprise", "disgust", "anger", "contempt", "fear",
                                                 "sadness"]


@pytest.mark.parametrize("rank", ["rank1", "rank3"])
def test_real_submissions_give_a_label_for_every_class_row(public_data, rank):
    answers = [row for row in read_rows(RANKS[rank])]
    assert len(answers) == 120
    class_rows = [(row, vocab.question_kind(row["question"])) for row in answers
                  if vocab.question_kind(row["question"]) in (vocab.COARSE, vocab.FINE)]
    assert len(class_rows) == 48
    labels = [extract_label(row["answer"], kind) for row, kind in class_rows]
    unknown = sorted(row["answer"] for (row, _), label in zip(class_rows, labels) if label == "unknown")
    # every answer that is a vocabulary word is read as exactly that word
    for (row, kind), label in zip(class_rows, labels):
        if label != "unknown":
            assert label == row["answer"].strip().lower()
    # rank 1 always answered with a vocabulary label; rank 3 wrote "confused" five times and "helpless" once
    assert unknown == ([] if rank == "rank1" else ["confused"] * 5 + ["helpless"])


def test_real_submissions_scored_match_the_libraries(public_data):
    """rank 3 scored with rank 1 as gold: every figure equals sacrebleu / rouge-score / sklearn called directly."""
    report = score_files(RANKS["rank3"], RANKS["rank1"])
    gold = {row_id(row): row for row in read_rows(RANKS["rank1"])}
    preds = {row_id(row): row for row in read_rows(RANKS["rank3"])}
    assert set(report) == {"overall", "samm", "cas", "avg", "counts"}
    assert report["counts"]["unparseable_fine"] == 6 and report["counts"]["rows"] == 120
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    for split in ("overall", "samm", "cas"):
        ids = [rid for rid, row in gold.items() if split == "overall" or split_of(row) == split]
        hyps, refs = [preds[rid]["answer"] for rid in ids], [gold[rid]["answer"] for rid in ids]
        bleu = sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score / 100
        assert report[split]["bleu"] == pytest.approx(bleu, abs=1e-12)
        recall = sum(scorer.score(ref, hyp)["rouge1"].recall for hyp, ref in zip(hyps, refs)) / len(ids)
        assert report[split]["rouge1"] == pytest.approx(recall, abs=1e-12)
        sentence = sum(sacrebleu.sentence_bleu(hyp, [ref], lowercase=True).score for hyp, ref in zip(hyps, refs))
        assert report[split]["sentence_bleu"] == pytest.approx(sentence / len(ids) / 100, abs=1e-12)
        for kind in (vocab.COARSE, vocab.FINE):
            kind_ids = [rid for rid in ids if vocab.question_kind(gold[rid]["question"]) == kind]
            true = [gold[rid]["answer"] for rid in kind_ids]
            pred = [extract_label(preds[rid]["answer"], kind) for rid in kind_ids]
            classes = sorted(set(true))
            assert report[split][f"uf1_{kind}"] == pytest.approx(
                f1_score(true, pred, labels=classes, average="macro", zero_division=0), abs=1e-12)
            assert report[split][f"uar_{kind}"] == pytest.approx(
                recall_score(true, pred, labels=classes, average="macro", zero_division=0), abs=1e-12)
    assert report["avg"] == pytest.approx(sum(report["overall"][key] for key in PRIMARY_KEYS) / 6)
