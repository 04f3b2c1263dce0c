"""Fit the calibration knobs on the development set; leave-one-source-out (LOSO) cross-validation; intervals.

Objective (families weighted equally, not rows: ~90 % of the dev set's throughput rows are llm-foundry):

    J(k) = mean over source families F of  median over F's throughput rows i of |ln(predicted_i(k) / measured_i)|

minimised over the knobs of sizeup.calib.TIMING_KNOBS inside physical bounds by a bounded coordinate search
on grids (numpy only; 9 points per knob, 5 rounds with the span halved each round), starting from the
physical values, so a knob that no training row informs keeps its physical value.

Speed: a refit only changes a few scalars, so each point's model inputs and plan are built once (the
validator's own mapping, calibration off) and `core.timing.step_kernel` is evaluated with every candidate
knob vector as one numpy array. A throughput prediction scales as 1 / step time (a time as the step time),
so predicted_i(k) = predicted_i(physical) x step(physical) / step(k). All LOSO folds search together.

Memory predictions use no fitted knob: their LOSO errors are their in-sample errors. Inference predictions use the
in-model GEMM fraction (serving GEMMs run at matmul_training_fraction of the MAMF curve, as training's do), fitted
on training rows only, and the serving knobs (calib.SERVING_KNOBS), fitted on the inference rows with the timing
knobs at their fitted values (calib/serving.py). Inference rows are re-predicted with the fitted knobs (in-sample)
and with the folds that left their family out (LOSO; the full timing fit when the family has no training rows) by
`inference_errors`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from sizeup.calib import DEFAULT, SCALE_BUCKETS, TIMING_KNOBS, regime_keys, timing_profile, using
from sizeup.calib import serving as serving_fit
from sizeup.calib.objective import group_masks, log_error

KNOB_BOUNDS = {
    # (low, high): efficiencies at most their physical (benchmark) value; counted passes at least the kernel list
    "matmul_training_fraction": (0.4, 1.0),
    "attention_end_to_end_scale": (0.4, 1.0),
    "fp8_matmul_relative_efficiency": (0.5, 0.883),  # at most the H100 MAMF fp8/bf16 ratio (timing.yaml)
    "host_overhead_s_per_layer_microbatch": (0.0, 5.0e-4),
    "elementwise_passes_hidden_fwd.eager": (10.0, 40.0),
}
GRID_POINTS = 9
ROUNDS = 5
MIN_REGIME_ROWS = 20
MIN_REGIME_FAMILIES = 2

RATE_QUANTITIES = frozenset({
    "throughput_tokens_per_s", "throughput_tokens_per_s_per_gpu", "throughput_samples_per_s", "model_tflops_per_gpu",
    "achieved_tflops_per_gpu", "mfu", "hfu", "percent_of_peak", "aggregate_pflops",
})
TIME_QUANTITIES = frozenset({"step_time", "iteration_time", "wall_clock", "wall_clock_ideal", "gpu_hours"})
_PER_TOKENS_RE = re.compile(r"^(gpu_hours|est_(days|hours|minutes|min))_.*tokens")


# --------------------------------------------------------------------------- families


@functools.lru_cache(maxsize=1)
def _family_rules() -> list[tuple[str, re.Pattern]]:
    from sizeup.catalog import read_yaml

    data = read_yaml(Path(__file__).resolve().parent.parent / "validate" / "data" / "families.yaml") or {}
    return [(str(r["family"]), re.compile(str(r["match"]), re.I)) for r in data.get("families", [])]


@functools.lru_cache(maxsize=1)
def held_out_families() -> frozenset[str]:
    """Families whose rows the calibration never fits (families.yaml `fit: false`): they are predicted with the
    knobs fitted on the other families and reported like a LOSO fold, a test set of the model (sizeup's own
    GPU measurements, issue 16: 'not fitted blindly')."""
    from sizeup.catalog import read_yaml

    data = read_yaml(Path(__file__).resolve().parent.parent / "validate" / "data" / "families.yaml") or {}
    return frozenset(str(r["family"]) for r in data.get("families", []) if r.get("fit") is False)


def family_of(point: Any) -> str:
    """The point's `framework:` field if it has one, else the first families.yaml rule matching its sources."""
    fw = getattr(point, "framework", None)
    if fw:
        return str(fw).strip().lower()
    text = " ".join(f"{s.repo or ''} {s.title or ''} {s.url or ''}" for s in getattr(point, "source", []) or [])
    for name, rx in _family_rules():
        if rx.search(text):
            return name
    return str(getattr(point, "family", None) or "unknown")


