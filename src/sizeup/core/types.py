"""Frozen inputs of the analytic model. Everything is SI (bytes, s, FLOP, FLOP/s, bytes/s, USD).

`schema.py` validates user input and catalog files (pydantic) and builds these dataclasses;
`core/` and `search/` only ever see these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Mapping


# --------------------------------------------------------------------------- enums


# Hugging Face model types whose MLP activation defaults to "gelu_new" (transformers activations.py
# NewGELUActivation: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))) written as separate ops; GPT2Config,
# GPTNeoConfig, GPTJConfig, CodeGenConfig activation_function="gelu_new"; GPTBigCode's default "gelu_pytorch_tanh"
# is one F.gelu kernel). The step-time model reads it for eager kernels.
GELU_NEW_MODEL_TYPES = ("gpt2", "gpt_neo", "gptj", "codegen")
# T5 v1.1 / mT5 "gated-gelu" apply the same gelu_new to the gate projection (configuration_t5.py dense_act_fn)
GATED_GELU_NEW_MODEL_TYPES = ("t5", "mt5")


class MlpKind(StrEnum):
    GELU = "gelu"
    """Two matrices (up, down) with GELU: GPT-2, OPT (ReLU), BLOOM, Falcon, MPT."""
    RELU = "relu"
    """Two matrices with ReLU (OPT)."""
    SWIGLU = "swiglu"
    """Three matrices (gate, up, down) with SiLU gating: Llama, Mistral, Qwen."""
    GEGLU = "geglu"
    """Three matrices with GELU gating: Gemma."""

    @property
    def gated(self) -> bool:
        return self in (MlpKind.SWIGLU, MlpKind.GEGLU)


class NormKind(StrEnum):
    LAYERNORM = "layernorm"
    """LayerNorm: weight (+ bias unless `norm_bias` is false)."""
    RMSNORM = "rmsnorm"
    """RMSNorm: weight only."""


class PositionKind(StrEnum):
    LEARNED = "learned"
    """A learned table of `num_position_embeddings` x hidden (GPT-2, OPT)."""
    ROTARY = "rotary"
    """RoPE: no parameters."""
    ALIBI = "alibi"
    """ALiBi: no parameters (BLOOM, MPT)."""
    RELATIVE = "relative"
    """T5 relative position bias: an Embedding(num_buckets, heads) in the first self-attention layer of each stack,
    shared by the stack's layers (Raffel et al. 2020 Sec. 2.1; transformers modeling_t5.py T5Attention
    `has_relative_attention_bias`)."""
    NONE = "none"


class ArchKind(StrEnum):
    DECODER = "decoder"
    """Decoder-only: causal self-attention + MLP per layer (GPT, Llama)."""
    ENCODER = "encoder"
    """Bidirectional encoder only (BERT, Devlin et al. 2019): non-causal self-attention + MLP per layer, post-LN,
    learned + token-type embeddings, optional pooler, a classifier or no head."""
    ENCODER_DECODER = "encoder-decoder"
    """T5-style (Raffel et al. 2020): `num_layers` encoder layers (self-attention + MLP) over the input and
    `num_decoder_layers` decoder layers (causal self-attention + cross-attention over the encoder output + MLP) over
    the target; one shared token embedding; the LM head reads the decoder only."""


class HeadKind(StrEnum):
    LM = "lm"
    """Vocabulary logits on every (decoder) token: V x h, or tied to the token embedding."""
    CLASSIFIER = "classifier"
    """Sequence classification on the pooled first token: h x num_labels + num_labels
    (BertForSequenceClassification)."""
    NONE = "none"
    """The bare model (transformers AutoModel / BertModel): no output head."""


class QkNorm(StrEnum):
    NONE = "none"
    HEAD = "head"
    """RMSNorm over each head's dim (Qwen3, Gemma3): head_dim weights for q and for k."""
    FULL = "full"
    """RMSNorm over the whole projected q and k (OLMo-2): heads*head_dim + kv_heads*head_dim weights."""


