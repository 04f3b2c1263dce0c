"""The three serving knobs the calibration fits on the serving rows (calib/serving.py): the API server's time per
request (api_server_ttft_s), the exposed skew per tensor-parallel all-reduce (tp_allreduce_exposed_s) and the host
time per sequence per scheduler step (step_host_per_seq_s). Their
mechanisms are checked against hand derivations, their physical value (0) with the calibration off, and the fit's
objective and tie-break on toy data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sizeup import calib
from sizeup.calib import serving as sfit
from sizeup.catalog import load_catalog
from sizeup.catalog.engines import engine_profile
from sizeup.catalog.knobs import load_serving_knobs
from sizeup.core.inference import LengthDist, ServeSetup, ServingKnobs, decode_step_time_s, estimate_inference
from sizeup.core.serving_sim import Scheduler, StepModel, make_workload, simulate

CAT = load_catalog()
M8 = CAT.model("llama-3-8b")
M70 = CAT.model("llama-3-70b")
H100 = CAT.gpu("h100-sxm")


def _vllm(knobs: ServingKnobs, model=M8, tp: int = 1):
    prof = engine_profile("vllm").for_gpu(H100)
    return prof, prof.knobs(knobs, model.num_layers, tp)


# --------------------------------------------------------------------------- mechanisms (hand derivations)


def test_api_server_time_adds_to_ttft_and_e2e_and_nothing_else_in_the_closed_form():
    """TTFT' = TTFT + y and E2E' = E2E + y; TPOT and throughput unchanged (the server runs beside the GPU)."""
    _, k0 = _vllm(ServingKnobs())
    y = 0.0175
    setup = ServeSetup(prompt_len=700, output_len=200, batch=8)
    a = estimate_inference(M8, H100, setup, k0)
    b = estimate_inference(M8, H100, setup, k0.with_(api_server_ttft_s=y))
    assert b.ttft_s - a.ttft_s == pytest.approx(y, abs=1e-12)
    assert b.e2e_latency_s - a.e2e_latency_s == pytest.approx(y, abs=1e-12)
    assert b.tpot_s == a.tpot_s and b.output_tokens_per_s == a.output_tokens_per_s
    # in-process (no API server): nothing added
    c = estimate_inference(M8, H100, setup, k0.with_(api_server_ttft_s=y, api_server=False))
    assert c.ttft_s == a.ttft_s


def test_api_server_time_shifts_every_simulated_request_by_y():
    """Under Poisson load every request's TTFT and E2E move by exactly y; the GPU schedule (ITL, TPOT, duration,
    tokens) is the same run."""
    prof, k0 = _vllm(ServingKnobs())
    sched = Scheduler.from_engine(prof, k0)
    wl = make_workload(400, LengthDist(512, 1024), LengthDist(128, 256), rate_rps=6.0, seed=2)
    a = simulate(M8, H100, ServeSetup(), k0, sched, wl)
    b = simulate(M8, H100, ServeSetup(), k0.with_(api_server_ttft_s=0.03), sched, wl)
    assert np.allclose(b.ttft_s - a.ttft_s, 0.03, atol=1e-12)
    assert np.allclose(b.e2e_s - a.e2e_s, 0.03, atol=1e-12)
    assert np.array_equal(a.itl_s, b.itl_s) and np.array_equal(a.tpot_s, b.tpot_s, equal_nan=True)
    assert a.duration_s == b.duration_s and a.output_tokens == b.output_tokens


def test_tp_skew_adds_two_all_reduces_per_layer_to_a_decode_step():
    """A decode step runs 2 all-reduces per layer (after attention and after the MLP, Shoeybi et al. 2019):
    step(x) - step(0) = 2 * L * x at t > 1, and nothing at t = 1."""
    x = 25e-6
    for tp, expect in ((4, 2 * M70.num_layers * x), (1, 0.0)):
        _, k0 = _vllm(ServingKnobs(), M70, tp)
        args = (M70, H100, 4, 1024, tp, 1, ServeSetup().weights, ServeSetup().kv_dtype)
        d = float(decode_step_time_s(*args, k0.with_(tp_allreduce_exposed_s=x))) - float(decode_step_time_s(*args, k0))
        assert d == pytest.approx(expect, rel=1e-9, abs=1e-12), tp


def test_host_time_per_sequence_adds_z_times_the_batch_to_a_decode_step():
    """step(z) - step(0) = z * B on an engine whose step loop does per-request host work (vLLM), at any batch; an
    engine whose loop does not (TurboMind's C++ LlamaBatch, TensorRT-LLM v0.14's C++ executor, generate()) drops z
    whatever the calibration says."""
    z = 60e-6
    base = ServingKnobs(step_host_per_seq_s=z)
    args = (1, 1, ServeSetup().weights, ServeSetup().kv_dtype)  # tp, pp, weights, KV dtype
    for B in (1, 8, 200):
        _, kz = _vllm(base)
        _, k0 = _vllm(ServingKnobs())
        d = float(decode_step_time_s(M8, H100, B, 1024, *args, kz)) - float(decode_step_time_s(M8, H100, B, 1024, *args, k0))
        assert d == pytest.approx(z * B, rel=1e-9), B
    from sizeup.catalog.engines import engine_profile_for_version

    for prof in (engine_profile("lmdeploy"), engine_profile("llama.cpp"), engine_profile("hf-generate"),
                 engine_profile_for_version("trtllm", "v0.14.0")):
        assert prof.per_request_step_work is False and "per_request_step_work" in prof.sources, prof.id
        assert prof.knobs(base, M8.num_layers).step_host_per_seq_s == 0.0, prof.id
        assert "no per-request host work" in prof.describe()
    for name in ("vllm", "sglang", "trtllm", "tgi"):
        assert engine_profile(name).knobs(base, M8.num_layers).step_host_per_seq_s == z, name


def test_an_overlap_scheduler_hides_the_host_time_behind_the_gpu_step():
    """SGLang's overlap scheduler prepares batch n+1 while the GPU runs batch n, so the per-sequence host time h = z*B
    costs only what the step's GPU time g does not cover: step(z) - step(0) = max(h - g, 0) with CUDA graphs (no
    launch time). Hand derivation from g read off decode_step_parts at z = 0: hidden for a small batch, the excess
    for a host time far above the GPU step."""
    from sizeup.core.inference import decode_step_parts

    prof = engine_profile("sglang").for_gpu(H100)
    assert prof.overlap_schedule and prof.per_request_step_work
    args = (1, 1, ServeSetup().weights, ServeSetup().kv_dtype)
    k0 = prof.knobs(ServingKnobs(), M8.num_layers)
    for z, B in ((60e-6, 8), (2e-3, 64)):
        kz = prof.knobs(ServingKnobs(step_host_per_seq_s=z), M8.num_layers)
        p0 = decode_step_parts(M8, H100, B, 1024, *args, k0)
        gpu = float(p0["gemm"] + p0["attention"] + p0["comm"])
        assert float(p0["host_exposed"]) == 0.0  # CUDA graphs: nothing launched from the host
        d = float(decode_step_time_s(M8, H100, B, 1024, *args, kz)) - float(decode_step_time_s(M8, H100, B, 1024, *args, k0))
        assert d == pytest.approx(max(z * B - gpu, 0.0), rel=1e-9, abs=1e-15), (z, B)
        if z * B < gpu:
            assert d == 0.0
        else:
            assert d > 0.0


def test_host_time_per_sequence_adds_z_per_sequence_to_every_simulated_step():
    """The simulator's step model: a step of n_seq sampling sequences gains n_seq * z, prefill-only or mixed, and a
    run of decode steps gains n_seq * z each."""
    z = 40e-6
    _, k0 = _vllm(ServingKnobs())
    setup = ServeSetup(prompt_len=512, output_len=64)
    a, b = StepModel(M8, H100, setup, k0, 4096), StepModel(M8, H100, setup, k0.with_(step_host_per_seq_s=z), 4096)
    for tokens, n_seq, ctx, pairs, prompt in ((64, 64, 64 * 700.0, 0.0, 0.0), (600, 89, 89 * 500.0, 512 * 256.0, 512.0)):
        ta, tb = a.time(tokens, n_seq, ctx, pairs, prompt), b.time(tokens, n_seq, ctx, pairs, prompt)
        assert tb[0] - ta[0] == pytest.approx(n_seq * z, rel=1e-9)
        assert tb[2] == pytest.approx(ta[2], rel=1e-12)  # charged with the step's dense part, not its attention
    ctx = np.array([32 * 600.0, 32 * 601.0, 32 * 602.0])
    assert np.allclose(b.decode_run(32, 32, ctx) - a.decode_run(32, 32, ctx), 32 * z, rtol=1e-9)
    assert b.prefill_batch_s(8, 512) - a.prefill_batch_s(8, 512) == pytest.approx(8 * z, rel=1e-9)


# --------------------------------------------------------------------------- physical value vs fitted value


def test_serving_knobs_are_zero_with_the_calibration_off_and_fitted_with_it_on():
    with calib.using("off"):
        off = load_serving_knobs()
    assert off.api_server_ttft_s == 0.0 and off.tp_allreduce_exposed_s == 0.0 and off.step_host_per_seq_s == 0.0
    cal = calib.load("default")
    assert set(cal.serving) == set(calib.SERVING_KNOBS)
    on = load_serving_knobs()
    for name in calib.SERVING_KNOBS:
        assert getattr(on, name) == pytest.approx(cal.serving[name])
        lo, hi = sfit.BOUNDS[name]
        assert lo <= cal.serving[name] <= hi
        assert "physical value 0.0" in on.sources[name]
        if name in cal.fitted["serving"]["fitted_knobs"]:
            assert on.sources[name].startswith("fitted: "), name
        else:  # left at its physical value by the leave-one-source-out selection, and the source says so
            assert cal.serving[name] == 0.0 and "keeps the physical value" in on.sources[name], name


def test_engines_without_a_server_run_in_process():
    for name in ("hf-generate", "hf-generate-compiled", "gpt-fast"):
        assert engine_profile(name).api_server is False, name
    for name in ("vllm", "sglang", "trtllm", "tgi", "lmdeploy", "llama.cpp"):
        assert engine_profile(name).api_server is True, name


def test_a_profile_with_api_server_time_adds_it_and_in_process_use_drops_it(capsys, tmp_path):
    """A calibration profile that sets api_server_ttft_s (here 20 ms; the packaged fit leaves it at 0): infer's
    TTFT gains exactly that and its note says so; --engine-opt api_server=false takes it away."""
    import yaml

    from sizeup.cli import main

    data = yaml.safe_load(calib.PACKAGED_FILE.read_text())
    data["kind"] = "user"
    data["knobs"]["api_server_ttft_s"]["value"] = 0.02
    prof = tmp_path / "server.yaml"
    prof.write_text(yaml.safe_dump(data))

    def out(*extra):
        code = main(["infer", "llama-3-8b", "--gpu", "h100-sxm", "--engine", "vllm", "--requests", "50", "--json",
                     "--calibration", str(prof), *extra])
        assert code == 0
        return json.loads(capsys.readouterr().out)

    try:
        on, off = out(), out("--engine-opt", "api_server=false")
    finally:
        calib.use(None)  # --calibration made the profile the process's active one
    assert any(n.startswith("TTFT and end-to-end latency include 20 ms of API-server time") for n in on["notes"])
    assert any("in-process" in n for n in off["notes"])
    assert on["ttft_s"] - off["ttft_s"] == pytest.approx(0.02, rel=1e-9)


# --------------------------------------------------------------------------- the fit (toy data)


def test_score_weights_families_equally_and_pools_small_ones():
    """Family A: 4 rows at |ln e| 0.1; B: 3 rows at 0.4; C (1 row, 0.9) and D (1 row, 0.3) pooled: median of
    {0.9, 0.3} = 0.6. Score = (0.1 + 0.4 + 0.6) / 3."""
    fam = np.array(["A"] * 4 + ["B"] * 3 + ["C", "D"])
    err = np.array([0.1] * 4 + [0.4] * 3 + [0.9, 0.3])
    assert sfit.score(err, fam, ["A", "B", "C", "D"], 3) == pytest.approx((0.1 + 0.4 + 0.6) / 3)
    # leaving B out: (0.1 + 0.6) / 2
    assert sfit.score(err, fam, ["A", "C", "D"], 3) == pytest.approx(0.35)


def test_best_prefers_the_physical_side_on_ties():
    scores = np.array([[0.3, 0.2, 0.2], [0.2, 0.25, 0.2]])
    assert sfit.best(scores) == (0, 1)


def test_abs_log_error_uses_the_measured_interval():
    """0 inside [lo, hi]; ln(p/hi) above, ln(lo/p) below (the validator's nearest-edge error)."""
    lo, hi = np.array([9.5, 10.0]), np.array([11.0, 10.0])
    p = np.array([[10.0, 12.0], [22.0, 5.0]])
    out = sfit.abs_log_error(p, lo, hi)
    assert out[0, 0] == 0.0 and out[0, 1] == pytest.approx(np.log(1.2))
    assert out[1, 0] == pytest.approx(np.log(2.0)) and out[1, 1] == pytest.approx(np.log(2.0))


def test_selection_fits_a_knob_only_when_it_carries_over_by_the_margin():
    """Scores of an intermediate ninth-session refit (engine field in, before the overlap scheduler hid z; docs
    'Ninth session'): none 0.462, x 0.423, z 0.417, y 0.455, x+z 0.419, x+y 0.422, z+y 0.451, all three 0.399.
    Walking the sets fewest first: x beats none by 0.039 and becomes the choice; z (0.006 better than x), the pairs
    and y do not clear the 0.02 margin against x; all three (0.024 better) do. The packaged refit's own scores are
    checked by the next test."""
    x, z, y = ("tp_allreduce_exposed_s",), ("step_host_per_seq_s",), ("api_server_ttft_s",)
    stored = {(): 0.46178, x: 0.42288, z: 0.41737, y: 0.45546, x + z: 0.4188, x + y: 0.42222, z + y: 0.45068,
              x + z + y: 0.39867}
    assert sfit.select(stored) == x + z + y
    assert sfit.select({**stored, x + z + y: 0.41}) == x
    assert sfit.select({(): 0.462, x: 0.423, y: 0.455, x + y: 0.422}) == x
    assert sfit.select({(): 0.462, x: 0.450, y: 0.455, x + y: 0.400}) == x + y
    assert sfit.select({(): 0.40, x: 0.39, y: 0.395, x + y: 0.385}) == ()


def test_the_stored_selection_scores_match_the_fitted_knobs():
    """calibration.yaml's recorded scores, walked by select(), give the knobs it says were fitted (the stored file is
    one refit's output, not edited by hand)."""
    fit = calib.load("default").fitted["serving"]
    scores = {(() if k == "none" else tuple(k.split("+"))): v for k, v in fit["loso_selection_score_by_free_knobs"].items()}
    assert list(scores) == [tuple(s) for s in sfit.SUBSETS]
    assert sfit.select(scores) == tuple(fit["fitted_knobs"])


def test_a_profile_with_a_base_takes_the_base_fields_and_sources_and_overrides_its_own():
    """engines.yaml `base: trtllm`: trtllm-0.14 equals trtllm in every field but its own three (and its name), keeps
    trtllm's sources for the fields it inherits and cites its own for the ones it changes; an unknown or circular
    base is a one-line catalog error."""
    import dataclasses

    from sizeup.catalog.engines import _resolve_base
    from sizeup.errors import SizeupError

    child, parent = engine_profile("trtllm-0.14"), engine_profile("trtllm")
    differ = {f.name for f in dataclasses.fields(child)
              if f.name != "sources" and getattr(child, f.name) != getattr(parent, f.name)}
    assert differ == {"id", "name", "version", "cuda_graphs", "overlap_schedule", "per_request_step_work"}
    assert child.sources["kv_policy"] == parent.sources["kv_policy"]
    assert child.sources["overlap_schedule"] != parent.sources["overlap_schedule"]
    raw = {"a": {"base": "b", "max_num_seqs": 8}, "b": {"base": "a"}, "c": {"base": "nope"}}
    for key in ("a", "c"):
        with pytest.raises(SizeupError, match="base"):
            _resolve_base(raw, key)
    assert _resolve_base({"p": {"max_num_seqs": 4, "sources": {"x": "1"}}, "q": {"base": "p", "sources": {"y": "2"}}},
                         "q") == {"max_num_seqs": 4, "sources": {"x": "1", "y": "2"}}
