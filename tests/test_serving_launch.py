"""Host-launch-bound eager forwards (engine profiles kernels_per_layer x L + kernels_per_forward at kernel_launch_s,
core.inference ServingKnobs.host_launch_s): hand derivations, invariants (hypothesis), and the shape of a measured
trace (benchmarks/data/gpu_truth/h200-2026-12-04: HF generate on an H200)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sizeup.catalog import load_catalog
from sizeup.catalog.engines import engine_profile
from sizeup.core.inference import ServeSetup, ServingKnobs, decode_step_time_s, prefill_time_s
from sizeup.core.serving_sim import StepModel

CAT = load_catalog()
M1 = CAT.model("llama-3.2-1b")
H200 = CAT.gpu("h200")


def test_host_launch_time_is_kernels_times_launch_cost():
    """Hand count: (kernels per layer x L + kernels outside the layers) x seconds per launch; CUDA graphs -> 0."""
    prof = engine_profile("hf-generate").for_gpu(H200)
    k = prof.knobs(ServingKnobs(), 16)
    assert k.host_launch_s == pytest.approx((prof.kernels_per_layer * 16 + prof.kernels_per_forward) * prof.kernel_launch_s)
    # dispatched ops: 2 x 8 (RMSNorm) + 3 x (proj, view, transpose) + 2 unsqueeze + 2 x 7 rotary + 2 cat
    # + (sdpa, transpose, contiguous) + (reshape, contiguous, o_proj) + 2 add + 5 MLP (41 of them launch kernels)
    assert prof.kernels_per_layer == 56
    for eng in ("vllm", "sglang", "trtllm", "gpt-fast", "hf-generate-compiled"):
        assert engine_profile(eng).knobs(ServingKnobs(), 32).host_launch_s == 0.0
    # transformers' compiled generate captures the decode forward only: its prefill is the eager one
    comp = engine_profile("hf-generate-compiled").knobs(ServingKnobs(), 16)
    assert comp.prefill_host_launch_s == pytest.approx(k.host_launch_s)
    assert tuple(comp.prefill_eager_elementwise_bytes) == (108.0, 28.0, 10.0)
    assert tuple(comp.eager_elementwise_bytes) == (0.0, 0.0, 0.0)
    assert float(prefill_time_s(M1, H200, 8, 1, knobs=comp)) == pytest.approx(float(prefill_time_s(M1, H200, 8, 1, knobs=k)))


def test_launch_bound_step_is_launch_plus_overhead():
    """When the host takes longer than the GPU, a decode step lasts the launch time + the per-step overhead
    (the GPU work hides behind the launches); with launch 0 the step is the GPU roofline + overhead."""
    base = ServingKnobs(decode_step_overhead_s=1e-3)
    gpu_only = float(decode_step_time_s(M1, H200, 1, 576, knobs=base)) - 1e-3
    slow = base.with_(host_launch_s=50 * gpu_only)
    assert float(decode_step_time_s(M1, H200, 1, 576, knobs=slow)) == pytest.approx(50 * gpu_only + 1e-3)
    assert float(prefill_time_s(M1, H200, 8, 1, knobs=slow)) == pytest.approx(50 * gpu_only)
    sm = StepModel(M1, H200, ServeSetup(prompt_len=512, output_len=64), slow, 4096)
    assert sm.time(1, 1, 576.0, 0.0)[0] == pytest.approx(50 * gpu_only + 1e-3, rel=1e-6)
    assert float(sm.decode_run(1, 1, np.array([576.0]))[0]) == pytest.approx(50 * gpu_only + 1e-3, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(launch=st.floats(0.0, 0.05), batch=st.integers(1, 256), ctx=st.integers(1, 8192))
def test_launch_never_shortens_and_bounds_the_step(launch, batch, ctx):
    """Invariant: step(launch) = max(step(0) - overhead, launch) + overhead >= both."""
    k0 = ServingKnobs(decode_step_overhead_s=2e-4)
    t0 = float(decode_step_time_s(M1, H200, batch, ctx, knobs=k0))
    t = float(decode_step_time_s(M1, H200, batch, ctx, knobs=k0.with_(host_launch_s=launch)))
    assert t == pytest.approx(max(t0 - 2e-4, launch) + 2e-4, rel=1e-9, abs=1e-12)
    assert t >= t0 - 1e-15 and t >= launch


def _tpot(engine: str, batch: int) -> float:
    from sizeup.core.inference import estimate_inference

    prof = engine_profile(engine).for_gpu(H200)
    k = prof.knobs(ServingKnobs(), M1.num_layers)
    est = estimate_inference(M1, H200, ServeSetup(prompt_len=512, output_len=64, batch=batch, static=True), k)
    return est.tpot_s


def test_eager_decode_is_flat_in_batch_like_the_measured_trace():
    """Measured (gpu_truth run2, Llama-3.2-1B, prompt 512, HF generate DynamicCache eager): TPOT 11.10 / 10.97 /
    10.88 / 10.51 ms at batch 1 / 4 / 16 / 64 - flat within 6 %: the step is host-bound. The profile must give a
    flat TPOT too (within 10 %), and CUDA graphs (static+compile, measured 2.48 ms at batch 1) must cut it by > 3x."""
    eager = [_tpot("hf-generate", b) for b in (1, 4, 16, 64)]
    assert max(eager) / min(eager) < 1.10
    assert _tpot("hf-generate-compiled", 1) < eager[0] / 3
    # measured 11.10 ms; the hand-counted profile (not fitted: 56 dispatched ops per layer at 10 us) within 15 %
    assert eager[0] == pytest.approx(11.10e-3, rel=0.15)


def test_eager_elementwise_bytes_hand_count():
    """HF Llama eager, per token per layer (read + write, bf16 2 B / fp32 4 B): 2 RMSNorms 72h, rotary 20h + 20kv,
    cache cat 8kv, contiguous 4h, residual adds 12h, SiLU * up 10f -> 108h + 28kv + 10f bytes. Llama-3.2-1B
    (h 2048, kv_dim 512, ffn 8192, 16 layers), 32768 tokens: 166.4 GB of HBM traffic."""
    from sizeup.core.inference import eager_elementwise_s

    k = engine_profile("hf-generate").knobs(ServingKnobs(), M1.num_layers)
    per_tok = 16 * (108 * 2048 + 28 * 512 + 10 * 8192)
    assert per_tok * 32768 == pytest.approx(166.43e9, rel=1e-3)
    expected = per_tok * 32768 / (H200.hbm_bytes_per_s * H200.hbm_efficiency)
    assert float(eager_elementwise_s(M1, H200, 32768, 1, k)) == pytest.approx(expected)
    assert float(eager_elementwise_s(M1, H200, 32768, 1, ServingKnobs())) == 0.0


# --------------------------------------------------------------------------- TurboMind v0.1: first token from decode


def test_release_line_profile_is_picked_by_the_stated_version():
    from sizeup.catalog.engines import engine_profile_for_version

    assert engine_profile_for_version("lmdeploy", "v0.1.0a1").id == "lmdeploy-0.1"
    assert engine_profile_for_version("turbomind", "0.1.0").id == "lmdeploy-0.1"
    assert engine_profile_for_version("lmdeploy", "v0.6.2").id == "lmdeploy"
    assert engine_profile_for_version("lmdeploy", None).id == "lmdeploy"
    assert engine_profile_for_version("vllm", "v0.6.0").id == "vllm-0.6"  # V0 release line (catalog has one)
    assert engine_profile_for_version("vllm", "v0.2.6").id == "vllm-0.2"  # paged_attention kernels, a block per head
    assert engine_profile_for_version("vllm", "v0.2.6").decode_attention_q_heads_per_kv_read == 1
    assert engine_profile_for_version("vllm", "v0.9.2").id == "vllm"  # no vllm-0.9 profile: the engine's own


def _lone(engine: str, s: int, n: int = 16):
    from sizeup.core.serving_sim import Scheduler, Workload, simulate

    m, g = CAT.model("llama-2-7b"), CAT.gpu("a100-80gb")
    prof = engine_profile(engine).for_gpu(g)
    k = prof.knobs(ServingKnobs(), m.num_layers)
    wl = Workload(np.array([s]), np.array([n]), None, 1, None)
    return m, g, k, simulate(m, g, ServeSetup(prompt_len=s, output_len=n), k, Scheduler.from_engine(prof, k), wl)


def test_first_token_from_decode_step_hand_derivation():
    """TurboMind v0.1 (LlamaBatch::ContextDecode skips the last prompt token, 'will process with decoder later'):
    a lone request's TTFT = prefill(s - 1) + step overhead + one decode step at context s, i.e. the ordinary
    TTFT plus one decode step. The source's own table (LMDeploy a100_fp16.md, v0.1.0a1, Llama-2-7B, batch 1) shows
    the same structure: a 1-token prompt's FTL 0.011 s is one decode step (50 % latency 0.009 s), a 128-token
    prompt's 0.022 s is the 127-token prefill plus that step."""
    m, g, k, res = _lone("lmdeploy-0.1", 512)
    expected = float(prefill_time_s(m, g, 511, 1, knobs=k)) + k.decode_step_overhead_s \
        + float(decode_step_time_s(m, g, 1, 511, knobs=k))
    assert float(res.ttft_s[0]) == pytest.approx(expected, rel=1e-3)
    # 16 output tokens: 16 decode steps after the prefill (not 15)
    steps = float(res.e2e_s[0]) - (float(prefill_time_s(m, g, 511, 1, knobs=k)) + k.decode_step_overhead_s)
    assert steps == pytest.approx(16 * float(decode_step_time_s(m, g, 1, 519, knobs=k)), rel=0.02)


