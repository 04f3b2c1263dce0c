"""Validation error and coverage against the published-runs dev set, plus the wall time of the
validator and of one `sizeup train` call (subprocess, cold start included).

Run: .venv/bin/python benchmarks/validation.py [FILE]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path


def _fmt(x) -> str:
    return "-" if x is None else f"{x:6.1f}"


def main(argv: list[str]) -> int:
    from sizeup.validate.runner import run_validation

    t0 = time.perf_counter()
    result = run_validation(argv[0] if argv else None)
    validate_s = time.perf_counter() - t0
    s = result.summary
    print(f"validator: {len(result.rows)} measurements in {validate_s:.2f} s")
    print(f"{'group':58s} {'n':>5s} {'total':>6s} {'cover':>6s} {'med|e|%':>8s} {'p90|e|%':>8s} {'med e%':>7s}")

    def line(label: str, st: dict) -> None:
        cov = st.get("coverage")
        print(f"{label[:58]:58s} {st['n']:5d} {st.get('total', 0):6d} {('-' if cov is None else f'{100 * cov:5.0f}%'):>6s} "
              f"{_fmt(st['median_abs_error_pct']):>8s} {_fmt(st['p90_abs_error_pct']):>8s} {_fmt(st['median_signed_error_pct']):>7s}")

    line("overall", s["overall"])
    line("throughput + MFU/HFU/TFLOP", s["throughput_and_mfu"])
    line("full-configuration training points (A/B)", s["full_training_points"])
    print("-- by source")
    for name, st in s["by_source"].items():
        line(name, st)
    print("-- by quantity")
    for name, st in s["by_quantity"].items():
        line(name, st)
    print(f"points predicted: {s['points']['predicted']}/{s['points']['total']}")

    exe = shutil.which("sizeup") or str(Path(sys.executable).with_name("sizeup"))
    cmd = [exe, "train", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "10B"]
    if not Path(exe).exists():
        cmd = [sys.executable, "-c", "from sizeup.cli import entrypoint; entrypoint()", *cmd[1:]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    train_s = time.perf_counter() - t0
    status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:120]}"
    print(f"one `sizeup train` call (subprocess): {train_s:.2f} s ({status})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
