"""No command writes onto what it reads (:func:`mevqa.paths.refuse_outputs_onto_inputs`): every writing command,
with each of its outputs pointed at each of its inputs (directly, through a symlink, or inside a folder it reads as
data), ends with exit status 2, one error line, and an unchanged disk. The last tests show the rule does not refuse
an output that merely sits beside an input.

Each case is ``(id, builder)``; a builder gets the :class:`Paths` of the case and returns ``(argv, text the error
line must contain)``. Commands with no input (``tiny-model``, ``synth-data``, ``demo``) have nothing to overwrite.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import OFFICIAL_TEST, STRS_FIXTURE
from mevqa.cli import main
from test_bad_inputs import LVQA_COUNT, RANK1, assert_refused, shared  # noqa: F401 (shared: the module's fixture)

CONFIG = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "tiny" / "lora.yaml"


@dataclass
class Paths:
    tmp: Path        # the case's own folder (copies of inputs that a case may point at)
    data: Path       # a casme2 build: qa.jsonl, build.json, media/
    raw: dict        # its synthetic source: root, annotations
    clips: Path      # test clips under clips/SAMM/
    model: Path      # the tiny model
    spot: Path       # a smic-e build-spot folder: spot.jsonl, gt.csv
    long: dict       # its synthetic source: root, annotations
    folds: Path      # a split of the casme2 build
    lv: dict         # synthetic CAS(ME)^3 long videos: root, annotations, macro (build-lvqa's sheets)

    def copy(self, source: Path, name: str | None = None) -> Path:
        """A copy of an input file in the case's folder (so that its folder holds nothing else of value)."""
        target = self.tmp / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return target

    def link(self, target: Path, name: str = "link") -> Path:
        path = self.tmp / name
        path.symlink_to(target)
        return path

    def adapter(self) -> Path:
        folder = self.tmp / "adapter"
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "target_modules": ["q_proj"]}))
        return folder

    def predict(self, *extra) -> list[str]:
        return ["predict", "--questions", str(OFFICIAL_TEST[0]), "--clips", str(self.clips), "--model",
                str(self.model), *map(str, extra)]

    def build(self, *extra) -> list[str]:
        return ["build-data", "casme2", "--root", str(self.raw["root"]), "--annotations", str(self.raw["annotations"]),
                "--inputs", "oao", "--size", "64", *map(str, extra)]

    def build_spot(self, *extra) -> list[str]:
        return ["build-spot", "smic-e", "--root", str(self.long["root"]), "--annotations",
                str(self.long["annotations"]), *map(str, extra)]

    def build_lvqa(self, *extra) -> list[str]:
        return ["build-lvqa", "casme3", "--root", str(self.lv["root"]), "--annotations", str(self.lv["annotations"]),
                "--macro", str(self.lv["macro"]), *map(str, extra)]

    def lvqa_predict(self, questions: Path, out: Path, *extra) -> list[str]:
        return ["lvqa-predict", "--method", "spot", "--questions", str(questions), "--out", str(out),
                *map(str, extra)]

    def lvqa_question(self, **fields) -> Path:
        """An ME-LVQA question file about the clip SAMM-1 as a long video (found under --videos, or ``frames``)."""
        path = self.tmp / "me_lvqa_samm_test_to_answer.jsonl"
        path.write_text(json.dumps({"video_id": "a", "video": "SAMM-1", "question": LVQA_COUNT, **fields}) + "\n")
        return path

    def export(self, *extra) -> list[str]:
        return ["export", "--inputs", "oao", "--format", "swift", *map(str, extra)]


def _eval(p: Paths, output: str, onto: str) -> tuple[list[str], str]:
    pred, gold = p.copy(RANK1, "pred.jsonl"), p.copy(RANK1, "gold.jsonl")
    files = {"--pred": pred, "--gold": gold}
    return (["eval", "--pred", str(pred), "--gold", str(gold), output, str(files[onto]), "--bootstrap", "0"],
            f"{files[onto]}: {output} is the input {onto} {files[onto]}")


def _compare(p: Paths, onto: str) -> tuple[list[str], str]:
    files = {flag: p.copy(RANK1, f"{flag[2:]}.jsonl") for flag in ("--a", "--b", "--gold")}
    return (["compare", *[part for flag, path in files.items() for part in (flag, str(path))], "--json",
             str(files[onto])], f"--json is the input {onto}")


