"""`sizeup calibrate`: framework log parsers (tests/data/logs, hand-written in each framework's exact line format,
see its README), the user's fit, the held-out check, the stored profile and its use by `sizeup train`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from sizeup import calib
from sizeup.calib.logs import PARSERS, parse_log, parse_text
from sizeup.errors import SizeupError

LOGS = Path(__file__).parent / "data" / "logs"
GIB = 2.0**30


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("SIZEUP_CALIBRATION", raising=False)
    calib.use(None)
    yield
    calib.use(None)


def run_cli(capsys, *args):
    from sizeup.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- parsers (values read off the files)


def test_megatron_iteration_and_memory_lines():
    log = parse_log(LOGS / "megatron.log")
    assert log.format == "megatron" and len(log.records) == 20
    r = log.records[0]
    # ' iteration       10/     200 | ... | elapsed time per iteration (ms): 6037.2 | throughput per GPU (TFLOP/s/GPU): 219.5 |'
    assert (r.step, r.step_time_s, r.tflops_per_gpu) == (10, pytest.approx(6.0372), pytest.approx(219.5e12))
    # report_memory: '| max reserved: 46412.22766250001' MB (2**20 bytes)
    assert r.peak_memory_bytes == pytest.approx(46412.22766250001 * 2**20) and r.memory_kind == "reserved"


def test_torchtitan_coloured_line():
    log = parse_log(LOGS / "torchtitan.log")
    assert log.format == "torchtitan" and len(log.records) == 30
    r = log.records[4]  # 'step:  5 ... memory: 36.71GiB(46.41%)  tps: 4,765  tflops: 260.25  mfu: 26.31%'
    assert r.step == 5 and r.tokens_per_s_per_gpu == 4765 and r.tflops_per_gpu == pytest.approx(260.25e12)
    assert r.mfu == pytest.approx(0.2631) and r.peak_memory_bytes == pytest.approx(36.71 * GIB)


def test_deepspeed_throughput_timer_line():
    log = parse_log(LOGS / "deepspeed.log")
    assert log.format == "deepspeed" and len(log.records) == 30
    r = log.records[1]  # 'global_step=20, ..., CurrSamplesPerSec=9.179649013587767, ..., MaxMemAllocated=19.86GB'
    assert r.step == 20 and r.samples_per_s == pytest.approx(9.179649013587767)
    assert r.peak_memory_bytes == pytest.approx(19.86 * GIB) and r.memory_kind == "allocated"


def test_torchtune_metric_logger_line():
    log = parse_log(LOGS / "torchtune.log")
    assert log.format == "torchtune" and len(log.records) == 40
    r = log.records[4]  # 'Step 5 | ... tokens_per_second_per_gpu:22429.01195516038 ... peak_memory_reserved:58.04798156738282'
    assert r.step == 5 and r.tokens_per_s_per_gpu == pytest.approx(22429.01195516038)
    assert r.peak_memory_bytes == pytest.approx(58.04798156738282 * GIB) and r.memory_kind == "reserved"


def test_nemo_progress_bar():
    log = parse_log(LOGS / "nemo.log")
    assert log.format == "nemo" and len(log.records) == 40
    r = log.records[4]  # 'global_step=4.0, consumed_samples=640.0, train_step_timing in s=5.155'
    assert r.step == 4 and r.step_time_s == pytest.approx(5.155)


def test_hf_trainer_summary():
    log = parse_log(LOGS / "hf_trainer.log")
    assert log.format == "hf-trainer" and not log.per_step
    # "{'train_runtime': 867.389, 'train_samples_per_second': 3.689, 'train_steps_per_second': 0.231, ...}"
    assert log.summary["train_runtime"] == pytest.approx(867.389)
    assert log.records[0].step_time_s == pytest.approx(1 / 0.231)


def test_detection_picks_each_format():
    for name, fmt in [("megatron", "megatron"), ("nemo", "nemo"), ("torchtitan", "torchtitan"),
                      ("hf_trainer", "hf-trainer"), ("deepspeed", "deepspeed"), ("torchtune", "torchtune")]:
        assert parse_log(LOGS / f"{name}.log").format == fmt
    assert set(PARSERS) == {"megatron", "nemo", "torchtitan", "hf-trainer", "deepspeed", "torchtune"}


def test_log_without_steps_is_an_error(tmp_path):
    p = tmp_path / "empty.log"
    p.write_text("hello\nnothing here\n")
    with pytest.raises(SizeupError, match="no training-step lines"):
        parse_log(p)
    with pytest.raises(SizeupError, match="unknown"):
        parse_text("x", "fairseq")


# --------------------------------------------------------------------------- held-out part: calibrated beats packaged


def _job(name: str) -> dict:
    return yaml.safe_load((LOGS / f"{name}.job.yaml").read_text())["job"]


@pytest.mark.parametrize("name", ["megatron", "nemo", "torchtitan", "deepspeed", "torchtune"])
def test_calibrated_estimate_of_the_held_out_part_is_closer(name):
    """Fit on the first half of the log (after warm-up), predict the second half: the calibrated step time is
    closer to the measured one than the packaged estimate (>= 4 log formats)."""
    from sizeup.calib.user import build_job, calibrate_run

    log = parse_log(LOGS / f"{name}.log")
    profile, check = calibrate_run(build_job(_job(name)), log.records, "t", {"path": name, "format": log.format},
                                   holdout=0.5)
    st = check["step_time_s"]
    assert abs(st["error_after_pct"]) < abs(st["error_before_pct"])
    assert abs(st["error_after_pct"]) < 3.0
    if log.records[0].memory_kind == "reserved":
        pm = check["peak_memory_bytes"]
        assert abs(pm["error_after_pct"]) < abs(pm["error_before_pct"])


def test_calibrate_cli_stores_a_private_profile_used_by_train(capsys, tmp_path):
    code, out, err = run_cli(capsys, "calibrate", LOGS / "torchtitan.log", "--job", LOGS / "torchtitan.job.yaml",
                             "--name", "pod-a", "--json")
    assert code == 0, err
    data = json.loads(out)
    path = Path(data["path"])
    assert path == tmp_path / "config" / "sizeup" / "calibrations" / "pod-a.yaml"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    measured = data["profile"]["fitted"]["measured"]["step_time_s"]
    job = _job("torchtitan")
    args = ["train", job["model"], "--gpu", job["gpu"], "--gpus", job["gpus"], "--zero", job["zero"], "--seq", job["seq"],
            "--micro-batch", job["micro_batch"], "--global-batch", job["global_batch"], "--recompute", job["recompute"],
            "--kernel", job["kernel"], "--tokens", "1B", "--json"]
    code, out, _ = run_cli(capsys, *args)
    packaged = json.loads(out)
    code, out, _ = run_cli(capsys, *args, "--calibration", "pod-a")
    calibrated = json.loads(out)
    calib.use(None)
    assert calibrated["calibration"] == "pod-a"
    assert abs(calibrated["step_time_s"] / measured - 1) < 0.02 < abs(packaged["step_time_s"] / measured - 1)
    # the same job again: the interval is the run's own spread, narrower than the packaged regime interval
    w = lambda d: d["intervals"]["step_time_s"]["p90"] / d["intervals"]["step_time_s"]["p10"]  # noqa: E731
    assert w(calibrated) < w(packaged)


def test_calibrate_measured_yaml_and_store_path(capsys, tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({"job": _job("megatron"), "measured": {"step_time_s": 4.0,
                                                                        "peak_memory_reserved_gib": 44.0}}))
    store = tmp_path / "profiles"
    code, out, err = run_cli(capsys, "calibrate", run, "--name", "lab", "--store", store, "--json")
    assert code == 0, err
    prof = yaml.safe_load((store / "lab.yaml").read_text())
    assert prof["fitted"]["format"] == "measured-yaml"
    assert 0 < prof["knobs"]["fragmentation_fraction"]["value"] <= 1
    # a training log says nothing of serving: the serving knobs stay the packaged profile's
    packaged = calib.load("default").serving
    assert {k: prof["knobs"][k]["value"] for k in calib.SERVING_KNOBS} == pytest.approx(packaged)
    assert calib.load(str(store / "lab.yaml")).serving == pytest.approx(packaged)
    code, out, _ = run_cli(capsys, "memory", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tp", "2", "--seq",
                           "4096", "--zero", "megatron-distopt", "--sequence-parallel", "--calibration", str(store / "lab.yaml"),
                           "--json")
    calib.use(None)
    assert code == 0
    assert json.loads(out)["peak_reserved_bytes"] == pytest.approx(44.0 * GIB, rel=0.01)


@pytest.mark.parametrize("args,needle", [
    (["calibrate"], "give a training log"),
    (["calibrate", "nope.log", "--name", "x", "--model", "llama-2-7b", "--gpu", "h100-sxm"], "not found"),
    (["calibrate", str(LOGS / "nemo.log"), "--name", "x"], "model"),
    (["calibrate", str(LOGS / "nemo.log"), "--job", str(LOGS / "nemo.job.yaml")], "--name"),
    (["calibrate", str(LOGS / "nemo.log"), "--job", str(LOGS / "nemo.job.yaml"), "--name", "x", "--holdout", "1.5"],
     "holdout"),
    (["calibrate", str(LOGS / "nemo.log"), "--job", str(LOGS / "nemo.job.yaml"), "--name", "x", "--format", "fairseq"],
     "unknown"),
    (["calibrate", "--write"], "--refit"),
    # a refit ignores the run-calibration options: they are refused, not dropped (found by `make fuzz`)
    (["calibrate", "--refit", "--grad-accum", "1", "--compile"], "--grad-accum, --compile: options for calibrating"),
    (["calibrate", "--refit", "--holdout", "0.3", "--name", "x"], "--name, --holdout"),
])
def test_bad_input_is_one_line_exit_2(capsys, args, needle):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and needle in err and "Traceback" not in err


def test_bad_measured_yaml(capsys, tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({"job": _job("megatron"), "measured": {"step_time_s": -1}}))
    code, _, err = run_cli(capsys, "calibrate", run, "--name", "x")
    assert code == 2 and "step_time_s" in err
    run.write_text(yaml.safe_dump({"job": _job("megatron"), "measured": {"steptime": 3}}))
    code, _, err = run_cli(capsys, "calibrate", run, "--name", "x")
    assert code == 2 and "unknown key" in err


def test_compute_scale_moves_gemm_attention_and_eager_passes_within_their_bounds():
    """s = 1.25 on knobs already at their physical caps: GEMM and attention stay at 1.0, the eager elementwise passes
    fall 32.5 / 1.25 = 26; s = 0.5: fractions halve, passes 65 -> capped at the bound 40; fp8 and host untouched."""
    from sizeup.calib.user import scaled_knobs

    vec = [1.0, 1.0, 0.88, 0.0005, 32.5]
    fast = [float(x) for x in scaled_knobs(vec, 1.25)]
    assert fast == pytest.approx([1.0, 1.0, 0.88, 0.0005, 26.0])
    slow = [float(x) for x in scaled_knobs([0.8, 0.7, 0.88, 0.0005, 32.5], 0.5)]
    assert slow == pytest.approx([0.4, 0.35, 0.88, 0.0005, 40.0])
