"""Validation against published training and inference runs (`sizeup validate`).

`run_validation(path=None, categories=None, source=None, quantities=None)` loads a published-runs file
(default: the packaged development set, `validate/data/published_runs_dev.yaml` plus every file there marked
`default: true`, see `default_files()`), predicts every measured
quantity with the same core functions the CLI uses, and returns rows (predicted with signed error,
or skipped with the reason) plus a summary (median / p90 absolute error per quantity, per source
family and overall; coverage).
"""

from sizeup.validate.points import DEV_SET, BadPoint, Point, Skip, default_files, load_points

__all__ = ["DEV_SET", "BadPoint", "Point", "Skip", "default_files", "load_points", "run_validation"]


def run_validation(*args, **kwargs):
    from sizeup.validate.runner import run_validation as _run

    return _run(*args, **kwargs)
