"""The `sizeup` command's entry point: process settings only the command (not a library user) may choose, then
the CLI."""

from __future__ import annotations

import os


def run() -> None:
    # sizeup's numpy work is element-wise on small arrays: OpenBLAS's thread pool (one thread per core, started
    # when numpy is imported) costs ~0.1 s of CPU and ~20 ms of wall time per call and speeds nothing up here
    # (benchmarks/cli_speed.py). A value the user set wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from sizeup.cli import entrypoint

    entrypoint()
