"""`sizeup infer` and `sizeup serve-plan`: JSON keys, bad input -> one line + exit 2, the catalog knobs."""

from __future__ import annotations

import json
import math

import pytest

from sizeup import calib
from sizeup.cli import main

JSON_KEYS = ("weights_bytes", "kv_cache_bytes_per_token", "max_concurrency", "ttft_s", "tpot_s",
             "output_tokens_per_s", "usd_per_1m_output_tokens", "usd_per_1m_input_tokens")


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_infer_json_keys(capsys):
    code, out, _ = run(capsys, "infer", "llama-2-7b", "--gpu", "a100-80gb", "--price-per-gpu-hour", "2", "--json")
    assert code == 0
    data = json.loads(out)
    for key in JSON_KEYS:
        assert key in data, key
    assert data["kv_cache_bytes_per_token"] == 524_288
    assert data["weights_bytes"] == 2 * 6_738_415_616
    assert data["max_concurrency"] > 0 and data["tpot_s"] > 0 and data["usd_per_1m_output_tokens"] > 0
    assert data["gpu"] == "a100-80gb-sxm"


def test_infer_figures_carry_p10_p90_from_the_inference_residuals(capsys):
    """Closed-form and simulated serving figures carry P10/P50/P90 from calibration.yaml's inference_rate /
    inference_time intervals (LOSO residuals of the dev set's inference rows, 1-GPU bucket); $ per token scales as
    1 / tokens/s, so its range is the figure divided by the rate factors in reverse order."""
    from sizeup.calib import interval_factors

    code, out, _ = run(capsys, "infer", "llama-2-7b", "--gpu", "a100-80gb", "--price-per-gpu-hour", "2",
                       "--concurrency", "16", "--json", "--explain")
    assert code == 0
    data = json.loads(out)
    iv = data["intervals"]
    rate = interval_factors("inference_rate", {"gpus": 1})
    time = interval_factors("inference_time", {"gpus": 1})
    assert rate is not None and time is not None and rate[0] < rate[2]
    for key, f in (("output_tokens_per_s", rate), ("load_output_tokens_per_s", rate)):
        value = data["output_tokens_per_s"] if key == "output_tokens_per_s" else data["load"]["output_tokens_per_s"]
        assert [iv[key][q] for q in ("p10", "p50", "p90")] == pytest.approx([value * x for x in f[:3]])
    assert [iv["ttft_s"][q] for q in ("p10", "p50", "p90")] == pytest.approx([data["ttft_s"] * x for x in time[:3]])
    usd = data["usd_per_1m_output_tokens"]
    assert [iv["usd_per_1m_output_tokens"][q] for q in ("p10", "p50", "p90")] == pytest.approx(
        [usd / rate[2], usd / rate[1], usd / rate[0]])
    for d in iv.values():
        assert 0 < d["p10"] <= d["p50"] <= d["p90"]
    assert any(t["name"].startswith("interval/ttft_s") for t in data["explain"])


def test_infer_takes_the_calibration_flags(capsys):
    """--no-calibration: the serving GEMMs run at the bare MAMF curve (in-model fraction 1.0), so a compute-bound
    prefill is faster than with the packaged calibration's fraction (< 1), and the report says calibration off."""
    args = ("infer", "llama-3-8b", "--gpu", "h100", "--prompt-len", "4096", "--batch", "1", "--json")
    code, out, _ = run(capsys, *args)
    on = json.loads(out)
    code2, out2, _ = run(capsys, *args, "--no-calibration")
    off = json.loads(out2)
    assert code == code2 == 0 and on["calibration"] == "default" and off["calibration"] is None
    assert off["ttft_s"] < on["ttft_s"]
    code3, _, err = run(capsys, *args, "--calibration", "default", "--no-calibration")
    assert code3 == 2 and "contradict" in err


