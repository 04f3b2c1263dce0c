"""Reverse mode: the answer, fed forward through estimate_training + estimate_cost, meets the budget/deadline,
and a slightly larger model / more tokens / one GPU fewer does not."""

from __future__ import annotations

import json

import pytest

from sizeup.cli import main
from sizeup.core.cost import estimate_cost
from sizeup.core.estimate import estimate_training
from sizeup.core.reverse import Constraints, Recipe, evaluate_plan, fewest_gpus, largest_model, most_tokens
from sizeup.core.scale import file_sizes, scaled_arch
from sizeup.core.workload import Workload


@pytest.fixture(scope="module")
def env():
    from sizeup.catalog import load_catalog
    from sizeup.catalog.overheads import load_overheads
    from sizeup.commands.scale import build_pricings
    from sizeup.core.timing import default_knobs

    cat = load_catalog()
    pricings, _ = build_pricings(cat, ["a100-80gb-sxm", "h100-sxm"], ["aws", "lambda"], ["on-demand"], None)
    recipe = Recipe(global_batch=512, overheads=load_overheads(), knobs=default_knobs())
    return cat, {g: k["on-demand"] for g, k in pricings.items()}, recipe


def forward_cost(plan, pricing):
    """Re-derive time and cost from scratch with the public forward APIs (no reverse-mode code)."""
    train = estimate_training(plan.model, plan.fit.setup, plan.gpu, Workload(tokens=plan.tokens), pricing_knobs(),
                              with_memory=False)
    offer = next(o for o in pricing.offers if o.platform == plan.cost.platform and o.instance == plan.cost.instance)
    files = file_sizes(plan.params, plan.fit.setup, plan.tokens, pricing.dataset_bytes_per_token)
    cost = estimate_cost(train.total_time_s, plan.gpus, offer, checkpoint_bytes=files.checkpoint_bytes,
                         final_weights_bytes=files.final_weights_bytes, dataset_bytes=files.dataset_bytes,
                         gpu_tdp_w=plan.gpu.tdp_w, knobs=pricing.knobs)
    return train, cost


def pricing_knobs():
    from sizeup.core.timing import default_knobs

    return default_knobs()


def test_largest_model_meets_budget_and_larger_does_not(env):
    cat, pricings, recipe = env
    gpu = cat.gpu("a100-80gb")
    c = Constraints(budget_usd=3000)
    ans = largest_model([(gpu, [8])], pricings, c, recipe)
    p = ans.plan
    assert p is not None and p.feasible and ans.binding == "budget"
    # Chinchilla-consistent: D = 20 N
    assert p.tokens == pytest.approx(20 * p.params)
    train, cost = forward_cost(p, pricings[gpu.id])
    assert train.total_time_s == pytest.approx(p.train.total_time_s)
    assert cost.total_cost_usd <= 3000
    # a model 5 % larger (with its 20 N tokens) busts the budget
    bigger = scaled_arch(p.params * 1.05)
    q = evaluate_plan(bigger.model, 20 * bigger.params, gpu, 8, pricings[gpu.id], c, recipe)
    assert not q.feasible and "budget" in q.failed
    # the answer is bracketed tightly: the next infeasible point is within a few % of the answer
    assert ans.next_plan is not None and ans.next_plan.params / p.params < 1.1


def test_largest_model_with_deadline_binding(env):
    cat, pricings, recipe = env
    gpu = cat.gpu("h100-sxm")
    c = Constraints(budget_usd=1e7, deadline_s=2 * 86400)
    ans = largest_model([(gpu, [8])], pricings, c, recipe)
    p = ans.plan
    assert ans.binding == "deadline"
    _, cost = forward_cost(p, pricings[gpu.id])
    assert cost.wall_clock_s <= 2 * 86400
    bigger = scaled_arch(p.params * 1.05)
    q = evaluate_plan(bigger.model, 20 * bigger.params, gpu, 8, pricings[gpu.id], c, recipe)
    assert not q.feasible and "deadline" in q.failed


