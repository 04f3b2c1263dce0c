"""Training memory per GPU, as a breakdown that sums to the peak, and the fit check.

PURE: no file I/O. Symbols: V vocab, h hidden, L layers, a heads, k KV heads, d head dim, f FFN size,
s sequence length, b micro-batch, t/p/c/e tensor/pipeline/context/expert parallel degrees,
N_sh the sharding group (data-parallel ranks that split a ZeRO/FSDP state), Psi parameters.

Structure:
  * `memory_components(model, *, tp, pp, dp, cp, ep, micro_batch, seq_len, sharding_code, ...)` is the
    array-agnostic numeric heart: every plan-varying input may be a numpy array (the plan search calls it
    with ~1e6 plans at once) or a Python number. No Python `if` on those inputs; enums arrive as integer
    codes (`SHARDING_CODE`, `RECOMPUTE_CODE`, `OFFLOAD_CODE`, `SCHEDULE_CODE`).
  * `estimate_memory(model, setup, ...)` wraps it for one TrainSetup, returns a frozen `MemoryEstimate`
    with `per_gpu` (sums to `peak_allocated_bytes`), reserved bytes, host bytes, fit, reasons and terms.
  * `suggest_fixes(...)` tries the usual changes and reports the memory each would give.
  * `check_setup(model, setup)` lists what is inconsistent in a setup (the CLI turns it into exit 2).

The peak is the maximum over three phases of one step, on the worst pipeline stage:
  fwd  end of forward (saved activations + autocast weight casts + loss head saved tensors),
  bwd  start of backward (fwd + loss-head gradient temporaries),
  bwd_end  backward of the stage's first layer: (nearly) all gradients exist, that layer's saved (or
       recomputed) tensors and its backward temporaries are live, and
  opt  optimizer step (all gradients + optimizer temporaries, no activations).
Sources: ZeRO (Rajbhandari et al. 2020, Sec. 3.1, 5: 2Psi+2Psi+K*Psi, K=12); Korthikanti et al. 2022
(arXiv:2205.05198) Sec. 4, eq. 1-2 and Table 2 for activations; Megatron-LM
`theoretical_memory_usage.py` (18 + 4f/h per token, distributed optimizer 6 + 12/dp B/param);
Dettmers et al. 2023 (QLoRA, Sec. 3: NF4 + double quantization 0.127 bit/param); measured HF-eager
saved tensors from /work/shared/reference/trace_feasibility.md (Llama bf16 45.5 sbh, GPT-2 62.1/92.3 sbh).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from sizeup.core.explain import Term
from sizeup.core.flops import decoder_ratio, head_width, op_sac_saved_mms
from sizeup.core.params import attention_params, count_params, mlp_params, moe_params, norm_params
from sizeup.core.types import (
    GATED_GELU_NEW_MODEL_TYPES, GELU_NEW_MODEL_TYPES, ArchKind, Attention, ContextParallel, GpuSpec, HeadKind, MlpKind, ModelArch, NormKind, Offload, Optimizer,
    Overheads, Peft, PipelineSchedule, Precision, Recompute, Sharding, TrainSetup,
)

# --------------------------------------------------------------------------- integer codes (array kernel)

SHARDING_CODE: dict[Sharding, int] = {
    Sharding.NONE: 0, Sharding.ZERO1: 1, Sharding.ZERO2: 2, Sharding.ZERO3: 3,
    Sharding.FSDP_FULL: 4, Sharding.FSDP_GRAD_OP: 5, Sharding.FSDP_HYBRID: 6, Sharding.MEGATRON_DISTOPT: 7,
}
RECOMPUTE_CODE: dict[Recompute, int] = {Recompute.NONE: 0, Recompute.SELECTIVE: 1, Recompute.FULL: 2,
                                        Recompute.OP_SAC: 3, Recompute.ATTENTION_ONLY: 4,
                                        Recompute.LAYER_FRACTION: 5}
OFFLOAD_CODE: dict[Offload, int] = {Offload.NONE: 0, Offload.CPU: 1, Offload.NVME: 2}
SCHEDULE_CODE: dict[PipelineSchedule, int] = {
    PipelineSchedule.ONE_F_ONE_B: 0, PipelineSchedule.INTERLEAVED: 1, PipelineSchedule.GPIPE: 2,
}
KERNELS = ("fused", "hf-eager")
# Loss-head implementations: bytes per token per vocabulary entry (saved in forward, extra at the start of
# backward). None = the kernel's default ("vocab-parallel" for fused, "full" for hf-eager).
LOSS_IMPLS = {
    # HF ForCausalLMLoss: logits.float() -> log_softmax output kept (4V); backward start holds the nll
    # gradient (4V) and the log_softmax input gradient (4V) (trace_feasibility.md: GPT-2 b8 s1024 peak
    # 9.69 GiB = P + 2S + act + 8V*tokens)
    "full": (4.0, 8.0),
    # Megatron vocab-parallel cross entropy: fp32 softmax kept (4V), gradient computed in place and cast to
    # 16 bit for the head backward (2V) (Korthikanti 2022 Sec. 4.1: 4sbv for the output layer)
    "vocab-parallel": (4.0, 2.0),
    # torchtune CEWithChunkedOutputLoss (8 chunks, compiled): bf16 logits kept (2V), one chunk's fp32
    # logits/grad temporaries (12V/8) (torchtune README: +chunked CE saves 8.1 GiB on Llama-3.2-3B b2 s4096)
    "chunked": (2.0, 1.5),
    # fused linear cross entropy (Liger-Kernel, Apple cut-cross-entropy): no V-wide tensor is kept; chunked
    # fp32 logits while the loss is computed
    "fused-linear": (0.0, 0.5),
}
PHASES = ("fwd", "bwd", "bwd_end", "opt")

# codes grouped by what they shard
_OPT_SHARDED = (1, 2, 3, 4, 5, 6, 7)        # optimizer states + master weights split over N_sh
_GRAD_SHARDED = (2, 3, 4, 5, 6)             # gradients split over N_sh
_PARAM_SHARDED = (3, 4, 6)                  # parameters split over N_sh (gathered layer by layer)
_DEEPSPEED = (1, 2, 3)                      # DeepSpeed keeps 16-bit params/grads + fp32 master (ZeRO paper)
_FSDP = (4, 5, 6)                           # FSDP keeps fp32 sharded params, casts a bf16 copy to compute
OFFLOAD_REDUCE_BUCKET_ELEMS = 5e8  # DeepSpeed zero_optimization.reduce_bucket_size default (elements)
# Colossal-AI Gemini placement_policy="auto": "steady_cuda_cap_ratio: ratio of allowed cuda capacity for model data
# during steady state ... Defaults to 0.9" (colossalai/booster/plugin/gemini_plugin.py GeminiPlugin docstring)
GEMINI_STEADY_CUDA_CAP_RATIO = 0.9

# Component keys of `per_gpu` (slash paths; values in bytes, summing to peak_allocated_bytes).
COMPONENTS = (
    "model/weights",
    "model/adapter_weights",
    "gradients",
    "optimizer/states",
    "optimizer/master_weights",
    "optimizer/temporaries",
    "activations/layers",
    "activations/backward_layer",
    "activations/logits_loss",
    "activations/weight_casts",
    "buffers/gathered_params",
    "buffers/comm_buckets",
)

LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")

# QLoRA (Dettmers et al. 2023, Sec. 3): NF4 = 4 bit/param; double quantization stores one 8-bit absmax
# per 64 weights plus one fp32 constant per 256 blocks: 8/64 + 32/(64*256) = 0.127 bit/param.
NF4_BYTES_PER_PARAM = (4 + 8 / 64 + 32 / (64 * 256)) / 8
# bitsandbytes 8-bit blockwise optimizers: two uint8 states + one fp32 absmax per 2048-element block
# (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization", Sec. 2).
ADAM8BIT_BYTES_PER_PARAM = 2 + 2 * 4 / 2048
# HF transformers GPT-2-family MLPs use the unfused tanh GELU ("gelu_new"): 4 saved intermediates + output
# (core.types.GELU_NEW_MODEL_TYPES, the one list the step-time model reads too; GPTBigCode's default
# "gelu_pytorch_tanh" is one F.gelu kernel)
_GELU_NEW_TYPES = GELU_NEW_MODEL_TYPES
_GATED_GELU_NEW_TYPES = GATED_GELU_NEW_MODEL_TYPES


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU training memory. `per_gpu` sums to `peak_allocated_bytes` (what
    torch.cuda.max_memory_allocated reports); `peak_reserved_bytes` is what nvidia-smi shows."""

    per_gpu: Mapping[str, float]
    peak_allocated_bytes: float
    peak_reserved_bytes: float
    host_bytes: float
    gpu_memory_bytes: float | None
    headroom_bytes: float | None
    fits: bool | None
    reasons: tuple[str, ...]
    terms: tuple[Term, ...] = field(default=())
    activation_bytes: float = 0.0
    model_state_bytes: float = 0.0
    nvme_bytes: float = 0.0
    overhead_bytes: Mapping[str, float] = field(default_factory=dict)
    peak_phase: str = "bwd"
    worst_stage: str = "first"
    kernel: str = "fused"
    phase_totals: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Suggestion:
    """One change that reduces memory: what to change, the resulting setup, and what it gives."""

    change: str
    setup: TrainSetup
    peak_reserved_bytes: float
    fits: bool
    peak_allocated_bytes: float = 0.0
    cost: str = ""
    gpus: int = 1


# --------------------------------------------------------------------------- precision semantics


def _dtype_bytes(precision: Precision) -> float:
    """Bytes of one activation element in the forward pass (fp8 GEMM inputs are handled apart)."""
    return 4.0 if precision in (Precision.FP32, Precision.TF32) else 2.0


# fp8 weight copies per matmul parameter by recipe: Transformer Engine delayed/current tensor scaling keeps one fp8
# copy (1 B, the count used so far); rowwise, block (1x128 with fp32 scales) and MXFP8 (32-element blocks, 1-byte
# e8m0 scales) keep the weight scaled along both axes, rowwise and columnwise (TE Float8BlockScaling /
# MXFP8BlockScaling quantize both usages; torchao rowwise casts the weight for forward and again for dgrad):
# 2 x (1 + scale bytes per element).
FP8_WEIGHT_COPY_BYTES = {"delayed": 1.0, "tensorwise": 1.0, "rowwise": 2.0 * (1.0 + 4.0 / 4096),
                         "blockwise": 2.0 * (1.0 + 4.0 / 128)}


def state_bytes(precision: Precision, kernel: str, sharding_code: Any, fp8_recipe: str = "delayed") -> dict[str, Any]:
    """Bytes per trainable parameter of weights (w), gradients (g), fp32 master (m), the element size
    of optimizer states (s), autocast weight-cast bytes per matmul param (cast), and `amp` (fp32 residual
    stream, torch.autocast). Arrays over `sharding_code` allowed.

    Conventions (sources):
      fp32/tf32: 4/4/0, states fp32.
      bf16 (pure): 2/2/0, states bf16 (trace_feasibility.md "bf16": P+G+2S all bf16).
      *-mixed, DeepSpeed ZeRO or the fused (Megatron/DeepSpeed) kernel without sharding: 2/2/4 + K
        (ZeRO paper Sec. 3.1: 2Psi + 2Psi + 12Psi for Adam).
      *-mixed, Megatron distributed optimizer: 2/4/4 (fp32 main grads; Megatron 6 + 12/dp B/param).
      *-mixed, FSDP: fp32 sharded params and grads 4/4/0 + a bf16 compute copy gathered per layer.
      *-mixed, hf-eager without sharding (torch.autocast): 4/4/0 + a bf16 cast of every Linear weight
        held from its forward to its backward (2 B/param, trace_feasibility.md: 12.3 GiB for 7B).
      fp8 (Transformer Engine): as *-mixed fused + an fp8 copy of each GEMM weight (1 B/param).
    """
    code = np.asarray(sharding_code)
    ones = np.ones_like(code, dtype=float)
    if precision in (Precision.FP32, Precision.TF32):
        return {"w": 4 * ones, "g": 4 * ones, "m": 0 * ones, "s": 4.0, "cast": 0 * ones, "amp": 0 * ones}
    if precision == Precision.BF16:
        return {"w": 2 * ones, "g": 2 * ones, "m": 0 * ones, "s": 2.0, "cast": 0 * ones, "amp": 0 * ones}
    is_fsdp = np.isin(code, _FSDP)
    is_distopt = code == 7
    eager_amp = (kernel == "hf-eager") & (code == 0)
    w = np.where(is_fsdp | eager_amp, 4.0, 2.0) * ones
    g = np.where(is_fsdp | eager_amp | is_distopt, 4.0, 2.0) * ones
    m = np.where(is_fsdp | eager_amp, 0.0, 4.0) * ones
    cast = np.where(eager_amp, 2.0, 0.0) * ones
    if precision == Precision.FP8:
        cast = cast + FP8_WEIGHT_COPY_BYTES.get(str(fp8_recipe), 1.0)
    return {"w": w, "g": g, "m": m, "s": 4.0, "cast": cast, "amp": np.where(eager_amp, 1.0, 0.0) * ones}