def test_serve_plan_best_option_carries_replica_and_cost_ranges(capsys):
    """serve-plan: the replicas needed at the P90 / P10 of the per-replica capacity (inference_rate factors) and their
    $/month, hand-computed from the option's own max_rps_per_replica."""
    import math

    from sizeup.calib import interval_factors

    code, out, _ = run(capsys, "serve-plan", "llama-3-8b", "--rps", "40", "--tpot-p95", "60ms", "--gpu", "h100",
                       "--price-per-gpu-hour", "3", "--json")
    assert code == 0
    best = json.loads(out)["best"]
    iv = best["intervals"]
    f = interval_factors("inference_rate", {"gpus": best["tp"]})
    cap = best["max_rps_per_replica"]
    assert iv["replicas"]["p90"] == max(1, math.ceil(40 / (cap * f[0]) - 1e-9))
    assert iv["replicas"]["p10"] == max(1, math.ceil(40 / (cap * f[2]) - 1e-9))
    assert iv["replicas"]["p10"] <= best["replicas"] <= iv["replicas"]["p90"]
    assert iv["usd_per_month"]["p90"] == pytest.approx(iv["replicas"]["p90"] * best["tp"] * 3 * 730)


def test_infer_fp8_tp_and_explain(capsys):
    code, out, _ = run(capsys, "infer", "llama-3-70b", "--gpu", "h100", "--tp", "4", "--weights", "fp8",
                       "--kv-dtype", "fp8", "--prompt-len", "2048", "--output-len", "256", "--json", "--explain")
    assert code == 0
    data = json.loads(out)
    assert data["kv_cache_bytes_per_token"] == 327_680 / 2  # fp8 KV: 1 byte per element
    assert data["kv_cache_bytes_per_token_per_gpu"] == 327_680 / 2 / 4
    assert {t["name"] for t in data["explain"]} >= {"weights/bytes", "kv/bytes_per_token", "time/tpot"}


def test_infer_table_runs(capsys):
    code, out, _ = run(capsys, "infer", "mistral-7b", "--gpu", "l4", "--weights", "int4", "--concurrency", "8")
    assert code == 0
    assert "TPOT" in out and "max concurrency" in out


