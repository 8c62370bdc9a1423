"""Logging set-up: messages go to stderr through :mod:`logging`, from the main process only."""

from __future__ import annotations

import logging
import os


def is_main_process() -> bool:
    """True on rank 0 of a distributed launch (torchrun/accelerate set ``RANK``), and in a plain process."""
    return int(os.environ.get("RANK", "0")) == 0


def configure_logging(verbose: bool = False) -> None:
    """Log INFO (DEBUG with ``verbose``) to stderr on the main process; other ranks log errors only."""
    level = logging.DEBUG if verbose else logging.INFO
    if not is_main_process():
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        force=True)
    for noisy in ("httpx", "urllib3", "PIL", "matplotlib", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # bitsandbytes warns at import, on CPUs with AVX512-BF16, that an optional CPU kernel from the Hugging Face hub is
    # not installed; mevqa does not use it.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
