"""The label-constrained scorer: each allowed answer's log-probability is exactly what training computes for it."""

from __future__ import annotations

import math

import pytest
import torch

from mevqa import vocab
from mevqa.answering.label_scoring import (END, _sample, _takes_encoder_outputs, answer_logprobs, choice_logprobs,
                                           choice_probabilities, greedy_au_list, normalise)
from mevqa.errors import MevqaError
from mevqa.models.collate import encode
from qa_rows import write_qa_file



@pytest.fixture(scope="module")
def family_tiny(tiny_family_dir):
    """``(model, processor)`` of each family's tiny model in turn."""
    from mevqa.models.loading import load_model_and_processor

    return load_model_and_processor(tiny_family_dir, device="cpu")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    from mevqa.rows import read_rows

    return read_rows(write_qa_file(tmp_path_factory.mktemp("qa"), clips=2))


def training_token_logprobs(model, processor, row, mode, answer):
    """Per-token log-probabilities of the labelled tokens (answer and <|im_end|>) from one plain training forward
    pass with the pixels, one sample at a time: the reference the scorer must equal."""
    batch = encode(processor, [_sample(row, mode, answer, "default", None)], train=True)
    labels = batch.pop("labels")[0, 1:]
    with torch.no_grad():
        logits = model(**batch).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, -1)[torch.arange(len(labels)), labels.clamp(min=0)]
    return logprobs[labels != -100].tolist()


@pytest.mark.parametrize("mode", ["oao", "video", "frames+flow"])
def test_scores_equal_the_training_log_likelihood_of_each_answer(family_tiny, rows, mode):
    """On each family: the vision features encoded once and reused (with Qwen3-VL's DeepStack features) give
    exactly the scores of plain forward passes with the pixels."""
    model, processor = family_tiny
    assert _takes_encoder_outputs(model)   # so the vision features are encoded once per row, as tested here
    answers = ["positive", "negative", "surprise", "lip corner puller, brow lowerer"]
    # batch_size 3: one forward pass of 3 candidates and one of 1, vision encoded once for all.
    got = answer_logprobs(model, processor, rows[0], mode, answers, batch_size=3)
    incomplete = answer_logprobs(model, processor, rows[0], mode, answers, complete=False, batch_size=3)
    for answer, score, prefix in zip(answers, got, incomplete):
        tokens = training_token_logprobs(model, processor, rows[0], mode, answer)
        assert len(tokens) >= 2                                   # the answer and <|im_end|>
        assert score == pytest.approx(sum(tokens), abs=1e-4)
        assert prefix == pytest.approx(sum(tokens[:-1]), abs=1e-4)  # without the closing <|im_end|>
        assert score < prefix < 0


def test_a_peft_wrapped_model_is_scored_through_its_adapter(tiny_model_dir, rows):
    from peft import LoraConfig, get_peft_model

    from mevqa.models.loading import load_model_and_processor

    base, processor = load_model_and_processor(tiny_model_dir)
    plain = answer_logprobs(base, processor, rows[0], "oao", ["positive", "negative"])
    # Non-zero LoRA weights on the vision tower and the language model, so the adapter changes the scores.
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                        target_modules=r".*(visual\.blocks\.\d+\.attn\.qkv|language_model\.layers\.\d+\.self_attn\.q_proj)")
    model = get_peft_model(base, config)
    got = answer_logprobs(model, processor, rows[0], "oao", ["positive", "negative"])
    expected = [sum(training_token_logprobs(model, processor, rows[0], "oao", a)) for a in ("positive", "negative")]
    assert got == pytest.approx(expected, abs=1e-4)
    assert got != pytest.approx(plain, abs=1e-3)