def test_infer_does_not_fit_is_a_warning_not_an_error(capsys):
    code, out, _ = run(capsys, "infer", "llama-3-70b", "--gpu", "a100-80gb", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["fits"] is False and data["reasons"]


@pytest.mark.parametrize("args, needle", [
    (("infer", "llama-2-7b", "--prompt-len", "4000", "--output-len", "200"), "max_seq_len"),
    (("infer", "llama-2-7b", "--batch", "0"), "--batch"),
    (("infer", "llama-2-7b", "--weights", "int3"), "int4"),
    (("infer", "llama-2-7b", "--kv-dtype", "fp4"), "KV-cache dtype"),
    (("infer", "llama-2-7b", "--gpu", "24GiB"), "GPU kind"),
    (("infer", "llama-2-7b", "--gpus", "3", "--tp", "2"), "--gpus"),
    (("infer", "llama-2-7b", "--utilization", "1.5"), "--utilization"),
    (("infer", "llama-2-7b", "--prompt-len", "lots"), "--prompt-len"),
    (("infer", "my-run.yaml"), "scenario"),
    (("infer", "llama-2-7b", "--gpu", "h100", "--platform", "nosuchcloud"), "platform"),
    (("serve-plan", "llama-2-7b"), "--rps"),
    (("serve-plan", "llama-2-7b", "--rps", "5", "--prompt-len", "p50=512,p95=100"), "p95"),
    (("serve-plan", "llama-2-7b", "--rps", "5", "--tpot-p95", "fast"), "--tpot-p95"),
    (("infer", "llama-2-7b", "--prompt-len", "p50=512,mean=600"), "not both"),
    (("infer", "llama-2-7b", "--prompt-len", "mean=500,p95=4000"), "3.87"),
    (("infer", "llama-2-7b", "--prompt-len", "p50=1000,p95=3500", "--output-len", "p50=100,p95=900"), "p95"),
])
def test_bad_input_exit_2_one_line(capsys, args, needle):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_long_context_allowed_with_flag(capsys):
    code, out, _ = run(capsys, "infer", "llama-2-7b", "--prompt-len", "4000", "--output-len", "200",
                       "--allow-long-context", "--json")
    assert code == 0 and json.loads(out)["prompt_len"] == 4000


def test_serve_plan_json(capsys):
    code, out, _ = run(capsys, "serve-plan", "llama-3-8b", "--rps", "5", "--prompt-len", "p50=512,p95=2048",
                       "--output-len", "256", "--ttft-p95", "2s", "--tpot-p95", "50ms", "--gpu", "h100,a100-80gb",
                       "--price-per-gpu-hour", "2.5", "--json")
    assert code == 0
    data = json.loads(out)
    best = data["best"]
    assert best["feasible"] and best["replicas"] >= 1 and best["gpus"] == best["replicas"] * best["tp"]
    assert best["tpot_p95_s"] <= 0.05 and best["ttft_p95_s"] <= 2.0
    assert best["usd_per_month"] == pytest.approx(best["gpus"] * 2.5 * 730)
    assert best["binding"]
    assert data["prompt_len"]["p95"] == 2048


def test_serve_plan_infeasible_is_a_result(capsys):
    code, out, _ = run(capsys, "serve-plan", "llama-3-70b", "--rps", "5", "--tpot-p95", "1ms", "--gpu", "a100-80gb",
                       "--json")
    assert code == 0
    data = json.loads(out)
    assert data["best"] is None and data["warnings"]


def test_catalog_knobs_have_sources():
    from sizeup.catalog import DATA_DIR, read_yaml
    from sizeup.catalog.knobs import load_serving_knobs

    raw = read_yaml(DATA_DIR / "inference.yaml")["knobs"]
    assert all(entry.get("source") for entry in raw.values())
    knobs = load_serving_knobs()
    assert knobs.gpu_memory_utilization == 0.9 and knobs.block_size_tokens == 16
    assert set(knobs.sources) == set(raw)


def test_ttft_note_names_the_second_decode_step_for_turbomind_v01(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that no table cell folds (pytest-xdist sets 80)
    # LMDeploy v0.1 LlamaBatch.cc InternalThreadEntry: ContextDecode() then Generate() samples the first token,
    # so the TTFT note must name two decode steps; vLLM's names one (hand reading of the two engines' loops).
    _, out_lmd, _ = run(capsys, "infer", "llama-2-7b", "--gpu", "a100-80gb", "--engine", "lmdeploy-0.1")
    _, out_vllm, _ = run(capsys, "infer", "llama-2-7b", "--gpu", "a100-80gb", "--engine", "vllm")
    assert "one decode step + one decode step" in out_lmd
    assert "one decode step + one decode step" not in out_vllm and "one decode step" in out_vllm


def test_load_note_says_when_the_load_runs_fewer_requests_than_the_closed_form_batch(capsys):
    """With --rps and no --batch the closed form is at the most that fits; a light load runs a few requests at a
    time, so its (shorter) latencies are explained by the batch it keeps in flight, not by queueing."""
    code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100-sxm", "--rps", "2", "--requests", "300",
                       "--json")
    assert code == 0
    data = json.loads(out)
    running = data["load"]["mean_running"]
    assert 0 < running < 0.5 * data["batch"]
    note = next(n for n in data["notes"] if n.startswith("under load"))
    assert f"{running:,.1f} requests in flight" in note and f"batch {data['batch']}" in note
    assert data["load"]["tpot_p50_s"] < data["tpot_s"]  # a few requests decode faster than the full batch


def test_concurrency_fix_is_the_largest_batch_that_fits(capsys):
    """A batch far beyond memory: the suggested --batch N is the largest that fits (N fits, N + 1 does not,
    by estimate_inference's own memory rule) and equals max_concurrency; found by bisection, not a scan down
    from 100,000 (which took 90 s)."""
    from sizeup.catalog import load_catalog
    from sizeup.core.inference import ServeSetup, estimate_inference
    from sizeup.catalog.knobs import load_serving_knobs

    code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "l4", "--batch", "100000", "--requests", "50",
                       "--json")
    assert code == 0
    data = json.loads(out)
    assert data["fits"] is False and data["ttft_s"] is None
    fix = next(f for f in data["fixes"] if f.startswith("--batch"))
    n = int(fix.split()[1])
    assert n == data["max_concurrency"] > 1
    cat = load_catalog()
    m, g = cat.model("llama-3-8b"), cat.gpu("l4")
    knobs = load_serving_knobs(cat)
    assert estimate_inference(m, g, ServeSetup(batch=n), knobs).fits
    assert not estimate_inference(m, g, ServeSetup(batch=n + 1), knobs).fits