# --------------------------------------------------------------------------- the cached development set


@dataclass
class DevSet:
    rows: list                      # every validator Row (predicted or skipped), calibration off
    family: list[str]               # per row
    klass: list[str]                # per row: throughput | memory | inference_rate | inference_time | inference_memory | other
    profile: list[str]              # per row: kernel profile ('' when unknown)
    gpus: list[Any]                 # per row: GPU count (None when unknown)
    # step-dependent training rows (indices into rows) and their cached physics
    t_rows: np.ndarray
    t_point: np.ndarray             # index into `points`
    t_sign: np.ndarray              # +1 rate (scales as 1/step), -1 time (scales as step)
    t_pred0: np.ndarray
    t_meas: np.ndarray
    t_lo: np.ndarray                # measured interval (rounded sources: [v - 0.5, v + 1)); lo == hi otherwise
    t_hi: np.ndarray
    points: list                    # (mi, plan, gpu, precision, kernel, step0, the job's physical knobs)
    physical: np.ndarray            # knob vector of the physical values (timing.yaml)
    base_knobs: Any                 # TimingKnobs, calibration off
    files: list[str] = field(default_factory=list)
    t_fit: np.ndarray | None = None
    """per step-dependent row: True when the fit may use it. Rows of encoder and encoder-decoder models are
    predicted with the knobs but never fitted on: the knobs were fitted on decoder-only runs and one encoder row
    would move them for every decoder family; these rows are an out-of-sample test of the encoder physics."""

    @property
    def t_family(self) -> np.ndarray:
        return np.array([self.family[i] for i in self.t_rows])


def _klass(row) -> str:
    from sizeup.validate.runner import MEMORY_QUANTITIES, canonical_quantity, unit_kind

    q = canonical_quantity(row.quantity, row.unit)
    if row.category == "D":
        kind = unit_kind(row.unit)
        if kind == "bytes":
            return "inference_memory"
        if kind == "seconds":
            return "inference_time"
        return "inference_rate"
    if q in RATE_QUANTITIES or q in TIME_QUANTITIES or _PER_TOKENS_RE.match(q):
        return "throughput"
    if q in MEMORY_QUANTITIES:
        return "memory"
    return "other"


def _sign(row) -> int:
    from sizeup.validate.runner import canonical_quantity

    q = canonical_quantity(row.quantity, row.unit)
    return 1 if q in RATE_QUANTITIES else -1


def knob_vector(knobs) -> np.ndarray:
    return np.array([knobs.matmul_training_fraction, knobs.attention_end_to_end_scale,
                     knobs.fp8_matmul_relative_efficiency, knobs.host_overhead_s_per_layer_microbatch,
                     float(knobs.elementwise_passes_hidden_fwd.get("eager", 10.0))], dtype=float)


def knobs_with(base, K: np.ndarray):
    """TimingKnobs whose calibrated fields are the columns of K (shape (n,) or (C, n)) as arrays."""
    K = np.atleast_2d(np.asarray(K, dtype=float))
    passes = dict(base.elementwise_passes_hidden_fwd)
    passes["eager"] = K[:, 4]
    return base.with_(matmul_training_fraction=K[:, 0], attention_end_to_end_scale=K[:, 1],
                      fp8_matmul_relative_efficiency=K[:, 2], host_overhead_s_per_layer_microbatch=K[:, 3],
                      elementwise_passes_hidden_fwd=passes)


def _job_of(ctx, prefer: tuple[str, ...]):
    """The point's job (sizeup.validate.jobs, built by the validator's Context) if one was built."""
    for key in prefer:
        entry = ctx._cache.get(key)
        if entry and entry[0] == "ok":
            return entry[1][0]
    return None