def test_lockstep_clients_under_kv_pressure_make_progress():
    """64 closed-loop clients of 128 + 2048 tokens do not fit the KV cache of Llama-2-7B on an A100-80GB together:
    requests are preempted; the admission headroom (room for every running decode's next KV block) keeps the
    re-admitted ones from being preempted again at once, so the run ends in a bounded number of steps."""
    from sizeup.core.serving_sim import Scheduler, Workload, simulate

    m, g = CAT.model("llama-2-7b"), CAT.gpu("a100-80gb")
    prof = engine_profile("lmdeploy-0.1").for_gpu(g)
    k = prof.knobs(ServingKnobs(), m.num_layers)
    wl = Workload(np.full(128, 128), np.full(128, 2048), None, 64, None)
    res = simulate(m, g, ServeSetup(prompt_len=128, output_len=2048), k, Scheduler.from_engine(prof, k), wl)
    assert res.completed == 128
    assert res.steps < 3 * 2048 * 128 / 32  # far fewer steps than one per request-token at 32 in flight


def test_closed_form_ttft_carries_the_first_decode_step():
    """infer's closed form: with first_token_from_decode the TTFT is one decode step longer (nothing else moves)."""
    from sizeup.core.inference import estimate_inference

    m, g = CAT.model("llama-2-7b"), CAT.gpu("a100-80gb")
    k = engine_profile("lmdeploy-0.1").for_gpu(g).knobs(ServingKnobs(), m.num_layers)
    setup = ServeSetup(prompt_len=512, output_len=64, batch=8)
    a = estimate_inference(m, g, setup, k)
    b = estimate_inference(m, g, setup, k.with_(first_token_from_decode=False))
    assert a.ttft_s - b.ttft_s == pytest.approx(a.tpot_s)
    assert a.tpot_s == pytest.approx(b.tpot_s) and a.output_tokens_per_s == pytest.approx(b.output_tokens_per_s)


