"""One consistent answer set per clip, on the real 2025 submissions of the 1st and 3rd placed teams."""

from __future__ import annotations

import pytest

from mevqa import vocab
from mevqa.answering.au_rules import parse_au_names
from mevqa.answering.consistency import clip_key, consistent_answers
from mevqa.answering.strategies import Answer, composite_parts, label_of
from mevqa.jsonl import read_jsonl


def submission(public_data, team: str) -> list[dict]:
    folder = public_data / "megc2025" / "predictions" / team
    return [row for name in ("me_vqa_samm_test_pred.jsonl", "me_vqa_casme3_test_pred.jsonl")
            for row in read_jsonl(folder / name)]


def clips_of(rows, answers):
    clips = {}
    for row, answer in zip(rows, answers):
        clips.setdefault(clip_key(row), []).append((row, answer))
    return clips


def assert_consistent(rows, answers) -> None:
    """Every clip's answers agree: fine and coarse, the composite's parts, the AU list, the presence answers."""
    for clip, pairs in clips_of(rows, answers).items():
        by_kind = {}
        for row, answer in pairs:
            by_kind.setdefault(vocab.question_kind(row["question"]), []).append((row, answer))
        fine = by_kind[vocab.FINE][0][1].text
        coarse = by_kind[vocab.COARSE][0][1].text
        au_text = by_kind[vocab.AU][0][1].text
        names = parse_au_names(au_text)
        if fine in vocab.FINE_LABELS:
            assert coarse == vocab.FINE_TO_COARSE[fine], clip
        composite_row, composite_answer = by_kind[vocab.COMPOSITE][0]
        composite = composite_answer.text
        # The template of the question asked: the official answers always match it.
        template = vocab.A_COMPOSITE_MANY if composite_row["question"] == vocab.Q_COMPOSITE_MANY \
            else vocab.A_COMPOSITE_ONE
        # The number of AUs the question implies (one for the singular question, two or more for the plural).
        if names:
            assert (len(names) == 1) == (by_kind[vocab.AU][0][0]["question"] == vocab.Q_AU_ONE), clip
        assert composite == template.format(aus=vocab.au_answer(names) if names else au_text.strip(), fine=fine,
                                            coarse=coarse), clip
        if names:
            assert au_text == vocab.au_answer(names)
            for row, answer in by_kind.get(vocab.PRESENCE, []):
                assert answer.text == ("yes" if vocab.question_au(row["question"]) in names else "no"), clip


@pytest.mark.parametrize("team", ["rank1", "rank3"])
def test_real_submissions_come_out_consistent(public_data, team):
    rows = submission(public_data, team)
    assert len(rows) == 120
    answers = consistent_answers(rows, [row["answer"] for row in rows])
    assert len(answers) == 120 and all(isinstance(a, Answer) for a in answers)
    assert_consistent(rows, answers)
    changed = [a for row, a in zip(rows, answers) if a.text != row["answer"]]
    assert all(a.consistency for a in changed)
    assert all(a.consistency is None for row, a in zip(rows, answers) if a.text == row["answer"])
    # Applying it again changes nothing.
    again = consistent_answers(rows, answers)
    assert [a.text for a in again] == [a.text for a in answers]
    assert all(a.consistency == b.consistency for a, b in zip(again, answers))
    # The input rows are untouched.
    assert [row["answer"] for row in rows] == [row["answer"] for row in submission(public_data, team)]


def test_what_changes_in_the_first_placed_teams_submission(public_data):
    rows = submission(public_data, "rank1")
    answers = consistent_answers(rows, [row["answer"] for row in rows])
    got = {row["video_id"]: answer for row, answer in zip(rows, answers)}
    # SAMM-3 is asked "What is the action unit?" (the official files ask it only of one-AU clips): "lid tightener",
    # but "yes" to lip corner puller. The presence answer names the one AU, and the composite repeats it.
    assert got["samm_test_SAMM-3_3"].text == "lip corner puller"
    assert got["samm_test_SAMM-3_3"].consistency == "the clip's AU list, in the official format, with the presence " \
                                                    "answers"
    assert got["samm_test_SAMM-3_4"].text == "yes"
    assert got["samm_test_SAMM-3_5"].text == vocab.composite_answer(["lip corner puller"], "happiness", "positive")
    # The team's composite said "unit present is" for seven AUs; the official template says "units present are".
    assert got["samm_test_SAMM-2_5"].text.startswith("The action units present are: brow lowerer, lid tightener, ")
    # A clip that was already consistent is left alone.
    assert all(got[f"samm_test_SAMM-1_{k}"].text == row["answer"] for k, row in
               zip(range(1, 6), [r for r in rows if r["video"] == "SAMM-1"]))
    assert all(got[f"samm_test_SAMM-1_{k}"].consistency is None for k in range(1, 6))


