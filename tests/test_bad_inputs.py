"""The table of hostile inputs: each runs the real command line (``mevqa.cli.main``) and must end with exit status 2,
one stderr line ``mevqa <command>: error: ...`` naming the file, row or field, and nothing written anywhere.

Each case is ``(id, command builder)``; a builder gets a :class:`Case` (the case's folder and the shared inputs)
and returns ``(argv, text the error line must contain)``. docs/reliability.md reports how many.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import MEGC2025, OFFICIAL_TEST, PUBLIC_DATA
from mevqa.cli import main

QUESTION = "What is the coarse expression class?"
RANK1 = MEGC2025 / "predictions" / "rank1" / "me_vqa_samm_test_pred.jsonl"  # real answers to the SAMM questions
LVQA_TEST = PUBLIC_DATA / "megc2026" / "test" / "me_lvqa_samm_test_to_answer.jsonl"
VQA_V2_TEST = PUBLIC_DATA / "megc2026" / "test" / "me_vqa_samm_v2_test_to_answer.jsonl"
LVQA_COUNT = "How many expression events appear in this video?"


@dataclass
class Case:
    tmp: Path            # the case's own folder
    data: Path           # a built casme2 dataset: qa.jsonl, build.json, media/
    raw: dict            # its synthetic source: root, annotations
    clips: Path          # test clips SAMM-1.. under clips/SAMM/
    model: Path          # the tiny model
    read_only: Path | None = None

    def file(self, name: str, text: str = "x") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def rows(self, name: str, rows: list) -> Path:
        return self.file(name, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))

    def latin1(self, name: str) -> Path:
        path = self.tmp / name
        path.write_bytes(json.dumps({"video_id": "samm_test_SAMM-1_1", "video": "SAMM-1", "subject": "1",
                                     "question": QUESTION, "answer": "negative"}).encode() + b"\n" +
                         '{"video_id": "samm_test_SAMM-1_2", "question": "\xbfQu\xe9?", "answer": ""}\n'
                         .encode("latin-1"))
        return path

    def build(self, *extra) -> list[str]:
        return ["build-data", "casme2", "--root", str(self.raw["root"]), "--annotations",
                str(self.raw["annotations"]), *map(str, extra)]

    def predict(self, *extra) -> list[str]:
        return ["predict", "--questions", str(OFFICIAL_TEST[0]), "--clips", str(self.clips), "--model",
                str(self.model), *map(str, extra)]

    def answer(self, *extra) -> list[str]:
        return ["answer", "--clip", str(self.clips / "SAMM" / "SAMM-1"), "--question", QUESTION, "--model",
                str(self.model), *map(str, extra)]


def _broken_clip(case: Case) -> Path:
    clip = shutil.copytree(case.clips / "SAMM" / "SAMM-1", case.tmp / "SAMM-1")
    frame = sorted(clip.glob("*.jpg"))[3]
    frame.write_bytes(frame.read_bytes()[:-200])  # a copy cut short
    return frame


def _damaged_workbook(case: Case, content: bytes) -> list[str]:
    sheet = case.tmp / "CASME2-coding-20140508.xlsx"
    sheet.write_bytes(content)
    return ["build-data", "casme2", "--root", str(case.raw["root"]), "--annotations", str(sheet), "--out",
            str(case.tmp / "out")]


def _duplicate_predictions(case: Case) -> list[str]:
    rows = [json.loads(line) for line in OFFICIAL_TEST[0].read_text().splitlines()]
    preds = [{**row, "answer": "negative"} for row in rows] + [{**rows[4], "answer": "positive"}]
    return ["submit", "--questions", str(OFFICIAL_TEST[0]), "--pred", str(case.rows("pred.jsonl", preds)), "--out",
            str(case.tmp / "sub")]


CASES = [
    # --- an output path that is an existing file -----------------------------------------------------------------
    ("build-data --out is a file", lambda c: (c.build("--out", c.file("out")), f"{c.tmp / 'out'}: cannot be the "
                                                                               "output folder")),
    ("split --out is a file", lambda c: (["split", "--data", str(c.data / "qa.jsonl"), "--out", str(c.file("out"))],
                                         "cannot be the output folder")),
    ("synth-data --out is a file", lambda c: (["synth-data", "samm", "--out", str(c.file("out"))],
                                              f"{c.tmp / 'out'}: cannot be the output folder")),
    ("synth-data --out under a file", lambda c: (["synth-data", "samm", "--out", str(c.file("out") / "deeper")],
                                                 f"{c.tmp / 'out'} is a file")),
    ("tiny-model --out is a file", lambda c: (["tiny-model", "--out", str(c.file("out"))],
                                              f"{c.tmp / 'out'}: exists and is a file")),
    ("eval --json is a folder", lambda c: (["eval", "--pred", str(RANK1), "--gold", str(RANK1),
                                            "--json", str(c.tmp)], f"{c.tmp}: is a folder, expected a file path")),
    ("eval --plot is a file", lambda c: (["eval", "--pred", str(RANK1), "--gold", str(RANK1),
                                          "--plot", str(c.file("plots"))], f"{c.tmp / 'plots'} is a file")),
    ("submit --out is a file", lambda c: (["submit", "--questions", str(OFFICIAL_TEST[0]), "--pred",
                                           str(RANK1), "--out", str(c.file("out"))],
                                          f"{c.tmp / 'out'} is a file")),
    ("predict --out is a file", lambda c: (c.predict("--out", c.file("out")), f"{c.tmp / 'out'}: cannot be the "
                                                                             "output folder")),
    ("merge --out is a file", lambda c: (["merge", "--base", str(c.model), "--adapter", str(_damaged_adapter(c)),
                                          "--out", str(c.file("out"))], f"{c.tmp / 'out'}: exists and is a file")),
    ("demo --workdir is a file", lambda c: (["demo", "--workdir", str(c.file("work"))],
                                            f"{c.tmp / 'work'}: exists and is a file")),
    # --- a folder that cannot be written ----------------------------------------------------------------------------
    ("build-data into a read-only folder", lambda c: (c.build("--out", c.read_only), f"{c.read_only}: cannot write "
                                                                                     "in the output folder")),
    ("split into a read-only folder", lambda c: (["split", "--data", str(c.data / "qa.jsonl"), "--out",
                                                  str(c.read_only)], f"{c.read_only}: cannot write")),
    ("predict into a read-only folder", lambda c: (c.predict("--out", c.read_only), f"{c.read_only}: cannot write")),
    ("submit into a read-only folder", lambda c: (["submit", "--questions", str(OFFICIAL_TEST[0]), "--pred",
                                                   str(RANK1), "--out", str(c.read_only)],
                                                  f"{c.read_only}/me_vqa_samm_test_pred.jsonl: cannot write")),
    ("eval --json in a read-only folder", lambda c: (["eval", "--pred", str(RANK1), "--gold",
                                                      str(RANK1), "--json", str(c.read_only / "s.json")],
                                                     f"{c.read_only / 's.json'}: cannot write")),
    ("synth-data below a read-only folder", lambda c: (["synth-data", "smic", "--out", str(c.read_only / "new")],
                                                       f"{c.read_only / 'new'}: cannot create the output folder")),
    ("tiny-model below a read-only folder", lambda c: (["tiny-model", "--out", str(c.read_only / "m")],
                                                       f"{c.read_only}: cannot write")),
    ("tiny-model into a read-only folder", lambda c: (["tiny-model", "--out", str(c.read_only)],
                                                      f"{c.read_only}: cannot write in the output folder")),
    # --- files that are not UTF-8 -------------------------------------------------------------------------------------
    ("eval --pred in Latin-1", lambda c: (["eval", "--pred", str(c.latin1("p.jsonl")), "--gold",
                                           str(RANK1)], f"{c.tmp / 'p.jsonl'}:2: not UTF-8 text")),
    ("split --data in Latin-1", lambda c: (["split", "--data", str(c.latin1("q.jsonl")), "--out",
                                            str(c.tmp / "out")], f"{c.tmp / 'q.jsonl'}:2: not UTF-8 text")),
    ("submit --pred in Latin-1", lambda c: (["submit", "--questions", str(OFFICIAL_TEST[0]), "--pred",
                                             str(c.latin1("p.jsonl")), "--out", str(c.tmp / "out")],
                                            f"{c.tmp / 'p.jsonl'}:2: not UTF-8 text")),
    ("predict --questions in Latin-1", lambda c: (c.predict("--questions", c.latin1("q.jsonl"), "--out",
                                                            c.tmp / "out"), f"{c.tmp / 'q.jsonl'}:2: not UTF-8")),
    ("AU rule table in Latin-1", lambda c: (c.answer("--strategy", "au-rules", "--dataset", "samm", "--au-rules",
                                                     f"samm={_latin1_table(c)}"),
                                            "rules.yaml: not UTF-8 text (byte 0xf3 at offset")),
    ("build-data --official in Latin-1", lambda c: (["build-data", "samm", "--official", str(c.latin1("q.jsonl")),
                                                     "--root", str(c.clips), "--out", str(c.tmp / "out")],
                                                    f"{c.tmp / 'q.jsonl'}:2: not UTF-8 text")),
    # --- damaged annotation workbooks ---------------------------------------------------------------------------------
    ("workbook of random bytes", lambda c: (_damaged_workbook(c, os.urandom(4000)), "cannot read the annotation "
                                                                                     "sheet")),
    ("workbook cut short", lambda c: (_damaged_workbook(c, c.raw["annotations"].read_bytes()[:1500]),
                                      "CASME2-coding-20140508.xlsx: cannot read the annotation sheet")),
    ("workbook that is text", lambda c: (_damaged_workbook(c, b"Subject,Filename\n1,EP02_01f\n"),
                                         "cannot read the annotation sheet")),
    ("build-data --root that does not exist", lambda c: (["build-data", "casme2", "--root", str(c.tmp / "nowhere"),
                                                         "--annotations", str(c.raw["annotations"]), "--out",
                                                         str(c.tmp / "out")],
                                                        f"{c.tmp / 'nowhere'}: not found; expected the dataset's "
                                                        "frame folder")),
    ("build-data --annotations is a folder", lambda c: (["build-data", "casme2", "--root", str(c.raw["root"]),
                                                         "--annotations", str(c.tmp), "--out", str(c.tmp / "out")],
                                                        f"{c.tmp}: is a folder, expected the annotation file")),
    # --- damaged frames ---------------------------------------------------------------------------------------------
    ("truncated JPEG frame", lambda c: (["answer", "--clip", str(_broken_clip(c).parent), "--question", QUESTION,
                                         "--model", str(c.model)],
                                        "unreadable image (truncated JPEG: no end-of-image marker)")),
    # --- non-finite numbers -----------------------------------------------------------------------------------------
    ("build-data --blend nan", lambda c: (c.build("--out", c.tmp / "out", "--blend", "nan"),
                                          "flow blend weight must be between 0 and 1, got nan")),
    ("build-data --fps inf", lambda c: (c.build("--out", c.tmp / "out", "--fps", "inf"),
                                        "--fps must be positive, got inf")),
    ("answer --fps nan", lambda c: (c.answer("--fps", "nan"), "--fps must be a positive number, got nan")),
    ("predict --temperature nan", lambda c: (c.predict("--out", c.tmp / "out", "--do-sample", "--temperature",
                                                       "nan"), "--temperature must be a positive number, got nan")),
    ("predict --video-fps inf", lambda c: (c.predict("--out", c.tmp / "out", "--video-fps", "inf"),
                                           "--video-fps must be a positive number, got inf")),
    ("NaN in a question file", lambda c: (c.predict("--questions", c.rows("q.jsonl", [
        '{"video_id": "a", "video": "SAMM-1", "question": "Q", "onset_frame": NaN}']), "--out", c.tmp / "out"),
        f"{c.tmp / 'q.jsonl'}:1: non-finite number NaN")),
    ("Infinity in a prediction file", lambda c: (["eval", "--pred", str(c.rows("p.jsonl", [
        '{"video_id": "a", "answer": "x", "score": Infinity}'])), "--gold", str(RANK1)],
        f"{c.tmp / 'p.jsonl'}:1: non-finite number Infinity")),
    # --- duplicate ids ----------------------------------------------------------------------------------------------
    ("split the same file twice", lambda c: (["split", "--data", str(c.data / "qa.jsonl"), str(c.data / "qa.jsonl"),
                                              "--out", str(c.tmp / "out")], f"{c.data / 'qa.jsonl'}:1: duplicate id")),
    ("predict questions with an id twice", lambda c: (c.predict("--questions", OFFICIAL_TEST[0], OFFICIAL_TEST[0],
                                                                "--out", c.tmp / "out"),
                                                      f"{OFFICIAL_TEST[0]}:1: duplicate id 'samm_test_SAMM-1_1'")),
    ("build-data --official with a video_id twice", lambda c: (["build-data", "samm", "--official", str(c.rows(
        "q.jsonl", [{"video_id": "v1", "video": "SAMM-1", "question": QUESTION, "answer": ""}] * 2)), "--root",
        str(c.clips / "SAMM"), "--out", str(c.tmp / "out")], f"{c.tmp / 'q.jsonl'}:2: duplicate id 'v1'")),
    ("submit with a prediction twice", lambda c: (_duplicate_predictions(c), "pred.jsonl:36: duplicate prediction "
                                                                             "id 'samm_test_SAMM-1_5'")),
    # --- names that leave their folder --------------------------------------------------------------------------------
    ("predict with video ..", lambda c: (c.predict("--questions", c.rows("q.jsonl", [
        {"video_id": "a", "video": "..", "question": QUESTION}]), "--out", c.tmp / "out"),
        f"{c.tmp / 'q.jsonl'}:1: video name '..' must be one plain folder or file name")),
    ("build-data --official with an absolute video", lambda c: (["build-data", "samm", "--official", str(c.rows(
        "q.jsonl", [{"video_id": "a", "video": str(c.clips / "SAMM" / "SAMM-1"), "question": QUESTION}])), "--root",
        str(c.clips), "--out", str(c.tmp / "out")], "video name '/")),
    ("media path climbing out of its folder", lambda c: (c.predict("--questions", c.rows("q.jsonl", [
        {"id": "a", "question": QUESTION, "media": {"oao": {"frames": ["../../etc/hostname"] * 3}}}]), "--out",
        c.tmp / "out"), f"{c.tmp / 'q.jsonl'}:1: media.oao.frames[0] ../../etc/hostname lies outside")),
    # --- numbers out of range ---------------------------------------------------------------------------------------
    ("build-data --frames 0", lambda c: (c.build("--out", c.tmp / "out", "--frames", "0"),
                                         "number of video frames must be positive, got 0")),
    ("build-data --size -5", lambda c: (c.build("--out", c.tmp / "out", "--size", "-5"),
                                        "image size must be a positive number of pixels")),
    ("build-data --blend 1.5", lambda c: (c.build("--out", c.tmp / "out", "--blend", "1.5"),
                                          "blend weight must be between 0 and 1, got 1.5")),
    ("build-data --workers 0", lambda c: (c.build("--out", c.tmp / "out", "--workers", "0"),
                                          "--workers must be at least 1, got 0")),
    ("predict --batch-size 0", lambda c: (c.predict("--out", c.tmp / "out", "--batch-size", "0"),
                                          "--batch-size must be at least 1, got 0")),
    ("predict --limit 0", lambda c: (c.predict("--out", c.tmp / "out", "--limit", "0"),
                                     "--limit must be at least 1, got 0")),
    ("predict --top-p 1.5", lambda c: (c.predict("--out", c.tmp / "out", "--top-p", "1.5"),
                                       "--top-p must be in (0, 1], got 1.5")),
    ("predict --max-frames 0", lambda c: (c.predict("--out", c.tmp / "out", "--max-frames", "0"),
                                          "--max-frames must be a positive integer, got 0")),
    ("answer --max-new-tokens 0", lambda c: (c.answer("--max-new-tokens", "0"),
                                             "--max-new-tokens must be at least 1, got 0")),
    ("answer --top-k 0", lambda c: (c.answer("--top-k", "0"), "--top-k must be a positive integer, got 0")),
    ("answer --repetition-penalty -1", lambda c: (c.answer("--repetition-penalty", "-1"),
                                                  "--repetition-penalty must be a positive number, got -1.0")),
    ("answer --device cuda:99", lambda c: (c.answer("--device", "cuda:99"), "--device cuda:99: this machine has")),
    ("predict --device gpu", lambda c: (c.predict("--out", c.tmp / "out", "--device", "gpu"),
                                        "--device 'gpu' is not a device name")),
    ("answer --apex outside", lambda c: (c.answer("--apex", "999"), "apex 999 outside the clip 100..107")),
    ("synth-data --size 0 0", lambda c: (["synth-data", "samm", "--out", str(c.tmp / "out"), "--size", "0", "0"],
                                         "--size must give a width and height between 16 and 4096 pixels, got 0x0")),
    ("synth-data --seed -1", lambda c: (["synth-data", "casme2", "--out", str(c.tmp / "out"), "--seed", "-1"],
                                        "--seed must be an integer between 0 and 4294967295 (2**32 - 1), got -1")),
    ("synth-data --clips 0", lambda c: (["synth-data", "samm", "--out", str(c.tmp / "out"), "--clips", "0"],
                                        "--clips must be at least 1, got 0")),
    ("split --scheme kfold:1", lambda c: (["split", "--data", str(c.data / "qa.jsonl"), "--scheme", "kfold:1",
                                           "--out", str(c.tmp / "out")], "K must be between 2 and the number")),
    ("demo --steps 0", lambda c: (["demo", "--workdir", str(c.tmp / "demo"), "--steps", "0"],
                                  "--steps must be at least 1, got 0")),
    # --- a model's training record ------------------------------------------------------------------------------------
    ("train_config.yaml that is not YAML", lambda c: (c.answer("--adapter", _adapter_with_config(c, "inputs: [oao")),
                                                      "train_config.yaml: cannot read the training config")),
    ("train_config.yaml with an unknown media setting", lambda c: (
        c.answer("--adapter", _adapter_with_config(c, "media_settings: {speed: 2}\n")),
        "train_config.yaml: media_settings: unknown media setting(s) speed")),
    ("predict with a damaged adapter file", lambda c: (c.predict("--out", c.tmp / "out", "--adapter",
                                                                  _damaged_adapter(c)),
                                                        "adapter_model.safetensors: damaged weights file")),
    ("merge with a damaged adapter file", lambda c: (["merge", "--base", str(c.model), "--adapter",
                                                      str(_damaged_adapter(c)), "--out", str(c.tmp / "merged")],
                                                     "adapter_model.safetensors: damaged weights file")),
    ("--questions is a folder", lambda c: (c.predict("--questions", c.tmp, "--out", c.tmp / "out"),
                                           f"{c.tmp}: is a folder, expected a jsonl file")),
    # --- MEGC2026: the files of one task given to the other, empty files among several, odd answers ---------------
    ("predict an ME-LVQA question file", lambda c: (c.predict("--questions", LVQA_TEST, "--out", c.tmp / "out"),
                                                    f"{LVQA_TEST}:1: {LVQA_COUNT!r} is an ME-LVQA question about a "
                                                    "whole long video; answer ME-LVQA files with mevqa lvqa-predict")),
    ("build-data --official with an ME-LVQA file", lambda c: (
        ["build-data", "samm", "--official", str(LVQA_TEST), "--root", str(c.clips / "SAMM"), "--out",
         str(c.tmp / "out")], f"{LVQA_TEST}:1: {LVQA_COUNT!r} is an ME-LVQA question about a whole long video; "
                              "build ME-LVQA rows with mevqa build-lvqa")),
    ("lvqa-predict a ME-VQA-v2 file", lambda c: (_lvqa_predict(c, VQA_V2_TEST), f"{VQA_V2_TEST}:1: 'What is the "
                                                                                "coarse expression class?' is not an "
                                                                                "ME-LVQA question")),
    ("lvqa-predict --out is a file", lambda c: (_lvqa_predict(c, _samm1_question(c), out=c.file("out")),
                                                f"{c.tmp / 'out'}: cannot be the output folder")),
    ("lvqa-predict --questions in Latin-1", lambda c: (_lvqa_predict(c, c.latin1("q.jsonl")),
                                                       f"{c.tmp / 'q.jsonl'}:2: not UTF-8 text")),
    ("lvqa-predict with an empty question file among two", lambda c: (
        _lvqa_predict(c, LVQA_TEST, c.file("e.jsonl", "")), f"{c.tmp / 'e.jsonl'}: no question rows")),
    ("lvqa-predict with video ../x", lambda c: (_lvqa_predict(c, c.rows("q.jsonl", [
        {"video_id": "a", "video": "../006_1", "question": LVQA_COUNT}])),
        f"{c.tmp / 'q.jsonl'}:1: video name '../006_1' must be one plain folder or file name")),
    ("lvqa-predict --out is a video's frame folder", lambda c: (
        ["lvqa-predict", "--method", "spot", "--questions", str(c.rows("q.jsonl", [
            {"video_id": "a", "video": "SAMM-1", "frames": str(c.clips / "SAMM" / "SAMM-1"),
             "question": LVQA_COUNT}])), "--out", str(c.clips / "SAMM" / "SAMM-1")],
        f"{c.clips / 'SAMM' / 'SAMM-1'}: --out is the input the videos")),
    ("lvqa-predict --model that does not exist", lambda c: (
        _lvqa_predict(c, _samm1_question(c)) + ["--model", str(c.tmp / "no-model")],
        f"{c.tmp / 'no-model'}: model folder does not exist")),
    ("lvqa-predict --adapter that does not exist", lambda c: (
        _lvqa_predict(c, _samm1_question(c)) + ["--model", str(c.model), "--adapter", str(c.tmp / "no-adapter")],
        f"{c.tmp / 'no-adapter'}: adapter folder does not exist")),
    ("lvqa-eval gold count 1.5", lambda c: (_lvqa_eval(c, "2", "1.5"), f"{c.tmp / 'g.jsonl'}:1: gold answer '1.5' "
                                                                       "cannot be read as the count")),
    ("lvqa-eval gold count -2", lambda c: (_lvqa_eval(c, "2", "-2"), "gold answer '-2' cannot be read as the count")),
    ("lvqa-eval --pred empty", lambda c: (["lvqa-eval", "--pred", str(c.file("p.jsonl", "")), "--gold",
                                           str(c.rows("g.jsonl", [_lvqa_row("1")]))],
                                          f"{c.tmp / 'p.jsonl'}: no prediction rows")),
    ("lvqa-eval --gold with an empty file among two", lambda c: (_lvqa_eval(c, "1", "1") + [str(c.file("e.jsonl", ""))],
                                                                 f"{c.tmp / 'e.jsonl'}: no gold rows")),
    ("lvqa-eval with a prediction twice", lambda c: (
        ["lvqa-eval", "--pred", str(c.rows("p.jsonl", [_lvqa_row("1")] * 2)), "--gold",
         str(c.rows("g.jsonl", [_lvqa_row("1")]))], f"{c.tmp / 'p.jsonl'}:2: duplicate prediction id 'samm_006_1_1'")),
]


def _lvqa_predict(case: Case, *questions: Path, out: Path | None = None) -> list[str]:
    return ["lvqa-predict", "--method", "spot", "--questions", *map(str, questions), "--videos", str(case.clips),
            "--out", str(out or case.tmp / "out")]


def _samm1_question(case: Case) -> Path:
    """An ME-LVQA question about the clip folder SAMM-1 (under --videos, as a long video)."""
    return case.rows("q.jsonl", [{"video_id": "a", "video": "SAMM-1", "question": LVQA_COUNT}])


def _lvqa_row(answer: str) -> dict:
    return {"video_id": "samm_006_1_1", "video": "006_1", "question": LVQA_COUNT, "answer": answer}


def _lvqa_eval(case: Case, predicted: str, gold: str) -> list[str]:
    return ["lvqa-eval", "--pred", str(case.rows("p.jsonl", [_lvqa_row(predicted)])), "--gold",
            str(case.rows("g.jsonl", [_lvqa_row(gold)]))]


def _latin1_table(case: Case) -> Path:
    path = case.tmp / "rules.yaml"
    path.write_bytes("rules:\n  - {fine: anger, any: [4]}  # c\xf3lera\n".encode("latin-1"))
    return path


def _damaged_adapter(case: Case) -> Path:
    """An adapter folder whose weights file was cut short (its header is the first thing lost)."""
    folder = case.tmp / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "target_modules": ["q_proj"]}))
    (folder / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00")
    return folder


def _adapter_with_config(case: Case, text: str) -> Path:
    folder = case.tmp / "adapter"
    folder.mkdir()
    (folder / "train_config.yaml").write_text(text)
    return folder


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model_dir):
    from inference_clips import write_test_clips
    from mevqa.data_builders.synth import write_synthetic_dataset

    base = tmp_path_factory.mktemp("bad-inputs")
    raw = write_synthetic_dataset("casme2", base / "raw", clips=6, frames=8)
    assert main(["build-data", "casme2", "--root", str(raw["root"]), "--annotations", str(raw["annotations"]),
                 "--out", str(base / "data"), "--inputs", "oao", "--size", "64"]) == 0
    return {"base": base, "raw": raw, "data": base / "data",
            "clips": write_test_clips(base / "clips", n_frames=8), "model": tiny_model_dir}


def _snapshot(*roots: Path) -> dict:
    state = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                stat = path.lstat()
                state[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return state


def assert_refused(argv: list[str], expected: str, capsys, *watched: Path) -> None:
    """``mevqa.cli.main(argv)`` exits 2 with one error line holding ``expected``, no traceback, nothing on stdout,
    and nothing changed under the ``watched`` folders (the tables of hostile inputs share this)."""
    capsys.readouterr()
    before = _snapshot(*watched)
    code = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith(f"mevqa {argv[0]}: error: ")]
    assert code == 2, captured.err
    assert len(lines) == 1 and expected in lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert _snapshot(*watched) == before


@pytest.mark.parametrize("name, make", CASES, ids=[name for name, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(request, shared, tmp_path, capsys, name, make):
    case = Case(tmp_path, shared["data"], shared["raw"], shared["clips"], shared["model"])
    if "read-only" in name:
        case.read_only = request.getfixturevalue("read_only")
    assert_refused(*make(case), capsys, tmp_path, shared["base"])


def test_the_table_is_as_long_as_the_docs_say():
    reliability = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert f"runs {len(CASES)} hostile inputs" in reliability
