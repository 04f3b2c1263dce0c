"""Inference serving: weights at the serving precision, KV cache, memory budget, prefill/decode
roofline, $/1M tokens and fleet sizing.

PURE: frozen inputs in, frozen results out (with `Term`s). The numeric kernels (`kv_bytes_per_sequence`,
`prefill_time_s`, `decode_step_time_s`, `kv_budget_bytes`) accept numpy arrays or Python numbers for
the plan-varying inputs (tp, pp, batch, context, GPU numbers) and use no Python `if` on them.

Symbols: L layers, h hidden, a heads, k KV heads, d head dim, V vocab, f FFN size, t tensor-parallel
degree, p pipeline degree, B concurrent sequences (batch), c context tokens, s prompt tokens,
n output tokens, W weight bytes, BW HBM bytes/s, eta efficiencies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from sizeup.core.explain import Term
from sizeup.core.params import count_params
from sizeup.core.types import ArchKind, GpuSpec, ModelArch

GiB = 1024**3
HOURS_PER_MONTH = 730.0  # 8760 h / 12: the usual cloud-billing month


# --------------------------------------------------------------------------- dtypes


class WeightDtype(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    """FP8 weights and FP8 activations (W8A8, e.g. TensorRT-LLM/ModelOpt or vLLM fp8)."""
    INT8 = "int8"
    """INT8 weight-only (W8A16), per-channel scales."""
    INT4 = "int4"
    """INT4 weight-only (AWQ/GPTQ, W4A16): per group of g weights one fp16 scale + one fp16 zero."""


class KvDtype(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"


WEIGHT_ALIASES = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "16": "bf16",
                  "awq": "int4", "gptq": "int4", "mixed": "int4", "w4a16": "int4", "4bit": "int4", "4-bit": "int4", "nf4": "int4",
                  "w8a16": "int8", "8bit": "int8", "w8a8-fp8": "fp8", "float8": "fp8", "e4m3": "fp8"}
KV_ALIASES = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "auto": "bf16", "fp8-e4m3": "fp8",
              "fp8-e5m2": "fp8", "e4m3": "fp8", "float8": "fp8"}

KV_BYTES = {KvDtype.FP32: 4.0, KvDtype.FP16: 2.0, KvDtype.BF16: 2.0, KvDtype.FP8: 1.0, KvDtype.INT8: 1.0}


def weight_bits_per_param(dtype: WeightDtype, group_size: int = 128) -> float:
    """Bits stored per quantised linear weight.

    int4 (AWQ/GPTQ): 4 bits + one fp16 scale and one fp16 zero per group of g -> 4 + 32/g
    (Lin et al. 2023 AWQ; Frantar et al. 2022 GPTQ, group size 128 the common default).
    int8 weight-only: per-output-channel scales, < 0.1 % overhead: 8. fp8: per-tensor scale: 8.
    """
    if dtype == WeightDtype.INT4:
        return 4.0 + 32.0 / max(1, group_size)
    return {WeightDtype.FP32: 32.0, WeightDtype.FP16: 16.0, WeightDtype.BF16: 16.0,
            WeightDtype.FP8: 8.0, WeightDtype.INT8: 8.0}[dtype]


def compute_dtype(dtype: WeightDtype) -> str:
    """Tensor-core path used by the GEMMs: fp8 for W8A8-fp8; 16-bit for weight-only int8/int4 (dequant in kernel)."""
    return {WeightDtype.FP8: "fp8", WeightDtype.FP32: "tf32"}.get(dtype, "bf16")


# --------------------------------------------------------------------------- knobs (data)

# NCCL ring all-reduce cost model, per protocol: (base latency s, latency per ring step s, fraction of the bus
# bandwidth, cap on the bus bandwidth B/s; 0 = none). NVIDIA/nccl src/graph/tuning.cc (commit b647562):
# baseLat Ring {LL 6.6, LL128 14.0, Simple 8.4} us; hwLat NVLINK Ring {.6, 1.9, 3.4} us, PCI Ring {1.0, 2.5, 5.7} us;
# Ring LL all-reduce busBw = min(llMaxBw 87.7 GB/s, busBw/4); LL128 busBw * 0.92, NVLink only.
# Code defaults; catalog/data/inference.yaml `allreduce_protocols` holds the same numbers with the quote.
NCCL_RING_PROTOCOLS: Mapping[str, Mapping[str, tuple[float, float, float, float]]] = {
    "nvlink": {"LL": (6.6e-6, 0.6e-6, 0.25, 87.7e9), "LL128": (14.0e-6, 1.9e-6, 0.92, 0.0),
               "Simple": (8.4e-6, 3.4e-6, 1.0, 0.0)},
    "pcie": {"LL": (6.6e-6, 1.0e-6, 0.25, 87.7e9), "Simple": (8.4e-6, 5.7e-6, 1.0, 0.0)},
}


@dataclass(frozen=True)
class ServingKnobs:
    """Serving-engine memory and efficiency knobs; values and sources live in catalog/data/inference.yaml."""

    gpu_memory_utilization: float = 0.9
    non_torch_bytes: float = 0.35 * GiB
    cuda_graph_bytes: float = 0.5 * GiB
    max_num_batched_tokens: int = 8192
    activation_bytes: float = 2.0
    logits_bytes: float = 4.0
    block_size_tokens: int = 16
    max_num_seqs: int = 256
    offline_max_num_seqs: int = 2048
    quant_group_size: int = 128
    decode_attention_hbm_efficiency: float = 0.7
    decode_kv_repeat: bool = False
    """Decode attention first copies K and V once per query head of each group (transformers' repeat_kv, taken
    when SDPA gets an attention mask, e.g. a static KV cache), then reads the copies: per KV byte of the context
    the step moves (1 + n_rep) bytes at the GPU's HBM efficiency [copy: read once, write n_rep] and n_rep bytes at
    decode_attention_hbm_efficiency [SDPA], n_rep = query heads / KV heads (engine profile)."""
    decode_q_heads_per_kv_read: int = 0
    """Query heads one read of a KV head serves in the decode-attention kernel (e.g. heads per CTA); a GQA group of
    n_rep heads reads its K/V ceil(n_rep / this) times. 0 = the whole group shares one read (engine profile)."""
    fp8_matmul_efficiency_ratio: float = 0.89
    matmul_model_fraction: float = 1.0
    """Fraction of the single-GEMM MAMF curve the GEMMs reach inside a model's forward (layouts, shapes that are
    not the best-tiled ones, the board power-capped under sustained load). Physical value 1.0; the loaders put
    in the active calibration's in-step training fraction (calibration.yaml matmul_training_fraction), one
    figure for training and serving forwards."""
    decode_step_overhead_s: float = 0.0
    step_host_per_seq_s: float = 0.0
    """Host seconds per sequence in a scheduler step that the GPU waits for (the scheduler's per-request work,
    block tables and input preparation, sampling bookkeeping, stop checks, detokenising and streaming each new
    token). Physical value 0 (not counted); a calibration may set it (calibration.yaml: the packaged refit tests it
    on the serving rows and keeps 0, the fitted value did not carry over under leave-one-source-out). A step of n
    sequences gains n x this, or under an overlap scheduler only what its GPU time does not hide (host_exposed_s);
    engines with per_request_step_work false get 0."""
    host_launch_s: float = 0.0
    """Host (CPU) time to issue one forward's kernels when the engine runs eager (no CUDA graphs): kernels per
    forward x seconds per kernel launch (engine profile). The GPU runs the kernels as they arrive, so a forward
    takes max(GPU time, host_launch_s): a small batch is launch-bound (PyTorch blog 'Accelerating Generative AI
    with PyTorch II: GPT, Fast', 2023: the eager baseline 'is heavily CPU overhead bound')."""
    prefill_host_launch_s: float = -1.0
    """Host launch time of a prefill forward; < 0 = host_launch_s (an engine that captures only the decode forward
    as CUDA graphs, e.g. transformers' compiled generate, runs its prefill eager)."""
    prefill_forward_graph: bool = True
    """A prefill forward is replayed as a CUDA graph like the decode forward (up to graph_max_tokens); False = the
    engine captures only decodes and every prefill runs eager: stream gaps at its kernel boundaries (SGLang v0.4
    cuda_graph_runner captures ForwardMode.DECODE only; transformers' compiled generate)."""
    prefill_eager_elementwise_bytes: Optional[Sequence[float]] = None
    """Unfused elementwise bytes (as eager_elementwise_bytes) of a prefill forward; None = eager_elementwise_bytes."""
    first_token_from_decode: bool = False
    """The prefill stops one prompt token short; the next decode step samples the first token (engine profile)."""
    async_output_proc: bool = False
    """Asynchronous output processing (vLLM v0.6 V0 engine): a step's sampled tokens are detokenised and streamed
    while the next step runs and reach the client when that step returns, so TTFT and E2E take one more step, and a
    request whose last token was sampled is scheduled for one extra step (engine profile)."""
    overlap_schedule: bool = False
    """The engine's overlap scheduler forms the next batch while the GPU runs the current one: a request that arrives
    while the server is busy joins one step later (serving_sim.Scheduler.overlap_admission; engine profile)."""
    spec_tokens: int = 0
    """Speculative decoding (engine profile `speculative`): draft tokens k proposed per verify step; 0 = off."""
    spec_acceptance_rate: float = 0.0
    """Probability alpha that a draft token is accepted (Leviathan et al. 2023: a verify step emits
    (1 - alpha^(k+1)) / (1 - alpha) tokens on average)."""
    spec_draft_cost_ratio: float = 0.0
    """Seconds of one draft-model step per second of a target decode step (k draft steps per verify step)."""
    prefill_attention_causal_skip: bool = True
    """The prefill attention kernel skips the key tiles above the causal diagonal (FlashAttention-2, FlashInfer):
    s^2/2 query-key pairs per prompt of s tokens. False = it sweeps every key for every query and masks the upper
    triangle (an additive causal-mask bias, TurboMind v0.1's CUTLASS kernel): s^2 pairs (engine profile)."""
    kv_cache_blocks: int = 0
    """KV blocks the engine allocates when its launch sets a count (TurboMind cache_max_entry_count >= 1 = blocks,
    vLLM --num-gpu-blocks-override); 0 = sized from gpu_memory_utilization (kv_budget_bytes)."""
    eager_elementwise_bytes: Sequence[float] = (0.0, 0.0, 0.0)
    """Unfused elementwise kernels of an eager engine: HBM bytes per token per layer = a*h + b*kv_dim + c*ffn
    (16-bit activations; fp32 intermediates count 4 B). Each unfused op reads and writes its whole tensor
    (Ivanov et al. 2021 'Data Movement Is All You Need': element-wise ops are memory-bound); fused engines 0."""
    utilization: float = 0.5
    kernel_boundary_graph_s: float = 0.0
    """GPU time lost at each dependent kernel boundary of a forward replayed as a CUDA graph: the next kernel's
    launch, during which the GPU does no useful work (catalog/data/inference.yaml, with its source)."""
    kernel_boundary_stream_s: float = 0.0
    """As kernel_boundary_graph_s for kernels launched one by one into a stream (eager engines)."""
    forward_kernels: float = 0.0
    """GPU kernels of one decode forward (engine profile gpu_kernels_per_layer x L + gpu_kernels_per_forward;
    0 = not counted). The forward's GPU time gains forward_kernels x the boundary time of its launch mode."""
    forward_kernels_graph: bool = True
    """The decode forward is replayed as a CUDA graph (kernel_boundary_graph_s) or launched kernel by kernel
    (kernel_boundary_stream_s) (engine profile cuda_graphs)."""
    graph_max_tokens: int = 0
    """Largest forward (tokens in the step) the engine replays as a CUDA graph; a larger one runs eager: the host
    issues its kernels one by one (eager_fallback_launch_s) and each kernel boundary costs a stream launch
    (kernel_boundary_stream_s). 0 = every forward the profile replays is covered (engine profile
    cuda_graph_max_batch; SGLang's cuda_graph_runner 'can_run': batch_size <= max_bs, else the model's eager
    forward)."""
    eager_fallback_launch_s: float = 0.0
    """Host time to issue one forward's kernels when it falls back to eager (graph_max_tokens exceeded): host ops x
    seconds per op (engine profile); it overlaps the GPU work as host_launch_s does."""
    int4_weight_read_efficiency: float = 1.0
    """W4A16 decode GEMV: fraction of the 16-bit weight-streaming bandwidth reached while dequantising int4
    weights (1.0 = the ideal 4-bit speedup; engine profile, catalog/data/engines.yaml)."""
    tp_allreduce_exposed_s: float = 0.0
    """Seconds each in-forward tensor-parallel all-reduce costs beyond the collective's own modelled time (the
    ranks' skew at the barrier: every rank waits for the slowest one's kernels and launches). Physical value 0
    (not counted); the active calibration puts in its fitted value (calibration.yaml, fitted on the serving
    rows, leave-one-source-out checked). Added to every all-reduce when t > 1."""
    api_server: bool = True
    """Requests reach the engine through its API server (vLLM/SGLang's OpenAI-compatible server, trtllm-serve,
    Triton, TGI's router); False for in-process use (the engine's Python API, transformers' generate, offline
    benchmarks). Engine profile `api_server`."""
    api_server_ttft_s: float = 0.0
    """Seconds the API server adds to each request's TTFT and end-to-end latency (HTTP, chat template,
    tokenisation, detokenisation and streaming of the first token) while the GPU works on other requests.
    Physical value 0 (not counted); the active calibration's value applies (the packaged one leaves it at 0: a
    fitted value did not carry over between engines). Applied only when api_server."""
    allreduce_impl: str = "nccl"
    """'nccl' or 'custom' (vLLM/SGLang/TensorRT-LLM one-shot P2P all-reduce over NVLink for small messages)."""
    custom_allreduce: Sequence[float] = (4.5e-6, 0.16, 8.0 * 1024**2)
    """Custom all-reduce (latency s, fraction of the bus bandwidth, largest message B): SGLang PR #2904 measured
    4-5 us at 32 KB and 31 us at 1 MB on H100 TP4 -> lat 4.5 us, 26.5 us for 1.5 MB on the wire = 0.16 of the
    450 GB/s x eta busbw; vLLM's custom all-reduce handles messages up to 8 MB (vllm PR #2192), NCCL above."""
    allreduce_protocols: Mapping[str, Mapping[str, Sequence[float]]] = field(
        default_factory=lambda: {k: dict(v) for k, v in NCCL_RING_PROTOCOLS.items()})
    """Per link class ('nvlink' | 'pcie'): protocol -> (base latency s, latency per ring step s, fraction of
    the bus bandwidth, bus-bandwidth cap B/s or 0). NCCL's ring all-reduce cost model (src/graph/tuning.cc)."""
    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ServingKnobs":
        """Build from the `knobs:` mapping of inference.yaml: each entry {value, unit?, source}."""
        if not data:
            return cls()
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, entry in data.items():
            if key not in cls.__dataclass_fields__ or key == "sources":
                continue
            if isinstance(entry, Mapping):
                value = entry.get("value")
                if entry.get("unit") == "GiB":
                    value = float(value) * GiB
                sources[key] = str(entry.get("source", ""))
            else:
                value = entry
            values[key] = value
        return cls(**values, sources=sources)

    def with_(self, **changes) -> "ServingKnobs":
        return replace(self, **changes)

    @property
    def spec_tokens_per_step(self) -> float:
        """Expected tokens a verify step emits per sequence, E = (1 - a^(k+1)) / (1 - a) (Leviathan et al. 2023,
        eq. 1); 1 without speculative decoding."""
        k, a = int(self.spec_tokens), float(self.spec_acceptance_rate)
        if k <= 0:
            return 1.0
        return float(k + 1) if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)