def optimizer_state_bytes(optimizer: Optimizer, s: float, factored_fraction: float = 1.0) -> float:
    """Optimizer state bytes per trainable parameter. s: bytes of one state element.

    adamw: 2 moments (Loshchilov & Hutter 2019) -> 2s; adam8bit: 2 uint8 + block absmax (bitsandbytes);
    adafactor: factored second moment, rows + cols per matrix, no first moment (Shazeer & Stern 2018,
    Alg. 4; `factored_fraction` = sum(rows+cols over matrices + numel of vectors) / Psi);
    sgd: one momentum buffer; lion: one momentum buffer (Chen et al. 2023, Alg. 1).
    """
    if optimizer == Optimizer.ADAMW:
        return 2 * s
    if optimizer == Optimizer.ADAM8BIT:
        return ADAM8BIT_BYTES_PER_PARAM
    if optimizer == Optimizer.ADAFACTOR:
        return s * factored_fraction
    return s  # sgd (momentum), lion


def foreach_temp_fraction(optimizer: Optimizer) -> float:
    """Extra temporary (in params, state dtype) the foreach (multi-tensor, non-fused) step allocates.

    torch.optim.AdamW(foreach=True) computes `torch._foreach_sqrt(exp_avg_sq)` for the whole param
    group: +1 x params (trace_feasibility.md: Llama-7B peak = P+G+2S+tmp exactly). Lion's foreach
    update builds one interpolated copy; SGD-momentum updates in place; bitsandbytes 8-bit is fused.
    """
    return {Optimizer.ADAMW: 1.0, Optimizer.LION: 1.0, Optimizer.ADAFACTOR: 1.0}.get(optimizer, 0.0)


# --------------------------------------------------------------------------- model-derived statics


def _linear_shapes(m: ModelArch) -> dict[str, tuple[int, int]]:
    """(in, out) of each Linear of one dense layer, by LoRA target name."""
    h = m.hidden_size
    shapes = {"q": (h, m.q_dim), "k": (h, m.kv_dim), "v": (h, m.kv_dim), "o": (m.attn_out_dim, h)}
    if m.is_mla:
        shapes["k"] = (h, m.kv_lora_rank + m.qk_rope_head_dim)
        shapes["v"] = (m.kv_lora_rank, m.num_heads * (m.qk_nope_head_dim + m.v_head_dim))
    if m.mlp_kind.gated:
        shapes.update(gate=(h, m.ffn_size), up=(h, m.ffn_size), down=(m.ffn_size, h))
    else:
        shapes.update(up=(h, m.ffn_size), down=(m.ffn_size, h))
    return shapes


def _adafactor_fraction(m: ModelArch) -> float:
    """sum over matrices of (rows + cols) + numel of vectors, divided by Psi (Adafactor factoring)."""
    pc = count_params(m)
    h, V = m.hidden_size, m.vocab_size
    matrices = list(_linear_shapes(m).values())
    factored = m.num_layers * sum(a + b for a, b in matrices)
    matrix_params = m.num_layers * sum(a * b for a, b in matrices)
    n_moe = m.num_moe_layers
    if n_moe:
        fe = m.expert_ffn_size
        per_expert = (3 if m.mlp_kind.gated else 2)
        factored += n_moe * (m.num_experts * per_expert * (h + fe) + h + m.num_experts)
        matrix_params += n_moe * (m.num_experts * per_expert * h * fe + h * m.num_experts)
        if m.mlp_kind.gated:  # dense-MLP shapes were counted for MoE layers too: remove them
            factored -= n_moe * 3 * (h + m.ffn_size)
            matrix_params -= n_moe * 3 * h * m.ffn_size
        else:
            factored -= n_moe * 2 * (h + m.ffn_size)
            matrix_params -= n_moe * 2 * h * m.ffn_size
    factored += V + h  # token embedding
    matrix_params += V * h
    if not m.tie_embeddings:
        factored += V + h
        matrix_params += V * h
    vectors = max(0, pc.total - matrix_params)
    return (factored + vectors) / max(1, pc.total)


@dataclass(frozen=True)
class _Statics:
    """Everything about the model (and the plan-constant choices) the kernel needs, as plain floats."""

    L: int
    h: int
    V: int
    a: int
    k: int
    d: int
    layer_tp: float          # per-layer params split by TP (attention, dense MLP), averaged over layers
    layer_rep: float         # per-layer params replicated across TP (norms, router)
    layer_exp: float         # per-layer routed-expert params (split by TP x EP), averaged over layers
    emb: float               # token (+ position, embed norm) params on the first stage (split by TP)
    pos_emb: float           # learned position table params (part of emb)
    head: float              # output head + final norm on the last stage (0 output head when tied)
    tied: bool
    largest_unit: float      # largest FSDP/ZeRO-3 gather unit (a layer, the embedding or the head)
    layer_unit: float        # params of the largest transformer layer (the prefetched FSDP unit)
    largest_linear: float    # largest single Linear weight of a layer (QLoRA dequantizes one at a time)
    mm_layer: float          # matmul weights per layer (autocast casts these)
    mm_head: float           # matmul weights of the output head (always a Linear, tied or not)
    adapter_layer: float     # LoRA adapter params per layer
    quant_layer: float       # base params per layer held in NF4 under QLoRA (the Linear weights)
    adafactor_fraction: float
    act: Mapping[str, float]  # per-token per-layer activation coefficients (see _layer_activation)
    act_ckpt: float          # bytes per token kept per layer under full recompute (the layer input)
    logits_saved: float      # bytes per token of loss-head tensors saved in forward (before /t)
    logits_temp: float       # extra bytes per token at the start of backward (before /t)
    final_act: float         # bytes per token of final-norm / head-input tensors (last stage)
    bwd_temp: float          # bytes per token of gradient temporaries inside one layer's backward (before /t)
    act_names: tuple[tuple[str, float, str], ...]
    act_sac: Mapping[str, float] = field(default_factory=dict)
    """per-token per-layer coefficients kept under torchtitan op-level SAC (see op_sac_saved_tensors)"""
    act_attn_only: Mapping[str, float] = field(default_factory=dict)
    """per-token per-layer coefficients kept when only the attention sublayer is checkpointed"""
    amp_alt: "_Statics | None" = None  # the same model under torch.autocast (hf-eager, *-mixed)


def _layer_activation(m: ModelArch, setup_consts: dict, moe_layer: bool) -> list[tuple[str, float, str]]:
    """Saved tensors of one transformer layer, per token, as (name, bytes, kind).

    kind: "rep" replicated across TP unless sequence parallel, "div" split by TP, "kv" split by
    min(t, k) (K/V heads are replicated when t > k), "s2" multiplied by the attention length s
    (score matrices of the math path), "lse" per-head fp32 log-sum-exp (split by TP).
    """
    kernel = setup_consts["kernel"]
    e = setup_consts["e"]            # activation element bytes (2 for 16-bit, 4 for fp32)
    amp = setup_consts["amp"]        # torch.autocast: fp32 residual, bf16 matmul inputs
    fp8 = setup_consts["fp8"]        # TE: GEMM inputs stashed in fp8
    drop = setup_consts["dropout"] > 0
    math_attn = setup_consts["math"]
    train = setup_consts["trainable"]  # Linear name -> its input must be saved (weight grad or adapter)
    full_ft = setup_consts["full_ft"]
    h, q, kv, o = m.hidden_size, m.q_dim, m.kv_dim, m.attn_out_dim
    if m.is_mla:
        kv_k = m.num_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim)
    else:
        kv_k = kv
    out: list[tuple[str, float, str]] = []
    if moe_layer:
        f_mlp = m.expert_ffn_size
        mult = m.experts_per_token
    else:
        f_mlp = m.ffn_size
        mult = 1
    gated = m.mlp_kind.gated
    gpt2_like = m.hf_model_type in _GELU_NEW_TYPES
    attn_consumers = (("q", "k", "v"),) if gpt2_like else ("q", "k", "v")
    mlp_consumers = ("gate", "up") if gated else ("up",)
    a = m.num_heads

    if kernel == "fused":
        # Korthikanti et al. 2022 Sec. 4.1 (eq. 1) with flash attention, GQA and gated MLPs
        # (Megatron theoretical_memory_usage: 18 + 4f/h per token in 16-bit, no dropout masks -> 16 + 4f/h).
        g = 1.0 if fp8 else e        # GEMM inputs: fp8 under Transformer Engine
        out += [("attn/norm_input", e * h, "rep"), ("attn/qkv_input", g * h, "rep"),
                ("attn/q", e * q, "div"), ("attn/k", e * kv_k, "kv"), ("attn/v", e * kv, "kv"),
                ("attn/out_proj_input", e * o, "div"), ("attn/lse", 4.0 * a, "lse")]
        if drop:
            out.append(("attn/dropout_mask", 1.0 * h, "rep"))
        if math_attn:
            # softmax output 2as^2b + dropout mask as^2b + dropout output 2as^2b (Korthikanti eq. 1)
            out.append(("attn/scores", e * a + ((1 + e) * a if drop else 0.0), "s2"))
        out += [("mlp/norm_input", e * h, "rep"), ("mlp/fc1_input", g * h, "rep")]
        if gated:
            # fc1 output (gate|up, 2f) kept for the fused SwiGLU backward + its output (fc2 input, f)
            out += [("mlp/fc1_output", mult * 2 * e * f_mlp, "div"), ("mlp/act_output", mult * g * f_mlp, "div")]
        else:
            # GeLU input 8sbh + GeLU output 8sbh for f = 4h (Korthikanti eq. 1)
            out += [("mlp/act_input", mult * e * f_mlp, "div"), ("mlp/act_output", mult * g * f_mlp, "div")]
        if drop:
            out.append(("mlp/dropout_mask", 1.0 * h, "rep"))
        if moe_layer:
            # router probs (fp32) + the permuted tokens kept as the grouped-GEMM input (Megatron MoE)
            out += [("moe/router_probs", 4.0 * m.num_experts, "rep"), ("moe/dispatched_input", mult * g * h, "rep")]
            if m.num_shared_experts:
                fs = m.shared_expert_ffn_size or m.expert_ffn_size * m.num_shared_experts
                out.append(("moe/shared_expert", (3 if gated else 2) * e * fs, "div"))
        return out

    # ---------------------------------------------------------------- hf-eager (transformers + SDPA)
    # Enumerated from the autograd graph of HF transformers 5.x eager modules (sizeup/core/memory.py
    # docstring; checked per layer: Llama bf16 45.5 sbh, GPT-2 bf16 60.2 sbh + 2 dropout masks = 62.1).
    r = 4.0 if amp else e            # residual stream element bytes (fp32 under autocast)
    c = 2.0 if amp else e            # matmul-input element bytes (bf16 casts under autocast)
    lora_copy = setup_consts.get("lora_copy", 0.0)  # bytes of each adapted Linear's own input copy (0: shared)
    base_inputs = setup_consts.get("base_inputs", False)  # every (4-bit, bitsandbytes) base Linear keeps its input
    lin_out = setup_consts.get("linear_outputs", False)   # LLaMA-Adapter v2: every Linear keeps its output
    n_norm = max(1, m.norms_per_layer)

    def norm(prefix: str, consumers: tuple) -> None:
        # consumers: Linear names, or tuples of names sharing one fused Linear (GPT-2 c_attn = q|k|v)
        used = [x for x in consumers
                if (any(train.get(y) for y in x) if isinstance(x, tuple) else train.get(x))]
        if m.norm_kind == NormKind.LAYERNORM:
            out.append((f"{prefix}/norm_input", r * h, "rep"))  # native_layer_norm saves its input
        else:
            # HF RMSNorm: x.to(fp32) kept for pow/mul backward; the normalized x.to(dtype) is kept for
            # the weight's gradient (only when the norm weight trains)
            out.append((f"{prefix}/norm_fp32_input", 4.0 * h, "rep"))
            if full_ft:
                out.append((f"{prefix}/norm_normalized", (4.0 if amp else e) * h, "rep"))
        if amp:  # every Linear saves its own bf16 cast of the shared fp32 norm output
            if used:
                out.append((f"{prefix}/linear_input_casts", 2.0 * h * len(used), "rep"))
        elif used and lora_copy:  # every adapted Linear keeps its own cast of the norm output
            out.append((f"{prefix}/lora_input_copies", lora_copy * h * len(used), "rep"))
            if base_inputs:  # ... and the 4-bit base Linears the shared output itself
                out.append((f"{prefix}/norm_output", e * h, "rep"))
        elif used or base_inputs:
            out.append((f"{prefix}/norm_output", e * h, "rep"))

    if m.parallel_block or n_norm == 1:
        norm("attn", attn_consumers + mlp_consumers)
    else:
        norm("attn", attn_consumers)
    if gpt2_like:
        # fused c_attn output (q|k|v): SDPA keeps the three views of one storage
        out += [("attn/qkv_output", c * q, "div"), ("attn/qkv_output_kv", c * 2 * kv, "kv")]
    else:
        # SDPA inputs after RoPE (bf16 casts of q and k under autocast) and V
        out += [("attn/q", c * q, "div"), ("attn/k", c * kv_k, "kv"), ("attn/v", c * kv, "kv")]
    out += [("attn/sdpa_output", c * o, "div"), ("attn/lse", 4.0 * a, "lse")]
    if base_inputs:  # the 4-bit o_proj keeps its input, the reshaped (contiguous) attention output
        out.append(("attn/o_input_4bit", c * o, "div"))
    if lora_copy and train.get("o"):  # o_proj's adapter keeps its own cast of the attention output
        out.append(("attn/lora_o_input_copy", lora_copy * o, "div"))
    if math_attn:
        out.append(("attn/scores", c * a + ((1 + c) * a if drop else 0.0), "s2"))
    if drop:
        out.append(("attn/dropout_mask", 1.0 * h, "rep"))
    if not (m.parallel_block or n_norm == 1):
        # in a MoE layer the norm output feeds the router Linear (and, uncast, the experts)
        norm("mlp", ("router",) if moe_layer else mlp_consumers)
    f = f_mlp
    # transformers 5.x runs routed experts through torch._grouped_mm, which autocast leaves in fp32
    cm = 4.0 if (moe_layer and amp) else c
    if gated:
        if m.hf_model_type in _GATED_GELU_NEW_TYPES:
            # T5 v1.1 / mT5 "gated-gelu" runs gelu_new on wi_0's output (configuration_t5.py: dense_act_fn
            # "gelu_new"; modeling_t5.py T5DenseGatedActDense): the tanh-GELU chain keeps x, tanh(.), 0.5x and
            # 1+tanh as for GPT-2 (fp32 under autocast), then act, wi_1's output and their product (wo's input)
            chain = (4.0 + 4.0 + 2.0 + 4.0) if amp else 4.0 * e
            out += [("mlp/gelu_new_chain", mult * chain * f, "div"), ("mlp/up", mult * cm * f, "div"),
                    ("mlp/act", mult * cm * f, "div")]
        else:
            # gate (SiLU input), up, act(gate), act*up (down_proj input, kept only if down trains)
            out += [("mlp/gate", mult * cm * f, "div"), ("mlp/up", mult * cm * f, "div"),
                    ("mlp/act", mult * cm * f, "div")]
        if train.get("down"):
            out.append(("mlp/down_input", mult * (lora_copy or cm) * f, "div"))
        if base_inputs and not (train.get("down") and not lora_copy):
            out.append(("mlp/down_input_4bit", mult * cm * f, "div"))  # bnb MatMul4Bit keeps the product
    elif gpt2_like:
        # gelu_new = 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715x^3))): pow saves x, tanh saves its output,
        # the last mul saves 0.5x and 1+tanh; under CUDA autocast pow runs in fp32 so the chain is fp32
        chain = (4.0 + 4.0 + 2.0 + 4.0) if amp else 4.0 * e
        out.append(("mlp/gelu_chain", mult * chain * f, "div"))
        if train.get("down"):
            out.append(("mlp/down_input", mult * c * f, "div"))
    elif m.mlp_kind == MlpKind.RELU:
        out.append(("mlp/relu_output", mult * c * f, "div"))  # relu saves its result = fc2 input
    else:
        out.append(("mlp/act_input", mult * c * f, "div"))   # fused aten gelu saves its input
        if train.get("down") or base_inputs:
            out.append(("mlp/down_input", mult * c * f, "div"))
    if drop:
        out.append(("mlp/dropout_mask", 1.0 * h, "rep"))
    if not full_ft:
        # each adapter keeps its r-wide A output for B's weight gradient
        n_adapted = sum(1 for t_ in LORA_TARGETS if train.get(t_))
        if n_adapted:
            out.append(("lora/a_outputs", c * setup_consts["lora_rank"] * n_adapted, "rep"))
    if lin_out:
        # adapter_scale * (linear(x) + adapter_bias): the product keeps linear(x) + bias of every Linear (q|k|v, o,
        # the MLP's up/gate and down), and the trained norms their normalized inputs (lit-gpt adapter_v2.py)
        n_up = 2 if gated else 1
        out += [("adapter_v2/linear_outputs", c * (q + 2 * kv + h + mult * n_up * f + h), "div"),
                ("adapter_v2/norm_normalized", e * h * n_norm, "rep")]
    if moe_layer:
        # router softmax (fp32, E per token); tokens dispatched K times: the permuted expert input and the
        # expert output kept for the routing-weight multiply (transformers grouped_mm MoE)
        out += [("moe/router_probs", 4.0 * m.num_experts, "rep"),
                ("moe/dispatched_input", mult * cm * h, "rep"), ("moe/expert_output", mult * cm * h, "rep")]
        if m.num_shared_experts:
            fs = m.shared_expert_ffn_size or m.expert_ffn_size * m.num_shared_experts
            out.append(("moe/shared_expert", (4 if gated else 2) * c * fs, "div"))
    return out


