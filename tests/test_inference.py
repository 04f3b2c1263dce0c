"""sizeup.core.inference: KV cache, weights, memory budget, roofline timing, cost and fleet sizing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sizeup.errors import SizeupError
from hypothesis import given, settings, strategies as st

from sizeup.catalog import load_catalog
from sizeup.core.inference import (
    KvDtype, LatencyTargets, LengthDist, ServeSetup, ServingKnobs, Traffic, WeightDtype, decode_step_parts,
    decode_step_time_s, estimate_inference, kv_budget_bytes, kv_bytes_per_sequence, kv_bytes_per_token,
    plan_fleet, prefill_time_s, weight_bits_per_param, weight_bytes, activation_peak_bytes,
)
from sizeup.core.types import GpuSpec, ModelArch

GiB = 2**30


def _curve(mamf: float, peak: float, overhead_s: float = 2e-6):
    # same shape as catalog/data/efficiency.yaml: fraction(F) = mamf*F / (F + overhead*mamf*peak)
    return tuple((f, mamf * f / (f + overhead_s * mamf * peak)) for f in (1e6, 1e8, 1e10, 1e12, 1e14))


H100 = GpuSpec(
    id="h100-test", name="H100 (test)", vendor="NVIDIA", memory_bytes=80e9, hbm_bytes_per_s=3.35e12,
    peak_flops_per_s={"bf16": 989e12, "fp16": 989e12, "fp8": 1979e12}, intra_node_bytes_per_s=450e9,
    intra_node_link="NVLink", node_size=8, inter_node_bytes_per_s=50e9, host_link_bytes_per_s=63e9, tdp_w=700,
    matmul_efficiency=_curve(0.8, 989e12), hbm_efficiency=0.85, collective_efficiency_intra=0.8,
    collective_efficiency_inter=0.75,
)
A100 = GpuSpec(
    id="a100-test", name="A100 (test)", vendor="NVIDIA", memory_bytes=80e9, hbm_bytes_per_s=2.039e12,
    peak_flops_per_s={"bf16": 312e12, "fp16": 312e12}, intra_node_bytes_per_s=300e9,
    intra_node_link="NVLink", node_size=8, inter_node_bytes_per_s=25e9, host_link_bytes_per_s=31e9, tdp_w=400,
    matmul_efficiency=_curve(0.87, 312e12), hbm_efficiency=0.85, collective_efficiency_intra=0.8,
    collective_efficiency_inter=0.75,
)
KNOBS = ServingKnobs()  # code defaults (the yaml values are tested in test_infer_cli)

TINY = ModelArch(id="tiny", name="tiny", vocab_size=100, hidden_size=16, num_layers=2, num_heads=4,
                 num_kv_heads=2, head_dim=4, ffn_size=32, max_seq_len=512)


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


# --------------------------------------------------------------------------- KV cache: exact numbers


def test_kv_tiny_hand_checked():
    # 2 (K and V) * L=2 * k=2 * d=4 * 2 B (fp16) = 64 B/token (PagedAttention paper Sec 2)
    assert kv_bytes_per_token(TINY, KvDtype.FP16) == 64
    assert kv_bytes_per_token(TINY, KvDtype.FP8) == 32
    # 17 tokens in blocks of 16 -> 32 tokens reserved: 32 * 64 B
    assert float(kv_bytes_per_sequence(TINY, 17, KvDtype.FP16, block_size=16)) == 32 * 64
    assert float(kv_bytes_per_sequence(TINY, 17, KvDtype.FP16, block_size=1)) == 17 * 64


def test_kv_llama2_7b(cat):
    # 2 * 32 layers * 32 heads * 128 * 2 B
    assert kv_bytes_per_token(cat.model("llama-2-7b"), KvDtype.FP16) == 524_288


def test_kv_llama3_70b(cat):
    # GQA: 2 * 80 * 8 kv heads * 128 * 2 B
    assert kv_bytes_per_token(cat.model("llama-3-70b"), KvDtype.FP16) == 327_680


def test_kv_deepseek_v3_mla(cat):
    # MLA caches the latent (512) + decoupled RoPE key (64) per layer: (512 + 64) * 61 * 2 B
    assert kv_bytes_per_token(cat.model("deepseek-v3"), KvDtype.BF16) == 70_272


def test_kv_mistral_sliding_window_stops_growing(cat):
    m = cat.model("mistral-7b")
    assert m.sliding_window == 4096
    at_window = float(kv_bytes_per_sequence(m, 4096, KvDtype.BF16))
    assert at_window == 4096 * kv_bytes_per_token(m, KvDtype.BF16)
    assert float(kv_bytes_per_sequence(m, 8192, KvDtype.BF16)) == at_window
    assert float(kv_bytes_per_sequence(m, 32768, KvDtype.BF16)) == at_window
    assert float(kv_bytes_per_sequence(m, 2048, KvDtype.BF16)) < at_window


def test_kv_tp_sharding_and_replication(cat):
    m = cat.model("llama-3-70b")  # 8 KV heads
    full = float(kv_bytes_per_sequence(m, 1000, KvDtype.BF16, tp=1))
    assert float(kv_bytes_per_sequence(m, 1000, KvDtype.BF16, tp=8)) == pytest.approx(full / 8)
    # tp 16 > 8 heads: each rank still holds one whole head (replicated), not half a head
    assert float(kv_bytes_per_sequence(m, 1000, KvDtype.BF16, tp=16)) == pytest.approx(full / 8)
    mla = cat.model("deepseek-v3")
    assert float(kv_bytes_per_sequence(mla, 1000, KvDtype.BF16, tp=8)) == float(kv_bytes_per_sequence(mla, 1000, KvDtype.BF16))


def test_kv_vllm_blog_llama13b(cat):
    # vLLM launch blog: "up to 1.7GB for a single sequence in LLaMA-13B" (2048 tokens, fp16)
    per_seq = float(kv_bytes_per_sequence(cat.model("llama-13b"), 2048, KvDtype.FP16))
    assert per_seq == 2 * 40 * 5120 * 2 * 2048
    assert per_seq / 1e9 == pytest.approx(1.7, rel=0.02)


# --------------------------------------------------------------------------- weights


def test_int4_bits_include_group_scales():
    # AWQ/GPTQ: fp16 scale + fp16 zero per group of 128 -> 4 + 32/128 bits
    assert weight_bits_per_param(WeightDtype.INT4, 128) == 4.25
    assert weight_bits_per_param(WeightDtype.INT4, 64) == 4.5
    assert weight_bits_per_param(WeightDtype.FP8) == 8


def test_weights_llama2_7b(cat):
    m = cat.model("llama-2-7b")
    fp16 = weight_bytes(m, WeightDtype.FP16)
    assert fp16.total_bytes == 2 * 6_738_415_616  # every parameter at 2 B
    int4 = weight_bytes(m, WeightDtype.INT4)
    # linear weights at 4.25 bits, embeddings + head + norms at 16 bits
    assert int4.total_bytes == pytest.approx(int4.quantized_params * 4.25 / 8 + int4.full_precision_params * 2)
    assert int4.full_precision_params == 2 * 32000 * 4096 + 65 * 4096


# --------------------------------------------------------------------------- memory budget


def test_kv_budget_hand_checked(cat):
    m = cat.model("llama-2-7b")
    w = weight_bytes(m, WeightDtype.FP16).total_bytes
    knobs = KNOBS.with_(gpu_memory_utilization=0.9, cuda_graph_bytes=0.5 * GiB, non_torch_bytes=0.25 * GiB)
    act = float(activation_peak_bytes(m, 1, knobs))
    # vLLM's profiling arithmetic: M x util - weights - non-torch - activation peak; the CUDA graphs are captured
    # after the KV cache from the 1 - util headroom, so their 0.5 GiB is not taken from the budget
    expected = 80e9 * 0.9 - w - act - 0.25 * GiB
    assert float(kv_budget_bytes(m, 80e9, 1, 1, w, knobs)) == pytest.approx(expected)
    est = estimate_inference(m, A100, ServeSetup(prompt_len=1000, output_len=24), knobs)
    # 1024 tokens per sequence (64 blocks of 16) x 524,288 B = 0.5 GiB per sequence
    assert est.kv_cache_bytes_per_sequence == 1024 * 524_288
    assert est.max_concurrency == math.floor(expected / (1024 * 524_288))


def test_does_not_fit_is_a_result_not_an_error(cat):
    est = estimate_inference(cat.model("llama-3-70b"), A100, ServeSetup(), KNOBS)
    assert not est.fits and est.reasons
    assert "weights" in est.reasons[0]


def test_batch_over_memory_is_reported(cat):
    est = estimate_inference(cat.model("llama-2-7b"), A100, ServeSetup(prompt_len=2048, output_len=2048, batch=4096), KNOBS)
    assert not est.fits and "batch 4096" in est.reasons[0]


# --------------------------------------------------------------------------- timing


def test_decode_batch1_is_weight_read(cat):
    # batch 1, short context: TPOT ~ W / (BW * eta) + overhead (memory-bound decode, Pope et al. 2022)
    m = cat.model("llama-2-7b")
    knobs = KNOBS.with_(decode_step_overhead_s=0.0)
    est = estimate_inference(m, H100, ServeSetup(prompt_len=8, output_len=8, batch=1), knobs)
    w_read = 2 * 6_738_415_616 - 2 * 32000 * 4096  # the token-embedding table is not streamed
    assert est.decode_step["gemm"] == pytest.approx(w_read / (3.35e12 * 0.85))
    assert est.decode_bound == "memory"
    assert est.tpot_s == pytest.approx(est.decode_step["gemm"] + est.decode_step["attention"], rel=1e-9)


def test_prefill_is_compute_bound_for_long_prompts(cat):
    m = cat.model("llama-2-7b")
    t = float(prefill_time_s(m, H100, 4096, 1, 1, 1, WeightDtype.BF16, KNOBS))
    flops_lower = 2 * 6.5e9 * 4096
    assert t > flops_lower / 989e12  # cannot beat peak
    assert t < 3 * flops_lower / (0.8 * 989e12)


def test_prefill_parts_hand_derived_and_in_model_fraction(cat):
    """A long prompt on the test H100: compute = FLOPs / (peak * eta_mm(GEMM) * in-model fraction), FLOPs counted by
    hand (Kaplan et al. 2020: 2N per token + causal attention 2*L*s^2/2*a*(d_qk+d_v) + the last token's logits)."""
    from sizeup.core.inference import matmul_efficiency, prefill_parts

    m = cat.model("llama-2-7b")
    s = 4096
    body = 6_738_415_616 - 2 * 32000 * 4096  # matmul params minus embeddings and lm_head
    flops = 2 * body * s + 2 * 32000 * 4096 + 2 * 32 * (s * s / 2) * 32 * (128 + 128)
    eta = float(matmul_efficiency(H100, 2.0 * s * 4096 * 11008))
    for frac in (1.0, 0.8):
        parts = prefill_parts(m, H100, s, 1, 1, 1, WeightDtype.BF16, KNOBS.with_(matmul_model_fraction=frac))
        assert float(parts["flops"]) == pytest.approx(flops, rel=1e-9)
        assert float(parts["compute"]) == pytest.approx(flops / (989e12 * eta * frac), rel=1e-9)
        assert float(parts["eta_mm"]) == pytest.approx(eta * frac, rel=1e-9)
        assert float(parts["total"]) == pytest.approx(float(parts["compute"]), rel=1e-9)  # no TP, fused, no launch
    # decode at batch 1 stays a weight read: the fraction does not touch a memory-bound step
    d1 = decode_step_parts(m, H100, 1, 512, 1, 1, WeightDtype.BF16, KvDtype.BF16, KNOBS)
    d2 = decode_step_parts(m, H100, 1, 512, 1, 1, WeightDtype.BF16, KvDtype.BF16,
                           KNOBS.with_(matmul_model_fraction=0.8))
    assert float(d2["gemm"]) == pytest.approx(float(d1["gemm"]), rel=1e-12)


def test_serving_knobs_take_the_calibrations_in_model_gemm_fraction(monkeypatch):
    """The loaders give serving the active calibration's matmul_training_fraction; --no-calibration -> 1.0."""
    from sizeup import calib
    from sizeup.catalog.knobs import load_timing_knobs
    from sizeup.catalog.knobs import load_serving_knobs

    packaged = load_timing_knobs().matmul_training_fraction
    assert load_serving_knobs().matmul_model_fraction == pytest.approx(packaged)
    assert "matmul_training_fraction" in load_serving_knobs().sources["matmul_model_fraction"]
    with calib.using("off"):
        assert load_serving_knobs().matmul_model_fraction == 1.0


def test_tp_adds_allreduce(cat):
    m = cat.model("llama-2-7b")
    one = decode_step_parts(m, H100, 64, 1000, 1, 1, knobs=KNOBS)
    two = decode_step_parts(m, H100, 64, 1000, 2, 1, knobs=KNOBS)
    assert float(one["comm"]) == 0.0
    # 2 all-reduces per layer of S = B*h*2 = 512 KiB over t=2 NVLink GPUs, NCCL ring cost model
    # (nccl src/graph/tuning.cc): busbw = 450e9*0.8 = 360 GB/s, 2(t-1)/t*S = S = 524,288 B on the wire
    #   LL     6.6 + 2*0.6 us + S/min(87.7e9, 360e9/4 = 90e9)  = 7.8 + 5.978 = 13.78 us   <- fastest
    #   LL128 14.0 + 2*1.9 us + S/(0.92*360e9)                 = 17.8 + 1.583 = 19.38 us
    #   Simple 8.4 + 2*3.4 us + S/360e9                        = 15.2 + 1.456 = 16.66 us
    payload = 64 * 4096 * 2
    ll = 7.8e-6 + payload / 87.7e9
    assert float(two["comm"]) == pytest.approx(2 * 32 * ll)
    assert float(two["gemm"]) < float(one["gemm"])


def test_allreduce_protocol_regimes():
    # NCCL ring all-reduce cost model (nccl src/graph/tuning.cc): LL for small messages (least latency),
    # LL128 for medium, Simple (full bus bandwidth) for large; hand-checked on H100-test at t = 4:
    # busbw 360 GB/s, wire = 2*3/4*S = 1.5 S; latencies LL 6.6+6*0.6 = 10.2 us, LL128 14+6*1.9 = 25.4 us,
    # Simple 8.4+6*3.4 = 28.8 us
    from sizeup.core.inference import _allreduce_s, allreduce_protocol_times

    small = allreduce_protocol_times(H100, 16384, 4, KNOBS)   # Llama-2-70B, B=1: 8192*2 B
    assert float(small["LL"]) == pytest.approx(10.2e-6 + 1.5 * 16384 / 87.7e9)
    assert float(_allreduce_s(H100, 16384, 4, KNOBS)) == pytest.approx(float(small["LL"]))
    big = allreduce_protocol_times(H100, 64e6, 4, KNOBS)
    assert float(big["Simple"]) == pytest.approx(28.8e-6 + 1.5 * 64e6 / 360e9)
    assert min(big, key=lambda k: float(big[k])) == "Simple"
    mid = allreduce_protocol_times(H100, 4e6, 4, KNOBS)
    assert min(mid, key=lambda k: float(mid[k])) == "LL128"
    # never below the fixed latency of the cheapest protocol, never negative, 0 without TP
    assert float(_allreduce_s(H100, 1.0, 4, KNOBS)) > 10e-6
    assert float(_allreduce_s(H100, 1e6, 1, KNOBS)) == 0.0
    # vectorised over tp and payload, like the rest of the kernels
    vec = _allreduce_s(H100, np.array([16384, 1e6, 64e6]), np.array([1, 4, 8]), KNOBS)
    assert vec.shape == (3,) and float(vec[0]) == 0.0 and np.all(np.diff(vec) > 0)


def test_allreduce_pcie_has_no_ll128():
    # LL128 is enabled by NCCL on NVLink only; a PCIe-only box uses LL/Simple with PCI hop latencies (1.0/5.7 us)
    from dataclasses import replace as dc_replace

    from sizeup.core.inference import allreduce_protocol_times, link_class

    pcie = dc_replace(A100, intra_node_link="PCIe Gen4", intra_node_bytes_per_s=32e9)
    assert link_class(pcie) == "pcie" and link_class(A100) == "nvlink"
    times = allreduce_protocol_times(pcie, 16384, 2, KNOBS)
    assert set(times) == {"LL", "Simple"}
    # LL at t=2: 6.6 + 2*1.0 us + S / (32e9*0.8/4 = 6.4e9)
    assert float(times["LL"]) == pytest.approx(8.6e-6 + 16384 / 6.4e9)


def test_yaml_allreduce_protocols_match_code_defaults():
    # catalog/data/inference.yaml carries the NCCL numbers with their quote; the code defaults are the same
    from sizeup.core.inference import NCCL_RING_PROTOCOLS
    from sizeup.catalog.knobs import load_serving_knobs

    yaml_protocols = load_serving_knobs().allreduce_protocols
    for link, protos in NCCL_RING_PROTOCOLS.items():
        assert set(yaml_protocols[link]) == set(protos)
        for name, values in protos.items():
            assert [float(v) for v in yaml_protocols[link][name]] == pytest.approx(list(values))


def test_kernels_accept_arrays(cat):
    m = cat.model("llama-3-70b")
    batch = np.array([1, 8, 64, 256])
    tp = np.array([8, 4, 4, 8])
    vec = decode_step_time_s(m, H100, batch, 2048, tp, 1, knobs=KNOBS)
    for i in range(4):
        assert float(vec[i]) == pytest.approx(float(decode_step_time_s(m, H100, int(batch[i]), 2048, int(tp[i]), 1, knobs=KNOBS)))
    assert np.shape(kv_bytes_per_sequence(m, np.array([10, 100]), KvDtype.BF16, tp=np.array([1, 2]))) == (2,)
    s = np.array([128, 2048, 8192])
    pre = prefill_time_s(m, H100, s, 4, np.array([8, 4, 2]), 1, knobs=KNOBS)
    assert float(pre[1]) == pytest.approx(float(prefill_time_s(m, H100, 2048, 4, 4, 1, knobs=KNOBS)))
    w = weight_bytes(m, WeightDtype.BF16).total_bytes
    budget = kv_budget_bytes(m, np.array([80e9, 141e9]), np.array([8, 4]), 1, w, KNOBS)
    assert float(budget[1]) == pytest.approx(float(kv_budget_bytes(m, 141e9, 4, 1, w, KNOBS)))


def test_moe_decode_reads_only_touched_experts(cat):
    m = cat.model("mixtral-8x7b")  # 8 experts, 2 per token
    one = decode_step_parts(m, H100, 1, 100, 2, 1, knobs=KNOBS)
    many = decode_step_parts(m, H100, 512, 100, 2, 1, knobs=KNOBS)
    # batch 1 touches 2 of 8 experts; batch 512 touches (almost) all 8
    assert float(one["gemm_memory"]) < 0.5 * float(many["gemm_memory"])


def test_static_vs_continuous_and_compute_bound_batch(cat):
    m = cat.model("llama-2-7b")
    est = estimate_inference(m, A100, ServeSetup(prompt_len=128, output_len=128, batch=64, static=True), KNOBS)
    assert est.batching == "static"
    # static: B*n / (prefill(B*s) + n*step)
    prefill = float(prefill_time_s(m, A100, 128, 64, 1, 1, WeightDtype.BF16, KNOBS))
    assert est.output_tokens_per_s == pytest.approx(64 * 128 / (prefill + 128 * est.tpot_s))
    assert est.ttft_s == pytest.approx(prefill)
    assert est.compute_bound_batch is not None and 16 < est.compute_bound_batch < 1024


# --------------------------------------------------------------------------- cost


def test_cost_hand_checked(cat):
    m = cat.model("llama-2-7b")
    est = estimate_inference(m, A100, ServeSetup(batch=32), KNOBS, price_usd_per_gpu_hour=2.0, utilization=0.5)
    # $/1M output = price/3600/util * (step/B) * 1e6
    assert est.usd_per_1m_output_tokens == pytest.approx(2.0 / 3600 / 0.5 * est.tpot_s / 32 * 1e6)
    assert est.usd_per_1m_input_tokens > 0
    assert est.usd_per_hour == 2.0


# --------------------------------------------------------------------------- fleet


def test_length_dist_mean():
    assert LengthDist.fixed(512).mean == 512
    d = LengthDist(512, 2048)
    sigma = math.log(4) / 1.6449
    assert d.mean == pytest.approx(512 * math.exp(sigma**2 / 2))


@settings(max_examples=200, deadline=None)
@given(p50=st.floats(1.0, 1e5), ratio=st.floats(1.0, 3.5))
def test_length_dist_from_mean_inverts_the_log_normal_mean(p50, ratio):
    """from_mean(mean, p95) returns the log-normal whose mean is `mean` and whose p95 is `p95` (sigma <= 1.645, the
    branch on which p95/mean grows with sigma): round trip through LengthDist.mean."""
    d = LengthDist(p50, p50 * ratio)
    back = LengthDist.from_mean(d.mean, d.p95)
    assert back.p95 == d.p95
    assert back.p50 == pytest.approx(d.p50, rel=1e-9)
    assert back.mean == pytest.approx(d.mean, rel=1e-9)


def test_length_dist_from_mean_refuses_what_no_log_normal_gives():
    with pytest.raises(SizeupError, match="3.87"):
        LengthDist.from_mean(100.0, 400.0)
    with pytest.raises(SizeupError, match=">= its mean"):
        LengthDist.from_mean(100.0, 90.0)
    assert LengthDist.from_mean(100.0, 100.0) == LengthDist.fixed(100.0)


def test_fleet_plan(cat):
    m = cat.model("llama-3-8b")
    traffic = Traffic(5.0, LengthDist.fixed(512), LengthDist.fixed(256))
    plan = plan_fleet(m, [(H100, 3.0), (A100, 1.8)], traffic, LatencyTargets(ttft_p95_s=2.0, tpot_p95_s=0.05), knobs=KNOBS)
    assert plan.best is not None
    assert plan.best.tpot_p95_s <= 0.05 and plan.best.ttft_p95_s <= 2.0
    assert plan.best.usd_per_month == pytest.approx(plan.best.gpus * plan.best.price_usd_per_gpu_hour * 730)
    busier = plan_fleet(m, [(H100, 3.0)], Traffic(500.0, traffic.prompt_len, traffic.output_len),
                        LatencyTargets(tpot_p95_s=0.05), knobs=KNOBS)
    assert busier.best.replicas > 1
    impossible = plan_fleet(m, [(A100, 1.8)], traffic, LatencyTargets(tpot_p95_s=0.001), knobs=KNOBS)
    assert impossible.best is None
    assert all("latency" in o.binding or "memory" in o.binding for o in impossible.options)


def test_fleet_binding_memory_for_big_model(cat):
    m = cat.model("llama-3-70b")
    plan = plan_fleet(m, [(A100, 1.8)], Traffic(1.0, LengthDist.fixed(512), LengthDist.fixed(128)),
                      LatencyTargets(), knobs=KNOBS, tp_choices=(1,))
    assert plan.best is None and plan.options[0].binding == "memory"


# --------------------------------------------------------------------------- properties

models = st.sampled_from(["llama-2-7b", "llama-3-8b", "mistral-7b", "llama-3-70b", "deepseek-v3", "mixtral-8x7b"])


@settings(max_examples=40, deadline=None)
@given(name=models, batch=st.integers(1, 512), c1=st.integers(1, 30000), c2=st.integers(1, 30000),
       tp=st.sampled_from([1, 2, 8]))
def test_tpot_never_falls_when_context_grows(cat, name, batch, c1, c2, tp):
    m = cat.model(name)
    lo, hi = sorted((c1, c2))
    t_lo = float(decode_step_time_s(m, H100, batch, lo, tp, knobs=KNOBS))
    t_hi = float(decode_step_time_s(m, H100, batch, hi, tp, knobs=KNOBS))
    assert t_hi >= t_lo


@settings(max_examples=40, deadline=None)
@given(name=models, s1=st.integers(1, 16000), s2=st.integers(1, 16000), n=st.integers(1, 2000))
def test_max_concurrency_never_rises_with_context(cat, name, s1, s2, n):
    m = cat.model(name)
    lo, hi = sorted((s1, s2))
    a = estimate_inference(m, H100, ServeSetup(tp=8, prompt_len=lo, output_len=n), KNOBS)
    b = estimate_inference(m, H100, ServeSetup(tp=8, prompt_len=hi, output_len=n), KNOBS)
    assert b.max_concurrency <= a.max_concurrency


@settings(max_examples=40, deadline=None)
@given(layers=st.integers(1, 80), heads=st.sampled_from([8, 16, 32, 64]), kv=st.sampled_from([1, 2, 4, 8]),
       hd=st.sampled_from([64, 128]), ffn=st.integers(64, 30000), vocab=st.integers(100, 200000),
       group=st.sampled_from([32, 64, 128]))
def test_int4_smaller_than_fp8_smaller_than_fp16(layers, heads, kv, hd, ffn, vocab, group):
    m = ModelArch(id="r", name="r", vocab_size=vocab, hidden_size=heads * hd, num_layers=layers, num_heads=heads,
                  num_kv_heads=kv, head_dim=hd, ffn_size=ffn)
    w4 = weight_bytes(m, WeightDtype.INT4, group).total_bytes
    w8 = weight_bytes(m, WeightDtype.FP8).total_bytes
    w16 = weight_bytes(m, WeightDtype.FP16).total_bytes
    assert w4 < w8 < w16


@settings(max_examples=30, deadline=None)
@given(u1=st.floats(0.05, 1.0), u2=st.floats(0.05, 1.0), batch=st.integers(1, 256))
def test_cost_per_token_falls_as_utilisation_rises(cat, u1, u2, batch):
    m = cat.model("llama-3-8b")
    lo, hi = sorted((u1, u2))
    a = estimate_inference(m, H100, ServeSetup(batch=batch), KNOBS, price_usd_per_gpu_hour=3.0, utilization=lo)
    b = estimate_inference(m, H100, ServeSetup(batch=batch), KNOBS, price_usd_per_gpu_hour=3.0, utilization=hi)
    assert b.usd_per_1m_output_tokens <= a.usd_per_1m_output_tokens
    assert b.usd_per_1m_input_tokens <= a.usd_per_1m_input_tokens


def test_knobs_from_yaml_dict():
    k = ServingKnobs.from_dict({"gpu_memory_utilization": {"value": 0.8, "source": "x"},
                                "cuda_graph_bytes": {"value": 1, "unit": "GiB", "source": "y"}})
    assert k.gpu_memory_utilization == 0.8 and k.cuda_graph_bytes == GiB and k.sources["cuda_graph_bytes"] == "y"


# --------------------------------------------------------------------------- published points (category D)


def _point(**over):
    base = {
        "id": "t", "category": "D", "quote": "", "notes": None,
        "model": {"name": "Llama 2 7B", "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 32, "ffn": 11008,
                  "vocab": 32000, "seq_len": 256},
        "hardware": {"gpu": "A100-80GB-SXM", "count": 1},
        "parallel": {"tp": 1, "precision": "FP16", "other": "static batch (gptSessionBenchmark)"},
        "workload": {"kind": "inference throughput", "batch_size": 384, "input_len": 128, "output_len": 128},
        "measured": [{"quantity": "output_throughput", "value": 5586, "unit": "output tokens/s"}],
    }
    base.update(over)
    return base


def test_predict_point_static_batch(cat):
    from sizeup.validate.inference_points import predict_inference_point

    (q, value, how), = predict_inference_point(_point(), cat)
    assert q == "output_throughput" and "static" in how and "bf16" in how
    assert value == pytest.approx(5586, rel=0.2)  # TensorRT-LLM v0.6.1 A100 table, 5,586 tok/s


def test_predict_point_kv_size(cat):
    from sizeup.validate.inference_points import predict_inference_point

    point = _point(model={"name": "LLaMA-13B", "layers": 40, "hidden": 5120, "heads": 40, "kv_heads": 40,
                          "seq_len": 2048},
                   hardware={}, parallel={"precision": "fp16 KV cache"}, workload={"batch_size": 1},
                   measured=[{"quantity": "kv_cache_per_sequence", "value": 1.7, "unit": "GB"}])
    (q, value, _), = predict_inference_point(point, cat)
    assert value == pytest.approx(2 * 40 * 5120 * 2 * 2048 / 1e9)


@pytest.mark.parametrize("over, reason", [
    ({"workload": {"batch_size": 100}}, "lengths"),
    ({"hardware": {"gpu": "Apple M2 (16GB unified)"}}, "not in the catalog"),
    ({"parallel": {"tp": 2, "precision": "FP16"},
      "measured": [{"quantity": "output_throughput", "value": 1, "unit": "output tokens/s",
                    "notes": "per-GPU vs total is ambiguous"}]}, "per GPU"),
    ({"measured": [{"quantity": "mfu", "value": 0.4, "unit": "%"}]}, "not an inference figure"),
])
def test_predict_point_skips_with_reason(cat, over, reason):
    from sizeup.validate.inference_points import Skip, predict_inference_point

    with pytest.raises(Skip, match=reason):
        predict_inference_point(_point(**over), cat)


def test_dev_set_inference_median_error(cat):
    """Regression guard: median |error| on the packaged dev set's category-D points stays <= 20 %."""
    import statistics

    from sizeup.validate.inference_points import Skip, predict_inference_point
    from sizeup.validate.points import DEV_SET
    from sizeup.catalog import read_yaml

    errors = []
    for p in read_yaml(DEV_SET)["points"]:
        if p["category"] != "D":
            continue
        try:
            preds = predict_inference_point(p, cat)
        except Skip:
            continue
        measured = {m["quantity"]: m["value"] for m in p["measured"]}
        errors += [abs(v - measured[q]) / measured[q] for q, v, _ in preds]
    assert len(errors) >= 20
    assert statistics.median(errors) <= 0.20


def test_fleet_p50_targets_tighten(cat):
    m = cat.model("llama-3-8b")
    traffic = Traffic(50.0, LengthDist(256, 2048), LengthDist(128, 512))
    loose = plan_fleet(m, [(H100, 3.0)], traffic, LatencyTargets(tpot_p95_s=0.08), knobs=KNOBS, tp_choices=(1,))
    tight = plan_fleet(m, [(H100, 3.0)], traffic, LatencyTargets(tpot_p95_s=0.08, tpot_p50_s=0.009), knobs=KNOBS,
                       tp_choices=(1,))
    assert tight.options[0].concurrency_per_replica < loose.options[0].concurrency_per_replica
    assert tight.options[0].feasible and tight.options[0].binding == "latency (tpot)"


def test_predict_point_request_rate_and_latency_units(cat):
    from sizeup.validate.inference_points import predict_inference_point

    def point(rate):
        return _point(parallel={"tp": 1, "precision": "bf16"},
                      workload={"request_rate": rate, "input_len": 512, "output_len": 128},
                      measured=[{"quantity": "mean_tpot", "value": 20, "unit": "ms"},
                                {"quantity": "time_to_first_token", "value": 0.1, "unit": "s"},
                                {"quantity": "request_throughput", "value": 1, "unit": "requests/s"}])

    low = {q: v for q, v, _ in predict_inference_point(point(0.5), cat)}
    high = {q: v for q, v, _ in predict_inference_point(point(20), cat)}
    # light traffic: small steady concurrency -> faster tokens; the replica completes what it is sent
    assert low["mean_tpot"] < high["mean_tpot"]
    assert low["request_throughput"] == pytest.approx(0.5)
    assert 1.0 < low["mean_tpot"] < 100.0  # milliseconds
    assert high["request_throughput"] <= 20 + 1e-9


def test_kernel_boundaries_charge_a_launch_gap_per_kernel_of_the_forward():
    """Hand derivation: a forward of n kernels loses n x t_b of GPU time at its kernel boundaries (Hazy Research,
    'Look Ma, No Bubbles!' 2025, H100: ~1.3 us per kernel replayed in a CUDA graph, ~2.1 us launched from a stream).
    Counts from the engines' model code: vLLM llama.py 10 kernels per layer + 3 -> Llama-3-8B (32 layers) 323
    kernels x 1.3 us = 419.9 us; TurboMind v0.1 9 per layer + 3 -> 291 kernels x 2.1 us = 611.1 us."""
    from sizeup.catalog.engines import engine_profile
    from sizeup.core.inference import prefill_parts
    from sizeup.catalog.knobs import load_serving_knobs

    base = load_serving_knobs()
    assert base.kernel_boundary_graph_s == pytest.approx(1.3e-6)
    assert base.kernel_boundary_stream_s == pytest.approx(2.1e-6)
    m = load_catalog().model("llama-3-8b")
    assert m.num_layers == 32
    vk = engine_profile("vllm").knobs(base, m.num_layers)
    assert vk.forward_kernels == 323 and vk.forward_kernels_graph
    off = vk.with_(forward_kernels=0.0)
    for b, ctx in ((1, 100), (64, 2000)):
        gap = decode_step_time_s(m, H100, b, ctx, knobs=vk) - decode_step_time_s(m, H100, b, ctx, knobs=off)
        assert gap == pytest.approx(419.9e-6, rel=1e-9)  # independent of the batch and the context
    assert float(prefill_parts(m, H100, 512, 1, knobs=vk)["total"]) - float(
        prefill_parts(m, H100, 512, 1, knobs=off)["total"]) == pytest.approx(419.9e-6, rel=1e-9)
    lk = engine_profile("lmdeploy-0.1").knobs(base, m.num_layers)
    assert lk.forward_kernels == 291 and not lk.forward_kernels_graph
    assert float(decode_step_parts(m, A100, 16, 1000, knobs=lk)["kernels"]) == pytest.approx(611.1e-6, rel=1e-9)
    # an eager forward whose host launch time exceeds its GPU time hides the gaps (the GPU waits for the host)
    hk = engine_profile("hf-generate").knobs(base, m.num_layers)
    assert hk.host_launch_s > float(decode_step_parts(m, H100, 1, 100, knobs=hk)["gemm"]) + 1351 * 2.1e-6
    assert decode_step_time_s(m, H100, 1, 100, knobs=hk) == pytest.approx(
        decode_step_time_s(m, H100, 1, 100, knobs=hk.with_(forward_kernels=0.0)), rel=1e-12)
    # the generic engine counts no kernels: no gap
    assert float(decode_step_parts(m, H100, 1, 100, knobs=base)["kernels"]) == 0.0
