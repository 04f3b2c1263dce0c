"""Dollar cost of a training run: billing, whole instances, storage, egress, spot and failures, energy.

PURE: takes a time estimate and plain numbers (an `Offer` built from the platform catalog or from
flags, and `CostKnobs` built from catalog/data/energy.yaml or flags) and returns a frozen
`CostEstimate` whose every figure is explained by a `Term`.

Symbols used below:
  T    compute time of the run without interruptions (s), from the timing model
  n    instances rented = ceil(gpus / gpus_per_instance)   (you rent whole instances)
  p    price of one instance (USD/h) for the chosen pricing kind (on-demand, spot, reserved)
  Λ    failure rate of the whole job (1/s) = n * λ_spot + gpus / MTBF_gpu
  δ    time to write one checkpoint (s) = C / (n * B_write)   (each instance writes its shard)
  τ    checkpoint interval (s) = sqrt(2 δ / Λ)                  (Young 1974; Daly 2006 first order)
  R    restart time after a failure (s): re-acquire, reload, warm up
  W    expected wall-clock = T (1 + δ/τ) / (1 − Λ (R + τ/2))   (same form as llm-calc's
       T/(1 − f N (t_fail + 1/(2 f_ckpt))), peers.md; lost work on a failure is τ/2 on average)
  billed = max(min_billing, ceil(W / increment) * increment) + n λ_spot W * increment / 2
         (each spot preemption starts a new billed session, rounded up again: half an increment on average)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Mapping

from sizeup.core.explain import Term
from sizeup.core.types import Optimizer, Peft, Precision

HOUR_S = 3600.0
MONTH_S = 30.4375 * 86400.0  # mean Gregorian month, as in sizeup.units
GB = 1e9

PRICING_KINDS = ("on-demand", "spot", "reserved")

YOUNG_SOURCE = ("Young 1974, 'A first order approximation to the optimum checkpoint interval', CACM 17(9); "
                "Daly 2006, FGCS 22(3), eq. 37 first-order term")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Offer:
    """One rentable instance type at one price kind. Prices are per INSTANCE hour."""

    platform: str
    instance: str
    gpu_id: str
    gpus_per_instance: int
    pricing: str
    price_usd_per_hour: float
    price_as_of: str
    price_source: str
    billing_increment_s: float = 1.0
    min_billing_s: float = 0.0
    billing_source: str = ""
    preemption_rate_per_hour: float = 0.0
    preemption_source: str = ""
    storage_usd_per_gb_month: float = 0.0
    storage_source: str = ""
    storage_price_known: bool = True
    """False: the catalog has no storage price here, so storage cost is unknown (reported n/a, not $0)."""
    egress_usd_per_gb: float = 0.0
    egress_free_gb: float = 0.0
    egress_source: str = ""
    restart_s: float = 0.0
    """Seconds lost per restart on this platform (0 = use CostKnobs.restart_s)."""
    restart_source: str = ""
    note: str = ""

    @property
    def price_usd_per_gpu_hour(self) -> float:
        return self.price_usd_per_hour / max(1, self.gpus_per_instance)

    def with_(self, **changes) -> "Offer":
        return replace(self, **changes)


@dataclass(frozen=True)
class CostKnobs:
    """Assumptions that are data (catalog/data/energy.yaml) or flags, never constants in code."""

    gpu_mtbf_h: float = 0.0
    """Mean time between job-interrupting failures per GPU (h); 0 disables hardware failures."""
    restart_s: float = 600.0
    checkpoint_write_bytes_per_s: float = 1e9
    """Write bandwidth of ONE instance to checkpoint storage."""
    checkpoint_interval_s: float = 0.0
    """0 = Young/Daly optimum; >0 = fixed interval given by the user."""
    checkpoints_kept: int = 1
    log_bytes: float = 0.0
    retain_s: float = 0.0
    """Storage kept after the run ends (final checkpoint + dataset), e.g. a month."""
    power_fraction_of_tdp: float = 1.0
    pue: float = 1.0
    gco2_per_kwh: float = 0.0
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointSize:
    bytes: float
    bytes_per_trainable_param: float
    trainable_params: float
    terms: tuple[Term, ...] = ()


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CostEstimate:
    platform: str
    instance: str
    gpu_id: str
    pricing: str
    gpus: int
    instances: int
    gpus_paid: int
    price_usd_per_hour: float
    """Per instance."""
    price_usd_per_gpu_hour: float
    price_as_of: str
    price_source: str
    compute_s: float
    wall_clock_s: float
    billed_s: float
    spot_overhead_s: float
    """wall_clock_s - compute_s: checkpoint writes, lost work and restarts (spot and failures)."""
    expected_interruptions: float
    checkpoint_interval_s: float
    checkpoint_write_s: float
    compute_cost_usd: float
    storage_cost_usd: float
    """0 in the arithmetic when `storage_cost_known` is False (no storage price): reports show n/a."""
    egress_cost_usd: float
    total_cost_usd: float
    energy_kwh: float | None
    co2_kg: float | None
    feasible: bool
    reasons: tuple[str, ...] = ()
    terms: tuple[Term, ...] = ()
    storage_cost_known: bool = True

    @property
    def billed_hours(self) -> float:
        return self.billed_s / HOUR_S

    @property
    def wall_clock_hours(self) -> float:
        return self.wall_clock_s / HOUR_S


# --------------------------------------------------------------------------- pieces


def instances_needed(gpus: int, gpus_per_instance: int) -> int:
    """Whole instances: 2 GPUs on an 8-GPU instance rent one instance (8 GPUs paid)."""
    return max(1, math.ceil(gpus / max(1, gpus_per_instance)))


def billed_seconds(wall_s: float, increment_s: float, min_s: float) -> float:
    """Provider billing: round up to the increment, never below the minimum (hardware_notes.md §5)."""
    increment_s = max(increment_s, 1e-9)
    # tiny epsilon so that 3600.0000000001 s does not round to two hours by float noise
    units = math.ceil(wall_s / increment_s - 1e-9)
    return max(min_s, units * increment_s)


# bytes per parameter in a training checkpoint, by what the optimizer keeps (ZeRO paper §3.1:
# 2 B fp16 weights + 4 B fp32 master + 4+4 B Adam moments = 16 B incl. 2 B grads; grads are not saved)
_WEIGHT_BYTES = {
    Precision.FP32: 4.0, Precision.TF32: 4.0, Precision.FP16_MIXED: 2.0,
    Precision.BF16_MIXED: 2.0, Precision.BF16: 2.0, Precision.FP8: 2.0,
}
_MASTER_BYTES = {
    Precision.FP32: 0.0, Precision.TF32: 0.0, Precision.FP16_MIXED: 4.0,
    Precision.BF16_MIXED: 4.0, Precision.BF16: 0.0, Precision.FP8: 4.0,
}
# moments per parameter: AdamW m+v, 8-bit Adam (Dettmers 2021: 2 x 1 B + block scales),
# SGD/Lion one momentum buffer, Adafactor factored rows+cols (~0 per parameter)
_OPT_STATES = {Optimizer.ADAMW: 2.0, Optimizer.ADAM8BIT: 0.0, Optimizer.SGD: 1.0,
               Optimizer.LION: 1.0, Optimizer.ADAFACTOR: 0.0}
_OPT_FIXED_BYTES = {Optimizer.ADAM8BIT: 2.0}


def optimizer_bytes_per_param(precision: Precision, optimizer: Optimizer) -> float:
    """Optimizer state bytes per trainable parameter: moments in fp32 (bf16 in pure-bf16 training)."""
    state_bytes = 2.0 if precision == Precision.BF16 else 4.0
    return _OPT_STATES[optimizer] * state_bytes + _OPT_FIXED_BYTES.get(optimizer, 0.0)


def checkpoint_size(total_params: float, trainable_params: float, precision: Precision,
                    optimizer: Optimizer, peft: Peft = Peft.NONE, ranks: int = 1,
                    rng_bytes_per_rank: float = 16e3) -> CheckpointSize:
    """Bytes of one resumable checkpoint: weights + fp32 master + optimizer moments + RNG state.

    With PEFT only the adapters (and their optimizer state) are saved; the frozen base is reloaded
    from the hub (Hugging Face PEFT `save_pretrained` saves adapter weights only).
    Source: ZeRO paper (Rajbhandari et al. 2020) §3.1 for the per-parameter model states;
    peers.md "checkpoint ~14-16 B/param with optimizer state".
    """
    w = _WEIGHT_BYTES[precision]
    master = _MASTER_BYTES[precision]
    opt = optimizer_bytes_per_param(precision, optimizer)
    per_param = w + master + opt
    params_saved = trainable_params if peft != Peft.NONE else total_params
    total = params_saved * per_param + ranks * rng_bytes_per_rank
    term = Term(
        "checkpoint/bytes", total, "B",
        "P_saved * (b_weight + b_master + b_optimizer) + ranks * b_rng",
        {"P_saved": params_saved, "b_weight": w, "b_master": master, "b_optimizer": opt,
         "ranks": ranks, "b_rng": rng_bytes_per_rank, "peft": str(peft)},
        "ZeRO (Rajbhandari et al. 2020) §3.1 model states; gradients are not checkpointed",
    )
    return CheckpointSize(total, per_param, params_saved, (term,))


# the checkpoint model's validity limits (see cost_kernel)
VALID_INTERRUPTIONS_PER_INTERVAL = 1.0
MAX_LOST_FRACTION = 0.5


def young_daly_interval_s(checkpoint_write_s: float, failure_rate_per_s: float) -> float:
    """τ = sqrt(2 δ M), M = 1/Λ (Young 1974). inf when nothing fails."""
    if failure_rate_per_s <= 0:
        return math.inf
    return math.sqrt(2.0 * checkpoint_write_s / failure_rate_per_s)


def parse_as_of(as_of: str) -> date | None:
    """First YYYY-MM-DD or YYYY-MM in an as_of string ('2026-07-28 price list' -> 2026-07-28)."""
    m = re.search(r"(\d{4})-(\d{2})(?:-(\d{2}))?", str(as_of or ""))
    if not m:
        return None
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
    try:
        return date(year, month, day)
    except ValueError:
        return None


def price_age_days(as_of: str, today: date) -> int | None:
    """Days between the price's as_of date and `today` (given by the caller: core never reads the clock)."""
    d = parse_as_of(as_of)
    return None if d is None else (today - d).days