_ROW_PARALLEL = ("wo", "w2", "shared_w2")


def op_sac_saved_tensors(m: ModelArch, moe_layer: bool, resid_bytes: float, mm_bytes: float
                         ) -> list[tuple[str, float, str]]:
    """Tensors one block keeps per token under op-level SAC, as (name, bytes, kind) like _layer_activation:
    the checkpoint's input (the residual stream), the saved mm outputs, and SDPA's outputs (attention output and
    the fp32 log-sum-exp per head; SDPA is in the save list). Everything else is recomputed in backward."""
    out: list[tuple[str, float, str]] = [("sac/block_input", resid_bytes * m.hidden_size, "rep")]
    for name, _k, n, saved in op_sac_saved_mms(m, moe_layer):
        if saved:
            kind = "rep" if name in _ROW_PARALLEL or name in ("router", "wq_a", "wkv_a") else (
                "kv" if name in ("wk", "wv") else "div")
            out.append((f"sac/{name}_output", mm_bytes * n, kind))
    out += [("sac/sdpa_output", mm_bytes * m.attn_out_dim, "div"), ("sac/sdpa_lse", 4.0 * m.num_heads, "lse")]
    return out


_CROSS_KV = ("attn/k", "attn/v", "attn/qkv_output_kv")


def _enc_dec_activation(m: ModelArch, layer: list[tuple[str, float, str]], r: float, consts: dict
                        ) -> list[tuple[str, float, str]]:
    """Saved tensors of the average encoder-decoder layer per INPUT token (s_e), from one self-attention + MLP
    layer's list: encoder layers as they are (weight L_e/L); decoder layers (weight L_d/L) keep the same tensors on
    s_d = r*s_e tokens (score matrices r^2) plus a cross-attention block: its norm, q, attention output, lse and
    scores (s_d x s_e: r) on the decoder tokens and its K and V on the encoder tokens (transformers modeling_t5.py
    T5LayerCrossAttention / T5Attention with key_value_states); the encoder output, the input of every decoder
    layer's cross k/v Linear, is kept once (1/L per layer) when those weights (or adapters) need it."""
    L = m.total_layers
    fe, fd = m.num_layers / L, m.num_decoder_layers / L
    out: list[tuple[str, float, str]] = []
    for name, value, kind in layer:
        out.append((f"enc/{name}", fe * value, kind))
        out.append((f"dec/{name}", fd * value * (r * r if kind == "s2" else r), kind))
        if name.startswith("attn/"):
            w = fd * (1.0 if name in _CROSS_KV else r)
            out.append((f"dec/cross_{name[5:]}", w * value, kind))
    train = consts["trainable"]
    if train.get("k") or train.get("v"):
        out.append(("dec/encoder_output", consts["e"] * m.hidden_size / L, "rep"))
    return [(n, v, k) for n, v, k in out if v]


def _trainable(setup: TrainSetup) -> dict[str, bool]:
    if setup.peft == Peft.NONE:
        return {t: True for t in (*LORA_TARGETS, "router")}
    if setup.peft == Peft.ADAPTER:  # no Linear trains and none carries a low-rank adapter on its input
        return {t: False for t in (*LORA_TARGETS, "router")}
    out = {t: (t in setup.lora_targets) for t in LORA_TARGETS}
    out["router"] = any(t in setup.lora_targets for t in ("gate", "up", "down"))
    return out


def _statics(m: ModelArch, setup: TrainSetup, kernel: str, amp: bool | None = None,
             loss: str | None = None) -> _Statics:
    """Model-derived constants for the kernel. The activation coefficients are computed without autocast;
    when torch.autocast can apply (hf-eager, *-mixed, full training) `amp_alt` holds the autocast variant,
    which the kernel selects per plan (autocast only runs unsharded: sharding code 0)."""
    can_amp = (kernel == "hf-eager" and setup.peft == Peft.NONE
               and setup.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED))
    if amp is None:
        primary = _statics(m, setup, kernel, amp=False, loss=loss)
        if can_amp:
            return replace(primary, amp_alt=_statics(m, setup, kernel, amp=True, loss=loss))
        return primary
    pc = count_params(m)
    h, V, L = m.hidden_size, m.vocab_size, m.total_layers
    attn = attention_params(m)
    norms = m.norms_per_layer * norm_params(m, h)
    # encoder-decoder: per-layer figures are averages over the L_e encoder and L_d decoder layers (a decoder layer
    # adds a cross-attention block and a third norm; transformers modeling_t5.py T5Block)
    xe = m.num_decoder_layers / L if m.is_encoder_decoder else 0.0
    if xe:
        attn = {k_: v * (1.0 + xe) for k_, v in attn.items()}
        norms = (2.0 + xe) * norm_params(m, h)
    n_moe = m.num_moe_layers
    n_dense = L - n_moe
    dense_mlp = mlp_params(m, m.ffn_size)
    moe = moe_params(m) if n_moe else {}
    attn_total = sum(v for k_, v in attn.items() if k_ != "qk_norm")
    rep = norms + attn.get("qk_norm", 0)
    layer_tp = attn_total + (n_dense * dense_mlp + n_moe * moe.get("shared_experts", 0)) / L
    layer_rep = rep + n_moe * moe.get("router", 0) / L
    layer_exp = n_moe * moe.get("experts", 0) / L
    emb = pc.breakdown.get("embedding/token", 0) + pc.breakdown.get("embedding/position", 0) \
        + pc.breakdown.get("embedding/norm", 0) + pc.breakdown.get("embedding/token_type", 0)
    head = pc.total - emb - L * (attn_total + rep + dense_mlp) if m.arch_kind != ArchKind.DECODER else \
        pc.breakdown.get("output_head", 0) + pc.breakdown.get("final_norm", 0)  # + pooler, final norms, rel. bias
    dense_layer = attn_total + rep + dense_mlp
    if xe:  # the largest gather unit: a decoder layer (self + cross attention, 3 norms, MLP)
        dense_layer = 2 * sum(attention_params(m).values()) + 3 * norm_params(m, h) + dense_mlp
    moe_layer = attn_total + rep + sum(moe.values()) if n_moe else 0
    largest = max(dense_layer, moe_layer, emb, V * h)
    shapes = _linear_shapes(m)
    mm_attn = sum(a_ * b_ for n_, (a_, b_) in shapes.items() if n_ in ("q", "k", "v", "o"))
    mm_mlp_dense = sum(a_ * b_ for n_, (a_, b_) in shapes.items() if n_ in ("gate", "up", "down"))
    # matmul weights per layer that autocast casts (hf-eager: grouped-GEMM experts stay fp32, the router is cast)
    expert_cast = 0 if kernel == "hf-eager" else moe.get("experts", 0)
    mm_attn = mm_attn * (1.0 + xe)
    mm_layer = mm_attn + (n_dense * mm_mlp_dense + n_moe * (expert_cast + moe.get("shared_experts", 0)
                                                            + m.hidden_size * m.num_experts)) / L
    trainable = _trainable(setup)
    adapter = 0.0
    if setup.peft == Peft.ADAPTER:
        # the stated trained parameter count, spread over the layers (per-layer prompts / gates / scales)
        adapter = float(setup.trainable_params) / L
    elif setup.peft != Peft.NONE:
        for name in setup.lora_targets:
            if name in shapes:
                fin, fout = shapes[name]
                count = 1.0
                if name in ("gate", "up", "down") and n_moe:
                    count = (n_dense + n_moe * m.num_experts) / L  # every routed expert gets adapters
                elif name in ("q", "k", "v", "o"):
                    count = 1.0 + xe  # decoder layers: self- and cross-attention both carry the adapter
                adapter += count * setup.lora_rank * (fin + fout)
    consts = {
        "kernel": kernel,
        "e": _dtype_bytes(setup.precision),
        "amp": bool(amp and can_amp),
        "fp8": setup.precision == Precision.FP8,
        "dropout": setup.dropout,
        "math": setup.attention == Attention.MATH,
        "trainable": trainable,
        "full_ft": setup.peft == Peft.NONE,
        "lora_rank": setup.lora_rank,
        # fp32 PEFT adapters: each adapted Linear's own input copy, bf16 under autocast (the cast inside lora_A's
        # F.linear) or fp32 without (peft/tuners/lora/layer.py Linear.forward: x = _cast_input_dtype(x, fp32))
        # bitsandbytes 4-bit Linears keep their inputs (QLoRA / adapters on an NF4 base through bnb)
        "base_inputs": bool(setup.nf4_saves_inputs and (setup.peft == Peft.QLORA
                                                         or (setup.peft == Peft.ADAPTER and setup.nf4_base))),
        "linear_outputs": bool(setup.adapter_linear_scales and setup.peft == Peft.ADAPTER),
        "lora_copy": (2.0 if setup.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED) else 4.0)
        if (setup.lora_fp32_adapters and setup.peft in (Peft.LORA, Peft.QLORA)
            and setup.precision not in (Precision.FP32, Precision.TF32)) else 0.0,
    }
    if setup.peft != Peft.NONE:
        consts["e"] = 4.0 if setup.precision in (Precision.FP32, Precision.TF32) else 2.0
    dense_t = _layer_activation(m, consts, moe_layer=False)
    moe_t = _layer_activation(m, consts, moe_layer=True) if n_moe else []
    r_dec = decoder_ratio(m, setup)
    if m.is_encoder_decoder:
        dense_t = _enc_dec_activation(m, dense_t, r_dec, consts)
    act: dict[str, float] = {"rep": 0.0, "div": 0.0, "kv": 0.0, "s2": 0.0, "lse": 0.0}
    names: dict[tuple[str, str], float] = {}
    for tensors, weight in ((dense_t, n_dense / L), (moe_t, n_moe / L)):
        for name, value, kind in tensors:
            act[kind] += weight * value
            names[(name, kind)] = names.get((name, kind), 0.0) + weight * value
    e = consts["e"]
    amp = consts["amp"]
    r = 4.0 if amp else e
    # op-level SAC and attention-only checkpointing: what each block keeps
    c_mm = 2.0 if amp else e
    act_sac: dict[str, float] = {"rep": 0.0, "div": 0.0, "kv": 0.0, "s2": 0.0, "lse": 0.0}
    act_attn: dict[str, float] = {"rep": r * h, "div": 0.0, "kv": 0.0, "s2": 0.0, "lse": 0.0}
    for moe_l, weight, tensors in ((False, n_dense / L, dense_t), (True, n_moe / L, moe_t)):
        if weight <= 0:
            continue
        for _name, value, kind in op_sac_saved_tensors(m, moe_l, r, c_mm):
            act_sac[kind] += weight * value
        for name, value, kind in tensors:
            if name.startswith(("mlp/", "moe/")):
                act_attn[kind] += weight * value
    loss = loss or ("vocab-parallel" if kernel == "fused" else "full")
    if loss not in LOSS_IMPLS:
        raise ValueError(f"loss must be one of {', '.join(LOSS_IMPLS)}, got {loss!r}")
    # the loss head's V-wide tensors per input token: V (decoder-only), V x s_d/s_e (encoder-decoder), none for a
    # bare encoder or a sequence classifier (one labels-wide row per sequence)
    v_head = head_width(m, r_dec)
    logits_saved, logits_temp = (x * v_head for x in LOSS_IMPLS[loss])
    if kernel == "fused":
        final_act = 2 * e * h
    else:
        # final norm (fp32 upcast + normalized for RMSNorm, input for LayerNorm) + its output, the head input
        final_act = (4.0 + (4.0 if amp else e) + (2.0 if amp else e)) * h if m.norm_kind == NormKind.RMSNORM \
            else (r + (2.0 if amp else e)) * h
    if m.arch_kind != ArchKind.DECODER:
        # the final norm / head input is on the decoder tokens (encoder-decoder); a bare encoder or a classifier
        # keeps no per-token head input (BERT is post-LN: no final norm; the pooler reads one token per sequence)
        final_act = final_act * r_dec if m.head == HeadKind.LM else 0.0
    # backward of one layer: ~2 gradient tensors of the widest (MLP) activation live at once
    f_wide = max(m.ffn_size, m.expert_ffn_size * max(1, m.experts_per_token) if n_moe else 0)
    wide_b = 4.0 if (amp and (m.hf_model_type in _GELU_NEW_TYPES or n_moe)) else (2.0 if amp else e)
    bwd_temp = 2.0 * wide_b * f_wide
    quant = mm_attn + (n_dense * mm_mlp_dense + n_moe * moe.get("shared_experts", 0)) / L  # routed experts: layer_exp
    return _Statics(
        L=L, h=h, V=V, a=m.num_heads, k=max(1, m.num_kv_heads), d=m.head_dim,
        layer_tp=float(layer_tp), layer_rep=float(layer_rep), layer_exp=float(layer_exp),
        emb=float(emb), pos_emb=float(pc.breakdown.get("embedding/position", 0)), head=float(head), tied=m.tie_embeddings, largest_unit=float(largest),
        layer_unit=float(max(dense_layer, moe_layer)),
        largest_linear=float(max(a_ * b_ for a_, b_ in shapes.values())),
        mm_layer=float(mm_layer), mm_head=float(V * h), adapter_layer=float(adapter), quant_layer=float(quant),
        adafactor_fraction=_adafactor_fraction(m) if setup.optimizer == Optimizer.ADAFACTOR else 1.0,
        act=act, act_ckpt=r * h * ((m.num_layers + m.num_decoder_layers * r_dec) / L if xe else 1.0),
        logits_saved=logits_saved, logits_temp=logits_temp, final_act=final_act, bwd_temp=bwd_temp,
        act_names=tuple((n, v, k_) for (n, k_), v in names.items()),
        act_sac=act_sac, act_attn_only=act_attn,
    )


