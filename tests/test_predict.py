"""``mevqa predict`` on a tiny random Qwen2.5-VL: the official test question files with synthetic clips named as the
test media (SAMM-1..SAMM-7, CAS-1..CAS-17), a real kill and resume, batched vs one-by-one answers, training-style
rows with ``--gold``, failed rows, and bad question files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from conftest import OFFICIAL_TEST
from inference_clips import write_frame_folder, write_silent_model, write_test_clips
from mevqa.cli import main
from processes import kill_when

N_ROWS = 120  # 35 SAMM + 85 CAS(ME)^3 questions
COMMON = ["--inputs", "oao", "--max-new-tokens", "6"]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def official_rows() -> list[dict]:
    return [row for path in OFFICIAL_TEST for row in read_lines(path)]


@pytest.fixture(scope="module")
def test_clips(tmp_path_factory):
    return write_test_clips(tmp_path_factory.mktemp("test-media"), n_frames=8)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir, test_clips):
    """One uninterrupted run over both official files at batch size 8."""
    out = tmp_path_factory.mktemp("predict") / "batched"
    argv = ["predict", "--questions", *map(str, OFFICIAL_TEST), "--clips", str(test_clips), "--model",
            str(tiny_model_dir), "--out", str(out), "--batch-size", "8", *COMMON]
    assert main(argv) == 0
    return out


def test_official_files_give_submission_files_with_every_row_in_order(full_run):
    rows = official_rows()
    assert len(rows) == N_ROWS
    for question_file in OFFICIAL_TEST:
        pred_file = full_run / question_file.name.replace("_to_answer", "_pred")
        questions, preds = read_lines(question_file), read_lines(pred_file)
        assert [p["video_id"] for p in preds] == [q["video_id"] for q in questions]
        for question, pred in zip(questions, preds):
            assert {k: v for k, v in pred.items() if k != "answer"} == {k: v for k, v in question.items()
                                                                        if k != "answer"}
            assert isinstance(pred["answer"], str) and pred["answer"].strip()
    with zipfile.ZipFile(full_run / "submission.zip") as archive:
        assert sorted(archive.namelist()) == ["me_vqa_casme3_test_pred.jsonl", "me_vqa_samm_test_pred.jsonl"]
    # One cached input folder per clip, built as build-data builds them (onset/apex/offset images).
    media = sorted(p.name for p in (full_run / "media").iterdir())
    assert len(media) == 24 and "SAMM-7" in media and "CAS-17" in media
    assert (full_run / "media" / "CAS-1" / "apex.jpg").is_file()
    assert (full_run / "errors.jsonl").read_text() == ""


def test_rerun_answers_nothing_twice(capsys, full_run, tiny_model_dir, test_clips):
    before = (full_run / "predictions.jsonl").read_bytes()
    argv = ["predict", "--questions", *map(str, OFFICIAL_TEST), "--clips", str(test_clips), "--model",
            str(tiny_model_dir), "--out", str(full_run), "--batch-size", "8", *COMMON]
    assert main(argv) == 0
    assert (full_run / "predictions.jsonl").read_bytes() == before
    assert f"({N_ROWS} of {N_ROWS} rows answered)" in capsys.readouterr().out
    # Other settings into the same folder would mix two models' answers: refused.
    assert main(argv[:-len(COMMON)] + ["--inputs", "flow", "--max-new-tokens", "6"]) == 2
    assert "holds answers made with other settings (settings.inputs differ" in capsys.readouterr().err


@pytest.mark.e2e
def test_killed_run_resumes_to_one_answer_per_row(tmp_path, full_run, tiny_model_dir, test_clips):
    """A real SIGKILL part-way through a one-by-one run, a torn last line, then a batched rerun: every row answered
    once, with the answers of the uninterrupted batch-8 run (so one-by-one generation equals batched generation)."""
    out = tmp_path / "killed"
    argv = ["predict", "--questions", *map(str, OFFICIAL_TEST), "--clips", str(test_clips), "--model",
            str(tiny_model_dir), "--out", str(out), "--batch-size", "1", *COMMON]
    predictions = out / "predictions.jsonl"
    kill_when(argv, lambda: predictions.is_file() and predictions.read_bytes().count(b"\n") >= 10)
    written = predictions.read_bytes().count(b"\n")
    assert 10 <= written < N_ROWS
    with predictions.open("a", encoding="utf-8") as handle:  # a kill in the middle of a line
        handle.write('{"video_id": "casme3_test_CAS-17_5", "video": "CA')

    argv[argv.index("--batch-size") + 1] = "8"  # the batch size is free to change between runs
    assert main(argv) == 0
    preds = read_lines(predictions)
    ids = [p["video_id"] for p in preds]
    assert len(ids) == N_ROWS and len(set(ids)) == N_ROWS
    assert set(ids) == {row["video_id"] for row in official_rows()}
    batched = {p["video_id"]: p["answer"] for p in read_lines(full_run / "predictions.jsonl")}
    assert {p["video_id"]: p["answer"] for p in preds} == batched
    for question_file in OFFICIAL_TEST:
        name = question_file.name.replace("_to_answer", "_pred")
        assert (out / name).read_bytes() == (full_run / name).read_bytes()


def test_limit_then_rerun(tmp_path, tiny_model_dir, test_clips, full_run, capsys):
    out = tmp_path / "limited"
    argv = ["predict", "--questions", str(OFFICIAL_TEST[0]), "--clips", str(test_clips), "--model",
            str(tiny_model_dir), "--out", str(out), "--batch-size", "8", *COMMON]
    assert main(argv + ["--limit", "7"]) == 0
    assert len(read_lines(out / "predictions.jsonl")) == 7
    assert not (out / "submission.zip").exists()
    assert "submission: not written, 28 rows unanswered" in capsys.readouterr().out
    assert main(argv) == 0
    assert (out / "me_vqa_samm_test_pred.jsonl").read_bytes() == (full_run / "me_vqa_samm_test_pred.jsonl").read_bytes()


def test_failed_rows_are_recorded_and_retried(tmp_path, tiny_model_dir, capsys):
    """A clip that is missing and one with an unreadable frame: their rows go to errors.jsonl, the rest are answered,
    no submission is written; --strict stops at the first; once the clips are fixed a rerun answers just those."""
    clips = tmp_path / "clips"
    for name in ("SAMM-1", "SAMM-2"):
        write_frame_folder(clips / name, n_frames=6, first=1, pattern="{:05d}.jpg")
    (clips / "SAMM-2" / "00003.jpg").write_bytes(b"garbage")
    questions = tmp_path / "me_vqa_samm_test_to_answer.jsonl"
    rows = [row for row in read_lines(OFFICIAL_TEST[0]) if row["video"] in ("SAMM-1", "SAMM-2", "SAMM-3")]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    argv = ["predict", "--questions", str(questions), "--clips", str(clips), "--model", str(tiny_model_dir), "--out",
            str(out), *COMMON]

    assert main(argv + ["--strict"]) == 2
    assert f"{questions}:6: clip SAMM-2: " in capsys.readouterr().err  # the first row of the broken clip
    assert main(argv) == 1
    errors = read_lines(out / "errors.jsonl")
    assert [e["id"] for e in errors] == [r["video_id"] for r in rows if r["video"] != "SAMM-1"]
    assert all("SAMM-2" in e["error"] and "00003.jpg: unreadable image" in e["error"] for e in errors[:5])
    assert all("clip 'SAMM-3' not found" in e["error"] for e in errors[5:])
    assert errors[0]["where"] == f"{questions}:6"
    assert [p["video_id"] for p in read_lines(out / "predictions.jsonl")] == [r["video_id"] for r in rows[:5]]
    assert not (out / "submission.zip").exists()

    write_frame_folder(clips / "SAMM-2", n_frames=6, first=1, pattern="{:05d}.jpg")
    write_frame_folder(clips / "nested" / "SAMM-3", n_frames=6, first=1, pattern="{:05d}.jpg")  # found by name
    assert main(argv) == 0
    assert [p["video_id"] for p in read_lines(out / "predictions.jsonl")] == [r["video_id"] for r in rows]
    assert read_lines(out / "me_vqa_samm_test_pred.jsonl")[0]["video_id"] == "samm_test_SAMM-1_1"
    assert (out / "errors.jsonl").read_text() == ""


def test_strict_stops_at_first_failure(tmp_path, tiny_model_dir, capsys):
    questions = tmp_path / "me_vqa_samm_test_to_answer.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in read_lines(OFFICIAL_TEST[0])[:5]))
    (tmp_path / "clips").mkdir()  # none of the clips
    argv = ["predict", "--questions", str(questions), "--clips", str(tmp_path / "clips"), "--model",
            str(tiny_model_dir), "--out", str(tmp_path / "out"), "--strict", *COMMON]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{questions}:1: clip SAMM-1: clip 'SAMM-1' not found" in err
    assert not (tmp_path / "out" / "predictions.jsonl").read_text()


def test_training_style_rows_with_gold(tmp_path, tiny_model_dir, capsys):
    """Rows from ``mevqa build-data`` (media beside the file) in two input modes, batched equals one by one, and
    ``--gold`` prints and saves the score table; no submission for non-official files."""
    raw, data = tmp_path / "raw", tmp_path / "data"
    assert main(["synth-data", "casme2", "--out", str(raw), "--clips", "2"]) == 0
    assert main(["build-data", "casme2", "--root", str(raw / "CASME2_RAW_selected"), "--annotations",
                 str(raw / "CASME2-coding-20140508.xlsx"), "--out", str(data)]) == 0
    qa = data / "qa.jsonl"
    gold = read_lines(qa)
    capsys.readouterr()
    for mode in ("video", "frames+flow"):
        answers = {}
        for batch in ("1", "4"):
            out = tmp_path / f"{mode}-{batch}"
            assert main(["predict", "--questions", str(qa), "--model", str(tiny_model_dir), "--out", str(out),
                         "--inputs", mode, "--batch-size", batch, "--max-new-tokens", "6", "--gold", str(qa)]) == 0
            preds = read_lines(out / "predictions.jsonl")
            assert [p["id"] for p in preds] == [g["id"] for g in gold]
            assert all("media" not in p and "clip" not in p for p in preds)
            answers[batch] = [p["answer"] for p in preds]
            report = json.loads((out / "scores.json").read_text())
            assert report["counts"]["rows"] == len(gold) and report["counts"]["missing"] == 0
            assert "Overall" in capsys.readouterr().out
            assert not (out / "submission.zip").exists()
        assert answers["1"] == answers["4"]


def test_bad_question_files(tmp_path, tiny_model_dir, capsys):
    rows = read_lines(OFFICIAL_TEST[0])[:3]
    base = ["--model", str(tiny_model_dir), "--out", str(tmp_path / "out"), "--clips", str(tmp_path)]

    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text(json.dumps(rows[0]) + "\n{not json\n")
    assert main(["predict", "--questions", str(malformed), *base]) == 2
    assert f"{malformed}:2: malformed JSON" in capsys.readouterr().err

    duplicate = tmp_path / "duplicate.jsonl"
    duplicate.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1]) + "\n" + json.dumps(rows[0]) + "\n")
    assert main(["predict", "--questions", str(duplicate), *base]) == 2
    assert f"{duplicate}:3: duplicate id 'samm_test_SAMM-1_1' (first at {duplicate}:1)" in capsys.readouterr().err

    no_id = tmp_path / "no_id.jsonl"
    no_id.write_text(json.dumps({"question": "What is the coarse expression class?", "video": "SAMM-1"}) + "\n")
    assert main(["predict", "--questions", str(no_id), *base]) == 2
    assert f"{no_id}:1: expected a non-empty string 'id' or 'video_id'" in capsys.readouterr().err

    assert main(["predict", "--questions", str(tmp_path / "missing.jsonl"), *base]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err


def test_row_without_the_needed_input_is_recorded(tmp_path, tiny_model_dir, capsys):
    """A build-data row whose media lacks what the input mode needs goes to errors.jsonl naming the row, the others
    are answered; a row whose media file is gone makes the question file bad input: refused before any work."""
    from qa_rows import write_qa_file

    qa = write_qa_file(tmp_path / "data", clips=2)
    rows = read_lines(qa)
    del rows[1]["media"]["flow"]
    qa.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    argv = ["predict", "--questions", str(qa), "--model", str(tiny_model_dir), "--out", str(out), "--inputs", "flow",
            "--max-new-tokens", "4"]
    assert main(argv) == 1
    errors = read_lines(out / "errors.jsonl")
    assert [e["id"] for e in errors] == [rows[1]["id"]]
    assert f"{qa}:2: input mode 'flow' needs media.flow" in errors[0]["error"] and errors[0]["where"] == f"{qa}:2"
    assert len(read_lines(out / "predictions.jsonl")) == len(rows) - 1
    assert "1 rows failed" in capsys.readouterr().out

    rows[7]["media"] = {**rows[7]["media"], "flow": {"image": "media/clip1/gone.png"}}
    qa.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main([*argv[:6], str(tmp_path / "out2"), *argv[7:]]) == 2
    assert f"{qa}:8: media.flow.image media/clip1/gone.png does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


# --- one contract from training to the answer ---------------------------------------------------------------------

TIE_LIKE = {"frames": 4, "size": 64, "flow": "farneback", "head_motion": "median", "blend": 0.5, "face_crop": False}


def some_questions(tmp_path, clips=("SAMM-1", "SAMM-2")) -> Path:
    questions = tmp_path / "me_vqa_samm_test_to_answer.jsonl"
    rows = [row for row in read_lines(OFFICIAL_TEST[0]) if row["video"] in clips]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return questions


@pytest.fixture()
def trained_model(tiny_model_dir, tmp_path):
    """A copy of the tiny model with the train_config.yaml of a model trained on TIE-like inputs."""
    import shutil

    import yaml

    model = shutil.copytree(tiny_model_dir, tmp_path / "trained")
    (model / "train_config.yaml").write_text(yaml.safe_dump({"inputs": "frames+flow", "media_settings": TIE_LIKE,
                                                             "num_epochs": 1}))
    return model


def test_raw_clips_are_built_with_the_models_media_settings(tmp_path, trained_model, test_clips):
    """No input flag: the test clips get the inputs the model was trained on (median head motion, blend 0.5)."""
    from mevqa.media import MediaSettings, Span, build_media, read_clip

    out = tmp_path / "out"
    assert main(["predict", "--questions", str(some_questions(tmp_path)), "--clips", str(test_clips), "--model",
                 str(trained_model), "--out", str(out), "--max-new-tokens", "4"]) == 0
    built = json.loads((out / "media" / "SAMM-1" / "media.json").read_text())["media"]
    assert built["settings"] == TIE_LIKE and set(built) == {"oao", "flow", "settings"}
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["media_settings"] == TIE_LIKE and run["settings"]["inputs"] == "frames+flow"
    clip = read_clip(test_clips / "SAMM" / "SAMM-1")
    span = Span(*built["oao"]["frame_numbers"], "max_diff")
    expected = build_media(clip, span, MediaSettings.from_record(TIE_LIKE, modes=("oao", "flow")), tmp_path / "ref",
                           fps=200.0)
    assert (out / "media" / "SAMM-1" / "flow.jpg").read_bytes() == (tmp_path / "ref" / "flow.jpg").read_bytes()
    assert expected["flow"]["head_motion"] == "median"


def test_rows_built_otherwise_than_the_model_was_trained_are_refused(tmp_path, trained_model, capsys):
    """Rows from build-data carry their media: built with other settings than the model's, they are an error naming
    the row and both settings; the media options matching the rows are the way through (with the usual warning)."""
    raw, data = tmp_path / "raw", tmp_path / "data"
    assert main(["synth-data", "casme2", "--out", str(raw), "--clips", "1"]) == 0
    assert main(["build-data", "casme2", "--root", str(raw / "CASME2_RAW_selected"), "--annotations",
                 str(raw / "CASME2-coding-20140508.xlsx"), "--out", str(data), "--inputs", "oao,flow", "--size",
                 "64", "--frames", "4"]) == 0
    capsys.readouterr()
    argv = ["predict", "--questions", str(data / "qa.jsonl"), "--model", str(trained_model), "--out",
            str(tmp_path / "out"), "--max-new-tokens", "4", "--limit", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (f"{data / 'qa.jsonl'}:1: media built with head_motion 'nose', blend 0.0, but the model is shown inputs "
            f"built with head_motion 'median', blend 0.5 ({trained_model / 'train_config.yaml'}: media_settings)"
            in err) and sum("error:" in line for line in err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert main(argv + ["--head-motion", "nose", "--blend", "0"]) == 0
    assert "--blend 0.0 differs from the 0.5 the model was trained with" in capsys.readouterr().err


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, tiny_model_dir, test_clips, capsys):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    argv = ["predict", "--questions", str(some_questions(tmp_path, ("SAMM-1",))), "--clips", str(test_clips),
            "--model", str(tiny_model_dir), "--out", str(out), *COMMON]
    with (out / ".predict.lock").open("a") as other_run:  # what a running predict holds
        fcntl.flock(other_run.fileno(), fcntl.LOCK_EX)
        assert main(argv) == 2
        assert f"{out}: another mevqa predict is writing here" in capsys.readouterr().err
        assert not (out / "predictions.jsonl").exists()
    assert main(argv) == 0  # once the other run is over
    assert len(read_lines(out / "predictions.jsonl")) == 5


def test_an_adapter_retrained_in_place_is_refused(tmp_path, tiny_model_dir, test_clips, capsys):
    """The same path and the same file size, other weights: run.json's fingerprint tells them apart."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForImageTextToText

    adapter = tmp_path / "adapter"
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)).save_pretrained(adapter)
    out = tmp_path / "out"
    argv = ["predict", "--questions", str(some_questions(tmp_path, ("SAMM-1",))), "--clips", str(test_clips),
            "--model", str(tiny_model_dir), "--adapter", str(adapter), "--out", str(out), "--limit", "2", *COMMON]
    assert main(argv) == 0
    recorded = json.loads((out / "run.json").read_text())["weights"]["adapter"]["adapter_model.safetensors"]
    assert main(argv[:-len(COMMON) - 2] + COMMON) == 0  # unchanged: resumes
    assert len(read_lines(out / "predictions.jsonl")) == 5

    weights_file = adapter / "adapter_model.safetensors"
    size = weights_file.stat().st_size
    tensors = load_file(weights_file)
    save_file({name: tensor + 0.5 for name, tensor in tensors.items()}, weights_file, metadata={"format": "pt"})
    assert weights_file.stat().st_size == size
    capsys.readouterr()
    assert main(argv[:-len(COMMON) - 2] + COMMON) == 2
    err = capsys.readouterr().err
    assert "holds answers made with other settings (weights.adapter.adapter_model.safetensors differ" in err
    assert json.loads((out / "run.json").read_text())["weights"]["adapter"]["adapter_model.safetensors"] == recorded


