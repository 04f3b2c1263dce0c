"""Audit a claimed training plan: does its own arithmetic hold, and is its implied MFU physical?

Checks (each carries the arithmetic it did):
  work / throughput = time            (tokens or samples over the claimed throughput vs the claimed hours)
  GPU-hours = wall-clock x GPUs
  tokens/s = samples/s x tokens per sample
  implied MFU = F * N * D / (GPU-seconds * peak)   F = 6 full training (Kaplan et al. 2020 C ~ 6ND);
                                                   F = 4 for LoRA/QLoRA (forward 2N + activation grads 2N,
                                                   no weight grads: Hu et al. 2021 / Dettmers et al. 2023)
      pass if mfu_min <= MFU <= mfu_max (data: AuditLimits; defaults from peers.md idea 4 and the
      measured MAMF ceiling of the GPU: no run can beat the best achievable matmul fraction)
  cost = GPU-hours x price
  claimed peak memory <= GPU memory; claimed vs modelled memory and time within a factor
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sizeup.core.explain import Term

PASS, FAIL, INCONSISTENT = "pass", "fail", "inconsistent"


@dataclass(frozen=True)
class AuditLimits:
    """Tolerances, as data. mfu_max=None means: the GPU's best measured matmul efficiency."""

    rel_tolerance: float = 0.25
    mfu_min: float = 0.05
    mfu_max: float | None = None
    model_factor: float = 2.0
    source: str = "peers.md idea 4 (flag implied MFU outside 5-60%); hardware_notes.md sec. 4 (MAMF ceilings)"


@dataclass(frozen=True)
class Claims:
    """A plan as claimed. Any claimed_* may be None (not claimed)."""

    params: float
    tokens: float
    samples: float | None
    tokens_per_sample: float | None
    gpu_name: str
    gpus: int
    peak_flops_per_s: float
    gpu_memory_bytes: float
    mfu_ceiling: float
    flops_per_token_factor: float = 6.0
    claimed_throughput_samples_per_s: float | None = None
    claimed_throughput_tokens_per_s: float | None = None
    claimed_wall_clock_hours: float | None = None
    claimed_gpu_hours: float | None = None
    claimed_cost_usd: float | None = None
    claimed_price_per_gpu_hour: float | None = None
    claimed_peak_memory_bytes: float | None = None
    modelled_peak_memory_bytes: float | None = None
    modelled_time_s: float | None = None
    modelled_setup: str = ""
    catalog_price_per_gpu_hour: float | None = None


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    message: str
    arithmetic: str
    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AuditResult:
    checks: tuple[Check, ...]
    implied_mfu: dict
    status: str
    terms: tuple[Term, ...]


# Largest GPU count a claim may state (as for every --gpus flag): far above any real cluster.
MAX_CLAIM_GPUS = 1 << 20


def check_claims(c: Claims) -> None:
    """Refuse claims no arithmetic can be done on (one SizeupError line naming the field): sizes and counts
    must be finite and > 0, claimed figures finite and > 0 (cost and price >= 0), GPUs a whole number."""
    import math

    from sizeup.errors import SizeupError

    def need(name: str, value, allow_zero: bool = False, optional: bool = False) -> None:
        if value is None and optional:
            return
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (value >= 0 if allow_zero else value > 0))
        if not ok:
            raise SizeupError(f"claims: {name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")

    need("params", c.params)
    need("tokens", c.tokens)
    need("samples", c.samples, optional=True)
    need("tokens_per_sample", c.tokens_per_sample, optional=True)
    if isinstance(c.gpus, bool) or not isinstance(c.gpus, int) or not 1 <= c.gpus <= MAX_CLAIM_GPUS:
        raise SizeupError(f"claims: gpus must be a whole number from 1 to {MAX_CLAIM_GPUS:,}, got {c.gpus!r}")
    need("the GPU's memory", c.gpu_memory_bytes)
    need("the GPU's peak FLOP/s", c.peak_flops_per_s, allow_zero=True)
    for name in ("claimed_throughput_samples_per_s", "claimed_throughput_tokens_per_s", "claimed_wall_clock_hours",
                 "claimed_gpu_hours", "claimed_peak_memory_bytes"):
        need(name.removeprefix("claimed_"), getattr(c, name), optional=True)
    for name in ("claimed_cost_usd", "claimed_price_per_gpu_hour"):
        need(name.removeprefix("claimed_"), getattr(c, name), allow_zero=True, optional=True)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def _agree(name: str, what: str, implied: float, claimed: float, tol: float, arithmetic: str, unit: str) -> Check:
    ok = _rel(implied, claimed) <= tol
    msg = (f"{what}: implied {implied:,.4g} {unit} vs claimed {claimed:,.4g} {unit}"
           + ("" if ok else f" (off by {implied / claimed:.3g}x)"))
    return Check(name, PASS if ok else INCONSISTENT, msg, arithmetic,
                 {"implied": implied, "claimed": claimed, "ratio": implied / claimed if claimed else None})


