"""Every command's options follow one convention: each has help, defaults are shown as ``(default: X)``, and JSON
output is ``--json PATH`` (``-`` for stdout)."""

from __future__ import annotations

import argparse
import io
import json
import re

import pytest

from mevqa.cli import COMMANDS, build_parser
from mevqa.cli_style import HelpFormatter, write_json_output


def command_parser(name: str) -> argparse.ArgumentParser:
    parser = build_parser([name])
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return subparsers.choices[name]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_every_command_has_help_and_one_default_style(name):
    parser = command_parser(name)
    missing = [action.option_strings[0] if action.option_strings else action.dest for action in parser._actions
               if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert missing == [], f"mevqa {name}: options without help: {', '.join(missing)}"
    text = parser.format_help()
    assert not re.search(r"\(default [^:]", text), f"mevqa {name}: a default shown as '(default X)' not '(default: X)'"
    formatter = parser._get_formatter()
    silent = [action.option_strings[0] for action in parser._actions if action.option_strings
              and not any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))
              and action.default not in ([], ())
              and "default: " not in formatter._get_help_string(action)]
    assert silent == [], f"mevqa {name}: options whose default is not shown as '(default: X)': {', '.join(silent)}"
    assert isinstance(parser.formatter_class(prog="x"), HelpFormatter)


@pytest.mark.parametrize("name", [name for name in COMMANDS if "--json" in command_parser(name)._option_string_actions])
def test_json_takes_a_path_or_stdout_everywhere(name):
    action = command_parser(name)._option_string_actions["--json"]
    assert action.nargs is None and action.metavar == "PATH" and "'-'" in action.help, name


def test_the_json_commands_are_the_expected_ones():
    assert {name for name in COMMANDS if "--json" in command_parser(name)._option_string_actions} == {
        "answer", "spot", "eval", "compare", "str-eval", "inspect", "lvqa-eval"}


def test_a_default_is_added_once_and_only_where_there_is_one():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--size", type=int, default=448, help="image size")
    parser.add_argument("--told", type=int, default=3, help="votes (default: as trained, else 3)")
    parser.add_argument("--flag", action="store_true", help="a flag")
    parser.add_argument("--model", help="a model")
    text = " ".join(parser.format_help().split())
    assert "image size (default: 448)" in text and "votes (default: as trained, else 3) " in text
    assert "a flag --model" in text and text.endswith("a model")


def test_json_goes_to_a_file_or_to_stdout(tmp_path, capsys):
    write_json_output(tmp_path / "out.json", {"a": 1})
    assert json.loads((tmp_path / "out.json").read_text()) == {"a": 1} and capsys.readouterr().out == ""
    write_json_output("-", {"a": 1})
    assert json.loads(capsys.readouterr().out) == {"a": 1}


def test_eval_json_to_stdout_is_one_document_and_to_a_path_keeps_the_table(tmp_path, capsys):
    from conftest import MEGC2025
    from mevqa.cli import main

    pred = MEGC2025 / "predictions" / "rank3" / "me_vqa_samm_test_pred.jsonl"
    gold = MEGC2025 / "predictions" / "rank1" / "me_vqa_samm_test_pred.jsonl"
    argv = ["eval", "--pred", str(pred), "--gold", str(gold), "--bootstrap", "0"]
    assert main([*argv, "--json", "-"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert main([*argv, "--json", str(tmp_path / "scores.json")]) == 0
    assert "Overall" in capsys.readouterr().out
    written = json.loads((tmp_path / "scores.json").read_text())
    assert printed["overall"] == written["overall"] and printed["avg"] == written["avg"]


def test_help_and_the_light_commands_do_not_load_the_model_stack():
    """`mevqa --help` imports only the CLI's light base; the commands that need no model (building data, splits,
    exports, spotting without a model) never load torch, and those that do not score never load the scorers."""
    import subprocess
    import sys

    light = ("mevqa.cli", "mevqa.data_builders.synth_cli", "mevqa.data_builders.cli", "mevqa.experiments.split",
             "mevqa.train.export", "mevqa.train.inspect", "mevqa.data_builders.spot", "mevqa.longvideo.spot",
             "mevqa.longvideo.str_predict", "mevqa.answering.submission")
    code = ("import sys, importlib\n"
            f"for name in {light!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in ('torch', 'transformers', 'rouge_score', 'sacrebleu') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


class RecordingRawFile(io.RawIOBase):
    """The file-descriptor level under stderr: records each write call as the OS would receive it."""

    def __init__(self):
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.writes.append(bytes(data))
        return len(data)


def test_a_failure_is_written_as_one_whole_line_in_one_write(monkeypatch):
    """accelerate's processes share one unbuffered stderr pipe: a line written in two parts (text, then newline) by
    two failing processes at once came out joined on one line (seen in CI). One write per line keeps each whole.
    stderr here is what PYTHONUNBUFFERED gives a process: a write-through text layer over the raw file."""
    from mevqa.cli import run_reporting_errors
    from mevqa.errors import MevqaError

    def fails():
        raise MevqaError("x.yaml: learning_rate: expected a number, got 'nan'")

    raw = RecordingRawFile()
    monkeypatch.setattr("sys.stderr", io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
    assert run_reporting_errors("recipes/lora.py", fails) == 2
    assert raw.writes == [b"recipes/lora.py: error: x.yaml: learning_rate: expected a number, got 'nan'\n"]