@pytest.fixture(scope="module")
def silent_model_dir(tiny_model_dir, tmp_path_factory):
    return write_silent_model(tiny_model_dir, tmp_path_factory.mktemp("silent") / "model")


def test_an_empty_answer_is_a_failed_row_asked_again(tmp_path, silent_model_dir, tiny_model_dir, test_clips,
                                                      capsys):
    questions = some_questions(tmp_path, ("SAMM-1",))
    out = tmp_path / "out"
    argv = ["predict", "--questions", str(questions), "--clips", str(test_clips), "--out", str(out), *COMMON]
    assert main(argv + ["--model", str(silent_model_dir)]) == 1
    errors = read_lines(out / "errors.jsonl")
    assert [e["where"] for e in errors] == [f"{questions}:{n}" for n in range(1, 6)]
    assert all(e["error"] == f"{e['where']}: the model gave an empty answer" for e in errors)
    assert (out / "predictions.jsonl").read_text() == "" and not (out / "submission.zip").exists()
    assert "submission: not written, 5 rows unanswered" in capsys.readouterr().out
    # nothing was stored as answered, so another model can answer the same rows in the same folder
    assert main(argv + ["--model", str(tiny_model_dir)]) == 0
    assert len(read_lines(out / "me_vqa_samm_test_pred.jsonl")) == 5


