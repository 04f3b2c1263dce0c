"""Time of one optimizer step: per-op roofline compute + exposed communication + pipeline bubble + host time.

The numeric heart, `step_kernel`, is array-agnostic: every plan-varying input (tp, pp, dp, cp, ep,
micro_batch, grad_accum, seq_len, sharding/recompute codes, offload code, GPU numbers) may be a numpy
array or a number; it only uses arithmetic and np.maximum/minimum/where/interp, so the plan search
calls the same function on ~1e6 plans at once. `estimate_step` wraps it for one plan and explains it.

Per micro-batch on one GPU (one pipeline stage, L/p layers, M = b*s/c tokens):
  GEMM (per weight matrix, forward):  t = max(F / (peak * eta(F)), bytes / (HBM * eta_hbm))   roofline
        F = 2*M*k*n/t (TP splits n or k); eta(F) = catalog matmul efficiency curve (log-interpolated);
        backward = 2 GEMMs of the same shape (dgrad + wgrad; wgrad skipped for frozen PEFT weights).
  attention core (flash):  F_fwd = 2*M*keys*(q_dim+v_dim)/t, keys = s/2 causal; backward 2.5 x F_fwd;
        at peak * eta(F) * attention_relative_efficiency (FlashAttention-2 §4).
  eager attention: s x s scores/probabilities written and read by softmax (memory-bound).
  elementwise (norms, residuals, activations, rotary, dropout, casts): bytes / (HBM * eta_hbm).
  logits + cross-entropy on the last stage.
Step = micro-batch time x (m + (p-1)/v)  (1F1B/interleaved bubble (p-1)/(m*v): Narayanan 2021 §2.2)
     + exposed communication (data-parallel, ZeRO/FSDP, TP, PP, CP, EP; overlap fractions from timing.yaml)
     + optimizer step (bytes / HBM, or CPU Adam when offloaded) + host/data-loader time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import functools
from typing import Any, Mapping

import numpy as np

from sizeup.core.comms import collective_time, ring_coefficients
from sizeup.core.explain import Term
from sizeup.core.flops import (
    LayerShapes, attention_flops_per_token, decoder_ratio, flops_per_step, layer_shapes, lora_adapter_size,
    lora_linears, recompute_gemm_share,
)
from sizeup.core.params import count_params
from sizeup.core.types import (
    GELU_NEW_MODEL_TYPES, Attention, ContextParallel, Fp8Recipe, GpuSpec, LoraImpl, ModelArch, NormKind, Offload, Peft,
    Precision, Recompute, Sharding, TrainSetup,
)

# --------------------------------------------------------------------------- knobs (data: catalog/data/timing.yaml)


@dataclass(frozen=True)
class TimingKnobs:
    """Efficiency fractions and overheads; defaults are loaded from catalog/data/timing.yaml (with sources)."""

    attention_efficiency: Mapping[str, Any] = field(default_factory=lambda: {"default": [0.5, 0.4]})
    """GPU id substring -> [fwd, bwd] fraction of the 16-bit dense peak reached by FlashAttention-2 kernels."""
    attention_efficiency_fused: Mapping[str, Any] = field(default_factory=dict)
    """Same for the fused (cuDNN / FlashAttention-3 / TE) kernels where they differ; falls back to the FA2 table."""
    attention_head_dim_exponent: float = 0.0
    """Attention efficiency x min(1, head_dim/128)^exponent (smaller heads: less work per tile)."""
    matmul_training_fraction: float = 1.0
    """Sustained GEMM throughput inside a training step relative to the catalog curve (single-GEMM benchmark)."""
    attention_end_to_end_scale: float = 1.0
    """End-to-end share of the attention kernel-benchmark efficiency (fitted: calibration.yaml; 1.0 = physics)."""
    elementwise_passes_hidden_fwd: Mapping[str, float] = field(default_factory=lambda: {"fused": 10.0, "eager": 20.0})
    """Kernel style -> h-wide activation passes (read or write) per layer forward."""
    elementwise_passes_ffn_fwd: Mapping[str, float] = field(default_factory=lambda: {"fused": 3.0, "eager": 4.0})
    eager_rmsnorm_extra_passes: float = 0.0
    """Extra h-wide passes per RMSNorm when it runs as decomposed eager ops (fp32 upcast, pow, mean, mul, cast)."""
    elementwise_bwd_factor: float = 2.0
    eager_tanh_gelu_extra_passes: tuple[float, float] = (15.0, 22.0)
    """[fwd, bwd] extra f-wide passes of Hugging Face's "gelu_new" run as eager ops, over one GELU kernel's."""
    eager_attention_score_passes: tuple[float, float] = (10.0, 11.0)
    """[fwd, bwd] passes (reads + writes, in act-dtype units) over the s x s scores of materialised attention run as
    separate eager PyTorch ops (kernel style 'eager'); dropout adds its own (catalog/data/timing.yaml)."""
    logits_bytes_per_vocab_token: float = 16.0
    optimizer_bytes_per_param: Mapping[str, float] = field(default_factory=lambda: {"adamw": 36.0})
    optimizer_bytes_per_param_foreach: Mapping[str, float] = field(default_factory=lambda: {"adamw": 80.0})
    """Same for the non-fused (foreach) step, one kernel per op over the tensor list (--foreach); optimizers not
    listed fall back to optimizer_bytes_per_param."""
    grad_reduce_bytes: Mapping[str, float] = field(default_factory=lambda: {"bf16-mixed": 2.0})
    param_gather_bytes: Mapping[str, float] = field(default_factory=lambda: {"bf16-mixed": 2.0})
    dp_overlap: float = 0.9
    fsdp_overlap: float = 0.9
    tp_overlap: float = 0.0
    pp_overlap: float = 0.5
    cp_overlap: float = 0.8
    ep_overlap: float = 0.0
    data_loader_s_per_step: float = 0.0
    host_overhead_s_per_layer_microbatch: float = 0.0
    fp8_matmul_relative_efficiency: float = 0.62
    cpu_optimizer_params_per_s: float = 1.0e9
    fp8_recipe_matmul_efficiency: Mapping[str, float] = field(default_factory=lambda: {
        "delayed": 1.0, "tensorwise": 1.0, "rowwise": 1.0, "blockwise": 1.0})
    """fp8 recipe -> GEMM throughput relative to the tensor-scaled fp8 GEMM (x fp8_matmul_relative_efficiency)."""
    fp8_recipe_cast_bytes: Mapping[str, float] = field(default_factory=lambda: {
        "delayed": 3.0, "tensorwise": 5.0, "rowwise": 6.0, "blockwise": 6.0})
    """fp8 recipe -> HBM bytes per GEMM-input element to scale and cast it (read 16-bit, write fp8, amax passes)."""
    eager_op_dispatch_s: float = 10e-6
    """CPU time to dispatch one eager PyTorch op (Python + autograd + ATen dispatcher + cudaLaunchKernel); a small
    kernel launched from Python takes max(its GPU time, this)."""
    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "TimingKnobs":
        """{name: {value, source}} or {name: value}; unknown names are an error (caller turns it into SizeupError)."""
        names = {f.name for f in fields(cls)} - {"sources"}
        values, sources = {}, {}
        for key, entry in data.items():
            if key not in names:
                raise KeyError(key)
            if isinstance(entry, Mapping) and "value" in entry:
                values[key] = entry["value"]
                sources[key] = str(entry.get("source", ""))
            else:
                values[key] = entry
        return cls(**values, sources=sources)

    def with_(self, **changes) -> "TimingKnobs":
        from dataclasses import replace

        return replace(self, **changes)


def default_knobs() -> TimingKnobs:
    """Knobs from catalog/data/timing.yaml (the loader lives in sizeup.catalog.knobs; core never opens files itself)."""
    from sizeup.catalog.knobs import load_timing_knobs

    return load_timing_knobs()


# --------------------------------------------------------------------------- codes for the array kernel

SHARDING_CODE = {
    Sharding.NONE: 0, Sharding.ZERO1: 1, Sharding.MEGATRON_DISTOPT: 1, Sharding.ZERO2: 2,
    Sharding.FSDP_GRAD_OP: 2, Sharding.ZERO3: 3, Sharding.FSDP_FULL: 3, Sharding.FSDP_HYBRID: 4,
}
RECOMPUTE_CODE = {Recompute.NONE: 0, Recompute.SELECTIVE: 1, Recompute.FULL: 2, Recompute.OP_SAC: 3,
                  Recompute.ATTENTION_ONLY: 4, Recompute.LAYER_FRACTION: 5}
OFFLOAD_CODE = {Offload.NONE: 0, Offload.CPU: 1, Offload.NVME: 2}
CP_IMPL_CODE = {ContextParallel.RING: 0, ContextParallel.ULYSSES: 1}
ZEROPP_QWZ_BYTES = 1.0  # int8 weights (ZeRO++ qwZ, Wang et al. 2023 §3.1)
ZEROPP_QGZ_BYTES = 0.5  # int4 gradients (ZeRO++ qgZ, §3.3)
PEAK_DTYPE = {
    Precision.FP32: "fp32", Precision.TF32: "tf32", Precision.FP16_MIXED: "fp16",
    Precision.BF16_MIXED: "bf16", Precision.BF16: "bf16", Precision.FP8: "fp8",
}


_DTYPE_FALLBACKS = {"bf16": ("fp16",), "tf32": ("fp32",), "fp8": ("bf16", "fp16"), "fp16": ("fp32",)}


def runnable_precisions(gpu: GpuSpec) -> list[str]:
    """The precisions with a compute peak on this accelerator (directly or through a fallback dtype)."""
    return [p.value for p in Precision if (gpu.peak("fp8") > 0 if p is Precision.FP8 else
            any(gpu.peak(d) > 0 for d in (PEAK_DTYPE[p], *_DTYPE_FALLBACKS.get(PEAK_DTYPE[p], ()))))]


def compute_dtype(gpu: GpuSpec, precision: Precision) -> str:
    """The peak FLOP/s path a precision runs on; bf16 falls back to fp16, tf32 to fp32 when the GPU lacks them.
    A precision with no path (fp32 on a TPU, whose catalog entry has only a bf16 peak) is refused: no 0 FLOP/s."""
    dtype = PEAK_DTYPE[precision]
    for candidate in (dtype, *_DTYPE_FALLBACKS.get(dtype, ())):
        if gpu.peak(candidate) > 0:
            return candidate
    from sizeup.errors import SizeupError

    ok = runnable_precisions(gpu)
    raise SizeupError(f"{gpu.name} cannot run --precision {precision.value} (the catalog lists no {dtype} compute "
                      "peak for it)" + (f"; use --precision {' or '.join(ok)}" if ok else "; it lists no compute peak"))


@dataclass(frozen=True)
class ModelInputs:
    """Scalars derived once from the architecture for the kernel."""

    shapes: LayerShapes
    num_layers: int
    hidden: int
    vocab: int
    params_total: float
    params_expert: float
    """Routed-expert parameters (split by EP)."""
    params_trainable: float
    num_moe_layers: int
    experts_per_token: int
    kv_dim: int
    gated: bool
    frozen_fraction: float
    head_dim: float
    """Share of GEMM weights that get no weight-gradient GEMM (PEFT base)."""
    quantized_base: bool
    rmsnorms_per_layer: float = 0.0
    """RMSNorms per layer (0 for LayerNorm models): eager PyTorch runs them as several fp32 kernels."""
    num_experts: int = 0
    moe_fraction: float = 0.0
    """Share of layers that are MoE layers."""
    sac_gemm_share: float = 0.0
    """Share of the layer's forward GEMM FLOPs that op-level SAC recomputes (the mms it does not save)."""
    attn_gemm_share: float = 0.0
    """Share of the layer's forward GEMM FLOPs in the attention projections (recomputed by attention-only)."""
    adapters: tuple[tuple[float, float, bool], ...] = ()
    """LoRA-adapted Linears of one layer: (in features, out features, column-parallel under TP)."""
    lora_rank: float = 0.0
    gelu_new: bool = False
    """The MLP activation is Hugging Face's "gelu_new" tanh GELU (GELU_NEW_MODEL_TYPES): separate kernels when eager."""