def test_plot_of_a_replica_that_does_not_fit_says_why_nothing_is_drawn(capsys, tmp_path):
    svg = tmp_path / "x.svg"
    code, out, _ = run(capsys, "infer", "llama-3-70b", "--gpu", "l4", "--plot", str(svg), "--json")
    assert code == 0 and not svg.exists()
    assert any(n.startswith(f"--plot {svg}: nothing drawn") for n in json.loads(out)["notes"])


@pytest.mark.parametrize("command, keys", [
    ("infer", {"gpu": "h100-sxm", "tp": 2, "batch": 8, "prompt_len": 1024, "output_len": 64, "weights": "fp8",
               "kv_dtype": "fp8", "engine": "sglang", "engine_opt": {"max_num_seqs": 32}, "requests": 100,
               "static": True, "gpu_memory_utilization": 0.8, "platform": "aws"}),
    ("serve-plan", {"gpu": "l40s", "rps": 3, "prompt_len": "p50=512,p95=2048", "output_len": 128, "weights": "int4",
                    "kv_dtype": "fp8", "engine": "vllm", "engine_opt": ["max_num_seqs=64"], "requests": 100,
                    "ttft_p95": "2s", "tpot_p95": 0.05, "platform": "aws"}),
])
def test_a_scenario_file_gives_the_same_serving_answer_as_the_flags(capsys, tmp_path, command, keys):
    """One parser: every serving key of a scenario file (the flags' own names) reaches infer / serve-plan; the file
    and the equivalent flags give the same JSON (they were accepted and silently ignored before)."""
    import yaml

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-3-8b", **keys}))
    argv = [command, "llama-3-8b"]
    for k, v in keys.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            argv.append(flag)
        elif isinstance(v, dict):
            argv += [a for kk, vv in v.items() for a in ("--engine-opt", f"{kk}={vv}")]
        elif isinstance(v, list):
            argv += [a for item in v for a in ("--engine-opt", item)]
        else:
            argv += [flag, f"{v}s" if k.startswith(("ttft", "tpot")) and isinstance(v, float) else str(v)]
    code, by_flags, err = run(capsys, *argv, "--json")
    assert code == 0, err
    code, by_file, err = run(capsys, command, str(path), "--json")
    assert code == 0, err
    assert json.loads(by_file) == json.loads(by_flags)
    # a flag still wins over the file
    code, out, _ = run(capsys, command, str(path), "--engine", "trtllm", "--json")
    assert code == 0 and json.loads(out)["engine"] == "trtllm"


def test_serving_example_scenario_compares_every_gpu_it_lists(capsys):
    """examples/serve-llama3-70b.yaml: serve-plan reads its lengths, targets, engine and dtypes, and sizes both GPU
    kinds of its `gpu:` list (a list is kept whole for serve-plan; a --gpu flag replaces it)."""
    from pathlib import Path

    path = str(Path(__file__).resolve().parents[1] / "examples" / "serve-llama3-70b.yaml")
    code, out, err = run(capsys, "serve-plan", path, "--requests", "100", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {o["gpu_id"] for o in data["options"]} == {"h100-sxm", "a100-80gb-sxm"}
    assert data["targets"]["ttft_p95_s"] == 2.0 and data["targets"]["tpot_p95_s"] == pytest.approx(0.06)
    assert data["rps"] == 8 and data["weights_dtype"] == "fp8" and data["kv_dtype"] == "fp8" and data["engine"] == "vllm"
    assert data["prompt_len"]["p95"] == 2048 and data["output_len"]["p50"] == 200
    code, out, _ = run(capsys, "serve-plan", path, "--gpu", "l40s", "--requests", "100", "--json")
    assert code == 0 and {o["gpu_id"] for o in json.loads(out)["options"]} == {"l40s"}


def _trace(tmp_path, rows):
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps({"input_len": p, "output_len": o}) + "\n" for p, o in rows))
    return str(path)


CLOSED_FORM = ("ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s", "max_concurrency",
               "kv_cache_bytes_per_sequence")


