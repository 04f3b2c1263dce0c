"""Expert parallelism in MoE serving (issue 13: 'MoE decode (expert weights read per token at batch size b, EP) in
step time'). References are hand derivations and a direct enumeration, not the code's own output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sizeup.catalog import load_catalog, resolve_model
from sizeup.cli import main
from sizeup.core.inference import (
    ServeSetup, WeightDtype, _binomial_expected_max, _shapes, decode_step_parts, estimate_inference, expert_parallel_load,
    expert_parallel_read, weight_bits_per_param,
)
from sizeup.errors import SizeupError

V3 = resolve_model("deepseek-v3")
SH = _shapes(V3)


def _h200():
    return load_catalog().gpu("h200-sxm")


def _pmf(n: int, p: float) -> list[float]:
    return [math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(n + 1)]


def test_expected_max_of_binomials_matches_a_direct_enumeration():
    """E[max(X1, X2)] = sum_a sum_b max(a, b) P(a) P(b), and three of them by the same triple sum."""
    for n, p in ((8, 0.3), (32, 1 - (1 - 8 / 256) ** 4), (5, 0.9)):
        f = _pmf(n, p)
        two = sum(max(a, b) * f[a] * f[b] for a in range(n + 1) for b in range(n + 1))
        assert float(_binomial_expected_max(n, p, 2)[0]) == pytest.approx(two, rel=1e-9)
        three = sum(max(a, b, c) * f[a] * f[b] * f[c]
                    for a in range(n + 1) for b in range(n + 1) for c in range(n + 1))
        assert float(_binomial_expected_max(n, p, 3)[0]) == pytest.approx(three, rel=1e-9)


def test_experts_read_by_hand():
    """ep = 1: E*p, the mean, p = 1 - (1 - K/E)^B. ep = E (one expert per rank group): each group's expert is
    touched with p, the busiest group reads one expert when any is touched, so ep * (1 - (1 - p)^E)."""
    E, K = V3.num_experts, V3.experts_per_token
    for B in (1, 4, 32):
        p = 1 - (1 - K / E) ** B
        assert expert_parallel_read(SH, B, 1) == pytest.approx(E * p, rel=1e-12)
        assert expert_parallel_read(SH, B, E) == pytest.approx(E * (1 - (1 - p) ** E), rel=1e-9)


def test_expert_load_imbalance_by_hand():
    """Token-expert pairs n = T*K over ep groups: (n/ep + sqrt(n (1/ep)(1 - 1/ep)) * z) / (n/ep), z the Blom
    approximation of the expected largest of ep standard normals, Phi^-1((ep - 0.375)/(ep + 0.25)); for ep = 8,
    Phi^-1(7.625/8.25 = 0.92424) = 1.4338."""
    T, ep, K = 512, 8, V3.experts_per_token
    n = T * K
    want = (n / ep + math.sqrt(n * (1 / ep) * (1 - 1 / ep)) * 1.4338) / (n / ep)
    assert float(expert_parallel_load(SH, T, ep)) == pytest.approx(want, rel=1e-3)
    assert float(expert_parallel_load(SH, T, 1)) == 1.0


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 4096), ep=st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_expert_parallel_bounds(B, ep):
    """The busiest group reads at least the mean and at most every expert; its work share lies in [1, ep]."""
    E = V3.num_experts
    mean = E * (1 - (1 - V3.experts_per_token / E) ** B)
    got = expert_parallel_read(SH, B, ep)
    assert mean * (1 - 1e-12) <= got <= E * (1 + 1e-12)
    load = float(expert_parallel_load(SH, B, ep))
    assert 1.0 <= load <= ep


def test_expert_parallel_decode_reads_the_busiest_groups_experts():
    """At batch 1 the step is memory-bound: the extra GEMM memory time of ep = 8 over ep = 1 on a TP 8 replica is
    L_moe * P_e * bytes/param * (read_ep - read_1) / t / (BW * eta_hbm)."""
    gpu = _h200()
    setup = ServeSetup(tp=8)
    args = (V3, gpu, 1, 576, 8, 1, setup.weights, setup.kv_dtype)
    p1 = decode_step_parts(*args, ep=1)
    p8 = decode_step_parts(*args, ep=8)
    bpp = weight_bits_per_param(setup.weights, 128) / 8
    extra = SH.n_moe_layers * SH.expert_params_per_layer_each * bpp \
        * (expert_parallel_read(SH, 1, 8) - expert_parallel_read(SH, 1, 1)) / 8
    want = extra / (gpu.hbm_bytes_per_s * gpu.hbm_efficiency)
    assert float(p8["gemm_memory"] - p1["gemm_memory"]) == pytest.approx(want, rel=1e-9)
    assert float(p8["comm"]) == pytest.approx(float(p1["comm"]), rel=1e-12)  # the combine stays the TP all-reduce


def test_expert_parallel_keeps_memory_and_is_never_faster_in_this_model():
    gpu = _h200()
    for batch in (1, 16, 256):
        a = estimate_inference(V3, gpu, ServeSetup(tp=8, batch=batch, weights=WeightDtype.FP8))
        b = estimate_inference(V3, gpu, ServeSetup(tp=8, batch=batch, weights=WeightDtype.FP8, ep=8))
        assert b.ep == 8 and a.ep == 1
        assert b.weights_bytes_per_gpu == a.weights_bytes_per_gpu and b.max_concurrency == a.max_concurrency
        assert b.tpot_s >= a.tpot_s and b.ttft_s >= a.ttft_s


@pytest.mark.parametrize("model,tp,ep,msg", [
    ("llama-3.1-8b", 2, 2, "needs a mixture-of-experts model"),
    ("deepseek-v3", 8, 3, "must divide --tp 8"),
    ("deepseek-v3", 4, 8, "must divide --tp 4"),
    ("deepseek-v3", 8, 0, "--ep must be"),
])
def test_bad_expert_parallel_degrees_are_one_line_errors(capsys, model, tp, ep, msg):
    code = main(["infer", model, "--gpu", "h200", "--tp", str(tp), "--ep", str(ep)])
    err = capsys.readouterr().err
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    if ep > 0:
        with pytest.raises(SizeupError, match=msg.replace("--", "").split()[0]):
            estimate_inference(resolve_model(model), _h200(), ServeSetup(tp=tp, ep=ep))


def test_infer_json_carries_ep_and_the_experts_read(capsys):
    code = main(["infer", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--ep", "8", "--weights", "fp8", "--batch", "1",
                 "--json", "--explain"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["ep"] == 8
    note = next(n for n in data["notes"] if n.startswith("expert parallel 8"))
    assert f"{float(expert_parallel_read(SH, 1, 8)) / 8:.2f} experts' weights" in note and "against 1.00" in note
    tpot = next(t for t in data["explain"] if t["name"] == "time/tpot")
    assert tpot["inputs"]["ep"] == 8
    assert tpot["inputs"]["experts_read_per_moe_layer"] == pytest.approx(float(expert_parallel_read(SH, 1, 8)))


def test_the_simulated_load_uses_the_expert_parallel_step(capsys):
    """The scheduler simulation's steps come from the same step model, so at 4 clients (memory-bound decode) EP 8's
    simulated TPOT is above EP 1's."""
    got = {}
    for ep in (1, 8):
        code = main(["infer", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--ep", str(ep), "--weights", "fp8",
                     "--concurrency", "4", "--json"])
        assert code == 0
        got[ep] = json.loads(capsys.readouterr().out)["load"]["tpot_mean_s"]
    assert got[8] > got[1] > 0