def model_inputs(m: ModelArch, setup: TrainSetup | None = None) -> ModelInputs:
    pc = count_params(m)
    expert = 0.0
    if m.is_moe:
        from sizeup.core.params import mlp_params

        expert = float(m.num_moe_layers * m.num_experts * mlp_params(m, m.expert_ffn_size))
    peft = setup.peft if setup else Peft.NONE
    trainable = float(pc.total)
    frozen = 0.0
    adapters: tuple[tuple[float, float, bool], ...] = ()
    if peft != Peft.NONE:
        trainable = m.total_layers * lora_adapter_size(m, setup.lora_targets, setup.lora_rank)
        frozen = 1.0
        cols = lora_linears(m)
        adapters = tuple((float(cols[t][0]), float(cols[t][1]), cols[t][2]) for t in setup.lora_targets if t in cols)
    # encoder-decoder: the average of the L_e + L_d layers per input token (sizeup.core.flops._enc_dec_shapes); the
    # head's width is V x s_d/s_e there, 0 for a bare encoder or a sequence classifier
    shapes = layer_shapes(m, decoder_ratio(m, setup))
    return ModelInputs(shapes, m.total_layers, m.hidden_size, shapes.logits_n, float(pc.total), expert, trainable,
                       m.num_moe_layers, max(1, m.experts_per_token), m.kv_dim, m.mlp_kind.gated, frozen,
                       float(m.q_dim / m.num_heads), peft == Peft.QLORA,
                       float(m.norms_per_layer) if m.norm_kind == NormKind.RMSNORM else 0.0,
                       m.num_experts, m.num_moe_layers / m.num_layers,
                       recompute_gemm_share(m, Recompute.OP_SAC), recompute_gemm_share(m, Recompute.ATTENTION_ONLY),
                       adapters, float(setup.lora_rank) if (setup and peft != Peft.NONE) else 0.0,
                       m.hf_model_type in GELU_NEW_MODEL_TYPES and not m.mlp_kind.gated)


@dataclass(frozen=True)
class GpuNumbers:
    """The numeric part of a GpuSpec for the kernel (any field may be an array)."""

    peak_flops_per_s: Any
    attention_peak_flops_per_s: Any
    hbm_bytes_per_s: Any
    hbm_efficiency: Any
    intra_node_bytes_per_s: Any
    inter_node_bytes_per_s: Any
    host_link_bytes_per_s: Any
    node_size: Any
    collective_efficiency_intra: Any
    collective_efficiency_inter: Any
    collective_latency_s: Any
    matmul_log_flops: tuple[float, ...]
    matmul_efficiency: tuple[float, ...]
    matmul_scale: Any = 1.0
    """Extra factor on the curve (training fraction x fp8 relative efficiency)."""
    attention_fwd_efficiency: Any = 0.5
    attention_bwd_efficiency: Any = 0.4


# Fallbacks for a hand-built GpuSpec that leaves an achievable fraction at 0 (catalog GPUs always carry them,
# from efficiency.yaml): the suggested defaults of shared/reference hardware_notes.md sec. 4 (HBM 0.85 x peak,
# intra-node busbw 0.8 x unidirectional link, inter-node 0.75 x NIC) and a generic GEMM curve (Calculon-style:
# ~0.5 of peak at 1 GFLOP per GEMM, ~0.75 for large GEMMs, the Hopper/Blackwell MAMF range).
FALLBACK_HBM_EFFICIENCY = 0.85
FALLBACK_COLLECTIVE_EFFICIENCY_INTRA = 0.8
FALLBACK_COLLECTIVE_EFFICIENCY_INTER = 0.75
FALLBACK_MATMUL_CURVE = ((1e9, 0.5), (1e12, 0.75))


def gpu_numbers(gpu: GpuSpec, precision: Precision, knobs: TimingKnobs, kernel: str = "fused",
                fp8_recipe: Fp8Recipe = Fp8Recipe.DELAYED, cudnn_attention: bool = False) -> GpuNumbers:
    dtype = compute_dtype(gpu, precision)
    attn_dtype = "bf16" if dtype == "fp8" else dtype
    if gpu.peak(attn_dtype) <= 0:
        attn_dtype = compute_dtype(gpu, Precision.FP16_MIXED)
    curve = gpu.matmul_efficiency or FALLBACK_MATMUL_CURVE
    xs = tuple(float(np.log(max(x, 1.0))) for x, _ in curve)
    ys = tuple(float(y) for _, y in curve)
    attn = _attention_eff(gpu, knobs, kernel, cudnn_attention)
    attn = (attn[0] * knobs.attention_end_to_end_scale, attn[1] * knobs.attention_end_to_end_scale)
    fp8_scale = knobs.fp8_matmul_relative_efficiency * float(knobs.fp8_recipe_matmul_efficiency.get(fp8_recipe.value, 1.0))
    scale = knobs.matmul_training_fraction * (fp8_scale if dtype == "fp8" else 1.0)
    return GpuNumbers(
        gpu.peak(dtype), gpu.peak(attn_dtype), gpu.hbm_bytes_per_s, gpu.hbm_efficiency or FALLBACK_HBM_EFFICIENCY,
        gpu.intra_node_bytes_per_s or gpu.host_link_bytes_per_s, gpu.inter_node_bytes_per_s or gpu.host_link_bytes_per_s,
        gpu.host_link_bytes_per_s, max(1, gpu.node_size),
        gpu.collective_efficiency_intra or FALLBACK_COLLECTIVE_EFFICIENCY_INTRA,
        gpu.collective_efficiency_inter or FALLBACK_COLLECTIVE_EFFICIENCY_INTER, gpu.collective_latency_s,
        xs, ys, scale, attn[0], attn[1],
    )


def _attention_eff(gpu: GpuSpec, knobs: TimingKnobs, kernel: str = "fused",
                   cudnn_attention: bool = False) -> tuple[float, float]:
    """[fwd, bwd] flash-attention fraction of peak for this GPU: the longest id key contained in the GPU id.
    Transformer Engine attention and cuDNN attention (Attention.CUDNN: torch SDPA's default on sm90/sm100 from
    torch 2.11) read attention_efficiency_fused where it has the GPU (Hopper/Blackwell), else the FA2 table
    (torch's check_prefer_cudnn_attention only prefers cuDNN on sm90/sm100)."""
    table = dict(knobs.attention_efficiency)
    if uses_te_attention(kernel) or cudnn_attention:
        table.update({k: v for k, v in knobs.attention_efficiency_fused.items() if k in gpu.id.lower()})
    keys = sorted((k for k in table if k != "default" and k in gpu.id.lower()), key=len, reverse=True)
    fwd, bwd = table[keys[0]] if keys else table.get("default", [0.5, 0.4])
    return float(fwd), float(bwd)


def matmul_eff(g: GpuNumbers, flops):
    """Achievable fraction of peak for one GEMM of `flops` FLOPs (catalog curve, interpolated in log FLOPs)."""
    return np.interp(np.log(np.maximum(flops, 1.0)), g.matmul_log_flops, g.matmul_efficiency) * g.matmul_scale


def _gemm_time(g: GpuNumbers, flops, bytes_):
    """Roofline for one kernel: max(F/(peak*eta(F)), bytes/(HBM*eta_hbm)) -> (time, compute part, memory part)."""
    t_c = flops / (g.peak_flops_per_s * np.maximum(matmul_eff(g, flops), 1e-3))
    t_m = bytes_ / (g.hbm_bytes_per_s * g.hbm_efficiency)
    return np.maximum(t_c, t_m), t_c, t_m


LORA_IMPL_CODE = {LoraImpl.FUSED: 0, LoraImpl.PEFT: 1}


