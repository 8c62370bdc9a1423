"""Optional packages stay optional: what the core install runs never imports them.

`evaluate` (which brings datasets, pyarrow and multiprocess) is only for users of `mevqa.eval.METRIC_PATH`, and
`datasets` only for `mevqa export --format hf`. Each check runs in a fresh interpreter in which importing those
packages fails, as on an install without the extras.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import MEGC2025, REPO_ROOT

# A finder ahead of all others that reports the extras' packages as not installed.
BLOCK = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('evaluate', 'datasets', 'pyarrow', 'multiprocess'):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=1500)


def test_eval_runs_without_evaluate_and_datasets(public_data, tmp_path):
    pred = sorted((MEGC2025 / "predictions" / "rank3").glob("*.jsonl"))
    gold = sorted((MEGC2025 / "predictions" / "rank1").glob("*.jsonl"))
    report = tmp_path / "report.json"
    argv = ["eval", "--pred", *map(str, pred), "--gold", *map(str, gold), "--json", str(report)]
    code = ("import mevqa.eval\nfrom mevqa.cli import main\n"
            "try:\n    import evaluate\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('not blocked')\n"
            f"raise SystemExit(main({argv!r}))")
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert "Overall" in result.stdout
    assert 0 < json.loads(report.read_text())["avg"] < 1


def test_core_modules_import_without_the_extras():
    modules = ["mevqa.eval", "mevqa.eval.cli", "mevqa.train.export", "mevqa.train.inspect", "mevqa.messages",
               "mevqa.models.collate", "mevqa.answering.generation", "mevqa.experiments.split",
               "mevqa.answering.submission", "mevqa.data_builders"]
    result = _run("import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules))
    assert result.returncode == 0, result.stderr


def test_export_hf_without_datasets_says_which_extra(tmp_path):
    from qa_rows import write_qa_file

    data = write_qa_file(tmp_path, clips=1)
    argv = ["export", "--data", str(data), "--inputs", "oao", "--format", "hf", "--out", str(tmp_path / "hf")]
    result = _run(f"from mevqa.cli import main\nraise SystemExit(main({argv!r}))")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("mevqa export: error: --format hf needs the datasets package: "
                                                      "pip install 'mevqa[datasets]'")