# --------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class ServeSetup:
    """One serving replica: t x p GPUs, serving precision, request shape and batching.

    batch: sequences decoded together. None -> as many as memory allows, capped at knobs.max_num_seqs.
    static: a static batch (all prompts prefilled, then all decoded together) instead of continuous
        (in-flight) batching.
    """

    tp: int = 1
    pp: int = 1
    weights: WeightDtype = WeightDtype.BF16
    kv_dtype: KvDtype = KvDtype.BF16
    prompt_len: int = 512
    output_len: int = 128
    batch: int | None = None
    static: bool = False
    ep: int = 1
    """Expert-parallel degree of the MoE layers inside the TP group (TensorRT-LLM moe_ep_size with moe_tp_size =
    tp / ep; vLLM --enable-expert-parallel and SGLang --ep-size use ep = tp): each of ep rank groups holds E/ep whole
    experts, each split over tp/ep ranks; attention stays tensor-parallel (expert_parallel_read/_load)."""

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    def with_(self, **changes) -> "ServeSetup":
        return replace(self, **changes)


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightBytes:
    total_bytes: float
    quantized_params: int
    full_precision_params: int
    bits_per_quantized_param: float
    breakdown: Mapping[str, float]
    term: Term


def weight_bytes(m: ModelArch, dtype: WeightDtype, group_size: int = 128) -> WeightBytes:
    """Bytes of the weights at the serving precision.

    Assumption (AWQ/GPTQ/ModelOpt practice): only the transformer-layer linear weights are quantised;
    token embedding, output head, norms and MoE routers stay 16-bit (fp32 when dtype is fp32).
    """
    pc = count_params(m)
    b = pc.breakdown
    linear_keys = ("layers/attention", "layers/mlp", "layers/experts", "layers/shared_experts")
    quantized = int(sum(b.get(k, 0) for k in linear_keys))
    rest = int(pc.total - quantized)
    bits = weight_bits_per_param(dtype, group_size)
    rest_bytes_per_param = 4.0 if dtype == WeightDtype.FP32 else 2.0
    linear_bytes = quantized * bits / 8.0
    rest_bytes = rest * rest_bytes_per_param
    total = linear_bytes + rest_bytes
    term = Term(
        "weights/bytes", total, "B",
        "N_linear * bits/8 + (N_total - N_linear) * bytes_16  [embeddings, head, norms, routers kept 16-bit]",
        {"N_linear": quantized, "N_other": rest, "bits": bits, "bytes_16": rest_bytes_per_param, "dtype": str(dtype),
         "group_size": group_size if dtype == WeightDtype.INT4 else "-"},
        "count_params (architecture); int4 bits = 4 + 32/g (AWQ, Lin et al. 2023; GPTQ, Frantar et al. 2022)",
    )
    return WeightBytes(total, quantized, rest, bits,
                       {"weights/linear": linear_bytes, "weights/embeddings_head_norms": rest_bytes}, term)


# --------------------------------------------------------------------------- KV cache


def kv_bytes_per_token_per_layer(m: ModelArch, kv_dtype: KvDtype) -> float:
    """Bytes one token adds to ONE layer's cache.

    MHA/GQA/MQA: K and V, k heads x d each -> 2*k*d*bytes (vLLM PagedAttention paper, Kwon et al. 2023 Sec 2).
    MLA: one compressed latent (kv_lora_rank) + the decoupled RoPE key (qk_rope_head_dim)
    -> (r_kv + d_rope)*bytes (DeepSeek-V2 paper, Table 1: (d_c + d_h^R) * l per token).
    """
    nbytes = KV_BYTES[kv_dtype]
    if m.is_mla:
        return float((m.kv_lora_rank + m.qk_rope_head_dim) * nbytes)
    return float(2 * m.num_kv_heads * m.head_dim * nbytes)


def kv_heads_per_gpu(m: ModelArch, tp):
    """KV heads each TP rank holds: max(k/t, 1) (heads replicated when t > k; llm-analysis). MLA latent is
    shared by all heads, so every TP rank holds the whole latent (vLLM/SGLang MLA with TP)."""
    if m.is_mla:
        return 1.0 + 0.0 * np.asarray(tp, dtype=float)
    return np.maximum(m.num_kv_heads / np.asarray(tp, dtype=float), 1.0)


def kv_tp_fraction(m: ModelArch, tp):
    """Share of one layer's per-token KV bytes that one TP rank stores."""
    if m.is_mla:
        return 1.0 + 0.0 * np.asarray(tp, dtype=float)
    return kv_heads_per_gpu(m, tp) / m.num_kv_heads


def window_layers(m: ModelArch) -> int:
    return min(m.num_layers, m.sliding_window_layers or (m.num_layers if m.sliding_window else 0)) \
        if m.sliding_window else 0


def kv_bytes_per_token(m: ModelArch, kv_dtype: KvDtype) -> float:
    """Per-token KV bytes of the whole model (all layers, one GPU, no window cap): L * per-layer bytes.
    Llama-2-7B fp16: 2*32*32*128*2 = 524,288 B; Llama-3-70B: 2*80*8*128*2 = 327,680 B."""
    return float(m.num_layers * kv_bytes_per_token_per_layer(m, kv_dtype))


def kv_cached_tokens(context, window: int):
    """Tokens a layer keeps: all of them, or at most the window for sliding-window layers (Mistral)."""
    c = np.asarray(context, dtype=float)
    if window <= 0:
        return c
    return np.minimum(c, float(window))


def kv_bytes_per_sequence(m: ModelArch, context, kv_dtype: KvDtype, tp=1, pp=1, block_size: int = 1):
    """KV bytes one sequence of `context` tokens holds on ONE GPU of a t x p replica.

    = per_layer_bytes * kv_tp_fraction(t) * [ (L - L_w) * ceil(c/blk)*blk + L_w * ceil(min(c, w)/blk)*blk ] / p
    Paged blocks (vLLM block_size, default 16) round each sequence up to whole blocks.
    """
    per_layer = kv_bytes_per_token_per_layer(m, kv_dtype)
    blk = float(max(1, block_size))
    n_w = window_layers(m)
    full = np.ceil(kv_cached_tokens(context, 0) / blk) * blk
    windowed = np.ceil(kv_cached_tokens(context, m.sliding_window) / blk) * blk if n_w else 0.0
    tokens = (m.num_layers - n_w) * full + n_w * windowed
    return per_layer * kv_tp_fraction(m, tp) * tokens / np.asarray(pp, dtype=float)


def kv_read_bytes_per_sequence(m: ModelArch, context, kv_dtype: KvDtype, tp=1, pp=1):
    """KV bytes a decode step reads for one sequence on one GPU (no block rounding)."""
    return kv_bytes_per_sequence(m, context, kv_dtype, tp, pp, 1)


# --------------------------------------------------------------------------- model constants for timing


@dataclass(frozen=True)
class _Shapes:
    matmul_params_per_token: float   # params touched by the GEMMs of one token, incl. the LM head
    lm_head_params: float
    dense_weight_params: float       # weights read every decode step whatever the batch (non-expert)
    expert_params_per_layer_each: float
    n_moe_layers: int
    num_experts: int
    experts_per_token: int
    attn_dim_qk: int                 # per-head dims used by attention scores / values
    attn_dim_v: int
    attn_dim_qk_prefill: int
    ffn_gemm: int                    # representative GEMM width (per token) for the efficiency curve
    embedding_params: float = 0.0    # token (+ position) embedding tables: gathered, not streamed
    tied_head_params: float = 0.0    # V*h read again by a tied LM head


def _shapes(m: ModelArch) -> _Shapes:
    pc = count_params(m)
    b = pc.breakdown
    emb = b.get("embedding/token", 0) + b.get("embedding/position", 0)
    head = b.get("output_head", 0)
    lm = m.vocab_size * m.hidden_size
    body_active = pc.active - emb - head
    matmul = body_active + lm
    from sizeup.core.params import mlp_params

    expert_each = mlp_params(m, m.expert_ffn_size) if m.is_moe else 0
    n_moe = m.num_moe_layers
    dense_weights = pc.total - emb - n_moe * m.num_experts * expert_each  # + lm head (in total if untied)
    if m.tie_embeddings:
        dense_weights += lm  # the tied matrix is still read for the head
    if m.is_mla:
        qk, v = m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank  # absorbed decode (DeepSeek-V2 Sec 2.1.2)
        qk_pre = m.qk_nope_head_dim + m.qk_rope_head_dim
    else:
        qk = v = qk_pre = m.head_dim
    ffn = m.ffn_size or m.expert_ffn_size * max(1, m.experts_per_token)
    return _Shapes(float(matmul), float(lm), float(dense_weights), float(expert_each), n_moe, m.num_experts,
                   m.experts_per_token, qk, v, qk_pre, ffn, float(emb), float(lm if m.tie_embeddings else 0))