def _expected_max_table() -> tuple[np.ndarray, np.ndarray]:
    """E[max of n iid N(0,1)] = integral x * n * phi(x) * Phi(x)^(n-1) dx for n = 1 .. 2^14 (order statistics)."""
    from math import erf

    x = np.linspace(-8.0, 8.0, 16001)
    phi = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    cdf = 0.5 * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))
    ns = 2.0 ** np.arange(0, 15)
    vals = np.array([np.trapezoid(x * n * phi * cdf ** (n - 1.0), x) for n in ns])
    return np.log(ns), vals


def expected_max_std_normal(n):
    """Expected maximum of n standard normal draws (0 for n = 1), interpolated in log n; array-friendly.

    The table (about 18 ms to build) is built on first use by a run with more than one expert-parallel rank; for
    n <= 1 the value is exactly 0 (the table's first entry), so dense and EP-1 runs never build it."""
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    if np.all(n <= 1.0):
        return np.zeros_like(n) if n.ndim else 0.0
    log_n, emax = _expected_max_cached()
    return np.interp(np.log(n), log_n, emax)


@functools.cache
def _expected_max_cached() -> tuple[np.ndarray, np.ndarray]:
    return _expected_max_table()


def moe_imbalance(mi: ModelInputs, setup: TrainSetup):
    """The load-imbalance factor step_kernel applies for this setup (same formula; for --explain)."""
    M = setup.micro_batch * setup.seq_len / setup.cp
    mk = max(M * mi.experts_per_token * max(mi.moe_fraction, 1e-9), 1.0)
    imb = 1.0 + float(expected_max_std_normal(max(setup.ep, 1))) / np.sqrt(mk)
    if setup.moe_capacity_factor > 0:
        imb = setup.moe_capacity_factor if setup.moe_pad_to_capacity else min(imb, setup.moe_capacity_factor)
    return imb if mi.num_experts > 0 else 1.0


def lora_adapter_time(mi: ModelInputs, g: GpuNumbers, M, tp, act_bytes: float = 2.0, impl_code=0,
                      lora_dropout: float = 0.0, input_cast: bool = False):
    """GPU seconds per layer per micro-batch of the LoRA adapters and the kernels they launch.

    Per adapted Linear y = x W (x: M x k, W frozen) with rank r (Hu et al. 2021 LoRA eq. 3: h = W0 x + B A x):
      forward   A-GEMM 2*M*k*r, B-GEMM 2*M*r*n                     (rows M; TP splits n or k like the base)
      backward  dB = (x A)^T dy, d(xA) = dy B^T, dA = x^T d(xA), dx_lora = d(xA) A^T   -> 4 GEMMs of the same sizes
      (the frozen base runs only its dgrad; that is in the base GEMM term). Each GEMM at its roofline.
    impl 0 "fused" (Unsloth matmul_lora: the B-GEMM and dx_lora accumulate into the base output / dgrad with addmm:
    2 fwd + 4 bwd kernels, +1 read of the M x n / M x k accumulator); impl 1 "peft" (HF PEFT LoraLayer:
    `result + lora_B(lora_A(dropout(x))) * scaling` as separate ops: + mul (r M*n, w M*n) + add (r 2 M*n, w M*n)
    + 2 autocast casts of the fp32 adapter weights [+ with input_cast (mixed precision: fp32 adapters, autocast)
    the input's cast to fp32 and back]
    [+ dropout r/w M*k + 1-byte mask]; backward + mul backward (r/w M*n) + dx accumulation (r 2 M*k, w M*k)
    + 2 fp32 gradient casts + the input-grad casts [+ dropout backward]).
    Returns (fwd_gpu_s, bwd_gpu_s, kernels_fwd, kernels_bwd).
    """
    if not mi.adapters or mi.lora_rank <= 0:
        return 0.0, 0.0, 0.0, 0.0
    r = mi.lora_rank
    e = act_bytes
    bw = g.hbm_bytes_per_s * g.hbm_efficiency
    peft = np.asarray(impl_code) == 1
    drop = lora_dropout > 0
    fwd = bwd = k_f = k_b = 0.0

    def kern(flops, byt):
        return _gemm_time(g, flops, byt)[0]

    for k, n, col in mi.adapters:
        kl = k if col else k / tp
        nl = n / tp if col else n
        acc_f = np.where(peft, 0.0, e * M * nl)  # fused: addmm reads the base output it accumulates into
        acc_b = np.where(peft, 0.0, e * M * kl)
        fwd = fwd + kern(2.0 * M * kl * r, e * (M * kl + kl * r + M * r)) \
            + kern(2.0 * M * r * nl, e * (M * r + r * nl + M * nl) + acc_f)
        bwd = bwd + kern(2.0 * M * nl * r, e * (M * nl + M * r + r * nl)) \
            + kern(2.0 * M * nl * r, e * (M * nl + r * nl + M * r)) \
            + kern(2.0 * M * kl * r, e * (M * kl + M * r + kl * r)) \
            + kern(2.0 * M * r * kl, e * (M * r + kl * r + M * kl) + acc_b)
        casts = 2.0 * 3.0 * r * (kl + nl)  # fp32 -> 16-bit copies of A and B: read 4 B, write 2 B per weight
        # the adapter input: PEFT casts x to the fp32 adapter weight's dtype (peft tuners_utils.py
        # BaseTunerLayer._cast_input_dtype: x.to(lora_A.weight.dtype); get_peft_model(autocast_adapter_dtype=True)
        # keeps adapters fp32 on a 16-bit base) and autocast casts it back to 16 bits for lora_A's GEMM: read e,
        # write 4, read 4, write e per input element; the backward runs both ToCopyBackward casts in reverse
        in_cast = (2.0 * e + 8.0) * M * kl if input_cast else 0.0
        f_extra = (2.0 * e * M * nl + 3.0 * e * M * nl + casts + in_cast) / bw
        b_extra = (2.0 * e * M * nl + 3.0 * e * M * kl + casts + in_cast) / bw
        nf, nb = (6.0, 6.0) if input_cast else (4.0, 4.0)
        if drop:
            f_extra = f_extra + (2.0 * e * M * kl + M * kl) / bw
            b_extra = b_extra + (2.0 * e * M * kl + M * kl) / bw
            nf, nb = 5.0, 5.0
        fwd = fwd + np.where(peft, f_extra, 0.0)
        bwd = bwd + np.where(peft, b_extra, 0.0)
        k_f = k_f + 2.0 + np.where(peft, nf, 0.0)
        k_b = k_b + 4.0 + np.where(peft, nb, 0.0)
    return fwd, bwd, k_f, k_b


def host_bound_increment(base_gpu_s, base_host_s, extra_gpu_s, extra_kernels, dispatch_s):
    """Extra wall time of adding kernels to a stream fed by one CPU thread (a two-stage pipeline, CPU issue then GPU
    run, with the launch queue in between): wall = max(GPU time, CPU issue time), so the increment is
    max(G + g, C + n*d) - max(G, C). Large base kernels leave the CPU ahead and hide the launches of small ones;
    small bases make them launch-bound (PyTorch CUDA semantics: kernels are queued asynchronously)."""
    return np.maximum(base_gpu_s + extra_gpu_s, base_host_s + extra_kernels * dispatch_s) \
        - np.maximum(base_gpu_s, base_host_s)