def test_serve_plan_with_ep_tries_only_the_tp_degrees_it_divides(capsys):
    """serve-plan --ep 4 sizes TP 4 and TP 8 only (ep must divide tp), each option says its ep, and at TP 8 the
    simulated p95 TPOT with EP 4 is not below the TP-split one (the same load, the busiest group's experts)."""
    base = ["serve-plan", "deepseek-v3", "--gpu", "h200", "--rps", "2", "--weights", "fp8", "--requests", "200",
            "--json"]
    code = main(base + ["--ep", "4"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sorted(o["tp"] for o in data["options"]) == [4, 8] and all(o["ep"] == 4 for o in data["options"])
    code = main(base + ["--tp", "8"])
    plain = json.loads(capsys.readouterr().out)["options"][0]
    ep4 = next(o for o in data["options"] if o["tp"] == 8)
    assert plain["ep"] == 1 and plain["feasible"] and ep4["feasible"]
    assert ep4["tpot_p95_s"] >= plain["tpot_p95_s"]
    code = main(["serve-plan", "llama-3.1-8b", "--gpu", "h100", "--rps", "2", "--ep", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "mixture-of-experts" in err and len(err.strip().splitlines()) == 1


def test_the_closed_form_fleet_planner_takes_ep():
    """plan_fleet(ep=8) plans only the TP degrees 8 divides, and its p95 TPOT at TP 8 is not below the TP-split
    plan's; a dense model with ep > 1 is a one-line error."""
    from sizeup.core.inference import LatencyTargets, LengthDist, Traffic, plan_fleet

    gpu = _h200()
    traffic = Traffic(2.0, LengthDist.fixed(512), LengthDist.fixed(128))
    split = plan_fleet(V3, [(gpu, 4.0)], traffic, LatencyTargets(), WeightDtype.FP8, tp_choices=(8,))
    ep8 = plan_fleet(V3, [(gpu, 4.0)], traffic, LatencyTargets(), WeightDtype.FP8, tp_choices=(1, 2, 4, 8), ep=8)
    assert [o.tp for o in ep8.options] == [8]
    assert ep8.options[0].feasible and split.options[0].feasible
    assert ep8.options[0].tpot_p95_s >= split.options[0].tpot_p95_s
    with pytest.raises(SizeupError, match="mixture-of-experts"):
        plan_fleet(resolve_model("llama-3.1-8b"), [(gpu, 4.0)], traffic, LatencyTargets(), ep=2)