def matmul_efficiency(gpu: GpuSpec, gemm_flops):
    """Achievable fraction of dense peak for a GEMM of `gemm_flops` FLOPs: the GPU's measured curve,
    interpolated in log(FLOPs) and clamped at the ends (catalog `matmul_efficiency`, MAMF sweeps)."""
    curve = gpu.matmul_efficiency or ((1.0, 0.7),)
    xs = np.log(np.array([max(x, 1.0) for x, _ in curve], dtype=float))
    ys = np.array([y for _, y in curve], dtype=float)
    return np.interp(np.log(np.maximum(np.asarray(gemm_flops, dtype=float), 1.0)), xs, ys)


def _peak(gpu: GpuSpec, dtype: str) -> float:
    for key in (dtype, "bf16", "fp16", "tf32", "fp32"):
        if gpu.peak(key) > 0:
            return gpu.peak(key)
    from sizeup.errors import SizeupError

    raise SizeupError(f"GPU {gpu.id!r} has no FLOP/s figures in the catalog; inference timing needs them")


def _compute_rate(gpu: GpuSpec, weights: WeightDtype, knobs: ServingKnobs, gemm_flops):
    """Achievable FLOP/s of the serving GEMMs: peak(dtype) * eta_mm(size) * in-model fraction (* fp8/bf16 MAMF
    ratio for fp8)."""
    dtype = compute_dtype(weights)
    if dtype == "fp8" and gpu.peak("fp8") <= 0:
        dtype = "bf16"  # no fp8 tensor cores (A100, V100): weight-only fp8, 16-bit math
    peak = _peak(gpu, dtype)
    eff = matmul_efficiency(gpu, gemm_flops) * knobs.matmul_model_fraction
    if dtype == "fp8":
        eff = eff * knobs.fp8_matmul_efficiency_ratio
    return peak * eff, dtype


def api_server_s(knobs: ServingKnobs) -> float:
    """Seconds the API server adds to a request's TTFT and end-to-end latency: api_server_ttft_s when requests go
    through the engine's API server (knobs.api_server), else 0. It runs beside the GPU work (other requests' steps
    go on meanwhile), so it delays what the client sees, not the GPU schedule."""
    return float(knobs.api_server_ttft_s) if knobs.api_server else 0.0


def link_class(gpu: GpuSpec) -> str:
    """'pcie' when the GPUs of a node talk over PCIe only (no NVLink/NVSwitch/xGMI peer links), else 'nvlink'."""
    return "pcie" if gpu.intra_node_link.strip().lower().startswith("pcie") else "nvlink"


def _allreduce_s(gpu: GpuSpec, payload_bytes, tp, knobs: "ServingKnobs | None" = None):
    """Ring all-reduce of S bytes over t GPUs of one node, NCCL's cost model (src/graph/tuning.cc,
    ncclTopoTuneModel + ncclTopoGetAlgoTime): NCCL picks the fastest protocol p for the message size,
      time = min_p [ lat0_p + 2(t-1)*lat_hop_p + 2(t-1)/t * S / (BW_intra * eta * f_p) ]
    LL: lowest latency, 1/4 of the bus bandwidth (capped); LL128: 0.92 of it; Simple: full bandwidth, most latency.
    Decode messages (B*h*2 bytes, 16 KB - 4 MB) sit in the latency-bound LL/LL128 regime; 0 when t = 1."""
    t = np.asarray(tp, dtype=float)
    best = None
    for cand in allreduce_protocol_times(gpu, payload_bytes, t, knobs).values():
        best = cand if best is None else np.minimum(best, cand)
    if knobs is not None and uses_custom_allreduce(gpu, knobs):
        # custom P2P all-reduce over NVLink (vLLM/SGLang/TensorRT-LLM), used below its size limit; NCCL above
        size = np.asarray(payload_bytes, dtype=float)
        custom = custom_allreduce_s(gpu, size, t, knobs)
        best = np.where(size <= float(knobs.custom_allreduce[2]), np.minimum(best, custom), best)
    if knobs is not None:
        best = best + float(knobs.tp_allreduce_exposed_s)  # ranks' skew at the barrier (fitted; 0 = physical)
    return np.where(t > 1, best, 0.0)


def uses_custom_allreduce(gpu: GpuSpec, knobs: ServingKnobs) -> bool:
    """The engine's custom P2P all-reduce applies: the engine has one and the GPUs talk over NVLink."""
    return knobs.allreduce_impl == "custom" and link_class(gpu) == "nvlink"


def custom_allreduce_s(gpu: GpuSpec, payload_bytes, tp, knobs: ServingKnobs):
    """One custom P2P all-reduce (knobs.custom_allreduce = latency, fraction of the bus bandwidth, size limit):
    lat + 2(t-1)/t * S / (busbw * f)."""
    lat, frac = float(knobs.custom_allreduce[0]), float(knobs.custom_allreduce[1])
    bus_bw = max(gpu.intra_node_bytes_per_s, 1.0) * max(gpu.collective_efficiency_intra, 1e-3)
    t = np.maximum(np.asarray(tp, dtype=float), 1.0)
    return lat + 2.0 * (t - 1.0) / t * np.asarray(payload_bytes, dtype=float) / (bus_bw * max(frac, 1e-6))


def allreduce_protocol_times(gpu: GpuSpec, payload_bytes, tp, knobs: "ServingKnobs | None" = None) -> dict:
    """Seconds of one ring all-reduce under each NCCL protocol (see _allreduce_s), keyed by protocol name."""
    protocols = (knobs or ServingKnobs()).allreduce_protocols.get(link_class(gpu)) or NCCL_RING_PROTOCOLS["nvlink"]
    t = np.maximum(np.asarray(tp, dtype=float), 1.0)
    bus_bw = max(gpu.intra_node_bytes_per_s, 1.0) * max(gpu.collective_efficiency_intra, 1e-3)
    wire = 2.0 * (t - 1.0) / t * np.asarray(payload_bytes, dtype=float)
    out = {}
    for name, (lat0, lat_hop, frac, cap) in protocols.items():
        bw_p = bus_bw * max(float(frac), 1e-6)
        bw_p = min(bw_p, float(cap)) if float(cap) > 0 else bw_p
        out[name] = float(lat0) + 2.0 * (t - 1.0) * float(lat_hop) + wire / bw_p
    return out


def _p2p_s(gpu: GpuSpec, payload_bytes, pp):
    """(p-1) pipeline send/recv of S bytes between consecutive stages: S / (BW_intra * eta) + latency each."""
    p = np.asarray(pp, dtype=float)
    bw = max(gpu.intra_node_bytes_per_s, 1.0) * max(gpu.collective_efficiency_intra, 1e-3)
    return (p - 1.0) * (payload_bytes / bw + gpu.collective_latency_s)


# --------------------------------------------------------------------------- kernels (array-agnostic)


def prefill_view(knobs: ServingKnobs) -> ServingKnobs:
    """The knobs a prefill forward runs with: its own host launch time and elementwise bytes when the engine sets
    them apart from the decode forward's (prefill eager, decode replayed as CUDA graphs)."""
    changes: dict[str, Any] = {}
    if knobs.prefill_host_launch_s >= 0:
        changes["host_launch_s"] = knobs.prefill_host_launch_s
    if not knobs.prefill_forward_graph:
        changes["forward_kernels_graph"] = False
    if knobs.prefill_eager_elementwise_bytes is not None:
        changes["eager_elementwise_bytes"] = tuple(knobs.prefill_eager_elementwise_bytes)
    return knobs.with_(**changes) if changes else knobs


def kernel_boundaries_s(knobs: ServingKnobs) -> float:
    """GPU seconds one forward loses at its kernel boundaries: n_k * t_b, n_k = knobs.forward_kernels (kernels of
    the forward, engine profile), t_b = the per-kernel launch gap of CUDA-graph replay or of stream launches
    (Spector et al., Hazy Research 2025 'Look Ma, No Bubbles!': H100, ~1.3 us per kernel in a graph, ~2.1 us
    from a stream). Independent of the batch: the gap is per kernel, not per byte."""
    t_b = knobs.kernel_boundary_graph_s if knobs.forward_kernels_graph else knobs.kernel_boundary_stream_s
    return float(knobs.forward_kernels) * float(t_b)


def graph_fallback(knobs: ServingKnobs, tokens):
    """Where a forward of `tokens` tokens is too large for the engine's captured CUDA graphs (tokens >
    graph_max_tokens > 0, decode replayed as graphs): (mask, extra GPU seconds at the kernel boundaries, host
    launch seconds). Such a forward runs eager, so its n_k kernel boundaries cost the stream gap instead of the
    graph gap, n_k * (t_stream - t_graph), and the host issues its kernels one by one, eager_fallback_launch_s,
    overlapping the GPU work (SGLang cuda_graph_runner can_run / vLLM V1 bs_to_padded_graph_size: a batch above
    the largest captured size is not padded, it runs without a graph)."""
    T = np.asarray(tokens, dtype=float)
    cap = int(knobs.graph_max_tokens)
    mask = (T > cap) if cap > 0 and knobs.forward_kernels_graph else np.zeros_like(T, dtype=bool)
    gaps = float(knobs.forward_kernels) * max(float(knobs.kernel_boundary_stream_s)
                                              - float(knobs.kernel_boundary_graph_s), 0.0)
    return mask, np.where(mask, gaps, 0.0), np.where(mask, float(knobs.eager_fallback_launch_s), 0.0)


def eager_elementwise_s(m: ModelArch, gpu: GpuSpec, tokens, tp, knobs: ServingKnobs):
    """Seconds of an eager engine's unfused elementwise passes over `tokens` tokens (all layers, one TP rank):
    T * L * (a*h + b*kv_dim + c*ffn) / t / (BW * eta_hbm)  (coefficients: ServingKnobs.eager_elementwise_bytes)."""
    a, b, c = (float(x) for x in knobs.eager_elementwise_bytes)
    if not (a or b or c):
        return 0.0 * np.asarray(tokens, dtype=float)
    ffn = m.ffn_size or m.expert_ffn_size * max(1, m.experts_per_token)
    per_tok = m.num_layers * (a * m.hidden_size + b * m.kv_dim + c * ffn)
    bw = gpu.hbm_bytes_per_s * gpu.hbm_efficiency
    return np.asarray(tokens, dtype=float) * per_tok / np.asarray(tp, dtype=float) / bw