def step_kernel(mi: ModelInputs, g: GpuNumbers, knobs: TimingKnobs, *, tp, pp, dp, cp, ep, micro_batch, grad_accum,
                seq_len, sharding_code, recompute_code, sequence_parallel=0, virtual_pp=1, offload_code=0,
                act_bytes: float = 2.0, gemm_bytes: float = 2.0, flash: bool = True, grad_bytes: float = 2.0,
                gather_bytes: float = 2.0, optimizer_bytes_per_param: float = 36.0, dropout: float = 0.0,
                kernel: str = "fused", lora_impl_code=0, lora_dropout: float = 0.0, recompute_fraction=1.0,
                tp_overlap=None, ep_overlap=None, fp8_cast_bytes: float = 3.0, first_stage_layers=0,
                last_stage_layers=0, moe_capacity_factor=0.0, moe_pad_to_capacity=False,
                autocast_weight_cast: bool = False, lora_input_cast: bool = False, param_offload_code=0,
                cp_impl_code=0, zero3_gather_bytes=0.0, zero3_reduce_bytes=0.0, attention_span=0) -> dict:
    """Seconds per optimizer step and its parts, for one plan or arrays of plans. Returns a dict of arrays."""
    L, h, V = mi.num_layers, mi.hidden, mi.vocab
    s = seq_len * 1.0
    M = micro_batch * s / cp  # tokens per GPU per micro-batch
    # layers per stage: even split (bottleneck stage rounds up), or Megatron's uneven split
    # (--decoder-first/last-pipeline-num-layers): first F, last F_last, the rest spread over the p-2 middle stages
    even = np.ceil(L / pp)
    l_first = np.where(first_stage_layers > 0, first_stage_layers, even)
    l_last = np.where((last_stage_layers > 0) & (pp > 1), last_stage_layers, even)
    l_mid = np.where(pp > 2, np.ceil(np.maximum(L - l_first - l_last, 0.0) / np.maximum(pp - 2, 1)), 0.0)
    l_mid = np.where((first_stage_layers > 0) | (last_stage_layers > 0), l_mid, even)
    layers = np.maximum(np.maximum(l_first, l_mid), np.where(pp > 1, l_last, l_first))
    sh = mi.shapes

    # ---- MoE load imbalance: the busiest expert-parallel rank sets the pace of the grouped GEMMs and the all-to-all.
    # Token-to-rank assignments of a balanced router as a multinomial (M*K*ep draws over ep ranks, mean M*K per
    # rank): in the normal approximation the counts are mean + sqrt(M*K) * (Z_i - Z_bar) with Z iid N(0,1) (the
    # fixed total gives the -1/(n-1) correlation), so the busiest rank's expected load is mean + e(ep) sqrt(M*K),
    # e(n) the expected maximum of n standard normals (e(n) -> sqrt(2 ln n): Raab & Steger 1998). A capacity factor C drops the excess (factor <= C) or, padded to capacity (Switch/GShard,
    # Megatron --moe-pad-expert-input-to-capacity), always computes C x the mean.
    mk = np.maximum(M * mi.experts_per_token * max(mi.moe_fraction, 1e-9), 1.0)
    epf = np.maximum(np.asarray(ep, dtype=float), 1.0)
    imb = 1.0 + expected_max_std_normal(epf) / np.sqrt(mk)
    cf = np.asarray(moe_capacity_factor, dtype=float)
    imb = np.where(cf > 0, np.where(np.asarray(moe_pad_to_capacity, dtype=bool), cf, np.minimum(imb, cf)), imb)
    imb = np.where(mi.num_experts > 0, imb, 1.0)

    # ---- GEMMs of one layer, forward (roofline per weight matrix)
    gemm_fwd = 0.0
    gemm_fwd_compute = 0.0
    gemm_fwd_memory = 0.0
    for gm in sh.gemms:
        split = tp if gm.tp_split else 1
        if gm.expert:
            # EP: each GPU runs E/ep experts over ep*M*K tokens -> M*K expert-token rows per GPU in total,
            # M*K*ep/E rows per expert GEMM (GShard/Megatron MoE).
            rows = M * gm.share * ep
            n_calls = gm.count / ep
        else:
            rows = M * gm.share
            n_calls = gm.count
        f = 2.0 * rows * gm.k * gm.n / split
        byt = gemm_bytes * (rows * gm.k + gm.k * gm.n / split) + act_bytes * rows * gm.n / split
        t, tc, tm = _gemm_time(g, f, byt)
        if gm.expert:
            t, tc, tm = t * imb, tc * imb, tm * imb
        gemm_fwd = gemm_fwd + n_calls * t
        gemm_fwd_compute = gemm_fwd_compute + n_calls * tc
        gemm_fwd_memory = gemm_fwd_memory + n_calls * tm
    # backward: dgrad + wgrad (wgrad skipped for frozen PEFT weights)
    gemm_bwd = gemm_fwd * (2.0 - mi.frozen_fraction)

    # ---- attention core
    heads_local = sh.num_heads / tp
    # document-masked packing (flash varlen / TE THD / FlexAttention): each query sees only its own document, so the
    # kernels' work is per-document n x n (FlashAttention-2 flash_attn_varlen_func, cu_seqlens); eager attention with a
    # block mask still computes and stores the full s x s scores
    s_attn = np.where(flash & (np.asarray(attention_span) > 0), np.minimum(s, np.maximum(attention_span, 1)), s)
    attn_f_fwd = M * attention_flops_per_token(sh, s_attn, causal=flash) / tp
    attn_call = attn_f_fwd * micro_batch / np.maximum(micro_batch, 1)  # one kernel call per layer
    if flash:
        # kernel efficiency: the GPU's flash-attention fraction, scaled down for small calls like a GEMM
        size = np.interp(np.log(np.maximum(attn_call, 1.0)), g.matmul_log_flops, g.matmul_efficiency) / max(g.matmul_efficiency)
        size = size * np.minimum(1.0, mi.head_dim / 128.0) ** knobs.attention_head_dim_exponent
        attn_fwd = attn_f_fwd / (g.attention_peak_flops_per_s * size * g.attention_fwd_efficiency)
        # FlashAttention-2 backward = 5 matmuls vs 2 forward (recomputes P): 2.5x FLOPs
        attn_bwd = 2.5 * attn_f_fwd / (g.attention_peak_flops_per_s * size * g.attention_bwd_efficiency)
        attn_mem = attn_mem_fwd = attn_mem_bwd = 0.0 * attn_fwd
    else:
        # eager: Q.K^T and P.V as batched GEMMs + softmax over b*a*(s/c)*s scores (write, read, write, read)
        eff = matmul_eff(g, attn_call / np.maximum(heads_local, 1))
        attn_fwd = attn_f_fwd / (g.attention_peak_flops_per_s * eff)
        attn_bwd = 2.0 * attn_fwd
        score_bytes = micro_batch * heads_local * (s / cp) * s * act_bytes
        if kernel_style(kernel) == "eager":
            # plain PyTorch ops, one kernel each over the b*a*(s/c)*s scores (eager_attention_score_passes: the
            # kernel list, fwd and bwd separately), dropout with its 1-byte keep-mask (1/act_bytes of a pass)
            p_fwd, p_bwd = (float(x) for x in knobs.eager_attention_score_passes)
            drop = (2.0 + 1.0 / act_bytes) if dropout > 0 else 0.0
            attn_mem_fwd = score_bytes * (p_fwd + drop) / (g.hbm_bytes_per_s * g.hbm_efficiency)
            attn_mem_bwd = score_bytes * (p_bwd + drop) / (g.hbm_bytes_per_s * g.hbm_efficiency)
            attn_mem = attn_mem_fwd + attn_mem_bwd
        else:
            # fused scale-mask-softmax (Megatron FusedScaleMaskSoftmax / compiled): write, read, write, read
            passes = 4.0 + (2.0 if dropout > 0 else 0.0)
            attn_mem = score_bytes * passes * (1.0 + knobs.elementwise_bwd_factor) / (g.hbm_bytes_per_s * g.hbm_efficiency)
            attn_mem_fwd = attn_mem / (1.0 + knobs.elementwise_bwd_factor)
            attn_mem_bwd = attn_mem - attn_mem_fwd

    # ---- elementwise traffic of one layer (norms, residuals, activation function, rotary, dropout, casts)
    sp_div = np.where(sequence_parallel, tp, 1)
    style = kernel_style(kernel)
    ffn_passes = np.asarray(knobs.elementwise_passes_ffn_fwd[style], dtype=float) - (0.0 if mi.gated else 1.0)
    hidden_passes = np.asarray(knobs.elementwise_passes_hidden_fwd[style], dtype=float) + (4.0 if dropout > 0 else 0.0)
    if style == "eager":  # eager RMSNorm = upcast, pow, mean, rsqrt-mul, cast, weight-mul kernels (HF/torch composite)
        hidden_passes = hidden_passes + mi.rmsnorms_per_layer * knobs.eager_rmsnorm_extra_passes
    elem_fwd_bytes = act_bytes * M * (hidden_passes * h / sp_div + ffn_passes * sh.ffn_act_width / tp
                                      + 2.0 * sh.qkv_width / tp)  # rotary/bias on q,k,v: read + write
    if gemm_bytes < act_bytes:  # fp8: scale and cast every GEMM input (delayed: read 2 B, write 1 B; see recipe)
        elem_fwd_bytes = elem_fwd_bytes + fp8_cast_bytes * M * (h + sh.ffn_act_width / tp + sh.attn_v_dim / tp)
    if mi.num_experts > 0:
        # MoE routing traffic per MoE layer (Megatron-Core moe_utils permute/unpermute, router in fp32): router
        # softmax + top-k over E logits (write 4 B fp32 logits, softmax read/write 8 B, top-k read 4 B) and the
        # token permutation: permute reads M*h and writes K*M*h, unpermute reads K*M*h (+ probs) and writes M*h
        K = mi.experts_per_token
        route = 16.0 * M * mi.num_experts + act_bytes * M * h / sp_div * (2.0 + 2.0 * K) * imb
        elem_fwd_bytes = elem_fwd_bytes + mi.moe_fraction * route
    elem_fwd = elem_fwd_bytes / (g.hbm_bytes_per_s * g.hbm_efficiency)
    elem_bwd = elem_fwd * knobs.elementwise_bwd_factor
    if style == "eager" and mi.gelu_new:
        # "gelu_new" as eager ops (transformers activations.py NewGELUActivation): pow, mul, add, mul, tanh, add,
        # mul, mul kernels over the f-wide tensor forward and their autograd nodes backward (timing.yaml)
        gelu_f, gelu_b = (float(x) for x in knobs.eager_tanh_gelu_extra_passes)
        gelu_pass = act_bytes * M * sh.ffn_act_width / tp / (g.hbm_bytes_per_s * g.hbm_efficiency)
        elem_fwd = elem_fwd + gelu_f * gelu_pass
        elem_bwd = elem_bwd + gelu_b * gelu_pass
    amp = np.asarray(autocast_weight_cast, dtype=float) * (np.asarray(sharding_code) == 0)
    if np.any(amp > 0):
        # torch.autocast over fp32 master weights (eager AMP, no sharding wrapper that casts at gather): each
        # forward casts every trainable GEMM weight to 16 bits (read 4 B, write 2 B; autocast_mode.cpp cached_cast
        # caches the cast of a leaf weight for the rest of the autocast region, so once per forward), and its
        # backward (ToCopyBackward) casts the 16-bit weight gradient to fp32 (read 2 B, write 4 B). Frozen 16-bit
        # (LoRA base) weights need no cast.
        w_trainable = (1.0 - mi.frozen_fraction) * sum(gm.k * gm.n * gm.count / (tp if gm.tp_split else 1)
                                                       for gm in sh.gemms)
        cast = 6.0 * w_trainable / (g.hbm_bytes_per_s * g.hbm_efficiency)
        # and the residual stream is fp32: nn.Embedding is not on autocast's 16-bit op list, so with fp32 weights
        # the embedding output is fp32 and every residual add promotes to fp32 (torch type promotion); per token
        # per layer, against a 16-bit stream (eager Llama-style block, transformers modeling_llama.py):
        # 5 autocast input casts of the fp32 norm output for q, k, v, gate, up (r 4, w 2: +30 B x h), 2 residual
        # adds reading and writing fp32 (+8 B x h), 2 RMSNorms that skip their upcast and downcast copies but
        # scale in fp32 (-8 B x h each), rotary on fp32 cos/sin (q, k out in fp32: +10 B) and SDPA's autocast cast
        # of q, k back to 16 bits (+6 B) = 22 B x h + 16 B x (q + k width); backward x elementwise_bwd_factor.
        # A frozen 16-bit base (LoRA) keeps a 16-bit embedding and stream: none of this.
        qk_width = sh.attn_qk_dim + 0.5 * max(sh.qkv_width - sh.attn_qk_dim, 0)
        resid = M * (22.0 * h / sp_div + 16.0 * qk_width / tp) / (g.hbm_bytes_per_s * g.hbm_efficiency) \
            * (1.0 if mi.frozen_fraction == 0.0 else 0.0)  # frozen_fraction is 1 for every PEFT method, else 0
        elem_fwd = elem_fwd + amp * (cast + resid)
        elem_bwd = elem_bwd + amp * (cast + resid * knobs.elementwise_bwd_factor)
    if mi.quantized_base:
        # QLoRA: dequantize 4-bit weights to 16-bit before every forward and backward GEMM (read 0.5 B + write 2 B)
        weights_local = sum(gm.k * gm.n * gm.count / (tp if gm.tp_split else 1) for gm in sh.gemms)
        deq = 2.5 * weights_local / (g.hbm_bytes_per_s * g.hbm_efficiency)
        elem_fwd = elem_fwd + deq
        elem_bwd = elem_bwd + deq

    # ---- LoRA adapters (their GEMMs and, for eager PEFT, their extra elementwise kernels), launched from Python:
    # the CPU issue time of their kernels hides behind the base layer's GPU time only while the CPU is ahead
    la_gf, la_gb, la_kf, la_kb = lora_adapter_time(mi, g, M, tp, act_bytes, lora_impl_code, lora_dropout,
                                                   lora_input_cast)
    host_half = 0.5 * knobs.host_overhead_s_per_layer_microbatch
    base_f = gemm_fwd + attn_fwd + attn_mem_fwd + elem_fwd
    base_b = gemm_bwd + attn_bwd + attn_mem_bwd + elem_bwd
    lora_fwd = host_bound_increment(base_f, host_half, la_gf, la_kf, knobs.eager_op_dispatch_s)
    lora_bwd = host_bound_increment(base_b, host_half, la_gb, la_kb, knobs.eager_op_dispatch_s)

    layer_fwd = gemm_fwd + attn_fwd + attn_mem_fwd + elem_fwd + lora_fwd
    layer_bwd = gemm_bwd + attn_bwd + attn_mem_bwd + elem_bwd + lora_bwd
    # recompute: selective = attention core forward again; full = whole layer forward again (Korthikanti 2022);
    # op-SAC (3) = the unsaved mms + every elementwise op (SDPA saved; torchtitan); attention-only (4) = attention
    # projections, core and the attention half of the elementwise ops; layer-fraction (5) = a share f of full
    frac = np.clip(recompute_fraction, 0.0, 1.0)
    attn_elem = act_bytes * M * (0.5 * hidden_passes * h / sp_div + 2.0 * sh.qkv_width / tp) \
        / (g.hbm_bytes_per_s * g.hbm_efficiency)
    rc_gemm = np.where(recompute_code == 2, 1.0, np.where(recompute_code == 3, mi.sac_gemm_share, np.where(
        recompute_code == 4, mi.attn_gemm_share, np.where(recompute_code == 5, frac, 0.0)))) * gemm_fwd
    rc_attn = np.where((recompute_code == 1) | (recompute_code == 2) | (recompute_code == 4), 1.0,
                       np.where(recompute_code == 5, frac, 0.0)) * (attn_fwd + attn_mem_fwd)
    rc_attn = rc_attn - np.where(recompute_code == 1, attn_mem_fwd, 0.0)
    rc_elem = np.where((recompute_code == 2) | (recompute_code == 3), elem_fwd, np.where(
        recompute_code == 4, np.minimum(attn_elem, elem_fwd), np.where(recompute_code == 5, frac * elem_fwd, 0.0)))
    rc_lora = np.where((recompute_code == 2) | (recompute_code == 3), 1.0,
                       np.where(recompute_code == 5, frac, 0.0)) * lora_fwd
    layer_rc = rc_gemm + rc_attn + rc_elem + rc_lora
    host = knobs.host_overhead_s_per_layer_microbatch

    # ---- logits + loss (last stage)
    lf = 2.0 * M * h * V / tp
    lbytes = gemm_bytes * (M * h + h * V / tp) + act_bytes * M * V / tp
    logit_fwd, _, _ = _gemm_time(g, lf, lbytes)
    loss = knobs.logits_bytes_per_vocab_token * M * V / tp / (g.hbm_bytes_per_s * g.hbm_efficiency)
    head_time = 3.0 * logit_fwd + loss  # forward + dgrad + wgrad (tied or not, the head GEMM runs)

    mb_fwd = layers * layer_fwd
    mb_bwd = layers * (layer_bwd + layer_rc)
    # the slowest stage sets the pipeline's pace: the last one carries the logits/loss head
    per_layer = layer_fwd + layer_bwd + layer_rc + host
    head_stage = np.where(pp > 1, l_last, layers)
    mb_compute = np.maximum(layers * per_layer, head_stage * per_layer + head_time)

    # ---- tensor-parallel collectives: 2 all-reduce fwd + 2 bwd per layer (Shoeybi 2019 §3); SP: AG+RS, same bytes
    tp_payload = act_bytes * micro_batch * (s / cp) * h
    t_tp_one = collective_time("all-reduce", tp_payload, tp, 1, g.node_size, g.intra_node_bytes_per_s,
                               g.inter_node_bytes_per_s, g.collective_efficiency_intra, g.collective_efficiency_inter,
                               g.collective_latency_s)
    # full recompute repeats the 2 forward all-reduces, attention-only its 1, layer-fraction f x 2; op-SAC saves
    # the TP reduce-scatter outputs (torchtitan save list) so it repeats none
    tp_per_layer = (4.0 + np.where(recompute_code == 2, 2.0, np.where(recompute_code == 4, 1.0, np.where(
        recompute_code == 5, 2.0 * frac, 0.0)))) * t_tp_one
    # a share f of the TP traffic can hide behind the layer's GEMMs (Megatron --tp-comm-overlap: TE userbuffers
    # split each AG/RS into chunks pipelined with the GEMM that consumes/produces them); the rest is exposed
    f_tp = knobs.tp_overlap if tp_overlap is None else np.clip(tp_overlap, 0.0, 1.0)
    tp_window = gemm_fwd + gemm_bwd + rc_gemm
    tp_exposed_mb = layers * (tp_per_layer * (1.0 - f_tp) + np.maximum(tp_per_layer * f_tp - tp_window, 0.0))

    # ---- context parallel: ring pass of K and V blocks, (c-1) steps fwd, 2x in backward (dK, dV)
    kv_bytes = act_bytes * micro_batch * (s / cp) * 2.0 * mi.kv_dim / tp
    cp_time = 3.0 * (cp - 1) * kv_bytes / (g.intra_node_bytes_per_s * g.collective_efficiency_intra)
    ring_exposed = layers * np.maximum(cp_time - knobs.cp_overlap * (attn_fwd + attn_bwd), (1 - knobs.cp_overlap) * cp_time)
    # DeepSpeed-Ulysses (Jacobs et al. 2023 §3; deepspeed/sequence/layer.py DistributedAttention): an all-to-all
    # turns the (s/c)-token shards of q, k and v into full-sequence shards of heads/c heads before the attention,
    # and one turns the output back after it: per layer forward the rank's M*(q + k + v + o widths)*bytes/t buffer
    # goes through all-to-all over the cp group (MHA: 4*M*h, the paper's 4Nh/P per GPU); the backward repeats them
    # for the gradients, a full recompute repeats the forward's. They sit on the attention's critical path (the
    # local attention needs every head's full sequence): not overlapped.
    a2a_payload = act_bytes * M * (sh.attn_qk_dim + 2.0 * mi.kv_dim + sh.attn_v_dim) / tp
    t_a2a_cp = collective_time("all-to-all", a2a_payload, cp, tp, g.node_size, g.intra_node_bytes_per_s,
                               g.inter_node_bytes_per_s, g.collective_efficiency_intra, g.collective_efficiency_inter,
                               g.collective_latency_s)
    a2a_passes = 2.0 + np.where((recompute_code == 2) | (recompute_code == 4), 1.0,
                                np.where(recompute_code == 5, np.clip(recompute_fraction, 0.0, 1.0), 0.0))
    ulysses_exposed = layers * a2a_passes * t_a2a_cp
    cp_exposed_mb = np.where(cp > 1, np.where(cp_impl_code == 1, ulysses_exposed, ring_exposed), 0.0)

    # ---- expert parallel: dispatch + combine all-to-all, forward and backward (Lepikhin 2020 GShard)
    ep_payload = act_bytes * M * mi.experts_per_token * h * imb  # the busiest rank receives imb x the mean
    t_a2a = collective_time("all-to-all", ep_payload, ep, tp * cp, g.node_size, g.intra_node_bytes_per_s,
                            g.inter_node_bytes_per_s, g.collective_efficiency_intra, g.collective_efficiency_inter,
                            g.collective_latency_s)
    moe_layers_stage = mi.num_moe_layers / pp
    # a share f hides behind the layer's other compute (Megatron --overlap-moe-expert-parallel-comm / DeepSeek-V3
    # DualPipe overlap the a2a of one micro-batch with another's attention/expert GEMMs)
    f_ep = knobs.ep_overlap if ep_overlap is None else np.clip(ep_overlap, 0.0, 1.0)
    ep_comm = 4.0 * t_a2a
    ep_window = layer_fwd + layer_bwd
    ep_exposed_mb = moe_layers_stage * (ep_comm * (1.0 - f_ep) + np.maximum(ep_comm * f_ep - ep_window, 0.0))

    # ---- pipeline: send activations forward and grads backward at each stage boundary
    pp_payload = act_bytes * micro_batch * (s / cp) * h / np.where(sequence_parallel, tp, 1)
    t_p2p = collective_time("p2p", pp_payload, pp, tp * cp * dp, g.node_size, g.intra_node_bytes_per_s,
                            g.inter_node_bytes_per_s, g.collective_efficiency_intra, g.collective_efficiency_inter,
                            g.collective_latency_s)
    pp_exposed_mb = 2.0 * t_p2p * (1.0 - knobs.pp_overlap)

    mb_time = mb_compute + tp_exposed_mb + cp_exposed_mb + ep_exposed_mb + pp_exposed_mb
    m = grad_accum
    bubble_mb = (pp - 1) / np.maximum(virtual_pp, 1)  # Narayanan 2021 §2.2: bubble = (p-1)/v micro-batch slots
    pipeline_time = mb_time * (m + bubble_mb)

    # ---- data parallel / sharding collectives
    params_local = ((mi.params_total - mi.params_expert) + mi.params_expert / np.maximum(ep, 1)) / (tp * pp)
    grads_local = np.minimum(mi.params_trainable / (tp * pp), params_local)
    dp_stride = tp * cp
    coll = dict(node_size=g.node_size, intra_bytes_per_s=g.intra_node_bytes_per_s,
                inter_bytes_per_s=g.inter_node_bytes_per_s, intra_eff=g.collective_efficiency_intra,
                inter_eff=g.collective_efficiency_inter, latency_s=g.collective_latency_s)
    g_bytes = grads_local * grad_bytes
    # one layout for the DP group: ring time = f * (per_byte * S + latency), f = 2 for all-reduce (comms.py)
    per_b, lat = ring_coefficients(dp, dp_stride, **coll)
    rs = per_b * g_bytes + lat
    ar = 2.0 * rs
    ag_grads = per_b * grads_local * gather_bytes + lat
    # ZeRO++ (Wang et al. 2023): qwZ all-gathers the ZeRO-3 parameters block-quantized to int8 (1 B/param; the fp32
    # scale per quantization block is < 1 % more), qgZ replaces the gradient reduce-scatter by an int4 hierarchical
    # all-to-all (0.5 B/param through the same ring links). zero3_*_bytes > 0 replaces the 16-bit bytes of those
    # collectives only (the host link of parameter offload still moves the 16-bit partition).
    gb3 = np.where(np.asarray(zero3_gather_bytes) > 0, zero3_gather_bytes, gather_bytes)
    rb3 = np.where(np.asarray(zero3_reduce_bytes) > 0, zero3_reduce_bytes, grad_bytes)
    ag_params = per_b * params_local * gb3 + lat
    rs_params = per_b * params_local * rb3 + lat
    # hybrid (HSDP): shard inside the node, all-reduce the shard across nodes
    shard = np.minimum(dp, np.maximum(np.floor(g.node_size / dp_stride), 1))
    per_h, lat_h = ring_coefficients(shard, dp_stride, **coll)
    ag_hyb = per_h * params_local * gb3 + lat_h
    rs_hyb = per_h * params_local * rb3 + lat_h
    ar_hyb = collective_time("all-reduce", g_bytes / shard, dp / shard, dp_stride * shard, **coll)

    window_bwd = mb_bwd  # last micro-batch's backward hides DP gradient traffic
    f_dp, f_fsdp = knobs.dp_overlap, knobs.fsdp_overlap

    def exposed(comm, window, f):
        # a fraction f of the traffic can hide behind `window` seconds of compute; the rest is exposed
        return comm * (1.0 - f) + np.maximum(comm * f - window, 0.0)

    stage0 = exposed(ar, window_bwd, f_dp)
    # ZeRO-1 / distributed optimizer: reduce-scatter grads (overlapped with backward) + all-gather params after step
    stage1 = exposed(rs, window_bwd, f_dp) + exposed(ag_grads, mb_fwd, f_dp)
    # ZeRO-2: reduce-scatter in every micro-batch's backward + all-gather params once per step
    stage2 = m * exposed(rs, window_bwd, f_dp) + exposed(ag_grads, mb_fwd, f_dp)
    # ZeRO-3/FSDP: gather params for forward and again for backward, reduce-scatter grads, every micro-batch
    stage3 = m * (exposed(ag_params, mb_fwd, f_fsdp) + exposed(ag_params + rs_params, window_bwd, f_fsdp))
    # HSDP: the cross-node all-reduce of the shard shares the last micro-batch's backward window
    stage4 = m * exposed(ag_hyb, mb_fwd, f_fsdp) + (m - 1) * exposed(ag_hyb + rs_hyb, window_bwd, f_fsdp) \
        + exposed(ag_hyb + rs_hyb + ar_hyb, window_bwd, f_fsdp)
    dp_exposed = np.where(sharding_code == 0, stage0, np.where(sharding_code == 1, stage1, np.where(
        sharding_code == 2, stage2, np.where(sharding_code == 3, stage3, stage4))))
    dp_total = np.where(sharding_code == 0, ar, np.where(sharding_code == 1, rs + ag_grads, np.where(
        sharding_code == 2, m * rs + ag_grads, np.where(sharding_code == 3, m * (2 * ag_params + rs_params),
                                                        m * (2 * ag_hyb + rs_hyb) + ar_hyb))))
    dp_exposed = np.where(dp > 1, dp_exposed, 0.0)
    dp_total = np.where(dp > 1, dp_total, 0.0)

    # ---- parameter offload (DeepSpeed ZeRO-3 offload_param / ZeRO-Infinity, FSDP CPUOffload(offload_params=True),
    # Colossal-AI Gemini cpu/auto placement): each rank's parameter partition lives in host memory and crosses the
    # host link (PCIe) every time it is gathered, i.e. once for the forward and once for the backward of every
    # micro-batch (the same two gathers as the ZeRO-3/FSDP term above; Ren et al. 2021 ZeRO-Offload §4 data flow,
    # Rajbhandari et al. 2021 ZeRO-Infinity §5.1), and the reduced gradient partition goes back to the host in every
    # backward. The link is full duplex: the backward's H2D fetch and D2H gradient copy run in opposite directions.
    # A share f_fsdp hides behind compute (DeepSpeed prefetch buckets / FSDP forward and backward prefetch).
    state_shards = np.where(sharding_code == 4, shard, dp)  # ranks a ZeRO/FSDP partition is split over (HSDP: node)
    shard_div = np.where(sharding_code >= 3, state_shards, 1)
    link = np.maximum(g.host_link_bytes_per_s, 1.0)
    h2d_pass = params_local / shard_div * gather_bytes / link
    d2h_grads = grads_local / shard_div * grad_bytes / link
    param_off_fwd = exposed(h2d_pass, mb_fwd, f_fsdp)
    param_off_bwd = exposed(np.maximum(h2d_pass, d2h_grads), window_bwd, f_fsdp)
    param_off = np.where(param_offload_code >= 1, m * (param_off_fwd + param_off_bwd), 0.0)
    param_off_total = np.where(param_offload_code >= 1, m * (h2d_pass + np.maximum(h2d_pass, d2h_grads)), 0.0)

    # ---- optimizer step: fused kernel streams param/grad/state bytes through HBM (sharded over DP for ZeRO>=1)
    opt_params = grads_local / np.where(sharding_code >= 1, state_shards, 1)
    opt_gpu = opt_params * optimizer_bytes_per_param / (g.hbm_bytes_per_s * g.hbm_efficiency)
    # offloaded optimizer: grads down + params up over PCIe, Adam on the CPU (ZeRO-Offload, Ren et al. 2021); with the
    # parameters offloaded too, the gradients already went down during the backward and the host copy of the
    # parameters is updated in place (nothing goes back up before the next forward fetches it)
    opt_link = np.where(param_offload_code >= 1, 0.0, opt_params * (grad_bytes + gather_bytes) / link)
    opt_cpu = opt_link + opt_params / knobs.cpu_optimizer_params_per_s
    optimizer = np.where(offload_code >= 1, opt_cpu, opt_gpu)

    step = pipeline_time + dp_exposed + param_off + optimizer + knobs.data_loader_s_per_step

    # ---- classification: compute (GEMM + attention at the math roofline), memory (HBM-bound ops), network
    compute_part = m * layers * (gemm_fwd_compute * (3.0 - mi.frozen_fraction) + attn_fwd + attn_bwd)
    memory_part = m * layers * (elem_fwd + elem_bwd + attn_mem + lora_fwd + lora_bwd) + m * loss + optimizer
    network_part = dp_exposed + param_off + m * (tp_exposed_mb + cp_exposed_mb + ep_exposed_mb + pp_exposed_mb)
    return {
        "step_time_s": step,
        "compute_s": m * mb_compute,
        "gemm_s": m * layers * (gemm_fwd + gemm_bwd + rc_gemm),
        "attention_s": m * layers * (attn_fwd + attn_bwd + attn_mem + rc_attn),
        "elementwise_s": m * layers * (elem_fwd + elem_bwd + rc_elem),
        "lora_adapters_s": m * layers * (lora_fwd + lora_bwd + rc_lora),
        "logits_loss_s": m * head_time,
        "host_overhead_s": m * layers * host + knobs.data_loader_s_per_step,
        "recompute_s": m * layers * layer_rc,
        "bubble_s": mb_time * bubble_mb,
        "tp_comm_s": m * tp_exposed_mb,
        "cp_comm_s": m * cp_exposed_mb,
        "ep_comm_s": m * ep_exposed_mb,
        "pp_comm_s": m * pp_exposed_mb,
        "dp_comm_exposed_s": dp_exposed,
        "dp_comm_total_s": dp_total,
        "optimizer_s": optimizer,
        "param_offload_exposed_s": param_off,
        "param_offload_total_s": param_off_total,
        "compute_bound_s": compute_part,
        "memory_bound_s": memory_part,
        "network_s": network_part,
        "gemm_efficiency_mean": gemm_fwd_compute / np.maximum(gemm_fwd, 1e-30),
    }


