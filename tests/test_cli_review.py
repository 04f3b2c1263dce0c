"""A demanding user's review of the CLI: one-line errors, no NaN/inf, infeasible plans as results,
every shown figure explained, the same job giving the same memory everywhere, CSV/Markdown everywhere."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sizeup.cli import main


def _reject(constant):
    raise ValueError(f"non-finite number in JSON: {constant}")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out, parse_constant=_reject)


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)


# ----------------------------------------------------------------------------- 3. bad input: one line, exit 2

@pytest.mark.parametrize("argv,fragment", [
    # NaN/inf were accepted by typer's float options and reached the output (infer printed "$ per GPU-hour nan")
    (["infer", "llama-2-7b", "--gpu", "t4", "--price-per-gpu-hour", "nan"], "--price-per-gpu-hour must be a finite"),
    (["serve-plan", "llama-2-7b", "--rps", "inf"], "--rps must be a finite"),  # was a traceback
    (["compare", "llama-2-7b", "--gpu", "t4", "--tokens", "1B", "--price-per-gpu-hour", "nan"], "finite"),
    (["memory", "llama-2-7b", "--gpu", "t4", "--seq=1e400"], "--seq must be a finite"),
    # zero/negative values that were silently replaced by defaults (`x or default`) or used as given
    (["compare", "llama-2-7b", "--gpu", "t4", "--tokens", "1B", "--micro-batch", "0"], "--micro-batch must be > 0"),
    (["compare", "llama-2-7b", "--gpu", "t4", "--samples", "10", "--tokens-per-sample", "100", "--epochs", "0"],
     "--epochs must be > 0"),
    (["compare", "llama-2-7b", "--gpu", "t4", "--tokens", "1B", "--restart-s", "-1"], "--restart-s must be >= 0"),
    (["compare", "llama-2-7b", "--gpu", "t4", "--tokens", "1B", "--deadline", "0s"], "--deadline must be > 0"),
    (["search", "llama-2-7b", "--tokens", "1B", "--max-gpus", "0"], "--max-gpus must be > 0"),
    (["search", "llama-2-7b", "--tokens", "1B", "--budget", "-5"], "--budget must be > 0"),
    (["scale", "--batch", "0"], "--batch must be > 0"),
    (["budget", "--buy-gpu", "rtx-4090", "--power-w", "-1"], "--power-w must be > 0"),
    (["fit-budget", "--budget", "5000", "--gpu", "a100-80gb", "--gpus", "8", "--params", "0"],
     "--params must be > 0"),  # was a ValueError traceback from core.scale
    (["train", "llama-2-7b", "--gpu", "t4", "--tokens", "-1B"], "--tokens must be > 0"),
    # a free GPU-hour made fit-budget answer a 243B model trained for 200 years at $0
    (["fit-budget", "--budget", "5000", "--gpu", "a100-80gb", "--gpus", "8", "--price-per-gpu-hour", "0"],
     "--price-per-gpu-hour must be > 0 with --budget"),
    # serving: heads are sharded over TP ranks, layers over PP stages (was accepted silently)
    (["infer", "llama-2-7b", "--gpu", "t4", "--tp", "3"], "--tp 3 must divide llama-2-7b's 32 attention heads"),
    (["serve-plan", "llama-2-7b", "--rps", "5", "--tp", "3"], "allowed: 1, 2, 4, 8, 16, 32"),
    (["infer", "llama-2-7b", "--gpu", "a10", "--pp", "64", "--gpus", "64"], "cannot exceed llama-2-7b's 32 layers"),
    # compare used to accept what memory/train refuse (gpt2 has 1024 learned positions)
    (["compare", "gpt2", "--gpu", "t4,a10", "--seq", "4096", "--tokens", "1B"], "exceeds gpt2's 1024 learned"),
    # usage errors from click were 4 lines (Usage/Try/blank/Error)
    (["train", "llama-2-7b", "--gpu", "t4", "--bogus-flag", "1"], "No such option: --bogus-flag"),
    (["scale", "llama-2-7b"], "unexpected extra argument"),
    (["memory", "llama-2-7b", "--gpus", "abc"], "--gpus must be a whole number"),
    (["paramz"], "No such command"),
    # export wrote a DeepSpeed config with device nvme and no nvme_path (help: none | cpu)
    (["export", "deepspeed", "llama-2-7b", "--offload", "nvme"], "unknown --offload 'nvme'"),
    # a bad value inside a structured flag names the flag and the value it came in
    (["tokens", "--sample-seconds", "10", "--stream", "video:fps=abc,patches=4"],
     "--stream 'video:fps=abc,patches=4': cannot read count 'abc'"),
])
def test_bad_input_is_one_error_line_exit_2(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, fragment)


def test_every_setup_problem_is_named(capsys):
    # was "tp (3) must divide ... (and 1 more problem(s))"
    code, _, err = run(capsys, "memory", "llama-2-7b", "--gpu", "t4", "--tp", "3", "--gpus", "3")
    assert_one_line_error(code, err, "attention heads (32)", "KV heads (32)")
    assert "more problem" not in err


@pytest.mark.parametrize("command", [["tokens"], ["scale", "--tokens-spec"]])
def test_malformed_or_missing_yaml_is_one_line(tmp_path, capsys, command):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n  b: :")
    code, _, err = run(capsys, *command, bad)  # was a yaml ParserError traceback
    assert_one_line_error(code, err, "not valid YAML")
    code, _, err = run(capsys, *command, tmp_path / "missing.yaml")
    assert_one_line_error(code, err, "not found")


@pytest.mark.parametrize("command", [["memory"], ["train", "--tokens", "1B"]])
def test_seq_beyond_a_rope_models_context_is_a_warning(capsys, command):
    # learned positions refuse it (exit 2, above); RoPE models can be trained longer, so it is said, not refused
    data = run_json(capsys, command[0], "llama-2-7b", "--gpu", "h100", *command[1:], "--seq", "8192")
    assert any("longer than llama-2-7b's context of 4096" in w for w in data["warnings"])


def test_an_internal_bug_is_still_one_line(capsys, monkeypatch):
    import sizeup.core.params as params

    def boom(*_a, **_k):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(params, "count_params", boom)
    code, _, err = run(capsys, "params", "gpt2")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: internal error (ZeroDivisionError") and "SIZEUP_DEBUG" in err
    monkeypatch.setenv("SIZEUP_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["params", "gpt2"])


def test_values_in_range_still_pass(capsys):
    # the range guard leaves lists, ranges, units and legal zeros alone
    assert run(capsys, "compare", "llama-2-7b", "--gpu", "a100-80gb", "--gpus", "1,2", "--tokens", "10M",
               "--peft", "lora", "--checkpoints-kept", "0", "--retain", "0s", "--json")[0] == 0
    assert run(capsys, "search", "gpt2", "--tokens", "1B", "--global-batch", "32-64", "--max-gpus", "8",
               "--json")[0] == 0
    assert run(capsys, "memory", "gpt2", "--gpu", "24GiB", "--dropout", "0", "--json")[0] == 0


# ----------------------------------------------------------------------------- 4. infeasible plans are results

def test_infeasible_train_is_a_result_with_fits_false_and_reasons(capsys):
    data = run_json(capsys, "train", "llama-3.1-405b", "--gpu", "t4", "--tokens", "1B")
    assert data["fits"] is False and data["reasons"] and data["memory"]["fits"] is False
    # issue 11: a job that does not fit gets no time or price, but the fixes
    assert data["total_time_s"] is None and data["step_time_s"] is None and data["suggestions"]
    code, out, _ = run(capsys, "train", "llama-3.1-405b", "--gpu", "t4", "--tokens", "1B")
    assert code == 0 and "does not fit in GPU memory" in out and "NO" in out


def test_infeasible_compare_and_search_rows_are_results(capsys):
    data = run_json(capsys, "compare", "llama-3.1-405b", "--gpu", "t4,a100", "--tokens", "1B")
    assert data["rows"] == [] and {d["gpu"] for d in data["does_not_fit"]} >= {"t4"}
    assert all(d["reasons"] for d in data["does_not_fit"])
    data = run_json(capsys, "search", "llama-3.1-405b", "--tokens", "1B", "--gpu", "t4", "--max-gpus", "8")
    assert data["plans"] == [] and data["warnings"]


# ----------------------------------------------------------------------------- 5. the same job, the same memory

@pytest.mark.parametrize("model,gpu,gpus,extra", [
    ("llama-2-7b", "a100-80gb", 8, ["--zero", "3", "--micro-batch", "2", "--seq", "2048", "--recompute", "none"]),
    ("llama-2-7b", "t4", 1, ["--peft", "qlora", "--micro-batch", "1", "--seq", "512", "--recompute", "none",
                             "--precision", "fp16-mixed"]),
    ("llama-3-8b", "h100-sxm", 16, ["--zero", "1", "--micro-batch", "1", "--seq", "8192", "--recompute", "selective"]),
])
def test_memory_train_compare_agree(capsys, model, gpu, gpus, extra):
    mem = run_json(capsys, "memory", model, "--gpu", gpu, "--gpus", gpus, *extra)
    train = run_json(capsys, "train", model, "--gpu", gpu, "--gpus", gpus, *extra, "--tokens", "1B")
    comp = run_json(capsys, "compare", model, "--gpu", gpu, "--gpus", gpus, *extra, "--tokens", "1B")
    assert train["memory"]["peak_reserved_bytes"] == pytest.approx(mem["peak_reserved_bytes"], rel=1e-9)
    assert train["fits"] == mem["fits"]
    rows = comp["rows"] + comp["excluded"]
    got = [r["memory_reserved_bytes"] for r in rows] + [d["memory_reserved_bytes"] for d in comp["does_not_fit"]]
    assert got and all(g == pytest.approx(mem["peak_reserved_bytes"], rel=1e-9) for g in got)
    assert bool(rows) == mem["fits"]


# ----------------------------------------------------------------------------- 1. every shown figure explained

def _explained(data) -> dict:
    assert isinstance(data.get("explain"), list) and data["explain"]
    for t in data["explain"]:
        assert t["formula"] and isinstance(t["inputs"], dict) and "source" in t
    return {t["name"]: t for t in data["explain"]}


def test_compare_explains_every_row_and_the_impact_table(capsys):
    data = run_json(capsys, "compare", "llama-2-7b", "--gpu", "a10,a100-80gb", "--tokens", "100M", "--peft", "lora",
                    "--explain")
    terms = _explained(data)
    assert len(data["rows"]) >= 2
    for r in data["rows"]:
        label = f"{r['platform']}/{r['gpus']}x{r['gpu']}/{r['pricing']}"
        assert terms[f"{label}: cost/total"]["value"] == pytest.approx(r["total_cost_usd"])
        assert terms[f"{label}: price/usd_per_gpu_hour"]["value"] == pytest.approx(r["price_usd_per_gpu_hour"])
        assert terms[f"{label}: throughput/tokens_per_s"]["value"] == pytest.approx(r["throughput_tokens_per_sec"])
        for name in ("time/wall_clock", "cost/billed_time", "cost/compute"):
            assert f"{label}: {name}" in terms
    data = run_json(capsys, "compare", "examples/seed004.yaml", "--gpu", "t4", "--platform", "modal", "--impact",
                    "--explain")
    terms = _explained(data)
    for row in data["impact"]:
        assert f"{row['configuration']}: memory/peak_reserved" in terms
        if row["fits"]:
            assert terms[f"{row['configuration']}: cost/total"]["value"] == pytest.approx(row["total_cost_usd"])
            assert terms[f"{row['configuration']}: impact/speedup"]["value"] == pytest.approx(row["speedup_vs_slowest"])


def test_infer_and_serve_plan_explain_each_figure(capsys):
    data = run_json(capsys, "infer", "llama-2-7b", "--gpu", "a10", "--platform", "lambda", "--explain")
    terms = _explained(data)
    assert terms["time/e2e_latency"]["value"] == pytest.approx(data["e2e_latency_s"])
    assert terms["throughput/output_tokens_per_s_per_gpu"]["value"] == pytest.approx(data["output_tokens_per_s_per_gpu"])
    for name in ("weights/bytes_per_gpu", "serve/batch", "throughput/output_tokens_per_s_per_request",
                 "price/usd_per_gpu_hour"):
        assert name in terms
    data = run_json(capsys, "serve-plan", "llama-3-8b", "--rps", "5", "--gpu", "l40s", "--explain")
    terms = _explained(data)
    for o in data["options"]:
        if o["feasible"]:
            k = f"{o['gpu_id']} tp{o['tp']}"
            assert terms[f"{k}: fleet/usd_per_month"]["value"] == pytest.approx(o["usd_per_month"])
            assert terms[f"{k}: time/tpot_p95"]["value"] == pytest.approx(o["tpot_p95_s"])


def test_search_explains_every_plan_row_with_the_same_numbers(capsys):
    data = run_json(capsys, "search", "llama-2-7b", "--tokens", "10B", "--gpu", "h100,a100-80gb", "--max-gpus", "64",
                    "--explain")
    terms = _explained(data)
    for p in data["plans"][1:]:
        k = f"#{p['rank']} {p['gpus']}x{p['gpu']}"
        assert terms[f"{k}: memory/peak_reserved"]["value"] == pytest.approx(p["results"]["memory_reserved_bytes"])
        assert terms[f"{k}: time/step"]["value"] == pytest.approx(p["results"]["step_time_s"])
        assert terms[f"{k}: efficiency/mfu"]["value"] == pytest.approx(p["results"]["mfu"])
        assert f"{k}: plan/cost" in terms


def test_scale_terms_are_told_apart_by_row(capsys):
    data = run_json(capsys, "scale", "--sizes", "10M,100M", "--explain")
    names = [t["name"] for t in data["explain"]]
    assert len(names) == len(set(names))  # each scale's figures used to share the same names
    assert "Tiny: scale/params" in names or any(n.endswith(": scale/params") for n in names)


def test_params_and_train_explain_their_tables(capsys):
    data = run_json(capsys, "params", "gpt2", "--explain")
    terms = _explained(data)
    for key, value in data["breakdown"].items():
        assert terms[f"params/{key}"]["value"] == value
    for key, value in data["per_layer"].items():
        assert terms[f"params/one_layer/{key}"]["value"] == value
    # hand check (GPT-2 small, HF modeling_gpt2): c_fc + c_proj = 2*h*f + f + h with h=768, f=3072
    assert terms["params/one_layer/mlp"]["formula"].startswith("2 * h * f")
    assert data["per_layer"]["mlp"] == 2 * 768 * 3072 + 3072 + 768
    data = run_json(capsys, "train", "llama-2-7b", "--gpu", "h100", "--gpus", "8", "--zero", "3", "--tokens", "1B",
                    "--explain")
    terms = _explained(data)
    assert terms["params/total"]["value"] == data["params"]["total"]
    assert terms["throughput/tokens_per_s_per_gpu"]["value"] == pytest.approx(data["tokens_per_s_per_gpu"])
    assert terms["throughput/model_flops_per_s_per_gpu"]["value"] == pytest.approx(data["model_flops_per_s_per_gpu"])


def test_memory_explains_each_suggested_fix(capsys):
    data = run_json(capsys, "memory", "llama-2-7b", "--gpu", "t4", "--seq", "4096", "--micro-batch", "8", "--explain")
    terms = _explained(data)
    assert data["suggestions"]
    for sg in data["suggestions"]:
        t = terms[f"fix '{sg['change']}': memory/peak_reserved"]
        assert t["value"] == pytest.approx(sg["peak_reserved_bytes"], rel=1e-9)


def test_catalog_listings_explain_under_json(capsys):
    # `gpus NAME --json --explain` and `platforms --json --explain` had no "explain" key
    data = run_json(capsys, "gpus", "h100", "--explain")
    terms = _explained(data)
    assert terms["gpu/memory"]["value"] == data["memory_bytes"] and terms["gpu/memory"]["source"]
    data = run_json(capsys, "platforms", "lambda", "--explain")
    terms = _explained(data)
    for o in data["offers"]:
        t = terms[f"price/{o['platform']}/{o['instance']}/{o['pricing']}: usd_per_gpu_hour"]
        assert t["value"] == pytest.approx(o["usd_per_hour"] / o["gpus"])


def test_budget_explains_cost_per_run_and_buy_vs_rent(capsys):
    data = run_json(capsys, "budget", "examples/seed004.yaml", "--phase", "dev:3:4:lambda/a10", "--buy-gpu", "rtx-4090",
                    "--explain")
    terms = _explained(data)
    assert terms["run on lambda/a10: cost/total"]["value"] == pytest.approx(
        data["plan"]["phases"][0]["cost_per_run_usd"])
    # the used-hours term used to show amortize_months x utilization while its value was the plan's hours
    used = terms["own/used_hours"]
    assert "amortize" not in used["formula"] and used["value"] == pytest.approx(data["buy_vs_rent"]["used_hours"])
    assert "own/break_even_months" in terms
    data = run_json(capsys, "budget", "--buy-gpu", "rtx-4090", "--explain")
    used = _explained(data)["own/used_hours"]
    i = used["inputs"]
    assert used["value"] == pytest.approx(i["amortize_months"] * i["hours_per_month"] * i["utilization"])


def test_tokens_explains_hours_and_samples_for_target(capsys):
    data = run_json(capsys, "tokens", "--sample-seconds", "10", "--stream", "text:tokens=64", "--samples", "1M",
                    "--tokens", "1B", "--explain")
    terms = _explained(data)
    assert terms["data/hours"]["value"] == pytest.approx(1e6 * 10 / 3600)
    assert terms["data/samples_for_target"]["value"] == data["samples_for_target"]


# ----------------------------------------------------------------------------- 6. CSV and Markdown everywhere

TABLE_COMMANDS = [
    ["params", "llama-2-7b"], ["models"], ["gpus"], ["platforms", "lambda"],
    ["memory", "llama-2-7b", "--gpu", "t4"], ["train", "llama-2-7b", "--gpu", "t4", "--tokens", "1B"],
    ["compare", "llama-2-7b", "--gpu", "a10", "--tokens", "10M", "--peft", "lora"],
    ["compare", "examples/seed004.yaml", "--gpu", "t4", "--platform", "modal", "--impact"],
    ["budget", "--phase", "dev:3:4:0.62"], ["infer", "llama-2-7b", "--gpu", "a10"],
    ["serve-plan", "llama-3-8b", "--rps", "5", "--gpu", "l40s"],
    ["search", "gpt2", "--tokens", "1B", "--gpu", "h100", "--max-gpus", "8"],
    ["tokens", "--sample-seconds", "10", "--stream", "text:tokens=64", "--samples", "1M"],
    ["audit", "examples/claims/seed004-t4-full.yaml"], ["scale", "--sizes", "10M"], ["validate", "--worst", "3"],
    ["fit-budget", "--budget", "200", "--params", "100M", "--gpu", "a100-80gb", "--gpus", "1"],
]


@pytest.mark.parametrize("argv", TABLE_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_csv_and_markdown_for_every_command_with_tables(capsys, argv):
    code, out, err = run(capsys, *argv, "--csv")
    assert code == 0, err
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert blocks
    for block in blocks:  # one CSV table per block, every row as wide as its header
        rows = list(csv.reader(io.StringIO(block)))
        assert len({len(r) for r in rows}) == 1, block[:300]
        assert "nan" not in block.lower().replace("n/a", "").split(",")
    code, out, err = run(capsys, *argv, "--markdown")
    assert code == 0, err
    assert "| " in out and "|---" in out


# ----------------------------------------------------------------------------- 2. fuzz: no NaN/inf, no traceback

MODELS = ["gpt2", "llama-2-7b", "llama-3.1-405b", "mixtral-8x7b", "deepseek-v3", "falcon-7b", "phi-3-mini"]
GPUS = ["t4", "a10", "h100-sxm", "a100-80gb", "rtx-4090", "mi300x"]


def _log_int(lo: int, hi: int):
    return st.integers(0, 60).map(lambda k: max(lo, min(hi, int(round(lo * (hi / lo) ** (k / 60))))))


@st.composite
def argvs(draw):
    cmd = draw(st.sampled_from(["params", "memory", "train", "infer", "compare"]))
    m, g = draw(st.sampled_from(MODELS)), draw(st.sampled_from(GPUS))
    gpus, seq, mb = str(draw(_log_int(1, 4096))), str(draw(_log_int(1, 1_000_000))), str(draw(_log_int(1, 1024)))
    tp, pp = draw(st.sampled_from(["1", "2", "4", "8"])), draw(st.sampled_from(["1", "2", "4"]))
    if cmd == "params":
        return ["params", m, "--json"]
    if cmd == "memory":
        return ["memory", m, "--gpu", g, "--gpus", gpus, "--seq", seq, "--micro-batch", mb, "--tp", tp, "--pp", pp,
                "--zero", draw(st.sampled_from(["0", "1", "3"])), "--peft", draw(st.sampled_from(["none", "qlora"])),
                "--json"]
    if cmd == "train":
        return ["train", m, "--gpu", g, "--gpus", gpus, "--seq", seq, "--micro-batch", mb, "--tp", tp, "--pp", pp,
                "--tokens", draw(st.sampled_from(["1M", "1B", "15T"])), "--json"]
    if cmd == "infer":
        return ["infer", m, "--gpu", g, "--tp", tp, "--prompt-len", str(draw(_log_int(1, 100_000))),
                "--output-len", str(draw(_log_int(1, 10_000))), "--allow-long-context", "--json"]
    return ["compare", m, "--gpu", g, "--gpus", gpus, "--seq", seq, "--micro-batch", mb, "--tokens", "1B", "--json"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=argvs())
def test_fuzz_valid_sizes_never_traceback_nor_nan(capsys, argv):
    code = main(argv)
    cap = capsys.readouterr()
    assert code in (0, 2), cap.err
    assert "Traceback" not in cap.err
    if code == 2:
        assert len(cap.err.strip().splitlines()) == 1 and cap.err.startswith("error:")
    else:
        json.loads(cap.out, parse_constant=_reject)
