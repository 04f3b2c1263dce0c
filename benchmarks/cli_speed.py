"""Time single CLI estimates end to end (process start included), as a user feels them.

Prints the median (and min) wall time and CPU time (user+sys of the child; steadier than wall on a shared,
loaded machine) of each command over several runs, and whether Python may write bytecode: with
PYTHONDONTWRITEBYTECODE=1 and an editable install that never got __pycache__, every sizeup module is compiled
from source on each call (~+60 ms). Goal (project standard): a single estimate well under 0.5 s; target <= 0.3 s.
Usage: python benchmarks/cli_speed.py [runs]   (default 10)
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [
    ["--help"],
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
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    exe = sizeup_exe()
    bytecode = "off (PYTHONDONTWRITEBYTECODE set)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    print(f"{exe[0]}; bytecode writing {bytecode}; {runs} runs each")
    print(f"{'command':60s} {'wall_med':>8s} {'wall_min':>8s} {'cpu_med':>8s} {'cpu_min':>8s}")
    for args in COMMANDS:
        walls, cpus = [], []
        for _ in range(runs):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(exe + args, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        status = "" if proc.returncode == 0 else f"  (exit {proc.returncode}: {proc.stderr.strip()[:60]})"
        print(f"{'sizeup ' + ' '.join(args):60s} {statistics.median(walls):8.3f} {min(walls):8.3f} "
              f"{statistics.median(cpus):8.3f} {min(cpus):8.3f}{status}")


if __name__ == "__main__":
    main()