def test_infer_sizes_its_closed_form_at_a_traces_mean_lengths(capsys, tmp_path):
    """A trace's requests (mean 3,000 in + 500 out, by hand) size the memory table and the closed form; before,
    both silently used the default 512 + 128 while only the simulated load read the trace."""
    rows = [(2000, 400), (3000, 500), (4000, 600)] * 20
    code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100", "--concurrency", "8", "--trace",
                       _trace(tmp_path, rows), "--json")
    assert code == 0
    got = json.loads(out)
    code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100", "--concurrency", "8", "--prompt-len", "3000",
                       "--output-len", "500", "--json")
    fixed = json.loads(out)
    for key in CLOSED_FORM:
        assert got[key] == pytest.approx(fixed[key], rel=1e-9), key
    assert any("mean lengths, 3,000 in + 500 out" in n for n in got["notes"])
    assert got["load"]["description"].startswith("trace lengths")


def test_infer_takes_a_length_spread_at_its_log_normal_mean(capsys):
    """p50 512 / p95 2,048: sigma = ln(4)/1.6449 = 0.8428, mean = 512 exp(sigma^2/2) = 730.3 (hand derivation);
    the closed form equals the fixed 730-token answer, and the simulated requests are drawn from the spread."""
    code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100", "--rps", "4", "--prompt-len",
                       "p50=512,p95=2048", "--output-len", "200", "--requests", "400", "--json")
    assert code == 0
    spread = json.loads(out)
    code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100", "--rps", "4", "--prompt-len", "730",
                       "--output-len", "200", "--requests", "400", "--json")
    fixed = json.loads(out)
    for key in CLOSED_FORM:
        assert spread[key] == pytest.approx(fixed[key], rel=1e-9), key
    # same mean, a long tail: the simulated p90 TTFT of the spread exceeds the fixed-length one
    assert spread["load"]["ttft_p90_s"] > fixed["load"]["ttft_p90_s"]
    assert "log-normal" in spread["load"]["description"]
    assert spread["request_lengths"]["varies"] and not fixed["request_lengths"]["varies"]
    assert spread["request_lengths"]["prompt"]["mean"] == pytest.approx(512 * math.exp((math.log(4) / 1.6449) ** 2 / 2))


def test_a_spread_whose_longest_request_cannot_fit_is_a_result(capsys):
    code, out, err = run(capsys, "infer", "llama-3.1-8b", "--gpu", "l4", "--prompt-len", "p50=4000,p95=30000",
                         "--output-len", "100", "--allow-long-context", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["fits"] is False and data["ttft_s"] is None and data["usd_per_1m_output_tokens"] is None
    assert any("the longest drawn" in n for n in data["notes"]) and data["fixes"]


@pytest.mark.parametrize("command", [("infer", "llama-3-8b"), ("serve-plan", "llama-3-8b", "--rps", "2")])
def test_a_trace_and_length_flags_together_are_refused(capsys, tmp_path, command):
    code, _, err = run(capsys, *command, "--trace", _trace(tmp_path, [(100, 10)]), "--prompt-len", "512")
    assert code == 2 and "--trace gives every request's lengths" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, regime", [(("llama-3.3-70b", "--gpu", "h200", "--tp", "4"), "inference_time||2-8"),
                                          (("llama-3-8b", "--gpu", "h100"), "inference_time||1")])
def test_a_range_beyond_its_central_figure_is_said(capsys, args, regime):
    """When every measured run of a regime was slower than the model (a time range wholly above its central figure),
    the report says to expect the range; when the range brackets the figure it says nothing of the kind. Which
    case each job is comes from the packaged calibration.yaml: the TP 2-8 time regime's P10 factor is above 1."""
    from sizeup.calib import interval_factors

    code, out, _ = run(capsys, "infer", *args, "--requests", "100", "--json")
    assert code == 0
    data = json.loads(out)
    beyond = data["intervals"]["tpot_s"]["p10"] > data["tpot_s"]
    assert data["intervals"]["tpot_s"]["interval_regime"] == regime
    assert beyond == (interval_factors("inference_time", {"gpus": 4 if "--tp" in args else 1})[0] > 1.0)
    said = any("the ranges lie above the central figures" in n for n in data["notes"])
    assert said == beyond