def build(path=None, rows=None) -> DevSet:
    """Run the validator once with calibration off and cache what a refit needs."""
    from sizeup.catalog.knobs import load_timing_knobs
    from sizeup.core.timing import kernel_args
    from sizeup.core.types import ArchKind, Attention
    from sizeup.pipeline import knobs_for
    from sizeup.validate.runner import measured_interval, run_validation

    with using("off"):
        base = load_timing_knobs()
        if rows is None:
            rows = run_validation(path).rows
        family, klass, profile, gpus = [], [], [], []
        t_rows, t_point, t_sign, t_pred0, t_meas, t_lo, t_hi = [], [], [], [], [], [], []
        t_fit: list[bool] = []
        points: list = []
        point_index: dict[int, int] = {}
        for i, r in enumerate(rows):
            p = r.point
            family.append(family_of(p) if p is not None else "unknown")
            k = _klass(r)
            klass.append(k)
            ctx = r.context
            prof, n = "", None
            if p is not None:
                n = getattr(p.hardware, "count", None)
            st = _setup_of(ctx)
            if st is not None:
                n = st.gpus
            if ctx is not None and p is not None:
                job = _job_of(ctx, ("job_11", "job_01", "job_00", "job_10"))
                if job is not None:
                    prof = {"throughput": timing_profile(job.execution.timing_kernel),
                            "memory": job.execution.memory_kernel}.get(k, "")
            profile.append(prof)
            gpus.append(n)
            if k != "throughput" or not r.ok or ctx is None:
                continue
            try:
                ctx.step  # rows predicted through estimate_training (wall clock) have not built it yet
            except Exception:  # a point whose step cannot be estimated keeps its row out of the fit
                continue
            entry = ctx._cache.get("step")
            if not entry or entry[0] != "ok":
                continue
            key = id(ctx)
            if key not in point_index:
                step0 = float(entry[1].step_time_s)
                job = ctx.job()[0]  # the job the step was estimated for (pipeline.step_for)
                kernel = job.execution.timing_kernel
                jknobs = knobs_for(job)  # calibration off here: physical values + the job's overlap fields
                mi, _g, plan = kernel_args(job.model, job.setup, job.gpu, jknobs, kernel)
                point_index[key] = len(points)
                # the GPU numbers depend on the setup beyond precision and kernel (the fp8 recipe, cuDNN
                # attention): keep what kernel_args passed to gpu_numbers, so the fit times the validator's model
                gn = {"fp8_recipe": job.setup.fp8_recipe, "cudnn_attention": job.setup.attention == Attention.CUDNN}
                points.append((mi, plan, job.gpu, job.setup.precision, kernel, step0, jknobs, gn))
            t_rows.append(i)
            t_fit.append(ctx.job()[0].model.arch_kind == ArchKind.DECODER)
            t_point.append(point_index[key])
            t_sign.append(_sign(r))
            t_pred0.append(float(r.predicted))
            t_meas.append(float(r.measured))
            lo, hi = measured_interval(r)
            t_lo.append(float(lo))
            t_hi.append(float(hi))
    arr = lambda x, dt=float: np.asarray(x, dtype=dt)  # noqa: E731
    return DevSet(rows, family, klass, profile, gpus, arr(t_rows, int), arr(t_point, int), arr(t_sign), arr(t_pred0),
                  arr(t_meas), arr(t_lo), arr(t_hi), points, knob_vector(base), base,
                  files=[str(path)] if path else _default_files(), t_fit=arr(t_fit, bool))


def _setup_of(ctx):
    if ctx is None:
        return None
    for key in ("setup_11", "setup_01", "setup_00", "setup_10"):
        entry = ctx._cache.get(key)
        if entry and entry[0] == "ok":
            return entry[1].setup
    return None


def _default_files() -> list[str]:
    from sizeup.validate import points as pts

    files = pts.default_files() if hasattr(pts, "default_files") else [pts.DEV_SET]
    return [Path(f).name for f in files]


# --------------------------------------------------------------------------- vectorised predictions


def step_times(dev: DevSet, K: np.ndarray) -> np.ndarray:
    """Step time of every cached point for every knob vector: shape (points, candidates)."""
    from sizeup.core.timing import gpu_numbers, step_kernel

    K = np.atleast_2d(K)
    out = np.empty((len(dev.points), K.shape[0]))
    for j, (mi, plan, gpu, precision, kernel, _step0, jknobs, gn) in enumerate(dev.points):
        knobs = knobs_with(jknobs, K)
        g = gpu_numbers(gpu, precision, knobs, kernel, **gn)
        out[j] = np.broadcast_to(step_kernel(mi, g, knobs, **plan)["step_time_s"], (K.shape[0],))
    return out