# --------------------------------------------------------------------------- the array kernel


def _per_token_layer_act(st: _Statics, tp, sp, recompute_code, seq_len, act=None):
    """Bytes per token (on this rank) of one layer's saved tensors; arrays allowed."""
    act = st.act if act is None else act
    tp = np.asarray(tp, dtype=float)
    sp_div = np.where(np.asarray(sp, dtype=bool), tp, 1.0)
    kv_frac = np.maximum(1.0 / tp, 1.0 / st.k)  # K/V heads replicate when t > k
    s2 = np.where(np.asarray(recompute_code) >= 1, 0.0, act["s2"] * np.asarray(seq_len, dtype=float))
    return act["rep"] / sp_div + act["div"] / tp + act["kv"] * kv_frac + (act["lse"] + s2) / tp


def memory_components(
    model: ModelArch,
    *,
    tp: Any = 1,
    pp: Any = 1,
    dp: Any = 1,
    cp: Any = 1,
    ep: Any = 1,
    micro_batch: Any = 1,
    grad_accum: Any = 1,
    seq_len: Any = 2048,
    sharding_code: Any = 0,
    recompute_code: Any = 0,
    offload_optimizer_code: Any = 0,
    offload_params_code: Any = 0,
    offload_activations: Any = False,
    sequence_parallel: Any = False,
    schedule_code: Any = 0,
    virtual_pp: Any = 1,
    gpus_per_node: Any = 8,
    precision: Precision = Precision.BF16_MIXED,
    optimizer: Optimizer = Optimizer.ADAMW,
    fused_optimizer: bool = True,
    peft: Peft = Peft.NONE,
    lora_rank: int = 16,
    lora_targets: tuple[str, ...] = ("q", "k", "v", "o"),
    attention: Attention = Attention.FLASH,
    dropout: float = 0.0,
    kernel: str = "fused",
    comm_bucket_bytes: float = 0.0,
    statics: _Statics | None = None,
    loss: str | None = None,
    optimizer_in_backward: Any = False,
    paged_states: Any = False,
    grads_kept: Any = False,
    recompute_fraction: Any = 1.0,
    fp8_recipe: str = "delayed",
    first_stage_layers: Any = 0,
    last_stage_layers: Any = 0,
    grad_reduce_bytes: float = 0.0,
    kbit_fp32_non_quantized: Any = False,
    trainable_params: float = 0.0,
    nf4_base: bool = False,
    fsdp_no_sync: Any = False,
    fsdp_mixed_units: Any = False,
) -> dict[str, Any]:
    """Per-GPU bytes of every component at the peak (worst stage, worst phase), as arrays.

    Plan-varying inputs (tp .. gpus_per_node) may be numpy arrays (broadcast together) or numbers.
    Returns the COMPONENTS keys plus "total" (= peak allocated), "host", "nvme", "phase" (index in
    PHASES: 0 fwd, 1 bwd, 2 bwd_end, 3 opt), "stage" (0 first, 1 last), "phase_fwd/bwd/opt" totals, "model_state", "activations".

    optimizer_in_backward (bool or array): the step runs per parameter inside backward and frees each
    gradient at once, so at most the largest parameter tensor's gradient is live (and no separate
    optimizer phase); paged_states (bool or array): bitsandbytes paged optimizer states evicted to host;
    grads_kept (bool or array): gradients stay allocated between steps (zero_grad(set_to_none=False)).
    recompute_fraction (number or array): share of blocks fully checkpointed under recompute code 5 (layer-fraction).
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}")
    if statics is None:
        statics = _statics(model, TrainSetup(
            precision=precision, optimizer=optimizer, fused_optimizer=fused_optimizer, peft=peft,
            lora_rank=lora_rank, lora_targets=tuple(lora_targets), attention=attention, dropout=dropout,
            trainable_params=trainable_params,
        ), kernel, loss=loss)
    st = statics
    f = lambda x: np.asarray(x, dtype=float)  # noqa: E731
    tp, pp, dp, cp, ep = f(tp), f(pp), f(dp), f(cp), f(ep)
    b, m_acc, s = f(micro_batch), f(grad_accum), f(seq_len)
    code = np.asarray(sharding_code)
    rc = np.asarray(recompute_code)
    off_opt = np.asarray(offload_optimizer_code)
    off_par = np.asarray(offload_params_code)
    off_act = np.asarray(offload_activations, dtype=bool)
    sp = np.asarray(sequence_parallel, dtype=bool) & (tp > 1)
    sched = np.asarray(schedule_code)
    vpp = np.maximum(f(virtual_pp), 1.0)
    gpn = f(gpus_per_node)
    oib = np.asarray(optimizer_in_backward, dtype=bool)
    paged = np.asarray(paged_states, dtype=bool)

    # ---- sharding group (FSDP hybrid: shard inside a node, replicate across nodes)
    in_node = np.maximum(1.0, np.floor(gpn / (tp * pp * cp)))
    n_sh = np.where(code == 0, 1.0, np.where(code == 6, np.minimum(dp, in_node), dp))
    n_sh_exp = np.maximum(1.0, n_sh / ep)  # expert params: data parallel over dp/ep ranks
    opt_sh = np.isin(code, _OPT_SHARDED)
    grad_sh = np.isin(code, _GRAD_SHARDED)
    par_sh = np.isin(code, _PARAM_SHARDED)
    fsdp_grad_op = code == 5

    # ---- parameters on the worst stages (Megatron: embedding on the first stage, head on the last)
    even = np.ceil(st.L / pp)                                     # layers per stage (even split)
    fsl, lsl = f(first_stage_layers), f(last_stage_layers)
    uneven = ((fsl > 0) | (lsl > 0)) & (pp > 1)
    l_first = np.where(uneven & (fsl > 0), fsl, even)
    l_last = np.where(uneven & (lsl > 0), lsl, even)
    l_mid = np.where(uneven, np.ceil(np.maximum(st.L - l_first - l_last, 0.0) / np.maximum(pp - 2, 1)), even)
    layers = even
    layer_dense_local = st.layer_tp / tp + st.layer_rep
    layer_exp_local = st.layer_exp / (tp * ep)
    single = pp == 1
    emb_first = st.emb / tp
    # tied embeddings with pp > 1: the last stage keeps its own copy of the V x h matrix (Megatron)
    head_last = st.head / tp + np.where(st.tied & ~single, (st.V * st.h) / tp, 0.0)
    # stage 0 = first (embedding, + head when pp == 1), stage 1 = last (head), stage 2 = second (p > 2: no embedding
    # or head, the most in-flight micro-batches after the first)
    stage_layers = [l_first, l_last, l_mid]
    stage_nonexp = [l_first * layer_dense_local + emb_first + np.where(single, st.head / tp, 0.0),
                    l_last * layer_dense_local + head_last + np.where(single, emb_first, 0.0),
                    l_mid * layer_dense_local]
    stage_exp = [sl * layer_exp_local for sl in stage_layers]
    stage_mm = [l_first * st.mm_layer / tp + np.where(single, st.mm_head / tp, 0.0),
                l_last * st.mm_layer / tp + st.mm_head / tp, l_mid * st.mm_layer / tp]

    sb = state_bytes(precision, kernel, code, fp8_recipe)
    w_b, g_b, m_b, s_el, cast_b, amp = sb["w"], sb["g"], sb["m"], sb["s"], sb["cast"], sb["amp"]
    # activation coefficients: the autocast variant where torch.autocast runs (hf-eager, *-mixed, unsharded)
    if st.amp_alt is not None:
        amp_on = np.asarray(amp) > 0
        alt = st.amp_alt
        act_c = {k_: np.where(amp_on, alt.act[k_], st.act[k_]) for k_ in st.act}
        act_sac_c = {k_: np.where(amp_on, alt.act_sac[k_], st.act_sac[k_]) for k_ in st.act_sac}
        act_attn_c = {k_: np.where(amp_on, alt.act_attn_only[k_], st.act_attn_only[k_]) for k_ in st.act_attn_only}
        act_ckpt_c = np.where(amp_on, alt.act_ckpt, st.act_ckpt)
        final_act_c = np.where(amp_on, alt.final_act, st.final_act)
        bwd_temp_c = np.where(amp_on, alt.bwd_temp, st.bwd_temp)
    else:
        act_c, act_ckpt_c, final_act_c, bwd_temp_c = st.act, st.act_ckpt, st.final_act, st.bwd_temp
        act_sac_c, act_attn_c = st.act_sac, st.act_attn_only
    opt_b = optimizer_state_bytes(optimizer, s_el, st.adafactor_fraction)
    tmp_b = 0.0 if fused_optimizer else foreach_temp_fraction(optimizer) * s_el

    peft_on = peft != Peft.NONE
    # frozen Linear weights in NF4: QLoRA, or an adapter method on a 4-bit base (bitsandbytes Linear4bit)
    nf4 = peft == Peft.QLORA or (peft == Peft.ADAPTER and bool(nf4_base))
    # FSDP no_sync accumulation (torch FullyShardedDataParallel.no_sync): every rank accumulates unsharded gradients
    # until the last micro-step, so the persistent gradients are not divided by the sharding degree
    fsdp_on = np.isin(code, _FSDP)
    nosync = np.asarray(fsdp_no_sync, dtype=bool) & fsdp_on & (m_acc > 1)
    # FSDP(use_orig_params=True) units mixing LoRA adapters with frozen weights: the FlatParameter requires grad, so
    # its gradient covers every parameter of the unit (torch FSDP docs on frozen parameters)
    mixed = np.asarray(fsdp_mixed_units, dtype=bool) & fsdp_on & (peft in (Peft.LORA, Peft.QLORA))
    results = []
    for stage in (0, 1, 2):
        nonexp, exp_, mm = stage_nonexp[stage], stage_exp[stage], stage_mm[stage]
        layers = stage_layers[stage]
        total_params = nonexp + exp_
        if peft_on:
            # frozen base: 16-bit (LoRA) or NF4 for the Linear weights of the layers (QLoRA)
            base_b = 4.0 if precision in (Precision.FP32, Precision.TF32) else 2.0
            quant = layers * (st.quant_layer / tp + st.layer_exp / (tp * ep))
            if nf4:
                # PEFT prepare_model_for_kbit_training casts every non-quantized parameter (embeddings, norms, the
                # LM head) to fp32 (huggingface/peft src/peft/utils/other.py: "cast all non INT8 parameters to fp32")
                nonq_b = np.where(np.asarray(kbit_fp32_non_quantized, dtype=bool), 4.0, base_b)
                base = (total_params - quant) * nonq_b + quant * NF4_BYTES_PER_PARAM
            else:
                base = total_params * base_b
            trainable = layers * st.adapter_layer / tp
            # adapters: fp32 with fp32 grads/states (PEFT autocast_adapter_dtype=True) except under pure
            # bf16, where they are bf16 like the model (torchtune; artidoro/qlora casts LoraLayer to bf16)
            weights_full = base
            ab = 2.0 if precision == Precision.BF16 else 4.0
            tw, tg, tm, ts = ab, ab, 0.0, optimizer_state_bytes(optimizer, ab, 1.0)
            ttmp = 0.0 if fused_optimizer else foreach_temp_fraction(optimizer) * ab
            weights = np.where(par_sh, weights_full / n_sh, weights_full)
            adapter_w = np.where(par_sh, trainable * tw / n_sh, trainable * tw)
            grads = np.where(grad_sh & ~nosync, trainable * tg / n_sh, trainable * tg)
            # mixed units: a gradient for every parameter of the stage (the frozen ones' in the base dtype)
            unit_grads = total_params * base_b
            grads = np.where(mixed, np.where(nosync, unit_grads, unit_grads / n_sh), grads)
            states = np.where(opt_sh, trainable * ts / n_sh, trainable * ts)
            master = np.where(opt_sh, trainable * tm / n_sh, trainable * tm) + 0.0 * weights
            grad_b = tg
            temps = trainable * ttmp / np.where(opt_sh, n_sh, 1.0)
            head_grad = 0.0 * weights
            casts = 0.0 * weights
            # QLoRA: each Linear's NF4 weight is dequantized to 16 bit for its matmul (bitsandbytes)
            gather_unit = st.largest_linear / tp * (2.0 if nf4 else 0.0)
            # ZeRO-3/FSDP gather the frozen base unit by unit (QLoRA layers travel as NF4)
            layer_b = NF4_BYTES_PER_PARAM if nf4 else base_b
            big = max(st.emb * base_b, st.V * st.h * base_b, st.layer_unit * layer_b)
            gathered = np.where(par_sh, (big + st.layer_unit * layer_b) / tp, 0.0) + gather_unit
            gathered_f = gathered
            # mixed units outside no_sync: the unit's unsharded gradient before its reduce-scatter
            gathered_b = gathered + np.where(mixed & ~nosync, st.layer_unit * base_b / tp, 0.0)
        else:
            def shard(x, sharded, n=n_sh, ne=n_sh_exp):
                return np.where(sharded, x[0] / n + x[1] / ne, x[0] + x[1])
            weights = shard((nonexp * w_b, exp_ * w_b), par_sh)
            adapter_w = 0.0 * weights
            grads = shard((nonexp * g_b, exp_ * g_b), grad_sh & ~nosync)
            states = shard((nonexp * opt_b, exp_ * opt_b), opt_sh)
            master = shard((nonexp * m_b, exp_ * m_b), opt_sh)
            temps = shard((nonexp * tmp_b, exp_ * tmp_b), opt_sh)
            # output-head gradient allocated at the start of backward (first op of backward)
            head_grad = np.where(stage == 1, st.mm_head / tp * g_b, np.where(single, st.mm_head / tp * g_b, 0.0))
            head_grad = np.where(grad_sh, head_grad / n_sh, head_grad)
            casts = mm * cast_b
            # ZeRO-3 / FSDP gather units in 16-bit before use (DeepSpeed estimate_zero3: 4 x largest layer)
            comp_b = np.where(np.isin(code, _FSDP), 2.0, w_b)
            comp_b = np.where(precision in (Precision.FP32, Precision.TF32), 4.0, comp_b)
            # the largest unit being computed + the next layer prefetched, and the unit's full gradient
            gathered = np.where(par_sh, ((st.largest_unit + st.layer_unit) * comp_b + st.largest_unit * g_b) / tp, 0.0)
            # FSDP (codes 4, 6): forward holds the unit being computed + the prefetched next one (Zhao et al. 2023
            # Sec. 3.3; FSDP2 implicit prefetch); backward adds the unit's unsharded gradient in the compute dtype
            # and the reduce-scatter input in the reduce dtype (FSDP2 casts the gradient to reduce_dtype before the
            # reduce-scatter and frees it when the collective completes), i.e. comp_b + reduce_b per parameter
            red_b = np.where(grad_reduce_bytes > 0, grad_reduce_bytes, g_b)
            fsdp_codes = np.isin(code, (4, 6))
            gathered_f = np.where(fsdp_codes, (st.largest_unit + st.layer_unit) * comp_b / tp, gathered)
            gathered_b = np.where(fsdp_codes, gathered_f + st.largest_unit * (comp_b + red_b) / tp, gathered)
            # FSDP SHARD_GRAD_OP keeps the gathered 16-bit params from forward through backward
            gathered = gathered + np.where(fsdp_grad_op, total_params * comp_b, 0.0)
            gathered_f = gathered_f + np.where(fsdp_grad_op, total_params * comp_b, 0.0)
            gathered_b = gathered_b + np.where(fsdp_grad_op, total_params * comp_b, 0.0)
            grad_b = g_b
        # optimizer step fused into backward (PyTorch tutorial "optimizer hooks in backward";
        # torchtune optimizer_in_bwd): register_post_accumulate_grad_hook steps each parameter and sets
        # p.grad = None, so the live gradient is the largest single parameter tensor's (the V x h
        # embedding/head; with tied embeddings its gradient lives from the head backward to the end)
        one_tensor = max(st.V * st.h, st.largest_linear) / tp
        grad_one = np.minimum(grads, np.where(grad_sh, one_tensor * grad_b / n_sh, one_tensor * grad_b))
        temps_one = np.minimum(temps, np.where(opt_sh, one_tensor * tmp_b / n_sh, one_tensor * tmp_b)) \
            if not peft_on else temps
        temps = np.where(oib, temps_one, temps)
        # offload: ZeRO-Offload keeps the fp32 master, the optimizer states and an fp32 copy of the
        # gradient partition on the host; the GPU keeps 16-bit params and grads (Ren et al. 2021, Sec. 4)
        off_o = off_opt >= 1
        off_p = (off_par >= 1) & par_sh
        host_opt = np.where(off_o, states + master + grads * (4.0 / grad_b), 0.0)
        host_par = np.where(off_p, weights, 0.0)
        # paged optimizer states (bitsandbytes cudaMallocManaged pages) evicted to host under pressure
        host_opt = host_opt + np.where(paged & ~off_o, states, 0.0)
        states_gpu = np.where(off_o | paged, 0.0, states)
        master_gpu = np.where(off_o, 0.0, master)
        temps_gpu = np.where(off_o, 0.0, temps)
        weights_gpu = np.where(off_p, 0.0, weights)
        # the 16-bit gradients follow the optimizer to the host: "the fp16 gradients, and all the optimizer states ...
        # are stored in CPU" (Ren et al. 2021, ZeRO-Offload, Sec. 4.1); DeepSpeed copies each reduced bucket out
        # (zero/stage_1_and_2.py, stage3.py with offload_optimizer), so the GPU holds one reduce bucket at most
        # (reduce_bucket_size, default 5e8 elements: DeepSpeed ZeRO config docs)
        grads = np.where(off_o, np.minimum(grads, OFFLOAD_REDUCE_BUCKET_ELEMS * grad_b), grads)

        # ---- activations
        tokens = b * s / cp
        per_tok = _per_token_layer_act(st, tp, sp, rc, s, act_c)
        full = rc == 2
        ckpt_tok = act_ckpt_c / np.where(sp, tp, 1.0)
        layer_bytes = tokens * per_tok
        # op-level SAC (3), attention-only (4), layer fraction (5): what each block keeps through the forward
        frac = np.clip(f(recompute_fraction), 0.0, 1.0)
        kept_sac = tokens * _per_token_layer_act(st, tp, sp, 1, s, act_sac_c) if act_sac_c else layer_bytes
        kept_attn = tokens * _per_token_layer_act(st, tp, sp, 1, s, act_attn_c) if act_attn_c else layer_bytes
        layer_none = tokens * _per_token_layer_act(st, tp, sp, 0, s, act_c)
        kept_frac = frac * tokens * ckpt_tok + (1.0 - frac) * layer_none
        kept_per_layer = np.where(full, tokens * ckpt_tok, np.where(rc == 3, kept_sac, np.where(
            rc == 4, kept_attn, np.where(rc == 5, kept_frac, layer_bytes))))
        # micro-batches in flight on this stage: 1F1B holds min(p, m) on the first stage (Narayanan 2021),
        # interleaving multiplies by 1 + (p-1)/(p v) (Korthikanti 2022 Sec. 4.2.3); GPipe holds all m
        inflight_first = np.where(sched == 2, m_acc, np.minimum(pp, m_acc))
        inflight_first = np.where(single, 1.0, np.maximum(inflight_first, 1.0))
        inter = np.where((sched == 1) & ~single, 1.0 + (pp - 1.0) / (pp * vpp), 1.0)
        if stage == 0:
            inflight = inflight_first * inter
        elif stage == 2:  # stage index 1 of p holds p - 1 micro-batches under 1F1B (Narayanan 2021 Sec. 2.2)
            inflight = np.where(sched == 2, m_acc, np.maximum(np.minimum(pp - 1.0, m_acc), 1.0)) * inter
        else:  # the last stage runs each micro-batch's backward right after its forward (1F1B)
            inflight = np.where(single, 1.0, np.where(sched == 2, m_acc, 1.0))
        acts = layers * kept_per_layer * inflight
        # activation offload: all but ~2 layers' saved tensors sit in host memory (torchtune offloading)
        acts_kept_gpu = np.where(off_act, np.minimum(acts, 2.0 * kept_per_layer), acts)
        host_act = acts - acts_kept_gpu
        has_head = (stage == 1) | single
        logits_fwd = np.where(has_head, tokens * (st.logits_saved / tp + final_act_c), 0.0)
        logits_bwd = logits_fwd + np.where(has_head, tokens * st.logits_temp / tp, 0.0)
        # persistent gradient buffers during forward: Megatron/DeepSpeed keep contiguous grad buffers;
        # eager training with set_to_none only holds gradients across accumulation micro-steps
        persistent = np.where(kernel == "fused", True, m_acc > 1) | np.isin(code, _DEEPSPEED + (7,)) \
            | np.asarray(grads_kept, dtype=bool)
        grads_fb = np.where(persistent, grads, np.minimum(head_grad, grads))
        grads_fwd = np.where(persistent, grads, 0.0)
        # autocast casts stay referenced until each layer's backward; under full recompute only the
        # head's cast is saved (the layers' casts die with the autocast cache when the forward ends)
        head_cast = np.where(has_head, st.mm_head / tp * cast_b, 0.0) if not peft_on else 0.0 * casts
        casts_bwd = np.where(full, head_cast, casts)
        layer_cast = st.mm_layer / tp * cast_b if not peft_on else 0.0 * casts
        buckets = np.where(dp > 1, comm_bucket_bytes, 0.0) + 0.0 * weights
        base = weights_gpu + adapter_w + states_gpu + master_gpu
        # end of backward (the stage's first layer): the other layers' and the head's gradients exist (the
        # layer's own and the embedding's come after), that layer's tensors (recomputed under full
        # recompute) and its backward temporaries are live
        late = 0.0 if peft_on else np.where(stage == 0, (st.pos_emb if st.tied else st.emb) / tp * g_b, 0.0) \
            + (layer_dense_local + layer_exp_local) * g_b
        late = np.where(grad_sh, late / n_sh, late)
        grads_end = np.where(persistent, grads, np.maximum(grads - late, 0.0))
        # optimizer in backward: no gradient before backward, one tensor's gradient during it, no opt phase
        grads_fwd = np.where(oib, 0.0, grads_fwd)
        grads_fb = np.where(oib, np.minimum(grads_fb, grad_one), grads_fb)
        grads_end = np.where(oib, grad_one, grads_end)
        grads_opt = np.where(oib, grad_one, grads)
        acts_end = np.minimum(acts_kept_gpu, acts_kept_gpu * (1.0 - 1.0 / np.maximum(inflight, 1.0)) + kept_per_layer)
        # the layer being back-propagated holds its recomputed tensors on top of what it kept
        bwd_layer = np.where(full | ((rc == 5) & (frac > 0)), layer_bytes, np.where(
            (rc == 3) | (rc == 4), np.maximum(layer_bytes - kept_per_layer, 0.0), 0.0)) + tokens * bwd_temp_c / tp
        casts_end = np.where(full, layer_cast, np.minimum(casts, layer_cast))
        totals = (
            base + grads_fwd + acts_kept_gpu + gathered_f + logits_fwd + casts_bwd,            # fwd
            base + grads_fb + acts_kept_gpu + gathered_b + logits_bwd + casts_bwd + buckets,   # bwd
            base + grads_end + acts_end + gathered_b + bwd_layer + casts_end + buckets,        # bwd_end
            base + grads_opt + temps_gpu + buckets,                                            # opt
        )
        phase = np.where(totals[1] >= totals[0], 1, 0)
        best = np.maximum(totals[0], totals[1])
        phase = np.where(totals[2] > best, 2, phase)
        best = np.maximum(best, totals[2])
        phase = np.where(totals[3] > best, 3, phase)
        best = np.maximum(best, totals[3])
        is_opt = phase == 3
        zero = 0.0 * best
        ph0, ph1, ph2 = phase == 0, phase == 1, phase == 2
        chosen = {
            "model/weights": weights_gpu + zero,
            "model/adapter_weights": adapter_w + zero,
            "gradients": np.where(ph0, grads_fwd, np.where(ph1, grads_fb, np.where(ph2, grads_end, grads_opt))),
            "optimizer/states": states_gpu + zero,
            "optimizer/master_weights": master_gpu + zero,
            "optimizer/temporaries": np.where(is_opt, temps_gpu, 0.0),
            "activations/layers": np.where(is_opt, 0.0, np.where(ph2, acts_end, acts_kept_gpu)),
            "activations/backward_layer": np.where(ph2, bwd_layer, 0.0),
            "activations/logits_loss": np.where(ph0, logits_fwd, np.where(ph1, logits_bwd, 0.0)),
            "activations/weight_casts": np.where(ph2, casts_end, np.where(is_opt, 0.0, casts_bwd)),
            "buffers/gathered_params": np.where(is_opt, 0.0, np.where(ph0, gathered_f, gathered_b)),
            "buffers/comm_buckets": np.where(ph0, 0.0, buckets),
        }
        chosen["total"] = best
        chosen["phase"] = phase
        for name, tot in zip(PHASES, totals):
            chosen[f"phase_{name}"] = tot + zero
        # NVMe offload puts the states on disk instead of host memory
        chosen["nvme"] = np.where(off_opt == 2, host_opt, 0.0) + np.where(off_par == 2, host_par, 0.0) + zero
        chosen["host"] = host_opt + host_par + host_act - chosen["nvme"]
        chosen["model_state"] = base + grads_opt
        chosen["activations_kept"] = acts_kept_gpu + zero      # saved layer tensors at the end of the forward
        chosen["activation_per_layer"] = layer_bytes + zero   # one layer, one micro-batch, no recompute
        chosen["activations"] = chosen["activations/layers"] + chosen["activations/backward_layer"] \
            + chosen["activations/logits_loss"] + chosen["activations/weight_casts"]
        results.append(chosen)
    worst = np.where(results[1]["total"] > results[0]["total"], 1, 0)
    out = {k_: np.where(worst == 1, results[1][k_], results[0][k_]) for k_ in results[0]}
    # the second stage matters only for p > 2 with an uneven split (an even split leaves it below the first)
    second = uneven & (pp > 2) & (results[2]["total"] > out["total"])
    out = {k_: np.where(second, results[2][k_], out[k_]) for k_ in out}
    out["stage"] = np.where(second, 2, worst)
    return out


# --------------------------------------------------------------------------- validation


def check_setup(model: ModelArch, setup: TrainSetup) -> list[str]:
    """Problems that make a setup impossible to run (empty list when consistent)."""
    problems: list[str] = []
    for name in ("gpus", "tp", "pp", "cp", "ep", "micro_batch", "grad_accum", "seq_len", "virtual_pp",
                 "gpus_per_node"):
        value = getattr(setup, name)
        if not isinstance(value, int) or value < 1:
            problems.append(f"{name.replace('_', '-')} must be a whole number >= 1, got {value}")
    if problems:
        return problems
    if setup.gpus % (setup.tp * setup.pp * setup.cp):
        problems.append(f"gpus ({setup.gpus}) must be a multiple of tp*pp*cp = {setup.tp * setup.pp * setup.cp}")
    if model.num_heads % setup.tp:
        problems.append(f"tp ({setup.tp}) must divide the number of attention heads ({model.num_heads})")
    k = model.num_kv_heads
    if not model.is_mla and setup.tp > 1 and k % setup.tp and setup.tp % k:
        problems.append(f"tp ({setup.tp}) must divide the KV heads ({k}) or be a multiple of them "
                        "(KV heads are then replicated)")
    if setup.pp > model.num_layers:
        problems.append(f"pp ({setup.pp}) cannot exceed the number of layers ({model.num_layers})")
    if model.arch_kind != ArchKind.DECODER:
        # one stack's layers split over stages is what the pipeline model knows; encoder-decoder stage placement
        # (Megatron --pipeline-model-parallel-split-rank) and ring/Ulysses over two sequence lengths are not modelled
        if setup.pp > 1:
            problems.append(f"pipeline parallelism is modelled for decoder-only models; {model.id} is "
                            f"{model.arch_kind.value} (use pp 1)")
        if setup.cp > 1:
            problems.append(f"context parallelism is modelled for decoder-only models; {model.id} is "
                            f"{model.arch_kind.value} (use cp 1)")
    if setup.packed_doc_tokens and model.is_encoder_decoder:
        problems.append(f"document-masked packing is modelled for one stack; {model.id} is encoder-decoder "
                        "(drop --packed-doc-tokens)")
    if setup.decoder_seq_len and not model.is_encoder_decoder:
        problems.append(f"decoder-seq sets the target length of an encoder-decoder; {model.id} is "
                        f"{model.arch_kind.value} (give --seq only)")
    if setup.virtual_pp > 1:
        if setup.pp_schedule != PipelineSchedule.INTERLEAVED:
            problems.append("virtual pipeline stages need the interleaved schedule")
        elif model.num_layers < setup.pp * setup.virtual_pp:
            # an uneven split is fine (torch.distributed.pipelining stages, Megatron's first/last-stage layer
            # counts): the slowest stage holds ceil(L/p) layers; an empty virtual stage is not
            problems.append(f"layers ({model.num_layers}) must be at least pp*virtual_pp "
                            f"({setup.pp * setup.virtual_pp}): every virtual stage needs a layer")
    if setup.ep > 1:
        if not model.is_moe:
            problems.append(f"ep ({setup.ep}) needs a mixture-of-experts model; {model.id} is dense")
        elif model.num_experts % setup.ep:
            problems.append(f"ep ({setup.ep}) must divide the number of experts ({model.num_experts})")
        elif setup.dp % setup.ep:
            problems.append(f"ep ({setup.ep}) must divide the data-parallel degree ({setup.dp})")
    if setup.cp > 1 and setup.seq_len % setup.cp:
        problems.append(f"seq ({setup.seq_len}) must be a multiple of cp ({setup.cp})")
    if setup.cp > 1 and setup.cp_impl == ContextParallel.ULYSSES and (model.num_heads // setup.tp) % setup.cp:
        problems.append(f"Ulysses context parallelism splits the attention heads: cp ({setup.cp}) must divide the "
                        f"heads per tensor-parallel rank ({model.num_heads // setup.tp})")
    if model.position.value == "learned" and model.num_position_embeddings and \
            setup.seq_len > model.num_position_embeddings:
        problems.append(f"seq ({setup.seq_len}) exceeds {model.id}'s {model.num_position_embeddings} "
                        "learned positions")
    if setup.offload_params != Offload.NONE and setup.sharding not in (
            Sharding.ZERO3, Sharding.FSDP_FULL, Sharding.FSDP_HYBRID):
        problems.append("parameter offload needs ZeRO-3 or FSDP full/hybrid sharding (--zero 3)")
    if (setup.zero_quantized_weights or setup.zero_quantized_gradients) and setup.sharding not in (
            Sharding.ZERO3, Sharding.FSDP_FULL, Sharding.FSDP_HYBRID):
        problems.append("ZeRO++ quantized weights/gradients apply to ZeRO-3 collectives (--zero 3)")
    if setup.peft == Peft.ADAPTER:
        if not setup.trainable_params > 0:
            problems.append("an adapter method needs its trained parameter count (--trainable-params N > 0)")
    elif setup.peft != Peft.NONE:
        if setup.lora_rank < 1:
            problems.append(f"lora rank must be >= 1, got {setup.lora_rank}")
        bad = [t for t in setup.lora_targets if t not in LORA_TARGETS]
        if bad:
            problems.append(f"unknown LoRA target(s) {', '.join(bad)}; allowed: {', '.join(LORA_TARGETS)}")
        if not setup.lora_targets:
            problems.append("LoRA needs at least one target module")
        if not model.mlp_kind.gated and "gate" in setup.lora_targets:
            problems.append(f"{model.id} has no gate projection (plain MLP); drop 'gate' from the LoRA targets")
    if not 0.0 <= setup.dropout < 1.0:
        problems.append(f"dropout must be in [0, 1), got {setup.dropout}")
    if not 0.0 <= setup.lora_dropout < 1.0:
        problems.append(f"lora dropout must be in [0, 1), got {setup.lora_dropout}")
    if setup.pp_first_stage_layers or setup.pp_last_stage_layers:
        f_, l_ = setup.pp_first_stage_layers, setup.pp_last_stage_layers
        if f_ < 0 or l_ < 0:
            problems.append("pipeline first/last stage layers must be >= 0")
        elif setup.pp < 2:
            problems.append("first/last pipeline stage layers need pp >= 2")
        elif (f_ or math.ceil(model.num_layers / setup.pp)) + (l_ or math.ceil(model.num_layers / setup.pp)) \
                > model.num_layers or (setup.pp > 2 and (f_ or 0) + (l_ or 0) >= model.num_layers):
            problems.append(f"first ({f_}) + last ({l_}) pipeline stage layers leave no layers for the other "
                            f"stages of {model.num_layers}")
        elif setup.pp == 2 and f_ and l_ and f_ + l_ != model.num_layers:
            problems.append(f"with pp 2 the first ({f_}) and last ({l_}) stage layers must add up to "
                            f"{model.num_layers}")
    if setup.moe_capacity_factor < 0 or (setup.moe_capacity_factor and setup.moe_capacity_factor < 1.0):
        problems.append(f"MoE capacity factor must be 0 (dropless) or >= 1, got {setup.moe_capacity_factor}")
    if setup.moe_pad_to_capacity and not setup.moe_capacity_factor:
        problems.append("padding expert inputs to capacity needs a capacity factor")
    if setup.grad_reduce_dtype not in ("", "bf16", "fp32"):
        problems.append(f"gradient reduce dtype must be bf16 or fp32, got {setup.grad_reduce_dtype!r}")
    if not 0.0 <= setup.recompute_fraction <= 1.0:
        problems.append(f"recompute fraction must be in [0, 1], got {setup.recompute_fraction}")
    for name in ("tp_comm_overlap", "ep_comm_overlap"):
        value = getattr(setup, name)
        if value is not None and not 0.0 <= value <= 1.0:
            problems.append(f"{name.replace('_', '-')} must be in [0, 1], got {value}")
    if setup.optimizer_in_backward:
        # gradients must survive across micro-steps / pipeline micro-batches, and DDP, DeepSpeed ZeRO and the
        # Megatron distributed optimizer reduce gradients in their own buckets after the per-parameter hook
        # fires (PyTorch tutorial 'optimizer step in backward'; torchtune supports it single-device and FSDP2)
        if setup.grad_accum > 1:
            problems.append(f"optimizer step in backward cannot accumulate gradients (grad-accum {setup.grad_accum}); "
                            "use grad-accum 1 or drop --optimizer-in-backward")
        if setup.pp > 1:
            problems.append("optimizer step in backward needs pp 1 (pipeline micro-batches accumulate gradients)")
        if setup.sharding in (Sharding.ZERO1, Sharding.ZERO2, Sharding.ZERO3, Sharding.MEGATRON_DISTOPT) \
                or (setup.sharding == Sharding.NONE and setup.dp > 1):
            kind = "DDP" if setup.sharding == Sharding.NONE else setup.sharding.value
            problems.append(f"optimizer step in backward does not work with {kind} over "
                            f"{setup.dp} data-parallel ranks (gradients are reduced after the hook); "
                            "use one GPU or FSDP (--zero fsdp-full)")
    return problems


# --------------------------------------------------------------------------- scalar API


def _codes(setup: TrainSetup) -> dict[str, Any]:
    return dict(
        tp=setup.tp, pp=setup.pp, dp=setup.dp, cp=setup.cp, ep=setup.ep, micro_batch=setup.micro_batch,
        grad_accum=setup.grad_accum, seq_len=setup.seq_len, sharding_code=SHARDING_CODE[setup.sharding],
        recompute_code=RECOMPUTE_CODE[setup.recompute],
        offload_optimizer_code=OFFLOAD_CODE[setup.offload_optimizer],
        offload_params_code=OFFLOAD_CODE[setup.offload_params],
        offload_activations=setup.offload_activations, sequence_parallel=setup.sequence_parallel,
        schedule_code=SCHEDULE_CODE[setup.pp_schedule], virtual_pp=setup.virtual_pp,
        gpus_per_node=setup.gpus_per_node, optimizer_in_backward=setup.optimizer_in_backward,
        grads_kept=not setup.grads_set_to_none, recompute_fraction=setup.recompute_fraction,
        first_stage_layers=setup.pp_first_stage_layers, last_stage_layers=setup.pp_last_stage_layers,
        grad_reduce_bytes={"bf16": 2.0, "fp32": 4.0}.get(setup.grad_reduce_dtype, 0.0),
        kbit_fp32_non_quantized=setup.kbit_fp32_non_quantized,
        nf4_base=setup.nf4_base and setup.peft == Peft.ADAPTER,
        fsdp_no_sync=setup.fsdp_no_sync_accumulation, fsdp_mixed_units=setup.fsdp_mixed_frozen_units,
    )


def components_for(model: ModelArch, setup: TrainSetup, kernel: str = "fused",
                   overheads: Overheads | None = None, loss: str | None = None,
                   paged_states: bool = False) -> dict[str, Any]:
    """memory_components for one TrainSetup (scalars)."""
    ov = overheads or Overheads()
    return memory_components(
        model, **_codes(setup), precision=setup.precision, optimizer=setup.optimizer,
        fused_optimizer=setup.fused_optimizer, peft=setup.peft, lora_rank=setup.lora_rank,
        lora_targets=setup.lora_targets, attention=setup.attention, dropout=setup.dropout, kernel=kernel,
        comm_bucket_bytes=ov.comm_bucket_bytes, statics=_statics(model, setup, kernel, loss=loss),
        paged_states=paged_states, fp8_recipe=setup.fp8_recipe.value,
    )


def reserved_bytes(allocated, gpus, ov: Overheads):
    """nvidia-smi view: allocated x (1 + fragmentation) + CUDA context + cuBLAS workspace (+ NCCL)."""
    return np.asarray(allocated, dtype=float) * (1.0 + ov.fragmentation_fraction) + ov.cuda_context_bytes \
        + ov.cublas_workspace_bytes + np.where(np.asarray(gpus) > 1, ov.nccl_workspace_bytes, 0.0)


def estimate_memory(
    model: ModelArch,
    setup: TrainSetup,
    gpu: GpuSpec | None = None,
    gpu_memory_bytes: float | None = None,
    overheads: Overheads | None = None,
    kernel: str = "fused",
    loss: str | None = None,
) -> MemoryEstimate:
    """Per-GPU training memory for one setup, the fit against the GPU, and the terms that explain it.

    loss: loss-head implementation (LOSS_IMPLS); None = the kernel's default."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    ov = overheads or Overheads()
    comp = components_for(model, setup, kernel, ov, loss)
    if gpu_memory_bytes is None and gpu is not None:
        gpu_memory_bytes = float(gpu.memory_bytes)
    paged_out = False
    if setup.paged_optimizer and gpu_memory_bytes is not None and setup.offload_optimizer == Offload.NONE \
            and float(reserved_bytes(comp["total"], setup.gpus, ov)) > gpu_memory_bytes:
        # bitsandbytes paged optimizer: the states do not fit next to the rest, so the driver pages them
        # out to host memory (unified memory); the step then streams them over the host link
        comp = components_for(model, setup, kernel, ov, loss, paged_states=True)
        paged_out = True
    auto_kept = None
    if setup.offload_auto_cap > 0 and setup.offload_optimizer != Offload.NONE and gpu_memory_bytes is not None:
        # adaptive placement: model data stays on the GPU while peak CUDA memory is under cap x capacity and moves
        # to the host only as far as needed (Colossal-AI AutoPlacementPolicy.evict_tensors: cuda_capacity *
        # steady_cuda_cap_ratio - max non-model data = what model data may use)
        on_gpu = components_for(model, setup.with_(offload_optimizer=Offload.NONE, offload_params=Offload.NONE,
                                                   offload_auto_cap=0.0), kernel, ov, loss)
        cap = setup.offload_auto_cap * float(gpu_memory_bytes)
        if float(on_gpu["total"]) <= cap:
            comp = on_gpu
        else:
            auto_kept = max(0.0, cap - float(comp["total"]))
            comp = dict(comp)
            comp["optimizer/states"] = comp["optimizer/states"] + auto_kept
            comp["total"] = comp["total"] + auto_kept
            comp["host"] = max(float(comp["host"]) - auto_kept, 0.0)
            for p_ in PHASES:
                comp[f"phase_{p_}"] = comp[f"phase_{p_}"] + auto_kept
    per_gpu = {k_: float(comp[k_]) for k_ in COMPONENTS}
    allocated = float(comp["total"])
    reserved = float(reserved_bytes(allocated, setup.gpus, ov))
    headroom = None if gpu_memory_bytes is None else float(gpu_memory_bytes) - reserved
    fits = None if gpu_memory_bytes is None else bool(reserved <= gpu_memory_bytes)
    phase = PHASES[int(comp["phase"])]
    stage = ("first", "last", "second")[int(comp["stage"])] if setup.pp > 1 else "only"
    reasons: list[str] = []
    if fits is False:
        top = sorted(((v, k_) for k_, v in per_gpu.items() if v > 0), reverse=True)[:3]
        reasons.append(
            f"needs {reserved / 2**30:.2f} GiB per GPU (peak at {phase}) but the GPU has "
            f"{gpu_memory_bytes / 2**30:.2f} GiB; largest parts: "
            + ", ".join(f"{k_} {v / 2**30:.2f} GiB" for v, k_ in top))
    overhead = {
        "fragmentation": allocated * ov.fragmentation_fraction,
        "cuda_context": ov.cuda_context_bytes,
        "cublas_workspace": ov.cublas_workspace_bytes,
        "nccl": ov.nccl_workspace_bytes if setup.gpus > 1 else 0.0,
    }
    terms = _terms(model, setup, kernel, ov, comp, per_gpu, allocated, reserved, gpu_memory_bytes, phase, stage,
                   loss)
    if paged_out:
        terms.append(Term("memory/paged_optimizer", float(comp["host"]), "B",
                          "optimizer states paged to host (with them on the GPU, peak reserved > GPU memory)",
                          {"paged_optimizer": True, "states_on_host": True},
                          "bitsandbytes docs 'Paged optimizers' (CUDA unified memory, evicted under pressure)"))
    return MemoryEstimate(
        per_gpu=per_gpu, peak_allocated_bytes=allocated, peak_reserved_bytes=reserved,
        host_bytes=float(comp["host"]), gpu_memory_bytes=None if gpu_memory_bytes is None else float(gpu_memory_bytes),
        headroom_bytes=headroom, fits=fits, reasons=tuple(reasons), terms=tuple(terms),
        activation_bytes=float(comp["activations"]), model_state_bytes=float(comp["model_state"]),
        nvme_bytes=float(comp["nvme"]), overhead_bytes=overhead, peak_phase=phase, worst_stage=stage,
        kernel=kernel,
        phase_totals={p: float(comp[f"phase_{p}"]) for p in PHASES},
    )


