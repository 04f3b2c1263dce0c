"""A user's own calibration: fit this cluster's efficiency factors on a measured run (`sizeup calibrate`).

A measured run is a job (in sizeup's flag names: model, gpu, gpus, seq, micro_batch, global_batch, tp, ...,
kernel) and what was measured: a framework log (sizeup.calib.logs) or a YAML of measured figures. Two factors
are fitted, each with a physical meaning and bounds:

- compute scale s: this cluster's sustained GEMM and attention efficiency relative to the packaged
  calibration (clocks, power caps, library versions): matmul_training_fraction and attention_end_to_end_scale
  are both multiplied by s (each capped at 1.0, the benchmark ceiling); s is found on a dense grid so that the
  predicted step time matches the median measured step time;
- allocator fragmentation (overheads fragmentation_fraction, in [0, 1]) from a measured peak *reserved* memory:
  reserved = allocated x (1 + f) + fixed buffers (core/memory.py), solved for f.

The profile also stores narrower intervals: the spread left once a family's own level is known (LOSO residuals
over their family median, calibration.yaml intervals.after_user_calibration), widened to the run's own
step-to-step spread.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from sizeup.calib import TIMING_KNOBS, Calibration, job_signature, load
from sizeup.calib.logs import ParsedLog, Record
from sizeup.errors import SizeupError

MEASURED_KEYS = ("step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "samples_per_s", "peak_memory_reserved_gib",
                 "peak_memory_allocated_gib")
S_GRID = np.exp(np.linspace(math.log(0.05), math.log(4.0), 801))


@dataclass
class Job:
    """A measured run's job: sizeup.job's Job (the same one `sizeup train` builds from these flags)."""

    values: dict
    job: Any

    @property
    def arch(self):
        return self.job.model

    @property
    def setup(self):
        return self.job.setup

    @property
    def gpu(self):
        return self.job.gpu

    @property
    def kernel(self) -> str:
        return self.job.execution.timing_kernel

    def describe(self) -> str:
        st = self.setup
        return (f"{self.arch.id} on {st.gpus}x {self.gpu.id}: tp{st.tp} pp{st.pp} cp{st.cp} dp{st.dp} mb{st.micro_batch} "
                f"ga{st.grad_accum} s{st.seq_len} {st.precision.value} {st.sharding.value} recompute={st.recompute.value} "
                f"{self.job.execution.framework} ({self.kernel} kernels)")


def build_job(values: Mapping[str, Any]) -> Job:
    """The job from job-flag values (sizeup.job.build_job: what `sizeup train` reads; unknown keys are errors)."""
    from sizeup.job import build_job as job_build

    vals = {k: v for k, v in values.items() if v is not None}
    if not vals.get("model"):
        raise SizeupError("the measured run needs its job: give the model (--model or job.model in the YAML)")
    if not vals.get("gpu"):
        raise SizeupError("the measured run needs its job: give the GPU (--gpu or job.gpu in the YAML)")
    job = job_build(vals)
    if job.gpu is None or job.gpu.vendor == "generic":
        raise SizeupError("the measured run needs a catalog GPU (e.g. h100-sxm), not a bare memory size")
    return Job(vals, job)


# --------------------------------------------------------------------------- measured figures


def step_time_of(rec: Record, job: Job) -> float | None:
    """Seconds per optimizer step from whatever the record carries."""
    st = job.setup
    if rec.step_time_s:
        return rec.step_time_s
    if rec.tokens_per_s_per_gpu:
        return st.tokens_per_step / (rec.tokens_per_s_per_gpu * st.gpus)
    if rec.tokens_per_s:
        return st.tokens_per_step / rec.tokens_per_s
    if rec.samples_per_s:
        return st.global_batch / rec.samples_per_s
    return None


def records_from_yaml(measured: Mapping[str, Any]) -> list[Record]:
    """Records from a YAML `measured:` mapping (one figure each) or `steps:` list of such mappings."""
    items = measured.get("steps") if isinstance(measured.get("steps"), list) else [measured]
    out = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, Mapping):
            raise SizeupError("measured.steps must be a list of mappings")
        unknown = [k for k in item if k not in MEASURED_KEYS + ("step",)]
        if unknown:
            from sizeup.errors import did_you_mean

            raise SizeupError(f"measured: unknown key {unknown[0]!r}.{did_you_mean(unknown[0], MEASURED_KEYS)} "
                              f"Allowed: {', '.join(MEASURED_KEYS)}")
        vals = {}
        for k in MEASURED_KEYS:
            if item.get(k) is None:
                continue
            try:
                v = float(item[k])
            except (TypeError, ValueError):
                raise SizeupError(f"measured.{k} must be a number, got {item[k]!r}") from None
            if not math.isfinite(v) or v <= 0:
                raise SizeupError(f"measured.{k} must be a finite number > 0, got {item[k]!r}")
            vals[k] = v
        if not vals:
            raise SizeupError(f"measured: give at least one of {', '.join(MEASURED_KEYS)}")
        rec = Record(int(item.get("step", i)), step_time_s=vals.get("step_time_s"),
                     tokens_per_s_per_gpu=vals.get("tokens_per_s_per_gpu"), tokens_per_s=vals.get("tokens_per_s"),
                     samples_per_s=vals.get("samples_per_s"))
        if "peak_memory_reserved_gib" in vals:
            rec.peak_memory_bytes, rec.memory_kind = vals["peak_memory_reserved_gib"] * 2.0**30, "reserved"
        elif "peak_memory_allocated_gib" in vals:
            rec.peak_memory_bytes, rec.memory_kind = vals["peak_memory_allocated_gib"] * 2.0**30, "allocated"
        out.append(rec)
    return out


def split(records: list[Record], holdout: float, warmup: int | None = None) -> tuple[list[Record], list[Record]]:
    """(fit part, held-out part) after dropping warm-up records (default: the first 10 %, at least 1 when there
    are 5 or more records; torchtitan/Megatron's first steps include compilation and allocator growth)."""
    if not 0 <= holdout < 1:
        raise SizeupError(f"--holdout must be in [0, 1), got {holdout}")
    n = len(records)
    w = warmup if warmup is not None else (max(1, n // 10) if n >= 5 else 0)
    if w >= n:
        raise SizeupError(f"--warmup {w} leaves no step of the {n} in the log")
    rest = records[w:]
    k = int(round(len(rest) * holdout))
    if holdout > 0 and len(rest) >= 2:
        k = min(max(k, 1), len(rest) - 1)
    else:
        k = 0
    return rest[:len(rest) - k], rest[len(rest) - k:]


@dataclass
class Measured:
    step_time_s: float | None
    step_spread: tuple[float, float] | None
    """P10 / median and P90 / median of the step times (the run's own variation)."""
    peak_memory_bytes: float | None
    memory_kind: str
    n: int


def summarize(records: list[Record], job: Job) -> Measured:
    times = [t for t in (step_time_of(r, job) for r in records) if t]
    mem = [r.peak_memory_bytes for r in records if r.peak_memory_bytes]
    kinds = {r.memory_kind for r in records if r.peak_memory_bytes}
    med = statistics.median(times) if times else None
    spread = None
    if times and len(times) >= 3:
        spread = (float(np.quantile(times, 0.1)) / med, float(np.quantile(times, 0.9)) / med)
    return Measured(med, spread, max(mem) if mem else None, kinds.pop() if len(kinds) == 1 else "", len(records))


# --------------------------------------------------------------------------- predictions under a profile


def knobs_for(job: Job, cal: Calibration | None):
    """The job's timing knobs under the profile `cal` (None = physics only), made as sizeup.pipeline.knobs_for makes
    them under the active profile."""
    from sizeup import calib
    from sizeup.pipeline import knobs_for as pipeline_knobs

    with calib.using_profile(cal):
        return pipeline_knobs(job.job)


def overheads_for(job: Job, cal: Calibration | None):
    from sizeup import calib
    from sizeup.pipeline import overheads_for as pipeline_overheads

    with calib.using_profile(cal):
        return pipeline_overheads(job.job)


def predict(job: Job, cal: Calibration | None) -> dict:
    from sizeup.pipeline import memory_for, step_for

    step = step_for(job.job, knobs_for(job, cal))
    mem = memory_for(job.job, overheads_for(job, cal))
    return {"step_time_s": step.step_time_s, "peak_reserved_bytes": mem.peak_reserved_bytes,
            "peak_allocated_bytes": mem.peak_allocated_bytes, "memory": mem}


def scaled_knobs(vec, scale) -> list:
    """The rate knobs of a compute scale s (the cluster runs s x the packaged calibration's speed): GEMM and
    attention fractions x s, each capped at its physical 1.0, and the eager elementwise passes / s within their
    bounds (fit.KNOB_BOUNDS: at least the counted kernel list), so that a run faster than the packaged estimate is
    reachable when the GEMMs are already at their benchmark efficiency. Knobs in TIMING_KNOBS order."""
    from sizeup.calib.fit import KNOB_BOUNDS

    s = np.asarray(scale, dtype=float)
    lo, hi = KNOB_BOUNDS["elementwise_passes_hidden_fwd.eager"]
    return [np.minimum(vec[0] * s, 1.0), np.minimum(vec[1] * s, 1.0), vec[2] + 0.0 * s, vec[3] + 0.0 * s,
            np.clip(vec[4] / s, lo, hi)]


def _step_times_for_scales(job: Job, base_knobs, scales: np.ndarray) -> np.ndarray:
    from sizeup.calib.fit import knob_vector, knobs_with
    from sizeup.core.timing import gpu_numbers, kernel_args, step_kernel

    vec = knob_vector(base_knobs)
    K = np.tile(vec, (len(scales), 1))
    for j, v in enumerate(scaled_knobs(vec, scales)):
        K[:, j] = v
    knobs = knobs_with(base_knobs, K)
    mi, _g, plan = kernel_args(job.arch, job.setup, job.gpu, base_knobs, job.kernel)
    g = gpu_numbers(job.gpu, job.setup.precision, knobs, job.kernel)
    return np.broadcast_to(step_kernel(mi, g, knobs, **plan)["step_time_s"], (len(scales),))


def fit_profile(job: Job, measured: Measured, name: str, base: Calibration | None, source: Mapping[str, Any]) -> dict:
    """The profile mapping (written by sizeup.calib.write_profile) fitted on `measured`."""
    from sizeup.calib.fit import knob_vector

    if measured.step_time_s is None and measured.peak_memory_bytes is None:
        raise SizeupError("nothing to fit: the measured run has no step time, throughput or peak memory")
    base_knobs = knobs_for(job, base)
    vec = knob_vector(base_knobs)
    knobs = dict(zip(TIMING_KNOBS, (float(v) for v in vec)))
    fitted: dict[str, Any] = {}
    scale = None
    if measured.step_time_s:
        times = _step_times_for_scales(job, base_knobs, S_GRID)
        err = np.abs(np.log(times / measured.step_time_s))
        i = int(np.argmin(err))
        scale = float(S_GRID[i])
        for knob, value in zip(TIMING_KNOBS, scaled_knobs(vec, scale)):
            knobs[knob] = float(value)
        fitted["compute_scale"] = round(scale, 4)
        fitted["residual_step_time_pct"] = round(100 * (times[i] / measured.step_time_s - 1), 2)
    overheads: dict[str, float] = {}
    if measured.peak_memory_bytes and measured.memory_kind == "reserved":
        pred = predict(job, base)
        ov = overheads_for(job, base)
        f0 = float(ov.fragmentation_fraction)
        alloc = float(pred["peak_allocated_bytes"])
        fixed = float(pred["peak_reserved_bytes"]) - alloc * (1.0 + f0)
        f = (measured.peak_memory_bytes - fixed) / alloc - 1.0 if alloc > 0 else f0
        overheads["fragmentation_fraction"] = float(min(max(f, 0.0), 1.0))
        fitted["fragmentation_fraction"] = round(overheads["fragmentation_fraction"], 4)
    intervals = _narrow_intervals(base, measured, calibrated_time=scale is not None,
                                  calibrated_memory="fragmentation_fraction" in overheads,
                                  residual_pct=fitted.get("residual_step_time_pct", 0.0))
    return {
        "schema_version": 1, "name": name, "kind": "user",
        "fitted": {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "on": [str(source.get("path", "?"))], "format": source.get("format"),
                   "records_used": measured.n, "job": {k: v for k, v in job.values.items() if v is not None},
                   "job_resolved": job.describe(),
                   "job_signature": job_signature(job.setup, job.arch.id, job.gpu.id, job.kernel),
                   "measured": {"step_time_s": measured.step_time_s, "peak_memory_bytes": measured.peak_memory_bytes,
                                "memory_kind": measured.memory_kind or None},
                   "base": base.describe() if base else "physics only (calibration off)",
                   "factors": fitted,
                   "method": "compute scale s on matmul_training_fraction and attention_end_to_end_scale (each capped "
                             "at 1.0) and 1/s on the eager elementwise passes (within their bounds) by a dense grid to "
                             "the median measured step time; fragmentation_fraction "
                             "solved from peak reserved memory (sizeup.calib.user)"},
        # the serving knobs a training log cannot inform stay the base profile's (packaged: fitted on serving rows)
        "knobs": {**{k: {"value": float(f"{v:.5g}")} for k, v in knobs.items()},
                  **{k: {"value": float(f"{v:.5g}")} for k, v in overheads.items()},
                  **{k: {"value": float(f"{v:.5g}")} for k, v in (base.serving if base else {}).items()}},
        "intervals": intervals,
    }


SAME_JOB_FLOOR = 0.02
"""Smallest half-width of a same-job interval: run-to-run variation a single log does not show (node placement,
clocks, data), assumed at 2 %."""


def _narrow_intervals(base: Calibration | None, measured: Measured, calibrated_time: bool,
                      calibrated_memory: bool, residual_pct: float = 0.0) -> dict:
    packaged = load("default")
    regimes = dict((packaged.intervals.get("regimes") or {}) if packaged else {})
    after = (packaged.intervals.get("after_user_calibration") or {}) if packaged else {}
    out = {"regimes": regimes, "method": "classes fitted on this run: the LOSO spread left once a source family's own "
                                         "level is known (calibration.yaml after_user_calibration), widened to the "
                                         "run's own step-to-step spread; other classes: the packaged intervals"}
    for klass, done in (("throughput", calibrated_time), ("memory", calibrated_memory)):
        if not done or klass not in after:
            continue
        e = dict(after[klass])
        lo, hi = float(e["p10"]), float(e["p90"])
        if klass == "throughput" and measured.step_spread:
            # a rate factor is the inverse of a step-time ratio
            lo, hi = min(lo, 1.0 / measured.step_spread[1]), max(hi, 1.0 / measured.step_spread[0])
        for key in [k for k in regimes if k == klass or k.startswith(klass + "|")]:
            del regimes[key]
        regimes[klass] = {"p10": round(lo, 4), "p50": 1.0, "p90": round(hi, 4), "n": e.get("n")}
    # the same job again (other batch count / token budget): the run's own spread and the fit's residual
    r = abs(residual_pct) / 100.0
    if calibrated_time:
        s10, s90 = measured.step_spread or (1.0, 1.0)
        regimes["throughput|same-job"] = {"p10": round(min(1.0 / s90, 1.0 / (1.0 + r), 1.0 - SAME_JOB_FLOOR), 4),
                                          "p50": 1.0,
                                          "p90": round(max(1.0 / s10, 1.0 + r, 1.0 + SAME_JOB_FLOOR), 4)}
    if calibrated_memory:
        regimes["memory|same-job"] = {"p10": 1.0 - SAME_JOB_FLOOR, "p50": 1.0, "p90": 1.0 + SAME_JOB_FLOOR}
    return out


def profile_calibration(profile: Mapping[str, Any]) -> Calibration:
    """A Calibration from a profile mapping not yet written to disk."""
    from sizeup.calib import OVERHEAD_KNOBS, SERVING_KNOBS

    knobs = {k: float(v["value"]) for k, v in profile["knobs"].items() if k in TIMING_KNOBS}
    ov = {k: float(v["value"]) for k, v in profile["knobs"].items() if k in OVERHEAD_KNOBS}
    sv = {k: float(v["value"]) for k, v in profile["knobs"].items() if k in SERVING_KNOBS}
    return Calibration(name=str(profile["name"]), path=None, knobs=knobs, overheads=ov, serving=sv,
                       intervals=profile.get("intervals") or {}, fitted=profile.get("fitted") or {}, kind="user")


def holdout_check(job: Job, held: Measured, base: Calibration | None, fitted: Calibration) -> dict:
    """Error of the packaged and the fitted profile on the held-out part of the run."""
    out: dict[str, Any] = {"records": held.n}
    before, after = predict(job, base), predict(job, fitted)
    if held.step_time_s:
        out["step_time_s"] = {"measured": held.step_time_s, "before": before["step_time_s"], "after": after["step_time_s"],
                              "error_before_pct": 100 * (before["step_time_s"] / held.step_time_s - 1),
                              "error_after_pct": 100 * (after["step_time_s"] / held.step_time_s - 1)}
    if held.peak_memory_bytes:
        key = "peak_reserved_bytes" if held.memory_kind == "reserved" else "peak_allocated_bytes"
        out["peak_memory_bytes"] = {"kind": held.memory_kind, "measured": held.peak_memory_bytes,
                                    "before": before[key], "after": after[key],
                                    "error_before_pct": 100 * (before[key] / held.peak_memory_bytes - 1),
                                    "error_after_pct": 100 * (after[key] / held.peak_memory_bytes - 1)}
    return out


def calibrate_run(job: Job, records: list[Record], name: str, source: Mapping[str, Any], holdout: float = 0.5,
                  warmup: int | None = None) -> tuple[dict, dict | None]:
    """(profile fitted on the fit part, held-out check or None)."""
    fit_part, held_part = split(records, holdout, warmup)
    base = load()
    profile = fit_profile(job, summarize(fit_part, job), name, base, source)
    check = None
    if held_part:
        check = holdout_check(job, summarize(held_part, job), base, profile_calibration(profile))
    return profile, check


def parsed_source(parsed: ParsedLog, path: str) -> dict:
    return {"path": path, "format": parsed.format}