def _str_eval(p: Paths, onto: str) -> tuple[list[str], str]:
    files = {"--pred": p.copy(STRS_FIXTURE / "pred.csv"), "--gt": p.copy(STRS_FIXTURE / "gt.csv")}
    return (["str-eval", "--pred", str(files["--pred"]), "--gt", str(files["--gt"]), "--json", str(files[onto])],
            f"--json is the input {onto}")


def _split_over_its_own_fold(p: Paths) -> tuple[list[str], str]:
    """Splitting the fold files of a split again into that split's folder would replace the files being split."""
    held_out = [p.folds / f"fold_{k}" / "val.jsonl" for k in (0, 1)]
    return (["split", "--data", *map(str, held_out), "--scheme", "kfold:2", "--out", str(p.folds)],
            f"{p.folds / 'fold_0'}: --out holds the input --data {held_out[0]}")


def _submit_over_pred(p: Paths) -> tuple[list[str], str]:
    pred = p.copy(RANK1, "me_vqa_samm_test_pred.jsonl")  # the name submit gives the answers to OFFICIAL_TEST[0]
    return (["submit", "--questions", str(OFFICIAL_TEST[0]), "--pred", str(pred), "--out", str(p.tmp)],
            f"{pred}: --out is the input --pred {pred}")


def _str_predict(p: Paths, out: Path | None = None) -> list[str]:
    return ["str-predict", "--spot-data", str(p.spot / "spot.jsonl"), "--method", "flow", "--out",
            str(out if out is not None else p.tmp / "out")]


def _lvqa_eval(p: Paths, onto: str) -> tuple[list[str], str]:
    row = json.dumps({"video_id": "a", "video": "v", "question": LVQA_COUNT, "answer": "1"}) + "\n"
    files = {flag: p.tmp / f"{flag[2:]}.jsonl" for flag in ("--pred", "--gold")}
    for path in files.values():
        path.write_text(row)
    return (["lvqa-eval", "--pred", str(files["--pred"]), "--gold", str(files["--gold"]), "--json", str(files[onto])],
            f"--json is the input {onto}")


def _long_video(p: Paths) -> Path:
    return next(path for path in sorted(Path(p.long["root"]).rglob("*")) if path.is_dir() and any(path.glob("*.jpg")))