# --------------------------------------------------------------------------- scalar API


@dataclass(frozen=True)
class StepEstimate:
    """One optimizer step of one plan. Times in s, rates per s; `breakdown` parts add up to step_time_s."""

    step_time_s: float
    tokens_per_step: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    samples_per_s: float
    model_flops_per_step: float
    """Full-s^2 attention convention (PaLM appendix B / Narayanan eq. 3 / llm-foundry / NeMo)."""
    model_flops_causal_per_step: float
    hardware_flops_per_step: float
    executed_flops_per_step: float
    model_flops_per_s_per_gpu: float
    mfu: float
    """model_flops / (step_time * gpus * dense peak of the compute dtype)."""
    mfu_causal: float
    hfu: float
    peak_flops_per_s: float
    compute_dtype: str
    bound: str
    bound_margin: float
    """Largest of (compute, memory, network) time over the next largest."""
    compute_memory_ratio: float
    breakdown: Mapping[str, float]
    parts: Mapping[str, float]
    terms: tuple[Term, ...] = field(default=())
    six_nd_per_step: float = 0.0


def _f(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


KERNELS = ("fused", "te", "eager", "hf-eager")


def kernel_style(kernel: str) -> str:
    """Elementwise style: 'fused' (fused norm/activation/rope kernels: Megatron, TE, torch.compile, Liger) or
    'eager' (plain PyTorch modules; 'hf-eager' too). 'te' is fused + Transformer Engine/cuDNN attention."""
    return "eager" if "eager" in str(kernel) else "fused"


def uses_te_attention(kernel: str) -> bool:
    """Transformer Engine / cuDNN (FlashAttention-3-class) attention: Megatron-Core and NeMo on Hopper+."""
    return str(kernel).lower() in ("te", "megatron", "nemo", "transformer-engine")


def kernel_args(model: ModelArch, setup: TrainSetup, gpu: GpuSpec, knobs: TimingKnobs, kernel: str = "fused") -> tuple:
    """(ModelInputs, GpuNumbers, keyword plan arguments) for step_kernel from frozen inputs."""
    mi = model_inputs(model, setup)
    g = gpu_numbers(gpu, setup.precision, knobs, kernel, setup.fp8_recipe,
                    cudnn_attention=setup.attention == Attention.CUDNN)
    prec = setup.precision.value
    act_bytes = 4.0 if setup.precision in (Precision.FP32, Precision.TF32) else 2.0
    gemm_bytes = 1.0 if compute_dtype(gpu, setup.precision) == "fp8" else act_bytes
    opt_b = knobs.optimizer_bytes_per_param
    if not setup.fused_optimizer:  # foreach step: separate multi-tensor kernels, more HBM passes (timing.yaml)
        opt_b = {**opt_b, **knobs.optimizer_bytes_per_param_foreach}
    plan = dict(
        tp=setup.tp, pp=setup.pp, dp=setup.dp, cp=setup.cp, ep=setup.ep, micro_batch=setup.micro_batch,
        grad_accum=setup.grad_accum, seq_len=setup.seq_len, sharding_code=SHARDING_CODE[setup.sharding],
        recompute_code=RECOMPUTE_CODE[setup.recompute], sequence_parallel=int(setup.sequence_parallel),
        virtual_pp=setup.virtual_pp if setup.pp > 1 else 1, offload_code=OFFLOAD_CODE[setup.offload_optimizer],
        act_bytes=act_bytes, gemm_bytes=gemm_bytes, flash=setup.attention.fused,
        grad_bytes=({"bf16": 2.0, "fp32": 4.0}.get(setup.grad_reduce_dtype)
                    or float(knobs.grad_reduce_bytes.get(prec, act_bytes))),
        gather_bytes=float(knobs.param_gather_bytes.get(prec, act_bytes)),
        optimizer_bytes_per_param=float(opt_b.get(setup.optimizer.value, opt_b.get("adamw", 36.0))),
        # eager AMP; step_kernel applies it only where sharding_code is 0 (FSDP/ZeRO-3 cast at gather instead)
        autocast_weight_cast=bool(kernel_style(kernel) == "eager"
                                  and setup.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED)),
        # fp32 PEFT adapters (the job's lora_fp32_adapters, as in memory) under autocast: input cast up and back
        lora_input_cast=bool(setup.lora_fp32_adapters
                             and setup.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED)),
        dropout=setup.dropout, kernel=kernel, lora_impl_code=LORA_IMPL_CODE[setup.lora_impl],
        lora_dropout=setup.lora_dropout, recompute_fraction=setup.recompute_fraction,
        tp_overlap=setup.tp_comm_overlap, ep_overlap=setup.ep_comm_overlap,
        fp8_cast_bytes=float(knobs.fp8_recipe_cast_bytes.get(setup.fp8_recipe.value, 3.0)),
        moe_capacity_factor=setup.moe_capacity_factor, moe_pad_to_capacity=setup.moe_pad_to_capacity,
        first_stage_layers=setup.pp_first_stage_layers if setup.pp > 1 else 0,
        last_stage_layers=setup.pp_last_stage_layers if setup.pp > 1 else 0,
        param_offload_code=OFFLOAD_CODE[setup.offload_params], cp_impl_code=CP_IMPL_CODE[setup.cp_impl],
        zero3_gather_bytes=ZEROPP_QWZ_BYTES if setup.zero_quantized_weights else 0.0,
        zero3_reduce_bytes=ZEROPP_QGZ_BYTES if setup.zero_quantized_gradients else 0.0,
        attention_span=setup.packed_doc_tokens,
    )
    return mi, g, plan


