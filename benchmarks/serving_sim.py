"""Speed of the serving simulator (core/serving_sim.py): 10,000 requests on one core. Prints the figure.

Run: PYTHONPATH=src python benchmarks/serving_sim.py [--validation] [--residuals]
(--residuals: per-point signed errors of the validator's serving rows by metric and concurrency, nothing else)
"""

from __future__ import annotations

import time

from sizeup.catalog import load_catalog
from sizeup.catalog.engines import engine_profile
from sizeup.core.inference import LengthDist, ServeSetup
from sizeup.core.serving_sim import Scheduler, StepModel, make_workload, simulate
from sizeup.catalog.knobs import load_serving_knobs


def main() -> None:
    cat = load_catalog()
    cases = [("llama-3-8b", "h100-sxm", 1, "vllm", dict(rate_rps=20.0)),
             ("llama-3-8b", "h100-sxm", 1, "vllm", dict(concurrency=64)),
             ("llama-3-70b", "h100-sxm", 4, "sglang", dict(rate_rps=8.0)),
             ("llama-2-7b", "a100-80gb-sxm", 1, "trtllm", dict(concurrency=256))]
    for model_id, gpu_id, tp, eng, load in cases:
        m, g = cat.model(model_id), cat.gpu(gpu_id)
        e = engine_profile(eng).for_gpu(g)
        knobs = e.knobs(load_serving_knobs(cat), m.num_layers)
        setup = ServeSetup(tp=tp, prompt_len=512, output_len=256)
        sched = Scheduler.from_engine(e, knobs)
        wl = make_workload(10_000, LengthDist(512, 2048), LengthDist(256, 768), seed=1, **load)
        t0 = time.perf_counter()
        sm = StepModel(m, g, setup, knobs, sched.token_budget + sched.max_num_seqs)
        res = simulate(m, g, setup, knobs, sched, wl, sm)
        dt = time.perf_counter() - t0
        s = res.summary()
        print(f"{model_id:12s} {gpu_id:14s} tp{tp} {eng:7s} {str(load):24s} 10,000 requests in {dt:6.3f} s  "
              f"({res.steps:,} steps; TTFT p50 {s['ttft_p50_s']*1e3:7.1f} ms p99 {s['ttft_p99_s']*1e3:8.1f} ms; "
              f"TPOT p50 {s['tpot_p50_s']*1e3:5.1f} ms; {res.output_tokens_per_s:,.0f} out tok/s; util {res.gpu_utilization:.0%})")


def validation_report() -> None:
    """Serving rows of the validator (points that state engine, lengths and load): |error| by class."""
    import json

    from sizeup.validate.inference_points import serving_error_report
    from sizeup.validate.runner import run_validation

    rep = serving_error_report(run_validation(categories=["D"]).rows)
    print(json.dumps(rep, indent=1))


def residuals() -> None:
    """Per-row signed error of the simulated serving points, by class (TTFT / ITL-TPOT / throughput) and
    concurrency, worst first."""
    from sizeup.validate.inference_points import SERVING_CLASSES, _row_conc
    from sizeup.validate.runner import run_validation

    cls_of = {q: c for c, qs in SERVING_CLASSES.items() for q in qs}
    rows = [r for r in run_validation(categories=["D"]).rows if r.ok and "serving_sim" in (r.definition or "")]
    for r in sorted(rows, key=lambda r: (cls_of.get(r.quantity, "?"), _row_conc(r), -abs(r.error_pct))):
        print(f"{cls_of.get(r.quantity, '?'):17s} c={_row_conc(r):4d} {r.error_pct:+7.1f}%  measured {r.measured:10.4g} "
              f"predicted {r.predicted:10.4g} {r.unit:9s} {r.quantity:17s} {r.id}")


if __name__ == "__main__":
    import sys

    if "--residuals" not in sys.argv:
        main()
    if "--validation" in sys.argv:
        validation_report()
    if "--residuals" in sys.argv:
        residuals()
