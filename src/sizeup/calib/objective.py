"""The pieces of the calibration objective that the timing fit (calib/fit.py) and the serving fit (calib/serving.py)
share: the error of a prediction against a measured figure that may be an interval, and the equal-weight groups of
source families (small families pooled). Pure numpy."""

from __future__ import annotations

from typing import Iterable

import numpy as np


def log_error(pred, lo, hi):
    """ln(predicted / nearest edge of the measured interval [lo, hi]), 0 inside it (validate.runner.measured_interval:
    a rounded figure's interval; lo == hi for an exact one). Broadcasts."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pred > hi, np.log(pred / hi), np.where(pred < lo, np.log(pred / lo), 0.0))


def group_masks(families: np.ndarray, keep: Iterable[str], min_rows: int,
                eligible: np.ndarray | None = None) -> list[np.ndarray]:
    """Row masks of the objective's groups for a fold that fits on the families `keep`: one per family with at least
    `min_rows` eligible rows, and one pooling the smaller ones (so that a single quoted figure does not weigh as much
    as a family's whole table). `eligible`: rows the fit may use (default all)."""
    ok = np.ones(len(families), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    big, small = [], np.zeros(len(families), dtype=bool)
    for f in sorted(set(keep)):
        mask = (families == f) & ok
        if mask.sum() >= min_rows:
            big.append(mask)
        else:
            small |= mask
    return big + ([small] if small.any() else [])