class Precision(StrEnum):
    FP32 = "fp32"
    """Everything fp32 (4 B weights, grads, optimizer)."""
    TF32 = "tf32"
    """fp32 storage, matmuls on TF32 tensor cores."""
    FP16_MIXED = "fp16-mixed"
    """fp16 compute copy + fp32 master weights (AMP with loss scaling)."""
    BF16_MIXED = "bf16-mixed"
    """bf16 compute + fp32 master weights and fp32 optimizer state (the usual LLM recipe)."""
    BF16 = "bf16"
    """Pure bf16: weights, grads and optimizer state in bf16, no master copy."""
    FP8 = "fp8"
    """Transformer-Engine style: fp8 GEMMs, bf16 weights + fp32 master, fp8 activations stashed for GEMMs."""


class Optimizer(StrEnum):
    ADAMW = "adamw"
    """Two fp32 moments per parameter (8 B)."""
    ADAM8BIT = "adam8bit"
    """bitsandbytes 8-bit Adam: two int8 moments + block-wise scales (~2 B)."""
    ADAFACTOR = "adafactor"
    """Factored second moment (rows + cols), no first moment by default."""
    SGD = "sgd"
    """SGD with momentum: one fp32 buffer (4 B)."""
    LION = "lion"
    """Lion: one momentum buffer (4 B)."""


class Sharding(StrEnum):
    NONE = "none"
    """DDP: every data-parallel rank holds everything."""
    ZERO1 = "zero1"
    """Optimizer states sharded over data parallel (DeepSpeed ZeRO-1)."""
    ZERO2 = "zero2"
    """Optimizer states and gradients sharded (ZeRO-2)."""
    ZERO3 = "zero3"
    """Optimizer states, gradients and parameters sharded (ZeRO-3)."""
    FSDP_FULL = "fsdp-full"
    """FSDP FULL_SHARD (= ZeRO-3 semantics)."""
    FSDP_GRAD_OP = "fsdp-grad-op"
    """FSDP SHARD_GRAD_OP (= ZeRO-2 semantics)."""
    FSDP_HYBRID = "fsdp-hybrid"
    """FSDP HYBRID_SHARD: full shard inside a node, replicate across nodes."""
    MEGATRON_DISTOPT = "megatron-distopt"
    """Megatron distributed optimizer: fp32 master + moments sharded over DP (6 + 12/dp B/param)."""


class Recompute(StrEnum):
    NONE = "none"
    SELECTIVE = "selective"
    """Megatron selective: recompute the attention core only (Korthikanti et al. 2022 Sec. 5; Megatron-LM
    `--recompute-granularity selective`). With flash attention the s x s scores are never stored, so this saves
    nothing over `none`."""
    FULL = "full"
    """Keep only each layer's input; recompute the layer in backward."""
    OP_SAC = "op-sac"
    """torchtitan op-level selective AC (`selective_ac_option = "op"`): inside each checkpointed block the outputs of
    the ops in the save list (every other aten.mm counted in forward order, SDPA, TP reduce-scatter) are kept; every
    other op is recomputed in backward (pytorch/torchtitan torchtitan/distributed/activation_checkpoint.py)."""
    ATTENTION_ONLY = "attention-only"
    """Checkpoint the attention sublayer (norm, QKV, rotary, attention core, output projection) and keep the MLP's
    saved tensors: Megatron-Core `--recompute-modules` style module recompute applied to the attention block."""
    LAYER_FRACTION = "layer-fraction"
    """Full checkpointing of a fraction `TrainSetup.recompute_fraction` of the blocks, the rest store everything:
    torchtitan `selective_ac_option = N` (every N-th block, fraction 1/N), fms-fsdp `selective_checkpointing` p,
    MLPerf-style "21 of 80 layers"."""


