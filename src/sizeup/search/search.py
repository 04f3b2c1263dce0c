"""Plan search: the fastest, cheapest or fewest-GPU legal plan, or the Pareto front of cost vs time.

The physics is NOT re-implemented here: every candidate chunk goes through the same array-agnostic kernels the
scalar commands use (`sizeup.core.memory.memory_components` + `reserved_bytes`, `sizeup.core.timing.step_kernel`),
called once per chunk with numpy arrays. Model-constant terms are built once (`memory._statics`,
`timing.kernel_args`), and memory is evaluated once per plan for every GPU kind sharing a node size and a
precision (memory does not depend on the GPU kind otherwise; the fit is then checked against each GPU's memory).

Order of work per chunk (Calculon's "prune on memory first"): memory -> fit -> time only the plans that fit ->
steps, wall-clock and dollars -> constraints -> keep the best few. Counts of what was removed, and why, are kept.

Cost: `cost_arrays` calls `sizeup.core.cost.cost_kernel`, the same array-agnostic arithmetic that
`estimate_cost` wraps; tests check that both agree on every returned plan.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sizeup.core.cost import CostKnobs, Offer, cost_kernel
from sizeup.core.types import (
    Attention, GpuSpec, ModelArch, Offload, Optimizer, Overheads, Peft, Precision, Recompute, Sharding, TrainSetup,
)
from sizeup.search.candidates import OFFLOADS, RECOMPUTES, SHARDINGS, SearchSpace, default_gpu_counts, generate

OBJECTIVES = ("time", "cost", "pareto", "gpus")
BOUNDS = ("compute", "memory", "network")
DEFAULT_CHUNK = 1 << 18
KEEP_PER_CHUNK = 32

NOT_FIT = "does not fit in GPU memory"
DEADLINE = "misses the deadline"
BUDGET = "over budget"
NO_PRICE = "no price for this GPU (cost objective or budget)"
SPOT_STALL = "spot/failures: the run would not make progress"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Target:
    """One GPU kind the search may use, with the offers that price it (empty: time only)."""

    gpu: GpuSpec
    offers: tuple[Offer, ...] = ()
    precision: Precision = Precision.BF16_MIXED


@dataclass(frozen=True)
class Recipe:
    """Plan-constant training choices (the search varies parallelism and memory strategies, not these)."""

    optimizer: Optimizer = Optimizer.ADAMW
    peft: Peft = Peft.NONE
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("q", "k", "v", "o")
    attention: Attention = Attention.FLASH
    dropout: float = 0.0
    fused_optimizer: bool = True
    kernel: str = "fused"
    """'fused' (Megatron/TE kernels) or 'eager' (plain PyTorch / HF modules)."""

    @property
    def memory_kernel(self) -> str:
        return "hf-eager" if "eager" in self.kernel else "fused"

    @property
    def timing_kernel(self) -> str:
        return "eager" if "eager" in self.kernel else "fused"


@dataclass(frozen=True)
class CostInputs:
    """What `estimate_cost` needs beyond time and GPUs (checkpoint bytes = base + per_rank x GPUs)."""

    knobs: CostKnobs = CostKnobs()
    checkpoint_base_bytes: float = 0.0
    checkpoint_bytes_per_rank: float = 0.0
    final_weights_bytes: float = 0.0
    dataset_bytes: float = 0.0


@dataclass(frozen=True)
class Constraints:
    deadline_s: float | None = None
    budget_usd: float | None = None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PlanResult:
    """One plan with its full configuration and results."""

    rank: int
    gpu: str
    gpus: int
    tp: int
    pp: int
    dp: int
    cp: int
    ep: int
    sharding: Sharding
    micro_batch: int
    grad_accum: int
    global_batch: int
    recompute: Recompute
    offload: Offload
    seq_len: int
    precision: Precision
    gpus_per_node: int
    recipe: Recipe
    memory_reserved_bytes: float
    memory_allocated_bytes: float
    gpu_memory_bytes: float
    step_time_s: float
    tokens_per_s: float
    mfu: float
    bound: str
    steps: int
    compute_time_s: float
    wall_clock_s: float
    cost_usd: float | None
    platform: str | None = None
    instance: str | None = None
    pricing: str | None = None
    price_usd_per_gpu_hour: float | None = None
    instances: int | None = None
    price_as_of: str | None = None
    why_not_best: str = ""

    @property
    def days(self) -> float:
        return self.wall_clock_s / 86400.0

    @property
    def sequence_parallel(self) -> bool:
        return self.tp > 1

    def setup(self) -> TrainSetup:
        """The plan as a TrainSetup (what the scalar core path and the exporters take)."""
        r = self.recipe
        return TrainSetup(
            gpus=self.gpus, tp=self.tp, pp=self.pp, cp=self.cp, ep=self.ep, micro_batch=self.micro_batch,
            grad_accum=self.grad_accum, seq_len=self.seq_len, precision=self.precision, optimizer=r.optimizer,
            fused_optimizer=r.fused_optimizer, sharding=self.sharding, sequence_parallel=self.sequence_parallel,
            recompute=self.recompute, attention=r.attention, offload_optimizer=self.offload, peft=r.peft,
            lora_rank=r.lora_rank, lora_targets=r.lora_targets, dropout=r.dropout, gpus_per_node=self.gpus_per_node)

    def to_dict(self) -> dict:
        return {
            "rank": self.rank, "gpu": self.gpu, "gpus": self.gpus,
            "config": {"tp": self.tp, "pp": self.pp, "dp": self.dp, "cp": self.cp, "ep": self.ep,
                       "sharding": self.sharding.value, "micro_batch": self.micro_batch,
                       "grad_accum": self.grad_accum, "global_batch": self.global_batch,
                       "recompute": self.recompute.value, "offload_optimizer": self.offload.value,
                       "seq_len": self.seq_len, "precision": self.precision.value,
                       "sequence_parallel": self.sequence_parallel, "optimizer": self.recipe.optimizer.value,
                       "peft": self.recipe.peft.value, "kernel": self.recipe.kernel,
                       "gpus_per_node": self.gpus_per_node},
            "results": {"memory_reserved_bytes": self.memory_reserved_bytes,
                        "memory_allocated_bytes": self.memory_allocated_bytes,
                        "gpu_memory_bytes": self.gpu_memory_bytes, "step_time_s": self.step_time_s,
                        "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "bound": self.bound,
                        "steps": self.steps, "compute_time_s": self.compute_time_s,
                        "wall_clock_s": self.wall_clock_s, "days": self.days, "cost_usd": self.cost_usd},
            "offer": {"platform": self.platform, "instance": self.instance, "pricing": self.pricing,
                      "price_usd_per_gpu_hour": self.price_usd_per_gpu_hour, "instances": self.instances,
                      "price_as_of": self.price_as_of},
            "why_not_best": self.why_not_best,
        }


@dataclass(frozen=True)
class SearchResult:
    objective: str
    evaluated: int
    """Configurations (GPU kind x legal plan) whose memory was evaluated."""
    fits_memory: int
    feasible: int
    """Fit in memory and met every constraint."""
    considered: int
    """Size of the raw grid before the legality rules."""
    pruned: Mapping[str, int]
    """Legality rules and constraints -> combinations removed."""
    elapsed_s: float
    rate_per_s: float
    plans: tuple[PlanResult, ...]
    best_per_gpu: tuple[PlanResult, ...] = ()
    excluded: tuple[tuple[str, PlanResult], ...] = ()
    """(constraint, the best plan by the objective that this constraint removed)."""
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> PlanResult | None:
        return self.plans[0] if self.plans else None


# --------------------------------------------------------------------------- cost with arrays


def cost_arrays(compute_s, gpus, offer: Offer, cost: CostInputs) -> dict[str, np.ndarray]:
    """`sizeup.core.cost.cost_kernel` (the arithmetic behind estimate_cost) on arrays of compute time and GPU counts;
    the checkpoint size grows with the number of ranks that save optimizer shards."""
    checkpoint_bytes = cost.checkpoint_base_bytes + cost.checkpoint_bytes_per_rank * np.asarray(gpus, dtype=float)
    return cost_kernel(compute_s, gpus, offer, cost.knobs, checkpoint_bytes, cost.final_weights_bytes,
                       cost.dataset_bytes)


def offer_usable(offer: Offer, gpus, node_size: int, whole_instances: bool) -> np.ndarray:
    """Plans this offer can host: whole instances when a platform is named; otherwise a job inside one instance,
    or full-node instances (the catalog GPU's network between nodes)."""
    g = np.asarray(gpus)
    gpi = max(1, offer.gpus_per_instance)
    # several instances talk over the catalog GPU's inter-node network only when each instance is a full node
    network_ok = (g <= gpi) | (gpi >= max(1, node_size))
    if whole_instances:
        return network_ok & (g % gpi == 0)
    return network_ok


# --------------------------------------------------------------------------- the search


def _setup0(target: Target, recipe: Recipe, seq_len: int, sharding: Sharding = Sharding.NONE) -> TrainSetup:
    return TrainSetup(seq_len=seq_len, precision=target.precision, optimizer=recipe.optimizer,
                      fused_optimizer=recipe.fused_optimizer, sharding=sharding, attention=recipe.attention,
                      peft=recipe.peft, lora_rank=recipe.lora_rank, lora_targets=recipe.lora_targets,
                      dropout=recipe.dropout, gpus_per_node=max(1, target.gpu.node_size))


def _lut(values: Sequence, table: Mapping) -> np.ndarray:
    return np.asarray([table[v] for v in values], dtype=np.int64)


class _Keeper:
    """Keeps the best few records by the objective (and the chunk's Pareto front) without storing every plan."""

    def __init__(self, objective: str, keep: int):
        self.objective, self.keep, self.parts = objective, keep, []

    @staticmethod
    def order(rec: Mapping[str, np.ndarray], objective: str) -> np.ndarray:
        cost = np.where(np.isfinite(rec["cost_usd"]), rec["cost_usd"], np.inf)
        if objective == "cost":
            return np.lexsort((rec["wall_clock_s"], cost))
        if objective == "gpus":
            return np.lexsort((cost, rec["wall_clock_s"], rec["gpus"]))
        return np.lexsort((cost, rec["wall_clock_s"]))

    @staticmethod
    def pareto(rec: Mapping[str, np.ndarray]) -> np.ndarray:
        cost = np.where(np.isfinite(rec["cost_usd"]), rec["cost_usd"], np.inf)
        order = np.lexsort((cost, rec["wall_clock_s"]))
        c = cost[order]
        best_before = np.concatenate(([np.inf], np.minimum.accumulate(c)[:-1]))
        return order[c < best_before]

    def select(self, rec: Mapping[str, np.ndarray], k: int) -> np.ndarray:
        if self.objective == "pareto":
            return self.pareto(rec)
        primary = {"cost": "cost_usd", "gpus": "gpus"}.get(self.objective, "wall_clock_s")
        key = np.where(np.isfinite(rec[primary]), rec[primary], np.inf)
        if key.size > 4 * k:  # partial sort first: only plans tied with or better than the k-th can be in the top k
            kth = np.partition(key, k - 1)[k - 1]
            sub = np.nonzero(key <= kth)[0]
            return sub[self.order({n: v[sub] for n, v in rec.items()}, self.objective)][:k]
        return self.order(rec, self.objective)[:k]

    def add(self, rec: Mapping[str, np.ndarray]) -> None:
        if rec["gpus"].size:
            idx = self.select(rec, self.keep)
            self.parts.append({key: v[idx] for key, v in rec.items()})

    def merged(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return {}
        return {key: np.concatenate([p[key] for p in self.parts]) for key in self.parts[0]}


def search(
    model: ModelArch,
    tokens: float,
    space: SearchSpace,
    targets: Sequence[Target],
    *,
    recipe: Recipe = Recipe(),
    objective: str = "time",
    top: int = 10,
    constraints: Constraints = Constraints(),
    cost: CostInputs = CostInputs(),
    knobs: Any = None,
    overheads: Overheads | None = None,
    whole_instances: bool = False,
    chunk: int = DEFAULT_CHUNK,
    progress: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Evaluate every legal plan of `space` on every target GPU kind and return the best `top` plans."""
    from sizeup.core import memory as mem
    from sizeup.core import timing as tim
    from sizeup.core.flops import flops_per_step

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    t0 = time.perf_counter()
    knobs = knobs or tim.default_knobs()
    ov = overheads or Overheads()
    seq = int(space.seq_len)
    need_price = objective in ("cost", "pareto") or constraints.budget_usd is not None or whole_instances

    # ---- groups of GPU kinds that share memory (same node size, precision and GPU counts)
    groups: dict[tuple, list[int]] = {}
    counts_of: dict[int, tuple[int, ...]] = {}
    for i, t in enumerate(targets):
        node = max(1, t.gpu.node_size)
        if space.gpu_counts:
            counts = tuple(sorted(c for c in set(space.gpu_counts) if space.min_gpus <= c <= space.max_gpus))
        else:
            sizes = tuple(sorted({o.gpus_per_instance for o in t.offers})) if whole_instances else ()
            counts = default_gpu_counts(node, space.max_gpus, space.min_gpus, sizes)
        counts_of[i] = counts
        groups.setdefault((node, t.precision, counts), []).append(i)

    mem_sh = _lut(SHARDINGS, mem.SHARDING_CODE)
    tim_sh = _lut(SHARDINGS, tim.SHARDING_CODE)
    mem_rc, tim_rc = _lut(RECOMPUTES, mem.RECOMPUTE_CODE), _lut(RECOMPUTES, tim.RECOMPUTE_CODE)
    mem_off, tim_off = _lut(OFFLOADS, mem.OFFLOAD_CODE), _lut(OFFLOADS, tim.OFFLOAD_CODE)
    none_sh = SHARDINGS.index(Sharding.NONE)

    generated = []
    for (node, precision, counts), members in groups.items():
        cands = generate(model, space, node, counts)
        generated.append((node, precision, members, cands))
    total = sum(c.size * len(members) for _, _, members, c in generated)

    pruned: dict[str, int] = {}
    considered = 0
    for _, _, members, c in generated:
        considered += c.considered * len(members)
        for rule, n in c.pruned.items():
            pruned[rule] = pruned.get(rule, 0) + n * len(members)
    keeper = _Keeper(objective, max(top, KEEP_PER_CHUNK))
    excluded: dict[str, _Keeper] = {}
    evaluated = fits_total = feasible = 0

    for node, precision, members, cands in generated:
        t_first = targets[members[0]]
        mk = recipe.memory_kernel
        st_none = mem._statics(model, _setup0(t_first, recipe, seq, Sharding.NONE), mk)
        st_shard = mem._statics(model, _setup0(t_first, recipe, seq, Sharding.ZERO1), mk) if mk == "hf-eager" else st_none
        prepared = []
        for i in members:
            t = targets[i]
            setup0 = _setup0(t, recipe, seq)
            mi, g, plan0 = tim.kernel_args(model, setup0, t.gpu, knobs, recipe.timing_kernel)
            fl = flops_per_step(model, setup0)
            prepared.append((i, t, mi, g, plan0, fl.model_flops / float(setup0.tokens_per_step)))
        mem_kw = dict(precision=precision, optimizer=recipe.optimizer, fused_optimizer=recipe.fused_optimizer,
                      peft=recipe.peft, lora_rank=recipe.lora_rank, lora_targets=recipe.lora_targets,
                      attention=recipe.attention, dropout=recipe.dropout, kernel=mk,
                      comm_bucket_bytes=ov.comm_bucket_bytes)
        for _, c in cands.chunks(chunk):
            f = {name: getattr(c, name).astype(float) for name in ("gpus", "tp", "pp", "cp", "ep", "dp",
                                                                  "micro_batch", "grad_accum", "global_batch")}
            arrays = dict(tp=f["tp"], pp=f["pp"], dp=f["dp"], cp=f["cp"], ep=f["ep"], micro_batch=f["micro_batch"],
                          grad_accum=f["grad_accum"], seq_len=float(seq), sharding_code=mem_sh[c.sharding],
                          recompute_code=mem_rc[c.recompute], offload_optimizer_code=mem_off[c.offload],
                          sequence_parallel=f["tp"] > 1, gpus_per_node=float(node))
            if st_shard is st_none:
                comp = mem.memory_components(model, **arrays, statics=st_none, **mem_kw)
                allocated = comp["total"]
            else:  # hf-eager: torch.autocast statics differ with and without sharding
                allocated = np.empty(c.size)
                for sel, st in ((c.sharding == none_sh, st_none), (c.sharding != none_sh, st_shard)):
                    if sel.any():
                        sub = {k_: (v[sel] if isinstance(v, np.ndarray) else v) for k_, v in arrays.items()}
                        allocated[sel] = mem.memory_components(model, **sub, statics=st, **mem_kw)["total"]
            reserved = mem.reserved_bytes(allocated, f["gpus"], ov)
            for i, t, mi, g, plan0, flops_per_token in prepared:
                evaluated += c.size
                fit = reserved <= t.gpu.memory_bytes
                idx = np.nonzero(fit)[0]
                pruned[NOT_FIT] = pruned.get(NOT_FIT, 0) + int(c.size - idx.size)
                fits_total += int(idx.size)
                if progress is not None:
                    progress(evaluated, total)
                if idx.size == 0:
                    continue
                sub = {k_: v[idx] for k_, v in f.items()}
                plan = dict(plan0)
                plan.update(tp=sub["tp"], pp=sub["pp"], dp=sub["dp"], cp=sub["cp"], ep=sub["ep"],
                            micro_batch=sub["micro_batch"], grad_accum=sub["grad_accum"], seq_len=float(seq),
                            sharding_code=tim_sh[c.sharding[idx]], recompute_code=tim_rc[c.recompute[idx]],
                            sequence_parallel=(sub["tp"] > 1).astype(int), virtual_pp=1,
                            offload_code=tim_off[c.offload[idx]])
                out = tim.step_kernel(mi, g, knobs, **plan)
                step = out["step_time_s"]
                tokens_step = sub["global_batch"] * seq
                steps = np.maximum(1.0, np.ceil(tokens / tokens_step - 1e-9))
                compute_s = steps * step
                peak = float(g.peak_flops_per_s)
                mfu = flops_per_token * tokens_step / (step * sub["gpus"] * peak) if peak > 0 else 0.0 * step
                bound = np.argmax(np.stack([out["compute_bound_s"], out["memory_bound_s"], out["network_s"]]), axis=0)
                # ---- dollars: the cheapest usable offer for each plan
                cost_usd = np.full(idx.size, np.nan)
                wall = compute_s.copy()
                offer_i = np.full(idx.size, -1)
                inst = np.zeros(idx.size)
                stalled = np.zeros(idx.size, dtype=bool)
                for j, o in enumerate(t.offers):
                    ok = offer_usable(o, sub["gpus"], node, whole_instances)
                    if not ok.any():
                        continue
                    ca = cost_arrays(compute_s, sub["gpus"], o, cost)
                    better = ok & ~(ca["total_usd"] >= cost_usd)  # NaN-aware: first usable offer always wins
                    cost_usd = np.where(better, ca["total_usd"], cost_usd)
                    wall = np.where(better, ca["wall_clock_s"], wall)
                    offer_i = np.where(better, j, offer_i)
                    inst = np.where(better, ca["instances"], inst)
                    stalled = np.where(better, ca["stalled"], stalled)
                rec = {"target": np.full(idx.size, i), "cand": idx, "gpus": sub["gpus"], "tp": sub["tp"],
                       "pp": sub["pp"], "dp": sub["dp"], "cp": sub["cp"], "ep": sub["ep"],
                       "micro_batch": sub["micro_batch"], "grad_accum": sub["grad_accum"],
                       "global_batch": sub["global_batch"], "sharding": c.sharding[idx].astype(int),
                       "recompute": c.recompute[idx].astype(int), "offload": c.offload[idx].astype(int),
                       "reserved": reserved[idx], "allocated": np.asarray(allocated)[idx], "step_time_s": step,
                       "mfu": mfu, "bound": bound, "steps": steps, "compute_time_s": compute_s,
                       "wall_clock_s": wall, "cost_usd": cost_usd, "offer": offer_i, "instances": inst}
                ok = np.ones(idx.size, dtype=bool)
                checks = [(SPOT_STALL, stalled)]
                if need_price:
                    checks.append((NO_PRICE, ~np.isfinite(cost_usd)))
                if constraints.deadline_s is not None:
                    checks.append((DEADLINE, wall > constraints.deadline_s))
                if constraints.budget_usd is not None:
                    checks.append((BUDGET, np.isfinite(cost_usd) & (cost_usd > constraints.budget_usd)))
                for name, bad in checks:
                    removed = ok & bad
                    if removed.any():
                        pruned[name] = pruned.get(name, 0) + int(removed.sum())
                        if name in (DEADLINE, BUDGET):
                            excluded.setdefault(name, _Keeper("cost" if name == DEADLINE else "time", 1)).add(
                                {k_: v[removed] for k_, v in rec.items()})
                    ok &= ~bad
                feasible += int(ok.sum())
                if ok.any():
                    kept = {k_: v[ok] for k_, v in rec.items()}
                    keeper.add(kept)  # per GPU kind and chunk: each kind's best survives the merge

    elapsed = time.perf_counter() - t0
    merged = keeper.merged()
    plans: list[PlanResult] = []
    per_gpu: list[PlanResult] = []
    if merged:
        order = keeper.select(merged, top)
        if objective == "pareto" and order.size > top:  # spread the shown points along the front
            order = order[np.unique(np.round(np.linspace(0, order.size - 1, top)).astype(int))]
        plans = [_plan(merged, int(j), r + 1, targets, space, recipe) for r, j in enumerate(order)]
        plans = _explain_losses(plans, objective)
        full = keeper.order(merged, "cost" if objective == "cost" else ("gpus" if objective == "gpus" else "time"))
        seen: set[int] = set()
        for j in full:
            ti = int(merged["target"][j])
            if ti not in seen:
                seen.add(ti)
                per_gpu.append(_plan(merged, int(j), len(per_gpu) + 1, targets, space, recipe))
    excl = []
    for name, kp in excluded.items():
        m = kp.merged()
        if m:
            j = int(kp.select(m, 1)[0])
            excl.append((name, _plan(m, j, 0, targets, space, recipe)))
    notes = []
    if not any(t.offers for t in targets):
        notes.append("no prices: cost not computed (name a --platform, or the GPU is not rented in the catalog)")
    return SearchResult(objective=objective, evaluated=evaluated, fits_memory=fits_total, feasible=feasible,
                        considered=considered, pruned=pruned, elapsed_s=elapsed,
                        rate_per_s=evaluated / elapsed if elapsed > 0 else 0.0, plans=tuple(plans),
                        best_per_gpu=tuple(per_gpu), excluded=tuple(excl), notes=tuple(notes))


def _plan(rec: Mapping[str, np.ndarray], j: int, rank: int, targets: Sequence[Target], space: SearchSpace,
          recipe: Recipe) -> PlanResult:
    t = targets[int(rec["target"][j])]
    oi = int(rec["offer"][j])
    offer = t.offers[oi] if oi >= 0 else None
    cost = float(rec["cost_usd"][j])
    step = float(rec["step_time_s"][j])
    return PlanResult(
        rank=rank, gpu=t.gpu.id, gpus=int(rec["gpus"][j]), tp=int(rec["tp"][j]), pp=int(rec["pp"][j]),
        dp=int(rec["dp"][j]), cp=int(rec["cp"][j]), ep=int(rec["ep"][j]), sharding=SHARDINGS[int(rec["sharding"][j])],
        micro_batch=int(rec["micro_batch"][j]), grad_accum=int(rec["grad_accum"][j]),
        global_batch=int(rec["global_batch"][j]), recompute=RECOMPUTES[int(rec["recompute"][j])],
        offload=OFFLOADS[int(rec["offload"][j])], seq_len=int(space.seq_len), precision=t.precision,
        gpus_per_node=max(1, t.gpu.node_size), recipe=recipe,
        memory_reserved_bytes=float(rec["reserved"][j]), memory_allocated_bytes=float(rec["allocated"][j]),
        gpu_memory_bytes=float(t.gpu.memory_bytes), step_time_s=step,
        tokens_per_s=float(rec["global_batch"][j]) * space.seq_len / step, mfu=float(rec["mfu"][j]),
        bound=BOUNDS[int(rec["bound"][j])], steps=int(rec["steps"][j]), compute_time_s=float(rec["compute_time_s"][j]),
        wall_clock_s=float(rec["wall_clock_s"][j]), cost_usd=cost if math.isfinite(cost) else None,
        platform=offer.platform if offer else None, instance=offer.instance if offer else None,
        pricing=offer.pricing if offer else None,
        price_usd_per_gpu_hour=offer.price_usd_per_gpu_hour if offer else None,
        instances=int(rec["instances"][j]) if offer else None, price_as_of=offer.price_as_of if offer else None,
    )


def _usd_short(x: float) -> str:
    return f"${x / 1e6:.3g}M" if x >= 1e6 else (f"${x / 1e3:.3g}k" if x >= 1e3 else f"${x:,.0f}")


def _explain_losses(plans: list[PlanResult], objective: str) -> list[PlanResult]:
    """Why each runner-up lost to the first plan, compactly: '+3.1% time, +$25,347', '+8 GPUs', 'tie'."""
    from dataclasses import replace

    if not plans:
        return plans
    best = plans[0]
    out = [replace(best, why_not_best="best" if objective != "pareto" else "fastest on the front")]
    for p in plans[1:]:
        why = []
        dt = p.wall_clock_s / best.wall_clock_s - 1.0
        dc = (p.cost_usd - best.cost_usd) if (p.cost_usd is not None and best.cost_usd is not None) else None
        if objective == "gpus" and p.gpus != best.gpus:
            why.append(f"+{p.gpus - best.gpus} GPUs")
        parts = [("time", dt, f"{100 * dt:+.1f}% t")]
        if dc is not None:
            parts.append(("cost", dc, f"{'+' if dc >= 0 else '-'}{_usd_short(abs(dc))}"))
        if objective == "cost":
            parts.reverse()
        why += [text for _, v, text in parts if abs(v) > 1e-9 and (abs(v) >= 0.5 or _ == "time")]
        if objective == "pareto":
            why.append("trade-off")
        out.append(replace(p, why_not_best=", ".join(why) or "tie"))
    return out


def strategy_note(plans: Sequence[PlanResult], node_size: int | None = None) -> str:
    """Seed 000's size-tier guidance, derived from what the best plans actually needed."""
    if not plans:
        return ""
    best = plans[0]
    parts = []
    shard = best.sharding
    stage = {Sharding.NONE: "no sharding (plain DDP)", Sharding.ZERO1: "ZeRO-1", Sharding.ZERO2: "ZeRO-2",
             Sharding.ZERO3: "ZeRO-3", Sharding.FSDP_FULL: "FSDP full shard (ZeRO-3)",
             Sharding.FSDP_GRAD_OP: "FSDP shard-grad-op (ZeRO-2)", Sharding.FSDP_HYBRID: "hybrid FSDP",
             Sharding.MEGATRON_DISTOPT: "Megatron distributed optimizer (ZeRO-1)"}[shard]
    parts.append(stage)
    parts.append(f"tensor parallel {best.tp}" if best.tp > 1 else "no tensor parallelism")
    parts.append(f"pipeline parallel {best.pp}" if best.pp > 1 else "no pipeline parallelism")
    if best.cp > 1:
        parts.append(f"context parallel {best.cp}")
    parts.append({Recompute.NONE: "no recompute", Recompute.SELECTIVE: "selective recompute",
                  Recompute.FULL: "full activation recompute"}[best.recompute])
    if best.offload != Offload.NONE:
        parts.append("optimizer CPU offload")
    node = node_size or best.gpus_per_node
    parts.append(f"{'multi-node' if best.gpus > node else 'single node'} ({best.gpus} GPUs, {node} per node)")
    shared = []
    for attr, label in (("tp", "tensor parallelism"), ("pp", "pipeline parallelism")):
        if all(getattr(p, attr) > 1 for p in plans):
            shared.append(label)
    if all(p.recompute != Recompute.NONE for p in plans):
        shared.append("activation recompute")
    if all(p.sharding != Sharding.NONE for p in plans):
        shared.append("sharded optimizer states")
    text = "best plan uses " + ", ".join(parts)
    if shared and len(plans) > 1:
        text += f"; every one of the top {len(plans)} plans needs " + ", ".join(shared)
    return text
