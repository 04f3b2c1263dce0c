"""Issue 11: one job description. Parity of `sizeup validate` with the commands it prints, every job flag on every
job command, spot infeasibility as a result everywhere, and the layering rules."""

import json
import re
import shlex
from pathlib import Path

import pytest

from sizeup.cli import main
from sizeup.job import JOB_FLAGS, build_job

JOB_COMMANDS = ["memory", "train", "compare", "search", "scale", "fit-budget", "audit", "trace", "export", "budget",
                "infer", "serve-plan"]


def run_json(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, (argv, err)
    return json.loads(out)


@pytest.fixture(scope="module")
def validation_rows():
    from sizeup.catalog import load_catalog
    from sizeup.validate.points import Point, load_points
    from sizeup.validate.runner import predict_point

    catalog = load_catalog()
    rows = []
    for p in load_points():
        rows += [r for r in predict_point(p, catalog) if r.ok]
    return rows


def test_every_predicted_training_row_carries_its_command(validation_rows):
    # every training row whose model is a catalog preset is reproducible from the command line (rows whose
    # architecture is built from the point's own fields, e.g. MaxText's scaled configs, have no preset to name)
    training = [r for r in validation_rows if r.category != "D" and any(a.startswith("model preset") for a in r.assumptions)]
    with_command = [r for r in training if r.command]
    assert len(with_command) >= 0.95 * len(training), (len(with_command), len(training))
    for r in with_command:
        assert r.command.startswith("sizeup ") and r.command.endswith("--json")
        assert r.to_dict()["command"] == r.command


def test_parity_validate_vs_its_commands(validation_rows, capsys):
    """Running each row's `command` gives the figure the row's prediction was computed from (the whole dev set;
    identical commands are run once). A job that does not fit by sizeup's memory model has no time in `train`
    (fits false), so its throughput rows are counted apart and must be few."""
    by_command: dict[str, list] = {}
    for r in validation_rows:
        if r.command:
            by_command.setdefault(r.command, []).append(r)
    assert len(by_command) > 100
    not_fitting = 0
    for command, rows in by_command.items():
        argv = shlex.split(command)[1:]
        data = run_json(capsys, argv)
        for r in rows:
            key, value = r.command_check["key"], r.command_check["value"]
            if data.get(key) is None and data.get("fits") is False:
                not_fitting += 1
                continue
            assert data[key] == pytest.approx(value, rel=1e-9), (command, key)
    assert not_fitting <= 0.1 * sum(len(v) for v in by_command.values())


CLAIMS_EXAMPLE = "consistent-example.yaml"


@pytest.mark.parametrize("command", JOB_COMMANDS)
def test_every_job_command_parses_every_job_flag(command, capsys):
    """One parser: every job flag is an option of every job command. Its --help offers the flags it takes; a flag
    it hides there is refused with one line saying why (exit 2), never 'No such option'."""
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for flag in JOB_FLAGS:
        if re.search(rf"(^|\s){re.escape(flag.flag)}\b", out):
            continue
        usage = out.splitlines()[0]
        target = (["llama-2-7b"] if "[target]" in usage else
                  [str(Path(__file__).resolve().parents[1] / "examples" / "claims" / CLAIMS_EXAMPLE)]
                  if "{claims_file}" in usage else [])
        argv = [command, *target, flag.flag] + ([] if flag.kind == "bool" else ["1"])
        assert main(argv) == 2, (command, flag.flag)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"does not apply to 'sizeup {command}'" in err, (command, flag.flag, err)


def test_a_flag_that_cannot_matter_is_one_line_saying_why(capsys):
    assert main(["memory", "llama-2-7b", "--gpu", "t4", "--platform", "aws"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not apply to 'sizeup memory'" in err


SPOT = ["llama-3-70b", "--gpu", "h100", "--gpus", "1024", "--tp", "8", "--pp", "4", "--zero", "1",
        "--tokens", "15T", "--platform", "aws", "--pricing", "spot"]


def test_spot_that_cannot_progress_is_infeasible_in_train(capsys):
    data = run_json(capsys, ["train", *SPOT, "--json"])
    assert data["feasible"] is False and data["reasons"] and "progress" in data["reasons"][0]
    assert data["estimated_hours"] is None and data["cost_breakdown"] is None


def test_spot_that_cannot_progress_is_infeasible_in_compare(capsys):
    data = run_json(capsys, ["compare", *SPOT, "--json"])
    rows = data["rows"] if "rows" in data else data.get("excluded", [])
    flat = json.dumps(data)
    assert "not make reliable progress" in flat


def test_spot_that_cannot_progress_is_infeasible_in_search(capsys):
    data = run_json(capsys, ["search", "llama-3-70b", "--gpu", "h100", "--gpus", "1024", "--tp", "8", "--pp", "4",
                             "--zero", "1", "--tokens", "15T", "--platform", "aws", "--pricing", "spot", "--json"])
    assert data["plans"] == [] and data["feasible"] == 0


def test_layering_core_imports_no_scenario_commands_or_validate():
    root = Path(__file__).resolve().parent.parent / "src" / "sizeup"
    for folder in ("core", "search"):
        for path in (root / folder).glob("*.py"):
            text = path.read_text()
            for bad in ("sizeup.scenario", "sizeup.commands", "sizeup.validate", "sizeup.cli"):
                assert bad not in text, (path.name, bad)


def test_job_is_validated_on_construction():
    with pytest.raises(Exception, match="multiple of tp"):
        build_job({"model": "llama-2-7b", "gpu": "h100", "gpus": 12, "tp": 8})
    with pytest.raises(Exception, match="gpus"):
        build_job({"model": "llama-2-7b", "gpu": "h100", "gpus": 0})
    with pytest.raises(Exception, match="micro-batch"):
        build_job({"model": "llama-2-7b", "gpu": "h100", "micro_batch": 0})


def test_job_round_trips_through_its_values():
    job = build_job({"model": "llama-3-8b", "gpu": "h100-sxm", "gpus": 16, "tp": 2, "tokens": "10B",
                     "framework": "torchtitan", "recompute": "full", "precision": "fp8"})
    again = build_job(job.to_values())
    from dataclasses import replace

    assert again.setup == job.setup
    assert replace(again.execution, overridden=()) == replace(job.execution, overridden=())
    assert job.execution.timing_kernel == "eager"  # torchtitan's fp8 is torchao Float8Linear, not TE


def test_default_global_batch_is_about_a_million_tokens_and_stated(capsys):
    data = run_json(capsys, ["train", "llama-3-8b", "--gpu", "h100", "--gpus", "8", "--tokens", "10B", "--json"])
    assert data["setup"]["tokens_per_step"] == 512 * 2048
    assert "global_batch" in data["job"]["defaults"]


def test_sharding_default_is_the_least_that_fits(capsys):
    data = run_json(capsys, ["train", "llama-3-8b", "--gpu", "h100", "--gpus", "8", "--tokens", "10B", "--json"])
    assert data["fits"] is True and data["setup"]["sharding"] == "zero1"
    data = run_json(capsys, ["train", "llama-3-8b", "--gpu", "h100", "--gpus", "8", "--tokens", "10B", "--zero",
                             "none", "--json"])
    assert data["fits"] is False and data["step_time_s"] is None and data["total_time_s"] is None


def test_audit_claims_state_the_full_job(capsys):
    """A multi-GPU claim with its layout (tp, zero, recompute, framework) gets a memory check of that layout."""
    data = run_json(capsys, ["audit", "examples/claims/llama2-70b-64xh100-tp8.yaml", "--json"])
    assert "tp" not in json.dumps(data.get("errors", ""))
    text = json.dumps(data)
    assert "unknown key" not in text
    # 70B over tp 8 with ZeRO-1 over dp 8 fits an 80 GB H100 (weights 140 GB / 8 + sharded states)
    mem = [c for c in data["checks"] if "memory" in c["name"]]
    assert mem and all(c["status"] != "fail" for c in mem), mem


def test_spot_that_cannot_progress_is_infeasible_in_scale(capsys):
    data = run_json(capsys, ["scale", "--sizes", "70B", "--gpus", "1024xh100-sxm", "--platform", "aws", "--pricing",
                             "spot", "--tokens", "15T", "--json"])
    cost = data["rows"][0]["hardware"]["1024x h100-sxm"]["cost"]["spot"]
    assert cost["feasible"] is False and "progress" in cost["reasons"][0] and "total_cost_usd" not in cost


def test_train_cost_carries_the_time_interval(capsys):
    """The cost range is the wall-clock range applied to the compute cost (storage and egress held)."""
    data = run_json(capsys, ["train", "examples/seed004.yaml", "--gpu", "a10", "--platform", "lambda", "--json"])
    iv, t = data["intervals"]["total_cost_usd"], data["intervals"]["total_time_s"]
    cb = data["cost_breakdown"]
    assert iv["p10"] <= iv["p50"] <= iv["p90"] and iv["p50"] == pytest.approx(cb["total_cost"])
    rest = cb["total_cost"] - cb["compute_cost"]
    assert iv["p90"] - rest == pytest.approx(cb["compute_cost"] * t["p90"] / t["p50"])


def test_peft_default_lora_targets_follow_the_model_type(capsys):
    """--lora-targets peft-default = Hugging Face PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING (peft
    utils/constants.py): ['q_proj', 'v_proj'] for llama, ['c_attn'] (the fused q/k/v Linear) for gpt2."""
    llama = run_json(capsys, ["memory", "llama-2-7b", "--gpu", "a100-80gb", "--peft", "lora", "--lora-targets",
                              "peft-default", "--json"])
    assert llama["job"]["values"]["lora_targets"] == "q,v"
    gpt2 = run_json(capsys, ["memory", "gpt2", "--gpu", "a100-80gb", "--peft", "lora", "--lora-targets",
                             "peft-default", "--json"])
    assert gpt2["job"]["values"]["lora_targets"] == "q,k,v"
    code = main(["memory", "gemma-3-27b", "--gpu", "a100-80gb", "--peft", "lora", "--lora-targets", "peft-default"])
    err = capsys.readouterr().err
    assert code == 2 and "no default LoRA targets" in err and len(err.strip().splitlines()) == 1


def test_packed_doc_tokens_flag_takes_a_count_or_a_catalog_dataset(capsys):
    by_name = run_json(capsys, ["train", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "1B",
                                "--packed-doc-tokens", "squad-v1.1", "--json"])
    assert by_name["job"]["values"]["packed_doc_tokens"] == 230  # catalog datasets.yaml squad-v1.1
    by_count = run_json(capsys, ["train", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "1B",
                                 "--packed-doc-tokens", "230", "--json"])
    assert by_count["step_time_s"] == pytest.approx(by_name["step_time_s"])
    plain = run_json(capsys, ["train", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "1B", "--json"])
    assert by_count["step_time_s"] < plain["step_time_s"] and "packed_doc_tokens" not in plain["job"]["values"]
    # the job's values rebuild the same job (one parser)
    assert build_job(by_count["job"]["values"]).setup.packed_doc_tokens == 230
    for bad in ("0", "-3", "squad-v9", "1.5"):
        code = main(["train", "llama-2-7b", "--gpu", "h100-sxm", "--packed-doc-tokens", bad])
        err = capsys.readouterr().err
        assert code == 2 and "packed-doc-tokens" in err and len(err.strip().splitlines()) == 1, (bad, err)


def test_a_scenario_file_takes_every_job_flag(tmp_path, capsys):
    """ONE flag table: every job flag is a scenario key (top level, or under its section), checked by the same parser
    as the CLI flag (a bad value is one line, exit 2)."""
    from sizeup.scenario import FLAT_SECTIONS, ScenarioFile

    known = set(ScenarioFile.model_fields) | {k for _, model in FLAT_SECTIONS for k in model.model_fields}
    assert {f.name for f in JOB_FLAGS} - known == set()
    sc = tmp_path / "s.yaml"
    sc.write_text("model: llama-2-7b\ntraining: {peft: lora, lora_targets: 'q,v', packed_doc_tokens: 230, "
                  "recompute: full, recompute_layers: '0.5'}\nhardware: {gpu: a100-80gb}\nworkload: {tokens: 1B}\n")
    values = run_json(capsys, ["train", str(sc), "--json"])["job"]["values"]
    assert values["lora_targets"] == "q,v" and values["packed_doc_tokens"] == 230 and values["recompute_layers"] == "0.5"
    sc.write_text("model: llama-2-7b\ntraining: {lora_targets: nope}\nhardware: {gpu: a100-80gb}\n")
    code = main(["train", str(sc)])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) == 1