def price_age_warning(offer: Offer, today: date, max_age_days: int) -> str | None:
    age = price_age_days(offer.price_as_of, today)
    label = f"{offer.platform} {offer.instance} {offer.pricing}"
    if age is None:
        return f"{label}: price date unknown (as_of {offer.price_as_of!r}, source {offer.price_source})"
    if age > max_age_days:
        return (f"{label}: price is {age} days old (as_of {offer.price_as_of}, source {offer.price_source}); "
                f"older than --max-price-age-days {max_age_days}, check the current price")
    return None


def usd_per_tbps_hour(price_usd_per_gpu_hour: float, hbm_bytes_per_s: float) -> float | None:
    """Seed 003's cost per memory bandwidth: $/GPU-h divided by HBM TB/s."""
    if not hbm_bytes_per_s or hbm_bytes_per_s <= 0:
        return None
    return price_usd_per_gpu_hour / (hbm_bytes_per_s / 1e12)


# --------------------------------------------------------------------------- main entry


def cost_kernel(compute_s, gpus, offer: Offer, knobs: CostKnobs, checkpoint_bytes, final_weights_bytes: float = 0.0,
                dataset_bytes: float = 0.0) -> dict:
    """The cost arithmetic, array-agnostic: `compute_s`, `gpus` and `checkpoint_bytes` may be numpy arrays (the plan
    search) or numbers (`estimate_cost`). One implementation serves both; every formula is stated in estimate_cost's terms.
    """
    import numpy as np

    T = np.asarray(compute_s, dtype=float)
    g = np.asarray(gpus, dtype=float)
    C = np.asarray(checkpoint_bytes, dtype=float) + 0.0 * g
    n = np.maximum(1.0, np.ceil(g / max(1, offer.gpus_per_instance)))               # whole instances
    spot = offer.preemption_rate_per_hour / HOUR_S if offer.pricing == "spot" else 0.0
    hw = g / (knobs.gpu_mtbf_h * HOUR_S) if knobs.gpu_mtbf_h > 0 else 0.0 * g
    rate = n * spot + hw                                                             # Λ = n λ_spot + gpus / MTBF
    delta = np.where(C > 0, C / (max(knobs.checkpoint_write_bytes_per_s, 1.0) * n), 0.0)  # δ = C / (n B_write)
    with np.errstate(divide="ignore", invalid="ignore"):
        if knobs.checkpoint_interval_s > 0:
            tau = np.full_like(T + 0.0 * g, knobs.checkpoint_interval_s)
        else:                                                                        # τ = sqrt(2 δ / Λ) (Young 1974)
            tau = np.where(delta > 0, np.where(rate > 0, np.sqrt(2.0 * delta / np.where(rate > 0, rate, 1.0)), np.inf),
                           np.where(rate <= 0, np.inf, 0.0))
        tau = np.where(T > 0, np.minimum(tau, T), 0.0)                               # at most one save per run
        ckpt = np.where(tau > 0, T * delta / np.where(tau > 0, tau, 1.0), 0.0)
        n_ckpt = np.where(tau > 0, np.ceil(T / np.where(tau > 0, tau, 1.0) - 1e-9), 1.0)
    restart = offer.restart_s if offer.restart_s > 0 else knobs.restart_s
    loss_per_failure = restart + tau / 2.0
    denom = 1.0 - rate * loss_per_failure
    # Validity of the first-order model (Young 1974; Daly 2006, FGCS 22(3) sec. 3: it assumes at most one failure per
    # checkpoint interval, Λτ << 1): with more than VALID_INTERRUPTIONS_PER_INTERVAL expected interruptions per
    # interval, or more than MAX_LOST_FRACTION of the time lost to restarts and redone work, the run does not make
    # reliable progress and no wall-clock is invented for it.
    with np.errstate(invalid="ignore"):
        per_interval = np.where(np.isfinite(tau), rate * tau, 0.0)
    stalled = (denom <= 1.0 - MAX_LOST_FRACTION) | (per_interval > VALID_INTERRUPTIONS_PER_INTERVAL)
    denom = np.where(stalled, 1.0 - MAX_LOST_FRACTION, denom)
    wall = np.where(rate > 0, (T + ckpt) / denom, T + ckpt)                         # W = T(1+δ/τ)/(1-Λ(R+τ/2))
    # each spot preemption ends the instance's billed session; the replacement is rounded up again: on average
    # half an increment (hardware failures restart the job, usually on the same instances: no new session)
    preemptions = n * spot * wall
    waste = preemptions * offer.billing_increment_s / 2.0 if offer.billing_increment_s > 1 else 0.0 * wall
    inc = max(offer.billing_increment_s, 1e-9)
    billed = np.maximum(offer.min_billing_s, np.ceil(wall / inc - 1e-9) * inc) + waste
    compute_usd = n * offer.price_usd_per_hour * billed / HOUR_S
    kept = np.where(C > 0, np.maximum(1.0, np.minimum(knobs.checkpoints_kept, np.maximum(1.0, n_ckpt))), 0.0)
    during_gb = (dataset_bytes + kept * C + knobs.log_bytes) / GB
    after_gb = (dataset_bytes + np.where(kept > 0, C, 0.0) + knobs.log_bytes) / GB
    storage_usd = (during_gb * wall / MONTH_S + after_gb * knobs.retain_s / MONTH_S) * offer.storage_usd_per_gb_month
    egress_usd = max(0.0, final_weights_bytes / GB - offer.egress_free_gb) * offer.egress_usd_per_gb + 0.0 * wall
    return {"instances": n, "rate_per_s": rate, "interruptions_per_interval": per_interval, "spot_rate_per_s": spot + 0.0 * wall, "checkpoint_write_s": delta,
            "checkpoint_interval_s": tau, "checkpoint_overhead_s": ckpt, "restart_s": restart,
            "loss_per_failure_s": loss_per_failure, "stalled": stalled, "wall_clock_s": wall,
            "preemptions": preemptions, "billed_s": billed, "compute_usd": compute_usd, "checkpoints_kept": kept,
            "storage_usd": storage_usd, "egress_usd": egress_usd, "total_usd": compute_usd + storage_usd + egress_usd,
            "checkpoint_bytes": C}


