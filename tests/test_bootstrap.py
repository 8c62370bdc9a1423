"""Clip-bootstrap intervals: exact at unit weights, zero width for perfect answers, narrower with more clips, clips
(not rows) resampled, reproducible by seed."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from conftest import MEGC2025, OFFICIAL_TRAIN
from mevqa import vocab
from mevqa.eval import clip_of, read_rows, score
from mevqa.eval.bootstrap import (COLUMNS, FIGURES, clip_statistics, corpus_bleu, resampled_figures,
                                  row_statistics, unit_figures)
from mevqa.eval.metrics import join, round_floats

RANK1 = sorted((MEGC2025 / "predictions" / "rank1").glob("*.jsonl"))
RANK3 = sorted((MEGC2025 / "predictions" / "rank3").glob("*.jsonl"))
AUS = ["brow lowerer", "lip corner puller", "nose wrinkler", "lips part", "inner brow raiser", "lid tightener"]
FINES = ["happiness", "disgust", "surprise", "anger", "fear", "sadness"]


def synthetic(n_clips: int, *, seed: int = 0, right: float = 0.6, split: str = "samm") -> tuple[list, list]:
    """Gold and predicted rows for ``n_clips`` clips (C, F, A, Y, X); each answer right with probability ``right``,
    otherwise a wrong label, a chatty sentence, or nothing; some prediction rows missing."""
    rng = random.Random(seed)
    gold, preds = [], []
    for c in range(n_clips):
        fine = rng.choice(FINES)
        coarse = vocab.FINE_TO_COARSE[fine]
        aus = rng.sample(AUS, rng.choice((1, 2)))
        qa = [(vocab.Q_COARSE, coarse, rng.choice(vocab.COARSE_LABELS)),
              (vocab.Q_FINE, fine, f"It looks like {rng.choice(FINES)}."),
              (vocab.au_question(aus), vocab.au_answer(aus), vocab.au_answer(rng.sample(AUS, 1))),
              (vocab.Q_PRESENCE.format(au=aus[0]), "yes", "no"),
              (vocab.composite_question(aus), vocab.composite_answer(aus, fine, coarse),
               vocab.composite_answer(rng.sample(AUS, 2), rng.choice(FINES), rng.choice(vocab.COARSE_LABELS)))]
        for k, (question, answer, wrong) in enumerate(qa, start=1):
            row = {"id": f"{split}_clip{c}_{k}", "dataset": split, "image_id": f"clip{c}", "question": question,
                   "answer": answer}
            gold.append(row)
            if rng.random() < 0.03:
                continue  # a missing prediction row
            preds.append({"id": row["id"], "answer": answer if rng.random() < right else wrong})
    return preds, gold


def assert_unit_figures_equal_score(preds, gold):
    report = score(preds, gold)
    figures = round_floats(unit_figures(clip_statistics(join(preds, gold))))
    assert set(figures) == {key for key in report if isinstance(report[key], dict) and "uf1_coarse" in report[key]}
    for split, values in figures.items():
        for key in FIGURES:
            assert values[key] == report[split][key], (split, key)


def test_unit_weights_give_exactly_the_scores_of_score(public_data):
    assert_unit_figures_equal_score(read_rows(RANK3), read_rows(RANK1))          # real answers: free text, misses
    assert_unit_figures_equal_score(read_rows(OFFICIAL_TRAIN), read_rows(OFFICIAL_TRAIN))  # SMIC: no fine, BLEU 0
    preds, gold = synthetic(40, seed=1)
    preds += synthetic(25, seed=2, split="cas")[0]
    gold += synthetic(25, seed=2, split="cas")[1]
    assert_unit_figures_equal_score(preds, gold)


def test_vectorised_corpus_bleu_is_sacrebleus():
    """Summed statistics of every shape sacrebleu treats specially: no match, an order without n-grams, short output,
    empty output, smoothing of unmatched orders."""
    rng = np.random.default_rng(0)
    bleu = BLEU(lowercase=True)
    cases = [[5, 7, 3, 1, 0, 0, 5, 4, 3, 2], [3, 3, 0, 0, 0, 0, 3, 2, 1, 0], [1, 1, 1, 0, 0, 0, 1, 0, 0, 0],
             [0, 4, 0, 0, 0, 0, 0, 0, 0, 0], [9, 4, 4, 3, 2, 1, 9, 8, 7, 6], [6, 6, 6, 5, 0, 3, 6, 5, 4, 3]]
    for _ in range(300):
        total = np.sort(rng.integers(0, 40, 4))[::-1]
        correct = np.minimum(total, rng.integers(0, 30, 4))
        cases.append([int(total[0]), int(rng.integers(0, 50)), *map(int, correct), *map(int, total)])
    expected = [bleu._compute_score_from_stats(list(case)).score / 100 for case in cases]
    assert corpus_bleu(np.array(cases, dtype=float)).tolist() == pytest.approx(expected, abs=1e-13, rel=0)


def test_perfect_answers_give_zero_width_intervals(public_data):
    rows = read_rows(OFFICIAL_TRAIN)
    report = score(rows, rows, bootstrap=200, seed=0)
    for split in ("overall", "samm", "casme2", "smic"):
        for key in FIGURES:
            value, ci = report[split][key], report[split][f"{key}_ci"]
            if value is None:          # SMIC has no fine question
                assert ci is None
            else:
                assert ci == [value, value], (split, key)
    assert report["avg_ci"] == [1.0, 1.0]
    assert report["smic"]["bleu_ci"] == [0.0, 0.0]   # one-word answers: no 4-grams in any resample


def test_intervals_narrow_as_clips_are_added():
    widths = {}
    for n in (20, 80, 320):
        preds, gold = synthetic(n, seed=n)
        report = score(preds, gold, bootstrap=400, seed=0)
        assert report["bootstrap"]["clips"] == {"overall": n, "samm": n}
        widths[n] = {key: report["overall"][f"{key}_ci"][1] - report["overall"][f"{key}_ci"][0] for key in FIGURES}
        for key in FIGURES:  # every interval holds its full-data value
            lo, hi = report["overall"][f"{key}_ci"]
            assert lo <= report["overall"][key] <= hi
    for key in FIGURES:
        assert widths[20][key] > widths[80][key] > widths[320][key], (key, widths)
    # about 1/sqrt(n): four times the clips, about half the width
    assert widths[320]["avg"] < 0.7 * widths[80]["avg"] < 0.5 * widths[20]["avg"]


def test_clips_not_rows_are_resampled():
    """Two clips of six rows each, one answered perfectly and one not at all: any resample of clips holds 0, 1 or 2
    copies of the perfect clip, so the mean ROUGE-1 recall takes only the values 0, 1/2 and 1 (a resample of rows
    would give sevenths and the like)."""
    gold, preds = [], []
    for clip, right in (("good", True), ("bad", False)):
        for k, (question, answer) in enumerate([(vocab.Q_COARSE, "negative"), (vocab.Q_FINE, "anger"),
                                                (vocab.Q_AU_ONE, "brow lowerer"), (vocab.Q_AU_ONE, "lips part"),
                                                (vocab.Q_AU_ONE, "lid tightener"), (vocab.Q_AU_ONE, "jaw drop")], 1):
            gold.append({"id": f"samm_{clip}_{k}", "question": question, "answer": answer})
            preds.append({"id": f"samm_{clip}_{k}", "answer": answer if right else "?"})
    clips = clip_statistics(join(preds, gold))
    assert clips.keys == [("samm", "samm_good"), ("samm", "samm_bad")]
    (figures,) = resampled_figures([clips], resamples=300, seed=0)
    assert set(np.unique(figures["overall"]["rouge1"]).tolist()) == {0.0, 0.5, 1.0}


def test_clip_rule():
    assert clip_of({"id": "casme2_sub01_EP02_01f_3", "image_id": "sub01_EP02_01f"}) == "sub01_EP02_01f"
    assert clip_of({"video_id": "casme3_test_CAS-1_2", "video": "CAS-1"}) == "CAS-1"
    assert clip_of({"id": "samm_clip000012_4"}) == "samm_clip000012"      # no image_id or video: the id's stem
    assert clip_of({"id": "oddid"}) == "oddid"
    # the same clip name in two splits is two clips
    preds, gold = synthetic(3, split="samm")
    preds2, gold2 = synthetic(3, split="cas")
    clips = clip_statistics(join(preds + preds2, gold + gold2))
    assert clips.clip_counts == {"samm": 3, "cas": 3} and len(clips.keys) == 6


def test_rows_statistics_sum_to_the_split_counts():
    preds, gold = synthetic(30, seed=5)
    joined = join(preds, gold)
    stats = row_statistics(joined)
    report = score(preds, gold)
    support = report["overall"]["coarse"]["support"]
    sums = stats[:, COLUMNS["coarse_support"]].sum(axis=0)
    assert {label: int(sums[i]) for i, label in enumerate(vocab.COARSE_LABELS) if sums[i]} == support


def test_seed_reproduces_and_changes_the_intervals():
    preds, gold = synthetic(30, seed=3)
    first, again = score(preds, gold, bootstrap=300, seed=7), score(preds, gold, bootstrap=300, seed=7)
    other = score(preds, gold, bootstrap=300, seed=8)
    assert first == again
    assert first["avg_ci"] != other["avg_ci"]
    assert first["bootstrap"]["seed"] == 7
    # point values do not depend on the bootstrap
    plain = score(preds, gold)
    assert all(first["overall"][key] == plain["overall"][key] for key in FIGURES)
    assert list(first["overall"])[:2] == ["uf1_coarse", "uf1_coarse_ci"]   # each interval beside its figure
