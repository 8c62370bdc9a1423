"""The provenance stamp every ``scores.json`` carries: what made the scores, so a number can be traced and redone.

``stamp(report, config=..., seed=..., pred_files=..., gold_files=...)`` returns the report with a ``stamp`` object:

- ``config``: the resolved settings that produced the predictions (a training config, ``mevqa predict``'s
  ``run.json``, ...), or ``null`` where there is none (``mevqa eval`` on files made elsewhere);
- ``seed``: the seed that matters for the file (bootstrap seed, generation seed, ...);
- ``mevqa_version`` and ``git_commit``: the commit of the checkout mevqa runs from, when mevqa is imported from a
  git checkout (absent for an installed wheel);
- ``packages``: versions of the installed packages that change results (scoring, model, inputs), and Python's;
- ``pred_files`` / ``gold_files``: ``{path: sha256}`` of the files scored;
- ``created``: UTC time of scoring.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable

import mevqa
from mevqa.jsonl import file_sha256

# Scoring (sacrebleu, rouge-score, scikit-learn, numpy), the model and training (torch, transformers, peft,
# accelerate, tokenizers), and inputs (pillow, opencv, av decode the frames).
RESULT_PACKAGES = ("sacrebleu", "rouge-score", "scikit-learn", "numpy", "transformers", "torch", "torchvision",
                   "peft", "accelerate", "tokenizers", "pillow", "opencv-python-headless",
                   "opencv-contrib-python-headless", "av", "decord")


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`RESULT_PACKAGES` (packages that are not installed are left out)."""
    versions = {"python": platform.python_version()}
    for name in RESULT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the git checkout the ``mevqa`` package is imported from, else None.

    Only a checkout whose top level holds the package folder counts, so a wheel installed into a virtual environment
    that happens to sit inside some repository does not report that repository's commit.
    """
    package = Path(mevqa.__file__).resolve().parent
    try:
        done = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=package, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != package.parent:
        return None
    return lines[1]


def stamp(report: dict, *, config: dict | None = None, seed: int | None = None,
          pred_files: Iterable[str | os.PathLike] = (), gold_files: Iterable[str | os.PathLike] = ()) -> dict:
    """A copy of ``report`` with its provenance under ``"stamp"`` (see the module docstring)."""
    info = {"config": config, "seed": seed, "mevqa_version": mevqa.__version__}
    commit = git_commit()
    if commit is not None:
        info["git_commit"] = commit
    info["packages"] = package_versions()
    info["pred_files"] = {str(path): file_sha256(path) for path in pred_files}
    info["gold_files"] = {str(path): file_sha256(path) for path in gold_files}
    info["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**report, "stamp": info}
