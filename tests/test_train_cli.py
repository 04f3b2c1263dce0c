"""`sizeup train` end to end: JSON keys, scenario + flag override, bad input -> exit 2."""

import json
from pathlib import Path

import pytest

from sizeup.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEYS = {"params", "memory", "flops_per_step", "step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "mfu", "hfu",
        "bound", "total_time_s", "gpu_hours", "six_nd", "breakdown_s", "compute_memory_ratio"}


def run_json(capsys, *args):
    code = main(["train", *args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_json_keys_and_values(capsys):
    d = run_json(capsys, "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "1B", "--global-batch", "64",
                 "--seq", "4096", "--micro-batch", "2")
    assert KEYS <= set(d)
    assert d["setup"]["grad_accum"] == 4 and d["setup"]["dp"] == 8
    assert 0 < d["mfu"] <= 1 and d["bound"] in ("compute", "memory", "network")
    assert d["tokens_per_s"] == pytest.approx(d["tokens_per_s_per_gpu"] * 8)
    assert d["gpu_hours"] == pytest.approx(d["total_time_s"] * 8 / 3600)
    assert d["memory"] is None or "peak_reserved_bytes" in d["memory"]


def test_scenario_and_flag_override(capsys):
    scen = str(EXAMPLES / "seed003-70b-h100.yaml")
    a = run_json(capsys, scen)
    assert a["gpus"] == 128 and a["bound"] == "compute" and a["compute_memory_ratio"] > 10
    b = run_json(capsys, scen, "--gpus", "256")
    assert b["gpus"] == 256 and b["setup"]["dp"] == 16 and b["setup"]["grad_accum"] == 8  # global batch kept at 128
    assert b["step_time_s"] < a["step_time_s"]


def test_flat_scenario_seed004(capsys):
    d = run_json(capsys, str(EXAMPLES / "seed004.yaml"), "--gpu", "a100-80gb")
    assert d["setup"]["peft"] == "lora" and d["setup"]["seq_len"] == 500
    assert d["tokens"] == 15e6


@pytest.mark.parametrize("args, message", [
    (["llama-2-7b", "--gpu", "h100", "--gpus", "8", "--global-batch", "12", "--micro-batch", "1"], "must be a multiple of micro-batch"),
    (["llama-2-7b", "--gpus", "8"], "--gpu"),
    (["llama-2-7b", "--gpu", "h100", "--gpus", "6", "--tp", "4"], "multiple of tp"),
    (["llama-2-7b", "--gpu", "h100", "--zero", "7"], "zero"),
])
def test_bad_input_exits_2(capsys, args, message):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_scenario_key(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text("model: llama-2-7b\nhardware: {gpu: h100, gpus: 8}\ntrainig: {seq: 2048}\n")
    assert main(["train", str(p)]) == 2
    assert "trainig" in capsys.readouterr().err
    p.write_text("model: llama-2-7b\nhardware: {gpu: h100, gpus: 8, nodes: 2}\n")
    assert main(["train", str(p)]) == 2


def test_explain_prints_formulas(capsys):
    assert main(["train", "llama-2-7b", "--gpu", "a100-80gb", "--gpus", "8", "--tokens", "1B", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "formula:" in out and "time/step" in out and "flops/6ND" in out


@pytest.mark.parametrize("name", ["seed003-70b-h100.yaml", "llama3-8b-fsdp.yaml", "seed004.yaml"])
def test_examples_run(capsys, name):
    d = run_json(capsys, str(EXAMPLES / name), *(["--gpu", "a10"] if name == "seed004.yaml" else []))
    assert d["total_time_s"] > 0 and d["gpu_hours"] > 0


def test_timing_override_in_scenario(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    base = "model: llama-2-7b\nworkload: {tokens: 1B}\nhardware: {gpu: h100-sxm, gpus: 8}\ntraining: {micro_batch: 1}\n"
    p.write_text(base)
    fast = run_json(capsys, str(p))
    p.write_text(base + "timing: {data_loader_s_per_step: 1.0}\n")
    slow = run_json(capsys, str(p))
    assert slow["step_time_s"] == pytest.approx(fast["step_time_s"] + 1.0)
    p.write_text(base + "timing: {dp_overlapp: 0.5}\n")
    assert main(["train", str(p)]) == 2
    assert "dp_overlap" in capsys.readouterr().err  # did you mean


def test_platform_adds_cost_with_seed004_field_names(capsys):
    # seed 004's JSON names (throughput_tokens_per_sec, estimated_hours, cost_breakdown) next to sizeup's own
    d = run_json(capsys, str(EXAMPLES / "seed004.yaml"), "--gpu", "a100-40gb", "--platform", "modal")
    assert d["throughput_tokens_per_sec"] == pytest.approx(d["tokens_per_s"])
    breakdown = d["cost_breakdown"]
    assert breakdown["total_cost"] == pytest.approx(breakdown["compute_cost"] + breakdown["storage_cost"]
                                                    + breakdown["egress_cost"], abs=1e-3)
    assert d["estimated_hours"] >= d["total_time_s"] / 3600 * 0.999
    assert d["cost"]["price_as_of"] and d["cost"]["price_source"]
    # per-second billing on Modal: compute cost = price x wall-clock
    assert breakdown["compute_cost"] == pytest.approx(d["cost"]["price_usd_per_hour"] * d["estimated_hours"], rel=0.01)


def test_platform_without_that_gpu_is_one_line(capsys):
    assert main(["train", str(EXAMPLES / "seed004.yaml"), "--gpu", "t4", "--platform", "lambda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "lambda" in err.lower()


def test_compile_flag_that_changes_nothing_says_so(capsys):
    """--compile on a profile that already runs fused kernels changes no figure: the report says so (once), and
    the same flag on an eager profile (hf-trainer) changes the step time and carries no such note."""
    fused = run_json(capsys, "llama-3-8b", "--gpu", "h100-sxm", "--gpus", "8", "--compile")
    plain = run_json(capsys, "llama-3-8b", "--gpu", "h100-sxm", "--gpus", "8")
    assert fused["step_time_s"] == pytest.approx(plain["step_time_s"])
    assert sum("--compile changes nothing" in n for n in fused["notes"]) == 1
    eager = run_json(capsys, "llama-3-8b", "--gpu", "h100-sxm", "--gpus", "8", "--framework", "hf-trainer")
    compiled = run_json(capsys, "llama-3-8b", "--gpu", "h100-sxm", "--gpus", "8", "--framework", "hf-trainer",
                        "--compile")
    assert compiled["step_time_s"] < eager["step_time_s"]
    assert not any("changes nothing" in n for n in compiled["notes"])