class LoraImpl(StrEnum):
    """How the LoRA adapters of each adapted Linear execute (step time only; memory is the same)."""

    FUSED = "fused"
    """Adapter GEMMs folded into the base layer's kernels (Unsloth `matmul_lora`: X@W then addmm_(X@A, B) with the
    scaling in alpha; backward dX via addmm_ into the base dgrad): the adapter GEMMs' own FLOPs and bytes only."""
    PEFT = "peft"
    """Hugging Face PEFT eager `LoraLayer.forward`: result = base(x) + lora_B(lora_A(dropout(x))) * scaling, each a
    separate kernel launched from Python (fp32 adapter weights cast under autocast), plus the elementwise scale/add and
    the dX accumulation in backward (huggingface/peft src/peft/tuners/lora/layer.py)."""


class Fp8Recipe(StrEnum):
    """fp8 scaling recipe (used when `precision` is fp8)."""

    TENSORWISE = "tensorwise"
    """One scale per tensor computed from the current amax (torchao Float8 `tensorwise`, TE Float8CurrentScaling)."""
    DELAYED = "delayed"
    """One scale per tensor from an amax history of past steps (Transformer Engine DelayedScaling, the TE default)."""
    ROWWISE = "rowwise"
    """One scale per row of each operand (torchao Float8 `rowwise`): finer scaling, slower GEMM kernels."""
    BLOCKWISE = "blockwise"
    """Block scaling: DeepSeek-V3 1x128 / 128x128 blocks (TE Float8BlockScaling) or MXFP8 32-element blocks with
    e8m0 scales (Blackwell, TE MXFP8BlockScaling)."""


class Attention(StrEnum):
    FLASH = "flash"
    """Fused/flash/SDPA attention: no s x s score matrix is stored."""
    MATH = "math"
    """Eager attention: scores and softmax probabilities (s x s per head) are stored."""
    CUDNN = "cudnn"
    """Fused attention by cuDNN (FlashAttention-3-class on Hopper/Blackwell): no s x s scores stored, like flash.
    What torch SDPA runs by default on sm90/sm100 from torch 2.11 wheels (bundled cuDNN > 9.15:
    aten/src/ATen/native/transformers/cuda/sdp_utils.cpp check_prefer_cudnn_attention puts cudnn first), and what
    Transformer Engine's FusedAttention runs."""

    @property
    def fused(self) -> bool:
        """True for the kernels that never store the s x s scores (flash, cudnn)."""
        return self is not Attention.MATH


class PipelineSchedule(StrEnum):
    ONE_F_ONE_B = "1f1b"
    INTERLEAVED = "interleaved"
    GPIPE = "gpipe"


class ContextParallel(StrEnum):
    RING = "ring"
    """Ring attention: K/V blocks passed around the cp ranks, overlapped with the blockwise attention (Megatron CP,
    Liu et al. 2023)."""
    ULYSSES = "ulysses"
    """DeepSpeed-Ulysses (Jacobs et al. 2023): all-to-all of q, k, v from sequence shards to head shards before the
    attention and of the output back after it; the attention then runs on the full sequence for heads/cp heads."""


class Offload(StrEnum):
    NONE = "none"
    CPU = "cpu"
    NVME = "nvme"


