"""`sizeup compare`, `--impact`, `sizeup demo` and `cost_section` end to end (CLI via main())."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sizeup.cli import main

CATALOG = str(Path(__file__).parent / "data" / "cost_test_catalog.yaml")
SEED = ["llama-2-7b", "--samples", "10000", "--tokens-per-sample", "500", "--epochs", "3", "--peft", "lora",
        "--precision", "fp16-mixed", "--global-batch", "16", "--catalog", CATALOG]


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys, *args) -> dict:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_grid_sorted_by_cost_with_marks_and_as_of(capsys):
    data = run_json(capsys, *SEED, "--gpu", "t4,a10", "--platform", "hourlycloud,secondcloud",
                    "--pricing", "on-demand,spot")
    rows = data["rows"]
    assert len(rows) >= 3
    totals = [r["total_cost_usd"] for r in rows]
    assert totals == sorted(totals)
    assert "cheapest" in rows[0]["marks"]
    assert any("fastest" in r["marks"] for r in rows)
    assert all(r["price_as_of"] and r["price_source"] for r in rows)
    assert all(r["usd_per_tbps_hour"] > 0 for r in rows)
    # seed 004 field names are present next to the project's
    assert {"estimated_hours", "cost_breakdown", "throughput_tokens_per_sec"} <= set(rows[0])
    assert {"compute_cost", "storage_cost", "total_cost"} <= set(rows[0]["cost_breakdown"])
    # Pareto rows: none is both cheaper and faster than another Pareto row
    par = data["pareto"]
    for a in par:
        assert not any(b["total_cost_usd"] < a["total_cost_usd"] and b["wall_clock_s"] < a["wall_clock_s"]
                       for b in par)


def test_sort_by_time(capsys):
    data = run_json(capsys, *SEED, "--gpu", "t4,a10", "--platform", "secondcloud", "--sort", "time")
    walls = [r["wall_clock_s"] for r in data["rows"]]
    assert walls == sorted(walls)


def test_hourly_billing_and_whole_instances(capsys):
    data = run_json(capsys, *SEED, "--gpu", "t4,a100-80gb", "--gpus", "2", "--platform", "hourlycloud")
    by_gpu = {r["gpu"]: r for r in data["rows"]}
    assert by_gpu["t4"]["billed_s"] % 3600 == 0 and by_gpu["t4"]["billed_s"] >= by_gpu["t4"]["wall_clock_s"]
    a100 = by_gpu["a100-80gb-sxm"]
    assert a100["gpus"] == 2 and a100["gpus_paid"] == 8 and a100["instances"] == 1
    assert a100["compute_cost_usd"] == pytest.approx(16.0 * a100["billed_s"] / 3600)


def test_spot_row_adds_expected_restarts(capsys):
    data = run_json(capsys, *SEED, "--gpu", "t4", "--platform", "hourlycloud", "--pricing", "on-demand,spot")
    by = {r["pricing"]: r for r in data["rows"]}
    assert by["spot"]["price_usd_per_hour"] < by["on-demand"]["price_usd_per_hour"]
    # on-demand still sees hardware failures (Llama 3 MTBF), orders of magnitude rarer than preemptions
    assert by["spot"]["expected_interruptions"] > 0.1
    assert by["spot"]["expected_interruptions"] > 100 * by["on-demand"]["expected_interruptions"]
    assert by["spot"]["wall_clock_s"] > by["on-demand"]["wall_clock_s"]


def test_price_override_scales_compute_cost(capsys):
    base = run_json(capsys, *SEED, "--gpu", "t4", "--platform", "secondcloud")["rows"][0]
    over = run_json(capsys, *SEED, "--gpu", "t4", "--platform", "secondcloud", "--price-per-gpu-hour", "1.18")["rows"][0]
    assert over["compute_cost_usd"] == pytest.approx(base["compute_cost_usd"] * 1.18 / 0.59, rel=1e-6)
    assert over["price_source"] == "--price-per-gpu-hour"
    hourly = run_json(capsys, *SEED, "--gpu", "t4", "--platform", "secondcloud", "--billing-increment-s", "3600")
    assert hourly["rows"][0]["billed_s"] % 3600 == 0


def test_deadline_and_budget_exclude_rows(capsys):
    data = run_json(capsys, *SEED, "--gpu", "t4,a10", "--platform", "secondcloud", "--deadline", "2h")
    assert all(r["wall_clock_s"] <= 7200 for r in data["rows"])
    assert any("deadline" in r["excluded"] for r in data["excluded"])
    data = run_json(capsys, *SEED, "--gpu", "t4,a10", "--platform", "secondcloud", "--budget", "2")
    assert all(r["total_cost_usd"] <= 2 for r in data["rows"])
    assert any("budget" in r["excluded"] for r in data["excluded"])


def test_old_price_warns(capsys):
    data = run_json(capsys, *SEED, "--gpu", "a100-80gb", "--platform", "hourlycloud")
    assert any("days old" in w for w in data["warnings"])  # the test a100 price is from 2020


def test_max_gpus(capsys):
    data = run_json(capsys, *SEED, "--gpu", "t4", "--gpus", "1,2,8", "--max-gpus", "2", "--platform", "secondcloud")
    assert {r["gpus"] for r in data["rows"]} <= {1, 2}


@pytest.mark.parametrize("args, needle", [
    (["--gpu", "t4", "--platform", "nosuchcloud"], "unknown platform"),
    (["--gpu", "t4", "--platform", "secondcloud", "--pricing", "cheap"], "unknown pricing"),
    (["--gpu", "a100-80gb", "--platform", "secondcloud"], "t4"),  # lists what it offers
    (["--gpu", "t4", "--platform", "secondcloud", "--pricing", "spot"], "on-demand"),
    (["--gpu", "t4", "--platform", "secondcloud", "--sort", "price"], "sort"),
    (["--gpu", "t4", "--platform", "secondcloud", "--gpus", "two"], "--gpus"),
])
def test_bad_input_is_one_line_exit_2(capsys, args, needle):
    code, out, err = run(capsys, *SEED, *args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_missing_workload_is_an_error(capsys):
    code, _, err = run(capsys, "llama-2-7b", "--gpu", "t4", "--catalog", CATALOG, "--platform", "secondcloud")
    assert code == 2 and "--tokens" in err


def test_impact_full_finetune_does_not_fit_on_t4(capsys):
    pytest.importorskip("sizeup.core.memory")
    data = run_json(capsys, *SEED, "--impact", "--gpu", "t4", "--platform", "secondcloud")
    rows = {r["configuration"]: r for r in data["impact"]}
    # full fine-tuning of 6.7B params with Adam needs >= 16 B/param ~ 100 GB: never on a 16 GB T4
    assert not rows["no optimisation"]["fits"] and not rows["mixed precision only"]["fits"]
    assert rows["no optimisation"]["reasons"]
    # LoRA + fp16 needs the least memory of the four (16-bit frozen base, tiny optimizer state)
    mem = {k: r["memory_reserved_bytes"] for k, r in rows.items()}
    assert mem["both"] == min(mem.values())
    assert mem["no optimisation"] > 6 * mem["both"]


def test_impact_mixed_precision_is_faster_where_it_fits(capsys):
    data = run_json(capsys, *SEED, "--impact", "--gpu", "a100-80gb", "--platform", "hourlycloud")
    rows = {r["configuration"]: r for r in data["impact"]}
    assert rows["both"]["fits"] and rows["PEFT only"]["fits"]
    assert rows["both"]["hours"] < rows["PEFT only"]["hours"]


def test_scenario_file(capsys):
    seed = str(Path(__file__).parents[1] / "examples" / "seed004.yaml")
    data = run_json(capsys, seed, "--gpu", "t4", "--platform", "secondcloud", "--catalog", CATALOG)
    w = data["workload"]
    assert w["tokens"] == pytest.approx(15e6) and w["dataset_tokens"] == pytest.approx(5e6)


def test_cost_section_for_train():
    from sizeup.catalog import load_catalog
    from sizeup.commands.compare import cost_section, make_setup, Job
    from sizeup.core.estimate import estimate_training
    from sizeup.core.types import Peft, Precision
    from sizeup.core.workload import Workload

    cat = load_catalog(extra_files=(CATALOG,))
    model, gpu = cat.model("llama-2-7b"), cat.gpu("t4")
    job = Job(model=model, tokens=15e6, dataset_tokens=5e6, seq_len=500, global_batch=16,
              precision=Precision.FP16_MIXED, peft=Peft.LORA)
    setup = make_setup(job, gpu, 1, 4)
    te = estimate_training(model, setup, gpu, Workload(samples=10000, tokens_per_sample=500, epochs=3))
    out = cost_section(te, "hourlycloud", "on-demand", gpu, model=model, setup=setup, tokens=15e6,
                       dataset_tokens=5e6, catalog=cat)
    assert out["estimated_hours"] == pytest.approx(te.total_time_s / 3600, rel=1e-3)
    assert out["cost_breakdown"]["total_cost"] >= out["cost_breakdown"]["compute_cost"] > 0
    assert out["billed_s"] % 3600 == 0 and out["price_as_of"] == "2026-09-01"
    assert out["throughput_tokens_per_sec"] > 0 and out["explain"]


def test_demo_runs_end_to_end(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that no table cell folds (pytest-xdist sets 80)
    code = main(["demo"])
    out = capsys.readouterr().out
    assert code == 0
    for needle in ("seed 004 claims vs sizeup", "impact of optimisations", "monthly plan", "cheapest", "t4"):
        assert needle in out


def test_reserved_pricing(capsys):
    data = run_json(capsys, *SEED, "--gpu", "t4", "--platform", "hourlycloud", "--pricing", "on-demand,reserved")
    by = {r["pricing"]: r for r in data["rows"]}
    assert by["reserved"]["compute_cost_usd"] == pytest.approx(by["on-demand"]["compute_cost_usd"] * 0.40 / 0.60)


def test_energy_yaml_knobs():
    from sizeup.commands.compare import cost_knobs

    knobs = cost_knobs()
    # Llama 3 §3.3.4: 419 unexpected interruptions in 54 days on 16,384 GPUs
    assert knobs.gpu_mtbf_h == pytest.approx(16384 * 54 * 24 / 419, rel=1e-3)
    assert knobs.pue >= 1.0 and knobs.gco2_per_kwh > 0 and knobs.sources["gpu_mtbf_h"]
    assert cost_knobs(restart_s=30).restart_s == 30


def test_compare_picks_the_least_sharding_that_fits_like_train(capsys):
    """The same default in every command (README): without --zero, Llama-2-7B on 8 H100s needs ZeRO-1 (DDP keeps
    110+ GiB per GPU); compare finds it as train does, instead of declaring that nothing fits."""
    from sizeup.cli import main

    assert main(["train", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "10B", "--json"]) == 0
    train = json.loads(capsys.readouterr().out)
    assert main(["compare", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "10B", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows and {r["sharding"] for r in rows} == {train["job"]["values"]["zero"]} == {"zero1"}
    assert main(["compare", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "10B", "--zero", "none",
                 "--json"]) == 0
    pinned = json.loads(capsys.readouterr().out)
    assert not pinned["rows"] and pinned["does_not_fit"]  # a pinned --zero is kept


def test_compare_rows_carry_intervals(capsys):
    """Every priced row carries P10/P50/P90 of its rate, wall-clock, memory and total cost (the pipeline's
    figure_intervals, as train shows them); the cost range is the wall-clock range applied to the compute cost."""
    from sizeup.cli import main

    assert main(["compare", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "10B", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows
    for r in rows:
        iv = r["intervals"]
        for key in ("tokens_per_s", "wall_clock_s", "peak_reserved_bytes", "total_cost_usd"):
            assert iv[key]["p10"] <= iv[key]["p50"] <= iv[key]["p90"], key
        t, c = iv["wall_clock_s"], iv["total_cost_usd"]
        rest = r["total_cost_usd"] - r["compute_cost_usd"]
        assert c["p90"] - rest == pytest.approx(r["compute_cost_usd"] * t["p90"] / t["p50"])
