"""Training-throughput mechanisms of the large-run frameworks (issue 12: Megatron/NeMo, MaxText on TPU, fp8 through
Transformer Engine Linear layers), each checked against an independent reference: a measured benchmark printed in
a framework's docs, or a hand derivation from a framework's own configuration whose numbers are written out here.
"""

import pytest

from sizeup.core.timing import estimate_step, matmul_eff
from sizeup.job import build_job
from sizeup.job.frameworks import framework_profile
from sizeup.pipeline import knobs_for


# --------------------------------------------------------------------------- TPU matmul efficiency


def test_tpu_v5e_large_matmul_matches_the_jax_pallas_guide_measurement():
    """JAX docs, Pallas TPU 'Matrix Multiplication' guide, run on a TPU v5e (197 TFLOP/s bf16): XLA's jnp.matmul of
    two bf16 8192 x 8192 matrices takes 6.047147869830951 ms = 181.823e12 FLOP/s = 92.30 % of peak (4096^3: 84.33 %,
    a lower bound: the timing includes Python dispatch). The catalog's TPU curve must give that 8192^3 GEMM
    (2 x 8192^3 = 1.0995e12 FLOPs) the measured fraction, before any in-step training factor."""
    from sizeup.catalog import load_catalog
    from sizeup.catalog.knobs import load_timing_knobs
    from sizeup.core.timing import gpu_numbers
    from sizeup.core.types import Precision

    gpu = load_catalog().gpu("tpu-v5e")
    assert gpu.peak("bf16") == pytest.approx(197e12)
    measured = 2 * 8192**3 / 6.047147869830951e-3 / 197e12
    assert measured == pytest.approx(0.9230, abs=5e-4)
    knobs = load_timing_knobs().with_(matmul_training_fraction=1.0)
    g = gpu_numbers(gpu, Precision.BF16_MIXED, knobs, "fused")
    assert float(matmul_eff(g, 2 * 8192**3)) == pytest.approx(measured, abs=0.005)
    # 4096^3 measured 84.3 % with dispatch included: the curve may not fall below it
    assert float(matmul_eff(g, 2 * 4096**3)) >= 0.843


# --------------------------------------------------------------------------- fp8 through TE Linear layers only


def test_llm_foundry_fp8_runs_te_linear_only_attention_stays_flash_attn():
    """llm-foundry models/mpt/configuration_mpt.py: fp8 (precision amp_fp8) needs fc_type: te (te.Linear) or
    ffn_type: te_ln_mlp (te.LayerNormMLP); attention stays attn_impl (flash-attn/triton/torch). So an fp8
    llm-foundry step keeps the profile's own kernels (eager elementwise, the FlashAttention-2 table) and only the
    GEMMs change: its attention time equals the bf16 run's, while Megatron (TE layers throughout) switches to the
    'te' family and its cuDNN attention table (faster on an H100)."""
    base = {"model": "llama-2-7b", "gpu": "h100-sxm", "gpus": 8, "micro_batch": 1, "seq": 4096, "global_batch": 8}
    lf8 = build_job({**base, "framework": "llm-foundry", "precision": "fp8"})
    lf16 = build_job({**base, "framework": "llm-foundry", "precision": "bf16-mixed"})
    mg8 = build_job({**base, "framework": "megatron", "precision": "fp8"})
    assert framework_profile("llm-foundry")["fp8_library"] == "te-linear"
    assert lf8.execution.timing_kernel == lf16.execution.timing_kernel == "eager"
    assert mg8.execution.timing_kernel == "te"

    def attn(job):
        est = estimate_step(job.model, job.setup, job.gpu, knobs_for(job), job.execution.timing_kernel)
        return est.breakdown["compute/attention"], est.breakdown["compute/gemm"]

    (a8, g8), (a16, g16), (am, _) = attn(lf8), attn(lf16), attn(mg8)
    assert a8 == pytest.approx(a16, rel=1e-9)
    assert g8 < g16  # fp8 GEMMs
    assert am < a8  # cuDNN / FA3-class table vs FA2 on Hopper