def test_what_changes_in_the_third_placed_teams_submission(public_data):
    rows = submission(public_data, "rank3")
    answers = consistent_answers(rows, [row["answer"] for row in rows])
    got = {row["video_id"]: answer for row, answer in zip(rows, answers)}
    original = {row["video_id"]: row["answer"] for row in rows}
    # SAMM-3: coarse "surprise" but fine "sadness": the coarse answer follows the fine one.
    assert (original["samm_test_SAMM-3_1"], original["samm_test_SAMM-3_2"]) == ("surprise", "sadness")
    assert got["samm_test_SAMM-3_1"].text == "negative"
    assert got["samm_test_SAMM-3_1"].consistency == "coarse follows the fine answer (sadness)"
    # SAMM-5: fine "confused" names no class; it is repeated as written in the composite, and the coarse answer
    # (positive) allows only happiness.
    assert got["samm_test_SAMM-5_2"].text == "happiness"
    # A free-text AU answer becomes the official list of the names it mentions.
    assert original["samm_test_SAMM-4_3"].startswith("The action units are: 1) inner brow raiser")
    assert got["samm_test_SAMM-4_3"].text == vocab.au_answer(parse_au_names(original["samm_test_SAMM-4_3"]))
    # Every composite is the official template with the clip's fine and coarse answers.
    for row, answer in zip(rows, answers):
        if vocab.question_kind(row["question"]) == vocab.COMPOSITE:
            _, fine, coarse = composite_parts(answer.text)
            clip = row["video"]
            assert fine == label_of(got[f"{row['video_id'].rsplit('_', 1)[0]}_2"].text, vocab.FINE), clip
            assert coarse == got[f"{row['video_id'].rsplit('_', 1)[0]}_1"].text, clip


def rows_for(*questions, image_id="sub01_EP01", dataset="casme2"):
    return [{"id": f"{dataset}_{image_id}_{k}", "dataset": dataset, "image_id": image_id, "question": q}
            for k, q in enumerate(questions, start=1)]


def test_under_constrained_the_more_confident_answer_decides():
    rows = rows_for(vocab.Q_COARSE, vocab.Q_FINE, vocab.Q_AU_ONE, vocab.Q_COMPOSITE_ONE)
    fine_probs = {"happiness": 0.3, "surprise": 0.1, "disgust": 0.45, "repression": 0.15}   # negative in all: 0.6
    confident_coarse = [Answer("positive", label_probs={"positive": 0.9, "negative": 0.05, "surprise": 0.05}),
                        Answer("disgust", label_probs=fine_probs), Answer("lip corner puller"), Answer("x")]
    out = consistent_answers(rows, confident_coarse)
    assert [a.text for a in out[:2]] == ["positive", "happiness"]
    assert out[1].consistency == "fine follows the more confident coarse answer (positive)"
    assert out[1].label_probs == fine_probs                       # the model's distribution is kept
    assert out[3].text == vocab.composite_answer(["lip corner puller"], "happiness", "positive")
    unsure_coarse = [replace_probs(confident_coarse[0], {"positive": 0.5, "negative": 0.3, "surprise": 0.2}),
                     *confident_coarse[1:]]
    out = consistent_answers(rows, unsure_coarse)
    assert [a.text for a in out[:2]] == ["negative", "disgust"]
    assert out[0].consistency == "coarse follows the fine answer (disgust)"
    # Without probabilities the fine answer decides.
    out = consistent_answers(rows, ["positive", "disgust", "lip corner puller", "x"])
    assert [a.text for a in out[:2]] == ["negative", "disgust"]


def replace_probs(answer: Answer, probs: dict) -> Answer:
    return Answer(answer.text, label_probs=probs)


def test_presence_answers_and_the_au_list_agree():
    presence = vocab.Q_PRESENCE.format
    rows = rows_for(vocab.Q_COARSE, vocab.Q_FINE, vocab.Q_AU_MANY, presence(au="cheek raiser"),
                    presence(au="brow lowerer"), vocab.Q_COMPOSITE_MANY)
    out = consistent_answers(rows, ["negative", "disgust", "brow lowerer, lip corner puller", "yes", "No.", "?"])
    # "yes" to cheek raiser (AU6) puts it in FACS code order; "no" to brow lowerer takes it out.
    assert out[2].text == "cheek raiser, lip corner puller"
    assert [out[3].text, out[4].text] == ["yes", "no"]
    assert out[4].consistency == "the AU list leaves out brow lowerer, as this answer says"
    assert out[5].text == vocab.composite_answer(["cheek raiser", "lip corner puller"], "disgust", "negative")
    # "no" to the list's only AU: the list stands and the answer becomes "yes".
    out = consistent_answers(rows[:3] + rows[4:5], ["negative", "disgust", "brow lowerer", "no"])
    assert [out[2].text, out[3].text] == ["brow lowerer", "yes"]


