"""`sizeup budget`: monthly plan (seed 004) and buy vs rent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sizeup.cli import main

SEED = str(Path(__file__).parents[1] / "examples" / "seed004.yaml")


def run(capsys, *args):
    code = main(["budget", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_seed004_plan_with_given_costs(capsys):
    # seed 004: 3 x 4 x $0.62 + 3 x 1 x $1.42 = $7.44 + $4.26 = $11.70
    code, out, err = run(capsys, "--phase", "dev:3:4:0.62", "--phase", "prod:3:1:1.42", "--json")
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert plan["total_usd"] == pytest.approx(11.70)
    assert [p["monthly_usd"] for p in plan["phases"]] == pytest.approx([2.48, 1.42])
    assert plan["runs"] == 15


def test_plan_costs_computed_from_scenario(capsys):
    code, out, err = run(capsys, SEED, "--phase", "dev:3:4:lambda/a10", "--phase", "prod:3:1:1.42", "--json")
    assert code == 0, err
    data = json.loads(out)["plan"]
    dev = data["phases"][0]
    detail = data["runs_detail"]["dev"]
    assert detail["platform"] == "lambda" and detail["gpu"] == "a10" and detail["price_as_of"]
    assert dev["cost_per_run_usd"] == pytest.approx(detail["total_cost_usd"])
    assert dev["total_usd"] == pytest.approx(12 * detail["total_cost_usd"])


def test_buy_vs_rent_break_even(capsys):
    # break-even H = purchase / (rent - energy); energy = 450 W * 1.0 / 1000 * $0.20 = $0.09/h
    code, out, err = run(capsys, "--buy-gpu", "rtx-4090", "--purchase-usd", "1599", "--power-w", "450", "--pue", "1",
                         "--usd-per-kwh", "0.20", "--rent-usd-per-hour", "0.34", "--json")
    assert code == 0, err
    r = json.loads(out)["buy_vs_rent"]
    assert r["own_energy_usd_per_hour"] == pytest.approx(0.09)
    assert r["break_even_hours"] == pytest.approx(1599 / 0.25)


def test_buy_uses_catalog_purchase_price_and_tdp(capsys):
    code, out, err = run(capsys, "--buy-gpu", "rtx-4090", "--rent-usd-per-hour", "0.5", "--json")
    assert code == 0, err
    r = json.loads(out)["buy_vs_rent"]
    assert r["purchase_usd"] == pytest.approx(1599) and r["power_w"] == pytest.approx(450)
    assert "4090" in r["purchase_source"] or "pcgamer" in r["purchase_source"]


def test_seed004_scenario_plan_vs_buying(capsys):
    code, out, err = run(capsys, SEED, "--json")
    assert code == 0, err
    data = json.loads(out)
    # the scenario's two phases, costed by sizeup, and the 4090 used only for the plan's hours
    assert len(data["plan"]["phases"]) == 2
    assert data["buy_vs_rent"]["used_hours"] < 100
    assert data["buy_vs_rent"]["own_total_usd"] > data["plan"]["total_usd"]


@pytest.mark.parametrize("args, needle", [
    (["--phase", "dev:3:4"], "name:months:runs_per_month:cost_per_run"),
    (["--phase", "dev:x:4:1"], "must be a number"),
    (["--phase", "dev:3:4:lambda/a10"], "needs a model"),
    ([], "--phase"),
    (["--buy-gpu", "a100-80gb"], "--purchase-usd"),
    (["--buy-gpu", "rtx-4090", "--utilization", "2"], "--utilization"),
])
def test_bad_input(capsys, args, needle):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1