def _terms(model, setup, kernel, ov, comp, per_gpu, allocated, reserved, gpu_mem, phase, stage,
           loss=None) -> list[Term]:
    st = _statics(model, setup, kernel, loss=loss)
    sb = state_bytes(setup.precision, kernel, SHARDING_CODE[setup.sharding], setup.fp8_recipe.value)
    if st.amp_alt is not None and float(sb["amp"]) > 0:
        st = st.amp_alt
    n_sh = setup.dp if setup.sharding != Sharding.NONE else 1
    common = {"tp": setup.tp, "pp": setup.pp, "dp": setup.dp, "cp": setup.cp, "ep": setup.ep, "N_sh": n_sh,
              "sharding": setup.sharding.value}
    opt_b = optimizer_state_bytes(setup.optimizer, sb["s"], st.adafactor_fraction)
    terms = [
        Term("memory/weights", per_gpu["model/weights"], "B",
             "Psi_stage * w_bytes / (N_sh if params sharded)" if setup.peft == Peft.NONE else
             "frozen base: Psi_linear * (0.5 + 0.127/8 NF4) + Psi_other * 2 (QLoRA) | Psi * 2 (LoRA)",
             {**common, "w_bytes": float(sb["w"]), "precision": setup.precision.value, "peft": setup.peft.value},
             "ZeRO (Rajbhandari et al. 2020) Sec. 3.1; QLoRA (Dettmers et al. 2023) Sec. 3"),
        Term("memory/gradients", per_gpu["gradients"], "B",
             "max(V*h, largest Linear) / t * g_bytes / (N_sh if grads sharded)  (optimizer step in backward: "
             "one parameter's gradient live at a time)" if setup.optimizer_in_backward else
             "Psi_trainable * g_bytes / (N_sh if grads sharded)",
             {**common, "g_bytes": float(sb["g"]), "optimizer_in_backward": setup.optimizer_in_backward},
             "ZeRO Sec. 5 (P_os+g); Megatron distributed optimizer (fp32 main grads); PyTorch tutorial "
             "'optimizer step in backward' (register_post_accumulate_grad_hook)"),
        Term("memory/optimizer_states", per_gpu["optimizer/states"], "B",
             "Psi_trainable * opt_bytes / (N_sh if states sharded)",
             {**common, "optimizer": setup.optimizer.value, "opt_bytes_per_param": opt_b},
             "ZeRO Sec. 3.1 (K=12 incl. fp32 master); bitsandbytes 8-bit; Adafactor (Shazeer & Stern 2018) rows+cols"),
        Term("memory/master_weights", per_gpu["optimizer/master_weights"], "B",
             "Psi_trainable * 4 / (N_sh if states sharded)  (mixed precision with 16-bit params)",
             {**common, "m_bytes": float(sb["m"])}, "ZeRO Sec. 3.1; Megatron 6 + 12/dp B/param"),
        Term("memory/optimizer_temporaries", per_gpu["optimizer/temporaries"], "B",
             "foreach AdamW: + 1 x Psi x state_bytes (torch._foreach_sqrt(exp_avg_sq)); fused: 0",
             {"fused_optimizer": setup.fused_optimizer}, "trace_feasibility.md (Llama-7B peak = P+G+2S+tmp)"),
    ]
    act_formula = {
        Recompute.FULL: "L_stage * in_flight * b*s/c * (layer input bytes per token)  (full recompute)",
        Recompute.OP_SAC: "L_stage * in_flight * b*s/c * (block input + outputs of the 1st, 3rd, 5th.. mm + SDPA "
                          "output + fp32 LSE)  (torchtitan op-level SAC: pytorch/torchtitan "
                          "distributed/activation_checkpoint.py _apply_op_sac)",
        Recompute.ATTENTION_ONLY: "L_stage * in_flight * b*s/c * (layer input + MLP saved tensors)  "
                                  "(attention sublayer checkpointed)",
        Recompute.LAYER_FRACTION: "L_stage * in_flight * b*s/c * (f * layer input + (1-f) * all saved tensors)  "
                                  "(torchtitan selective_ac_option=N: f = 1/N; fms-fsdp selective p)",
    }.get(setup.recompute, "L_stage * in_flight * b*s/c * [sum of saved tensors per token]")
    tensors = {name: round(v, 3) for name, v, _ in st.act_names}
    if setup.recompute == Recompute.OP_SAC:
        tensors = {name: round(v, 3) for name, v, _ in op_sac_saved_tensors(
            model, model.is_moe and model.first_k_dense_layers == 0, 2.0, 2.0)}
    elif setup.recompute == Recompute.LAYER_FRACTION:
        tensors = {**tensors, "recompute_fraction": setup.recompute_fraction}
    split: dict[str, Any] = {}
    if model.is_encoder_decoder:
        # per input token, summed over the average layer: what the encoder and the decoder layers keep
        enc_b = sum(v for n_, v, k_ in st.act_names if n_.startswith("enc/") and k_ != "s2")
        dec_b = sum(v for n_, v, k_ in st.act_names if n_.startswith("dec/") and k_ != "s2")
        split = {"arch": "encoder-decoder", "L_enc": model.num_layers, "L_dec": model.num_decoder_layers,
                 "s_enc": setup.seq_len, "s_dec": setup.dec_seq,
                 "encoder_share_of_layer_bytes": round(enc_b / max(enc_b + dec_b, 1e-9), 3),
                 "decoder_share_of_layer_bytes": round(dec_b / max(enc_b + dec_b, 1e-9), 3)}
        act_formula += ("  [encoder-decoder: per input token, the average of L_e encoder layers and L_d decoder "
                        "layers (x s_d/s_e; cross-attention K/V on encoder tokens)]")
    elif model.arch_kind != ArchKind.DECODER:
        split = {"arch": model.arch_kind.value}
    terms.append(Term(
        "memory/activations", per_gpu["activations/layers"], "B", act_formula,
        {"kernel": kernel, "b": setup.micro_batch, "s": setup.seq_len, "h": model.hidden_size, **split,
         "layers_per_stage": math.ceil(model.total_layers / setup.pp), "recompute": setup.recompute.value,
         "bytes_per_token_per_layer_unsharded": round(sum(v for _, v, k_ in st.act_names if k_ != "s2"), 2),
         "per_layer_sbh": round(sum(v for _, v, k_ in st.act_names if k_ != "s2") / model.hidden_size, 3),
         **{f"tensor:{k_}": v for k_, v in tensors.items()}},
        "Korthikanti et al. 2022 eq. 1-2 (fused); HF eager autograd saved tensors (hf-eager)"))
    terms.append(Term(
        "memory/logits_loss", per_gpu["activations/logits_loss"], "B",
        "b*s/c * (saved + temp) * V / t  (fp32 log-softmax kept, gradients at backward start)",
        {"V": model.vocab_size, "loss": loss or ("vocab-parallel" if kernel == "fused" else "full"),
         "saved_bytes_per_vocab": st.logits_saved / model.vocab_size,
         "temp_bytes_per_vocab": st.logits_temp / model.vocab_size, "phase": phase,
         **({"head_tokens_per_input_token": setup.dec_seq / setup.seq_len} if model.is_encoder_decoder else {})},
        "Korthikanti 2022 Sec. 4.1 (4sbv); trace_feasibility.md (GPT-2 peak at start of backward)"))
    if per_gpu["activations/weight_casts"]:
        terms.append(Term("memory/weight_casts", per_gpu["activations/weight_casts"], "B",
                          "Psi_matmul_stage * cast_bytes (autocast bf16 copy of each Linear weight; fp8 copy under TE)",
                          {"cast_bytes": float(sb["cast"])}, "trace_feasibility.md (+12.3 GiB for Llama-7B AMP)"))
    if per_gpu["buffers/gathered_params"]:
        terms.append(Term("memory/gathered_params", per_gpu["buffers/gathered_params"], "B",
                          "FSDP: fwd (largest unit + prefetched layer) * compute bytes / t; bwd + largest unit * "
                          "(compute bytes (unsharded grad) + reduce bytes (reduce-scatter input)) / t; "
                          "ZeRO-3: ((largest unit + next layer) * compute bytes + largest unit * grad bytes) / t",
                          {"largest_unit_params": st.largest_unit, "layer_params": st.layer_unit,
                           "grad_reduce_dtype": setup.grad_reduce_dtype or "precision default", "phase": phase},
                          "DeepSpeed estimate_zero3: 4 x largest layer; FSDP2 _fsdp_collectives.foreach_reduce "
                          "(reduce-scatter input in reduce_dtype, grads freed after the copy-in); Zhao et al. 2023"))
    terms.append(Term("memory/peak_allocated", allocated, "B",
                      "max over phases (fwd, bwd, bwd_end, opt) and pipeline stages of the sum of components",
                      {"phase": phase, "stage": stage, **{f"phase_{p}": float(comp[f'phase_{p}']) for p in PHASES}},
                      "sizeup phase model (methodology.md 'Training memory')"))
    terms.append(Term("memory/peak_reserved", reserved, "B",
                      "allocated * (1 + fragmentation) + cuda_context + cublas_workspace + (gpus > 1 ? nccl : 0)",
                      {"fragmentation": ov.fragmentation_fraction, "cuda_context": ov.cuda_context_bytes,
                       "cublas_workspace": ov.cublas_workspace_bytes, "nccl": ov.nccl_workspace_bytes},
                      "catalog/data/overheads.yaml (sources per value there)" if ov.sources else "Overheads given by the caller"))
    if comp["host"] or comp["nvme"]:
        terms.append(Term("memory/host", float(comp["host"]), "B",
                          "offloaded optimizer states + master (+ params, + activations) on the CPU",
                          {"offload_optimizer": setup.offload_optimizer.value,
                           "offload_params": setup.offload_params.value, "nvme_bytes": float(comp["nvme"])},
                          "ZeRO-Offload (Ren et al. 2021); ZeRO-Infinity (Rajbhandari et al. 2021)"))
    if gpu_mem is not None:
        terms.append(Term("memory/headroom", float(gpu_mem) - reserved, "B", "gpu_memory - peak_reserved",
                          {"gpu_memory": float(gpu_mem)}, "GPU catalog"))
    return terms