def test_most_tokens_for_fixed_model(env):
    cat, pricings, recipe = env
    gpu = cat.gpu("h100-sxm")
    model = scaled_arch(1e9).model
    c = Constraints(budget_usd=1000)
    ans = most_tokens(model, [(gpu, [8])], pricings, c, recipe)
    p = ans.plan
    assert p is not None and p.feasible
    _, cost = forward_cost(p, pricings[gpu.id])
    assert cost.total_cost_usd <= 1000
    q = evaluate_plan(model, p.tokens * 1.02, gpu, 8, pricings[gpu.id], c, recipe)
    assert not q.feasible and "budget" in q.failed


def test_fewest_gpus_meets_deadline_and_one_fewer_does_not(env):
    cat, pricings, recipe = env
    gpu = cat.gpu("h100-sxm")
    model = scaled_arch(1e9).model
    c = Constraints(deadline_s=3 * 86400)
    ans = fewest_gpus(model, 100e9, [gpu], pricings, c, recipe)
    p = ans.plan
    assert p is not None and p.gpus > 1
    _, cost = forward_cost(p, pricings[gpu.id])
    assert cost.wall_clock_s <= 3 * 86400
    q = evaluate_plan(model, 100e9, gpu, p.gpus - 1, pricings[gpu.id], c, recipe)
    assert not q.feasible and "deadline" in q.failed
    assert ans.binding == "deadline"


def test_memory_is_a_constraint(env):
    from sizeup.core.scale import fit_plan

    cat, pricings, recipe = env
    gpu = cat.gpu("a100-80gb")
    model = scaled_arch(3e10).model
    # 30B x 16 B/param of model states = 480 GB: one 80 GB GPU cannot hold it without offload
    no_offload = fit_plan(model, gpu, 1, global_batch=512, seq_len=2048, overheads=recipe.overheads,
                          knobs=recipe.knobs, max_level="TP")
    assert not no_offload.fits
    # with offload it fits but is far too slow for an hour: infeasible, with the reason
    p = evaluate_plan(model, 1e9, gpu, 1, pricings[gpu.id], Constraints(deadline_s=3600), recipe)
    assert not p.feasible and p.reasons and set(p.failed) & {"memory", "deadline"}


def test_nothing_fits_names_the_constraint(capsys):
    assert main(["fit-budget", "--budget", "0.01", "--gpu", "a100-80gb", "--gpus", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["answer"] is None and data["binding"] == "nothing fits (budget)" and data["reasons"]


def test_cli_json(capsys):
    code = main(["fit-budget", "--budget", "5000", "--gpu", "a100-80gb", "--gpus", "8", "--platform", "aws", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "largest-model" and data["binding"] == "budget"
    a = data["answer"]
    assert a["cost_usd"] <= 5000 and a["gpus"] == 8 and a["tokens"] == pytest.approx(20 * a["params"])
    assert data["next"]["cost_usd"] > 5000


def test_cli_fewest_gpus_text(capsys):
    code = main(["fit-budget", "--deadline", "3d", "--tokens", "100B", "--params", "1B", "--gpu", "h100-sxm",
                 "--platform", "aws,lambda"])
    assert code == 0
    out = capsys.readouterr().out
    assert "fewest GPUs" in out and "binding constraint" in out


@pytest.mark.parametrize("args", [
    ["fit-budget", "--gpu", "a100-80gb"],
    ["fit-budget", "--budget", "100"],
    ["fit-budget", "--budget", "100", "--gpu", "a100-80gb", "--gpus", "2", "--max-gpus", "4"],
    ["fit-budget", "--budget", "-5", "--gpu", "a100-80gb"],
    ["fit-budget", "--budget", "100", "--gpu", "nogpu"],
])
def test_cli_bad_input(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
