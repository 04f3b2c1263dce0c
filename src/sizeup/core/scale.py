"""Scaled architectures and the scale table (seed 001): one model family at many sizes, on many GPU options.

PURE: no files, no printing. Inputs are frozen dataclasses (ModelArch, GpuSpec, TrainSetup, Overheads,
TimingKnobs, Offer, CostKnobs) and plain numbers; results are frozen dataclasses with `terms`.

Family rule (`scaled_arch`): a Llama-style decoder (RMSNorm, SwiGLU, rotary, no biases) with
  head_dim = 64, heads = kv_heads = h / 64, h a multiple of 64, ffn = 64 * ceil((8/3) h / 64),
  embeddings tied by default, vocab V (default 32000).
For a target size P*, every depth L in 1..max_layers gets the width h (multiple of 64) whose exact
count_params is closest to P*; among the (L, h) within `tolerance` of P*, the one whose aspect
ratio h/L is closest (in log) to the seed's baseline 512/6 = 85.3 wins; when none is within
tolerance, the closest count wins. Params per layer ~ 12 h^2 (4 h^2 attention + 3 h f MLP,
f = 8h/3) -- Kaplan et al. 2020 (arXiv:2001.08361) sec. 2.1 and Table 1 (N ~ 12 n_layer d_model^2);
aspect-ratio insensitivity: Kaplan et al. 2020 Fig. 5 (loss within a few % for d/L from ~20 to ~200).

Memory fix ladder (`fit_plan`), cheapest first, for a fixed number of GPUs of one kind:
  0 none:    DDP, largest micro-batch that fits (gradient accumulation keeps the global batch)
  1 gradient checkpointing: full activation recompute (one extra forward, ~33 % more compute)
  2 ZeRO-2:  optimizer states + gradients sharded over data parallel (needs >= 2 GPUs)
  3 ZeRO-3:  + parameters sharded (needs >= 2 GPUs)
  4 TP:      tensor parallel 2/4/8 inside a node (needs >= 2 GPUs)
  5 offload: ZeRO-Offload (optimizer on CPU, ZeRO-2), then ZeRO-Infinity style params+optimizer on CPU (ZeRO-3)
The first level with a plan that fits wins; inside it the fastest step (largest micro-batch) wins.
Sources: ZeRO (Rajbhandari et al. 2020) sec. 5; ZeRO-Offload (Ren et al. 2021); Megatron TP
(Shoeybi et al. 2019); activation recompute (Chen et al. 2016; Korthikanti et al. 2022 sec. 4).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from sizeup.core.cost import CostEstimate, CostKnobs, Offer, checkpoint_size, estimate_cost
from sizeup.core.estimate import TrainEstimate, estimate_training
from sizeup.core.explain import Term
from sizeup.core.params import count_params
from sizeup.core.scaling import ChinchillaLaw, ComputeOptimal, compute_optimal
from sizeup.core.types import (
    GpuSpec, MlpKind, ModelArch, NormKind, Offload, Optimizer, Overheads, PositionKind, Precision, Recompute,
    Sharding, TrainSetup,
)
from sizeup.core.workload import Workload

KAPLAN_SOURCE = "Kaplan et al. 2020 (arXiv:2001.08361) sec. 2.1, Table 1: N ~ 12 L h^2"

# the seed 001 size tiers (names used when a size matches one exactly)
TIER_NAMES = {1e7: "Tiny", 1e8: "Small", 5e8: "Medium", 1e9: "Large", 3e9: "XL"}

LEVELS = ("none", "gradient checkpointing", "ZeRO-2", "ZeRO-3", "TP", "offload")


# --------------------------------------------------------------------------- scaled family


@dataclass(frozen=True)
class ScaleFamily:
    """A width/depth family anchored on the seed 001 baseline (hidden 512, 6 layers, 8 heads, context 2048)."""

    base_hidden: int = 512
    base_layers: int = 6
    head_dim: int = 64
    width_multiple: int = 64
    vocab_size: int = 32000
    tie_embeddings: bool = True
    mlp_kind: MlpKind = MlpKind.SWIGLU
    ffn_multiplier: float = 8.0 / 3.0
    max_seq_len: int = 2048
    tolerance: float = 0.03
    max_layers: int = 160

    @property
    def aspect(self) -> float:
        return self.base_hidden / self.base_layers

    def ffn(self, hidden: int) -> int:
        # Llama (Touvron et al. 2023, sec. 2.2): SwiGLU hidden 2/3 * 4h, rounded up to a multiple
        return int(self.width_multiple * math.ceil(self.ffn_multiplier * hidden / self.width_multiple))

    def arch(self, layers: int, hidden: int, name: str = "") -> ModelArch:
        heads = max(1, hidden // self.head_dim)
        return ModelArch(
            id=name or f"scaled-{layers}L-{hidden}h", name=name or f"scaled {layers} layers x {hidden} hidden",
            vocab_size=self.vocab_size, hidden_size=hidden, num_layers=layers, num_heads=heads,
            num_kv_heads=heads, head_dim=self.head_dim, ffn_size=self.ffn(hidden), mlp_kind=self.mlp_kind,
            norm_kind=NormKind.RMSNORM, position=PositionKind.ROTARY, max_seq_len=self.max_seq_len,
            tie_embeddings=self.tie_embeddings,
            source="sizeup scaled family (core/scale.py): seed 001 baseline 512 x 6 layers, aspect h/L kept",
        )


@dataclass(frozen=True)
class ScaledArch:
    target_params: float
    model: ModelArch
    params: int
    layers: int
    hidden: int
    heads: int
    error: float
    """params / target - 1."""
    terms: tuple[Term, ...] = ()


def _count(family: ScaleFamily, layers: int, hidden: int) -> int:
    return count_params(family.arch(layers, hidden)).total


def _best_width(family: ScaleFamily, layers: int, target: float) -> tuple[int, int]:
    """(h, params) with h a multiple of `width_multiple` and params closest to target at this depth."""
    w = family.width_multiple
    # params(h) increases with h: bisection over k = h / w
    lo, hi = 1, 2
    while _count(family, layers, hi * w) < target and hi < 4096:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _count(family, layers, mid * w) < target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda k: abs(_count(family, layers, k * w) - target))
    return best * w, _count(family, layers, best * w)


def scaled_arch(target_params: float, family: ScaleFamily = ScaleFamily(), name: str = "") -> ScaledArch:
    """The family member closest to `target_params` (rule in the module docstring)."""
    if not math.isfinite(target_params) or target_params <= 0:
        raise ValueError(f"target params must be > 0, got {target_params}")
    cands = []
    for layers in range(1, family.max_layers + 1):
        hidden, params = _best_width(family, layers, target_params)
        err = params / target_params - 1.0
        cands.append((layers, hidden, params, err))
        # once even the narrowest width overshoots, deeper models only overshoot more
        if hidden == family.width_multiple and params > target_params * (1 + family.tolerance):
            break
    within = [c for c in cands if abs(c[3]) <= family.tolerance]
    if within:
        pick = min(within, key=lambda c: (abs(math.log((c[1] / c[0]) / family.aspect)), abs(c[3])))
        rule = "min |ln((h/L) / aspect)| among |params/target - 1| <= tolerance"
    else:
        pick = min(cands, key=lambda c: abs(c[3]))
        rule = "closest params (no (L, h) within tolerance)"
    layers, hidden, params, err = pick
    model = family.arch(layers, hidden, name or f"scaled-{_short(target_params)}")
    term = Term("scale/params", float(params), "params",
                "count_params(L layers, h hidden, heads = h/64, ffn = 64*ceil(8h/3/64), V vocab); " + rule,
                {"target": target_params, "L": layers, "h": hidden, "heads": model.num_heads,
                 "ffn": model.ffn_size, "V": family.vocab_size, "tied": family.tie_embeddings,
                 "aspect_target": round(family.aspect, 2), "aspect": round(hidden / layers, 2),
                 "tolerance": family.tolerance, "error": err},
                KAPLAN_SOURCE + "; baseline 512 x 6 (seed 001)")
    return ScaledArch(target_params, model, params, layers, hidden, model.num_heads, err, (term,))


def _short(n: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}"


def tier_name(target_params: float) -> str:
    for size, name in TIER_NAMES.items():
        if abs(target_params / size - 1) < 1e-9:
            return name
    return _short(target_params)


# --------------------------------------------------------------------------- hardware options


_OPTION = re.compile(r"^\s*(\d+)\s*[x×*]\s*(.+)$", re.IGNORECASE)


def parse_option(text: str) -> tuple[int, str]:
    """'2xrtx-3090' -> (2, 'rtx-3090'); 'a100-80gb' -> (1, 'a100-80gb'); '8x h100' -> (8, 'h100')."""
    m = _OPTION.match(str(text))
    if m:
        return int(m.group(1)), m.group(2).strip()
    return 1, str(text).strip()


# --------------------------------------------------------------------------- memory fix ladder


@dataclass(frozen=True)
class FitPlan:
    """The cheapest way to fit one model on `gpus` GPUs of one kind (or the closest miss)."""

    setup: TrainSetup
    memory: Any
    """MemoryEstimate of the chosen setup."""
    fits: bool
    level: str
    """One of LEVELS: the first rung of the ladder that fits."""
    fixes: tuple[str, ...]
    step_time_s: float
    tried: int
    reasons: tuple[str, ...] = ()

    @property
    def gradient_checkpointing(self) -> bool:
        return self.setup.recompute != Recompute.NONE

    @property
    def zero(self) -> str:
        return {Sharding.ZERO2: "ZeRO-2", Sharding.ZERO3: "ZeRO-3", Sharding.ZERO1: "ZeRO-1"}.get(self.setup.sharding, "")

    @property
    def offload(self) -> str:
        parts = []
        if self.setup.offload_optimizer != Offload.NONE:
            parts.append("optimizer")
        if self.setup.offload_params != Offload.NONE:
            parts.append("params")
        return "+".join(parts)


def describe_fixes(setup: TrainSetup) -> tuple[str, ...]:
    out = []
    if setup.recompute != Recompute.NONE:
        out.append("gradient checkpointing")
    if setup.sharding in (Sharding.ZERO2, Sharding.ZERO3):
        out.append({Sharding.ZERO2: "ZeRO-2", Sharding.ZERO3: "ZeRO-3"}[setup.sharding])
    if setup.tp > 1:
        out.append(f"TP={setup.tp}")
    if setup.offload_optimizer != Offload.NONE:
        out.append("CPU offload (optimizer" + (" + params)" if setup.offload_params != Offload.NONE else ")"))
    return tuple(out)


def _ladder(model: ModelArch, gpus: int, node_size: int) -> list[tuple[str, list[dict]]]:
    """Rungs of the fix ladder: (level, [TrainSetup changes]) for `gpus` GPUs."""
    rc = (Recompute.NONE, Recompute.FULL)
    rungs: list[tuple[str, list[dict]]] = [
        ("none", [dict()]),
        ("gradient checkpointing", [dict(recompute=Recompute.FULL)]),
    ]
    if gpus > 1:
        rungs.append(("ZeRO-2", [dict(sharding=Sharding.ZERO2, recompute=r) for r in rc]))
        rungs.append(("ZeRO-3", [dict(sharding=Sharding.ZERO3, recompute=r) for r in rc]))
        tps = [t for t in (2, 4, 8) if gpus % t == 0 and t <= max(1, node_size) and model.num_heads % t == 0]
        rungs.append(("TP", [dict(tp=t, sequence_parallel=True, recompute=r,
                                  sharding=Sharding.ZERO3 if gpus // t > 1 else Sharding.NONE)
                             for t in tps for r in rc]))
    rungs.append(("offload", [
        dict(sharding=Sharding.ZERO2, offload_optimizer=Offload.CPU, recompute=r) for r in rc
    ] + [dict(sharding=Sharding.ZERO3, offload_optimizer=Offload.CPU, offload_params=Offload.CPU,
              recompute=Recompute.FULL)]))
    return rungs


def _micro_batches(global_batch: int | None, dp: int, max_micro_batch: int) -> list[int]:
    cap = max(1, global_batch // dp) if global_batch else max_micro_batch
    cap = min(cap, max_micro_batch) if not global_batch else cap
    out, mb = [], 1
    while mb <= cap:
        out.append(mb)
        mb *= 2
    if cap not in out:
        out.append(cap)
    return sorted(set(out), reverse=True)


def make_setup(gpus: int, micro_batch: int, global_batch: int | None, seq_len: int, precision: Precision,
               optimizer: Optimizer, node_size: int, **changes) -> TrainSetup:
    """DP over `gpus` (divided by tp); grad accumulation = ceil(B / (b * dp)) so B is met or just exceeded."""
    tp = int(changes.get("tp", 1))
    dp = max(1, gpus // tp)
    accum = max(1, math.ceil(global_batch / (micro_batch * dp))) if global_batch else 1
    return TrainSetup(gpus=gpus, micro_batch=micro_batch, grad_accum=accum, seq_len=seq_len, precision=precision,
                      optimizer=optimizer, gpus_per_node=max(1, node_size), **changes)


def fit_plan(model: ModelArch, gpu: GpuSpec, gpus: int, *, global_batch: int | None, seq_len: int,
             precision: Precision = Precision.BF16_MIXED, optimizer: Optimizer = Optimizer.ADAMW,
             overheads: Overheads | None = None, knobs: Any = None, kernel: str = "fused",
             max_micro_batch: int = 32, max_level: str | None = None) -> FitPlan:
    """Walk the fix ladder; inside the first rung that fits pick the fastest step (time per token)."""
    from sizeup.core.memory import check_setup, estimate_memory
    from sizeup.core.timing import estimate_step

    if precision in (Precision.BF16_MIXED, Precision.BF16) and not gpu.supports_bf16:
        precision = Precision.FP16_MIXED
    node = int(gpu.node_size or 1)
    mem_kernel = "hf-eager" if "eager" in str(kernel) else "fused"  # memory has two kernel styles
    tried = 0
    closest = None
    stop = LEVELS.index(max_level) if max_level else len(LEVELS) - 1
    for level, variants in _ladder(model, gpus, node):
        if LEVELS.index(level) > stop:
            break
        best = None
        for changes in variants:
            dp = max(1, gpus // int(changes.get("tp", 1)))
            for mb in _micro_batches(global_batch, dp, max_micro_batch):
                setup = make_setup(gpus, mb, global_batch, seq_len, precision, optimizer, node, **changes)
                if check_setup(model, setup):
                    break
                tried += 1
                mem = estimate_memory(model, setup, gpu, overheads=overheads, kernel=mem_kernel)
                if closest is None or mem.peak_reserved_bytes < closest[1].peak_reserved_bytes:
                    closest = (setup, mem, level)
                if not mem.fits:
                    continue
                step = estimate_step(model, setup, gpu, knobs, kernel=kernel)
                per_token = step.step_time_s / setup.tokens_per_step
                if best is None or per_token < best[3]:
                    best = (setup, mem, step.step_time_s, per_token)
                break  # smaller micro-batches are no faster
        if best is not None:
            setup, mem, step_s, _ = best
            return FitPlan(setup, mem, True, level, describe_fixes(setup), step_s, tried)
    setup, mem, level = closest
    why = tuple(mem.reasons) or ("does not fit",)
    return FitPlan(setup, mem, False, level, describe_fixes(setup), math.nan, tried,
                   (f"does not fit {gpus}x {gpu.id} even with every fix up to {LEVELS[stop]}",) + why)


# --------------------------------------------------------------------------- one training plan, priced


@dataclass(frozen=True)
class Pricing:
    """Everything needed to price a plan, built from the platform catalog or flags by the caller.

    wired[i]: the GPU as wired in offers[i]'s instance (node size = GPUs per instance, the instance's network
    between instances; commands.compare.instance_gpu), or None for the catalog GPU."""

    offers: tuple[Offer, ...]
    knobs: CostKnobs = CostKnobs()
    dataset_bytes_per_token: float = 0.0
    wired: tuple[GpuSpec | None, ...] = ()


@dataclass(frozen=True)
class FileSizes:
    checkpoint_bytes: float
    final_weights_bytes: float
    dataset_bytes: float
    terms: tuple[Term, ...] = ()


def file_sizes(params: float, setup: TrainSetup, dataset_tokens: float, dataset_bytes_per_token: float) -> FileSizes:
    """Checkpoint (resumable: weights + master + moments), final 16-bit weights, tokenised dataset."""
    ck = checkpoint_size(params, params, setup.precision, setup.optimizer, ranks=setup.gpus)
    final = params * 2.0  # 16-bit safetensors export
    data = dataset_tokens * dataset_bytes_per_token
    terms = ck.terms + (
        Term("files/final_weights", final, "B", "P * 2 B (16-bit export)", {"P": params}),
        Term("files/dataset", data, "B", "D_unique * bytes_per_token",
             {"D_unique": dataset_tokens, "bytes_per_token": dataset_bytes_per_token}, "energy.yaml storage"),
    )
    return FileSizes(ck.bytes, final, data, terms)


@dataclass(frozen=True)
class PricedPlan:
    gpu: GpuSpec
    """The GPU as wired for the chosen offer (its node size / network are what the plan was timed with)."""
    fit: FitPlan
    train: TrainEstimate
    cost: CostEstimate
    files: FileSizes


def priced_plan(model: ModelArch, gpu: GpuSpec, gpus: int, workload: Workload, pricing: Pricing, *,
                fit_kwargs: dict, knobs: Any = None, kernel: str = "fused", dataset_tokens: float | None = None,
                base: tuple[FitPlan, TrainEstimate] | None = None) -> PricedPlan | None:
    """The cheapest (offer, plan): a job that fits in one instance is timed on the catalog GPU; one spread over
    several instances is re-fitted and re-timed with the instance's wiring (GPUs per instance as the node,
    the instance network between nodes). None when nothing fits or there is no offer."""
    groups: dict[tuple, tuple[GpuSpec, list[Offer]]] = {}
    for i, o in enumerate(pricing.offers):
        w = pricing.wired[i] if i < len(pricing.wired) and pricing.wired[i] is not None else gpu
        g = gpu if gpus <= o.gpus_per_instance else w
        key = (g.node_size, g.inter_node_bytes_per_s)
        groups.setdefault(key, (g, []))[1].append(o)
    unique = dataset_tokens if dataset_tokens is not None else workload.total_tokens / max(workload.epochs, 1e-9)
    best = None
    for g, offers in groups.values():
        if base is not None and g.node_size == gpu.node_size and g.inter_node_bytes_per_s == gpu.inter_node_bytes_per_s:
            fit, train = base
        else:
            fit = fit_plan(model, g, gpus, knobs=knobs, kernel=kernel, **fit_kwargs)
            train = estimate_training(model, fit.setup, g, workload, knobs, kernel=kernel, with_memory=False) \
                if fit.fits else None
        if fit is None or not fit.fits or train is None:
            continue
        files = file_sizes(float(train.params.total), fit.setup, unique, pricing.dataset_bytes_per_token)
        for o in offers:
            est = estimate_cost(train.total_time_s, gpus, o, checkpoint_bytes=files.checkpoint_bytes,
                                final_weights_bytes=files.final_weights_bytes, dataset_bytes=files.dataset_bytes,
                                gpu_tdp_w=g.tdp_w or None, knobs=pricing.knobs)
            if best is None or est.total_cost_usd < best.cost.total_cost_usd:
                best = PricedPlan(g, fit, train, est, files)
    return best


@dataclass(frozen=True)
class ScalePoint:
    """One cell of the scale table: a model size on one hardware option."""

    option: str
    gpu_id: str
    gpus: int
    fit: FitPlan
    train: TrainEstimate | None
    files: FileSizes | None
    costs: dict = field(default_factory=dict)
    """pricing kind -> PricedPlan (cost, and the plan as timed on that offer's wiring) or None."""

    @property
    def fits(self) -> bool:
        return self.fit.fits

    @property
    def wall_clock_s(self) -> float:
        return self.train.total_time_s if self.train else math.nan

    @property
    def gpu_hours(self) -> float:
        return self.train.gpu_hours if self.train else math.nan


def scale_point(model: ModelArch, gpu: GpuSpec, gpus: int, workload: Workload, *, option: str = "",
                global_batch: int | None, seq_len: int, precision: Precision = Precision.BF16_MIXED,
                optimizer: Optimizer = Optimizer.ADAMW, overheads: Overheads | None = None, knobs: Any = None,
                kernel: str = "fused", pricings: dict[str, Pricing] | None = None, dataset_tokens: float | None = None,
                max_micro_batch: int = 32) -> ScalePoint:
    """Fit (with fixes), time (estimate_training) and price one size on one hardware option."""
    fit = fit_plan(model, gpu, gpus, global_batch=global_batch, seq_len=seq_len, precision=precision,
                   optimizer=optimizer, overheads=overheads, knobs=knobs, kernel=kernel,
                   max_micro_batch=max_micro_batch)
    if not fit.fits:
        return ScalePoint(option or f"{gpus}x{gpu.id}", gpu.id, gpus, fit, None, None, {})
    train = estimate_training(model, fit.setup, gpu, workload, knobs, kernel=kernel, with_memory=False)
    params = float(train.params.total)
    unique = dataset_tokens if dataset_tokens is not None else workload.total_tokens / max(workload.epochs, 1e-9)
    fit_kwargs = dict(global_batch=global_batch, seq_len=seq_len, precision=precision, optimizer=optimizer,
                      overheads=overheads, max_micro_batch=max_micro_batch)
    costs = {}
    files = None
    for kind, pr in (pricings or {}).items():
        pp = priced_plan(model, gpu, gpus, workload, pr, fit_kwargs=fit_kwargs, knobs=knobs, kernel=kernel,
                         dataset_tokens=unique, base=(fit, train))
        costs[kind] = pp
        if pp is not None and pp.gpu is gpu:
            files = pp.files
        elif files is None:
            files = file_sizes(params, fit.setup, unique, pr.dataset_bytes_per_token)
    if files is None:
        files = file_sizes(params, fit.setup, unique, 0.0)
    return ScalePoint(option or f"{gpus}x{gpu.id}", gpu.id, gpus, fit, train, files, costs)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class ScaleRow:
    name: str
    target_params: float
    arch: ScaledArch
    samples: float | None
    tokens: float
    steps: int
    global_batch: int | None
    chinchilla: ComputeOptimal
    points: tuple[ScalePoint, ...]
    data_hours: float | None = None
    terms: tuple[Term, ...] = ()


def workload_for(params: float, *, samples_per_param: float | None = None, samples: float | None = None,
                 tokens: float | None = None, tokens_per_sample: float = 2048.0) -> tuple[Workload, float | None]:
    """Seed 001's data rule: samples = samples_per_param * N (0.1 -> 10M: 1M samples), or given samples/tokens."""
    if tokens is not None:
        return Workload(tokens=tokens), tokens / tokens_per_sample
    if samples is None:
        samples = math.ceil((samples_per_param if samples_per_param is not None else 0.1) * params)
    return Workload(samples=samples, tokens_per_sample=tokens_per_sample), samples


def scale_row(target_params: float, options: Sequence[tuple[str, GpuSpec, int]], workload: Workload,
              samples: float | None, *, family: ScaleFamily = ScaleFamily(), global_batch: int | None = 32,
              seq_len: int = 2048, precision: Precision = Precision.BF16_MIXED,
              optimizer: Optimizer = Optimizer.ADAMW, overheads: Overheads | None = None, knobs: Any = None,
              kernel: str = "fused", pricings_by_gpu: dict[str, dict[str, Pricing]] | None = None,
              data_tokens_per_hour: float | None = None, law: ChinchillaLaw = ChinchillaLaw(),
              name: str = "") -> ScaleRow:
    """One row of the scale table: scaled architecture, workload, steps, Chinchilla view, one point per option."""
    arch = scaled_arch(target_params, family)
    tokens = workload.total_tokens
    steps = math.ceil(tokens / (global_batch * seq_len) - 1e-9) if global_batch else 0
    points = []
    for label, gpu, n in options:
        points.append(scale_point(arch.model, gpu, n, workload, option=label, global_batch=global_batch,
                                  seq_len=seq_len, precision=precision, optimizer=optimizer, overheads=overheads,
                                  knobs=knobs, kernel=kernel, pricings=(pricings_by_gpu or {}).get(gpu.id)))
    co = compute_optimal(float(arch.params), tokens, law)
    hours = tokens / data_tokens_per_hour if data_tokens_per_hour else None
    terms = list(arch.terms) + [
        workload.term(),
        Term("scale/steps", float(steps), "steps", "ceil(D / (B * s))", {"D": tokens, "B": global_batch, "s": seq_len},
             "optimizer steps at the global batch (seed 001: samples / batch 32)"),
    ] + list(co.terms)
    if hours is not None:
        terms.append(Term("data/hours", hours, "h", "D / tokens_per_hour_of_data",
                          {"D": tokens, "tokens_per_hour": data_tokens_per_hour}, "sizeup.core.tokens.token_budget"))
    return ScaleRow(name or tier_name(target_params), target_params, arch, samples, tokens, steps, global_batch, co,
                    tuple(points), hours, tuple(terms))