def test_prefill_attention_without_causal_skip_hand_count():
    """TurboMind v0.1.0a1's context attention (llama_flash_attention_kernel.cu) sweeps every key tile for every
    query block and masks the upper triangle with a bias: a prompt chunk of x tokens after p0 cached ones costs
    x*(p0 + x) query-key pairs instead of the causal x*p0 + x(x+1)/2. Hand count at s = 2048, x = 100 after 300."""
    m, g = CAT.model("llama-2-7b"), CAT.gpu("a100-80gb")
    prof = engine_profile("lmdeploy-0.1").for_gpu(g)
    assert prof.prefill_attention_causal_skip is False
    k = prof.knobs(ServingKnobs(), m.num_layers)
    assert engine_profile("vllm").knobs(ServingKnobs(), 32).prefill_attention_causal_skip is True
    setup = ServeSetup(prompt_len=2048, output_len=16)
    full = StepModel(m, g, setup, k, 4096)
    causal = StepModel(m, g, setup, k.with_(prefill_attention_causal_skip=True), 4096)
    assert float(full.pairs(0, 2048)) == 2048 * 2048
    assert float(causal.pairs(0, 2048)) == 2048 * 2049 / 2
    assert float(full.pairs(300, 100)) == 100 * 400
    assert float(causal.pairs(300, 100)) == 100 * 300 + 100 * 101 / 2
    # closed form: the extra s^2/2 pairs x 2 FLOPs x L x heads x (d_qk + d_v), at the GEMM rate of the same forward
    t_full = float(prefill_time_s(m, g, 2048, 1, knobs=k))
    t_causal = float(prefill_time_s(m, g, 2048, 1, knobs=k.with_(prefill_attention_causal_skip=True)))
    extra_flops = 2048 * 2048 / 2 * 2 * 32 * 32 * (128 + 128)
    rate = full._parts_at(2048)[4]
    assert t_full - t_causal == pytest.approx(extra_flops / rate, rel=1e-6)
    # the engine override reaches the knob
    assert prof.with_overrides({"prefill_attention_causal_skip": "true"}).knobs(
        ServingKnobs(), 32).prefill_attention_causal_skip is True