def test_more_clients_than_fit_queue_instead_of_refusing(capsys):
    """--concurrency counts clients. vLLM on one H100 holds max_concurrency sequences of Llama 3 8B (KV memory; its
    max_num_seqs 1,024 is larger): 1,000 clients are a load that queues, not a misfit. The closed form runs the
    batch that fits, the simulation never has more than that in flight, and TTFT includes the queue wait."""
    code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100-sxm", "--engine", "vllm", "--concurrency",
                       "1000", "--requests", "1000", "--json")
    assert code == 0
    data = json.loads(out)
    cap = data["max_concurrency"]
    assert 1 < cap < 1000
    assert data["fits"] is True and data["batch"] == cap
    assert data["load"]["mean_running"] <= cap
    assert data["load"]["ttft_p50_s"] > 10 * data["ttft_s"]  # most clients wait for a free slot
    assert any(n.startswith(f"1,000 concurrent clients, at most {cap:,} sequences in flight") for n in data["notes"])
    # within what fits, --concurrency and --batch agree
    _, out_c, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100-sxm", "--engine", "vllm", "--concurrency", "64",
                      "--requests", "200", "--json")
    _, out_b, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100-sxm", "--engine", "vllm", "--batch", "64",
                      "--requests", "200", "--json")
    assert json.loads(out_c)["tpot_s"] == json.loads(out_b)["tpot_s"] and json.loads(out_c)["batch"] == 64


def test_more_clients_than_max_num_seqs_run_at_most_max_num_seqs(capsys):
    code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100-sxm", "--engine", "vllm", "--engine-opt",
                       "max_num_seqs=32", "--concurrency", "200", "--requests", "400", "--json")
    data = json.loads(out)
    assert code == 0 and data["fits"] is True and data["batch"] == 32
    assert data["load"]["mean_running"] <= 32


def test_a_batch_or_static_batch_beyond_memory_still_does_not_fit(capsys):
    """--batch is sequences decoded together, and a static engine batches its clients whole: both must fit."""
    for args in (["--batch", "1000"], ["--engine", "hf-generate", "--concurrency", "1000"]):
        code, out, _ = run(capsys, "infer", "llama-3-8b", "--gpu", "h100-sxm", *args, "--requests", "50", "--json")
        data = json.loads(out)
        assert code == 0 and data["fits"] is False and data["ttft_s"] is None, args


def test_ttft_says_how_much_api_server_time_is_in_it(capsys):
    """Measured TTFTs include the API server's own time; infer and serve-plan say how much of it sizeup's include
    (the calibration's api_server_ttft_s), and that none is with the calibration off."""
    for cmd in (["infer", "llama-3-8b", "--gpu", "h100-sxm", "--requests", "50", "--json"],
                ["serve-plan", "llama-3-8b", "--rps", "2", "--gpu", "h100-sxm", "--requests", "100", "--json"]):
        _, out, _ = run(capsys, *cmd)
        assert any("API server" in n or "API-server" in n for n in json.loads(out)["notes"]), cmd
        try:
            _, out, _ = run(capsys, *cmd, "--no-calibration")
        finally:
            calib.use(None)  # --no-calibration made 'off' the process's active calibration
        assert any(n.startswith("TTFT counts the engine's scheduling and GPU work, not the API server") for n in
                   json.loads(out)["notes"]), cmd

def test_the_load_table_shows_preemptions_and_recomputed_prompt_tokens(capsys):
    """SGLang's output-ratio admission reserves KV for the outputs to come, so a burst that overfills the KV is
    retracted less than vLLM's admit-what-fits policy; the load table shows each run's preemptions and the prompt
    tokens they made it recompute, the same counts as the JSON (preemptions; prefill tokens computed - input)."""
    args = ("llama-3-70b", "--gpu", "h100-sxm", "--tp", "4", "--concurrency", "2000", "--requests", "3000",
            "--prompt-len", "1024", "--output-len", "512")
    seen = {}
    for eng in ("vllm", "sglang"):
        code, out, _ = run(capsys, "infer", *args, "--engine", eng, "--json")
        load = json.loads(out)["load"]
        code_t, table, _ = run(capsys, "infer", *args, "--engine", eng, "--wide")
        assert code == code_t == 0
        row = next(line for line in table.splitlines() if "preemptions / prompt tokens recomputed" in line)
        assert f"{load['preemptions']:,} / {load['prompt_tokens_recomputed']:,}" in row
        seen[eng] = load["preemptions"]
    assert 0 < seen["sglang"] < seen["vllm"]
