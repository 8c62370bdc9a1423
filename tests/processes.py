"""Killing a real ``mevqa`` process part-way, for the tests that check what a ``kill -9`` leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable


def kill_when(argv: list[str], ready: Callable[[], bool], *, timeout: float = 1500) -> None:
    """Run ``python -m mevqa *argv`` and SIGKILL it as soon as ``ready()`` holds; fail if it ends before that."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "mevqa", *map(str, argv)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None and not ready():
            time.sleep(0.005)
        assert process.poll() is None, f"mevqa {argv[0]} ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
