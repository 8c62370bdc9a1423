"""Answer strategies through the commands, on the tiny random Qwen2.5-VL: ``mevqa predict --strategy constrained``
on both official test files (valid labels, ``label_probs``, one consistent answer set per clip in
``final_predictions.jsonl``), reproducible votes, one model per dataset, a strategy read from the model's
``train_config.yaml``, the option checks; ``mevqa answer --strategy``; and the 2025 recipes' strategy settings."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from conftest import OFFICIAL_TEST, REPO_ROOT
from inference_clips import write_frame_folder, write_test_clips
from mevqa import vocab
from mevqa.answering.au_rules import parse_au_names
from mevqa.answering.strategies import vote_answer
from mevqa.cli import main

N_ROWS = 120  # 35 SAMM + 85 CAS(ME)^3 questions
OFFICIAL_AU_NAMES = tuple(vocab.OFFICIAL_AU_NAMES.values())


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def kind(row) -> str | None:
    return vocab.question_kind(row["question"])


def dataset(row) -> str:
    return row["video_id"].split("_")[0]


def by_clip(rows) -> dict[str, dict]:
    """{video: {kind: row}} (the 2025 test files ask each kind at most once per clip)."""
    clips: dict = defaultdict(dict)
    for row in rows:
        assert kind(row) not in clips[row["video"]]
        clips[row["video"]][kind(row)] = row
    return clips


def questions_of(tmp_path: Path, clips: dict[str, tuple[str, ...]]) -> list[Path]:
    """Official question files cut down to some clips, keeping their names (``*_to_answer``: official)."""
    paths = []
    for source in OFFICIAL_TEST:
        wanted = clips.get(source.name.split("_")[2], ())
        if wanted:
            path = tmp_path / "questions" / source.name
            path.parent.mkdir(exist_ok=True)
            path.write_text("".join(json.dumps(row) + "\n" for row in read_lines(source) if row["video"] in wanted))
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def test_clips(tmp_path_factory):
    return write_test_clips(tmp_path_factory.mktemp("test-media"), n_frames=6)


@pytest.fixture(scope="module")
def constrained_run(tmp_path_factory, tiny_model_dir, test_clips) -> Path:
    out = tmp_path_factory.mktemp("constrained") / "out"
    assert main(["predict", "--questions", *map(str, OFFICIAL_TEST), "--clips", str(test_clips), "--model",
                 str(tiny_model_dir), "--out", str(out), "--strategy", "constrained", "--max-aus", "3",
                 "--inputs", "flow", "--batch-size", "8"]) == 0
    return out


# --- constrained, and one consistent answer set per clip ------------------------------------------------------
def test_constrained_answers_are_valid_labels_with_their_probabilities(constrained_run):
    raw = read_lines(constrained_run / "predictions.jsonl")
    assert sorted(row["video_id"] for row in raw) == sorted(row["video_id"] for path in OFFICIAL_TEST
                                                            for row in read_lines(path))
    allowed = {vocab.COARSE: vocab.COARSE_LABELS, vocab.PRESENCE: vocab.PRESENCE_ANSWERS}
    for row in raw:
        question_kind = kind(row)
        if question_kind in (vocab.COARSE, vocab.FINE, vocab.PRESENCE):
            labels = allowed.get(question_kind) or vocab.DATASET_FINE_LABELS[dataset(row)]
            assert tuple(row["label_probs"]) == labels, row["video_id"]
            assert row["answer"] == max(row["label_probs"], key=row["label_probs"].get)
            assert sum(row["label_probs"].values()) == pytest.approx(1.0)
        elif row["question"] == vocab.Q_AU_ONE:
            assert tuple(row["label_probs"]) == OFFICIAL_AU_NAMES and row["answer"] in OFFICIAL_AU_NAMES
            assert sum(row["label_probs"].values()) == pytest.approx(1.0)
        elif row["question"] == vocab.Q_AU_MANY:      # built name by name, 2 to --max-aus names in FACS order
            names = parse_au_names(row["answer"])
            assert 2 <= len(names) <= 3 and row["answer"] == vocab.au_answer(names)
            assert set(names) <= set(OFFICIAL_AU_NAMES) and len(row["au_steps"]) >= len(names)
            assert all(sum(step.values()) == pytest.approx(1.0) for step in row["au_steps"])
    # The composite is assembled in the official template from the clip's own answers.
    for video, clip in by_clip(raw).items():
        assert clip[vocab.COMPOSITE]["answer"] == vocab.composite_answer(
            parse_au_names(clip[vocab.AU]["answer"]), clip[vocab.FINE]["answer"], clip[vocab.COARSE]["answer"]), video
    run = json.loads((constrained_run / "run.json").read_text())
    assert run["settings"]["strategy"] == {"name": "constrained", "max_aus": 3, "fine_labels": None}
    assert run["consistent"] == "official files" and run["dataset_models"] == {}


def assert_consistent(rows) -> None:
    for video, clip in by_clip(rows).items():
        fine, coarse = clip[vocab.FINE]["answer"], clip[vocab.COARSE]["answer"]
        assert coarse == vocab.FINE_TO_COARSE[fine], video
        names = parse_au_names(clip[vocab.AU]["answer"])
        assert clip[vocab.AU]["answer"] == vocab.au_answer(names)
        assert (len(names) == 1) == (clip[vocab.AU]["question"] == vocab.Q_AU_ONE), video
        presence = clip[vocab.PRESENCE]
        assert presence["answer"] == ("yes" if vocab.question_au(presence["question"]) in names else "no"), video
        assert clip[vocab.COMPOSITE]["answer"] == vocab.composite_answer(names, fine, coarse), video


def test_final_answers_agree_within_each_clip_and_are_the_ones_submitted(constrained_run):
    raw = {row["video_id"]: row for row in read_lines(constrained_run / "predictions.jsonl")}
    final = read_lines(constrained_run / "final_predictions.jsonl")
    assert [row["video_id"] for row in final] == [row["video_id"] for path in OFFICIAL_TEST
                                                  for row in read_lines(path)]
    assert_consistent(final)
    changed = [row for row in final if row["answer"] != raw[row["video_id"]]["answer"]]
    assert changed                       # the raw answers of the random model do contradict each other
    assert all(row["consistency"] for row in changed)
    assert all("consistency" not in row for row in final if row["answer"] == raw[row["video_id"]]["answer"])
    submitted = {row["video_id"]: row["answer"] for path in OFFICIAL_TEST
                 for row in read_lines(constrained_run / path.name.replace("_to_answer", "_pred"))}
    assert submitted == {row["video_id"]: row["answer"] for row in final}


def test_consistency_can_be_switched_off_on_a_rerun_but_the_strategy_cannot_change(constrained_run, tmp_path,
                                                                                   tiny_model_dir, test_clips,
                                                                                   capsys):
    out = shutil.copytree(constrained_run, tmp_path / "out")
    raw = (out / "predictions.jsonl").read_bytes()
    argv = ["predict", "--questions", *map(str, OFFICIAL_TEST), "--clips", str(test_clips), "--model",
            str(tiny_model_dir), "--out", str(out), "--strategy", "constrained", "--max-aus", "3", "--inputs", "flow"]
    assert main(argv + ["--no-consistent"]) == 0     # nothing is asked again: the final file is rebuilt
    assert (out / "predictions.jsonl").read_bytes() == raw
    answered = {row["video_id"]: row["answer"] for row in read_lines(out / "predictions.jsonl")}
    final = read_lines(out / "final_predictions.jsonl")
    assert [(row["video_id"], row["answer"]) for row in final] == \
        [(row["video_id"], answered[row["video_id"]]) for path in OFFICIAL_TEST for row in read_lines(path)]
    assert "(0 answers changed to agree within their clip)" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["consistent"] is False
    assert main(argv[:-6] + ["--strategy", "hierarchical+constrained", "--max-aus", "3", "--inputs", "flow"]) == 2
    assert "holds answers made with other settings (settings.strategy.name differ" in capsys.readouterr().err


# --- vote -------------------------------------------------------------------------------------------------------
def test_vote_through_predict_is_reproducible(tmp_path, tiny_model_dir, test_clips, capsys):
    questions = questions_of(tmp_path, {"samm": ("SAMM-1", "SAMM-2")})
    base = ["predict", "--questions", *map(str, questions), "--clips", str(test_clips), "--model",
            str(tiny_model_dir), "--inputs", "oao", "--max-new-tokens", "6"]
    vote = ["--strategy", "vote", "--votes", "3", "--vote-temperature", "1.0"]

    def run(name, *extra) -> dict:
        assert main([*base, "--out", str(tmp_path / name), *extra]) == 0
        return {row["video_id"]: row for row in read_lines(tmp_path / name / "predictions.jsonl")}

    first = run("a", *vote, "--seed", "3", "--batch-size", "8")
    again = run("b", *vote, "--seed", "3", "--batch-size", "1")
    assert {k: (r["answer"], r["votes"]) for k, r in again.items()} == \
        {k: (r["answer"], r["votes"]) for k, r in first.items()}
    # Stopped after 3 rows (mid-clip), then finished: the votes of an uninterrupted run, row for row.
    assert len(run("resumed", *vote, "--seed", "3", "--limit", "3")) == 3
    resumed = run("resumed", *vote, "--seed", "3")
    assert {k: (r["answer"], r["votes"]) for k, r in resumed.items()} == \
        {k: (r["answer"], r["votes"]) for k, r in first.items()}
    assert len(first) == 10
    assert all(len(row["votes"]) == 3 and row["answer"] == vote_answer(row["votes"], row["question"])
               for row in first.values())
    assert any(len(set(row["votes"])) > 1 for row in first.values())        # sampled
    other = run("c", *vote, "--seed", "4")
    assert [row["votes"] for row in other.values()] != [row["votes"] for row in first.values()]
    assert json.loads((tmp_path / "a" / "run.json").read_text())["settings"]["strategy"] == {
        "name": "vote", "votes": 3, "vote_temperature": 1.0, "seed": 3}
    # One greedy vote is direct generation.
    greedy = run("greedy", "--strategy", "vote", "--votes", "1", "--vote-temperature", "0")
    direct = run("direct")
    assert {k: r["answer"] for k, r in greedy.items()} == {k: r["answer"] for k, r in direct.items()}
    assert all(r["votes"] == [r["answer"]] for r in greedy.values())
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "a"), "--strategy", "vote", "--votes", "5", "--vote-temperature",
                 "1.0", "--seed", "3"]) == 2
    assert "(settings.strategy.votes differ" in capsys.readouterr().err


# --- one model per dataset --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    """Another tiny model (other random weights), trained, as its train_config.yaml says, on flow images."""
    from mevqa.models.tiny import write_tiny_model

    model = write_tiny_model(tmp_path_factory.mktemp("other-model") / "model", seed=1)
    (model / "train_config.yaml").write_text(yaml.safe_dump({"inputs": "flow", "num_epochs": 1}))
    return model


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(1)
    get_peft_model(model, LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"],
                                     init_lora_weights=False)).save_pretrained(folder)
    return folder


def test_each_dataset_is_answered_by_its_own_model(tmp_path, tiny_model_dir, other_model, adapter, test_clips):
    samm, cas = questions_of(tmp_path, {"samm": ("SAMM-1", "SAMM-2"), "casme3": ("CAS-1", "CAS-2")})

    def run(name, questions, *models) -> dict[str, str]:
        out = tmp_path / name
        assert main(["predict", "--questions", *map(str, questions), "--clips", str(test_clips), "--out", str(out),
                     "--max-new-tokens", "6", *map(str, models)]) == 0
        return {row["video_id"]: row["answer"] for row in read_lines(out / "predictions.jsonl")}

    both = run("both", [samm, cas], "--model", tiny_model_dir, "--model-for", f"casme3={other_model}")
    samm_alone = run("samm", [samm], "--model", tiny_model_dir)
    cas_alone = run("cas", [cas], "--model", other_model)
    cas_by_the_first = run("cas-first", [cas], "--model", tiny_model_dir)
    assert len(both) == 20
    assert {k: v for k, v in both.items() if k.startswith("samm")} == samm_alone
    assert {k: v for k, v in both.items() if k.startswith("casme3")} == cas_alone
    assert cas_alone != cas_by_the_first                    # the two models answer differently
    run_record = json.loads((tmp_path / "both" / "run.json").read_text())
    assert run_record["settings"]["inputs"] == "oao"       # the first model: no training record, mevqa's default
    other = run_record["dataset_models"]["casme3"]
    assert other["model"] == str(other_model.resolve()) and other["settings"]["inputs"] == "flow"
    assert "model.safetensors" in other["weights"]["model"]
    # Inputs are built for each model: flow for the CAS(ME)^3 clips, onset/apex/offset for SAMM.
    assert (tmp_path / "both" / "media" / "CAS-1" / "flow.jpg").is_file()
    assert not (tmp_path / "both" / "media" / "SAMM-1" / "flow.jpg").exists()
    assert (tmp_path / "both" / "media" / "SAMM-1" / "apex.jpg").is_file()
    assert (tmp_path / "both" / "submission.zip").is_file()

    # An adapter for one dataset, on --model.
    adapted = run("adapted", [samm, cas], "--model", tiny_model_dir, "--adapter-for", f"samm={adapter}")
    samm_adapted = run("samm-adapted", [samm], "--model", tiny_model_dir, "--adapter", adapter)
    assert {k: v for k, v in adapted.items() if k.startswith("samm")} == samm_adapted != samm_alone
    assert {k: v for k, v in adapted.items() if k.startswith("casme3")} == cas_by_the_first


def test_a_dataset_whose_clips_are_missing_fails_its_rows_without_loading_its_model(tmp_path, tiny_model_dir,
                                                                                   test_clips, capsys):
    """The CAS(ME)^3 clips are not there: its rows go to errors.jsonl and its model is never loaded (here a folder
    with the model's config and processor but no weights, which loading would refuse; its config.json is read up
    front for the run record's family); the SAMM rows are answered by theirs."""
    samm, cas = questions_of(tmp_path, {"samm": ("SAMM-1",), "casme3": ("CAS-1", "CAS-2")})
    clips = shutil.copytree(test_clips / "SAMM", tmp_path / "clips" / "SAMM")
    shutil.copytree(tiny_model_dir, tmp_path / "no-model", ignore=shutil.ignore_patterns("*.safetensors"))
    out = tmp_path / "out"
    assert main(["predict", "--questions", str(samm), str(cas), "--clips", str(clips.parent), "--out", str(out),
                 "--model", str(tiny_model_dir), "--model-for", f"casme3={tmp_path / 'no-model'}",
                 "--max-new-tokens", "4"]) == 1
    answered = {row["video_id"] for row in read_lines(out / "predictions.jsonl")}
    errors = read_lines(out / "errors.jsonl")
    assert answered == {row["video_id"] for row in read_lines(samm)}
    assert {row["id"] for row in errors} == {row["video_id"] for row in read_lines(cas)}
    assert all("clip 'CAS-" in row["error"] and "not found" in row["error"] for row in errors)
    assert "submission: not written" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--model", "{a}", "--model-for", "smic={b}"], "--model-for smic: no question row is of dataset smic (the rows "
                                                    "are of casme3, samm)"),
    (["--model-for", "casme3={b}"], "--model is needed: {samm}:1 and the other rows of samm have no --model-for"),
    (["--model-for", "casme3={b}", "--model-for", "samm={a}", "--adapter", "{b}"], "--adapter answers no row"),
    (["--model", "{a}", "--model-for", "atlantis={b}"], "--model-for: 'atlantis={b}': unknown dataset 'atlantis'"),
    (["--model", "{a}", "--model-for", "samm"], "--model-for: expected DATASET=MODEL, got 'samm'"),
    (["--model", "{a}", "--model-for", "samm={a}", "--model-for", "SAMM={b}"], "--model-for: dataset samm is given "
                                                                               "twice"),
])
def test_bad_model_choices_are_refused_before_any_work(tmp_path, tiny_model_dir, other_model, capsys, flags,
                                                       message):
    samm, cas = questions_of(tmp_path, {"samm": ("SAMM-1",), "casme3": ("CAS-1",)})
    names = {"a": tiny_model_dir, "b": other_model, "samm": samm}
    out = tmp_path / "out"
    assert main(["predict", "--questions", str(samm), str(cas), "--out", str(out),
                 *[flag.format(**names) for flag in flags]]) == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err and err.count("\n") == 1
    assert not out.exists()


