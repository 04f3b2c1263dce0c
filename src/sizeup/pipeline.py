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


def sharding_ladder(framework: str) -> tuple:
    """The shardings tried in order when a job does not pin --zero: FSDP frameworks SHARD_GRAD_OP -> FULL_SHARD,
    the others none -> ZeRO-1 -> 2 -> 3 (the least sharding that fits is the default of every command)."""
    return FSDP_LADDER if framework in ("fsdp", "torchtitan") else SHARDING_LADDER


def fit_sharding(job, overheads=None):
    """(job, memory): when the user did not choose a sharding and the job does not fit with its default, the least
    sharding that fits (ZeRO-1 -> 2 -> 3; FSDP frameworks: SHARD_GRAD_OP -> FULL_SHARD), stated in job.defaults."""
    mem = memory_for(job, overheads)
    if mem.fits is not False or "zero" in job.given or job.parallelism.dp < 2:
        return job, mem
    ladder = sharding_ladder(job.execution.framework)
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


def figure_intervals(setup, model_id: str, gpu_id: str, timing_kernel: str, memory_kernel: str,
                     figures: dict[str, tuple[str, float]], cost: tuple[float, float, str] | None = None) -> dict:
    """P10/P50/P90 of figures {name: (quantity class, value)}: 'time' / 'throughput' / 'mfu' in the job's timing
    regime, 'memory' in its memory regime (calibration.yaml `intervals`: leave-one-source-out residual quantiles of
    quantity class x kernel profile x GPU-count bucket; time = 1 / rate factors). `cost` = (compute_usd, total_usd,
    name of the time figure): the total cost's compute part scales with that time's interval, storage and egress
    are held at their estimate: cost_q = rest + compute x time_q / time_p50."""
    from sizeup.calib import interval_dict, job_signature, load, timing_profile

    cal = load()
    sig = job_signature(setup, model_id, gpu_id, timing_kernel)
    regimes = {"memory": {"profile": memory_kernel, "gpus": setup.gpus, "job": sig}}
    timing = {"profile": timing_profile(timing_kernel), "gpus": setup.gpus, "job": sig}
    iv = {name: interval_dict(klass, regimes.get(klass, timing), value, cal)
          for name, (klass, value) in figures.items() if value is not None}
    if cost is not None and iv.get(cost[2]) and iv[cost[2]]["p50"] > 0:
        compute, t = float(cost[0]), iv[cost[2]]
        rest = float(cost[1]) - compute
        iv["total_cost_usd"] = {**{q: rest + compute * t[q] / t["p50"] for q in ("p10", "p50", "p90")},
                                "interval_regime": t.get("interval_regime")}
    return iv


def serving_intervals(gpus: int, figures: dict[str, tuple[str, float | None]]) -> dict:
    """P10/P50/P90 of serving figures {name: (kind, value)}: kind 'rate' (tokens/s, requests/s) or 'time' (TTFT,
    TPOT, ITL, latency) take the calibration's inference_rate / inference_time intervals (leave-one-source-out
    residuals of the dev set's inference rows, by GPU-count bucket); 'cost' ($ per token: GPU time per token) takes
    the rate factors inverted, P10 = cost / f90, P50 = cost / f50, P90 = cost / f10."""
    from sizeup.calib import interval_dict, interval_factors

    regime = {"gpus": gpus}
    rate = interval_factors("inference_rate", regime)
    out: dict[str, dict] = {}
    for name, (kind, value) in figures.items():
        if value is None:
            continue
        if kind == "cost":
            if rate is not None and rate[0] > 0:
                out[name] = {"p10": value / rate[2], "p50": value / rate[1], "p90": value / rate[0],
                             "interval_regime": rate[3]}
            continue
        out[name] = interval_dict("inference_rate" if kind == "rate" else "inference_time", regime, value)
    return out


def intervals_for(ev: Evaluation) -> dict:
    """P10/P50/P90 of every figure the evaluation estimates: {figure: {p10, p50, p90, interval_regime}} (peak memory
    also for a job that does not fit: the figure it needs is an estimate too); see `figure_intervals`."""
    job = ev.job
    if ev.memory is None:
        return {}
    figures: dict[str, tuple[str, float]] = {}
    if ev.step is not None:
        step = ev.step
        figures.update(step_time_s=("time", step.step_time_s), tokens_per_s=("throughput", step.tokens_per_s),
                       tokens_per_s_per_gpu=("throughput", step.tokens_per_s_per_gpu), mfu=("mfu", step.mfu))
        if ev.train is not None:
            figures.update(total_time_s=("time", ev.train.total_time_s), gpu_hours=("time", ev.train.gpu_hours))
    figures["peak_reserved_bytes"] = ("memory", ev.memory.peak_reserved_bytes)
    cb = (ev.cost or {}).get("cost_breakdown") if ev.feasible else None
    cost = (cb["compute_cost"], cb["total_cost"], "total_time_s") if cb else None
    return figure_intervals(job.setup, job.model.id, job.gpu.id if job.gpu is not None else "",
                            job.execution.timing_kernel, job.execution.memory_kernel, figures, cost)


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
