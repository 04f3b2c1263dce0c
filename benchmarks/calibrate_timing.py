"""Refit the calibration on the development set and print accuracy and how long it takes (developer tool).

    .venv/bin/python benchmarks/calibrate_timing.py [--dev PATH] [--write]

The same fit as `sizeup calibrate --refit` (sizeup.calib.fit): the few fitted timing knobs, sources weighted
equally (not rows), inside physical bounds, by a numpy coordinate search; then leave-one-source-out (each family
refitted without it and predicted), intervals from the LOSO residuals and their coverage. Frameworks differ by
the kernel profile they execute (validate/data/frameworks.yaml), never by a per-source factor: this script has
no per-id or per-source logic. Prints seconds for the cached build and for the refit + LOSO (the speed goal:
well under 60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    from sizeup.calib import fit as calfit

    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", default=None, help="published-runs YAML (default: the packaged dev set)")
    ap.add_argument("--write", action="store_true", help="write catalog/data/calibration.yaml")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    dev = calfit.build(args.dev)
    t1 = time.perf_counter()
    payload = calfit.refit(args.dev, dev=dev)
    t2 = time.perf_counter()
    print(f"build (validator run + cached step inputs): {t1 - t0:.2f} s; refit + LOSO + intervals: {t2 - t1:.2f} s "
          f"({len(dev.points)} points, {len(dev.t_rows)} throughput rows)")
    print(f"{'knob':40s} {'physical':>10s} {'fitted':>10s}  LOSO folds")
    for name, k in payload["knobs"].items():
        rng = k.get("loso_range") or ["-", "-"]
        print(f"{name:40s} {k['physical']:10.4g} {k['value']:10.4g}  {rng[0]} - {rng[1]}")
    for line in calfit.summary_lines(payload):
        print(line)
    print("leave-one-source-out, training throughput/MFU per family:")
    for fam, groups in payload["accuracy"]["loso"]["families"].items():
        st = groups.get("training throughput/MFU")
        if st and st["n"]:
            print(f"  {fam:28s} n={st['n']:4d} median {st['median_abs_error_pct']:6.1f}% p90 {st['p90_abs_error_pct']:6.1f}%")
    cov = payload["intervals"]["coverage_loso"]
    print(f"80% interval coverage under LOSO: {cov['all']['covered']:.3f} of {cov['all']['n']} rows; nested "
          f"(intervals from the other families only): {payload['intervals']['coverage_nested_loso']['covered']}")
    if args.write:
        print("written:", calfit.write(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