def test_turbomind_v01_prefill_passes_hand_count():
    """TurboMind v0.1.0a1 per layer and token (fp16, read + write): decode = two fused add-residual RMSNorms (8h
    each) + the SiLU-gate activation (6 ffn); prefill adds the QKV bias/rotary transpose (4h + 8kv), the KV-block
    write (8kv) and the block -> linear KV copy for the attention kernel (8kv). Hand count for Llama-2-7B on an
    A100: seconds = tokens x L x bytes / (BW x eta_hbm)."""
    from sizeup.core.inference import eager_elementwise_s, prefill_view

    m, g = CAT.model("llama-2-7b"), CAT.gpu("a100-80gb")
    k = engine_profile("lmdeploy-0.1").for_gpu(g).knobs(ServingKnobs(), m.num_layers)
    h, kv, f, L = 4096, 4096, 11008, 32
    bw = g.hbm_bytes_per_s * g.hbm_efficiency
    assert float(eager_elementwise_s(m, g, 1.0, 1, k)) == pytest.approx(L * (16 * h + 6 * f) / bw)
    assert float(eager_elementwise_s(m, g, 1.0, 1, prefill_view(k))) == pytest.approx(L * (20 * h + 24 * kv + 6 * f) / bw)
    sm = StepModel(m, g, ServeSetup(prompt_len=128, output_len=16), k, 4096)
    assert sm.ew_extra_per_prompt_tok == pytest.approx(L * (4 * h + 24 * kv) / bw)
    # engines that fuse these passes (or replay CUDA graphs) carry none
    assert tuple(engine_profile("lmdeploy").knobs(ServingKnobs(), 32).prefill_eager_elementwise_bytes) == (0.0, 0.0, 0.0)