def prefill_parts(m: ModelArch, gpu: GpuSpec, prompt_len, n_seqs, tp=1, pp=1,
                  weights: WeightDtype = WeightDtype.BF16, knobs: ServingKnobs | None = None,
                  wbytes: float | None = None, shapes: _Shapes | None = None, ep: int = 1) -> dict:
    """The pieces of one prefill forward of `n_seqs` prompts of `prompt_len` tokens on a t x p replica.

    FLOPs = 2*N_body*B*s + 2*V*h*B [logits of the last token only] + 2*L*B*pairs(s)*a*(d_qk+d_v)
    [causal attention, pairs = s^2/2, window-capped; s^2 when the kernel does not skip the masked tiles]
    (Kaplan et al. 2020 Table 1; Chinchilla App. F)
    compute = FLOPs/t / (peak*eta_mm(GEMM size));  memory = W/t / (BW*eta_hbm)  [weights read once]
    comm    = 2*L all-reduces of B*s*h activations (Megatron TP, Shoeybi et al. 2019 Sec 3) + (p-1) stage sends
    eager   = unfused elementwise passes of an eager engine (eager_elementwise_s)
    kernels = GPU time lost at the forward's kernel boundaries (kernel_boundaries_s)
    launch  = host time to issue the forward's kernels (eager engines); it overlaps the GPU work, so
    time    = gpu + host_exposed_s(gpu, launch, B): the host time the GPU work does not hide (launches beyond it,
              and B x the per-sequence step work, each prompt sampling its first token), as for a decode step;
              = max(max(compute, memory) + comm + eager + kernels, launch) when that per-sequence time is 0.
    """
    knobs = prefill_view(knobs or ServingKnobs())
    sh = shapes or _shapes(m)
    wb = wbytes if wbytes is not None else weight_bytes(m, weights, knobs.quant_group_size).total_bytes
    s = np.asarray(prompt_len, dtype=float)
    nb = np.asarray(n_seqs, dtype=float)
    t = np.asarray(tp, dtype=float)
    p = np.asarray(pp, dtype=float)
    tokens = nb * s
    body = sh.matmul_params_per_token - sh.lm_head_params
    n_w = window_layers(m)
    # causal: s^2/2 pairs; a kernel without causal tile skipping computes all s^2 and masks half (engine profile)
    full_pairs = s * s / 2.0 if knobs.prefill_attention_causal_skip else s * s
    w = float(m.sliding_window or 0)
    win_pairs = np.where(s <= w, s * s / 2.0, s * w - w * w / 2.0) if n_w else 0.0
    pairs = (m.num_layers - n_w) * full_pairs + n_w * win_pairs
    attn = 2.0 * nb * pairs * m.num_heads * (sh.attn_dim_qk_prefill + (m.v_head_dim or m.head_dim))
    # expert parallelism: the step waits for the rank group with the most token-expert pairs (expert_parallel_load)
    flops = 2.0 * (body + _expert_imbalance_params(sh, tokens, ep)) * tokens + 2.0 * sh.lm_head_params * nb + attn
    gemm = 2.0 * tokens * m.hidden_size * sh.ffn_gemm / t
    rate, mm_dtype = _compute_rate(gpu, weights, knobs, gemm)
    compute = flops / t / rate
    memory = wb / t / (gpu.hbm_bytes_per_s * gpu.hbm_efficiency)
    # p stages run one after another for one batch (no micro-batch overlap): total work is the same,
    # plus (p-1) point-to-point sends of the activations between stages.
    comm = 2.0 * m.num_layers * _allreduce_s(gpu, tokens * m.hidden_size * knobs.activation_bytes, t, knobs) \
        + _p2p_s(gpu, tokens * m.hidden_size * knobs.activation_bytes, p)
    eager = eager_elementwise_s(m, gpu, tokens, t, knobs)
    # a forward above the engine's largest captured graph runs eager (graph_fallback)
    _, fb_gaps, fb_launch = graph_fallback(knobs, tokens)
    kernels = kernel_boundaries_s(knobs) + fb_gaps
    gpu_s = np.maximum(compute, memory) + comm + eager + kernels
    launch = np.maximum(knobs.host_launch_s, fb_launch)
    host_exposed = host_exposed_s(gpu_s, launch, nb, knobs)
    return {"compute": compute, "memory": memory, "comm": comm, "eager": eager, "kernels": kernels,
            "launch": launch,
            "host_exposed": host_exposed, "total": gpu_s + host_exposed, "flops": flops,
            "peak": _peak(gpu, mm_dtype), "eta_mm": rate / _peak(gpu, mm_dtype)}


def prefill_time_s(m: ModelArch, gpu: GpuSpec, prompt_len, n_seqs, tp=1, pp=1,
                   weights: WeightDtype = WeightDtype.BF16, knobs: ServingKnobs | None = None,
                   wbytes: float | None = None, shapes: _Shapes | None = None, ep: int = 1):
    """Time to prefill `n_seqs` prompts of `prompt_len` tokens on a t x p replica (see prefill_parts):
    max(max(compute, memory) + comm + eager elementwise, host launch)."""
    return prefill_parts(m, gpu, prompt_len, n_seqs, tp, pp, weights, knobs, wbytes, shapes, ep)["total"]


def check_expert_parallel(model: ModelArch, ep: int, tp: int | None = None) -> None:
    """ep splits a MoE model's experts inside the TP group: a whole number >= 1 that divides the expert count and,
    when given, tp (every rank group holds E/ep experts, each over tp/ep ranks)."""
    from sizeup.errors import SizeupError

    if isinstance(ep, bool) or not isinstance(ep, (int, np.integer)) or ep < 1:
        raise SizeupError(f"--ep must be a whole number >= 1, got {ep!r}")
    if ep == 1:
        return
    if not model.is_moe:
        raise SizeupError(f"--ep {ep} needs a mixture-of-experts model; {model.id} is dense (use --ep 1)")
    if tp is not None and tp % ep:
        raise SizeupError(f"--ep {ep} must divide --tp {tp}: the experts are split inside the tensor-parallel group "
                          "(attention stays tensor-parallel); raise --tp or lower --ep")
    if model.num_experts % ep:
        raise SizeupError(f"--ep {ep} must divide {model.id}'s {model.num_experts} experts")


def _binomial_expected_max(n: int, p, k: int) -> np.ndarray:
    """E[max of k independent Binomial(n, p)] for each p: sum_{j=0}^{n-1} (1 - F(j)^k), F the binomial CDF
    (exact; log-space pmf)."""
    pv = np.clip(np.atleast_1d(np.asarray(p, dtype=float)), 0.0, 1.0)
    if n <= 0:
        return np.zeros_like(pv)
    j = np.arange(n + 1, dtype=float)
    log_c = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(n + 1)])
    with np.errstate(divide="ignore", invalid="ignore"):
        lp, lq = np.log(pv)[:, None], np.log1p(-pv)[:, None]
        logpmf = log_c[None, :] + np.where(j > 0, j * lp, 0.0) + np.where(j < n, (n - j) * lq, 0.0)
    cdf = np.minimum(np.cumsum(np.exp(logpmf), axis=1), 1.0)
    return np.sum(1.0 - cdf[:, :-1] ** k, axis=1)