def test_empty_answers_left_by_an_older_run_are_asked_again(tmp_path, tiny_model_dir, test_clips):
    questions = some_questions(tmp_path, ("SAMM-1",))
    out = tmp_path / "out"
    argv = ["predict", "--questions", str(questions), "--clips", str(test_clips), "--model", str(tiny_model_dir),
            "--out", str(out), *COMMON]
    assert main(argv + ["--limit", "3"]) == 0
    lines = read_lines(out / "predictions.jsonl")
    lines[1]["answer"] = ""
    (out / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    assert main(argv) == 0
    answers = read_lines(out / "predictions.jsonl")
    assert sorted(a["video_id"] for a in answers) == sorted(q["video_id"] for q in read_lines(questions))
    assert all(a["answer"].strip() for a in answers)


@pytest.mark.parametrize("video", ["..", ".", "/etc", "../clips", "SAMM/SAMM-1"])
def test_clip_names_stay_under_the_clips_folder(tmp_path, tiny_model_dir, test_clips, capsys, video):
    rows = read_lines(OFFICIAL_TEST[0])[:2]
    rows[1]["video"] = video
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    assert main(["predict", "--questions", str(questions), "--clips", str(test_clips / "SAMM"), "--model",
                 str(tiny_model_dir), "--out", str(out), *COMMON]) == 2
    err = capsys.readouterr().err
    assert f"{questions}:2: video name {video!r} must be one plain folder or file name" in err
    assert err.count("\n") == 1 and not out.exists()


def test_weights_fingerprint_hashes_files_and_reads_hub_blob_names(tmp_path):
    """A local weight file is hashed; a hub-cache link is named by its blob, whose name is the SHA-256; unchanged
    files keep their recorded digest."""
    import hashlib

    from mevqa.answering.predict import weights_fingerprint

    data = b"weights" * 1000
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / digest).write_bytes(data)
    snapshot = tmp_path / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model-00001.safetensors").symlink_to(tmp_path / "blobs" / digest)
    (snapshot / "adapter_model.bin").write_bytes(data[::-1])
    (snapshot / "training_args.bin").write_bytes(b"not weights")
    first = weights_fingerprint(snapshot)
    assert sorted(first) == ["adapter_model.bin", "model-00001.safetensors"]
    assert first["model-00001.safetensors"]["sha256"] == digest
    assert first["adapter_model.bin"]["sha256"] == hashlib.sha256(data[::-1]).hexdigest()
    recorded = {name: {**entry, "sha256": "recorded"} for name, entry in first.items()}
    assert {e["sha256"] for e in weights_fingerprint(snapshot, recorded).values()} == {"recorded"}