def audit(c: Claims, limits: AuditLimits = AuditLimits()) -> AuditResult:
    check_claims(c)
    tol = limits.rel_tolerance
    checks: list[Check] = []
    tps = c.tokens_per_sample
    tokens = c.tokens
    # 1. throughput vs time
    tok_per_s = c.claimed_throughput_tokens_per_s
    if tok_per_s is None and c.claimed_throughput_samples_per_s and tps:
        tok_per_s = c.claimed_throughput_samples_per_s * tps
    if c.claimed_throughput_samples_per_s and c.samples and c.claimed_wall_clock_hours:
        hours = c.samples / c.claimed_throughput_samples_per_s / 3600
        checks.append(_agree("throughput_vs_time", "hours from samples / throughput", hours, c.claimed_wall_clock_hours, tol,
                             f"{c.samples:,.0f} samples / {c.claimed_throughput_samples_per_s:,.4g} samples/s / 3600 = {hours:,.4g} h", "h"))
    elif c.claimed_throughput_tokens_per_s and c.claimed_wall_clock_hours:
        hours = tokens / c.claimed_throughput_tokens_per_s / 3600
        checks.append(_agree("throughput_vs_time", "hours from tokens / throughput", hours, c.claimed_wall_clock_hours, tol,
                             f"{tokens:,.0f} tokens / {c.claimed_throughput_tokens_per_s:,.4g} tokens/s / 3600 = {hours:,.4g} h", "h"))
    # 2. tokens/s vs samples/s
    if c.claimed_throughput_tokens_per_s and c.claimed_throughput_samples_per_s and tps:
        implied = c.claimed_throughput_samples_per_s * tps
        checks.append(_agree("tokens_vs_samples", "tokens/s from samples/s x tokens per sample", implied,
                             c.claimed_throughput_tokens_per_s, tol,
                             f"{c.claimed_throughput_samples_per_s:,.4g} samples/s x {tps:,.0f} tokens = {implied:,.4g} tokens/s", "tokens/s"))
    # 3. GPU-hours vs wall clock
    if c.claimed_gpu_hours and c.claimed_wall_clock_hours:
        implied = c.claimed_wall_clock_hours * c.gpus
        checks.append(_agree("gpu_hours_vs_wall_clock", "GPU-hours from wall-clock x GPUs", implied, c.claimed_gpu_hours, tol,
                             f"{c.claimed_wall_clock_hours:,.4g} h x {c.gpus} GPUs = {implied:,.4g} GPU-h", "GPU-h"))
    # 4. implied MFU, for every time basis the claim offers
    mfu_max = limits.mfu_max if limits.mfu_max is not None else c.mfu_ceiling
    flops = c.flops_per_token_factor * c.params * tokens
    bases = {}
    if tok_per_s:
        bases["throughput"] = tokens / tok_per_s * c.gpus
    if c.claimed_wall_clock_hours:
        bases["wall_clock"] = c.claimed_wall_clock_hours * 3600 * c.gpus
    if c.claimed_gpu_hours:
        bases["gpu_hours"] = c.claimed_gpu_hours * 3600
    implied_mfu = {}
    if not c.peak_flops_per_s:  # no dense peak in the catalog for this GPU: no MFU to imply (never NaN)
        bases = {}
    for basis, gpu_seconds in bases.items():
        mfu = flops / (gpu_seconds * c.peak_flops_per_s)
        implied_mfu[basis] = mfu
        arithmetic = (f"{c.flops_per_token_factor:g} x {c.params:,.4g} params x {tokens:,.4g} tokens = {flops:,.4g} FLOP; "
                      f"/ ({gpu_seconds:,.4g} GPU-s x {c.peak_flops_per_s / 1e12:,.4g} TFLOP/s dense peak) = {100 * mfu:.2f}% MFU")
        if mfu > mfu_max:
            status, msg = FAIL, (f"implied MFU from {basis} is {100 * mfu:.1f}%, above the {100 * mfu_max:.0f}% the "
                                 f"{c.gpu_name} can reach (best measured matmul efficiency)")
        elif mfu < limits.mfu_min:
            status, msg = FAIL, (f"implied MFU from {basis} is {100 * mfu:.2f}%, implausibly low "
                                 f"(< {100 * limits.mfu_min:.0f}%): the claimed time is far longer than the work needs")
        else:
            status, msg = PASS, f"implied MFU from {basis} is {100 * mfu:.1f}% (plausible: {100 * limits.mfu_min:.0f}-{100 * mfu_max:.0f}%)"
        checks.append(Check(f"implied_mfu_{basis}", status, msg, arithmetic, {"mfu": mfu, "mfu_min": limits.mfu_min, "mfu_max": mfu_max}))
    # 5. cost
    price = c.claimed_price_per_gpu_hour
    gpu_hours = c.claimed_gpu_hours or (c.claimed_wall_clock_hours * c.gpus if c.claimed_wall_clock_hours else None)
    if c.claimed_cost_usd and price and gpu_hours:
        implied = gpu_hours * price
        checks.append(_agree("cost_vs_hours", "cost from GPU-hours x price", implied, c.claimed_cost_usd, tol,
                             f"{gpu_hours:,.4g} GPU-h x ${price:,.4g}/GPU-h = ${implied:,.4g}", "USD"))
    if price and c.catalog_price_per_gpu_hour:
        checks.append(_agree("price_vs_catalog", "catalog price vs claimed price", c.catalog_price_per_gpu_hour, price, tol,
                             f"catalog ${c.catalog_price_per_gpu_hour:,.4g}/GPU-h vs claimed ${price:,.4g}/GPU-h", "USD/GPU-h"))
    # 6. memory
    if c.claimed_peak_memory_bytes:
        fits = c.claimed_peak_memory_bytes <= c.gpu_memory_bytes
        checks.append(Check("claimed_memory_fits", PASS if fits else FAIL,
                            f"claimed peak {c.claimed_peak_memory_bytes / 1e9:,.3g} GB {'fits' if fits else 'exceeds'} "
                            f"the {c.gpu_memory_bytes / 1e9:,.3g} GB of the {c.gpu_name}",
                            f"{c.claimed_peak_memory_bytes:,.0f} B <= {c.gpu_memory_bytes:,.0f} B",
                            {"claimed_bytes": c.claimed_peak_memory_bytes, "gpu_bytes": c.gpu_memory_bytes}))
    if c.modelled_peak_memory_bytes:
        fits = c.modelled_peak_memory_bytes <= c.gpu_memory_bytes
        checks.append(Check("modelled_memory_fits", PASS if fits else FAIL,
                            f"sizeup's memory model puts the peak at {c.modelled_peak_memory_bytes / 1e9:,.3g} GB per GPU"
                            + (f" ({c.modelled_setup})" if c.modelled_setup else "") + ": "
                            + ("fits" if fits else f"does not fit the {c.gpu_memory_bytes / 1e9:,.3g} GB {c.gpu_name}"),
                            f"modelled {c.modelled_peak_memory_bytes:,.0f} B vs GPU {c.gpu_memory_bytes:,.0f} B",
                            {"modelled_bytes": c.modelled_peak_memory_bytes, "gpu_bytes": c.gpu_memory_bytes}))
        if c.claimed_peak_memory_bytes:
            ratio = c.claimed_peak_memory_bytes / c.modelled_peak_memory_bytes
            ok = 1 / limits.model_factor <= ratio <= limits.model_factor
            checks.append(Check("claimed_vs_modelled_memory", PASS if ok else INCONSISTENT,
                                f"claimed peak memory is {ratio:.2g}x sizeup's model",
                                f"{c.claimed_peak_memory_bytes:,.0f} / {c.modelled_peak_memory_bytes:,.0f} = {ratio:.3g}",
                                {"ratio": ratio}))
    if c.modelled_time_s and c.claimed_wall_clock_hours:
        ratio = c.claimed_wall_clock_hours * 3600 / c.modelled_time_s
        ok = 1 / limits.model_factor <= ratio <= limits.model_factor
        checks.append(Check("claimed_vs_modelled_time", PASS if ok else INCONSISTENT,
                            f"claimed wall-clock is {ratio:.3g}x sizeup's estimate of {c.modelled_time_s / 3600:,.3g} h",
                            f"{c.claimed_wall_clock_hours:,.4g} h / {c.modelled_time_s / 3600:,.4g} h = {ratio:.3g}",
                            {"ratio": ratio}))
    worst = FAIL if any(k.status == FAIL for k in checks) else INCONSISTENT if any(k.status == INCONSISTENT for k in checks) else PASS
    terms = tuple(Term(f"audit/implied_mfu/{b}", m, "fraction", "F * N * D / (GPU-seconds * peak)",
                       {"F": c.flops_per_token_factor, "N": c.params, "D": tokens, "GPU-seconds": bases[b],
                        "peak_flops_per_s": c.peak_flops_per_s}, "Kaplan et al. 2020; PaLM appendix B (MFU)")
                  for b, m in implied_mfu.items())
    return AuditResult(tuple(checks), implied_mfu, worst, terms)