def expert_parallel_read(sh: "_Shapes", batch, ep: int = 1):
    """Experts per MoE layer a decode step of B tokens reads, in whole-replica units, on the busiest of ep rank groups.

    Each expert is touched with p = 1 - (1 - K/E)^B (uniform routing, K of E experts per token). ep = 1 (experts
    split over all t ranks): E * p, the mean. ep > 1: a rank group holds E/ep experts and the step waits for the one
    with the most touched, X_r ~ Binomial(E/ep, p) taken as independent, so ep * E[max_r X_r]
    (_binomial_expected_max); E * p <= this <= E."""
    B = np.asarray(batch, dtype=float)
    E, K = float(sh.num_experts), float(sh.experts_per_token)
    p = 1.0 - (1.0 - K / E) ** B
    if ep <= 1:
        return E * p
    got = ep * _binomial_expected_max(int(sh.num_experts // ep), p.reshape(-1), int(ep))
    return got.reshape(B.shape) if B.shape else float(got[0])


def expert_parallel_load(sh: "_Shapes", tokens, ep: int = 1):
    """Expert-GEMM work of the busiest of ep rank groups over the mean (1 at ep = 1, at most ep): the T*K token-expert
    pairs of a forward land on the groups uniformly, Y_r ~ Binomial(T*K, 1/ep); E[max_r Y_r] ~ mu + sigma * z_ep
    (normal approximation, z_ep = Phi^-1((ep - 0.375) / (ep + 0.25)), Blom 1958), capped at T*K."""
    T = np.asarray(tokens, dtype=float)
    if ep <= 1 or not sh.n_moe_layers:
        return 1.0 + 0.0 * T
    from statistics import NormalDist

    n = np.maximum(T, 1.0) * float(sh.experts_per_token)
    mu = n / ep
    sigma = np.sqrt(n * (1.0 / ep) * (1.0 - 1.0 / ep))
    z = NormalDist().inv_cdf((ep - 0.375) / (ep + 0.25))
    return np.minimum(mu + sigma * z, n) / mu


def _untouched_expert_params(sh: "_Shapes", experts_read):
    """Expert params a decode step does not read, whole replica: L_moe * (E - experts read) * P_e, with the experts
    read per MoE layer from expert_parallel_read (0 for a dense model)."""
    read = np.asarray(experts_read, dtype=float)
    if not sh.n_moe_layers:
        return 0.0 * read
    return sh.n_moe_layers * (sh.num_experts - read) * sh.expert_params_per_layer_each


def _linear_read_bytes(m: ModelArch, sh: "_Shapes", weights: WeightDtype, knobs: ServingKnobs, experts_read):
    """Bytes of quantised linear weights one decode step streams (dense layers + touched experts), whole model."""
    linear_bpp = weight_bits_per_param(weights, knobs.quant_group_size) / 8.0
    pc_linear = weight_bytes(m, weights, knobs.quant_group_size).quantized_params
    return (pc_linear - _untouched_expert_params(sh, experts_read)) * linear_bpp


def _expert_imbalance_params(sh: "_Shapes", tokens, ep: int = 1):
    """Params per token the busiest expert-parallel rank group adds over the mean: L_moe * K * P_e * (load - 1)
    (expert_parallel_load; 0 at ep = 1)."""
    if ep <= 1 or not sh.n_moe_layers:
        return 0.0 * np.asarray(tokens, dtype=float)
    extra = expert_parallel_load(sh, tokens, ep) - 1.0
    return sh.n_moe_layers * sh.experts_per_token * sh.expert_params_per_layer_each * extra


def decode_kv_s_per_byte(m: ModelArch, gpu: GpuSpec, knobs: ServingKnobs) -> float:
    """Seconds of decode attention per byte of cached K/V the step's queries attend to:
    1 / (BW * eta_attn), or with repeat_kv (ServingKnobs.decode_kv_repeat, n_rep = a / a_kv > 1)
    (1 + n_rep) / (BW * eta_hbm) + n_rep / (BW * eta_attn)  [transformers integrations/sdpa_attention.py:
    use_gqa_in_sdpa is False when an attention mask is passed -> repeat_kv(key), repeat_kv(value) materialise
    the expanded tensors before scaled_dot_product_attention], or, when one read of a KV head serves only g query
    heads (ServingKnobs.decode_q_heads_per_kv_read, e.g. heads per CTA), ceil(n_rep / g) / (BW * eta_attn)."""
    bw = gpu.hbm_bytes_per_s
    base = 1.0 / (bw * knobs.decode_attention_hbm_efficiency)
    n_rep = 1.0 if m.is_mla else m.num_heads / max(1, m.num_kv_heads)
    if knobs.decode_kv_repeat and n_rep > 1.0:
        return (1.0 + n_rep) / (bw * gpu.hbm_efficiency) + n_rep * base
    per_read = int(knobs.decode_q_heads_per_kv_read)
    if per_read > 0 and n_rep > per_read:
        return math.ceil(n_rep / per_read) * base
    return base


def decode_step_parts(m: ModelArch, gpu: GpuSpec, batch, context, tp=1, pp=1,
                      weights: WeightDtype = WeightDtype.BF16, kv_dtype: KvDtype = KvDtype.BF16,
                      knobs: ServingKnobs | None = None, wbytes: float | None = None,
                      shapes: _Shapes | None = None, ep: int = 1) -> dict:
    """One decode step (one new token for each of B sequences at context c), per replica, as parts (s).

    gemm      = max(W_read/t / (BW*eta_hbm), 2*N_active*B/t / (peak*eta_mm))   [roofline, Williams et al. 2009]
    attention = max(B*KV(c)/t / (BW*eta_attn), 2*L*B*c*a*(d_qk+d_v)/t / (peak*eta_mm))
    comm      = 2*L all-reduces of B*h activations (Megatron TP)
                + GPU time lost at the forward's kernel boundaries, n_kernels * t_boundary (kernel_boundaries_s)
    overhead  = per-step scheduler/sampling time (data), after the forward
    launch    = host time to issue the forward's kernels (eager engines; 0 with CUDA graphs): overlaps the GPU,
                step = gemm + attention + comm + overhead + host_exposed_s(gemm + attention + comm, launch, B)
                (= max(gemm + attention + comm, launch) + overhead when the calibration's per-sequence host time is 0)
    W_read: dense weights + experts touched by B tokens: E*(1-(1-K/E)^B) per MoE layer (uniform routing); with
    expert parallelism (ep > 1) the busiest rank group's touched experts (expert_parallel_read) and its share of the
    expert FLOPs (expert_parallel_load); the combine stays the TP all-reduce (tokens are replicated over the TP
    group after attention).
    """
    knobs = knobs or ServingKnobs()
    sh = shapes or _shapes(m)
    wb = wbytes if wbytes is not None else weight_bytes(m, weights, knobs.quant_group_size).total_bytes
    B = np.asarray(batch, dtype=float)
    c = np.asarray(context, dtype=float)
    t = np.asarray(tp, dtype=float)
    bw = gpu.hbm_bytes_per_s
    linear_bpp = weight_bits_per_param(weights, knobs.quant_group_size) / 8.0
    rest_bpp = 4.0 if weights == WeightDtype.FP32 else 2.0
    # streamed bytes = all weight bytes - token-embedding table (a gather, not streamed) - untouched experts
    experts_read = expert_parallel_read(sh, B, ep) if sh.n_moe_layers else 0.0 * B  # per MoE layer, whole replica
    untouched = _untouched_expert_params(sh, experts_read) * linear_bpp
    w_read = (wb - sh.embedding_params * rest_bpp + sh.tied_head_params * rest_bpp - untouched) / t
    flops = 2.0 * (sh.matmul_params_per_token + _expert_imbalance_params(sh, B, ep)) * B / t
    gemm_size = 2.0 * B * m.hidden_size * sh.ffn_gemm / t
    rate, _ = _compute_rate(gpu, weights, knobs, gemm_size)
    # W4A16 GEMV: the quantised linear weights stream at eta_int4 of the 16-bit rate (dequantisation in the
    # kernel; Marlin reaches ~ideal up to batch 16-32, older AWQ/GPTQ kernels only at batch 1-2)
    eta_q = knobs.int4_weight_read_efficiency if weights == WeightDtype.INT4 else 1.0
    if eta_q < 1.0:
        w_lin = _linear_read_bytes(m, sh, weights, knobs, experts_read) / t
        w_read = w_read + w_lin * (1.0 / max(eta_q, 1e-3) - 1.0)
    gemm = np.maximum(w_read / (bw * gpu.hbm_efficiency), flops / rate)
    kv_read = B * kv_read_bytes_per_sequence(m, c, kv_dtype, t, 1)
    n_w = window_layers(m)
    keys = (m.num_layers - n_w) * c + n_w * kv_cached_tokens(c, m.sliding_window)
    attn_flops = 2.0 * B * keys * m.num_heads * (sh.attn_dim_qk + sh.attn_dim_v) / t
    kv_s = decode_kv_s_per_byte(m, gpu, knobs)
    attention = np.maximum(kv_read * kv_s, attn_flops / rate)
    comm = 2.0 * m.num_layers * _allreduce_s(gpu, B * m.hidden_size * knobs.activation_bytes, t, knobs) \
        + _p2p_s(gpu, B * m.hidden_size * knobs.activation_bytes, pp)
    overhead = knobs.decode_step_overhead_s
    # eager engines: unfused elementwise passes over the B new tokens' activations (HBM time, with the comm part)
    comm = comm + eager_elementwise_s(m, gpu, B, t, knobs)
    # per-kernel launch gaps on the GPU (CUDA-graph replay or stream launches), carried with the comm part as the
    # eager passes are so that the serving simulator (which reads 'comm') charges them the same way
    # a batch above the engine's largest captured graph runs eager: stream gaps and a host launch (graph_fallback)
    _, fb_gaps, fb_launch = graph_fallback(knobs, B)
    kernels = kernel_boundaries_s(knobs) + fb_gaps
    comm = comm + kernels
    # host time the GPU work of the forward does not hide: the launches beyond it, and the per-sequence step work
    # (serial, or hidden too under an overlap scheduler; host_exposed_s)
    host_exposed = host_exposed_s(gemm + attention + comm, np.maximum(knobs.host_launch_s, fb_launch), B, knobs)
    return {"gemm": gemm, "attention": attention, "comm": comm, "overhead": overhead + host_exposed,
            "host_exposed": host_exposed, "kernels": kernels, "experts_read": experts_read,
            "gemm_memory": w_read / (bw * gpu.hbm_efficiency), "gemm_compute": flops / rate,
            "attention_memory": kv_read * kv_s,
            "attention_compute": attn_flops / rate}


def host_exposed_s(gpu_s, launch_s, n_seq, knobs: ServingKnobs):
    """Host seconds a step adds to its GPU time.

    h = n_seq x step_host_per_seq_s (per-request work of the step loop: scheduling, input preparation, sampling
    bookkeeping, stop checks, detokenising; calibration.yaml, physical 0); launch = host time to issue the forward's
    kernels (eager), which runs while the GPU executes them.
      exposed = max(launch - gpu, 0) + h          the step loop does h before/after the forward (vLLM, TGI)
      exposed = max(launch + h - gpu, 0)          overlap scheduler: batch n+1 is prepared while the GPU runs batch n
                                                  (SGLang v0.4 'zero-overhead batch scheduler'; TensorRT-LLM's PyTorch
                                                  backend 'Overlap Scheduler'), so h costs only what the GPU does not
                                                  cover
    """
    h = knobs.step_host_per_seq_s * n_seq
    if knobs.overlap_schedule:
        return np.maximum(launch_s + h - gpu_s, 0.0)
    return np.maximum(launch_s - gpu_s, 0.0) + h


def decode_step_time_s(m: ModelArch, gpu: GpuSpec, batch, context, tp=1, pp=1,
                       weights: WeightDtype = WeightDtype.BF16, kv_dtype: KvDtype = KvDtype.BF16,
                       knobs: ServingKnobs | None = None, wbytes: float | None = None,
                       shapes: _Shapes | None = None, ep: int = 1):
    """Seconds per decode step = gemm + attention + comm + overhead (see decode_step_parts; the 'overhead' part
    already carries the host time the GPU work does not hide, host_exposed_s).
    With p pipeline stages a token passes every stage in turn: the step is the sum over stages (no overlap)."""
    parts = decode_step_parts(m, gpu, batch, context, tp, pp, weights, kv_dtype, knobs, wbytes, shapes, ep)
    return parts["gemm"] + parts["attention"] + parts["comm"] + parts["overhead"]


def activation_peak_bytes(m: ModelArch, tp, knobs: ServingKnobs):
    """Peak activation memory of the engine's profiling run (vLLM profiles max_num_batched_tokens tokens):
    T * (q+k+v + 3*f [gate, up, act] + 2*h) / t * bytes + max_num_seqs * V/t * 4 B [fp32 logits]."""
    t = np.asarray(tp, dtype=float)
    T = float(knobs.max_num_batched_tokens)
    ffn = m.ffn_size or m.expert_ffn_size * max(1, m.experts_per_token)
    width = (m.q_dim + 2 * m.kv_dim + 3 * ffn) / t + 2 * m.hidden_size
    return T * width * knobs.activation_bytes + knobs.max_num_seqs * m.vocab_size / t * knobs.logits_bytes


def kv_budget_bytes(m: ModelArch, gpu_memory_bytes, tp, pp, wbytes: float, knobs: ServingKnobs):
    """Bytes left for the KV cache on one GPU:
    M * gpu_memory_utilization - W/(t*p) - activation peak - non-torch (context, NCCL)
    (vLLM worker memory profiling: 'total_gpu_memory x gpu_memory_utilization = ...; model weights take ...;
    non_torch_memory takes ...; PyTorch activation peak memory takes ...; the rest of the memory reserved for KV
    Cache is ...'). The decode CUDA graphs are captured after the KV cache is allocated ('Graph capturing finished
    in N secs, took X GiB' follows the profiling log) and live in the 1 - gpu_memory_utilization headroom, so they
    are not taken from the KV budget."""
    t = np.asarray(tp, dtype=float)
    p = np.asarray(pp, dtype=float)
    return (np.asarray(gpu_memory_bytes, dtype=float) * knobs.gpu_memory_utilization - wbytes / (t * p)
            - activation_peak_bytes(m, t, knobs) - knobs.non_torch_bytes)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class InferenceEstimate:
    model_id: str
    gpu_id: str
    tp: int
    pp: int
    ep: int
    gpus: int
    weights_dtype: str
    kv_dtype: str
    prompt_len: int
    output_len: int
    batching: str
    batch: int
    weights_bytes: float
    weights_bytes_per_gpu: float
    kv_cache_bytes_per_token: float
    kv_cache_bytes_per_token_per_gpu: float
    kv_cache_bytes_per_sequence: float
    kv_cache_bytes_total: float
    kv_budget_bytes_per_gpu: float
    max_concurrency: int
    fits: bool
    reasons: tuple[str, ...]
    ttft_s: float
    tpot_s: float
    e2e_latency_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_request: float
    output_tokens_per_s_per_gpu: float
    input_tokens_per_s: float
    decode_bound: str
    compute_bound_batch: int | None
    price_usd_per_gpu_hour: float | None
    utilization: float
    usd_per_hour: float | None
    usd_per_1m_input_tokens: float | None
    usd_per_1m_output_tokens: float | None
    memory_per_gpu: Mapping[str, float]
    decode_step: Mapping[str, float]
    notes: tuple[str, ...]
    terms: tuple[Term, ...]

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "terms"}
        out["memory_per_gpu"] = dict(self.memory_per_gpu)
        out["decode_step"] = dict(self.decode_step)
        out["reasons"] = list(self.reasons)
        out["notes"] = list(self.notes)
        return out


def _f(x) -> float:
    return float(np.asarray(x, dtype=float))


def compute_bound_batch(m: ModelArch, gpu: GpuSpec, context: float, setup: ServeSetup, knobs: ServingKnobs,
                        wbytes: float, sh: _Shapes, limit: int = 65536) -> int | None:
    """Smallest B (powers of two, then bisection) at which the decode GEMMs take longer in compute than in
    weight reads, i.e. the weight-GEMM roofline turns compute-bound; None if not below `limit`."""
    def bound(b: int) -> bool:
        p = decode_step_parts(m, gpu, b, context, setup.tp, setup.pp, setup.weights, setup.kv_dtype, knobs, wbytes, sh,
                              setup.ep)
        return _f(p["gemm_compute"]) >= _f(p["gemm_memory"])

    b = 1
    while b <= limit and not bound(b):
        b *= 2
    if b > limit:
        return None
    lo, hi = b // 2, b
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if bound(mid) else (mid, hi)
    return max(hi, 1)


def check_decoder_only(model: ModelArch) -> None:
    """Serving (prefill + autoregressive decode with a KV cache) is modelled for decoder-only models: an encoder
    has no decode phase, an encoder-decoder's decode also reads a cross-attention cache over the encoder output."""
    if model.arch_kind != ArchKind.DECODER:
        from sizeup.errors import SizeupError

        raise SizeupError(f"inference is modelled for decoder-only models; {model.id} is {model.arch_kind.value} "
                          "(training estimates support it: sizeup train / memory)")


def estimate_inference(
    model: ModelArch,
    gpu: GpuSpec,
    setup: ServeSetup | None = None,
    knobs: ServingKnobs | None = None,
    price_usd_per_gpu_hour: float | None = None,
    utilization: float | None = None,
    gpu_memory_bytes: float | None = None,
) -> InferenceEstimate:
    """Memory, latency, throughput and $/1M tokens of one serving replica.

    Continuous batching (default): a request costs the replica prefill(s) + n * step(B, c_avg)/B of GPU time,
    c_avg = s + n/2; output tokens/s = B*n / (B*prefill(s) + n*step). Static batch: the B prompts are
    prefilled together, then n steps: tokens/s = B*n / (prefill(B*s) + n*step).
    """
    check_decoder_only(model)
    setup = setup or ServeSetup()
    knobs = knobs or ServingKnobs()
    util = knobs.utilization if utilization is None else utilization
    mem_bytes = gpu.memory_bytes if gpu_memory_bytes is None else gpu_memory_bytes
    tp, pp, ep = setup.tp, setup.pp, setup.ep
    check_expert_parallel(model, ep, tp)
    s, n = setup.prompt_len, setup.output_len
    sh = _shapes(model)
    wb = weight_bytes(model, setup.weights, knobs.quant_group_size)
    W = wb.total_bytes
    ctx_max = s + n
    ctx_avg = s + n / 2.0
    kv_tok = kv_bytes_per_token(model, setup.kv_dtype)
    kv_tok_gpu = kv_tok * _f(kv_tp_fraction(model, tp)) / pp
    kv_seq = _f(kv_bytes_per_sequence(model, ctx_max, setup.kv_dtype, tp, pp, knobs.block_size_tokens))
    act = _f(activation_peak_bytes(model, tp, knobs))
    # no negative memory in any output: when the weights do not fit, the KV budget is 0 and fits is false
    budget = max(0.0, _f(kv_budget_bytes(model, mem_bytes, tp, pp, W, knobs)))
    max_conc = int(max(0.0, math.floor(budget / kv_seq))) if kv_seq > 0 else 0
    reasons: list[str] = []
    notes: list[str] = []
    if W / (tp * pp) > mem_bytes * knobs.gpu_memory_utilization:
        reasons.append(f"weights need {W / (tp * pp) / GiB:.1f} GiB per GPU, more than "
                       f"{knobs.gpu_memory_utilization:.0%} of {mem_bytes / GiB:.1f} GiB")
    elif max_conc < 1:
        reasons.append(f"no room for one sequence of {ctx_max} tokens: KV budget {max(budget, 0) / GiB:.2f} GiB, "
                       f"one sequence needs {kv_seq / GiB:.2f} GiB per GPU")
    cap = knobs.max_num_seqs
    if setup.batch is not None:
        B = int(setup.batch)
        if B > max_conc and max_conc >= 1:
            reasons.append(f"batch {B} needs {B * kv_seq / GiB:.1f} GiB of KV per GPU; only {max_conc} "
                           f"sequences of {ctx_max} tokens fit")
    else:
        B = max(1, min(max_conc, cap))
        notes.append(f"batch = min(memory limit {max_conc}, max_num_seqs {cap}) = {B}")
    fits = not reasons
    step = decode_step_parts(model, gpu, B, ctx_avg, tp, pp, setup.weights, setup.kv_dtype, knobs, W, sh, ep)
    experts_read = _f(step["experts_read"])  # per MoE layer, whole replica
    step_s = _f(step["gemm"] + step["attention"] + step["comm"] + step["overhead"])
    step_last = _f(decode_step_time_s(model, gpu, B, ctx_max, tp, pp, setup.weights, setup.kv_dtype, knobs, W, sh, ep))
    spec_k = int(knobs.spec_tokens)
    cycle_s = step_s  # the step a new request waits for (a whole verify cycle with speculative decoding)
    if spec_k > 0:
        # speculative decoding: a verify step runs the target model on k+1 tokens per sequence (GEMMs and
        # all-reduces at B(k+1) tokens, each sequence's KV read once) after k draft steps of the draft model
        # (draft_cost_ratio x a decode step without attention), and emits E tokens per sequence on average
        E = knobs.spec_tokens_per_step
        ver = decode_step_parts(model, gpu, B * (spec_k + 1), ctx_avg, tp, pp, setup.weights, setup.kv_dtype,
                                knobs, W, sh, ep)
        draft = _f(step["gemm"] + step["comm"] + step["overhead"])
        verify_s = _f(ver["gemm"] + ver["comm"] + ver["overhead"] + step["attention"])
        spec_cycle = verify_s + spec_k * knobs.spec_draft_cost_ratio * draft
        spec_note = (f"speculative decoding: k={spec_k} draft tokens, acceptance {knobs.spec_acceptance_rate:g} -> "
                     f"E = {E:.2f} tokens per verify step; TPOT = (verify at {spec_k + 1} tokens/sequence "
                     f"{verify_s * 1e3:.3g} ms + {spec_k} x {knobs.spec_draft_cost_ratio:g} x draft step) / E "
                     f"(Leviathan et al. 2023)")
        # the last step (context c_max) takes the same speculative factor as the average one
        step_last = step_last / step_s * spec_cycle / E
        step_s, cycle_s = spec_cycle / E, spec_cycle
        notes.append(spec_note)
    pre_one = prefill_parts(model, gpu, s, 1, tp, pp, setup.weights, knobs, W, sh, ep)
    prefill_one = _f(pre_one["total"])
    prefill_amortised = prefill_amortised_s(model, gpu, s, tp, pp, setup.weights, knobs, W, sh, ep)
    if setup.static:
        pre_shown = prefill_parts(model, gpu, s, B, tp, pp, setup.weights, knobs, W, sh, ep)
        prefill_batch = _f(pre_shown["total"])
        ttft = prefill_batch
        total = prefill_batch + n * step_s
        out_tps = B * n / total
        gpu_time_prefill_per_req = prefill_batch / B
    else:
        pre_shown = pre_one
        ttft = prefill_one + cycle_s  # own prefill + waiting for the step in flight
        total = prefill_amortised * B + n * step_s
        out_tps = B * n / total
        gpu_time_prefill_per_req = prefill_amortised
    if knobs.first_token_from_decode:
        ttft += cycle_s  # TurboMind v0.1: the decode step after the prefill samples the first token
    if knobs.async_output_proc and not setup.static:
        ttft += cycle_s  # vLLM v0.6 async output processing: the first token is streamed when the next step returns
    api_s = api_server_s(knobs)
    ttft += api_s
    ttft_formula = ("prefill(B*s) [static]" if setup.static else "prefill(s) + one decode step") + (
        " + one decode step (first token sampled by the next decode step)" if knobs.first_token_from_decode else "") + (
        " + one decode step (output processed during the next step)"
        if knobs.async_output_proc and not setup.static else "") + (" + api_server" if api_s > 0 else "")
    tpot = step_s
    e2e = ttft + (n - 1) * step_s
    in_tps = out_tps * s / max(n, 1)
    gpus = tp * pp
    decode_bound = "compute" if _f(step["gemm_compute"] + step["attention_compute"]) >= \
        _f(step["gemm_memory"] + step["attention_memory"]) else "memory"
    cb = compute_bound_batch(model, gpu, ctx_avg, setup, knobs, W, sh)
    usd_h = usd_in = usd_out = None
    if price_usd_per_gpu_hour is not None:
        usd_h = price_usd_per_gpu_hour * gpus
        usd_s = usd_h / 3600.0 / max(util, 1e-9)
        # GPU time split: prefill share -> input tokens, decode share -> output tokens (sums to the total)
        usd_in = usd_s * gpu_time_prefill_per_req / max(s, 1) * 1e6
        usd_out = usd_s * (step_s / B) * 1e6
    mem = {"weights": W / (tp * pp), "kv_cache": B * kv_seq,
           "activations": act, "cuda_graphs": knobs.cuda_graph_bytes, "non_torch": knobs.non_torch_bytes}
    src_knob = lambda k: knobs.sources.get(k, "catalog/data/inference.yaml")  # noqa: E731
    terms = [
        wb.term,
        Term("kv/bytes_per_token", kv_tok, "B/token",
             "(r_kv + d_rope) * bytes * L  [MLA]" if model.is_mla else "2 * L * k * d * bytes",
             {"L": model.num_layers, "k": model.num_kv_heads, "d": model.head_dim, "bytes": KV_BYTES[setup.kv_dtype],
              "r_kv": model.kv_lora_rank, "d_rope": model.qk_rope_head_dim},
             "DeepSeek-V2 Table 1 (MLA)" if model.is_mla else "Kwon et al. 2023 (PagedAttention) Sec 2"),
        Term("kv/bytes_per_sequence_per_gpu", kv_seq, "B",
             "per_layer * max(k/t,1)/k * [(L-L_w)*ceil(c/blk)*blk + L_w*ceil(min(c,w)/blk)*blk] / p",
             {"c": ctx_max, "t": tp, "p": pp, "blk": knobs.block_size_tokens, "w": model.sliding_window,
              "L_w": window_layers(model)}, "vLLM paged KV (block_size), llm-analysis TP sharding"),
        Term("memory/kv_budget_per_gpu", budget, "B",
             "M * util - W/(t*p) - activations - non_torch  [CUDA graphs come out of the 1 - util headroom]",
             {"M": mem_bytes, "util": knobs.gpu_memory_utilization, "W": W, "activations": act,
              "non_torch": knobs.non_torch_bytes, "cuda_graphs_outside": knobs.cuda_graph_bytes},
             src_knob("gpu_memory_utilization") + "; vLLM memory-profiling log arithmetic"),
        Term("serve/max_concurrency", float(max_conc), "sequences", "floor(kv_budget / kv_per_sequence)",
             {"kv_budget": budget, "kv_per_sequence": kv_seq}, "vLLM 'Maximum concurrency for N tokens per request'"),
        Term("time/prefill", _f(pre_shown["total"]), "s",
             "max(max(FLOPs/t/(peak*eta_mm), W/t/(BW*eta_hbm)) + comm + eager + kernels, launch)",
             {"B": B if setup.static else 1, "s": s, "t": tp, "FLOPs": _f(pre_shown["flops"]),
              "peak": _f(pre_shown["peak"]), "eta_mm": _f(pre_shown["eta_mm"]),
              "in_model_fraction": knobs.matmul_model_fraction, "BW": gpu.hbm_bytes_per_s,
              "eta_hbm": gpu.hbm_efficiency, "compute": _f(pre_shown["compute"]), "memory": _f(pre_shown["memory"]),
              "comm": _f(pre_shown["comm"]), "eager": _f(pre_shown["eager"]), "kernels": _f(pre_shown["kernels"]),
              "launch": _f(pre_shown["launch"])},
             "roofline; FLOPs 2N per token + causal attention (Kaplan et al. 2020); eta_mm = MAMF curve x "
             "in-model fraction (calibration's matmul_training_fraction); comm 2L all-reduces of the "
             "activations (Shoeybi et al. 2019); eager: the engine's unfused elementwise bytes; kernels: GPU launch "
             "gaps, kernels x per-kernel gap (Hazy Research 2025); launch: its host kernel-issue time (engine "
             "profile)"),
        Term("time/ttft", ttft, "s", ttft_formula,
             {"prefill": _f(pre_shown["total"]), "step": step_s, "api_server": api_s},
             "model; api_server: " + src_knob("api_server_ttft_s")
             + ("" if knobs.api_server else " (0: the engine runs in-process, no API server)")),
        Term("time/tpot", tpot, "s", "gemm + attention + comm + overhead at (B, c_avg)" + (
            "; speculative: (verify(B(k+1)) + k*r*draft) / E" if spec_k > 0 else ""),
             {k: _f(v) for k, v in step.items()} | ({"k": spec_k, "alpha": knobs.spec_acceptance_rate,
                                                     "r": knobs.spec_draft_cost_ratio,
                                                     "E": knobs.spec_tokens_per_step} if spec_k > 0 else {})
             | ({"ep": ep, "experts_read_per_moe_layer": experts_read} if sh.n_moe_layers else {})
             | {"B": B, "c_avg": ctx_avg,
                                                    "eta_attn": knobs.decode_attention_hbm_efficiency,
                                                    "repeat_kv": bool(knobs.decode_kv_repeat),
                                                    "q_heads_per_kv_read": int(knobs.decode_q_heads_per_kv_read),
                                                    "step_overhead": knobs.decode_step_overhead_s,
                                                    "host_per_seq": knobs.step_host_per_seq_s},
             "roofline per op (Williams et al. 2009); LLM decode memory-bound (Pope et al. 2022); attention "
             "seconds per KV byte: decode_kv_s_per_byte (repeat_kv: (1 + n_rep)/(BW*eta_hbm) + "
             "n_rep/(BW*eta_attn); g query heads per KV read: ceil(n_rep/g)/(BW*eta_attn)); comm includes 'kernels', "
             "the forward's GPU launch gaps (kernels x per-kernel gap, Hazy Research 2025); overhead = "
             "step_overhead (engine profile) + host time the GPU does not hide: eager launches beyond the GPU "
             "time and B x host_per_seq (" + src_knob("step_host_per_seq_s") + "; under an overlap scheduler "
             "only the part beyond the GPU time)" + ("; MoE experts read per layer: E*p, p = 1-(1-K/E)^B (uniform "
             "routing); with ep > 1 the busiest of ep rank groups, ep*E[max Binomial(E/ep, p)], and its share of the "
             "expert FLOPs (expert_parallel_read / expert_parallel_load)" if sh.n_moe_layers else "")),
        Term("throughput/output_tokens_per_s", out_tps, "tokens/s",
             "B*n / (prefill(B*s) + n*step)" if setup.static else "B*n / (B*prefill_amortised(s) + n*step)",
             {"B": B, "n": n, "step": step_s, "prefill_per_request": gpu_time_prefill_per_req},
             "continuous batching (Yu et al. 2022 Orca)" if not setup.static else "static batch"),
    ]
    if tp > 1:
        ar_bytes = B * model.hidden_size * knobs.activation_bytes
        per_proto = {k: _f(v) for k, v in allreduce_protocol_times(gpu, ar_bytes, tp, knobs).items()}
        chosen = min(per_proto, key=per_proto.get)
        custom = uses_custom_allreduce(gpu, knobs)
        terms.append(Term("time/decode_allreduce_one", _f(_allreduce_s(gpu, ar_bytes, tp, knobs)), "s",
                          "min over NCCL protocols p of lat0_p + 2(t-1)*lat_hop_p + 2(t-1)/t*S/(busbw*f_p)"
                          + (" [or the engine's custom P2P all-reduce, lat + 2(t-1)/t*S/(busbw*f), when faster]"
                             if custom else "") + " + x_skew; 2L per decode step",
                          {"S_bytes": ar_bytes, "t": tp, "L": model.num_layers, "link": link_class(gpu),
                           "busbw": gpu.intra_node_bytes_per_s * gpu.collective_efficiency_intra, "protocol": chosen}
                          | {f"t_{k}": v for k, v in per_proto.items()}
                          | ({"t_custom": _f(custom_allreduce_s(gpu, ar_bytes, tp, knobs))} if custom else {})
                          | {"x_skew": knobs.tp_allreduce_exposed_s},
                          src_knob("allreduce_protocols") + "; x_skew: " + src_knob("tp_allreduce_exposed_s")))
    if usd_out is not None:
        terms.append(Term("cost/usd_per_1m_output_tokens", usd_out, "USD",
                          "price * gpus / 3600 / util * (step/B) * 1e6",
                          {"price": price_usd_per_gpu_hour, "gpus": gpus, "util": util, "step": step_s, "B": B},
                          "llm-analysis cost formula, at utilisation < 100 %"))
        terms.append(Term("cost/usd_per_1m_input_tokens", usd_in, "USD",
                          "price * gpus / 3600 / util * prefill_per_request / s * 1e6",
                          {"price": price_usd_per_gpu_hour, "gpus": gpus, "util": util,
                           "prefill_per_request": gpu_time_prefill_per_req, "s": s}, "GPU-time split prefill/decode"))
    if cb is not None:
        notes.append(f"decode GEMMs turn compute-bound at batch >= {cb}")
    if ep > 1:
        r_1 = _f(expert_parallel_read(sh, B, 1))
        notes.append(f"expert parallel {ep}: a decode step at batch {B} waits for the busiest of {ep} expert groups, "
                     f"{experts_read / tp:.2f} experts' weights per MoE layer per GPU against {r_1 / tp:.2f} with the experts "
                     f"split over all {tp} TP ranks; memory per GPU and the all-reduce are unchanged")
    if model.is_mla and tp > 1:
        notes.append("MLA latent KV is replicated on every TP rank (not sharded by heads)")
    if not model.is_mla and tp > model.num_kv_heads:
        notes.append(f"tp {tp} > {model.num_kv_heads} KV heads: KV heads are replicated")
    if setup.weights in (WeightDtype.INT4, WeightDtype.INT8, WeightDtype.FP8):
        notes.append("embeddings, LM head and norms kept 16-bit; only transformer linear weights quantised")
    return InferenceEstimate(
        model_id=model.id, gpu_id=gpu.id, tp=tp, pp=pp, ep=ep, gpus=gpus, weights_dtype=str(setup.weights),
        kv_dtype=str(setup.kv_dtype), prompt_len=s, output_len=n,
        batching="static" if setup.static else "continuous", batch=B,
        weights_bytes=W, weights_bytes_per_gpu=W / (tp * pp), kv_cache_bytes_per_token=kv_tok,
        kv_cache_bytes_per_token_per_gpu=kv_tok_gpu, kv_cache_bytes_per_sequence=kv_seq,
        kv_cache_bytes_total=B * kv_seq, kv_budget_bytes_per_gpu=budget, max_concurrency=max_conc, fits=fits,
        reasons=tuple(reasons), ttft_s=ttft, tpot_s=tpot, e2e_latency_s=e2e, output_tokens_per_s=out_tps,
        output_tokens_per_s_per_request=1.0 / tpot, output_tokens_per_s_per_gpu=out_tps / gpus,
        input_tokens_per_s=in_tps, decode_bound=decode_bound, compute_bound_batch=cb,
        price_usd_per_gpu_hour=price_usd_per_gpu_hour, utilization=util, usd_per_hour=usd_h,
        usd_per_1m_input_tokens=usd_in, usd_per_1m_output_tokens=usd_out, memory_per_gpu=mem,
        decode_step={k: _f(v) for k, v in step.items()} | {"last_step_s": step_last},
        notes=tuple(notes), terms=tuple(terms),
    )


def requests_per_s_at(model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs, concurrency) -> float:
    """Requests/s one replica completes at a steady concurrency C (continuous batching):
    X(C) = C / (C * prefill_amortised(s) + n * step(C, s + n/2))."""
    wb = weight_bytes(model, setup.weights, knobs.quant_group_size).total_bytes
    sh = _shapes(model)
    s = setup.prompt_len
    prefill = prefill_amortised_s(model, gpu, s, setup.tp, setup.pp, setup.weights, knobs, wb, sh, setup.ep)
    return _requests_per_s(model, gpu, concurrency, s, setup.output_len, prefill, setup.tp, setup.pp, setup.weights,
                           setup.kv_dtype, knobs, wb, sh, setup.ep)


def prefill_amortised_s(model: ModelArch, gpu: GpuSpec, prompt_len, tp, pp, weights: WeightDtype,
                        knobs: ServingKnobs, wbytes: float, shapes: "_Shapes", ep: int = 1) -> float:
    """GPU time of one prompt's prefill inside continuous batching: prompts are prefilled a chunk of
    max_num_batched_tokens tokens (at least one prompt) at a time, at that chunk's GEMM efficiency,
    prefill(chunk / s prompts) / (chunk / s)."""
    chunk = max(1.0, knobs.max_num_batched_tokens / max(prompt_len, 1))
    return _f(prefill_time_s(model, gpu, prompt_len, chunk, tp, pp, weights, knobs, wbytes, shapes, ep)) / chunk


def _requests_per_s(model: ModelArch, gpu: GpuSpec, concurrency, prompt_len, output_len, prefill_s: float, tp, pp,
                    weights: WeightDtype, kv_dtype: KvDtype, knobs: ServingKnobs, wbytes: float, shapes: "_Shapes",
                    ep: int = 1) -> float:
    """X(C) = C / (C * prefill_s + n * step(C, s + n/2)), prefill_s from prefill_amortised_s."""
    step = _f(decode_step_time_s(model, gpu, concurrency, prompt_len + output_len / 2.0, tp, pp, weights, kv_dtype,
                                 knobs, wbytes, shapes, ep))
    return float(concurrency) / (float(concurrency) * prefill_s + output_len * step)


def concurrency_for_rate(model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs,
                         requests_per_s: float, max_concurrency: int) -> int:
    """Smallest steady concurrency that carries `requests_per_s` (Little's law with the X(C) above);
    `max_concurrency` when even that cannot (the replica is saturated and a queue grows)."""
    hi = max(1, int(max_concurrency))
    if requests_per_s_at(model, gpu, setup, knobs, hi) < requests_per_s:
        return hi
    lo = 1
    if requests_per_s_at(model, gpu, setup, knobs, 1) >= requests_per_s:
        return 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if requests_per_s_at(model, gpu, setup, knobs, mid) >= requests_per_s else (mid, hi)
    return hi


# --------------------------------------------------------------------------- fleet sizing


@dataclass(frozen=True)
class LengthDist:
    """A token-length distribution given by percentiles (p50, p95); a fixed length has p50 == p95.
    Mean from a log-normal fit: sigma = ln(p95/p50)/1.645, mean = p50 * exp(sigma^2/2)."""

    p50: float
    p95: float

    @property
    def mean(self) -> float:
        if self.p95 <= self.p50:
            return float(self.p50)
        sigma = math.log(self.p95 / self.p50) / 1.6449
        return float(self.p50 * math.exp(sigma * sigma / 2.0))

    @classmethod
    def fixed(cls, n: float) -> "LengthDist":
        return cls(float(n), float(n))

    @property
    def varies(self) -> bool:
        return self.p95 > self.p50

    @classmethod
    def from_mean(cls, mean: float, p95: float) -> "LengthDist":
        """The log-normal with this mean and p95: mean/p95 = exp(sigma^2/2 - 1.645 sigma), solved for sigma on
        (0, 1.645] (where p95/mean grows with sigma, up to e^1.353 = 3.87); p50 = p95 / exp(1.645 sigma)."""
        from sizeup.errors import SizeupError

        if p95 <= mean:
            if p95 < mean:
                raise SizeupError(f"a length distribution's p95 ({p95:g}) must be >= its mean ({mean:g})")
            return cls.fixed(mean)
        z = 1.6449
        target = math.log(p95 / mean)           # = z*sigma - sigma^2/2
        if target > z * z / 2.0:
            raise SizeupError(f"no log-normal has mean {mean:g} and p95 {p95:g}: p95 can be at most "
                              f"{math.exp(z * z / 2.0):.2f} x the mean; give p50=...,p95=... instead")
        sigma = z - math.sqrt(z * z - 2.0 * target)  # the smaller root of sigma^2/2 - z*sigma + target = 0
        return cls(float(p95 / math.exp(z * sigma)), float(p95))


@dataclass(frozen=True)
class Traffic:
    requests_per_s: float
    prompt_len: LengthDist
    output_len: LengthDist


@dataclass(frozen=True)
class LatencyTargets:
    ttft_p95_s: float | None = None
    tpot_p95_s: float | None = None
    ttft_p50_s: float | None = None
    tpot_p50_s: float | None = None


@dataclass(frozen=True)
class FleetOption:
    gpu_id: str
    tp: int
    feasible: bool
    reason: str
    binding: str
    concurrency_per_replica: int
    requests_per_s_per_replica: float
    replicas: int
    gpus: int
    ttft_p95_s: float
    tpot_p95_s: float
    price_usd_per_gpu_hour: float | None
    usd_per_hour: float | None
    usd_per_month: float | None
    usd_per_1m_output_tokens: float | None
    operating_concurrency: int = 0
    """Concurrency per replica at the given traffic (<= concurrency_per_replica, the most the targets allow);
    ttft_p95_s / tpot_p95_s are at this operating point."""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class FleetPlan:
    best: FleetOption | None
    options: tuple[FleetOption, ...]
    notes: tuple[str, ...]
    terms: tuple[Term, ...]


def plan_replica(model: ModelArch, gpu: GpuSpec, tp: int, traffic: Traffic, targets: LatencyTargets,
                 weights: WeightDtype, kv_dtype: KvDtype, knobs: ServingKnobs,
                 price_usd_per_gpu_hour: float | None, ep: int = 1) -> FleetOption:
    """Largest per-replica concurrency C meeting memory (mean lengths), TPOT (p95 lengths) and TTFT (p95 prompt)
    targets; replicas = ceil(rps / X(C)), X = C / (C*prefill(s_mean) + n_mean*step(C)) * ... requests/s."""
    check_decoder_only(model)
    check_expert_parallel(model, ep, tp)
    s_mean, n_mean = traffic.prompt_len.mean, traffic.output_len.mean
    s95, n95 = traffic.prompt_len.p95, traffic.output_len.p95
    wb = weight_bytes(model, weights, knobs.quant_group_size).total_bytes
    sh = _shapes(model)
    budget = max(0.0, _f(kv_budget_bytes(model, gpu.memory_bytes, tp, 1, wb, knobs)))  # 0 when weights do not fit
    kv_seq = _f(kv_bytes_per_sequence(model, s_mean + n_mean, kv_dtype, tp, 1, knobs.block_size_tokens))
    c_mem = int(max(0, math.floor(budget / kv_seq))) if kv_seq > 0 else 0

    def fail(reason: str, binding: str) -> FleetOption:
        return FleetOption(gpu.id, tp, False, reason, binding, 0, 0.0, 0, 0, math.inf, math.inf,
                           price_usd_per_gpu_hour, None, None, None)

    if wb / tp > gpu.memory_bytes * knobs.gpu_memory_utilization or c_mem < 1:
        return fail(f"weights + one sequence do not fit on {tp} x {gpu.id}", "memory")
    prefill95 = _f(prefill_time_s(model, gpu, s95, 1, tp, 1, weights, knobs, wb, sh, ep))
    front = api_server_s(knobs)  # the API server's time before the first token reaches the client

    def tpot95(c: int) -> float:
        return _f(decode_step_time_s(model, gpu, c, s95 + n95, tp, 1, weights, kv_dtype, knobs, wb, sh, ep))

    def ttft95(c: int) -> float:
        return front + prefill95 + tpot95(c)

    s50, n50 = traffic.prompt_len.p50, traffic.output_len.p50
    prefill50 = _f(prefill_time_s(model, gpu, s50, 1, tp, 1, weights, knobs, wb, sh, ep))

    def tpot50(c: int) -> float:
        return _f(decode_step_time_s(model, gpu, c, s50 + n50, tp, 1, weights, kv_dtype, knobs, wb, sh, ep))

    def tpot_ok(c: int) -> bool:
        return ((targets.tpot_p95_s is None or tpot95(c) <= targets.tpot_p95_s)
                and (targets.tpot_p50_s is None or tpot50(c) <= targets.tpot_p50_s))

    def ok(c: int) -> bool:
        return (tpot_ok(c)
                and (targets.ttft_p95_s is None or ttft95(c) <= targets.ttft_p95_s)
                and (targets.ttft_p50_s is None or front + prefill50 + tpot50(c) <= targets.ttft_p50_s))

    if targets.ttft_p95_s is not None and front + prefill95 > targets.ttft_p95_s:
        return fail(f"prefill of a p95 prompt alone (with the API server's time) takes {front + prefill95:.3g} s > "
                    "TTFT target", "latency (ttft)")
    if targets.ttft_p50_s is not None and front + prefill50 > targets.ttft_p50_s:
        return fail(f"prefill of a p50 prompt alone (with the API server's time) takes {front + prefill50:.3g} s > "
                    "p50 TTFT target", "latency (ttft)")
    if not ok(1):
        if not tpot_ok(1):
            return fail(f"TPOT at batch 1 is {tpot95(1) * 1e3:.3g} ms (p95 lengths) > target", "latency (tpot)")
        return fail(f"TTFT at batch 1 is {ttft95(1):.3g} s (p95 prompt) > target", "latency (ttft)")
    c_cap = min(c_mem, knobs.max_num_seqs)
    lo, hi = 1, c_cap
    if ok(hi):
        lo = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    C = lo
    if C == c_cap:
        binding = "memory" if c_mem <= knobs.max_num_seqs else "throughput (max_num_seqs)"
    else:
        binding = "latency (tpot)" if not tpot_ok(C + 1) else "latency (ttft)"
    prefill_am = prefill_amortised_s(model, gpu, s_mean, tp, 1, weights, knobs, wb, sh, ep)

    def rate(c: int) -> float:  # requests/s of one replica at concurrency c
        return _requests_per_s(model, gpu, c, s_mean, n_mean, prefill_am, tp, 1, weights, kv_dtype, knobs, wb, sh, ep)

    x = rate(C)
    replicas = max(1, math.ceil(traffic.requests_per_s / x))
    if replicas == 1 and traffic.requests_per_s < 0.5 * x:
        binding = "minimum (one replica is more than enough)"
    # operating point: the smallest concurrency that carries each replica's share of the traffic
    share = traffic.requests_per_s / replicas
    lo, hi = 1, C
    if rate(1) < share:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if rate(mid) >= share else (mid, hi)
        c_op = hi
    else:
        c_op = 1
    gpus = replicas * tp
    usd_h = usd_m = usd_tok = None
    if price_usd_per_gpu_hour is not None:
        usd_h = gpus * price_usd_per_gpu_hour
        usd_m = usd_h * HOURS_PER_MONTH
        out_tok_s = traffic.requests_per_s * n_mean
        usd_tok = usd_h / 3600.0 / max(out_tok_s, 1e-9) * 1e6
    return FleetOption(gpu.id, tp, True, "", binding, C, x, replicas, gpus, ttft95(c_op), tpot95(c_op),
                       price_usd_per_gpu_hour, usd_h, usd_m, usd_tok, c_op)


SERVING_TP_CHOICES = (1, 2, 4, 8)
"""Tensor-parallel degrees a serving plan tries when none is given (one node's power-of-two splits)."""


def tp_layout_ok(gpu: GpuSpec, tp: int, ep: int = 1) -> bool:
    """A TP degree a replica on `gpu` can use: within one node, and divisible by the expert-parallel degree (the
    experts are split inside the TP group)."""
    return tp <= max(gpu.node_size, 1) and tp % ep == 0


def plan_fleet(model: ModelArch, gpus: Sequence[tuple[GpuSpec, float | None]], traffic: Traffic,
               targets: LatencyTargets, weights: WeightDtype = WeightDtype.BF16,
               kv_dtype: KvDtype = KvDtype.BF16, knobs: ServingKnobs | None = None,
               tp_choices: Sequence[int] = SERVING_TP_CHOICES, ep: int = 1) -> FleetPlan:
    """Every (GPU, tp) option; the best is the cheapest feasible (fewest GPUs when no price). With expert
    parallelism ep > 1 (MoE), only the tp choices ep divides."""
    knobs = knobs or ServingKnobs()
    check_expert_parallel(model, ep)  # the tp choices ep does not divide are skipped below
    options = []
    for gpu, price in gpus:
        for tp in tp_choices:
            if not tp_layout_ok(gpu, tp, ep):
                continue
            options.append(plan_replica(model, gpu, tp, traffic, targets, weights, kv_dtype, knobs, price, ep))
    feasible = [o for o in options if o.feasible]

    def key(o: FleetOption):
        return (o.usd_per_hour if o.usd_per_hour is not None else math.inf, o.gpus, o.tp)

    best = min(feasible, key=key) if feasible else None
    notes = [f"prompt mean {traffic.prompt_len.mean:.0f} (p95 {traffic.prompt_len.p95:.0f}), output mean "
             f"{traffic.output_len.mean:.0f} (p95 {traffic.output_len.p95:.0f}) tokens; memory sized at mean "
             "lengths (paged KV), latency checked at p95 lengths",
             "replicas run at the concurrency that meets the targets; no headroom for bursts is added"]
    terms = []
    if best is not None:
        terms.append(Term("fleet/replicas", float(best.replicas), "replicas", "ceil(rps / X(C))",
                          {"rps": traffic.requests_per_s, "X": best.requests_per_s_per_replica,
                           "C": best.concurrency_per_replica, "tp": best.tp, "gpu": best.gpu_id},
                          "X = C / (C*prefill(s_mean) + n_mean*step(C)) (continuous batching)"))
        if best.usd_per_month is not None:
            terms.append(Term("fleet/usd_per_month", best.usd_per_month, "USD", "gpus * price * 730 h",
                              {"gpus": best.gpus, "price": best.price_usd_per_gpu_hour}, "730 h = 8760/12"))
    return FleetPlan(best, tuple(options), tuple(notes), tuple(terms))


# --------------------------------------------------------------------------- does-not-fit: fixes


def max_context_that_fits(model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs,
                          batch: int = 1) -> int:
    """Longest context (prompt + output) of which `batch` sequences fit in the KV budget (0 if none)."""
    wb = weight_bytes(model, setup.weights, knobs.quant_group_size).total_bytes
    budget = _f(kv_budget_bytes(model, gpu.memory_bytes, setup.tp, setup.pp, wb, knobs))
    if budget <= 0:
        return 0
    lo, hi = 0, max(1, model.max_seq_len) * 64
    while hi - lo > 1:
        mid = (lo + hi) // 2
        need = batch * _f(kv_bytes_per_sequence(model, mid, setup.kv_dtype, setup.tp, setup.pp, knobs.block_size_tokens))
        lo, hi = (mid, hi) if need <= budget else (lo, mid)
    return lo


def fit_fixes(model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs) -> list[str]:
    """Changes that make a replica that does not fit fit (each checked with estimate_inference's memory rules):
    more tensor parallelism, an 8-bit KV cache, 8/4-bit weights, a shorter context, fewer concurrent sequences."""
    def fits(s: ServeSetup, g_mem: float | None = None) -> bool:
        return estimate_inference(model, gpu, s, knobs).fits

    out: list[str] = []
    for t in (2, 4, 8, 16):
        if t <= setup.tp or t * setup.pp > max(gpu.node_size, 1) or model.num_heads % t:
            continue
        if fits(setup.with_(tp=t)):
            out.append(f"--tp {t} (weights and KV sharded over {t} GPUs)")
            break
    if setup.kv_dtype not in (KvDtype.FP8, KvDtype.INT8) and fits(setup.with_(kv_dtype=KvDtype.FP8)):
        out.append("--kv-dtype fp8 (halves the KV cache)")
    for w in (WeightDtype.FP8, WeightDtype.INT4):
        if weight_bits_per_param(w) < weight_bits_per_param(setup.weights) and fits(setup.with_(weights=w)):
            out.append(f"--weights {w} ({'W8A8' if w == WeightDtype.FP8 else 'AWQ/GPTQ W4A16'})")
            break
    ctx = setup.prompt_len + setup.output_len
    c1 = max_context_that_fits(model, gpu, setup, knobs, 1)
    if 0 < c1 < ctx:
        out.append(f"a context of at most {c1:,} tokens (prompt + output) at batch 1")
    if setup.batch is not None and setup.batch > 1:
        # memory grows with the batch, so the sequences that fit are 1..best: bisection (a scan down from a
        # batch of 100,000 took minutes)
        best, hi = 0, setup.batch
        if fits(setup.with_(batch=1)):
            best = 1
            while hi - best > 1:
                mid = (best + hi) // 2
                best, hi = (mid, hi) if fits(setup.with_(batch=mid)) else (best, mid)
        if best:
            out.append(f"--batch {best} (the most sequences of {ctx} tokens that fit; --concurrency runs that many "
                       "and queues more clients)")
    return out


def kv_bytes_per_token_by_context(m: ModelArch, kv_dtype: KvDtype, contexts: Sequence[int], tp: int = 1,
                                  pp: int = 1) -> dict[int, float]:
    """KV bytes per token of context, averaged over a sequence of c tokens, on one GPU (no block rounding):
    KV(c)/c. Constant for full attention; it falls with c for sliding-window / chunked-attention layers
    (Gemma 2/3, Mistral, Llama 4), which is why one per-token figure misleads for windowed models."""
    return {int(c): float(kv_bytes_per_sequence(m, c, kv_dtype, tp, pp, 1)) / float(c) for c in contexts if c >= 1}
