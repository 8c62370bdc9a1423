"""The project as a user meets it: README set-up commands, CI, the CLI, and clean import names when installed."""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import mevqa
from mevqa.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [block.strip() for block in blocks]


def test_readme_starts_with_install_test_and_demo_and_ci_runs_both_test_tiers():
    """README: the install command, the default-tier test command, then the offline end-to-end demo; the e2e tier's
    command follows. .ci/run runs install, default tier and e2e tier, word for word, in that order."""
    commands = _readme_commands()
    install, test, demo = commands[:3]
    assert "pip install" in install
    assert "pytest" in test and '-m "not e2e"' in test, "the second command runs the default tier"
    assert demo == ".venv/bin/mevqa demo", "right after the two set-up commands: the main job end to end, offline"
    e2e = commands[3]
    assert "pytest" in e2e and "-m e2e" in e2e, "the fourth command runs the end-to-end tier"
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert install in ci_lines, ".ci/run must install exactly as README.md says"
    assert test in ci_lines and e2e in ci_lines, ".ci/run must run both of README.md's test tiers"
    assert ci_lines.index(install) < ci_lines.index(test) < ci_lines.index(e2e)


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: mevqa " + command in capsys.readouterr().out


def _import_from(cwd: Path, extra_path: Path | None = None) -> dict[str, str]:
    code = ("import json, mevqa, mevqa.eval, mevqa.data_builders, mevqa.recipes, mevqa.train;"
            "print(json.dumps({m.__name__: m.__file__ for m in "
            "(mevqa, mevqa.eval, mevqa.data_builders, mevqa.recipes, mevqa.train)}))")
    env = None if extra_path is None else {**os.environ, "PYTHONPATH": str(extra_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _module_names(package_path) -> list[str]:
    """Every module of the package at ``package_path`` (``__main__`` left out: importing it runs the CLI)."""
    return sorted(info.name for info in pkgutil.walk_packages(package_path, "mevqa.")
                  if not info.name.endswith(".__main__"))


def test_installed_import_names_are_namespaced(tmp_path):
    """Outside the repository, the top-level folders import as mevqa.eval, mevqa.data_builders, mevqa.recipes."""
    files = _import_from(tmp_path)
    assert Path(files["mevqa.eval"]).parent.name == "eval"
    assert Path(files["mevqa.data_builders"]).parent.name == "data_builders"
    probe = subprocess.run([sys.executable, "-c", "import eval"], cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode != 0, "a bare `eval` package must not be importable once installed"


def test_wheel_contains_namespaced_packages_and_configs(tmp_path):
    # Built from a copy of the source without build outputs: setuptools reuses an in-tree build/lib, so a wheel built
    # in a checkout that once held other modules would carry them and test those, not the source.
    source = shutil.copytree(REPO, tmp_path / "source", symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "runs", "__pycache__", ".pytest_cache"))
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(source)], check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("mevqa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mevqa/eval/__init__.py" in names
    assert "mevqa/data_builders/__init__.py" in names
    assert "mevqa/recipes/lora.py" in names
    assert "mevqa/recipes/configs/tiny/lora.yaml" in names
    assert "mevqa/answering/au_rule_tables/samm.yaml" in names  # package data of a stage folder
    assert not any(name.startswith(("eval/", "data_builders/", "recipes/")) for name in names)
    # Installed from the wheel (no editable finder involved), the same names import.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    files = _import_from(tmp_path, extra_path=target)
    for name, path in files.items():
        assert Path(path).is_relative_to(target), f"{name} imported from {path}, not from the wheel"
    # Every module the source tree has is in the wheel and imports from it.
    code = ("import importlib, json, pkgutil, mevqa;"
            "names = sorted(i.name for i in pkgutil.walk_packages(mevqa.__path__, 'mevqa.')"
            " if not i.name.endswith('.__main__'));"
            "[importlib.import_module(n) for n in names]; print(json.dumps(names))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)},
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == _module_names(mevqa.__path__)


# The static resolver's messages that name a first-party module: an import it cannot find, or a module it does not
# know as an attribute of its package.
_UNRESOLVED_RULES = {"reportMissingImports", "reportAttributeAccessIssue", "reportMissingModuleSource"}
_FIRST_PARTY = re.compile(r'"mevqa(\.[\w.]+)?"')


@pytest.mark.skipif(importlib.util.find_spec("basedpyright") is None, reason="basedpyright is not installed")
def test_static_resolver_follows_every_first_party_import(tmp_path):
    """pyright (as IDEs run it) resolves every ``mevqa.*`` import of the package and the tests, with no import hook.

    A planted import of a module that does not exist is the one diagnostic, so the check can fail.
    """
    planted = tmp_path / "planted.py"
    planted.write_text("import mevqa.eval.no_such_module\n")
    folders = [str(REPO / name) for name in ("mevqa", "eval", "data_builders", "recipes", "tests")]
    # Resolution only: no type checking, and no inference from the libraries' code (half the time, same imports).
    config = {"include": [*folders, str(planted)], "executionEnvironments": [{"root": str(REPO)}],
              "typeCheckingMode": "off", "useLibraryCodeForTypes": False, "analyzeUnannotatedFunctions": False,
              **{rule: "error" for rule in _UNRESOLVED_RULES}}
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-m", "basedpyright", "--project", str(tmp_path / "pyrightconfig.json"),
                           "--pythonpath", sys.executable, "--outputjson"], cwd=REPO, capture_output=True, text=True)
    report = json.loads(done.stdout)
    assert report["summary"]["filesAnalyzed"] > 100
    unresolved = [f"{Path(d['file']).name}:{d['range']['start']['line'] + 1}: {d['message']}"
                  for d in report["generalDiagnostics"]
                  if d.get("rule") in _UNRESOLVED_RULES and _FIRST_PARTY.search(d["message"])]
    assert unresolved == ['planted.py:1: Import "mevqa.eval.no_such_module" could not be resolved']