def test_elementwise_bytes_are_overridable_per_coefficient():
    """--engine-opt FIELD.hidden/.kv/.ffn sets one coefficient; the rest of the mapping stays; bad keys/values refused."""
    from sizeup.errors import SizeupError

    prof = engine_profile("lmdeploy-0.1")
    p2 = prof.with_overrides({"prefill_eager_elementwise_bytes.kv": "0"})
    assert dict(p2.prefill_eager_elementwise_bytes) == {"hidden": 20, "kv": 0.0, "ffn": 6}
    assert tuple(p2.knobs(ServingKnobs(), 32).prefill_eager_elementwise_bytes) == (20.0, 0.0, 6.0)
    # a profile without its own prefill mapping starts from the decode one
    p3 = engine_profile("hf-generate").with_overrides({"prefill_eager_elementwise_bytes.ffn": "0"})
    assert dict(p3.prefill_eager_elementwise_bytes) == {"hidden": 108, "kv": 28, "ffn": 0.0}
    for bad in ({"eager_elementwise_bytes.foo": "1"}, {"eager_elementwise_bytes.hidden": "-1"},
                {"eager_elementwise_bytes.hidden": "x"}, {"prefill_eager_elementwise_bytes": "1"}):
        with pytest.raises(SizeupError):
            prof.with_overrides(bad)


# --------------------------------------------------------------------------- CUDA-graph ceiling: eager fallback


def test_graph_ceiling_knobs_hand_count():
    """SGLang v0.4 (server_args: cuda_graph_max_bs 160, 8 below 25 GB): a decode batch above the ceiling runs the
    eager forward, (19 ops per layer + 6 for the two TP all-reduces) x L + 5 at 10 us each; at TP 1 without the
    all-reduce ops. vLLM V1: min(2 x max_num_seqs, 512) = 512 tokens, one host launch per GPU kernel (10 x L + 3)."""
    sg = engine_profile("sglang").for_gpu(H200)
    assert sg.cuda_graph_max_batch == 160
    assert engine_profile("sglang").for_gpu(CAT.gpu("rtx-4090")).cuda_graph_max_batch == 8
    k4 = sg.knobs(ServingKnobs(), 80, tp=4)
    assert k4.graph_max_tokens == 160
    assert k4.eager_fallback_launch_s == pytest.approx(((19 + 6) * 80 + 5) * 1e-5)  # 20.05 ms
    assert sg.knobs(ServingKnobs(), 80, tp=1).eager_fallback_launch_s == pytest.approx((19 * 80 + 5) * 1e-5)
    # SGLang captures decodes only: every prefill is the eager forward
    assert k4.prefill_host_launch_s == pytest.approx(k4.eager_fallback_launch_s)
    assert not k4.prefill_forward_graph and k4.host_launch_s == 0.0
    v = engine_profile("vllm").for_gpu(H200).knobs(ServingKnobs(), 32)
    assert v.graph_max_tokens == 512
    assert v.eager_fallback_launch_s == pytest.approx((10 * 32 + 3) * 1e-5)
    assert engine_profile("tgi").knobs(ServingKnobs(), 32).graph_max_tokens == 32
    assert engine_profile("gpt-fast").knobs(ServingKnobs(), 32).graph_max_tokens == 0


def test_decode_above_the_graph_ceiling_hand_derivation():
    """At B <= ceiling the step is unchanged; at B > ceiling it gains n_k x (2.1 - 1.3) us of stream gaps and
    takes max(GPU part, host launch) + overhead (the host issues the eager forward while the GPU runs it)."""
    base = ServingKnobs(decode_step_overhead_s=1e-3, kernel_boundary_graph_s=1.3e-6, kernel_boundary_stream_s=2.1e-6,
                        forward_kernels=163.0)
    capped = base.with_(graph_max_tokens=16, eager_fallback_launch_s=0.0)
    for b in (1, 8, 16):
        assert float(decode_step_time_s(M1, H200, b, 600, knobs=capped)) == \
            pytest.approx(float(decode_step_time_s(M1, H200, b, 600, knobs=base)))
    t_graph = float(decode_step_time_s(M1, H200, 17, 600, knobs=base))
    assert float(decode_step_time_s(M1, H200, 17, 600, knobs=capped)) == pytest.approx(t_graph + 163 * 0.8e-6)
    slow = capped.with_(eager_fallback_launch_s=0.05)
    assert float(decode_step_time_s(M1, H200, 17, 600, knobs=slow)) == pytest.approx(0.05 + 1e-3)
    # the serving simulator's step model agrees with the closed form on both sides of the ceiling
    sm = StepModel(M1, H200, ServeSetup(prompt_len=512, output_len=64), slow, 4096)
    for b in (16, 17):
        expect = float(decode_step_time_s(M1, H200, b, 600, knobs=slow))
        assert sm.time(b, b, 600.0 * b, 0.0)[0] == pytest.approx(expect, rel=1e-6)
        assert float(sm.decode_run(b, b, np.array([600.0 * b]))[0]) == pytest.approx(expect, rel=1e-6)