# --------------------------------------------------------------------------- suggestions


def _min_gpus_for(model, setup: TrainSetup, gpu_memory_bytes, ov, kernel, max_gpus: int,
                  loss: str | None = None) -> TrainSetup | None:
    """Smallest data-parallel degree (GPU count) at which `setup` fits; None if none up to max_gpus."""
    unit = setup.tp * setup.pp * setup.cp
    max_dp = max_gpus // unit
    if max_dp < 1:
        return None
    dps = np.arange(1, max_dp + 1)
    codes = _codes(setup)
    codes["dp"] = dps
    codes["gpus_per_node"] = setup.gpus_per_node
    st = _statics(model, setup, kernel, loss=loss)
    comp = memory_components(model, **codes, precision=setup.precision, optimizer=setup.optimizer,
                             fused_optimizer=setup.fused_optimizer, peft=setup.peft, lora_rank=setup.lora_rank,
                             lora_targets=setup.lora_targets, attention=setup.attention, dropout=setup.dropout,
                             kernel=kernel, comm_bucket_bytes=ov.comm_bucket_bytes, statics=st)
    reserved = reserved_bytes(comp["total"], dps * unit, ov)
    ok = np.nonzero(reserved <= gpu_memory_bytes)[0]
    if ok.size == 0:
        return None
    dp = int(dps[ok[0]])
    if setup.ep > 1 and dp % setup.ep:
        dp = int(math.ceil(dp / setup.ep) * setup.ep)
    return setup.with_(gpus=dp * unit)


