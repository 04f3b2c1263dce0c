"""The serving knobs of the packaged calibration (calib.SERVING_KNOBS), fitted on the inference rows of the
development files the same way the timing knobs are fitted on the training rows: source families weighted equally,
leave-one-source-out folds, the physical value (0, not counted) as the starting point and the tie-break.

- tp_allreduce_exposed_s (x): seconds each in-forward TP all-reduce costs beyond its modelled time (the ranks'
  skew at the barrier). It changes step times, so every grid value of x is one run of the validator's inference
  category (the scheduler simulation included): all points at the physical value and at the largest x, then only
  the points x moved.
- step_host_per_seq_s (z): host seconds per sequence per scheduler step that the GPU waits for (scheduling, input
  preparation, sampling bookkeeping, detokenising and streaming each new token). It changes step times of every
  point, so each grid value of z is one full run (at x = 0) and partial runs of the tensor-parallel points at the
  other x values.
- api_server_ttft_s (y): seconds the engine's API server adds to a request's TTFT and end-to-end latency. It shifts
  those figures by exactly y and nothing else (core.inference.api_server_s), so one more run at y = 1 ms gives each
  row's shift per second of y, and every y on a fine grid costs no run: predicted(x, y) = predicted(x, 0) +
  y * shift.

Objective, as the timing fit's: the mean over families (families with fewer than MIN_FAMILY_ROWS rows pooled into
one group) of the family's median |ln(predicted/measured)| over its inference timing rows (throughput, TTFT,
ITL/TPOT, end-to-end). Every (x, y) of the grid is scored; the least (smallest x, then smallest y on ties) wins.

Which knobs are fitted at all is decided by leave-one-source-out: each candidate set of free knobs (SUBSETS) is
fitted once per left-out family and scored on that family's rows (median and 90th percentile, SELECTION_QUANTILES);
the set with the least score is fitted, a larger set only when it wins by SELECTION_MARGIN (a knob that does not
carry over to unseen sources keeps its physical value).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from sizeup.calib.objective import group_masks, log_error

X_GRID_S = (0.0, 10e-6, 20e-6, 30e-6, 40e-6, 60e-6)
"""tp_allreduce_exposed_s candidates (seconds per all-reduce); the largest is about the whole measured all-reduce
time at 1 MB on H100 TP 4-8 (SGLang PR #2904: 31-45 us), i.e. the skew at most doubles a decode all-reduce."""
Z_GRID_S = (0.0, 20e-6, 40e-6, 60e-6, 80e-6)
"""step_host_per_seq_s candidates (seconds per sequence per step); the largest is near vLLM V0's ~100 us before
v0.6 (issue #6801: 'When BS is 200, all this together can be 20ms'), which later engines overlap in part."""
Y_STEP_S = 0.5e-3
Y_MAX_S = 0.06
"""api_server_ttft_s candidates: 0 to 60 ms in 0.5 ms steps (the published light-load gaps were 8-50 ms)."""
Y_PROBE_S = 1e-3
BOUNDS = {"tp_allreduce_exposed_s": (0.0, X_GRID_S[-1]), "step_host_per_seq_s": (0.0, Z_GRID_S[-1]),
          "api_server_ttft_s": (0.0, Y_MAX_S)}
KLASSES = ("inference_rate", "inference_time")
LATENCY_RE = re.compile(r"ttft|first_token|e2e", re.I)
"""Quantities api_server_ttft_s can move (TTFT and end-to-end latency); the probe run re-predicts only their points."""
SELECTION_QUANTILES = (50.0, 90.0)
"""The selection scores a left-out family by the mean of its median and 90th-percentile |ln error| (the serving
acceptance judges both): a knob that helps typical rows of unseen sources but ruins their tail is not fitted."""
SELECTION_MARGIN = 0.02
"""A larger set of free knobs is chosen over the current one only when it lowers the selection score by at least
0.02 (|ln error| units, about 2 % error): a knob must earn its place on unseen sources, a tie keeps the physical
value."""
_X, _Z, _Y = "tp_allreduce_exposed_s", "step_host_per_seq_s", "api_server_ttft_s"
SUBSETS = ((), (_X,), (_Z,), (_Y,), (_X, _Z), (_X, _Y), (_Z, _Y), (_X, _Z, _Y))
"""Candidate sets of free knobs, fewest first (see SELECTION_MARGIN)."""


@dataclass
class ServingFit:
    values: dict[str, float]
    fold_values: dict[str, dict[str, float]]
    rows: list[int]                                  # indices into dev.rows (inference timing rows)
    err_fit: dict[int, float | None] = field(default_factory=dict)
    err_loso: dict[int, float | None] = field(default_factory=dict)
    families: list[str] = field(default_factory=list)
    fitted: tuple[str, ...] = ()
    """The knobs the selection fitted; the others stay at their physical value (0)."""
    other_err: dict[int, float | None] = field(default_factory=dict)
    """Signed % errors of the other inference rows (memory: no serving knob moves them) under the timing knobs."""
    loso_score: dict[str, float] = field(default_factory=dict)
    """Leave-one-source-out objective of each candidate set of free knobs (the selection's evidence)."""


def _run(path, timing_knobs: dict[str, float], serving: dict[str, float],
         ids: Iterable[str] | None = None) -> dict[tuple[str, str], list]:
    """The validator's inference category with these knobs (only the points `ids` when given): (id, quantity) ->
    [Row, ...] in file order."""
    from sizeup.calib import Calibration, using_profile
    from sizeup.validate.runner import run_validation

    cal = Calibration(name="refit", path=None, knobs=dict(timing_knobs), serving=dict(serving), kind="packaged")
    with using_profile(cal):
        rows = run_validation(path, categories=["D"], ids=ids).rows
    out: dict[tuple[str, str], list] = {}
    for r in rows:
        out.setdefault((r.id, r.quantity), []).append(r)
    return out


def _predictions(dev, idx: list[int], runs: dict) -> np.ndarray:
    """predicted value per dev row in idx (nan when the run skipped it), matched by (id, quantity) in order."""
    pools = {k: list(v) for k, v in runs.items()}
    out = np.full(len(idx), np.nan)
    for j, i in enumerate(idx):
        r = dev.rows[i]
        pool = pools.get((r.id, r.quantity))
        if pool:
            got = pool.pop(0)
            if got.ok and got.predicted is not None:
                out[j] = float(got.predicted)
    return out


_JOBS: dict[str, Any] = {}
"""What grid runs share (dev set, rows, file, timing knobs), set before the worker processes fork."""


def _job(args: tuple[float, float, float, frozenset[str] | None]) -> tuple[np.ndarray, dict[int, float | None]]:
    """One grid run: predictions of the inference rows at (x, z, y), of the points `ids` only when given; and the
    signed % errors of the other inference rows (memory, which no serving knob moves) of a full run."""
    x, z, y, ids = args
    dev, idx = _JOBS["dev"], _JOBS["idx"]
    runs = _run(_JOBS["path"], _JOBS["timing"], {_X: x, _Z: z, _Y: y}, ids)
    other: dict[int, float | None] = {}
    if ids is None:
        pools = {k: list(v) for k, v in runs.items()}
        for i, k in enumerate(dev.klass):
            if k.startswith("inference") and k not in KLASSES:
                pool = pools.get((dev.rows[i].id, dev.rows[i].quantity))
                got = pool.pop(0) if pool else None
                other[i] = got.error_pct if got is not None and got.ok else None
    return _predictions(dev, idx, runs), other


def _run_jobs(jobs: list[tuple[float, float, float, frozenset[str] | None]]) -> list[tuple[np.ndarray, dict]]:
    """The grid runs, in forked worker processes when the machine has more than one core (each run is a
    validator pass of the inference category; they share nothing), else one after the other."""
    workers = min(len(jobs), max(1, (os.cpu_count() or 1)))
    if workers > 1:
        import multiprocessing as mp

        try:
            ctx = mp.get_context("fork")
        except ValueError:  # no fork on this platform
            ctx = None
        if ctx is not None:
            with ctx.Pool(workers) as pool:
                return pool.map(_job, jobs, chunksize=1)
    return [_job(j) for j in jobs]


def _intervals(dev, idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the (lo, hi) a prediction may take with no error (validate.runner.measured_interval)."""
    from sizeup.validate.runner import measured_interval

    lo_hi = np.array([measured_interval(dev.rows[i]) for i in idx], dtype=float).reshape(-1, 2)
    return lo_hi[:, 0], lo_hi[:, 1]


def abs_log_error(pred: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """|ln(predicted / nearest edge of [lo, hi])| (calib.objective.log_error), 0 inside; nan where nothing was
    predicted. pred (..., rows)."""
    return np.where(np.isfinite(pred) & (pred > 0), np.abs(log_error(pred, lo, hi)), np.nan)


def score(abs_log: np.ndarray, families: np.ndarray, keep: Iterable[str], min_rows: int,
          quantiles: tuple[float, ...] = (50.0,)) -> np.ndarray:
    """Mean over the groups of each group's |ln error| at `quantiles` (averaged; default the median; nan rows
    ignored); abs_log (..., rows)."""
    parts = []
    for m in group_masks(families, keep, min_rows):
        sub = abs_log[..., m]
        if np.isfinite(sub).any():
            parts.append(np.mean([np.nanpercentile(sub, q, axis=-1) for q in quantiles], axis=0))
    if not parts:
        return np.zeros(abs_log.shape[:-1])
    return np.mean(parts, axis=0)


def best(scores: np.ndarray) -> tuple[int, ...]:
    """Grid index of the least score; ties go to the smallest first index, then the next (the physical side)."""
    flat = int(np.nanargmin(scores))
    return tuple(int(i) for i in np.unravel_index(flat, scores.shape))


def select(scores: dict[tuple[str, ...], float]) -> tuple[str, ...]:
    """The set of free knobs to fit: candidates in order (fewest knobs first), each replacing the current choice
    only when its leave-one-source-out score is lower by at least SELECTION_MARGIN."""
    order = list(scores)
    chosen = order[0]
    for subset in order[1:]:
        if scores[subset] < scores[chosen] - SELECTION_MARGIN:
            chosen = subset
    return chosen


def fit_serving(dev, timing_knobs: dict[str, float], held_out: Iterable[str], min_rows: int,
                path=None) -> ServingFit:
    idx = [i for i, k in enumerate(dev.klass) if k in KLASSES]
    if not idx:
        return ServingFit(values={k: 0.0 for k in BOUNDS}, fold_values={}, rows=[])
    ids = np.array([dev.rows[i].id for i in idx])

    _JOBS.update(dev=dev, idx=idx, path=path, timing=dict(timing_knobs))
    # every inference point at each z (x = 0) and at the largest x (z = 0); only the points x moved (tensor-parallel
    # ones) are re-predicted at the other (x, z), only the points with a TTFT or end-to-end figure by the y probe
    (base0, other0), (top, _) = _run_jobs([(0.0, 0.0, 0.0, None), (X_GRID_S[-1], 0.0, 0.0, None)])
    moved = frozenset(ids[~np.isclose(base0, top, rtol=1e-12, atol=0.0, equal_nan=True)].tolist())
    timed = frozenset(dev.rows[i].id for i in idx if LATENCY_RE.search(dev.rows[i].quantity))
    jobs: list[tuple[float, float, float, frozenset[str] | None]] = [(0.0, z, 0.0, None) for z in Z_GRID_S[1:]]
    grid = [(x, z) for z in Z_GRID_S for x in X_GRID_S[1:] if moved and (z, x) != (0.0, X_GRID_S[-1])]
    jobs += [(x, z, 0.0, moved) for x, z in grid]
    jobs += [(0.0, 0.0, Y_PROBE_S, timed)] if timed else []
    got = {j: r[0] for j, r in zip(jobs, _run_jobs(jobs))}
    at_x0 = {0.0: base0} | {z: got[(0.0, z, 0.0, None)] for z in Z_GRID_S[1:]}
    in_moved, in_timed = np.isin(ids, list(moved)), np.isin(ids, list(timed))

    def at(x: float, z: float) -> np.ndarray:
        if x == 0.0:
            return at_x0[z]
        if (z, x) == (0.0, X_GRID_S[-1]):
            return top
        return np.where(in_moved, got[(x, z, 0.0, moved)], at_x0[z]) if moved else at_x0[z]

    base = np.stack([np.stack([at(x, z) for z in Z_GRID_S]) for x in X_GRID_S])          # (x, z, rows)
    probe = np.where(in_timed, got[(0.0, 0.0, Y_PROBE_S, timed)], base0) if timed else base0
    shift = np.where(np.isfinite(probe) & np.isfinite(base0), (probe - base0) / Y_PROBE_S, 0.0)
    y_grid = np.arange(0.0, Y_MAX_S + 1e-12, Y_STEP_S)
    pred = base[:, :, None, :] + y_grid[None, None, :, None] * shift[None, None, None, :]  # (x, z, y, rows)
    lo, hi = _intervals(dev, idx)
    abs_log = abs_log_error(pred, lo, hi)
    fam = np.array([dev.family[i] for i in idx])
    held = set(held_out)
    fit_fams = sorted(set(fam.tolist()) - held)

    def values_at(ix: int, iz: int, iy: int) -> dict[str, float]:
        return {_X: float(X_GRID_S[ix]), _Z: float(Z_GRID_S[iz]), _Y: float(round(y_grid[iy], 6))}

    def fit_subset(subset: tuple[str, ...]):
        """Full fit and folds with only the knobs in `subset` free (the others at their physical 0), and the
        leave-one-source-out score: each row scored at the fold that left its family out."""
        allowed = np.full(abs_log.shape[:3], np.inf)
        allowed[:len(X_GRID_S) if _X in subset else 1, :len(Z_GRID_S) if _Z in subset else 1,
                :len(y_grid) if _Y in subset else 1] = 0.0

        def pick(keep):
            return best(score(abs_log, fam, keep, min_rows) + allowed)

        full = pick(fit_fams)
        folds = {f: pick([g for g in fit_fams if g != f]) for f in fit_fams}
        rows_loso = np.array([abs_log[folds[f] + (j,)] if f in folds else np.nan for j, f in enumerate(fam)])
        return full, folds, float(score(rows_loso, fam, fit_fams, min_rows, SELECTION_QUANTILES))

    trials = {subset: fit_subset(subset) for subset in SUBSETS}
    chosen = select({k: v[2] for k, v in trials.items()})
    full, folds, _ = trials[chosen]
    out = ServingFit(values=values_at(*full), fold_values={f: values_at(*v) for f, v in folds.items()}, rows=idx,
                     families=fit_fams, fitted=chosen,
                     loso_score={"+".join(k) or "none": round(v[2], 5) for k, v in trials.items()})
    from sizeup.validate.runner import error_pct_for

    def err(j: int, at: tuple[int, ...]) -> float | None:
        p = pred[at + (j,)]
        return error_pct_for(dev.rows[idx[j]], float(p)) if np.isfinite(p) and p > 0 else None

    for j, i in enumerate(idx):
        out.err_fit[i] = err(j, full)
        out.err_loso[i] = err(j, folds.get(fam[j], full))
    out.other_err.update(other0)
    return out


def payload_section(sf: ServingFit, physical: dict[str, float]) -> dict[str, Any]:
    """calibration.yaml entries of the serving knobs (knobs: value, physical, bounds, loso_range)."""
    out = {}
    for name in BOUNDS:
        vals = [v[name] for v in sf.fold_values.values()]
        out[name] = {"value": float(f"{sf.values[name]:.4g}"), "physical": float(physical.get(name, 0.0)),
                     "bounds": list(BOUNDS[name]),
                     "loso_range": [float(f"{min(vals):.4g}"), float(f"{max(vals):.4g}")] if vals else None}
    return out
