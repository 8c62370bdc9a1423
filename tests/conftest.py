"""Shared test set-up: offline hub, the public challenge files, and the tiny model."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# One BLAS/OpenMP thread per process: the suite runs tiny models, often two processes at once (accelerate's
# 2-process tests) on a 2-core machine, where extra threads only fight over the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The public challenge files, kept in the repository (data/README.md says where each came from).
PUBLIC_DATA = REPO_ROOT / "data"
MEGC2025 = PUBLIC_DATA / "megc2025"
STRS_FIXTURE = PUBLIC_DATA / "strs"
OFFICIAL_TRAIN = MEGC2025 / "train" / "me_vqa_samm_casme2_smic.jsonl"
OFFICIAL_TEST = [MEGC2025 / "test" / "me_vqa_samm_test_to_answer.jsonl",
                 MEGC2025 / "test" / "me_vqa_casme3_test_to_answer.jsonl"]


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def public_data() -> Path:
    """The repository's data/ folder of public challenge files."""
    if not MEGC2025.is_dir():
        pytest.fail(f"the public challenge files are expected at {MEGC2025} (data/README.md)")
    return PUBLIC_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2.5-VL written once per test session by ``mevqa.models.tiny.write_tiny_model``."""
    from mevqa.models.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", seed=0)


# The families a tiny model is built for; ``tiny_family_dir`` gives one folder per family (built once per session).
TINY_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


@pytest.fixture(scope="session")
def tiny_family_dirs(tmp_path_factory, tiny_model_dir) -> dict:
    """Family -> folder of its tiny model, each written once per session on first use (Qwen2.5-VL is
    ``tiny_model_dir``)."""
    return {"qwen2_5_vl": tiny_model_dir, "_root": tmp_path_factory.mktemp("tiny-families")}


@pytest.fixture(scope="session", params=TINY_FAMILIES)
def tiny_family_dir(request, tiny_family_dirs) -> Path:
    """The tiny model of each family in turn: a test using it runs once per family."""
    return tiny_family(tiny_family_dirs, request.param)


def tiny_family(dirs: dict, family: str) -> Path:
    """The tiny model of ``family`` from the session's ``tiny_family_dirs``, written on first use."""
    from mevqa.models.tiny import write_tiny_model

    if family not in dirs:
        dirs[family] = write_tiny_model(dirs["_root"] / family, seed=0, family=family)
    return dirs[family]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """``(model, processor)`` of the tiny model on the CPU, loaded once per test module (a module that changes the
    weights gets its own copy)."""
    from mevqa.models.loading import load_model_and_processor

    return load_model_and_processor(tiny_model_dir, device="cpu")


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.fixture()
def read_only(tmp_path):
    """A folder no file can be written in: permissions, and for root (whom permissions do not stop) the immutable
    attribute where the file system has it."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if _writable(folder) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        if _writable(folder):
            pytest.skip("no way to make a read-only folder here")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)
