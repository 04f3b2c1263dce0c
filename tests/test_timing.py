"""Step-time model: roofline parts, invariants (hypothesis), array kernel == scalar API, seed 003's bound."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sizeup.core.estimate import estimate_training
from sizeup.core.timing import (
    SHARDING_CODE, TimingKnobs, estimate_step, kernel_args, matmul_eff, step_kernel,
)
from sizeup.core.types import (
    Attention, GpuSpec, MlpKind, ModelArch, NormKind, PositionKind, Precision, Recompute, Sharding, TrainSetup,
)
from sizeup.core.workload import Workload, resolve_batch
from sizeup.errors import SizeupError
from sizeup.scenario import load_timing_knobs


def _curve(mamf, peak):
    return tuple((f, mamf * f / (f + 2e-6 * mamf * peak)) for f in (1e6, 1e8, 1e10, 1e12, 1e14))


H100 = GpuSpec(id="h100-sxm", name="H100", vendor="NVIDIA", memory_bytes=80e9, hbm_bytes_per_s=3.35e12,
               peak_flops_per_s={"bf16": 989e12, "fp16": 989e12, "fp8": 1979e12, "tf32": 494e12, "fp32": 67e12},
               intra_node_bytes_per_s=450e9, intra_node_link="NVLink", node_size=8, inter_node_bytes_per_s=50e9,
               host_link_bytes_per_s=63e9, tdp_w=700, matmul_efficiency=_curve(0.8, 989e12), hbm_efficiency=0.9,
               collective_efficiency_intra=0.82, collective_efficiency_inter=0.74)
LLAMA7B = ModelArch(id="llama-2-7b", name="Llama 2 7B", vocab_size=32000, hidden_size=4096, num_layers=32,
                    num_heads=32, num_kv_heads=32, head_dim=128, ffn_size=11008, max_seq_len=4096)
LLAMA70B = ModelArch(id="llama-2-70b", name="Llama 2 70B", vocab_size=32000, hidden_size=8192, num_layers=80,
                     num_heads=64, num_kv_heads=8, head_dim=128, ffn_size=28672, max_seq_len=4096)
KNOBS = load_timing_knobs()


def test_breakdown_adds_up_to_step_time():
    setup = TrainSetup(gpus=64, tp=8, pp=2, micro_batch=1, grad_accum=16, seq_len=4096,
                       sharding=Sharding.MEGATRON_DISTOPT, recompute=Recompute.FULL, sequence_parallel=True)
    est = estimate_step(LLAMA70B, setup, H100, KNOBS)
    assert sum(est.breakdown.values()) == pytest.approx(est.step_time_s, rel=1e-9)
    assert est.tokens_per_s * est.step_time_s == pytest.approx(setup.tokens_per_step)
    assert 0 < est.mfu <= est.hfu <= 1


def test_single_gemm_roofline_by_hand():
    # one GEMM far above the ridge: t = F / (peak * eta(F)); eta from the curve (log-interpolated) x training fraction
    knobs = TimingKnobs(matmul_training_fraction=1.0)
    mi, g, plan = kernel_args(LLAMA7B, TrainSetup(), H100, knobs)
    f = 1e12
    assert float(matmul_eff(g, f)) == pytest.approx(0.8 * f / (f + 2e-6 * 0.8 * 989e12), rel=1e-9)
    # below the ridge the HBM term wins: a GEMV-like 2*M*k*n with M=1 moves the whole weight
    from sizeup.core.timing import _gemm_time

    t, tc, tm = _gemm_time(g, 2 * 4096 * 4096, 2 * 4096 * 4096 * 1.0)
    assert t == tm > tc


def test_pipeline_bubble_formula():
    # Narayanan 2021 §2.2: bubble = (p-1)/(m*v) of the ideal time
    s1 = TrainSetup(gpus=4, pp=4, micro_batch=1, grad_accum=8, seq_len=2048)
    est = estimate_step(LLAMA7B, s1, H100, KNOBS)
    mb_time = (est.step_time_s - est.breakdown["pipeline_bubble"] - est.breakdown["comm/data_parallel_exposed"]
               - est.breakdown["optimizer_step"]) / 8
    assert est.breakdown["pipeline_bubble"] == pytest.approx(mb_time * 3, rel=1e-6)
    inter = estimate_step(LLAMA7B, s1.with_(virtual_pp=2), H100, KNOBS)
    assert inter.breakdown["pipeline_bubble"] == pytest.approx(est.breakdown["pipeline_bubble"] / 2, rel=1e-6)


def test_array_kernel_matches_scalar_api():
    setup = TrainSetup(gpus=8, micro_batch=2, grad_accum=4, seq_len=2048, sharding=Sharding.FSDP_FULL)
    mi, g, plan = kernel_args(LLAMA7B, setup, H100, KNOBS)
    n = 5
    arr_plan = dict(plan)
    for key in ("tp", "pp", "dp", "cp", "ep", "micro_batch", "grad_accum", "seq_len", "sharding_code", "recompute_code"):
        arr_plan[key] = np.full(n, plan[key])
    arr_plan["micro_batch"] = np.array([1, 2, 4, 2, 2])
    arr_plan["sharding_code"] = np.array([0, 3, 3, 1, 2])
    out = step_kernel(mi, g, KNOBS, **arr_plan)
    assert out["step_time_s"].shape == (n,)
    for i, (mb, code) in enumerate(zip([1, 2, 4, 2, 2], [0, 3, 3, 1, 2])):
        sharding = {0: Sharding.NONE, 3: Sharding.FSDP_FULL, 1: Sharding.ZERO1, 2: Sharding.ZERO2}[code]
        one = estimate_step(LLAMA7B, setup.with_(micro_batch=mb, sharding=sharding), H100, KNOBS)
        assert out["step_time_s"][i] == pytest.approx(one.step_time_s, rel=1e-9)
    assert SHARDING_CODE[Sharding.FSDP_FULL] == 3


def test_seed003_is_compute_bound():
    # seed 003: 70B, 512k global tokens/step on H100 -- the seed's own numbers say compute-bound by ~200x
    setup = TrainSetup(gpus=128, tp=8, pp=2, micro_batch=1, grad_accum=16, seq_len=4096,
                       sharding=Sharding.MEGATRON_DISTOPT, recompute=Recompute.SELECTIVE, sequence_parallel=True)
    assert setup.tokens_per_step == 524288
    est = estimate_step(LLAMA70B, setup, H100, KNOBS)
    assert est.bound == "compute"
    assert est.compute_memory_ratio > 10  # GEMM/attention time >> HBM-bound op time
    assert any(t.name == "bound" for t in est.terms)


def test_network_bound_when_dp_over_slow_links():
    # DDP over 64 nodes on 1 GB/s NICs with a tiny batch: the gradient all-reduce dominates
    slow = H100.__class__(**{**H100.__dict__, "inter_node_bytes_per_s": 1e9})
    setup = TrainSetup(gpus=512, micro_batch=1, grad_accum=1, seq_len=512)
    est = estimate_step(LLAMA7B, setup, slow, KNOBS)
    assert est.bound == "network"


def test_fp8_faster_than_bf16_and_fp32_slowest():
    setup = TrainSetup(gpus=8, micro_batch=4, grad_accum=4, seq_len=2048, sharding=Sharding.ZERO1)
    t = {p: estimate_step(LLAMA7B, setup.with_(precision=p), H100, KNOBS).step_time_s
         for p in (Precision.FP8, Precision.BF16_MIXED, Precision.FP32)}
    assert t[Precision.FP8] < t[Precision.BF16_MIXED] < t[Precision.FP32]


def test_eager_attention_and_kernels_are_slower():
    setup = TrainSetup(gpus=1, micro_batch=1, seq_len=4096)
    flash = estimate_step(LLAMA7B, setup, H100, KNOBS)
    math = estimate_step(LLAMA7B, setup.with_(attention=Attention.MATH), H100, KNOBS)
    eager = estimate_step(LLAMA7B, setup, H100, KNOBS, kernel="hf-eager")
    te = estimate_step(LLAMA7B, setup, H100, KNOBS, kernel="te")  # cuDNN/FA3-class attention on Hopper
    assert math.step_time_s > flash.step_time_s
    assert eager.step_time_s > flash.step_time_s > te.step_time_s


def test_training_time_and_gpu_hours():
    setup = TrainSetup(gpus=8, micro_batch=2, grad_accum=8, seq_len=4096)
    est = estimate_training(LLAMA7B, setup, H100, Workload(tokens=1e9), KNOBS, with_memory=False)
    assert est.steps == -(-1e9 // setup.tokens_per_step)
    assert est.total_time_s == pytest.approx(est.steps * est.step.step_time_s)
    assert est.gpu_hours == pytest.approx(est.total_time_s * 8 / 3600)
    # tokens/s x time = tokens (to within the last partial step)
    assert est.step.tokens_per_s * est.total_time_s == pytest.approx(est.steps * setup.tokens_per_step)


def test_workload_and_batch_consistency():
    assert Workload(samples=10_000, tokens_per_sample=500, epochs=3).total_tokens == 15e6
    assert resolve_batch(8, micro_batch=2, global_batch=64).grad_accum == 4
    with pytest.raises(SizeupError, match="inconsistent batch"):
        resolve_batch(8, micro_batch=2, global_batch=20)
    with pytest.raises(SizeupError, match="inconsistent batch"):
        resolve_batch(8, micro_batch=2, global_batch=64, grad_accum=2)
    with pytest.raises(SizeupError):
        Workload(samples=10)


# ------------------------------------------------------------------ invariants

plans = st.fixed_dictionaries({
    "tp": st.sampled_from([1, 2, 4, 8]), "pp": st.sampled_from([1, 2, 4]), "dp": st.sampled_from([1, 2, 4, 16, 64]),
    "mb": st.sampled_from([1, 2, 4]), "ga": st.sampled_from([1, 2, 8]), "seq": st.sampled_from([512, 2048, 8192]),
    "zero": st.sampled_from(list(Sharding)), "rc": st.sampled_from(list(Recompute)),
    "prec": st.sampled_from([Precision.BF16_MIXED, Precision.FP8, Precision.FP32]),
})


def _setup(p, **over):
    d = dict(gpus=p["tp"] * p["pp"] * p["dp"], tp=p["tp"], pp=p["pp"], micro_batch=p["mb"], grad_accum=p["ga"],
             seq_len=p["seq"], sharding=p["zero"], recompute=p["rc"], precision=p["prec"], sequence_parallel=p["tp"] > 1)
    d.update(over)
    return TrainSetup(**d)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans)
def test_mfu_at_most_one_and_finite(p):
    est = estimate_step(LLAMA7B, _setup(p), H100, KNOBS)
    assert 0 < est.mfu <= est.hfu <= 1.0
    assert np.isfinite(est.step_time_s) and est.step_time_s > 0
    assert est.bound in ("compute", "memory", "network")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans)
def test_recompute_never_faster(p):
    times = [estimate_step(LLAMA7B, _setup(p, recompute=r), H100, KNOBS).step_time_s
             for r in (Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL)]
    assert times[0] <= times[1] * (1 + 1e-12) and times[1] <= times[2] * (1 + 1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans)
def test_more_gpus_never_slow_the_compute_part(p):
    # same global batch on 2x the data-parallel GPUs: each GPU computes half the micro-batches
    if p["ga"] % 2:
        p = dict(p, ga=p["ga"] * 2)
    a = estimate_step(LLAMA7B, _setup(p), H100, KNOBS)
    b = estimate_step(LLAMA7B, _setup(dict(p, dp=p["dp"] * 2, ga=p["ga"] // 2)), H100, KNOBS)
    compute = ("compute/gemm", "compute/attention", "compute/elementwise", "compute/logits_loss")
    assert sum(b.breakdown[k] for k in compute) <= sum(a.breakdown[k] for k in compute) * (1 + 1e-9)


GPT2XL_HF = ModelArch(id="gpt2-xl-like", name="GPT-2 XL (HF)", vocab_size=50257, hidden_size=1600, num_layers=48,
                      num_heads=25, num_kv_heads=25, head_dim=64, ffn_size=6400, mlp_kind=MlpKind.GELU,
                      norm_kind=NormKind.LAYERNORM, position=PositionKind.LEARNED, num_position_embeddings=1024,
                      max_seq_len=1024, tie_embeddings=True, hf_model_type="gpt2")


def _attn_parts(knobs, kernel, dropout):
    setup = TrainSetup(gpus=1, micro_batch=4, seq_len=1024, attention=Attention.MATH, recompute=Recompute.NONE,
                       precision=Precision.FP16_MIXED, dropout=dropout)
    return estimate_step(GPT2XL_HF, setup, H100, knobs, kernel=kernel).breakdown["compute/attention"]


def test_eager_attention_scores_by_hand():
    # Materialised attention as separate eager ops (HF GPT2Attention._attn): the s x s scores are read/written
    # 10 times forward (QK^T write, /sqrt(d), where(mask), + attention_mask, softmax, P@V read) and 11 times backward;
    # dropout adds read + write + its 1-byte mask each way. Fused (Megatron FusedScaleMaskSoftmax): 4 (+2) forward,
    # x2 backward. The score traffic is the only difference between the two kernel styles' attention terms.
    b, a, s, e = 4, 25, 1024, 2.0
    score = b * a * s * s * e
    bw = H100.hbm_bytes_per_s * H100.hbm_efficiency
    for p in (0.0, 0.1):
        drop = (2.0 + 1.0 / e) * 2.0 if p else 0.0
        eager_bytes = score * (10.0 + 11.0 + drop)
        fused_bytes = score * (4.0 + (2.0 if p else 0.0)) * 3.0
        diff = _attn_parts(KNOBS, "hf-eager", p) - _attn_parts(KNOBS, "fused", p)
        assert diff == pytest.approx(48 * (eager_bytes - fused_bytes) / bw, rel=1e-9)  # 48 layers


def test_gelu_new_eager_kernels_by_hand():
    # HF "gelu_new" (NewGELUActivation) as 8 eager kernels forward and their autograd nodes backward: +15 forward,
    # +22 backward f-wide passes over one GELU kernel, and the full recompute repeats the forward ones.
    setup = TrainSetup(gpus=1, micro_batch=2, seq_len=1024, attention=Attention.FLASH, recompute=Recompute.FULL,
                       precision=Precision.FP16_MIXED)
    plain = GPT2XL_HF.with_(hf_model_type="")
    t_new = estimate_step(GPT2XL_HF, setup, H100, KNOBS, kernel="hf-eager").breakdown["compute/elementwise"]
    t_plain = estimate_step(plain, setup, H100, KNOBS, kernel="hf-eager").breakdown["compute/elementwise"]
    f_pass = 2.0 * 2 * 1024 * 6400 / (H100.hbm_bytes_per_s * H100.hbm_efficiency)
    assert t_new - t_plain == pytest.approx(48 * (15.0 + 22.0 + 15.0) * f_pass, rel=1e-9)
    # compiled / fused kernels run one GELU kernel whatever the model type
    fused_new = estimate_step(GPT2XL_HF, setup, H100, KNOBS, kernel="fused").breakdown["compute/elementwise"]
    fused_plain = estimate_step(plain, setup, H100, KNOBS, kernel="fused").breakdown["compute/elementwise"]
    assert fused_new == pytest.approx(fused_plain, rel=1e-12)