def test_graph_ceiling_grows_the_batch_under_load_like_sglang_33483():
    """sglang issue #33483: with decode graphs up to 32 the same offered load settled at a running batch of 67
    (every step eager), with 128 at 23. sglang PR #40346 (RTX 5090, SGLang v0.5.20, Qwen3-0.6B, 128/256 tokens,
    50 req/s, mem fraction 0.28): median TPOT 5.44-5.51 ms with the 48-batch ceiling, 2.64 ms with 128 - a ratio
    of 2.06-2.09. The simulator (profile counted from v0.4's code, nothing fitted to these runs) must show the
    same direction: a larger running batch and a TPOT ratio between 1.3 and 3."""
    from sizeup.catalog.knobs import load_serving_knobs
    from sizeup.core.inference import LengthDist
    from sizeup.core.serving_sim import Scheduler, make_workload, simulate

    model, gpu = CAT.model("qwen3-0.6b"), CAT.gpu("rtx-5090")
    out = {}
    for cap in (48, 128):
        prof = engine_profile("sglang").for_gpu(gpu).with_overrides({"cuda_graph_max_batch": str(cap)})
        k = prof.knobs(load_serving_knobs(CAT), model.num_layers).with_(gpu_memory_utilization=0.28)
        setup = ServeSetup(prompt_len=128, output_len=256)
        wl = make_workload(1000, LengthDist.fixed(128), LengthDist.fixed(256), rate_rps=50.0, seed=1)
        out[cap] = simulate(model, gpu, setup, k, Scheduler.from_engine(prof, k), wl)
    assert out[48].running_mean > 1.3 * out[128].running_mean
    ratio = out[48].pct("tpot", 50) / out[128].pct("tpot", 50)
    assert 1.3 < ratio < 3.0


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 1024), ctx=st.integers(1, 16384), lo=st.integers(0, 1024), hi=st.integers(0, 1024),
       launch=st.floats(0.0, 0.05))
def test_a_higher_graph_ceiling_never_slows_a_step(batch, ctx, lo, hi, launch):
    """Invariant: capturing more batch sizes can only remove eager fallbacks: step(ceiling hi) <= step(ceiling lo)
    for lo <= hi, and no ceiling (0) is the fastest."""
    lo, hi = sorted((lo, hi))
    k = ServingKnobs(decode_step_overhead_s=1e-3, kernel_boundary_graph_s=1.3e-6, kernel_boundary_stream_s=2.1e-6,
                     forward_kernels=163.0, eager_fallback_launch_s=launch)
    t = {c: float(decode_step_time_s(M1, H200, batch, ctx, knobs=k.with_(graph_max_tokens=c))) for c in (lo, hi, 0)}
    if lo > 0:
        assert t[hi] <= t[lo] + 1e-15
    assert t[0] <= min(t[lo], t[hi]) + 1e-15


def test_eager_launch_cost_is_the_timing_catalogs_one_value():
    """Engines whose eager launches are PyTorch ops name timing.yaml's eager_op_dispatch_s instead of repeating it:
    the profile carries that value, so changing it in one place moves every such engine."""
    from sizeup.catalog import DATA_DIR, read_yaml
    from sizeup.catalog.engines import load_engines
    from sizeup.catalog.knobs import load_timing_knobs

    raw = read_yaml(DATA_DIR / "engines.yaml")["engines"]
    named = [k for k, e in raw.items() if e.get("kernel_launch_s") == "eager_op_dispatch_s"]
    assert {"vllm", "sglang", "tgi", "hf-generate"} <= set(named)
    dispatch = load_timing_knobs().eager_op_dispatch_s
    assert all(load_engines()[k].kernel_launch_s == dispatch > 0 for k in named)