def test_choice_probabilities_are_normalised_and_independent_of_batching(tiny, rows):
    model, processor = tiny
    label_rows = rows[:2] + rows[5:7]                 # coarse and fine rows of two clips
    choices = [vocab.COARSE_LABELS, vocab.FINE_LABELS] * 2
    logprobs = choice_logprobs(model, processor, label_rows, "oao", choices, batch_size=8)
    one_by_one = choice_logprobs(model, processor, label_rows, "oao", choices, batch_size=1)
    probabilities = choice_probabilities(model, processor, label_rows, "oao", choices, batch_size=2)
    for scores, alone, probs, allowed in zip(logprobs, one_by_one, probabilities, choices):
        assert list(scores) == list(allowed) == list(probs)
        assert list(scores.values()) == pytest.approx(list(alone.values()), abs=1e-4)
        assert sum(probs.values()) == pytest.approx(1.0)
        assert max(probs, key=probs.get) == max(scores, key=scores.get)
        total = math.log(sum(math.exp(v) for v in scores.values()))
        assert [math.log(p) for p in probs.values()] == pytest.approx([v - total for v in scores.values()], abs=1e-6)
    # Another engineer's spotting method asks yes/no of every row.
    yes_no = choice_probabilities(model, processor, rows[:3], "flow", [["yes", "no"]] * 3)
    assert all(set(p) == {"yes", "no"} and sum(p.values()) == pytest.approx(1.0) for p in yes_no)


def test_bad_choices_are_errors(tiny, rows):
    model, processor = tiny
    with pytest.raises(MevqaError, match="one list of allowed answers per row: 2 rows, 1 lists"):
        choice_logprobs(model, processor, rows[:2], "oao", [["yes", "no"]])
    with pytest.raises(MevqaError, match="no allowed answers"):
        choice_logprobs(model, processor, rows[:1], "oao", [[]])
    with pytest.raises(MevqaError, match="allowed answers repeat"):
        choice_logprobs(model, processor, rows[:1], "oao", [["yes", "yes"]])
    with pytest.raises(MevqaError, match="without surrounding whitespace"):
        choice_logprobs(model, processor, rows[:1], "oao", [[" yes", "no"]])


def test_normalise():
    assert normalise({"a": 0.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    probs = normalise({"a": -1000.0, "b": -1001.0})               # no underflow far from 0
    assert probs["a"] == pytest.approx(1 / (1 + math.exp(-1)))


def test_greedy_au_list_takes_the_most_probable_continuation_at_each_step(tiny, rows):
    model, processor = tiny
    names = list(vocab.OFFICIAL_AU_NAMES.values())
    chosen, steps = greedy_au_list(model, processor, rows[2], "oao", min_items=2, max_items=4, batch_size=32)
    assert 2 <= len(chosen) <= 4 and len(steps) >= len(chosen)
    assert [vocab.AU_CODES[n] for n in chosen] == sorted(vocab.AU_CODES[n] for n in chosen)  # FACS code order
    for k, step in enumerate(steps):
        assert sum(step.values()) == pytest.approx(1.0)
        pick = max(step, key=step.get)
        assert pick == (chosen[k] if k < len(chosen) else END)
    assert END not in steps[0] and END not in steps[1]              # two names at least
    # Step 1's candidates are every name that leaves a later one, scored as answers that go on.
    assert list(steps[0]) == names[:-1]
    first = answer_logprobs(model, processor, rows[2], "oao", names[:-1], complete=False, batch_size=32)
    assert list(steps[0].values()) == pytest.approx(list(normalise(dict(zip(names[:-1], first))).values()), abs=1e-5)
    # Later steps offer only names after the last one chosen, and stopping.
    assert set(steps[1]) == set(names[names.index(chosen[0]) + 1:])
    if len(steps) > 2:
        assert END in steps[2] and set(steps[2]) - {END} == set(names[names.index(chosen[1]) + 1:])


def test_greedy_au_list_bounds(tiny, rows):
    model, processor = tiny
    names = ["inner brow raiser", "brow lowerer", "lip corner puller"]
    chosen, steps = greedy_au_list(model, processor, rows[2], "oao", names, min_items=1, max_items=1)
    assert len(chosen) == 1 and len(steps) == 1 and set(steps[0]) == set(names)
    chosen, steps = greedy_au_list(model, processor, rows[2], "oao", names, min_items=3)
    assert chosen == names
    with pytest.raises(MevqaError, match="min_items"):
        greedy_au_list(model, processor, rows[2], "oao", names, min_items=4)