CASES = [
    # --- eval, compare, str-eval, inspect: report files ------------------------------------------------------------
    *[(f"eval {output} onto {onto}", lambda p, o=output, i=onto: _eval(p, o, i))
      for output in ("--json", "--samples") for onto in ("--pred", "--gold")],
    ("eval --plot onto --pred", lambda p: (["eval", "--pred", str(pred := p.copy(RANK1, "pred.jsonl")), "--gold",
                                            str(RANK1), "--plot", str(pred), "--bootstrap", "0"],
                                           "--plot is the input --pred")),
    ("eval --json through a symlink onto --gold", lambda p: (
        ["eval", "--pred", str(RANK1), "--gold", str(gold := p.copy(RANK1, "gold.jsonl")), "--json",
         str(p.link(gold, "report.json")), "--bootstrap", "0"], f"is the input --gold {gold} (both resolve to")),
    *[(f"compare --json onto {onto}", lambda p, i=onto: _compare(p, i)) for onto in ("--a", "--b", "--gold")],
    *[(f"str-eval --json onto {onto}", lambda p, i=onto: _str_eval(p, i)) for onto in ("--pred", "--gt")],
    ("inspect --json onto --data", lambda p: (["inspect", "--data", str(p.data / "qa.jsonl"), "--model",
                                               str(p.model), "--json", str(p.data / "qa.jsonl")],
                                              "--json is the input --data")),
    ("inspect --json onto --config", lambda p: (["inspect", "--config", str(config := p.copy(CONFIG)), "--data",
                                                 str(p.data / "qa.jsonl"), "--model", str(p.model), "--json",
                                                 str(config)], "--json is the input --config")),
    ("inspect --json onto --model", lambda p: (["inspect", "--data", str(p.data / "qa.jsonl"), "--model",
                                                str(p.model), "--json", str(p.model / "config.json")],
                                               f"--json lies inside --model {p.model}")),
    # --- submit, predict ------------------------------------------------------------------------------------------
    ("submit --out onto --questions", lambda p: (["submit", "--questions", str(q := p.copy(OFFICIAL_TEST[0])),
                                                  "--pred", str(RANK1), "--out", str(q)],
                                                 "--out is the input --questions")),
    ("submit --out writing onto --pred", _submit_over_pred),
    ("predict --out onto --questions", lambda p: (p.predict("--questions", q := p.copy(OFFICIAL_TEST[0]), "--out", q),
                                                  "--out is the input --questions")),
    # (allowed before issue 20, when a rerun's search for a clip below --clips had to skip OUT/media/<video>)
    ("predict --out inside --clips", lambda p: (p.predict("--out", p.clips / "SAMM" / "out"),
                                                f"--out lies inside --clips {p.clips}")),
    ("predict --out onto --model", lambda p: (p.predict("--out", p.model), f"--out is the input --model {p.model}")),
    ("predict --out onto --adapter", lambda p: (p.predict("--adapter", a := p.adapter(), "--out", a),
                                                "--out is the input --adapter")),
    ("predict --out onto --gold", lambda p: (p.predict("--gold", g := p.copy(RANK1), "--out", g),
                                             "--out is the input --gold")),
    # --- split, export, build-data, build-spot ------------------------------------------------------------------
    ("split --out onto --data", lambda p: (["split", "--data", str(p.data / "qa.jsonl"), "--out",
                                            str(p.data / "qa.jsonl")], "--out is the input --data")),
    ("split over its own fold file", _split_over_its_own_fold),
    ("export --out onto --data", lambda p: (p.export("--data", p.data / "qa.jsonl", "--out", p.data / "qa.jsonl"),
                                            "--out is the input --data")),
    ("export --out holding --data and its media", lambda p: (p.export("--data", p.data / "qa.jsonl", "--out", p.data),
                                                            f"{p.data}: --out holds the input --data")),
    ("export --out onto the media folder", lambda p: (p.export("--data", p.data / "qa.jsonl", "--out",
                                                               p.data / "media"),
                                                      "--out holds the input the media of --data")),
    ("build-data --out onto --root", lambda p: (p.build("--out", p.raw["root"]), "--out is the input --root")),
    ("build-data --out inside --root", lambda p: (p.build("--out", Path(p.raw["root"]) / "built"),
                                                  "--out lies inside --root")),
    ("build-data --out onto --annotations", lambda p: (p.build("--out", p.raw["annotations"]),
                                                       "--out is the input --annotations")),
    ("build-spot --out onto --root", lambda p: (p.build_spot("--out", p.long["root"]), "--out is the input --root")),
    ("build-spot --out onto --annotations", lambda p: (p.build_spot("--out", p.long["annotations"]),
                                                       "--out is the input --annotations")),
    # --- spot, str-predict ------------------------------------------------------------------------------------------
    ("spot --work onto --video", lambda p: (["spot", "--video", str(v := _long_video(p)), "--fps", "100", "--method",
                                             "flow", "--work", str(v)], "--work is the input --video")),
    ("spot --work inside --video", lambda p: (["spot", "--video", str(v := _long_video(p)), "--fps", "100",
                                               "--method", "flow", "--work", str(v / "work")],
                                              "--work lies inside --video")),
    ("str-predict --out onto --spot-data", lambda p: (_str_predict(p, p.spot / "spot.jsonl"),
                                                      "--out is the input --spot-data")),
    ("str-predict --out inside a video's frames", lambda p: (_str_predict(p, _long_video(p) / "out"),
                                                             "--out lies inside the frames of --spot-data")),
    # --- build-lvqa, lvqa-predict, lvqa-eval --------------------------------------------------------------------------
    ("build-lvqa --out onto --root", lambda p: (p.build_lvqa("--out", p.lv["root"]), "--out is the input --root")),
    ("build-lvqa --out inside --root", lambda p: (p.build_lvqa("--out", Path(p.lv["root"]) / "built"),
                                                  "--out lies inside --root")),
    ("build-lvqa --out onto --macro", lambda p: (p.build_lvqa("--out", p.lv["macro"]), "--out is the input --macro")),
    ("lvqa-predict --out onto --questions", lambda p: (p.lvqa_predict(q := p.lvqa_question(), q, "--videos", p.clips),
                                                       "--out is the input --questions")),
    ("lvqa-predict --out onto --videos", lambda p: (p.lvqa_predict(p.lvqa_question(), p.clips, "--videos", p.clips),
                                                    "--out is the input --videos")),
    ("lvqa-predict --out inside a video's frames", lambda p: (
        p.lvqa_predict(p.lvqa_question(frames=str(v := p.clips / "SAMM" / "SAMM-1")), v / "out"),
        "--out lies inside the videos")),
    ("lvqa-predict --out onto --model", lambda p: (p.lvqa_predict(p.lvqa_question(), p.model, "--videos", p.clips,
                                                                  "--model", p.model), "--out is the input --model")),
    *[(f"lvqa-eval --json onto {onto}", lambda p, i=onto: _lvqa_eval(p, i)) for onto in ("--pred", "--gold")],
    # --- merge, cv --------------------------------------------------------------------------------------------------
    ("merge --out onto --adapter", lambda p: (["merge", "--base", str(p.model), "--adapter", str(a := p.adapter()),
                                               "--out", str(a)], "--out is the input --adapter")),
    ("merge --out inside --adapter", lambda p: (["merge", "--base", str(p.model), "--adapter", str(a := p.adapter()),
                                                 "--out", str(a / "merged")], "--out lies inside --adapter")),
    ("merge --out onto --base", lambda p: (["merge", "--base", str(p.model), "--adapter", str(p.adapter()), "--out",
                                            str(p.model)], "--out is the input --base")),
    ("cv --out onto --folds", lambda p: (["cv", "--config", str(CONFIG), "--folds", str(p.folds), "--out",
                                          str(p.folds)], "--out is the input --folds")),
    ("cv --out inside --folds", lambda p: (["cv", "--config", str(CONFIG), "--folds", str(p.folds), "--out",
                                            str(p.folds / "cv")], "--out lies inside --folds")),
    ("cv --out onto --config", lambda p: (["cv", "--config", str(c := p.copy(CONFIG)), "--folds", str(p.folds),
                                           "--out", str(c)], "--out is the input --config")),
]