def estimate_cost(
    compute_s: float,
    gpus: int,
    offer: Offer,
    *,
    checkpoint_bytes: float = 0.0,
    final_weights_bytes: float = 0.0,
    dataset_bytes: float = 0.0,
    gpu_tdp_w: float | None = None,
    knobs: CostKnobs = CostKnobs(),
) -> CostEstimate:
    """Cost of running `compute_s` seconds of uninterrupted training on `gpus` GPUs rented as `offer`.

    Returns the expected wall-clock (with checkpoint writes, spot preemptions and hardware failures),
    the billed time, compute + storage + egress dollars, and optional energy (kWh) and CO2 (kg).
    The arithmetic is `cost_kernel`; this wrapper checks inputs and explains every figure.
    """
    if compute_s < 0 or not math.isfinite(compute_s):
        raise ValueError(f"compute_s must be a finite number >= 0, got {compute_s}")
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    k = {key: (bool(v) if key == "stalled" else float(v))
         for key, v in cost_kernel(compute_s, gpus, offer, knobs, checkpoint_bytes, final_weights_bytes,
                                   dataset_bytes).items()}
    terms: list[Term] = []
    reasons: list[str] = []
    price_src = f"{offer.price_source} (as_of {offer.price_as_of})"
    n = int(k["instances"])
    gpus_paid = n * offer.gpus_per_instance
    rate_s, delta_s, tau_s, wall_s = k["rate_per_s"], k["checkpoint_write_s"], k["checkpoint_interval_s"], k["wall_clock_s"]
    terms.append(Term("cost/instances", n, "instances", "n = ceil(gpus / gpus_per_instance)",
                      {"gpus": gpus, "gpus_per_instance": offer.gpus_per_instance, "instance": offer.instance},
                      "whole instances are rented"))
    terms.append(Term("cost/failure_rate", rate_s * HOUR_S, "1/h",
                      "Λ = n * λ_spot + gpus / MTBF_gpu",
                      {"n": n, "λ_spot_per_h": k["spot_rate_per_s"] * HOUR_S, "gpus": gpus, "MTBF_gpu_h": knobs.gpu_mtbf_h},
                      f"λ_spot: {offer.preemption_source or 'platform catalog'}; "
                      f"MTBF: {knobs.sources.get('gpu_mtbf_h', 'energy.yaml reliability')}"))
    terms.append(Term("cost/checkpoint_write", delta_s, "s", "δ = C / (n * B_write)",
                      {"C_bytes": checkpoint_bytes, "n": n, "B_write_bytes_per_s": knobs.checkpoint_write_bytes_per_s},
                      knobs.sources.get("checkpoint_write_bytes_per_s", "sharded save: each instance writes its shard")))
    if knobs.checkpoint_interval_s > 0:
        tau_formula, tau_src = "τ = user --checkpoint-interval", "flag"
    else:
        tau_formula, tau_src = "τ = sqrt(2 δ / Λ)", YOUNG_SOURCE
    restart_src = offer.restart_source if offer.restart_s > 0 else knobs.sources.get("restart_s", "CostKnobs")
    if k["stalled"]:
        reasons.append(
            f"expected interruptions every {format_h(1 / rate_s)} ({k['interruptions_per_interval']:.2g} per checkpoint "
            f"interval) and each costs {format_h(k['loss_per_failure_s'])} (restart + half an interval): the run would "
            "not make reliable progress (first-order checkpoint model invalid); use on-demand or reserved capacity, "
            "fewer instances, or faster checkpoints"
        )
    interruptions = rate_s * wall_s
    terms.append(Term("cost/checkpoint_interval", tau_s, "s", tau_formula + ", capped at T",
                      {"δ_s": delta_s, "Λ_per_s": rate_s, "T_s": compute_s}, tau_src))
    terms.append(Term("time/wall_clock", wall_s, "s", "W = T (1 + δ/τ) / (1 − Λ (R + τ/2))",
                      {"T_s": compute_s, "δ_s": delta_s, "τ_s": tau_s, "Λ_per_s": rate_s, "R_s": k["restart_s"]},
                      f"Young/Daly first-order model; same form as llm-calc (peers.md); R: {restart_src}"))
    terms.append(Term("cost/expected_interruptions", interruptions, "count", "Λ * W",
                      {"Λ_per_s": rate_s, "W_s": wall_s}))
    billed_s, compute_usd = k["billed_s"], k["compute_usd"]
    terms.append(Term("cost/billed_time", billed_s, "s",
                      "max(min_billing, ceil(W / increment) * increment) + preemptions * increment / 2",
                      {"W_s": wall_s, "increment_s": offer.billing_increment_s, "min_billing_s": offer.min_billing_s,
                       "preemptions": k["preemptions"]},
                      offer.billing_source or "platform catalog billing"))
    terms.append(Term("cost/compute", compute_usd, "USD", "n * p * billed_h",
                      {"n": n, "p_usd_per_instance_hour": offer.price_usd_per_hour, "billed_h": billed_s / HOUR_S,
                       "pricing": offer.pricing, "as_of": offer.price_as_of},
                      price_src))
    storage_usd, egress_usd = k["storage_usd"], k["egress_usd"]
    terms.append(Term("cost/storage", storage_usd, "USD",
                      "s_gb_month * [(D + k*C + logs) * W + (D + C + logs) * retain] / month",
                      {"D_bytes": dataset_bytes, "k_checkpoints_kept": int(k["checkpoints_kept"]), "C_bytes": checkpoint_bytes,
                       "logs_bytes": knobs.log_bytes, "W_s": wall_s, "retain_s": knobs.retain_s,
                       "s_usd_per_gb_month": offer.storage_usd_per_gb_month},
                      offer.storage_source or "platform catalog storage price"))
    terms.append(Term("cost/egress", egress_usd, "USD", "e_usd_per_gb * max(0, weights_GB - free_GB)",
                      {"weights_bytes": final_weights_bytes, "free_GB": offer.egress_free_gb,
                       "e_usd_per_gb": offer.egress_usd_per_gb},
                      offer.egress_source or "platform catalog egress price"))
    total_usd = k["total_usd"]
    terms.append(Term("cost/total", total_usd, "USD", "compute + storage + egress",
                      {"compute": compute_usd, "storage": storage_usd, "egress": egress_usd}))

    # ---- energy and carbon (informational: the rental price already includes power)
    energy_kwh = co2_kg = None
    if gpu_tdp_w:
        energy_kwh = gpus * gpu_tdp_w * knobs.power_fraction_of_tdp * knobs.pue * wall_s / 3.6e6
        terms.append(Term("energy/kwh", energy_kwh, "kWh", "gpus * TDP * utilisation * PUE * W_h / 1000",
                          {"gpus": gpus, "TDP_W": gpu_tdp_w, "utilisation": knobs.power_fraction_of_tdp,
                           "PUE": knobs.pue, "W_h": wall_s / HOUR_S},
                          knobs.sources.get("pue", "energy.yaml")))
        if knobs.gco2_per_kwh > 0:
            co2_kg = energy_kwh * knobs.gco2_per_kwh / 1000.0
            terms.append(Term("energy/co2", co2_kg, "kg CO2", "kWh * gCO2_per_kWh / 1000",
                              {"kWh": energy_kwh, "gCO2_per_kWh": knobs.gco2_per_kwh},
                              knobs.sources.get("gco2_per_kwh", "energy.yaml")))

    return CostEstimate(
        platform=offer.platform, instance=offer.instance, gpu_id=offer.gpu_id, pricing=offer.pricing,
        gpus=gpus, instances=n, gpus_paid=gpus_paid,
        price_usd_per_hour=offer.price_usd_per_hour, price_usd_per_gpu_hour=offer.price_usd_per_gpu_hour,
        price_as_of=offer.price_as_of, price_source=offer.price_source,
        compute_s=compute_s, wall_clock_s=wall_s, billed_s=billed_s, spot_overhead_s=wall_s - compute_s,
        expected_interruptions=interruptions, checkpoint_interval_s=tau_s, checkpoint_write_s=delta_s,
        compute_cost_usd=compute_usd, storage_cost_usd=storage_usd, egress_cost_usd=egress_usd,
        total_cost_usd=total_usd, energy_kwh=energy_kwh, co2_kg=co2_kg,
        feasible=not reasons, reasons=tuple(reasons), terms=tuple(terms),
        storage_cost_known=offer.storage_price_known,
    )


