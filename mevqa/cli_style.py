"""How every mevqa command shows its options and writes JSON: the conventions, in one place.

- Help: every option has a help text; a default worth telling is shown one way, ``(default: X)``, either written in
  the help (where the default is a rule rather than a value: ``(default: as the model was trained)``) or added by
  :class:`HelpFormatter` from the option's default. :mod:`mevqa.cli` gives every subcommand this formatter.
- JSON: ``--json PATH`` writes the command's result as a JSON document at PATH (atomically); ``--json -`` prints it
  on stdout instead of the command's usual human-readable output, so that stdout is one JSON document
  (:func:`add_json_option`, :func:`write_json_output`).

Kept light (argparse and :mod:`mevqa.jsonl` only): ``mevqa --help`` imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mevqa.jsonl import write_json

STDOUT = "-"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; ``(default: X)`` added to an option's help unless the help already says its
    default or there is nothing to tell (no default, a flag that is off, a positional argument)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or not action.option_strings or default is None or default is False
                or default is argparse.SUPPRESS or default == [] or default == ()):
            return text
        return f"{text} (default: %(default)s)"


def json_target(text: str) -> Path | str:
    """``--json``'s value: ``-`` (stdout) or a path."""
    return STDOUT if text == STDOUT else Path(text)


def add_json_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str) -> None:
    """``--json PATH`` (``-`` for stdout), the one JSON option of every command that can write JSON."""
    parser.add_argument("--json", type=json_target, metavar="PATH",
                        help=f"write {what} as JSON to PATH; '-' prints it on stdout in place of the usual output")


def json_to_stdout(target) -> bool:
    """Whether ``--json`` takes stdout (the command then prints nothing else there)."""
    return target == STDOUT


def json_file(target) -> Path | None:
    """The file ``--json`` writes, None when it prints on stdout or is not given (for the outputs-onto-inputs check)."""
    return None if target is None or json_to_stdout(target) else Path(target)


def write_json_output(target: Path | str, document) -> None:
    """Write ``document`` where ``--json`` says: printed on stdout for ``-``, else atomically to the path."""
    if json_to_stdout(target):
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        write_json(target, document)
