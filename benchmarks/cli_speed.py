"""Time single CLI estimates end to end (process start included), as a user feels them.

Prints the median wall time of a few commands over several runs. Goal: well under 0.5 s each.
Usage: python benchmarks/cli_speed.py [runs]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [
    ["params", "llama-2-7b"],
    ["memory", "llama-2-7b", "--gpu", "a100-80gb"],
    ["train", "llama-3-8b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "10B"],
    ["infer", "llama-2-7b", "--gpu", "a100-80gb"],
]


def sizeup_exe() -> list[str]:
    local = Path(sys.executable).parent / "sizeup"
    if local.exists():
        return [str(local)]
    found = shutil.which("sizeup")
    return [found] if found else [sys.executable, "-m", "sizeup"]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    exe = sizeup_exe()
    print(f"{'command':60s} {'median_s':>9s} {'min_s':>7s}")
    for args in COMMANDS:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            proc = subprocess.run(exe + args, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
        status = "" if proc.returncode == 0 else f"  (exit {proc.returncode}: {proc.stderr.strip()[:60]})"
        print(f"{'sizeup ' + ' '.join(args):60s} {statistics.median(times):9.3f} {min(times):7.3f}{status}")


if __name__ == "__main__":
    main()
