"""The project as a user meets it: README set-up commands, CI, the CLI, and clean import names when installed."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mevqa.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [block.strip() for block in blocks]


def test_readme_starts_with_install_and_test_commands_that_ci_runs():
    install, test = _readme_commands()[:2]
    assert "pip install" in install and "pytest" in test
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert install in ci_lines, ".ci/run must install exactly as README.md says"
    assert test in ci_lines, ".ci/run must run README.md's test command"
    assert ci_lines.index(install) < ci_lines.index(test)


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
    env = None
    if extra_path is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(extra_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    import json

    return json.loads(out.stdout)


def test_installed_import_names_are_namespaced(tmp_path):
    """Outside the repository, the top-level folders import as mevqa.eval, mevqa.data_builders, mevqa.recipes."""
    files = _import_from(tmp_path)
    assert Path(files["mevqa.eval"]).parent.name == "eval"
    assert Path(files["mevqa.data_builders"]).parent.name == "data_builders"
    probe = subprocess.run([sys.executable, "-c", "import eval"], cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode != 0, "a bare `eval` package must not be importable once installed"


def test_wheel_contains_namespaced_packages_and_configs(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(REPO)], check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("mevqa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mevqa/eval/__init__.py" in names
    assert "mevqa/data_builders/__init__.py" in names
    assert "mevqa/recipes/lora.py" in names
    assert "mevqa/recipes/configs/tiny/lora.yaml" in names
    assert not any(name.startswith(("eval/", "data_builders/", "recipes/")) for name in names)
    # Installed from the wheel (no editable finder involved), the same names import.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    files = _import_from(tmp_path, extra_path=target)
    for name, path in files.items():
        assert Path(path).is_relative_to(target), f"{name} imported from {path}, not from the wheel"