def predictions(dev: DevSet, K: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
    """Predicted value of every step-dependent row for every knob vector: shape (rows, candidates)."""
    steps = step_times(dev, K) if steps is None else steps
    step0 = np.array([p[5] for p in dev.points])
    ratio = step0[:, None] / steps  # > 1: faster than the physical-knob prediction
    r = ratio[dev.t_point]
    return dev.t_pred0[:, None] * np.where(dev.t_sign[:, None] > 0, r, 1.0 / r)


def log_errors(dev: DevSet, pred: np.ndarray) -> np.ndarray:
    """ln(predicted / measured), 0 inside a rounded source's interval: shape of pred."""
    return log_error(pred, dev.t_lo[:, None], dev.t_hi[:, None])


MIN_FAMILY_ROWS = 3
"""A family with fewer training-throughput rows enters the objective pooled with the other small families
(one group), so that a single quoted figure does not weigh as much as a family's whole table."""
SMALL = "(families with < 3 rows)"


def groups(dev: DevSet, families: Iterable[str]) -> list[np.ndarray]:
    """Row masks of the objective's groups for a fold that trains on `families`: one per family with at least
    MIN_FAMILY_ROWS rows, and one pooling the smaller ones."""
    return group_masks(dev.t_family, families, MIN_FAMILY_ROWS, dev.t_fit)


def objective(dev: DevSet, abs_log: np.ndarray, families: Iterable[str]) -> np.ndarray:
    """Mean over the fold's groups (families) of each group's median |ln error| (per candidate column)."""
    parts = [np.median(abs_log[m], axis=0) for m in groups(dev, families)]
    if not parts:
        return np.zeros(abs_log.shape[1])
    return np.mean(parts, axis=0)


def search(dev: DevSet, fold_families: list[list[str]], start: np.ndarray | None = None) -> np.ndarray:
    """Bounded coordinate search for every fold at once: fold f fits on the families fold_families[f].
    Returns the knob vectors, shape (folds, knobs)."""
    names = list(TIMING_KNOBS)
    lo = np.array([KNOB_BOUNDS[n][0] for n in names])
    hi = np.array([KNOB_BOUNDS[n][1] for n in names])
    F, D, G = len(fold_families), len(names), GRID_POINTS
    cur = np.tile(np.clip(dev.physical if start is None else start, lo, hi), (F, 1))
    for rnd in range(ROUNDS):
        span = (hi - lo) * 0.5 ** rnd
        for d in range(D):
            offsets = np.linspace(-0.5, 0.5, G) * span[d]
            grid = np.linspace(lo[d], hi[d], G)[None, :].repeat(F, 0) if rnd == 0 else \
                np.clip(cur[:, d:d + 1] + offsets[None, :], lo[d], hi[d])
            cand = np.repeat(cur, G, axis=0)
            cand[:, d] = grid.reshape(-1)
            abs_log = np.abs(log_errors(dev, predictions(dev, cand)))
            for f in range(F):
                obj = objective(dev, abs_log[:, f * G:(f + 1) * G], fold_families[f])
                # ties (a knob no training row informs) keep the current value
                obj = obj + 1e-9 * np.abs(grid[f] - cur[f, d]) / max(span[d], 1e-30)
                cur[f, d] = grid[f, int(np.argmin(obj))]
    return cur


# --------------------------------------------------------------------------- LOSO and the stored artifact


@dataclass
class FitResult:
    dev: DevSet
    knobs_all: np.ndarray            # fitted on every family
    fold_knobs: dict[str, np.ndarray]  # family -> knobs fitted without it
    pred_physical: np.ndarray        # (T,) step-dependent rows, physical knobs
    pred_fitted: np.ndarray          # (T,) with knobs_all (in-sample)
    pred_loso: np.ndarray            # (T,) each row predicted by the fold that left its family out

    def knob_dict(self, vec: np.ndarray | None = None) -> dict[str, float]:
        vec = self.knobs_all if vec is None else vec
        return {n: float(f"{v:.4g}") for n, v in zip(TIMING_KNOBS, vec)}


def fit(dev: DevSet, loso: bool = True) -> FitResult:
    fams = sorted(set(dev.t_family.tolist()))
    fitted = [f for f in fams if f not in held_out_families()]  # held-out families: never in a fold's training
    folds = [fitted] + ([[f for f in fitted if f != held] for held in fams] if loso else [])
    vecs = search(dev, folds)
    K = np.vstack([dev.physical[None, :], vecs])
    pred = predictions(dev, K)
    pred_phys, pred_all = pred[:, 0], pred[:, 1]
    fold_knobs: dict[str, np.ndarray] = {}
    pred_loso = pred_all.copy()
    if loso:
        fam = dev.t_family
        for j, held in enumerate(fams):
            fold_knobs[held] = vecs[1 + j]
            mask = fam == held
            pred_loso[mask] = pred[mask, 2 + j]
    return FitResult(dev, vecs[0], fold_knobs, pred_phys, pred_all, pred_loso)


def _ratio_errors_pct(dev: DevSet, pred: np.ndarray) -> np.ndarray:
    """Signed % error per step-dependent row, the validator's definition (rounded sources: nearest edge)."""
    ref = np.where(pred > dev.t_hi, dev.t_hi, np.where(pred < dev.t_lo, dev.t_lo, pred))
    return 100.0 * (pred / ref - 1.0)


def row_errors(res: FitResult, which: str) -> list[float | None]:
    """Signed % error of every row under 'physical', 'fitted' or 'loso' (memory/inference rows unchanged here;
    refit puts in the inference rows' fitted and LOSO errors from inference_errors)."""
    dev = res.dev
    out: list[float | None] = [r.error_pct if r.ok else None for r in dev.rows]
    if which == "physical_only_rows":
        return out
    pred = {"physical": res.pred_physical, "fitted": res.pred_fitted, "loso": res.pred_loso}[which]
    for i, e in zip(dev.t_rows, _ratio_errors_pct(dev, pred)):
        out[i] = float(e)
    return out


def _pctl(xs: list[float], q: float) -> float:
    from sizeup.validate.runner import _pctl as p

    return p(xs, q)


def _stats(errors: list[float | None], idx: list[int]) -> dict:
    errs = [abs(errors[i]) for i in idx if errors[i] is not None]
    return {"n": len(errs), "total": len(idx), "coverage": round(len(errs) / len(idx), 4) if idx else None,
            "median_abs_error_pct": round(float(np.median(errs)), 2) if errs else None,
            "p90_abs_error_pct": round(_pctl(errs, 0.9), 2) if errs else None}


def group_stats(dev: DevSet, errors: list[float | None], klasses: tuple[str, ...], fam: str | None = None) -> dict:
    return _stats(errors, [i for i, k in enumerate(dev.klass) if k in klasses and (fam is None or dev.family[i] == fam)])


GROUPS = {"training throughput/MFU": ("throughput",), "memory": ("memory",),
          "inference": ("inference_rate", "inference_time", "inference_memory")}

SERVING_GROUPS = {"serving TTFT": "ttft", "serving ITL/TPOT": "itl_tpot", "serving output throughput": "output_throughput"}
"""The serving figures issue 13's target names, each a subset of the inference rows: the rows of serving points
(predicted through the scheduler simulation) by validate.inference_points.serving_class."""


def accuracy(dev: DevSet, errors: list[float | None]) -> dict:
    """Overall and per-family median / p90 |error| per group (and per serving figure), and coverage."""
    from sizeup.validate.inference_points import serving_class

    metric = [serving_class(r) for r in dev.rows]

    def groups(fam: str | None) -> dict:
        out = {g: group_stats(dev, errors, ks, fam) for g, ks in GROUPS.items()}
        for g, m in SERVING_GROUPS.items():
            out[g] = _stats(errors, [i for i, x in enumerate(metric) if x == m and (fam is None or dev.family[i] == fam)])
        return out

    out: dict[str, Any] = {"overall": groups(None), "families": {}}
    for fam in sorted(set(dev.family)):
        per = {g: s for g, s in groups(fam).items() if s["total"]}
        if per:
            out["families"][fam] = per
    all_idx = [i for i, k in enumerate(dev.klass) if k != "other"]
    ok = sum(1 for i in all_idx if errors[i] is not None)
    out["overall"]["coverage"] = round(ok / len(all_idx), 4) if all_idx else None
    return out


# --------------------------------------------------------------------------- intervals


def row_factors(dev: DevSet, errors: list[float | None]) -> list[float | None]:
    """Multiplicative factor true/predicted for each predicted row, expressed for its interval class: a rate
    (throughput rows: a time row's factor is inverted), memory bytes, or an inference figure."""
    from sizeup.validate.runner import canonical_quantity

    out: list[float | None] = []
    for i, (r, e) in enumerate(zip(dev.rows, errors)):
        if e is None or dev.klass[i] == "other" or not (1.0 + e / 100.0) > 0:
            out.append(None)
            continue
        ratio = 1.0 + e / 100.0  # predicted / measured
        f = 1.0 / ratio
        if dev.klass[i] == "throughput":
            q = canonical_quantity(r.quantity, r.unit)
            if q not in RATE_QUANTITIES:
                f = ratio
        out.append(f)
    return out


def _weighted_quantiles(x: np.ndarray, qs=(0.1, 0.5, 0.9)) -> list[float]:
    return [float(np.quantile(x, q)) for q in qs]


def interval_table(dev: DevSet, factors: list[float | None], rows_idx: Iterable[int] | None = None) -> dict:
    """{regime key: {p10, p50, p90, n, families}} for every regime with enough rows from enough families."""
    buckets: dict[str, list[int]] = {}
    for i in (range(len(dev.rows)) if rows_idx is None else rows_idx):
        if factors[i] is None:
            continue
        k = dev.klass[i]
        for key in regime_keys(k, dev.profile[i] or None, dev.gpus[i]):
            buckets.setdefault(key, []).append(i)
    table = {}
    for key, idx in sorted(buckets.items()):
        fams = {dev.family[i] for i in idx}
        pooled = "|" not in key
        if len(idx) < (5 if pooled else MIN_REGIME_ROWS) or (not pooled and len(fams) < MIN_REGIME_FAMILIES):
            continue
        q10, q50, q90 = _weighted_quantiles(np.array([factors[i] for i in idx]))
        table[key] = {"p10": round(q10, 4), "p50": round(q50, 4), "p90": round(q90, 4), "n": len(idx),
                      "families": len(fams)}
    return table


def coverage(dev: DevSet, factors: list[float | None], table: dict, rows_idx: Iterable[int] | None = None) -> dict:
    """Share of rows whose factor lies inside the [P10, P90] of the regime interval_factors picks for them."""
    hit: dict[str, list[int]] = {}
    for i in (range(len(dev.rows)) if rows_idx is None else rows_idx):
        if factors[i] is None:
            continue
        for key in regime_keys(dev.klass[i], dev.profile[i] or None, dev.gpus[i]):
            if key in table:
                e = table[key]
                hit.setdefault(dev.klass[i], []).append(int(e["p10"] <= factors[i] <= e["p90"]))
                break
    out = {k: {"n": len(v), "covered": round(sum(v) / len(v), 4)} for k, v in hit.items()}
    allv = [x for v in hit.values() for x in v]
    out["all"] = {"n": len(allv), "covered": round(sum(allv) / len(allv), 4) if allv else None}
    return out


def nested_coverage(dev: DevSet, factors: list[float | None]) -> dict:
    """Stricter: each family's rows against intervals built from the other families' rows only."""
    fams = sorted(set(dev.family))
    hits: list[int] = []
    for fam in fams:
        own = [i for i in range(len(dev.rows)) if dev.family[i] == fam and factors[i] is not None]
        if not own:
            continue
        others = [i for i in range(len(dev.rows)) if dev.family[i] != fam]
        table = interval_table(dev, factors, others)
        for i in own:
            for key in regime_keys(dev.klass[i], dev.profile[i] or None, dev.gpus[i]):
                if key in table:
                    hits.append(int(table[key]["p10"] <= factors[i] <= table[key]["p90"]))
                    break
    return {"n": len(hits), "covered": round(sum(hits) / len(hits), 4) if hits else None}


def after_user_calibration(dev: DevSet, factors: list[float | None]) -> dict:
    """Intervals once a family's own level is known (what a user's calibration on their cluster removes): the
    spread of each row's factor over its family's median factor, per class."""
    by: dict[tuple[str, str], list[float]] = {}
    for i, f in enumerate(factors):
        if f is not None:
            by.setdefault((dev.klass[i], dev.family[i]), []).append(f)
    per_class: dict[str, list[float]] = {}
    for (k, _fam), fs in by.items():
        med = float(np.median(fs))
        per_class.setdefault(k, []).extend(x / med for x in fs)
    out = {}
    for k, xs in per_class.items():
        if len(xs) >= 5:
            q10, q50, q90 = _weighted_quantiles(np.array(xs))
            out[k] = {"p10": round(q10, 4), "p50": 1.0, "p90": round(q90, 4), "n": len(xs)}
    return out


# --------------------------------------------------------------------------- the whole refit


INFERENCE_KLASSES = ("inference_rate", "inference_time", "inference_memory")


def inference_errors(dev: DevSet, res: FitResult, serving: "serving_fit.ServingFit", path=None
                     ) -> tuple[dict[int, float | None], dict[int, float | None]]:
    """Signed % errors of the inference rows (indices into dev.rows) with the fitted knobs (in-sample) and with each
    row's LOSO knobs. In-sample, and LOSO for a family without training rows, come from the serving fit's own runs
    (full timing knobs; the serving knobs of the fit, or of the fold that left the family out). A family with
    training rows is re-predicted on its own points with its timing fold and its serving fold."""
    from sizeup.calib import Calibration, using_profile
    from sizeup.validate.runner import run_validation

    def own(i: int, table: dict[int, float | None]) -> float | None:
        return table[i] if i in table else serving.other_err.get(i)

    def errors_under(fam: str, ids: set[str]) -> dict[tuple[str, str], list[float | None]]:
        cal = Calibration(name="refit", path=None, knobs=res.knob_dict(res.fold_knobs[fam]),
                          serving=dict(serving.fold_values.get(fam, serving.values)), kind="packaged")
        with using_profile(cal):
            rows = run_validation(path, categories=["D"], ids=ids).rows
        out: dict[tuple[str, str], list[float | None]] = {}
        for r in rows:
            out.setdefault((r.id, r.quantity), []).append(r.error_pct if r.ok else None)
        return out

    idx = [i for i, k in enumerate(dev.klass) if k in INFERENCE_KLASSES]
    by_fam: dict[str, dict] = {}
    err_fit: dict[int, float | None] = {}
    err_loso: dict[int, float | None] = {}
    for i in idx:
        err_fit[i] = own(i, serving.err_fit)
        fam = dev.family[i]
        if fam not in res.fold_knobs:
            err_loso[i] = own(i, serving.err_loso)
            continue
        if fam not in by_fam:
            by_fam[fam] = errors_under(fam, {dev.rows[j].id for j in idx if dev.family[j] == fam})
        k = (dev.rows[i].id, dev.rows[i].quantity)
        err_loso[i] = by_fam[fam][k].pop(0) if by_fam[fam].get(k) else None
    return err_fit, err_loso


def refit(path=None, dev: DevSet | None = None) -> dict:
    """Fit on the dev set, cross-validate, derive intervals; return the calibration.yaml mapping."""
    dev = dev or build(path)
    res = fit(dev, loso=True)
    err_phys, err_fit, err_loso = row_errors(res, "physical"), row_errors(res, "fitted"), row_errors(res, "loso")
    sf = serving_fit.fit_serving(dev, res.knob_dict(), held_out_families(), MIN_FAMILY_ROWS, path)
    inf_fit, inf_loso = inference_errors(dev, res, sf, path)
    for i, e in inf_fit.items():
        err_fit[i] = e
    for i, e in inf_loso.items():
        err_loso[i] = e
    f_loso = row_factors(dev, err_loso)
    f_phys = row_factors(dev, err_phys)
    regimes = interval_table(dev, f_loso)
    physical = interval_table(dev, f_phys)
    fit_mask = dev.t_fit if dev.t_fit is not None else np.ones(len(dev.t_family), dtype=bool)
    fams = dev.t_family[fit_mask].tolist()  # rows the fit used (encoder-model rows are predicted, not fitted)
    counts = {f: fams.count(f) for f in sorted(set(fams)) if f not in held_out_families()}
    held = sorted(set(dev.t_family.tolist()) & held_out_families())
    today = _dt.date.today().isoformat()
    payload = {
        "schema_version": 1,
        "name": DEFAULT,
        "kind": "packaged",
        "fitted": {
            "date": today,
            "on": dev.files,
            "throughput_rows_per_family": counts,
            "held_out_families": held,
            "objective": "mean over source families of the family's median |ln(predicted/measured)| over its "
                         "training-throughput rows (families weighted equally, not rows; families with fewer than "
                         f"{MIN_FAMILY_ROWS} rows pooled into one group)",
            "method": f"bounded coordinate search on {GRID_POINTS}-point grids, {ROUNDS} rounds (span halved each "
                      "round), from the physical values; numpy only (sizeup.calib.fit)",
            "command": "sizeup calibrate --refit --write",
            "serving": {
                "knobs": list(serving_fit.BOUNDS),
                "fitted_knobs": list(sf.fitted),
                "loso_selection_score_by_free_knobs": dict(sf.loso_score),
                "selection": "each set of free knobs (none, each alone, each pair, all three) is fitted once per "
                             "left-out family and scored on that family's rows by the mean of its median and 90th-percentile |ln error| "
                             "(families weighted equally); a larger set replaces a smaller one only when it lowers "
                             f"that score by at least {serving_fit.SELECTION_MARGIN} (about 2 % error); knobs not "
                             "fitted keep their physical value 0",
                "rows_per_family": {f: sum(1 for i in sf.rows if dev.family[i] == f) for f in sf.families},
                "objective": "as the timing fit's, over the inference rows (throughput, TTFT, ITL/TPOT, end-to-end; "
                             "the scheduler simulation included), with the timing knobs at their fitted values",
                "method": "grid: tp_allreduce_exposed_s in " + ", ".join(f"{x * 1e6:g}" for x in serving_fit.X_GRID_S)
                          + " us (a validator run each, of the points the skew moves) x step_host_per_seq_s in "
                          + ", ".join(f"{z * 1e6:g}" for z in serving_fit.Z_GRID_S)
                          + " us (a full run each); api_server_ttft_s "
                          f"0-{serving_fit.Y_MAX_S * 1e3:g} ms in {serving_fit.Y_STEP_S * 1e3:g} ms steps (it shifts TTFT and end-to-end latency by itself: "
                          "one probe run gives each row's shift); ties go to the smaller (physical) value "
                          "(sizeup.calib.serving)",
            },
        },
        "knobs": {n: {"value": v, "physical": float(f"{p:.4g}"), "bounds": list(KNOB_BOUNDS[n]),
                      "loso_range": [float(f"{min(k[j] for k in res.fold_knobs.values()):.4g}"),
                                     float(f"{max(k[j] for k in res.fold_knobs.values()):.4g}")]
                      if res.fold_knobs else None}
                  for j, (n, v, p) in enumerate(zip(TIMING_KNOBS, res.knob_dict().values(), dev.physical))}
        | serving_fit.payload_section(sf, _serving_physical()),
        "loso_fold_knobs": {f: res.knob_dict(v) | sf.fold_values.get(f, {}) for f, v in res.fold_knobs.items()}
        | {f: dict(v) for f, v in sf.fold_values.items() if f not in res.fold_knobs},
        "intervals": {
            "method": "P10/P50/P90 of true/predicted over the leave-one-source-out residuals of each regime "
                      "(quantity class | kernel profile | GPU-count bucket); regimes with fewer than "
                      f"{MIN_REGIME_ROWS} rows or {MIN_REGIME_FAMILIES} families fall back to the pooled class. "
                      "Time and cost figures use the inverted throughput factors.",
            "scale_buckets": [b for _, b in SCALE_BUCKETS],
            "regimes": regimes,
            "physical": physical,
            "after_user_calibration": after_user_calibration(dev, f_loso),
            "coverage_loso": coverage(dev, f_loso, regimes),
            "coverage_nested_loso": nested_coverage(dev, f_loso),
        },
        "accuracy": {
            "calibration_off": accuracy(dev, err_phys),
            "calibration_on_in_sample": accuracy(dev, err_fit),
            "loso": accuracy(dev, err_loso),
        },
    }
    return payload


def _serving_physical() -> dict[str, float]:
    """The serving knobs' physical values (inference.yaml, calibration off)."""
    from sizeup.catalog.knobs import load_serving_knobs

    with using("off"):
        k = load_serving_knobs()
    return {name: float(getattr(k, name)) for name in serving_fit.BOUNDS}


def write(payload: dict, path: Path | None = None) -> Path:
    import yaml

    from sizeup.calib import PACKAGED_FILE, _plain

    path = Path(path) if path else PACKAGED_FILE
    header = ("# Fitted values only: the physical value of every knob is in timing.yaml (its default with\n"
              "# --no-calibration / SIZEUP_CALIBRATION=off). Written by `sizeup calibrate --refit --write`\n"
              "# (sizeup.calib.fit); do not edit by hand. See docs/methodology.md, 'Calibration'.\n")
    path.write_text(header + yaml.safe_dump(_plain(payload), sort_keys=False, width=120))
    return path


def summary_lines(payload: dict) -> list[str]:
    """Plain-text summary of a refit (for the benchmarks script and `sizeup calibrate --refit`)."""
    lines = []
    for label, key in (("calibration off", "calibration_off"), ("calibration on (in-sample)", "calibration_on_in_sample"),
                       ("leave-one-source-out", "loso")):
        acc = payload["accuracy"][key]["overall"]
        parts = [f"{g}: median {_p(s['median_abs_error_pct'])} p90 {_p(s['p90_abs_error_pct'])} (n={s['n']})"
                 for g, s in acc.items() if isinstance(s, dict)]
        lines.append(f"{label:28s} " + "; ".join(parts))
    return lines


def _p(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}%"