@pytest.fixture(scope="module")
def paths(shared, tmp_path_factory):  # noqa: F811
    """The first table's inputs (a casme2 build, test clips, the tiny model), a split of the build and a smic-e
    build-spot."""
    from mevqa.data_builders.synth_long import write_long_dataset

    base = shared["base"]
    assert main(["split", "--data", str(base / "data" / "qa.jsonl"), "--scheme", "kfold:2", "--out",
                 str(base / "folds")]) == 0
    long = write_long_dataset("smic-e", base / "long", videos=1, frames=300, seed=0)
    lv = write_long_dataset("casme3", base / "lvqa", videos=1, seed=0)
    assert main(["build-spot", "smic-e", "--root", str(long["root"]), "--annotations", str(long["annotations"]),
                 "--out", str(base / "spot")]) == 0
    return {**shared, "spot": base / "spot", "long": long, "folds": base / "folds", "lv": lv}


@pytest.mark.parametrize("name, make", CASES, ids=[name for name, _ in CASES])
def test_an_output_onto_an_input_is_refused_before_anything_is_written(paths, tmp_path, capsys, name, make):
    case = Paths(tmp_path, paths["data"], paths["raw"], paths["clips"], paths["model"], paths["spot"], paths["long"],
                 paths["folds"], paths["lv"])
    assert_refused(*make(case), capsys, tmp_path, paths["base"], paths["model"])


def test_the_table_is_as_long_as_the_reliability_page_says():
    page = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert f"points each output of each writing command at each of its inputs: {len(CASES)} cases" in " ".join(
        page.split())


def test_every_writing_command_has_a_row():
    commands = {name.split()[0] for name, _ in CASES}
    assert commands == {"eval", "compare", "str-eval", "inspect", "submit", "predict", "split", "export",
                        "build-data", "build-spot", "spot", "str-predict", "merge", "cv", "build-lvqa",
                        "lvqa-predict", "lvqa-eval"}


def test_an_output_beside_its_inputs_is_allowed(paths, tmp_path):
    """The rule is about the paths written, not the folder: a report next to the files it reads is fine, and so is a
    split written into the build folder it splits (its fold files are new names there)."""
    pred, gold = (str(shutil.copy(RANK1, tmp_path / name)) for name in ("pred.jsonl", "gold.jsonl"))
    assert main(["eval", "--pred", pred, "--gold", gold, "--json", str(tmp_path / "report.json"), "--bootstrap",
                 "0"]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["counts"]["missing"] == 0
    build = shutil.copytree(paths["data"], tmp_path / "build")
    assert main(["split", "--data", str(build / "qa.jsonl"), "--scheme", "kfold:2", "--out", str(build)]) == 0
    assert (build / "fold_1" / "val.jsonl").is_file() and (build / "qa.jsonl").read_bytes() == \
        (paths["data"] / "qa.jsonl").read_bytes()
