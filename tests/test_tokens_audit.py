"""Token budgets (hand-computed), Chinchilla suggestions, and the plan audit's arithmetic."""

import pytest
from hypothesis import given, strategies as st

from sizeup.core.audit import FAIL, INCONSISTENT, PASS, AuditLimits, Claims, audit
from sizeup.core.scaling import ChinchillaLaw, compute_optimal
from sizeup.core.tokens import Stream, StreamKind, token_budget


def test_video_audio_sensor_text_budget_by_hand():
    streams = (
        Stream("cam", StreamKind.VIDEO, fps=30, patches_per_frame=16),              # 480 tokens/s
        Stream("mic", StreamKind.AUDIO, sample_rate_hz=48000, hop_samples=960, codebooks=4),  # 50 Hz x 4 = 200 tokens/s
        Stream("pose", StreamKind.SENSOR, rate_hz=30, values_per_step=27, values_per_token=9),  # 90 tokens/s
        Stream("caption", StreamKind.TEXT, tokens_per_sample=64),                  # 64 per sample
    )
    b = token_budget(streams, sample_seconds=10, samples=1000, target_tokens=1e9)
    per = {s.name: s.tokens_per_sample for s in b.streams}
    assert per == {"cam": 4800, "mic": 2000, "pose": 900, "caption": 64}
    assert b.tokens_per_sample == 7764
    assert b.tokens_per_hour == pytest.approx((480 + 200 + 90 + 6.4) * 3600)
    assert b.total_tokens == 7_764_000
    assert b.data_hours_for_target == pytest.approx(1e9 / ((480 + 200 + 90 + 6.4) * 3600))
    assert b.samples_for_target == -(-1e9 // 7764)


def test_audio_frame_rate_given_directly():
    b = token_budget((Stream("a", StreamKind.AUDIO, frame_rate_hz=75, codebooks=8),), sample_seconds=2)
    assert b.tokens_per_sample == 1200  # EnCodec 24 kHz: 75 frames/s x 8 codebooks x 2 s


@given(st.floats(1, 100), st.floats(1, 64), st.floats(1, 600))
def test_budget_linear_in_duration(fps, patches, seconds):
    s = (Stream("v", StreamKind.VIDEO, fps=fps, patches_per_frame=patches),)
    one = token_budget(s, seconds).tokens_per_sample
    two = token_budget(s, 2 * seconds).tokens_per_sample
    assert two == pytest.approx(2 * one)


def test_chinchilla_rule_and_law():
    co = compute_optimal(70e9, 1.4e12)  # Chinchilla itself: 70B on 1.4T tokens, 20 tokens/param
    assert co.tokens_per_param == pytest.approx(20)
    assert co.rule_tokens == pytest.approx(1.4e12)
    assert co.verdict == "near compute-optimal"
    law = ChinchillaLaw()
    n, d = law.optimal_split(6 * 70e9 * 1.4e12)
    assert 6 * n * d == pytest.approx(6 * 70e9 * 1.4e12)
    # the fitted law's optimum has lower loss than any other split at the same compute
    assert law.loss(n, d) <= law.loss(n * 2, d / 2) and law.loss(n, d) <= law.loss(n / 2, d * 2)
    assert "under-trained" in compute_optimal(100e9, 100e9).verdict


def _claims(**kw):
    base = dict(params=10e6, tokens=2.048e9, samples=1e6, tokens_per_sample=2048, gpu_name="A100 80GB", gpus=1,
                peak_flops_per_s=312e12, gpu_memory_bytes=80e9, mfu_ceiling=0.87)
    base.update(kw)
    return Claims(**base)


def test_seed001_tiny_is_inconsistent():
    # seed 001: 1M samples at ~1,100 samples/s "takes" ~11 h on an A100; 1e6/1100/3600 = 0.2525 h
    r = audit(_claims(claimed_throughput_samples_per_s=1100, claimed_wall_clock_hours=11, claimed_gpu_hours=11))
    checks = {c.name: c for c in r.checks}
    assert checks["throughput_vs_time"].status == INCONSISTENT
    assert checks["throughput_vs_time"].values["implied"] == pytest.approx(1e6 / 1100 / 3600)
    # at 11 h the implied MFU is 6*10M*2.048B / (11*3600*312T) = 0.99 %: implausibly low
    assert checks["implied_mfu_wall_clock"].status == FAIL
    assert r.implied_mfu["wall_clock"] == pytest.approx(6 * 10e6 * 2.048e9 / (11 * 3600 * 312e12))
    assert r.status == FAIL


def test_gpu_hours_must_be_wall_clock_times_gpus():
    r = audit(_claims(gpus=2, claimed_wall_clock_hours=9, claimed_gpu_hours=9))
    assert {c.name: c.status for c in r.checks}["gpu_hours_vs_wall_clock"] == INCONSISTENT


def test_consistent_plan_passes_clean():
    # 2.048e9 tokens at 1M tokens/s = 2048 s = 0.5689 h; MFU = 6*10M*1M/312T = 19.2 %
    hours = 2.048e9 / 1e6 / 3600
    r = audit(_claims(claimed_throughput_tokens_per_s=1e6, claimed_wall_clock_hours=hours, claimed_gpu_hours=hours,
                      claimed_price_per_gpu_hour=2.0, claimed_cost_usd=2.0 * hours, claimed_peak_memory_bytes=2e9))
    assert r.status == PASS, [c.message for c in r.checks if c.status != PASS]
    assert len(r.checks) >= 5


def test_mfu_above_hardware_ceiling_fails():
    r = audit(_claims(claimed_throughput_tokens_per_s=6e6))  # 6*10M*6M/312T = 115 % MFU
    assert {c.name: c.status for c in r.checks}["implied_mfu_throughput"] == FAIL


def test_memory_that_cannot_fit_fails():
    r = audit(_claims(claimed_peak_memory_bytes=100e9))
    assert {c.name: c.status for c in r.checks}["claimed_memory_fits"] == FAIL


def test_tolerance_is_data():
    c = _claims(claimed_throughput_samples_per_s=1000, claimed_wall_clock_hours=0.3)  # implied 0.278 h
    assert audit(c, AuditLimits(rel_tolerance=0.25)).checks[0].status == PASS
    assert audit(c, AuditLimits(rel_tolerance=0.01)).checks[0].status == INCONSISTENT


# ----------------------------------------------------------------------------- CLI on the shipped examples
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from sizeup.cli import main  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def audit_json(capsys, name):
    assert main(["audit", str(EXAMPLES / "claims" / name), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    return data, {c["name"]: c for c in data["checks"]}


def test_cli_seed001_tiny_claims_are_flagged(capsys):
    data, checks = audit_json(capsys, "seed001-tiny-a100.yaml")
    assert checks["throughput_vs_time"]["status"] == "inconsistent"
    assert checks["implied_mfu_wall_clock"]["status"] == "fail"
    assert "1,000,000 samples / 1,100 samples/s" in checks["throughput_vs_time"]["arithmetic"]
    _, checks2 = audit_json(capsys, "seed001-tiny-2x3090.yaml")
    assert checks2["gpu_hours_vs_wall_clock"]["status"] == "inconsistent"  # 9 h x 2 GPUs is not 9 GPU-h


def test_cli_consistent_example_passes_clean(capsys):
    data, checks = audit_json(capsys, "consistent-example.yaml")
    assert data["status"] == "pass", [c["message"] for c in checks.values() if c["status"] != "pass"]
    assert "claimed_vs_modelled_time" in checks and "modelled_memory_fits" in checks


def test_cli_seed004_full_finetune_on_t4_cannot_fit(capsys):
    _, checks = audit_json(capsys, "seed004-t4-full.yaml")
    assert checks["modelled_memory_fits"]["status"] == "fail"
    _, checks_a10 = audit_json(capsys, "seed004-a10-lora.yaml")
    assert checks_a10["price_vs_catalog"]["status"] == "inconsistent"  # $0.31/h has no source; catalog $0.75


def test_cli_audit_bad_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "claims.yaml"
    bad.write_text("params: 10M\ngpu: a100-80gb\n")
    assert main(["audit", str(bad)]) == 2
    assert "give the work" in capsys.readouterr().err


def test_cli_tokens_budget_from_spec(capsys):
    assert main(["tokens", str(EXAMPLES / "tokens" / "vr-session.yaml"), "--tokens", "2B", "--params", "100M",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # 30 fps x 16 + 48000/960 x 4 + 30 x 27/27 + 3 = 480 + 200 + 30 + 3 tokens per second of data
    assert data["tokens_per_hour"] == pytest.approx(713 * 3600)
    assert data["data_hours_for_target"] == pytest.approx(2e9 / (713 * 3600))
    assert data["compute_optimal"]["rule_tokens"] == pytest.approx(2e9)


def test_cli_tokens_bad_stream_is_one_line(capsys):
    assert main(["tokens", "--sample-seconds", "10", "--stream", "smell:rate=3"]) == 2
    assert "unknown stream kind" in capsys.readouterr().err