def suggest_fixes(
    model: ModelArch,
    setup: TrainSetup,
    gpu_memory_bytes: float,
    overheads: Overheads | None = None,
    max_gpus: int = 1024,
    kernel: str = "fused",
    loss: str | None = None,
) -> list[Suggestion]:
    """Changes that make the setup fit, cheapest first (least throughput lost, then fewest GPUs).

    Each candidate is tried alone; when it does not fit alone it is tried together with micro-batch 1
    and full recompute. Candidates that still do not fit are listed last with the memory they give.
    """
    ov = overheads or Overheads()

    def peak(s: TrainSetup) -> tuple[float, float]:
        est = estimate_memory(model, s, gpu_memory_bytes=gpu_memory_bytes, overheads=ov, kernel=kernel, loss=loss)
        return est.peak_reserved_bytes, est.peak_allocated_bytes

    base_setup = setup
    gb = setup.micro_batch * setup.grad_accum
    candidates: list[tuple[str, TrainSetup, str]] = []
    if setup.micro_batch > 1:
        candidates.append(("micro-batch 1 (gradient accumulation keeps the global batch)",
                           setup.with_(micro_batch=1, grad_accum=gb), "small: smaller GEMMs"))
    if not setup.fused_optimizer and setup.optimizer in (Optimizer.ADAMW, Optimizer.LION, Optimizer.ADAFACTOR):
        candidates.append(("fused optimizer step (no foreach temporaries)", setup.with_(fused_optimizer=True), "none"))
    if setup.attention == Attention.MATH:
        candidates.append(("flash attention (no s x s scores)", setup.with_(attention=Attention.FLASH), "none: faster"))
    if setup.recompute == Recompute.NONE and setup.attention == Attention.MATH:
        candidates.append(("selective recompute", setup.with_(recompute=Recompute.SELECTIVE), "~2-5% slower"))
    if setup.recompute != Recompute.FULL:
        candidates.append(("full activation recompute", setup.with_(recompute=Recompute.FULL), "~25-33% slower (one extra forward)"))
    if not setup.optimizer_in_backward and setup.peft == Peft.NONE:
        fused_bwd = setup.with_(optimizer_in_backward=True)
        if not check_setup(model, fused_bwd):
            candidates.append(("optimizer step fused into backward (no full gradient buffer)", fused_bwd,
                               "none; no gradient accumulation"))
    if setup.optimizer in (Optimizer.ADAMW, Optimizer.LION) and setup.peft == Peft.NONE:
        candidates.append(("8-bit Adam (bitsandbytes)", setup.with_(optimizer=Optimizer.ADAM8BIT), "~0-5% slower"))
    for sharding, label in ((Sharding.ZERO2, "ZeRO-2"), (Sharding.ZERO3, "ZeRO-3")):
        if SHARDING_CODE[setup.sharding] < SHARDING_CODE[sharding] or setup.sharding in (Sharding.NONE,):
            trial = setup.with_(sharding=sharding)
            grown = _min_gpus_for(model, trial, gpu_memory_bytes, ov, kernel, max_gpus, loss)
            if grown is not None and grown.dp == 1:
                continue  # sharding over one data-parallel rank changes nothing
            if grown is None:
                grown = _min_gpus_for(model, trial.with_(recompute=Recompute.FULL, micro_batch=1,
                                                         grad_accum=gb), gpu_memory_bytes, ov, kernel, max_gpus, loss)
                if grown is not None:
                    if grown.dp > 1:  # (on one rank it is the same as the recompute suggestion)
                        label_full = f"{label} over {grown.gpus} GPUs + full recompute, micro-batch 1"
                        candidates.append((label_full, grown, "more GPUs; communication"))
                    continue
                grown = trial.with_(gpus=max(setup.gpus, max_gpus // (setup.tp * setup.pp * setup.cp)
                                             * setup.tp * setup.pp * setup.cp))
                candidates.append((f"{label} (does not fit even over {grown.gpus} GPUs)", grown,
                                   "more GPUs; communication"))
                continue
            candidates.append((f"{label} over {grown.gpus} GPUs", grown, "more GPUs; communication"))
    if setup.tp == 1 and model.num_heads % 2 == 0:
        for t in (2, 4, 8):
            if model.num_heads % t == 0 and (model.num_kv_heads % t == 0 or t % model.num_kv_heads == 0) \
                    and t <= setup.gpus_per_node:
                candidates.append((f"tensor parallel tp={t} over {setup.gpus * t} GPUs",
                                   setup.with_(tp=t, gpus=setup.gpus * t, sequence_parallel=True),
                                   "more GPUs; TP all-reduces"))
    if setup.peft == Peft.NONE:
        candidates.append((f"LoRA r={setup.lora_rank} (frozen 16-bit base)",
                           setup.with_(peft=Peft.LORA), "fewer trainable params (quality trade-off)"))
    if setup.peft != Peft.QLORA:
        candidates.append((f"QLoRA r={setup.lora_rank} (4-bit NF4 base)",
                           setup.with_(peft=Peft.QLORA), "~30-40% slower than LoRA; quality trade-off"))
    if setup.offload_optimizer == Offload.NONE:
        off = setup.with_(offload_optimizer=Offload.CPU)
        if off.sharding == Sharding.NONE:
            off = off.with_(sharding=Sharding.ZERO2)
        candidates.append(("CPU offload of the optimizer (ZeRO-Offload)", off, "slower: optimizer step on the CPU"))

    out: list[Suggestion] = []
    for label, cand, cost in candidates:
        if check_setup(model, cand):
            continue
        reserved, allocated = peak(cand)
        fits = reserved <= gpu_memory_bytes
        if not fits and cand.recompute != Recompute.FULL:
            combo = cand.with_(recompute=Recompute.FULL, micro_batch=1, grad_accum=gb)
            if not check_setup(model, combo):
                r2, a2 = peak(combo)
                if r2 <= gpu_memory_bytes:
                    label, cand, reserved, allocated, fits = (
                        label + " + full recompute, micro-batch 1", combo, r2, a2, True)
        out.append(Suggestion(label, cand, reserved, bool(fits), allocated, cost, cand.gpus))
    del base_setup
    rank = {id(s): i for i, s in enumerate(out)}
    out.sort(key=lambda s: (not s.fits, s.gpus, rank[id(s)]))
    return out