# --------------------------------------------------------------------------- NeMo: TE userbuffers TP overlap


# nemo/collections/llm/recipes/tp_overlap_configs/userbuffers.py, userbuffers_{bf16,fp8}_h100_h8192_tp4_mbs1_seqlen8192
# (the config the llama3_70b performance recipe passes): (GEMM, TP collective it hides, method, num_splits)
USERBUFFERS_H100_TP4 = [
    ("qkv_fprop", "all-gather", "ring_exchange", None),
    ("fc1_fprop", "all-gather", "ring_exchange", None),
    ("proj_fprop", "reduce-scatter", "pipeline", 4),
    ("fc2_fprop", "reduce-scatter", "pipeline", 4),
    ("proj_dgrad", "all-gather", "ring_exchange", None),
    ("fc2_dgrad", "all-gather", "ring_exchange", None),
    ("qkv_dgrad", "reduce-scatter", "bulk", None),  # overlapped with the wgrad GEMM (qkv_wgrad bulk)
    ("fc1_dgrad", "reduce-scatter", "bulk", None),
]


def test_nemo_userbuffers_hidden_share_hand_derivation():
    """With sequence parallelism a layer issues 8 TP collectives of b*s*h elements each (forward: all-gather before
    qkv and fc1, reduce-scatter after proj and fc2; backward the mirror four). Ring-exchange (the GEMM on each
    received chunk while the next one arrives) and bulk overlaps hide their collective behind the GEMM; a
    'pipeline' overlap in n splits runs GEMM chunk i+1 while chunk i is reduce-scattered, leaving the last chunk's
    reduce-scatter (1/n) exposed. Exposed = 2 collectives x 1/4 = 0.5 of 8 -> hidden share 1 - 0.5/8 = 0.9375."""
    exposed = sum(1.0 / n for _, _, method, n in USERBUFFERS_H100_TP4 if method == "pipeline")
    hidden = 1.0 - exposed / len(USERBUFFERS_H100_TP4)
    assert hidden == pytest.approx(0.9375)
    prof = framework_profile("nemo")
    assert prof["tp_overlap"] == pytest.approx(hidden)
    assert framework_profile("megatron")["tp_overlap"] is None  # Megatron-LM: --tp-comm-overlap off by default


def test_nemo_profile_runs_sp_distributed_optimizer_and_overlapped_tp():
    """NeMo recipes (llama3_70b.py trainer(): sequence_parallel=True, distributed_fused_adam, DDP
    overlap_grad_reduce/overlap_param_gather): a TP4 job under --framework nemo gets SP, the distributed optimizer
    and the userbuffers overlap; its exposed TP time is (1 - 0.9375) = 1/16 of the same job without overlap (the
    layer's GEMMs, ~6x the TP traffic here, are a long enough window: exposed = c(1-f) + max(0, cf - window))."""
    v = {"model": "llama-2-70b", "gpu": "h100-sxm", "gpus": 64, "tp": 4, "pp": 4, "virtual_pp": 5,
         "micro_batch": 1, "seq": 4096, "global_batch": 128, "precision": "bf16-mixed", "framework": "nemo"}
    job = build_job(v)
    assert job.setup.sequence_parallel is True
    assert job.setup.sharding.value == "megatron-distopt"
    assert job.execution.tp_overlap == pytest.approx(0.9375)
    off = build_job({**v, "tp_overlap": 0.0})
    est = estimate_step(job.model, job.setup, job.gpu, knobs_for(job), job.execution.timing_kernel)
    ref = estimate_step(off.model, off.setup, off.gpu, knobs_for(off), off.execution.timing_kernel)
    c = ref.breakdown["comm/tensor_parallel"]
    assert c > 0
    assert est.breakdown["comm/tensor_parallel"] == pytest.approx(c / 16, rel=1e-9)
    assert est.breakdown["compute/gemm"] > 5 * c
    # a stated value wins over the profile's, and plain Megatron-LM keeps every TP collective exposed
    mg = build_job({**v, "framework": "megatron"})
    assert mg.setup.sequence_parallel is False and mg.execution.tp_overlap is None