def test_the_number_of_aus_follows_the_question_form():
    """The official files ask the singular AU questions exactly of one-AU clips and the plural ones of clips with two
    or more (checked here on the training file), so the AU list keeps that size."""
    from collections import Counter

    from conftest import OFFICIAL_TRAIN

    sizes = Counter((row["question"], len(parse_au_names(row["answer"].split("Therefore")[0])) > 1)
                    for row in read_jsonl(OFFICIAL_TRAIN) if vocab.question_kind(row["question"]) in (vocab.AU,
                                                                                                   vocab.COMPOSITE))
    assert set(sizes) == {(vocab.Q_AU_ONE, False), (vocab.Q_COMPOSITE_ONE, False), (vocab.Q_AU_MANY, True),
                          (vocab.Q_COMPOSITE_MANY, True)}
    presence = vocab.Q_PRESENCE.format
    one = rows_for(vocab.Q_FINE, vocab.Q_AU_ONE, presence(au="lip corner puller"), vocab.Q_COMPOSITE_ONE)
    # Without probabilities the presence answer names the one AU.
    out = consistent_answers(one, ["happiness", "lid tightener", "yes", "?"])
    assert [a.text for a in out[1:3]] == ["lip corner puller", "yes"]
    assert out[3].text == vocab.composite_answer(["lip corner puller"], "happiness", "positive")
    # Under constrained the more confident answer decides.
    sure_au = Answer("lid tightener", label_probs={"lid tightener": 0.9, "lip corner puller": 0.1})
    out = consistent_answers(one, ["happiness", sure_au, Answer("yes", label_probs={"yes": 0.6, "no": 0.4}), "?"])
    assert [a.text for a in out[1:3]] == ["lid tightener", "no"]
    assert out[2].consistency == "the clip is asked about one AU (lid tightener); this answer follows it"
    out = consistent_answers(one, ["happiness", sure_au, Answer("yes", label_probs={"yes": 0.95, "no": 0.05}), "?"])
    assert [a.text for a in out[1:3]] == ["lip corner puller", "yes"]
    # The plural question keeps two AUs: a "no" that would leave one becomes "yes".
    many = rows_for(vocab.Q_AU_MANY, presence(au="brow lowerer"), vocab.Q_COMPOSITE_MANY, vocab.Q_FINE)
    out = consistent_answers(many, ["brow lowerer, nose wrinkler", "no", "?", "disgust"])
    assert [a.text for a in out[:2]] == ["brow lowerer, nose wrinkler", "yes"]
    assert out[1].consistency == "the clip is asked about two or more AUs; this answer follows its AU list"
    assert out[2].text == vocab.composite_answer(["brow lowerer", "nose wrinkler"], "disgust", "negative")


def test_parts_missing_from_the_clip_come_from_the_composite():
    rows = rows_for(vocab.Q_FINE, vocab.Q_COMPOSITE_ONE)
    composite = vocab.composite_answer(["brow lowerer"], "anger", "positive")
    out = consistent_answers(rows, ["disgust", composite])
    assert out[1].text == vocab.composite_answer(["brow lowerer"], "disgust", "negative")
    # No readable fine answer, a composite without one either, and no coarse row: left as it is.
    out = consistent_answers(rows, ["hmm", "I am not sure."])
    assert [a.text for a in out] == ["hmm", "I am not sure."]
    assert all(a.consistency is None for a in out)


def test_clips_are_grouped_by_image_id_then_video_then_id():
    assert clip_key({"dataset": "samm", "image_id": "006_1_2", "id": "samm_006_1_2_3"}) == ("samm", "006_1_2")
    assert clip_key({"video_id": "casme3_test_CAS-1_2", "video": "CAS-1"}) == ("casme3", "CAS-1")
    assert clip_key({"id": "synth_clip7_12"}) == ("", "synth_clip7")
    assert clip_key({"id": "casme2_sub01_EP02_01f_3"}) == ("casme2", "casme2_sub01_EP02_01f")
    # The same name in two datasets is two clips.
    assert clip_key({"dataset": "samm", "image_id": "x"}) != clip_key({"dataset": "casme2", "image_id": "x"})
    with pytest.raises(ValueError, match="2 rows but 1 answers"):
        consistent_answers(rows_for(vocab.Q_COARSE, vocab.Q_FINE), ["negative"])
