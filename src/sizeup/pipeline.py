"""The one evaluation every view calls: job -> memory -> time -> cost -> risk.

`evaluate(job)` answers for one job; compare, search, scale, fit-budget, audit and validate generate jobs and
call the same functions (`memory_for`, `step_for`, `train_for`, `cost_for`). A job that does not fit gets
`fits: false`, the reasons and the cheapest fixes, and no time or price; a run that cannot make progress on
spot capacity gets `feasible: false` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from sizeup.core.types import Sharding


def knobs_for(job, overrides: dict | None = None):
    """Timing knobs from the catalog, the scenario's `timing:` overrides, then the job's overlap fields."""
    from sizeup.catalog.knobs import load_timing_knobs

    knobs = load_timing_knobs(overrides)
    ex = job.execution
    changes = {}
    if ex.dp_overlap is not None:
        changes.update(dp_overlap=ex.dp_overlap, fsdp_overlap=ex.dp_overlap)
    return knobs.with_(**changes) if changes else knobs


def overheads_for(job):
    from sizeup.catalog.overheads import load_overheads

    from sizeup.calib import apply_to_overheads

    ov = apply_to_overheads(load_overheads())  # a user calibration's fitted fragmentation (the flag wins)
    if job.execution.fragmentation is not None:
        ov = replace(ov, fragmentation_fraction=float(job.execution.fragmentation))
    return ov


def memory_for(job, overheads=None):
    """Memory per GPU (the same figure in every command: catalog overheads included)."""
    from sizeup.core.memory import estimate_memory

    return estimate_memory(job.model, job.setup, gpu=job.gpu, gpu_memory_bytes=job.cluster.memory_bytes,
                           overheads=overheads or overheads_for(job), kernel=job.execution.memory_kernel,
                           loss=job.execution.loss)


def step_for(job, knobs=None):
    from sizeup.core.timing import estimate_step

    return estimate_step(job.model, job.setup, job.gpu, knobs or knobs_for(job), kernel=job.execution.timing_kernel)


def train_for(job, knobs=None):
    """The whole run (needs a workload): steps, wall-clock, GPU-hours; memory is computed separately."""
    from sizeup.core.estimate import estimate_training

    return estimate_training(job.model, job.setup, job.gpu, job.workload, knobs or knobs_for(job),
                             kernel=job.execution.timing_kernel, with_memory=False)


SHARDING_LADDER = (Sharding.NONE, Sharding.ZERO1, Sharding.ZERO2, Sharding.ZERO3)
FSDP_LADDER = (Sharding.NONE, Sharding.FSDP_GRAD_OP, Sharding.FSDP_FULL)


def fit_sharding(job, overheads=None):
    """(job, memory): when the user did not choose a sharding and the job does not fit with its default, the least
    sharding that fits (ZeRO-1 -> 2 -> 3; FSDP frameworks: SHARD_GRAD_OP -> FULL_SHARD), stated in job.defaults."""
    mem = memory_for(job, overheads)
    if mem.fits is not False or "zero" in job.given or job.parallelism.dp < 2:
        return job, mem
    ladder = FSDP_LADDER if job.execution.framework in ("fsdp", "torchtitan") else SHARDING_LADDER
    start = ladder.index(job.parallelism.sharding) + 1 if job.parallelism.sharding in ladder else len(ladder)
    for shard in ladder[start:]:
        try:
            cand = job.with_setup(job.setup.with_(sharding=shard))
        except Exception:
            continue
        m = memory_for(cand, overheads)
        if m.fits:
            defaults = tuple((k, h) for k, h in cand.defaults if k != "zero") + (
                ("zero", f"{shard.value} (the least sharding that fits; {job.parallelism.sharding.value} needs "
                         f"{mem.peak_reserved_bytes / 2**30:,.1f} GiB per GPU)"),)
            return replace(cand, defaults=defaults), m
    return job, mem


@dataclass
class Evaluation:
    job: Any
    memory: Any
    step: Any = None
    train: Any = None
    cost: dict | None = None
    fixes: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        return None if self.memory is None else self.memory.fits

    @property
    def feasible(self) -> bool:
        if self.fits is False:
            return False
        return not (self.cost and self.cost.get("feasible") is False)

    @cached_property
    def intervals(self) -> dict:
        """P10/P50/P90 of each figure (see `intervals_for`); empty when nothing is estimated."""
        return intervals_for(self)

    @property
    def reasons(self) -> list[str]:
        out = list(self.memory.reasons) if self.memory is not None and self.fits is False else []
        if self.cost and self.cost.get("feasible") is False:
            out += list(self.cost.get("reasons") or [])
        return out


def intervals_for(ev: Evaluation) -> dict:
    """P10/P50/P90 of every figure the evaluation estimates: {figure: {p10, p50, p90, interval_regime}} (peak memory
    also for a job that does not fit: the figure it needs is an estimate too).

    Factors are the leave-one-source-out residual quantiles of the job's regime in the active calibration
    (quantity class x kernel profile x GPU-count bucket; calibration.yaml `intervals`); time figures use the inverted
    throughput factors. The total cost's compute part scales with the wall-clock interval, storage and egress are
    held at their estimate: cost_q = rest + compute x time_q / time_p50."""
    from sizeup.calib import interval_dict, job_signature, load, timing_profile

    job, iv = ev.job, {}
    if ev.memory is None:
        return iv
    cal = load()
    ex, setup = job.execution, job.setup
    sig = job_signature(setup, job.model.id, job.gpu.id if job.gpu is not None else "", ex.timing_kernel)
    if ev.step is not None:
        regime = {"profile": timing_profile(ex.timing_kernel), "gpus": setup.gpus, "job": sig}
        step = ev.step
        iv["step_time_s"] = interval_dict("time", regime, step.step_time_s, cal)
        iv["tokens_per_s"] = interval_dict("throughput", regime, step.tokens_per_s, cal)
        iv["tokens_per_s_per_gpu"] = interval_dict("throughput", regime, step.tokens_per_s_per_gpu, cal)
        iv["mfu"] = interval_dict("mfu", regime, step.mfu, cal)
        if ev.train is not None:
            iv["total_time_s"] = interval_dict("time", regime, ev.train.total_time_s, cal)
            iv["gpu_hours"] = interval_dict("time", regime, ev.train.gpu_hours, cal)
    iv["peak_reserved_bytes"] = interval_dict("memory", {"profile": ex.memory_kernel, "gpus": setup.gpus, "job": sig},
                                              ev.memory.peak_reserved_bytes, cal)
    cb = (ev.cost or {}).get("cost_breakdown") if ev.feasible else None
    t = iv.get("total_time_s")
    if cb and t and t["p50"] > 0:
        compute, total = float(cb["compute_cost"]), float(cb["total_cost"])
        rest = total - compute
        iv["total_cost_usd"] = {**{q: rest + compute * t[q] / t["p50"] for q in ("p10", "p50", "p90")},
                                "interval_regime": t.get("interval_regime")}
    return iv


def evaluate(job, knobs=None, *, fixes: bool = True, price: bool = True, max_gpus: int = 1024) -> Evaluation:
    """memory -> (fits) time -> (platform) cost -> risk, for one job."""
    from sizeup.core.memory import suggest_fixes

    if price and job.pricing.platform:
        from sizeup.plan import check_offers

        check_offers(job)
    ov = overheads_for(job)
    job, mem = fit_sharding(job, ov)
    ev = Evaluation(job, mem)
    if mem.fits is False:
        if fixes:
            ev.fixes = suggest_fixes(job.model, job.setup, mem.gpu_memory_bytes, ov, max_gpus=max_gpus,
                                     kernel=job.execution.memory_kernel, loss=job.execution.loss)
        return ev
    if job.gpu is None or job.gpu.vendor == "generic":
        return ev
    knobs = knobs or knobs_for(job)
    if job.workload is not None:
        ev.train = train_for(job, knobs)
        ev.step = ev.train.step
        if price and job.pricing.platform:
            from sizeup.plan import job_cost

            ev.cost = job_cost(ev.train, job)
    else:
        ev.step = step_for(job, knobs)
    return ev