# --- the strategy the model was trained and evaluated with ------------------------------------------------------
def test_a_model_is_answered_with_the_strategy_its_training_config_names(tmp_path, tiny_model_dir, test_clips,
                                                                        capsys):
    trained = shutil.copytree(tiny_model_dir, tmp_path / "trained")
    (trained / "train_config.yaml").write_text(yaml.safe_dump({
        "inputs": "oao", "num_epochs": 1, "answer_strategy": "hierarchical+constrained", "answer_votes": 5,
        "answer_fine_labels": ["samm=anger,happiness,surprise"]}))
    questions = questions_of(tmp_path, {"samm": ("SAMM-1",)})
    base = ["predict", "--questions", *map(str, questions), "--clips", str(test_clips), "--model", str(trained),
            "--max-new-tokens", "6"]
    assert main([*base, "--out", str(tmp_path / "as-trained")]) == 0
    rows = by_clip(read_lines(tmp_path / "as-trained" / "predictions.jsonl"))["SAMM-1"]
    coarse, fine = rows[vocab.COARSE], rows[vocab.FINE]
    assert coarse["answer"] in vocab.COARSE_LABELS and fine["coarse_hint"] == coarse["answer"]
    assert tuple(fine["label_probs"]) == vocab.fine_labels_under(coarse["answer"], ("anger", "happiness", "surprise"))
    strategy = json.loads((tmp_path / "as-trained" / "run.json").read_text())["settings"]["strategy"]
    assert strategy == {"name": "hierarchical+constrained", "max_aus": 8,
                        "fine_labels": {"samm": ["anger", "happiness", "surprise"]}}
    # A flag wins, with a warning.
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "direct"), "--strategy", "direct"]) == 0
    assert "--strategy direct differs from the hierarchical+constrained the model was trained with" in \
        capsys.readouterr().err
    assert all("label_probs" not in row for row in read_lines(tmp_path / "direct" / "predictions.jsonl"))