def format_h(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"
    if seconds >= HOUR_S:
        return f"{seconds / HOUR_S:.3g} h"
    return f"{seconds / 60:.3g} min"


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Phase:
    name: str
    months: float
    runs_per_month: float
    cost_per_run_usd: float


@dataclass(frozen=True)
class PhaseCost:
    name: str
    months: float
    runs_per_month: float
    cost_per_run_usd: float
    monthly_usd: float
    total_usd: float


@dataclass(frozen=True)
class BudgetPlan:
    phases: tuple[PhaseCost, ...]
    months: float
    runs: float
    total_usd: float
    terms: tuple[Term, ...] = ()


def plan_budget(phases: tuple[Phase, ...] | list[Phase]) -> BudgetPlan:
    """Monthly plan (seed 004): monthly = runs/month * $/run; phase total = monthly * months."""
    out, terms = [], []
    for ph in phases:
        monthly = ph.runs_per_month * ph.cost_per_run_usd
        total = monthly * ph.months
        out.append(PhaseCost(ph.name, ph.months, ph.runs_per_month, ph.cost_per_run_usd, monthly, total))
        terms.append(Term(f"budget/{ph.name}", total, "USD", "runs_per_month * cost_per_run * months",
                          {"runs_per_month": ph.runs_per_month, "cost_per_run": ph.cost_per_run_usd,
                           "months": ph.months}))
    total = sum(p.total_usd for p in out)
    terms.append(Term("budget/total", total, "USD", "sum of phase totals", {p.name: p.total_usd for p in out}))
    return BudgetPlan(tuple(out), sum(p.months for p in out), sum(p.runs_per_month * p.months for p in out),
                      total, tuple(terms))


@dataclass(frozen=True)
class BuyVsRent:
    purchase_usd: float
    power_w: float
    pue: float
    usd_per_kwh: float
    amortize_months: float
    utilization: float
    rent_usd_per_hour: float
    own_energy_usd_per_hour: float
    own_usd_per_used_hour: float
    """(purchase/amortize + energy) per hour actually used, at the given utilization."""
    break_even_hours: float | None
    """Hours of use at which buying (purchase + energy) costs as much as renting; None if never."""
    used_hours: float
    own_total_usd: float
    rent_total_usd: float
    cheaper: str
    terms: tuple[Term, ...] = ()


def buy_vs_rent(purchase_usd: float, power_w: float, pue: float, usd_per_kwh: float,
                amortize_months: float, utilization: float, rent_usd_per_hour: float,
                used_hours: float | None = None) -> BuyVsRent:
    """Break-even hours H where purchase + H * energy = H * rent  ->  H = purchase / (rent - energy).

    energy per used hour = power_W * PUE / 1000 * $/kWh. Over the amortization period the card is
    used `utilization` of the time (or `used_hours` when given, e.g. the hours a budget plan needs).
    Source: plain total-cost-of-ownership arithmetic; electricity and PUE in catalog/data/energy.yaml.
    """
    energy_h = power_w * pue / 1000.0 * usd_per_kwh
    margin = rent_usd_per_hour - energy_h
    break_even = purchase_usd / margin if margin > 0 else None
    hours = used_hours if used_hours is not None else amortize_months * MONTH_S / HOUR_S * utilization
    own_total = purchase_usd + energy_h * hours
    rent_total = rent_usd_per_hour * hours
    per_used_hour = own_total / hours if hours > 0 else math.inf
    terms = (
        Term("own/energy_per_hour", energy_h, "USD/h", "P_W * PUE / 1000 * usd_per_kwh",
             {"P_W": power_w, "PUE": pue, "usd_per_kwh": usd_per_kwh}),
        Term("own/break_even_hours", break_even if break_even is not None else math.inf, "h",
             "purchase / (rent_per_hour - energy_per_hour)",
             {"purchase": purchase_usd, "rent_per_hour": rent_usd_per_hour, "energy_per_hour": energy_h}),
        Term("own/used_hours", hours, "h", "hours the plan's runs need (given)", {"used_hours": hours})
        if used_hours is not None else
        Term("own/used_hours", hours, "h", "amortize_months * hours_per_month * utilization",
             {"amortize_months": amortize_months, "hours_per_month": MONTH_S / HOUR_S, "utilization": utilization}),
        Term("own/total", own_total, "USD", "purchase + energy_per_hour * used_hours",
             {"purchase": purchase_usd, "energy_per_hour": energy_h, "used_hours": hours}),
        Term("rent/total", rent_total, "USD", "rent_per_hour * used_hours",
             {"rent_per_hour": rent_usd_per_hour, "used_hours": hours}),
    )
    return BuyVsRent(purchase_usd, power_w, pue, usd_per_kwh, amortize_months, utilization, rent_usd_per_hour,
                     energy_h, per_used_hour, break_even, hours, own_total, rent_total,
                     "rent" if rent_total <= own_total else "buy", terms)