def estimate_step(model: ModelArch, setup: TrainSetup, gpu: GpuSpec, knobs: TimingKnobs | None = None,
                  kernel: str = "fused") -> StepEstimate:
    """Step time, throughput, MFU/HFU and what bounds the step, for one plan.

    kernel: "fused" (fused norm/activation/rope kernels, FlashAttention-2-class attention: the default),
    "te" (fused + Transformer Engine/cuDNN attention, Megatron-Core/NeMo on Hopper/Blackwell), or
    "hf-eager"/"eager" (plain PyTorch modules: Hugging Face, llm-foundry, torchtune without compile).
    """
    knobs = knobs or default_knobs()
    mi, g, plan = kernel_args(model, setup, gpu, knobs, kernel)
    out = {k: _f(v) for k, v in step_kernel(mi, g, knobs, **plan).items()}
    fl = flops_per_step(model, setup)
    step = out["step_time_s"]
    gpus = setup.tp * setup.pp * setup.cp * setup.dp
    tokens = float(setup.tokens_per_step)
    peak = float(g.peak_flops_per_s)
    tps = tokens / step
    mfu = fl.model_flops / (step * gpus * peak) if peak > 0 else 0.0
    mfu_c = fl.model_flops_causal / (step * gpus * peak) if peak > 0 else 0.0
    hfu = fl.hardware_flops / (step * gpus * peak) if peak > 0 else 0.0

    breakdown = {
        "compute/gemm": out["gemm_s"],
        "compute/attention": out["attention_s"],
        "compute/elementwise": out["elementwise_s"],
        "compute/lora_adapters": out["lora_adapters_s"],
        "compute/logits_loss": out["logits_loss_s"],
        "compute/host_overhead": out["host_overhead_s"],
        "pipeline_bubble": out["bubble_s"],
        "comm/tensor_parallel": out["tp_comm_s"],
        "comm/context_parallel": out["cp_comm_s"],
        "comm/expert_parallel": out["ep_comm_s"],
        "comm/pipeline_p2p": out["pp_comm_s"],
        "comm/data_parallel_exposed": out["dp_comm_exposed_s"],
        "optimizer_step": out["optimizer_s"],
        "comm/param_offload_exposed": out["param_offload_exposed_s"],
    }
    # the parts add up to the step (host overhead and recompute are inside compute already)
    parts = {"compute": out["compute_bound_s"], "memory": out["memory_bound_s"], "network": out["network_s"]}
    ranked = sorted(parts.items(), key=lambda kv: kv[1], reverse=True)
    bound = ranked[0][0]
    margin = ranked[0][1] / ranked[1][1] if ranked[1][1] > 0 else float("inf")
    margin = min(margin, 1e6)
    ratio = parts["compute"] / parts["memory"] if parts["memory"] > 0 else 1e6

    src = dict(gpu.sources) if gpu.sources else {}
    ks = dict(knobs.sources)
    terms = list(fl.terms) + [
        Term("time/gemm", out["gemm_s"], "s",
             "m * L/p * sum_gemm max(2*M*k*n/t / (peak*eta(F)), bytes/(HBM*eta_hbm)) * (fwd 1 + bwd 2 [+ recompute 1])",
             {"m": setup.grad_accum, "L/p": model.num_layers / setup.pp, "M_tokens": setup.micro_batch * setup.seq_len / setup.cp,
              "t": setup.tp, "peak_flops_per_s": peak, "dtype": compute_dtype(gpu, setup.precision),
              "eta_mean": out["gemm_efficiency_mean"], "hbm_bytes_per_s": gpu.hbm_bytes_per_s},
             "roofline (Williams 2009); eta(F): catalog matmul_efficiency curve " + src.get("matmul_efficiency", gpu.id)),
        Term("time/attention", out["attention_s"], "s",
             "flash: F_fwd/(peak*size(F)*eff_fwd) + 2.5*F_fwd/(peak*size(F)*eff_bwd), F_fwd = 2*M*(s/2)*(q+v dims)/t",
             {"eff_fwd": g.attention_fwd_efficiency, "eff_bwd": g.attention_bwd_efficiency,
              "attention": setup.attention.value},
             ks.get("attention_efficiency", "timing.yaml")),
        Term("time/elementwise", out["elementwise_s"], "s",
             "m * L/p * bytes(norms, residuals, activation, rotary) * (1 + bwd_factor) / (HBM * eta_hbm)",
             {"kernel": kernel_style(kernel), "passes_hidden": knobs.elementwise_passes_hidden_fwd[kernel_style(kernel)],
              "passes_ffn": knobs.elementwise_passes_ffn_fwd[kernel_style(kernel)],
              "eager_rmsnorm_extra_passes_per_layer": (knobs.eager_rmsnorm_extra_passes * mi.rmsnorms_per_layer
                                                       if kernel_style(kernel) == "eager" else 0.0),
              "hbm_efficiency": g.hbm_efficiency}, ks.get("elementwise_passes_hidden_fwd", "timing.yaml")),
        *([Term("time/lora_adapters", out["lora_adapters_s"], "s",
                "m * L/p * [max(G+g, C+n*d) - max(G, C)] fwd and bwd; g = sum_targets roofline of A 2*M*k*r, B 2*M*r*n "
                "(bwd: dB, d(xA), dA, dx_lora) (+ eager PEFT scale/add/dX-accumulate/casts/dropout), n kernels, "
                "d dispatch, G base layer GPU time, C base host time",
                {"lora_impl": setup.lora_impl.value, "r": setup.lora_rank, "targets": ",".join(setup.lora_targets),
                 "lora_dropout": setup.lora_dropout, "eager_op_dispatch_s": knobs.eager_op_dispatch_s,
                 "kernels_per_layer_fwd_bwd": sum(_f(x) for x in lora_adapter_time(
                     mi, g, setup.micro_batch * setup.seq_len / setup.cp, setup.tp, plan["act_bytes"],
                     plan["lora_impl_code"], setup.lora_dropout, plan["lora_input_cast"])[2:]),
                 "host_overhead_s_per_layer_microbatch": knobs.host_overhead_s_per_layer_microbatch},
                "Hu et al. 2021 (LoRA eq. 3); huggingface/peft tuners/lora/layer.py Linear.forward; unslothai/unsloth "
                "kernels/utils.py matmul_lora; dispatch: " + ks.get("eager_op_dispatch_s", "timing.yaml"))]
          if setup.peft != Peft.NONE else []),
        *([Term("moe/load_imbalance", _f(moe_imbalance(mi, setup)), "x",
                "busiest EP rank / mean = 1 + e(ep)/sqrt(M*K) (dropless) | min(that, C) (capacity C) | C (padded); "
                "applied to expert GEMMs, permutation traffic and the all-to-all",
                {"ep": setup.ep, "M_tokens": setup.micro_batch * setup.seq_len / setup.cp, "K": model.experts_per_token,
                 "E": model.num_experts, "capacity_factor": setup.moe_capacity_factor,
                 "pad_to_capacity": setup.moe_pad_to_capacity,
                 "routing_bytes_per_moe_layer_fwd": "16*M*E + bytes*M*h*(2 + 2K)*imbalance"},
                "multinomial token-to-rank counts, normal approximation; e(n) expected max of n N(0,1) (Raab & Steger "
                "1998); Megatron-Core moe_utils permute/unpermute, fp32 router; Switch/GShard capacity")]
          if model.is_moe else []),
        Term("time/logits_loss", out["logits_loss_s"], "s", "m * (3 * logits GEMM + V*M*bytes_per_vocab/HBM)",
             {"V": model.vocab_size, "bytes_per_vocab": knobs.logits_bytes_per_vocab_token},
             ks.get("logits_bytes_per_vocab_token", "timing.yaml")),
        Term("time/pipeline_bubble", out["bubble_s"], "s", "microbatch_time * (p-1)/v",
             {"p": setup.pp, "v": setup.virtual_pp, "m": setup.grad_accum},
             "Narayanan et al. 2021 §2.2 (1F1B / interleaved bubble (p-1)/(m*v))"),
        Term("time/tensor_parallel_comm", out["tp_comm_s"], "s",
             "m * L/p * [c*(1-f) + max(0, c*f - GEMM time)], c = (4 | +2 full recompute | +1 attention-only) * "
             "all-reduce(b*s*h*bytes, t)",
             {"t": setup.tp, "tp_overlap": knobs.tp_overlap if setup.tp_comm_overlap is None else setup.tp_comm_overlap,
              "tp_overlap_source": "job (tp_comm_overlap)" if setup.tp_comm_overlap is not None else "timing.yaml"},
             "Shoeybi et al. 2019 §3 (2 all-reduces fwd + 2 bwd per layer); overlap: Megatron-LM --tp-comm-overlap "
             "(Transformer Engine userbuffers), off by default"),
        *([Term("time/context_parallel_comm", out["cp_comm_s"], "s",
                "ring: m * L/p * max(c - f*attention, (1-f)*c), c = 3*(cp-1)*b*(s/cp)*2*kv*bytes/(B*eff); ulysses: "
                "m * L/p * (2 [+1 recompute]) * all-to-all(M*(q + 2 kv + o widths)*bytes/t, cp), not overlapped",
                {"cp": setup.cp, "cp_impl": setup.cp_impl.value, "cp_overlap": knobs.cp_overlap},
                "ring attention (Liu et al. 2023; Megatron CP); DeepSpeed-Ulysses (Jacobs et al. 2023 §3, "
                "deepspeed/sequence/layer.py DistributedAttention)")]
          if setup.cp > 1 else []),
        *([Term("time/expert_parallel_comm", out["ep_comm_s"], "s",
                "m * MoE layers/p * [c*(1-f) + max(0, c*f - layer compute)], c = 4 * all-to-all(M*K*h*bytes, ep)",
                {"ep": setup.ep, "ep_overlap": knobs.ep_overlap if setup.ep_comm_overlap is None
                 else setup.ep_comm_overlap, "experts_per_token": model.experts_per_token},
                "GShard (Lepikhin 2020) dispatch + combine, fwd + bwd; overlap: Megatron-LM "
                "--overlap-moe-expert-parallel-comm, DeepSeek-V3 DualPipe (off by default)")]
          if model.is_moe and setup.ep > 1 else []),
        Term("time/data_parallel_comm_exposed", out["dp_comm_exposed_s"], "s",
             "sum over collectives of c*(1-f) + max(0, c*f - window)  (window = backward / forward compute)",
             {"dp": setup.dp, "sharding": setup.sharding.value, "total_comm_s": out["dp_comm_total_s"],
              "dp_overlap": knobs.dp_overlap, "fsdp_overlap": knobs.fsdp_overlap,
              "inter_node_bytes_per_s": gpu.inter_node_bytes_per_s, "intra_node_bytes_per_s": gpu.intra_node_bytes_per_s},
             "DDP all-reduce / ZeRO RS+AG / FSDP AG fwd+bwd + RS (Rajbhandari 2020 §7; Zhao 2023); ring formulas nccl-tests"),
        *([Term("time/param_offload_exposed", out["param_offload_exposed_s"], "s",
                "m * [c_f*(1-f) + max(0, c_f*f - fwd) + c_b*(1-f) + max(0, c_b*f - bwd)], c_f = P_part*bytes/link, "
                "c_b = max(c_f, G_part*grad_bytes/link) (full duplex)",
                {"offload_params": setup.offload_params.value, "total_link_s": out["param_offload_total_s"],
                 "host_link_bytes_per_s": gpu.host_link_bytes_per_s, "fsdp_overlap": knobs.fsdp_overlap},
                "ZeRO-Offload (Ren et al. 2021) §4; ZeRO-Infinity (Rajbhandari et al. 2021) §5.1; FSDP CPUOffload; "
                "Colossal-AI Gemini placement_policy cpu/auto")]
          if setup.offload_params.value != "none" else []),
        Term("time/optimizer", out["optimizer_s"], "s", "params_local/shards * bytes_per_param / (HBM * eta_hbm)",
             {"optimizer": setup.optimizer.value, "offload": setup.offload_optimizer.value},
             ks.get("optimizer_bytes_per_param", "timing.yaml")),
        Term("time/step", step, "s", "(microbatch_time) * (m + (p-1)/v) + exposed DP comm + optimizer + data loader",
             {k: round(v, 6) for k, v in breakdown.items()}, "sum of the parts above"),
        Term("throughput/tokens_per_s", tps, "tokens/s", "global_batch * s / step_time",
             {"global_batch": setup.global_batch, "s": setup.seq_len, "step_time_s": step}, ""),
        Term("efficiency/mfu", mfu, "fraction", "model_flops_per_step / (step_time * gpus * peak)",
             {"model_flops": fl.model_flops, "gpus": gpus, "peak_flops_per_s": peak},
             "PaLM (Chowdhery 2022) appendix B; attention over full s^2"),
        Term("efficiency/hfu", hfu, "fraction", "(model + recompute FLOPs) / (step_time * gpus * peak)",
             {"hardware_flops": fl.hardware_flops}, "PaLM appendix B"),
        Term("bound", margin, "x", f"max(compute, memory, network) / second = {bound}",
             {k: round(v, 6) for k, v in parts.items()} | {"compute/memory": ratio},
             "roofline: compute = GEMM+attention at eta*peak; memory = HBM-bound ops; network = exposed comm"),
    ]
    return StepEstimate(
        step_time_s=step, tokens_per_step=tokens, tokens_per_s=tps, tokens_per_s_per_gpu=tps / gpus,
        samples_per_s=setup.global_batch / step, model_flops_per_step=fl.model_flops,
        model_flops_causal_per_step=fl.model_flops_causal, hardware_flops_per_step=fl.hardware_flops,
        executed_flops_per_step=fl.executed_flops, model_flops_per_s_per_gpu=fl.model_flops / step / gpus,
        mfu=mfu, mfu_causal=mfu_c, hfu=hfu, peak_flops_per_s=peak, compute_dtype=compute_dtype(gpu, setup.precision),
        bound=bound, bound_margin=margin, compute_memory_ratio=ratio, breakdown=breakdown, parts=parts,
        terms=tuple(terms), six_nd_per_step=fl.six_nd,
    )
