"""Plan search: legal candidates, the same numbers as the scalar core path, constraints, Pareto, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sizeup.catalog import load_catalog
from sizeup.catalog.overheads import load_overheads
from sizeup.cli import main
from sizeup.core.cost import CostKnobs, Offer, estimate_cost
from sizeup.core.memory import estimate_memory
from sizeup.core.timing import default_knobs, estimate_step
from sizeup.search.candidates import RULES, SearchSpace, default_gpu_counts, generate, is_legal
from sizeup.core.types import Offload, Recompute, Sharding
from sizeup.search.search import Constraints, CostInputs, Recipe, Target, cost_arrays, search

CAT = load_catalog()
TINY = CAT.model("gpt2")
MID = CAT.model("llama-3.2-1b")
GPUS = ("h100-sxm", "a100-80gb-sxm")
COST = CostInputs(knobs=CostKnobs(gpu_mtbf_h=50_000.0, restart_s=600.0, checkpoint_write_bytes_per_s=2e9,
                                  checkpoints_kept=2, log_bytes=1e9),
                  checkpoint_base_bytes=2e10, checkpoint_bytes_per_rank=16e3, final_weights_bytes=3e9,
                  dataset_bytes=4e11)


def _targets(names=GPUS):
    return [Target(CAT.gpu(n), tuple(CAT.offers(gpu=n, pricing="on-demand", strict=False))) for n in names]


def _run(model=TINY, tokens=2e9, objective="time", constraints=Constraints(), max_gpus=32, top=8, names=GPUS,
         recipe=Recipe(), **space_kw):
    space = SearchSpace(seq_len=space_kw.pop("seq_len", 1024), global_batches=space_kw.pop("global_batches", (64, 128)),
                        max_gpus=max_gpus, **space_kw)
    return search(model, tokens, space, _targets(names), objective=objective, top=top, constraints=constraints,
                  cost=COST, knobs=default_knobs(), overheads=load_overheads(), recipe=recipe)


@pytest.fixture(scope="module")
def base():
    return _run()


# --------------------------------------------------------------------------- candidates


def test_candidates_are_legal_and_counts_add_up():
    space = SearchSpace(seq_len=2048, global_batches=(96, 128), max_gpus=64)
    counts = default_gpu_counts(8, 64)
    assert counts == (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64)  # powers of two + whole 8-GPU nodes
    c = generate(MID, space, 8, counts)
    assert c.size > 0
    # every candidate: product of degrees = GPUs, divisibility, batch identity (torchtitan ParallelDims rule)
    assert np.all(c.tp * c.pp * c.cp * c.dp == c.gpus)
    assert np.all(MID.num_heads % c.tp == 0)
    assert np.all((MID.num_kv_heads % c.tp == 0) | (c.tp % MID.num_kv_heads == 0))
    assert np.all(MID.num_layers % c.pp == 0)
    assert np.all(2048 % c.cp == 0)
    assert np.all(c.tp <= 8)
    assert np.all(c.micro_batch * c.dp * c.grad_accum == c.global_batch)
    # nothing lost: legal plans + everything each rule removed = the whole grid
    assert c.size + sum(c.pruned.values()) == c.considered
    assert set(c.pruned) <= set(RULES)
    for j in np.random.default_rng(0).choice(c.size, 50, replace=False):
        plan = {k: int(getattr(c, k)[j]) for k in ("gpus", "tp", "pp", "cp", "ep", "micro_batch", "grad_accum",
                                                   "global_batch")}
        assert is_legal(MID, space, 8, plan) == []


def test_illegal_plans_are_named():
    space = SearchSpace(seq_len=2048, global_batches=(128,))
    bad = {"gpus": 12, "tp": 3, "pp": 7, "cp": 1, "ep": 1, "micro_batch": 1, "grad_accum": 1, "global_batch": 4}
    problems = is_legal(MID, space, 8, bad)
    assert RULES[0] in problems and RULES[3] in problems


def test_whole_instances_when_a_platform_is_named():
    assert default_gpu_counts(8, 40, instance_sizes=(8,)) == (8, 16, 24, 32, 40)
    # instances smaller than a node: one instance only (no inter-instance network assumed)
    assert default_gpu_counts(8, 64, instance_sizes=(1, 4, 8)) == (1, 4, 8, 16, 24, 32, 40, 48, 56, 64)


# --------------------------------------------------------------------------- same numbers as the scalar path


def _check_scalar(result, model=TINY, tokens=2e9):
    knobs, ov = default_knobs(), load_overheads()
    assert result.plans, "the search found nothing"
    for p in result.plans + result.best_per_gpu:
        setup = p.setup()
        gpu = CAT.gpu(p.gpu)
        assert setup.tp * setup.pp * setup.cp * setup.dp == p.gpus == setup.gpus
        assert setup.global_batch == p.global_batch
        mem = estimate_memory(model, setup, gpu, overheads=ov, kernel=p.recipe.memory_kernel)
        assert mem.fits
        assert mem.peak_reserved_bytes == pytest.approx(p.memory_reserved_bytes, rel=1e-9)
        assert mem.peak_allocated_bytes == pytest.approx(p.memory_allocated_bytes, rel=1e-9)
        step = estimate_step(model, setup, gpu, knobs, kernel=p.recipe.timing_kernel)
        assert step.step_time_s == pytest.approx(p.step_time_s, rel=1e-9)
        assert step.tokens_per_s == pytest.approx(p.tokens_per_s, rel=1e-9)
        assert step.mfu == pytest.approx(p.mfu, rel=1e-9)
        assert step.bound == p.bound
        steps = math.ceil(tokens / setup.tokens_per_step - 1e-9)
        assert p.steps == steps and p.compute_time_s == pytest.approx(steps * step.step_time_s, rel=1e-9)
        if p.cost_usd is not None:
            offer = next(o for o in CAT.offers(gpu=p.gpu, pricing="on-demand", strict=False)
                         if o.platform == p.platform and o.instance == p.instance)
            est = estimate_cost(p.compute_time_s, p.gpus, offer, knobs=COST.knobs,
                                checkpoint_bytes=COST.checkpoint_base_bytes + COST.checkpoint_bytes_per_rank * p.gpus,
                                final_weights_bytes=COST.final_weights_bytes, dataset_bytes=COST.dataset_bytes)
            assert est.total_cost_usd == pytest.approx(p.cost_usd, rel=1e-9)
            assert est.wall_clock_s == pytest.approx(p.wall_clock_s, rel=1e-9)


def test_plans_match_scalar_core(base):
    _check_scalar(base)


@pytest.mark.parametrize("kw", [
    dict(shardings=(Sharding.ZERO3, Sharding.FSDP_HYBRID), recomputes=(Recompute.FULL,), offloads=(Offload.CPU,)),
    dict(shardings=(Sharding.MEGATRON_DISTOPT, Sharding.ZERO1), recomputes=(Recompute.SELECTIVE,), pp=(2, 4)),
    dict(shardings=(Sharding.NONE, Sharding.FSDP_GRAD_OP, Sharding.FSDP_HYBRID), recipe=Recipe(kernel="eager")),
    dict(model=MID, tokens=5e9, seq_len=4096, global_batches=(48, 96), cp=(1, 2), objective="pareto", top=20),
    dict(model=CAT.model("mixtral-8x7b"), tokens=1e9, max_gpus=16, names=("h200",), seq_len=1024,
         global_batches=(32,), top=20),
])
def test_varied_plans_match_scalar_core(kw):
    model, tokens = kw.pop("model", TINY), kw.pop("tokens", 2e9)
    r = _run(model=model, tokens=tokens, **kw)
    _check_scalar(r, model, tokens)
    if model.is_moe:
        assert any(p.ep > 1 for p in r.plans) and all(model.num_experts % p.ep == 0 and p.dp % p.ep == 0
                                                      for p in r.plans)


@pytest.mark.parametrize("pricing,rate,mtbf", [("on-demand", 0.0, 0.0), ("spot", 0.05, 0.0), ("spot", 0.2, 20_000.0),
                                               ("on-demand", 0.0, 5_000.0)])
def test_cost_arrays_equal_estimate_cost(pricing, rate, mtbf):
    offer = Offer(platform="x", instance="8x", gpu_id="h100-sxm", gpus_per_instance=8, pricing=pricing,
                  price_usd_per_hour=24.0, price_as_of="2026-01-01", price_source="test", billing_increment_s=3600.0,
                  min_billing_s=60.0, preemption_rate_per_hour=rate, storage_usd_per_gb_month=0.08,
                  egress_usd_per_gb=0.09, egress_free_gb=100.0, restart_s=300.0 if pricing == "spot" else 0.0)
    cost = CostInputs(knobs=CostKnobs(gpu_mtbf_h=mtbf, checkpoint_write_bytes_per_s=1e9, checkpoints_kept=3),
                      checkpoint_base_bytes=1.4e12, checkpoint_bytes_per_rank=16e3, final_weights_bytes=1.4e11,
                      dataset_bytes=4e12)
    T = np.array([10.0, 3599.0, 86400.0, 40 * 86400.0])
    g = np.array([1, 8, 12, 1024])
    arr = cost_arrays(T, g, offer, cost)
    for i in range(T.size):
        est = estimate_cost(float(T[i]), int(g[i]), offer, knobs=cost.knobs,
                            checkpoint_bytes=cost.checkpoint_base_bytes + cost.checkpoint_bytes_per_rank * g[i],
                            final_weights_bytes=cost.final_weights_bytes, dataset_bytes=cost.dataset_bytes)
        assert arr["total_usd"][i] == pytest.approx(est.total_cost_usd, rel=1e-9)
        assert arr["wall_clock_s"][i] == pytest.approx(est.wall_clock_s, rel=1e-9)
        assert arr["billed_s"][i] == pytest.approx(est.billed_s, rel=1e-9)
        assert bool(arr["stalled"][i]) == (not est.feasible)


# --------------------------------------------------------------------------- objectives and constraints


def test_time_ranking_and_deadline(base):
    walls = [p.wall_clock_s for p in base.plans]
    assert walls == sorted(walls)
    assert base.plans[0].why_not_best == "best"
    assert base.evaluated > 0 and base.rate_per_s > 0 and base.elapsed_s > 0
    # a deadline between the fastest and the slowest shown plan: the best plan meets it
    deadline = (walls[0] + walls[-1]) / 2 if walls[-1] > walls[0] else walls[0] * 1.01
    r = _run(constraints=Constraints(deadline_s=deadline), objective="cost")
    assert r.plans and all(p.wall_clock_s <= deadline for p in r.plans)
    assert "misses the deadline" in r.pruned or all(p.wall_clock_s <= deadline for p in base.plans)


def test_memory_pruning_counts():
    r = _run(model=MID, tokens=1e9, max_gpus=8, names=("a100-80gb-sxm",), seq_len=4096, global_batches=(32,))
    assert r.fits_memory + r.pruned.get("does not fit in GPU memory", 0) == r.evaluated
    assert r.pruned.get("does not fit in GPU memory", 0) > 0  # micro-batch 8 without recompute does not fit


def test_pareto_front_is_not_dominated():
    r = _run(objective="pareto", top=50)
    pts = [(p.wall_clock_s, p.cost_usd) for p in r.plans]
    assert pts
    for i, (w, c) in enumerate(pts):
        for j, (w2, c2) in enumerate(pts):
            if i != j:
                assert not (w2 <= w and c2 <= c and (w2 < w or c2 < c))


def test_min_gpus_objective():
    r = _run(model=MID, tokens=1e9, objective="gpus", names=("a100-40gb-sxm",), seq_len=2048, global_batches=(64,))
    gpus = [p.gpus for p in r.plans]
    assert gpus == sorted(gpus) and gpus[0] >= 1


_BASE_BEST = {}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objective=st.sampled_from(["time", "cost"]), deadline_frac=st.one_of(st.none(), st.floats(0.5, 5.0)),
       budget_frac=st.one_of(st.none(), st.floats(0.8, 3.0)), max_gpus=st.sampled_from([4, 8, 32]))
def test_constraints_never_improve_the_objective(objective, deadline_frac, budget_frac, max_gpus):
    if objective not in _BASE_BEST:
        _BASE_BEST[objective] = _run(objective=objective, top=1).plans[0]
    free = _BASE_BEST[objective]
    c = Constraints(deadline_s=None if deadline_frac is None else free.wall_clock_s * deadline_frac,
                    budget_usd=None if budget_frac is None else free.cost_usd * budget_frac)
    r = _run(objective=objective, top=1, constraints=c, max_gpus=max_gpus)
    if not r.plans:
        return
    b = r.plans[0]
    if objective == "time":
        assert b.wall_clock_s >= free.wall_clock_s * (1 - 1e-12)
    else:
        assert b.cost_usd >= free.cost_usd * (1 - 1e-12)
    if c.deadline_s is not None:
        assert b.wall_clock_s <= c.deadline_s
    if c.budget_usd is not None:
        assert b.cost_usd <= c.budget_usd


# --------------------------------------------------------------------------- CLI


def test_cli_json(capsys):
    code = main(["search", "gpt2", "--tokens", "1B", "--seq", "1024", "--gpu", "h100-sxm", "--max-gpus", "16",
                 "--global-batch", "64", "--deadline", "30d", "--top", "3", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("evaluated", "feasible", "elapsed_s", "plans", "pruned", "rate_configs_per_s"):
        assert key in data
    p = data["plans"][0]
    assert p["config"]["tp"] * p["config"]["pp"] * p["config"]["dp"] * p["config"]["cp"] == p["gpus"]
    assert p["results"]["step_time_s"] > 0 and p["results"]["wall_clock_s"] <= 30 * 86400
    assert len(data["plans"]) <= 3


def test_cli_table_export_and_min_gpus(capsys):
    code = main(["search", "llama-3.2-1b", "--tokens", "10B", "--gpu", "a100-40gb-sxm", "--min-gpus",
                 "--global-batch", "128", "--max-gpus", "16", "--export", "deepspeed"])
    out = capsys.readouterr().out
    assert code == 0
    assert "fewest GPUs" in out and "configs/s" in out and "pruned" in out
    assert '"train_batch_size": 128' in out and "strategy" in out


@pytest.mark.parametrize("args,message", [
    (["--objective", "fastest"], "objective"),
    (["--deadline", "soon"], "duration"),
    (["--gpu", "h1000"], "h1000"),
    (["--global-batch", "512-64"], "range"),
    (["--export", "ray"], "export"),
])
def test_cli_bad_input_exits_2(capsys, args, message):
    code = main(["search", "gpt2", "--tokens", "1B", *args])
    assert code == 2
    assert message in capsys.readouterr().err.lower()


def test_cli_explain_shows_the_scalar_terms(capsys):
    assert main(["search", "gpt2", "--tokens", "1B", "--max-gpus", "8", "--global-batch", "32", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "time/step" in out and "memory/peak_reserved" in out and "search/evaluated" in out
