"""Scoring throughput: build realistic gold and prediction rows, score them with ``mevqa.eval.score``, print rows/s.

    python benchmarks/score_throughput.py [--rows 100000] [--seed 0]

Rows follow the official training file: per clip the C, F, A, Y(yes), Y(no) and X questions (SMIC clips: C only),
over the SAMM, CAS, CASME II and SMIC splits. Predictions imitate real model output: mostly the exact answer form,
some wrong labels, labels inside sentences, composite answers with other action units, chatty free text and a few
empty answers. The issue's target: 100,000 rows in at most 5 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import random
import time

from mevqa import vocab
from mevqa.eval import score

AU_NAMES = list(vocab.OFFICIAL_AU_NAMES.values())
FINE_BY_SPLIT = {"samm": ["anger", "happiness", "surprise", "contempt", "disgust", "fear", "sadness"],
                 "cas": ["anger", "happiness", "surprise", "disgust", "fear", "sadness"],
                 "casme2": ["happiness", "disgust", "repression", "surprise"],
                 "smic": ["happiness", "surprise", "disgust"]}


def clip_rows(rng: random.Random, split: str, clip: int) -> list[tuple[dict, str]]:
    """(gold row, predicted answer) pairs for one clip."""
    fine = rng.choice(FINE_BY_SPLIT[split])
    coarse = vocab.FINE_TO_COARSE[fine]
    aus = rng.sample(AU_NAMES, rng.choice((1, 1, 2, 2, 3, 4)))
    absent = rng.choice([au for au in AU_NAMES if au not in aus])
    guess_aus = aus if rng.random() < 0.4 else rng.sample(AU_NAMES, rng.choice((1, 2, 3)))
    guess_fine = fine if rng.random() < 0.5 else rng.choice(vocab.FINE_LABELS)
    guess_coarse = coarse if rng.random() < 0.6 else rng.choice(vocab.COARSE_LABELS)

    def label_answer(label: str, kind: str) -> str:
        style = rng.random()
        if style < 0.7:
            return label
        if style < 0.85:
            return f"The {kind} expression class is {label}."
        if style < 0.95:
            return f"It looks like a subtle {label} expression, maybe {rng.choice(vocab.COARSE_LABELS)}."
        return "" if style < 0.97 else "I cannot tell from these frames."

    qa = [(vocab.Q_COARSE, coarse, label_answer(guess_coarse, "coarse"))]
    if split != "smic":
        qa += [(vocab.Q_FINE, fine, label_answer(guess_fine, "fine-grained")),
               (vocab.au_question(aus), vocab.au_answer(aus), vocab.au_answer(guess_aus)),
               (vocab.Q_PRESENCE.format(au=aus[0]), "yes", rng.choice(("yes", "yes", "no"))),
               (vocab.Q_PRESENCE.format(au=absent), "no", rng.choice(("no", "no", "yes", "No, it is not."))),
               (vocab.composite_question(aus), vocab.composite_answer(aus, fine, coarse),
                vocab.composite_answer(guess_aus, guess_fine, guess_coarse))]
    prefix = f"{split}_clip{clip:06d}"
    return [({"id": f"{prefix}_{k}", "dataset": split, "question": q, "answer": a}, p)
            for k, (q, a, p) in enumerate(qa, start=1)]


def build_rows(n_rows: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    gold, preds = [], []
    clip = 0
    while len(gold) < n_rows:
        for row, answer in clip_rows(rng, rng.choice(("samm", "cas", "casme2", "smic")), clip):
            gold.append(row)
            preds.append({"id": row["id"], "answer": answer})
        clip += 1
    return gold[:n_rows], preds[:n_rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gold, preds = build_rows(args.rows, args.seed)
    start, start_cpu = time.perf_counter(), time.process_time()
    report = score(preds, gold)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    # CPU seconds too: on a shared machine the wall time also measures the neighbours.
    print(f"scored {len(gold)} rows in {seconds:.2f} s wall ({cpu_seconds:.2f} s CPU): {len(gold) / seconds:,.0f} "
          f"rows/s; avg {report['avg']:.4f}, overall BLEU {report['overall']['bleu']:.4f}, "
          f"ROUGE-1 {report['overall']['rouge1']:.4f}")


if __name__ == "__main__":
    main()
