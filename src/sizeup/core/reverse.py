"""Reverse mode (`sizeup fit-budget`): from a budget and/or a deadline back to a plan.

PURE. Three questions, each answered by bisection over the REAL forward model (memory fit with the
fix ladder of core/scale.py, `estimate_training`, `estimate_cost` on the cheapest offer), never by a
6ND shortcut, so the answer fed forward meets the constraints by construction:

  (a) largest model   : max N such that plan(N, D = r N) is feasible     (r = 20 tokens/param, Chinchilla)
  (b) most tokens     : max D such that plan(N fixed, D) is feasible
  (c) fewest GPUs     : min n such that plan(N, D, n GPUs) is feasible   (N = D / r when not given)

feasible = fits in memory (some rung of the fix ladder) and cost <= budget and wall-clock <= deadline
(wall-clock includes spot preemptions and checkpoint writes, core/cost.py).
Bisection runs in log space for N and D (cost ~ N * D: ~N^2 on the Chinchilla line) until hi/lo <= 1 + rtol,
and over integers for n. The answer is the last feasible point (lo); `next_plan` is the first infeasible
point (hi), whose failing constraint is the binding one.
Sources: Hoffmann et al. 2022 (arXiv:2203.15556) Table 3 for D ~ 20 N; bisection: any numerical text
(feasibility is monotone in N, D and n up to the discreteness of architectures and micro-batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sizeup.core.explain import Term
from sizeup.core.scale import (
    FitPlan, Pricing, ScaleFamily, fit_plan, priced_plan, scaled_arch,
)
from sizeup.core.types import GpuSpec, ModelArch, Optimizer, Overheads, Precision
from sizeup.core.workload import Workload

CHINCHILLA_SOURCE = "Hoffmann et al. 2022 (arXiv:2203.15556) Table 3: ~20 tokens per parameter"


@dataclass(frozen=True)
class Constraints:
    budget_usd: float | None = None
    deadline_s: float | None = None

    def __post_init__(self):
        if self.budget_usd is None and self.deadline_s is None:
            raise ValueError("give a budget, a deadline or both")


@dataclass(frozen=True)
class Recipe:
    """How every candidate plan is trained (the same for all points of a search)."""

    seq_len: int = 2048
    global_batch: int | None = None
    """Sequences per step; None = micro-batch x data parallel (no accumulation)."""
    precision: Precision = Precision.BF16_MIXED
    optimizer: Optimizer = Optimizer.ADAMW
    overheads: Overheads | None = None
    knobs: Any = None
    kernel: str = "fused"
    max_micro_batch: int = 8
    family: ScaleFamily = ScaleFamily()
    tokens_per_param: float = 20.0


@dataclass(frozen=True)
class Plan:
    """One candidate, evaluated forward."""

    gpu_id: str
    gpus: int
    params: float
    tokens: float
    model: ModelArch
    fit: FitPlan
    train: Any = None
    cost: Any = None
    feasible: bool = False
    failed: tuple[str, ...] = ()
    """Constraint names that fail: memory, budget, deadline, interruptions, no-offer."""
    reasons: tuple[str, ...] = ()
    gpu: GpuSpec | None = None
    """The GPU as wired for the chosen offer (what the plan was fitted and timed on)."""

    @property
    def wall_clock_s(self) -> float:
        if self.cost is not None:
            return self.cost.wall_clock_s
        return self.train.total_time_s if self.train is not None else math.nan

    @property
    def cost_usd(self) -> float:
        return self.cost.total_cost_usd if self.cost is not None else math.nan

    @property
    def mfu(self) -> float:
        return self.train.step.mfu if self.train is not None else math.nan


def evaluate_plan(model: ModelArch, tokens: float, gpu: GpuSpec, gpus: int, pricing: Pricing,
                  constraints: Constraints, recipe: Recipe = Recipe()) -> Plan:
    """Forward: fit (fix ladder) -> estimate_training -> cheapest offer's cost (re-timed on multi-instance
    wiring) -> check constraints."""
    from sizeup.core.estimate import estimate_training
    from sizeup.core.params import count_params

    fit_kwargs = dict(global_batch=recipe.global_batch, seq_len=recipe.seq_len, precision=recipe.precision,
                      optimizer=recipe.optimizer, overheads=recipe.overheads, max_micro_batch=recipe.max_micro_batch)
    fit = fit_plan(model, gpu, gpus, knobs=recipe.knobs, kernel=recipe.kernel, **fit_kwargs)
    params = float(count_params(model).total)
    if not fit.fits:
        return Plan(gpu.id, gpus, params, tokens, model, fit, failed=("memory",), reasons=fit.reasons, gpu=gpu)
    workload = Workload(tokens=tokens)
    train = estimate_training(model, fit.setup, gpu, workload, recipe.knobs, kernel=recipe.kernel, with_memory=False)
    pp = priced_plan(model, gpu, gpus, workload, pricing, fit_kwargs=fit_kwargs, knobs=recipe.knobs,
                     kernel=recipe.kernel, dataset_tokens=tokens, base=(fit, train))
    if pp is None:
        return Plan(gpu.id, gpus, params, tokens, model, fit, train, None, False, ("no-offer",),
                    (f"no offer for {gpus}x {gpu.id}",), gpu=gpu)
    cost = pp.cost
    failed, reasons = [], []
    if not cost.feasible:
        failed.append("interruptions")
        reasons.extend(cost.reasons)
    if constraints.budget_usd is not None and cost.total_cost_usd > constraints.budget_usd:
        failed.append("budget")
        reasons.append(f"costs {_usd(cost.total_cost_usd)} > budget {_usd(constraints.budget_usd)}")
    if constraints.deadline_s is not None and cost.wall_clock_s > constraints.deadline_s:
        failed.append("deadline")
        reasons.append(f"takes {cost.wall_clock_s / 3600:,.3g} h > deadline {constraints.deadline_s / 3600:,.3g} h")
    return Plan(gpu.id, gpus, params, tokens, model, pp.fit, pp.train, cost, not failed, tuple(failed),
                tuple(reasons), gpu=pp.gpu)


@dataclass(frozen=True)
class Answer:
    mode: str
    """largest-model | most-tokens | fewest-gpus"""
    plan: Plan | None
    """The answer (feasible), or None when nothing is feasible."""
    next_plan: Plan | None
    """The first infeasible point just beyond the answer (what binds)."""
    binding: str
    evaluations: int
    candidates: tuple[Plan | None, ...] = ()
    """Best feasible plan per (GPU kind, GPU count) searched."""
    terms: tuple[Term, ...] = field(default=())


def binding_constraint(next_plan: Plan | None, at_limit: str = "search range") -> str:
    if next_plan is None:
        return at_limit
    order = ("memory", "budget", "deadline", "interruptions", "no-offer")
    for name in order:
        if name in next_plan.failed:
            both = [f for f in ("budget", "deadline") if f in next_plan.failed]
            return " and ".join(both) if len(both) == 2 else name
    return at_limit


def _usd(x: float) -> str:
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4g}"


def _binding(best: Plan | None, next_plan: Plan | None) -> str:
    if best is not None:
        return binding_constraint(next_plan)
    return "nothing fits" + (f" ({binding_constraint(next_plan)})" if next_plan is not None else "")


def _bisect_log(feasible_at, lo: float, hi_cap: float, rtol: float) -> tuple[Any, Any, int]:
    """(last feasible result, first infeasible result, evaluations) for x in [lo, hi_cap], log bisection.

    feasible_at(x) -> Plan. Returns (None, plan_at_lo, n) when lo itself is infeasible."""
    n = 1
    lo_plan = feasible_at(lo)
    if not lo_plan.feasible:
        return None, lo_plan, n
    x_lo, x_hi, hi_plan = lo, lo, None
    while True:  # grow until infeasible
        x_try = min(x_hi * 4.0, hi_cap)
        if x_try <= x_hi:
            return lo_plan, None, n
        p = feasible_at(x_try)
        n += 1
        if p.feasible:
            x_lo, lo_plan, x_hi = x_try, p, x_try
            if x_try >= hi_cap:
                return lo_plan, None, n
        else:
            x_hi, hi_plan = x_try, p
            break
    while x_hi / x_lo > 1.0 + rtol:
        mid = math.sqrt(x_lo * x_hi)
        p = feasible_at(mid)
        n += 1
        if p.feasible:
            x_lo, lo_plan = mid, p
        else:
            x_hi, hi_plan = mid, p
    return lo_plan, hi_plan, n


def _largest_feasible(kind: str, gpus_options: Sequence[tuple[GpuSpec, Sequence[int]]],
                      pricings: dict[str, Pricing], constraints: Constraints, recipe: Recipe,
                      plan_at: Callable[..., Plan], size: Callable[[Plan], float], lo: float, hi: float,
                      rtol: float) -> Answer:
    """Bisect (in log space) the largest size that meets the constraints, for every GPU kind and count;
    keep the largest, then the cheapest."""
    best, best_next, evals, cands = None, None, 0, []
    for gpu, counts in gpus_options:
        pricing = pricings.get(gpu.id)
        if pricing is None:
            continue
        for n in counts:
            ok, nxt, k = _bisect_log(lambda x, gpu=gpu, n=n, pricing=pricing: plan_at(x, gpu, n, pricing), lo, hi, rtol)
            evals += k
            cands.append(ok)
            if ok is not None and (best is None or (size(ok), -ok.cost_usd) > (size(best), -best.cost_usd)):
                best, best_next = ok, nxt
            elif ok is None and best is None and best_next is None:
                best_next = nxt  # nothing feasible yet: keep why the smallest point fails
    return Answer(kind, best, best_next, _binding(best, best_next), evals, tuple(cands),
                  _answer_terms(kind, best, constraints, recipe))


def largest_model(gpus_options: Sequence[tuple[GpuSpec, Sequence[int]]], pricings: dict[str, Pricing],
                  constraints: Constraints, recipe: Recipe = Recipe(), *, min_params: float = 1e6,
                  max_params: float = 1e13, rtol: float = 0.01) -> Answer:
    """(a) The largest Chinchilla-consistent model (D = r N) that meets the budget and/or deadline."""

    def plan_at(x: float, gpu: GpuSpec, n: int, pricing: Pricing) -> Plan:
        arch = scaled_arch(x, recipe.family)
        return evaluate_plan(arch.model, recipe.tokens_per_param * arch.params, gpu, n, pricing, constraints, recipe)

    return _largest_feasible("largest-model", gpus_options, pricings, constraints, recipe, plan_at,
                             lambda p: p.params, min_params, max_params, rtol)


def most_tokens(model: ModelArch, gpus_options: Sequence[tuple[GpuSpec, Sequence[int]]],
                pricings: dict[str, Pricing], constraints: Constraints, recipe: Recipe = Recipe(), *,
                min_tokens: float = 1e6, max_tokens: float = 1e15, rtol: float = 0.005) -> Answer:
    """(b) The most training tokens for a fixed model that meet the budget and/or deadline."""

    def plan_at(x: float, gpu: GpuSpec, n: int, pricing: Pricing) -> Plan:
        return evaluate_plan(model, x, gpu, n, pricing, constraints, recipe)

    return _largest_feasible("most-tokens", gpus_options, pricings, constraints, recipe, plan_at,
                             lambda p: p.tokens, min_tokens, max_tokens, rtol)


def fewest_gpus(model: ModelArch, tokens: float, gpus_list: Sequence[GpuSpec], pricings: dict[str, Pricing],
                constraints: Constraints, recipe: Recipe = Recipe(), *, max_gpus: int = 4096) -> Answer:
    """(c) The fewest GPUs (per kind; the answer is the fewest overall, then the cheapest) meeting the constraints."""
    best, best_next, evals, cands = None, None, 0, []
    for gpu in gpus_list:
        pricing = pricings.get(gpu.id)
        if pricing is None:
            continue

        def at(n: int, gpu=gpu, pricing=pricing) -> Plan:
            return evaluate_plan(model, tokens, gpu, n, pricing, constraints, recipe)

        lo_bad, lo_plan = 0, None
        n, ok = 1, None
        while n <= max_gpus:  # doubling
            p = at(n)
            evals += 1
            if p.feasible:
                ok = p
                break
            lo_bad, lo_plan = n, p
            if n == max_gpus:
                break
            n = min(n * 2, max_gpus)
        if ok is None:
            cands.append(None)
            if best is None and best_next is None:
                best_next = lo_plan
            continue
        hi = ok.gpus
        while hi - lo_bad > 1:  # integer bisection between the last infeasible and the first feasible count
            mid = (hi + lo_bad) // 2
            p = at(mid)
            evals += 1
            if p.feasible:
                hi, ok = mid, p
            else:
                lo_bad, lo_plan = mid, p
        cands.append(ok)
        if best is None or (ok.gpus, ok.cost_usd) < (best.gpus, best.cost_usd):
            best, best_next = ok, lo_plan
    terms = _answer_terms("fewest-gpus", best, constraints, recipe)
    binding = _binding(best, best_next) if best is None else (binding_constraint(best_next, "one GPU suffices")
                                                              if best.gpus > 1 else "one GPU suffices")
    return Answer("fewest-gpus", best, best_next, binding, evals, tuple(cands), terms)


def _answer_terms(mode: str, plan: Plan | None, c: Constraints, recipe: Recipe) -> tuple[Term, ...]:
    if plan is None:
        return ()
    terms = [Term(f"reverse/{mode}", {"largest-model": plan.params, "most-tokens": plan.tokens,
                                      "fewest-gpus": float(plan.gpus)}[mode],
                  {"largest-model": "params", "most-tokens": "tokens", "fewest-gpus": "GPUs"}[mode],
                  {"largest-model": "max N: plan(N, D = r N) feasible (log bisection)",
                   "most-tokens": "max D: plan(N, D) feasible (log bisection)",
                   "fewest-gpus": "min n: plan(N, D, n) feasible (doubling + integer bisection)"}[mode],
                  {"r_tokens_per_param": recipe.tokens_per_param, "budget_usd": c.budget_usd,
                   "deadline_s": c.deadline_s, "gpu": plan.gpu_id, "gpus": plan.gpus},
                  CHINCHILLA_SOURCE if mode == "largest-model" else "forward model: estimate_training + estimate_cost")]
    if plan.train is not None:
        terms.extend(t for t in plan.train.terms if t.name.startswith(("train/", "workload/")))
    if plan.cost is not None:
        terms.extend(t for t in plan.cost.terms if t.name in ("cost/compute", "cost/total", "time/wall_clock",
                                                              "cost/billed_time"))
    return tuple(terms)