@pytest.mark.parametrize("flags, message", [
    (["--strategy", "beam"], "--strategy: strategy 'beam': unknown part 'beam'"),
    (["--strategy", "constrained+vote"], "constrained and vote cannot combine"),
    (["--strategy", "constrained", "--votes", "3"], "--votes is used only by the vote strategy; the strategy is "
                                                    "constrained"),
    (["--max-aus", "4"], "--max-aus is used only by the constrained strategy; the strategy is direct"),
    (["--strategy", "vote", "--votes", "0"], "votes must be at least 1, got 0"),
    (["--strategy", "vote", "--do-sample"], "--do-sample is for direct generation; the vote strategy samples at "
                                            "--vote-temperature"),
    (["--strategy", "constrained", "--fine-labels", "samm=rage"], "--fine-labels: fine labels for samm: expected a "
                                                                  "non-empty list from"),
    (["--strategy", "au-rules", "--au-rules", "samm=no_such_table"], "AU rule table 'no_such_table': no such file, "
                                                                     "and not a shipped table"),
    (["--strategy", "au-rules", "--au-rules", "atlantis=samm"], "--au-rules: 'atlantis=samm': unknown dataset"),
])
def test_strategy_options_are_checked_before_any_work(tmp_path, tiny_model_dir, capsys, flags, message):
    out = tmp_path / "out"
    assert main(["predict", "--questions", str(OFFICIAL_TEST[0]), "--model", str(tiny_model_dir), "--out", str(out),
                 *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


# --- mevqa answer -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_frame_folder(tmp_path_factory.mktemp("clip") / "EP01", n_frames=10, first=100, pattern="img{}.jpg")


def answer_json(capsys, *args) -> dict:
    assert main(["answer", "--max-new-tokens", "6", "--json", "-", *map(str, args)]) == 0
    return json.loads(capsys.readouterr().out)


def test_answer_hierarchical_asks_the_coarse_question_first(capsys, tiny_model_dir, clip_dir):
    model = ["--clip", clip_dir, "--model", tiny_model_dir, "--inputs", "oao"]
    report = answer_json(capsys, *model, "--question", vocab.Q_FINE, "--strategy", "hierarchical+constrained",
                         "--dataset", "samm")
    hint = report["coarse_hint"]
    coarse = answer_json(capsys, *model, "--question", vocab.Q_COARSE, "--strategy", "constrained")
    assert hint == coarse["answer"] and tuple(coarse["label_probs"]) == vocab.COARSE_LABELS
    allowed = vocab.fine_labels_under(hint, vocab.DATASET_FINE_LABELS["samm"])
    assert report["answer"] in allowed and tuple(report["label_probs"]) == allowed
    assert sum(report["label_probs"].values()) == pytest.approx(1.0)
    assert report["strategy"] == {"name": "hierarchical+constrained", "max_aus": 8, "fine_labels": None}
    assert report["dataset"] == "samm"
    # With generated answers, the coarse hint is used when the generated coarse answer names a class.
    plain = answer_json(capsys, *model, "--question", vocab.Q_FINE, "--strategy", "hierarchical")
    assert plain["strategy"] == {"name": "hierarchical", "fine_labels": None} and plain["answer"].strip()
    assert plain.get("coarse_hint") in (None, *vocab.COARSE_LABELS)


def test_answer_au_rules(capsys, tiny_model_dir, clip_dir):
    from mevqa.answering.au_rules import load_table

    model = ["--clip", clip_dir, "--model", tiny_model_dir, "--inputs", "oao"]
    assert main(["answer", "--question", vocab.Q_FINE, *map(str, model), "--strategy", "au-rules"]) == 2
    assert "the au-rules strategy needs the clip's dataset (--dataset samm, casme2, ...)" in capsys.readouterr().err
    assert main(["answer", "--question", vocab.Q_FINE, *map(str, model), "--strategy", "au-rules", "--dataset",
                 "casme2", "--au-rules", "samm=samm"]) == 2
    assert "no rule table for casme2 (tables for samm; give one with --au-rules casme2=TABLE)" in \
        capsys.readouterr().err
    report = answer_json(capsys, *model, "--question", vocab.Q_FINE, "--strategy", "au-rules+constrained",
                         "--dataset", "samm", "--au-rules", "samm=emotion_qwen_vl")
    if "rule" in report:    # the fine class the rule gives, else the model's own
        descriptions = [f"emotion_qwen_vl {rule.describe()}" for rule in load_table("emotion_qwen_vl").rules]
        assert report["rule"] in descriptions and report["rule"].endswith(f"-> {report['answer']}")
    else:
        assert report["answer"] == max(report["label_probs"], key=report["label_probs"].get)
    table = report["strategy"]["au_tables"]["samm"]
    assert table["table"] == "emotion_qwen_vl" and len(table["sha256"]) == 64


# --- the recipes ------------------------------------------------------------------------------------------------
def test_the_2025_recipes_state_their_answer_strategies():
    from mevqa.answering.strategies import (StrategyOptions, check_options, parse_au_tables, parse_fine_labels,
                                            parse_strategy)

    folder = REPO_ROOT / "recipes" / "configs" / "megc2025"

    def strategy_of(path: Path):
        config = yaml.safe_load(path.read_text())
        defaults = StrategyOptions()
        options = StrategyOptions(votes=config.get("answer_votes", defaults.votes),
                                  vote_temperature=config.get("answer_vote_temperature", defaults.vote_temperature),
                                  fine_labels=parse_fine_labels(config.get("answer_fine_labels")),
                                  au_tables=parse_au_tables(config.get("answer_au_tables")))
        check_options(config["answer_strategy"], options, str(path))
        return config, parse_strategy(config["answer_strategy"]).name, options

    config, name, options = strategy_of(folder / "rank1_emotion_qwen_vl.yaml")
    assert name == "au-rules" and options.au_tables == {"samm": "emotion_qwen_vl"}
    config, name, _ = strategy_of(folder / "rank2_hiermeqa.yaml")
    assert name == "hierarchical" and config["hierarchical_prompt"] is True
    config, name, options = strategy_of(folder / "rank3_tie.yaml")
    assert (name, options.votes, options.vote_temperature) == ("vote", 5, 0.5)
    grid = sorted(path.stem for path in (folder / "baseline").glob("*.yaml"))
    assert grid == [f"{kind}_{mode}" for kind in ("lora", "zero_shot") for mode in ("flow", "oao", "video")]
    for path in (folder / "baseline").glob("*.yaml"):
        config, name, _ = strategy_of(path)
        assert name == "direct" and config["model_name_or_path"] == "Qwen/Qwen2.5-VL-3B-Instruct"
        assert config["inputs"] == path.stem.rsplit("_", 1)[1]
        if path.stem.startswith("zero_shot"):
            assert config["num_train_epochs"] == 0 and config.get("max_steps", -1) <= 0
        else:
            assert config["lora_preset"] == "megc2025_baseline" and config["num_train_epochs"] > 0