class Peft(StrEnum):
    NONE = "none"
    """Full fine-tuning / pre-training: every parameter trains."""
    LORA = "lora"
    """Frozen 16-bit base + low-rank adapters."""
    QLORA = "qlora"
    """Frozen 4-bit NF4 base + low-rank adapters (Dettmers et al. 2023)."""
    ADAPTER = "adapter"
    """Frozen 16-bit base + a small trained parameter set that does not need the frozen Linear layers' inputs for a
    weight gradient (prompt / prefix tuning, LLaMA-Adapter, IA3, (B)OFT, LoHa, LoKr, VeRA, LN tuning, FourierFT,
    trainable tokens), sized by `TrainSetup.trainable_params`."""


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelArch:
    """A transformer (decoder-only by default; `arch_kind` encoder or encoder-decoder), detailed enough to count
    every parameter exactly. For an encoder-decoder, `num_layers` is the encoder's layer count and
    `num_decoder_layers` the decoder's (HF T5Config num_layers / num_decoder_layers)."""

    id: str
    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    mlp_kind: MlpKind = MlpKind.SWIGLU
    norm_kind: NormKind = NormKind.RMSNORM
    norm_bias: bool = False
    norms_per_layer: int = 2
    final_norm: bool = True
    embed_norm: bool = False
    qk_norm: QkNorm = QkNorm.NONE
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    lm_head_bias: bool = False
    position: PositionKind = PositionKind.ROTARY
    num_position_embeddings: int = 0
    max_seq_len: int = 2048
    tie_embeddings: bool = False
    parallel_block: bool = False
    # MoE (num_experts == 0 means dense)
    num_experts: int = 0
    experts_per_token: int = 0
    num_shared_experts: int = 0
    expert_ffn_size: int = 0
    shared_expert_ffn_size: int = 0
    shared_expert_gate: bool = False
    router_bias: bool = False
    first_k_dense_layers: int = 0
    moe_layer_freq: int = 1
    # MLA (kv_lora_rank > 0 means multi-head latent attention)
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # attention window
    sliding_window: int = 0
    sliding_window_layers: int = 0
    # numerics a framework needs to rebuild the model (HF config.json `rope_theta`, `rms_norm_eps` /
    # `layer_norm_eps`, `rope_scaling`); None / () when the source does not give them
    rope_theta: float | None = None
    norm_eps: float | None = None
    rope_scaling: tuple[tuple[str, float | str], ...] = ()
    # encoder / encoder-decoder (arch_kind decoder: the defaults below change nothing)
    arch_kind: ArchKind = ArchKind.DECODER
    num_decoder_layers: int = 0
    """Decoder layers of an encoder-decoder (self-attention + cross-attention + MLP each)."""
    relative_attention_buckets: int = 0
    """Rows of the relative position bias table (T5 relative_attention_num_buckets), with `position` relative."""
    type_vocab_size: int = 0
    """Token-type (segment) embedding rows (BERT type_vocab_size)."""
    pooler: bool = False
    """BERT pooler: a dense h x h + bias on the first token (BertModel add_pooling_layer)."""
    head: HeadKind = HeadKind.LM
    num_labels: int = 2
    """Classes of a `head: classifier` model (transformers num_labels default 2)."""
    dropout: float = 0.0
    """Dropout probability the model's config trains with (HF BERT hidden_dropout_prob and
    attention_probs_dropout_prob, T5 dropout_rate): the job's default --dropout. 0 for the decoder presets."""
    # provenance
    source: str = ""
    hf_model_type: str = ""
    aliases: tuple[str, ...] = ()
    notes: str = ""

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_encoder_decoder(self) -> bool:
        return self.arch_kind == ArchKind.ENCODER_DECODER

    @property
    def causal(self) -> bool:
        """Whether the (first) stack's self-attention is causal: decoder-only models; encoders attend both ways."""
        return self.arch_kind == ArchKind.DECODER

    @property
    def total_layers(self) -> int:
        """Transformer layers of all stacks (encoder + decoder for an encoder-decoder)."""
        return self.num_layers + (self.num_decoder_layers if self.is_encoder_decoder else 0)

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def num_moe_layers(self) -> int:
        if not self.is_moe:
            return 0
        return sum(1 for i in range(self.num_layers) if self.layer_is_moe(i))

    def layer_is_moe(self, index: int) -> bool:
        if not self.is_moe or index < self.first_k_dense_layers:
            return False
        return (index - self.first_k_dense_layers) % max(1, self.moe_layer_freq) == 0

    @property
    def q_dim(self) -> int:
        """Width of the query projection output (heads x per-head q dim)."""
        if self.is_mla:
            return self.num_heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of one of K or V (kv_heads x head_dim); for MLA the per-head v dim x heads."""
        if self.is_mla:
            return self.num_heads * self.v_head_dim
        return self.num_kv_heads * self.head_dim

    @property
    def attn_out_dim(self) -> int:
        if self.is_mla:
            return self.num_heads * self.v_head_dim
        return self.num_heads * self.head_dim

    def with_(self, **changes) -> "ModelArch":
        return replace(self, **changes)


# --------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator. Peaks are DENSE (no 2:4 sparsity); link figures are per direction.

    matmul_efficiency: curve of (GEMM FLOPs, achievable fraction of dense peak), sorted by FLOPs;
        interpolate in log(FLOPs); the largest-GEMM fraction is the measured MAMF / theory.
    """

    id: str
    name: str
    vendor: str
    memory_bytes: float
    hbm_bytes_per_s: float
    peak_flops_per_s: Mapping[str, float]
    intra_node_bytes_per_s: float
    intra_node_link: str
    node_size: int
    inter_node_bytes_per_s: float
    host_link_bytes_per_s: float
    tdp_w: float
    matmul_efficiency: tuple[tuple[float, float], ...]
    hbm_efficiency: float
    collective_efficiency_intra: float
    collective_efficiency_inter: float
    collective_latency_s: float = 10e-6
    purchase_usd: float | None = None
    aliases: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for a compute dtype; 0.0 when the GPU lacks that path."""
        return float(self.peak_flops_per_s.get(dtype) or 0.0)

    @property
    def supports_bf16(self) -> bool:
        return self.peak("bf16") > 0


# --------------------------------------------------------------------------- training setup


@dataclass(frozen=True)
class TrainSetup:
    """How one training job runs. `dp` is derived: gpus / (tp * pp * cp)."""

    gpus: int = 1
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    micro_batch: int = 1
    grad_accum: int = 1
    seq_len: int = 2048
    decoder_seq_len: int = 0
    """Target (decoder) tokens per sequence of an encoder-decoder model; `seq_len` is then the encoder's input
    length. 0 = the same as seq_len. Ignored by decoder-only and encoder models."""
    precision: Precision = Precision.BF16_MIXED
    optimizer: Optimizer = Optimizer.ADAMW
    fused_optimizer: bool = True
    sharding: Sharding = Sharding.NONE
    sequence_parallel: bool = False
    pp_schedule: PipelineSchedule = PipelineSchedule.ONE_F_ONE_B
    virtual_pp: int = 1
    recompute: Recompute = Recompute.NONE
    attention: Attention = Attention.FLASH
    cp_impl: ContextParallel = ContextParallel.RING
    """How context parallelism moves data (`ContextParallel`): ring attention or DeepSpeed-Ulysses all-to-all."""
    zero_quantized_weights: bool = False
    """ZeRO++ qwZ (DeepSpeed `zero_quantized_weights`): ZeRO-3 parameter all-gathers in int8 (Wang et al. 2023 §3.1)."""
    zero_quantized_gradients: bool = False
    """ZeRO++ qgZ (DeepSpeed `zero_quantized_gradients`): gradient reduce-scatter as int4 all-to-all (§3.3)."""
    offload_optimizer: Offload = Offload.NONE
    offload_params: Offload = Offload.NONE
    offload_activations: bool = False
    peft: Peft = Peft.NONE
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("q", "k", "v", "o")
    lora_impl: LoraImpl = LoraImpl.FUSED
    trainable_params: float = 0.0
    """Trained parameter count of a `Peft.ADAPTER` method (its adapters; the base stays frozen)."""
    offload_auto_cap: float = 0.0
    """Adaptive placement (Colossal-AI Gemini placement_policy="auto"): with `offload_optimizer` set, model data moves
    to the host only as far as needed to keep CUDA memory under this fraction of the GPU's (0 = always offloaded)."""
    fsdp_no_sync_accumulation: bool = False
    """FSDP gradient accumulation under no_sync: every rank keeps unsharded gradients between micro-steps."""
    fsdp_mixed_frozen_units: bool = False
    """FSDP(use_orig_params=True) units mixing LoRA adapters with frozen weights: gradients for the whole unit."""
    adapter_linear_scales: bool = False
    """`Peft.ADAPTER` with a trained scale on every Linear's output and trained norms (LLaMA-Adapter v2, lit-gpt
    adapter_v2.py: adapter_scale * (linear(x) + adapter_bias); norm_1, norm_2, ln_f train): each Linear keeps its
    output for the scale's gradient and each norm its normalized input."""
    nf4_saves_inputs: bool = False
    """4-bit base Linears run through bitsandbytes MatMul4Bit, which keeps every Linear's input for the input gradient
    (bitsandbytes autograd/_functions.py: ctx.tensors = (A, B)) even though the weight is frozen; torchao's NF4
    linear (torchtune) keeps only the weight."""
    nf4_base: bool = False
    """The frozen base's Linear weights held in NF4 under a `Peft.ADAPTER` method (bitsandbytes Linear4bit, as QLoRA
    holds them; litgpt --quantize bnb.nf4)."""
    lora_fp32_adapters: bool = False
    """LoRA adapters kept in fp32 on a 16-bit base, each adapted Linear casting its input to fp32 (Hugging Face PEFT
    autocast_adapter_dtype=True; peft/tuners/lora/layer.py Linear.forward `_cast_input_dtype`): every adapted Linear
    keeps its own copy of its input (bf16 under autocast, fp32 without) instead of sharing one."""
    """How adapters execute: fused kernels (default) or eager Hugging Face PEFT modules (`LoraImpl`)."""
    kbit_fp32_non_quantized: bool = False
    """QLoRA through PEFT `prepare_model_for_kbit_training`: every non-quantized parameter (embeddings, norms, LM head)
    is cast to fp32 (huggingface/peft utils/other.py). That function also turns on gradient checkpointing by default
    (use_gradient_checkpointing=True): a profile for HF QLoRA should set recompute full as well."""
    lora_dropout: float = 0.0
    """Dropout on each adapter's input (PEFT `lora_dropout`; eager PEFT runs it as its own kernel)."""
    recompute_fraction: float = 1.0
    """Share of transformer blocks fully checkpointed when `recompute` is layer-fraction (torchtitan every-N-th: 1/N)."""
    fp8_recipe: Fp8Recipe = Fp8Recipe.DELAYED
    """fp8 scaling recipe when `precision` is fp8 (`Fp8Recipe`)."""
    moe_capacity_factor: float = 0.0
    """MoE expert capacity factor C (tokens per expert <= C x mean); 0 = dropless (Megatron-Core default)."""
    moe_pad_to_capacity: bool = False
    """Pad every expert's input to its capacity (Switch/GShard; Megatron --moe-pad-expert-input-to-capacity)."""
    grad_reduce_dtype: str = ""
    """dtype gradients are reduced in: "bf16" | "fp32"; "" = the precision's default (timing.yaml grad_reduce_bytes;
    FSDP2 MixedPrecisionPolicy(reduce_dtype=torch.float32) in torchtitan, bf16 in llm-foundry's DEFAULT mode)."""
    pp_first_stage_layers: int = 0
    """Transformer layers on the first pipeline stage (Megatron `--decoder-first-pipeline-num-layers`); 0 = even split."""
    pp_last_stage_layers: int = 0
    """Transformer layers on the last pipeline stage (Megatron `--decoder-last-pipeline-num-layers`); 0 = even split."""
    tp_comm_overlap: float | None = None
    """Share of tensor-parallel collectives hidden behind GEMMs; None = timing.yaml `tp_overlap` (0: Megatron default,
    `--tp-comm-overlap` with TE userbuffers hides most of it)."""
    ep_comm_overlap: float | None = None
    """Share of expert-parallel all-to-all hidden behind compute; None = timing.yaml `ep_overlap`."""
    dropout: float = 0.0
    gpus_per_node: int = 8
    packed_doc_tokens: int = 0
    """Mean tokens per document when each sequence is packed from several documents with document-masked attention
    (flash-attn varlen / cu_seqlens, Transformer Engine THD, FlexAttention block masks): a query attends only within
    its own document. 0 = one document per sequence (attention over the whole sequence)."""
    # optimizer step fused into backward (torchtune `optimizer_in_bwd=True`; PyTorch tutorial "How to save
    # memory by fusing the optimizer step into the backward pass"): each parameter is updated and its
    # gradient freed as soon as it is accumulated, so the full gradient buffer is never live.
    optimizer_in_backward: bool = False
    # bitsandbytes paged optimizer (PagedAdamW, PagedAdamW8bit): states in CUDA unified memory, evicted to
    # host memory when the GPU runs out (bitsandbytes docs, "Paged optimizers").
    paged_optimizer: bool = False
    # gradients freed between steps (optimizer.zero_grad(set_to_none=True), the PyTorch >= 2.0 default) or
    # kept allocated and zeroed (set_to_none=False: the PyTorch 1.x default, Megatron/DeepSpeed grad buffers)
    grads_set_to_none: bool = True

    def __post_init__(self):
        # model-independent checks at construction (sizeup.core.memory.check_setup adds the model's)
        from sizeup.errors import SizeupError

        if isinstance(self.decoder_seq_len, bool) or not isinstance(self.decoder_seq_len, int) \
                or self.decoder_seq_len < 0:
            raise SizeupError(f"decoder-seq must be a whole number >= 1, got {self.decoder_seq_len!r}")
        for name in ("gpus", "tp", "pp", "cp", "ep", "micro_batch", "grad_accum", "seq_len", "virtual_pp",
                     "gpus_per_node"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SizeupError(f"{name.replace('_', '-')} must be a whole number >= 1, got {v!r}")
        if isinstance(self.packed_doc_tokens, bool) or not isinstance(self.packed_doc_tokens, int) \
                or self.packed_doc_tokens < 0:
            raise SizeupError(f"packed-doc-tokens must be a whole number >= 0, got {self.packed_doc_tokens!r}")
        if self.gpus % (self.tp * self.pp * self.cp):
            raise SizeupError(f"gpus ({self.gpus}) must be a multiple of tp*pp*cp = {self.tp * self.pp * self.cp}")

    @property
    def dp(self) -> int:
        return max(1, self.gpus // (self.tp * self.pp * self.cp))

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step."""
        return self.micro_batch * self.grad_accum * self.dp

    @property
    def tokens_per_step(self) -> int:
        """Input tokens per optimizer step (for an encoder-decoder: encoder input tokens; see `dec_seq`)."""
        return self.global_batch * self.seq_len

    @property
    def dec_seq(self) -> int:
        """Decoder (target) tokens per sequence of an encoder-decoder: decoder_seq_len, or seq_len when 0."""
        return self.decoder_seq_len or self.seq_len

    @property
    def attention_span(self) -> int:
        """Tokens a query can attend over: the packed document's length (capped at the sequence), else the sequence."""
        return min(self.seq_len, self.packed_doc_tokens) if self.packed_doc_tokens > 0 else self.seq_len

    def with_(self, **changes) -> "TrainSetup":
        return replace(self, **changes)


@dataclass(frozen=True)
class Overheads:
    """Framework memory overheads, as data (catalog/data/defaults.yaml); every field is tunable."""

    cuda_context_bytes: float = 0.0
    cublas_workspace_bytes: float = 0.0
    nccl_workspace_bytes: float = 0.0
    comm_bucket_bytes: float = 0.0
    fragmentation_fraction: float = 0.0
    sources: Mapping[str, str] = field(default_factory=dict)
