"""Pydantic v2 models for everything a user or a catalog file can give sizeup.

Each model forbids unknown keys and checks ranges; `.to_core()` builds the frozen dataclass
that `core/` works with. Errors are turned into one clear line by `sizeup.errors`.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sizeup.core.types import (
    ArchKind,
    HeadKind,
    MlpKind,
    ModelArch,
    NormKind,
    PositionKind,
    QkNorm,
)


class Strict(BaseModel):
    # NaN/inf refused in every file. defer_build: a model's validator is built on its first use (pydantic's
    # ConfigDict.defer_build), so a CLI call pays only for the files it reads (~2 ms a model class otherwise).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


# =========================================================================== models


class ModelFile(Strict):
    """One file in catalog/data/models/<id>.yaml (or a model built from a HF config.json)."""

    name: str
    source: str = Field(min_length=3, description="where the config numbers come from (URL or paper table)")
    aliases: list[str] = []
    hf_model_type: str = ""
    architecture: ArchKind = Field(default=ArchKind.DECODER,
                                   description="decoder (default) | encoder (BERT) | encoder-decoder (T5)")
    num_decoder_layers: int = Field(default=0, ge=0, description="decoder layers of an encoder-decoder")
    relative_attention_buckets: int = Field(default=0, ge=0, description="T5 relative_attention_num_buckets")
    type_vocab_size: int = Field(default=0, ge=0, description="BERT token-type embedding rows")
    pooler: bool = False
    head: HeadKind = HeadKind.LM
    num_labels: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="training dropout of the model's config")
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: Optional[int] = Field(default=None, gt=0)
    head_dim: Optional[int] = Field(default=None, gt=0)
    ffn_size: int = Field(ge=0)
    mlp_kind: MlpKind = MlpKind.SWIGLU
    norm_kind: NormKind = NormKind.RMSNORM
    norm_bias: bool = False
    norms_per_layer: int = Field(default=2, ge=0, le=8)
    final_norm: bool = True
    embed_norm: bool = False
    qk_norm: QkNorm = QkNorm.NONE
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    lm_head_bias: bool = False
    position: PositionKind = PositionKind.ROTARY
    num_position_embeddings: int = Field(default=0, ge=0)
    max_seq_len: int = Field(default=2048, gt=0)
    tie_embeddings: bool = False
    parallel_block: bool = False
    num_experts: int = Field(default=0, ge=0)
    experts_per_token: int = Field(default=0, ge=0)
    num_shared_experts: int = Field(default=0, ge=0)
    expert_ffn_size: int = Field(default=0, ge=0)
    shared_expert_ffn_size: int = Field(default=0, ge=0)
    shared_expert_gate: bool = False
    router_bias: bool = False
    first_k_dense_layers: int = Field(default=0, ge=0)
    moe_layer_freq: int = Field(default=1, ge=1)
    q_lora_rank: int = Field(default=0, ge=0)
    kv_lora_rank: int = Field(default=0, ge=0)
    qk_rope_head_dim: int = Field(default=0, ge=0)
    qk_nope_head_dim: int = Field(default=0, ge=0)
    v_head_dim: int = Field(default=0, ge=0)
    sliding_window: int = Field(default=0, ge=0)
    sliding_window_layers: int = Field(default=0, ge=0)
    rope_theta: Optional[float] = Field(default=None, gt=0, description="RoPE base (HF rope_theta)")
    norm_eps: Optional[float] = Field(default=None, gt=0, lt=1, description="norm epsilon (HF rms_norm_eps)")
    rope_scaling: Optional[dict[str, float | str]] = Field(default=None, description="HF rope_scaling")
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> "ModelFile":
        if self.architecture == ArchKind.ENCODER_DECODER and not self.num_decoder_layers:
            raise ValueError("an encoder-decoder model needs num_decoder_layers >= 1 (T5Config num_decoder_layers)")
        if self.architecture != ArchKind.ENCODER_DECODER and self.num_decoder_layers:
            raise ValueError(f"num_decoder_layers is for encoder-decoder models; this one is {self.architecture.value}")
        if self.architecture != ArchKind.DECODER and (self.num_experts or self.kv_lora_rank or self.sliding_window
                                                       or self.parallel_block):
            raise ValueError(f"{self.architecture.value} models are dense here: MoE, MLA, sliding windows and "
                             "parallel blocks are modelled for decoder-only transformers")
        if self.position == PositionKind.RELATIVE and not self.relative_attention_buckets:
            raise ValueError("relative position bias needs relative_attention_buckets")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({kv})")
        if self.num_experts:
            if not (0 < self.experts_per_token <= self.num_experts):
                raise ValueError("experts_per_token must be between 1 and num_experts for a MoE model")
            if not self.expert_ffn_size:
                raise ValueError("expert_ffn_size is required for a MoE model")
        if self.kv_lora_rank and not (self.qk_rope_head_dim and self.qk_nope_head_dim and self.v_head_dim):
            raise ValueError("MLA (kv_lora_rank > 0) needs qk_rope_head_dim, qk_nope_head_dim and v_head_dim")
        if self.position == PositionKind.LEARNED and not self.num_position_embeddings:
            raise ValueError("learned position embeddings need num_position_embeddings")
        if self.first_k_dense_layers > self.num_layers:
            raise ValueError("first_k_dense_layers exceeds num_layers")
        if self.sliding_window_layers > self.num_layers:
            raise ValueError("sliding_window_layers exceeds num_layers")
        return self

    def to_core(self, model_id: str) -> ModelArch:
        kv = self.num_kv_heads or self.num_heads
        head_dim = self.head_dim or self.hidden_size // self.num_heads
        window_layers = self.sliding_window_layers or (self.num_layers if self.sliding_window else 0)
        return ModelArch(
            id=model_id,
            name=self.name,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            num_kv_heads=kv,
            head_dim=head_dim,
            ffn_size=self.ffn_size,
            mlp_kind=self.mlp_kind,
            norm_kind=self.norm_kind,
            norm_bias=self.norm_bias,
            norms_per_layer=self.norms_per_layer,
            final_norm=self.final_norm,
            embed_norm=self.embed_norm,
            qk_norm=self.qk_norm,
            qkv_bias=self.qkv_bias,
            out_bias=self.out_bias,
            mlp_bias=self.mlp_bias,
            lm_head_bias=self.lm_head_bias,
            position=self.position,
            num_position_embeddings=self.num_position_embeddings,
            max_seq_len=self.max_seq_len,
            tie_embeddings=self.tie_embeddings,
            parallel_block=self.parallel_block,
            num_experts=self.num_experts,
            experts_per_token=self.experts_per_token,
            num_shared_experts=self.num_shared_experts,
            expert_ffn_size=self.expert_ffn_size,
            shared_expert_ffn_size=self.shared_expert_ffn_size,
            shared_expert_gate=self.shared_expert_gate,
            router_bias=self.router_bias,
            first_k_dense_layers=self.first_k_dense_layers,
            moe_layer_freq=self.moe_layer_freq,
            q_lora_rank=self.q_lora_rank,
            kv_lora_rank=self.kv_lora_rank,
            qk_rope_head_dim=self.qk_rope_head_dim,
            qk_nope_head_dim=self.qk_nope_head_dim,
            v_head_dim=self.v_head_dim,
            sliding_window=self.sliding_window,
            sliding_window_layers=window_layers,
            rope_theta=self.rope_theta,
            norm_eps=self.norm_eps,
            rope_scaling=tuple(sorted((self.rope_scaling or {}).items())),
            source=self.source,
            arch_kind=self.architecture,
            num_decoder_layers=self.num_decoder_layers,
            relative_attention_buckets=self.relative_attention_buckets,
            type_vocab_size=self.type_vocab_size,
            pooler=self.pooler,
            head=self.head,
            num_labels=self.num_labels,
            dropout=self.dropout,
            hf_model_type=self.hf_model_type,
            aliases=tuple(self.aliases),
            notes=self.notes,
        )


# =========================================================================== token budgets


class StreamSpec(Strict):
    """One input stream of a multi-modal sample (see core/tokens.py for the per-kind formulas)."""

    name: str = ""
    kind: str = Field(pattern="^(text|video|audio|sensor)$")
    tokens_per_second: float = Field(default=0.0, ge=0)
    tokens_per_sample: float = Field(default=0.0, ge=0)
    fps: float = Field(default=0.0, ge=0)
    patches_per_frame: float = Field(default=0.0, ge=0)
    sample_rate_hz: float = Field(default=0.0, ge=0)
    hop_samples: float = Field(default=0.0, ge=0)
    frame_rate_hz: float = Field(default=0.0, ge=0)
    codebooks: float = Field(default=1.0, gt=0)
    rate_hz: float = Field(default=0.0, ge=0)
    values_per_step: float = Field(default=1.0, gt=0)
    values_per_token: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _rate_given(self) -> "StreamSpec":
        need = {"text": ("tokens_per_second", "tokens_per_sample"), "video": ("fps",), "audio": ("sample_rate_hz", "frame_rate_hz"),
                "sensor": ("rate_hz",)}[self.kind]
        if not any(getattr(self, k) for k in need):
            raise ValueError(f"a {self.kind} stream needs {' or '.join(need)}")
        if self.kind == "video" and not self.patches_per_frame:
            raise ValueError("a video stream needs patches_per_frame (tokens per frame after pooling)")
        if self.kind == "audio" and not self.frame_rate_hz and not self.hop_samples:
            raise ValueError("an audio stream needs hop_samples (codec hop) or frame_rate_hz")
        return self

    def to_core(self):
        from sizeup.core.tokens import Stream, StreamKind

        data = self.model_dump()
        data["name"] = self.name or self.kind
        data["kind"] = StreamKind(self.kind)
        return Stream(**data)


class TokensFile(Strict):
    """`sizeup tokens SPEC.yaml`: the streams of one sample and the data volume."""

    sample_seconds: float = Field(gt=0)
    samples: Optional[str | float] = None
    target_tokens: Optional[str | float] = None
    params: Optional[str | float] = None
    streams: list[StreamSpec] = Field(min_length=1)


# =========================================================================== audit claims


class ClaimedFigures(Strict):
    """What a plan claims; every key is optional."""

    throughput_samples_per_s: Optional[float] = Field(default=None, gt=0)
    throughput_tokens_per_s: Optional[float] = Field(default=None, gt=0)
    wall_clock_hours: Optional[float] = Field(default=None, gt=0)
    gpu_hours: Optional[float] = Field(default=None, gt=0)
    cost_usd: Optional[float] = Field(default=None, ge=0)
    price_per_gpu_hour: Optional[float] = Field(default=None, ge=0)
    peak_memory_gb: Optional[float] = Field(default=None, gt=0)


class ClaimsFile(Strict):
    """`sizeup audit CLAIMS.yaml`: a plan as claimed (seed 001/004 style)."""

    title: str = ""
    source: str = ""
    notes: str = ""
    model: Optional[str] = None
    params: Optional[str | float] = None
    tokens: Optional[str | float] = None
    samples: Optional[str | float] = None
    tokens_per_sample: Optional[str | float] = None
    epochs: float = Field(default=1.0, gt=0)
    gpu: str
    gpus: int = Field(default=1, gt=0)
    peft: str = "none"
    precision: Optional[str] = None
    micro_batch: Optional[int] = Field(default=None, gt=0)
    seq: Optional[int] = Field(default=None, gt=0)
    platform: Optional[str] = None
    pricing: str = "on-demand"
    claimed: ClaimedFigures = ClaimedFigures()
    job: dict[str, Any] = {}
    """every other job field of the claimed plan (tp, pp, zero, recompute, framework, global_batch, ...), under
    the same names as the CLI flags; written at the top level of the claims file"""

    @model_validator(mode="after")
    def _need_size_and_work(self) -> "ClaimsFile":
        if self.model is None and self.params is None:
            raise ValueError("give the model size: 'params: 10M' or 'model: <preset id>'")
        if self.tokens is None and (self.samples is None or self.tokens_per_sample is None):
            raise ValueError("give the work: 'tokens: 2B', or 'samples' and 'tokens_per_sample'")
        return self


# =========================================================================== hardware
# (GPU and platform catalog models are defined below this line.)


class Cited(Strict):
    """A number with where it comes from: {value, source, note}. `source` is a key of
    catalog/data/hw_sources.yaml ('mle_tflops'), a URL, or 'derived'/'assumed' with the reasoning in `note`."""

    value: float
    source: str = Field(min_length=3)
    note: str = ""

    @model_validator(mode="after")
    def _explained(self) -> "Cited":
        if self.source.strip().lower() in ("derived", "assumed") and not self.note.strip():
            raise ValueError(f"a {self.source} value needs a note saying how it was {self.source}")
        return self


class CitedQuantity(Cited):
    """Like Cited, but `value` may carry a unit: '81559MiB', '3.35TB/s', '450GB/s' (sizeup.units)."""

    value: float | str  # type: ignore[assignment]


class CitedPrice(Cited):
    """A price: as_of (the date it was seen/published, 'YYYY-MM[-DD] ...' or 'unknown ...') is REQUIRED."""

    value: float = Field(ge=0)
    as_of: str = Field(min_length=4)


PEAK_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp6", "fp4", "int8", "int4")


class GpuMatch(Strict):
    """Tokens for forgiving name matching: 'a100 80gb pcie' -> family a100, 80 GB, pcie."""

    family: str = Field(min_length=2)
    memory_gb: float = Field(gt=0)
    form: str = Field(min_length=2)
    default: bool = False


class EfficiencyKnobs(Strict):
    """Achievable fractions; in a GPU file every field is optional (falls back to the family, then defaults)."""

    family: str = ""
    matmul_mamf: Optional[Cited] = None
    matmul_mamf_fp8: Optional[Cited] = None
    small_gemm_overhead_s: Optional[Cited] = None
    hbm_efficiency: Optional[Cited] = None
    collective_efficiency_intra: Optional[Cited] = None
    collective_efficiency_inter: Optional[Cited] = None
    collective_latency_s: Optional[Cited] = None
    matmul_curve: Optional[list[tuple[float, float]]] = None
    matmul_curve_source: str = ""

    @model_validator(mode="after")
    def _check(self) -> "EfficiencyKnobs":
        for name in ("matmul_mamf", "matmul_mamf_fp8", "hbm_efficiency", "collective_efficiency_intra",
                     "collective_efficiency_inter"):
            c = getattr(self, name)
            if c is not None and not (0 < c.value <= 1.2):
                raise ValueError(f"{name} must be a fraction in (0, 1.2], got {c.value}")
        if self.matmul_curve is not None:
            if not self.matmul_curve_source or len(self.matmul_curve_source) < 3:
                raise ValueError("matmul_curve needs a matmul_curve_source")
            if any(not (0 < f <= 1.0) or n <= 0 for n, f in self.matmul_curve):
                raise ValueError("matmul_curve points must be (FLOPs > 0, fraction in (0, 1])")
        return self


class EfficiencyFile(Strict):
    """catalog/data/efficiency.yaml: defaults + per-family achievable fractions."""

    curve_flops: list[float] = Field(min_length=2)
    defaults: EfficiencyKnobs
    families: dict[str, EfficiencyKnobs] = {}

    @model_validator(mode="after")
    def _check(self) -> "EfficiencyFile":
        missing = [k for k in ("small_gemm_overhead_s", "hbm_efficiency", "collective_efficiency_intra",
                               "collective_efficiency_inter", "collective_latency_s")
                   if getattr(self.defaults, k) is None]
        if missing:
            raise ValueError(f"efficiency defaults must set {', '.join(missing)}")
        return self


class GpuFile(Strict):
    """One file in catalog/data/gpus/<id>.yaml (or one entry under `gpus:` in a user catalog file).

    Peaks are DENSE (no 2:4 sparsity) in TFLOP/s; link bandwidths are per GPU, ONE direction."""

    name: str
    vendor: str
    match: GpuMatch
    aliases: list[str] = []
    note: str = ""
    efficiency: EfficiencyKnobs
    memory: CitedQuantity
    hbm_bandwidth: CitedQuantity
    peak_tflops_dense: dict[str, Cited]
    intra_node_bandwidth: CitedQuantity
    intra_node_link: str
    node_size: Cited
    inter_node_bandwidth: CitedQuantity
    host_link_bandwidth: CitedQuantity
    tdp_w: Cited
    purchase_usd: Optional[CitedPrice] = None

    @model_validator(mode="after")
    def _check(self) -> "GpuFile":
        bad = [k for k in self.peak_tflops_dense if k not in PEAK_DTYPES]
        if bad:
            raise ValueError(f"peak_tflops_dense: unknown dtype {bad[0]!r}; allowed: {', '.join(PEAK_DTYPES)}")
        if not any(k in self.peak_tflops_dense for k in ("bf16", "fp16")):
            raise ValueError("peak_tflops_dense needs at least bf16 or fp16")
        for k, c in self.peak_tflops_dense.items():
            if not (0 < c.value < 100_000):
                raise ValueError(f"peak_tflops_dense.{k} must be in TFLOP/s (0 < x < 100000), got {c.value}")
        if self.node_size.value < 1 or self.node_size.value != int(self.node_size.value):
            raise ValueError("node_size must be a whole number >= 1")
        if self.tdp_w.value < 0:
            raise ValueError("tdp_w must be >= 0 (0 = unknown)")
        if not self.efficiency.family and self.efficiency.matmul_mamf is None and self.efficiency.matmul_curve is None:
            raise ValueError("efficiency needs a family (see efficiency.yaml) or matmul_mamf / matmul_curve")
        return self

    def quantities(self) -> dict[str, float]:
        """memory/bandwidth values in SI (bytes, bytes/s), parsing unit strings."""
        from sizeup.units import parse_bandwidth, parse_bytes

        out = {"memory_bytes": parse_bytes(self.memory.value)}
        for name, key in (("hbm_bytes_per_s", "hbm_bandwidth"), ("intra_node_bytes_per_s", "intra_node_bandwidth"),
                          ("inter_node_bytes_per_s", "inter_node_bandwidth"),
                          ("host_link_bytes_per_s", "host_link_bandwidth")):
            out[name] = parse_bandwidth(getattr(self, key).value)
        return out

    def efficiency_knob(self, name: str, eff: EfficiencyFile) -> Optional[Cited]:
        """An achievable-fraction knob: this GPU's override, else its family's (efficiency.yaml), else the default."""
        family = eff.families.get(self.efficiency.family) if self.efficiency.family else None
        for layer in (self.efficiency, family, eff.defaults):
            c = getattr(layer, name) if layer is not None else None
            if c is not None:
                return c
        return None

    def to_core(self, gpu_id: str, eff: EfficiencyFile) -> "GpuSpec":
        from sizeup.core.types import GpuSpec

        q = self.quantities()
        family = eff.families.get(self.efficiency.family) if self.efficiency.family else None
        if self.efficiency.family and family is None:
            raise ValueError(f"efficiency.family {self.efficiency.family!r} is not in efficiency.yaml "
                             f"(known: {', '.join(sorted(eff.families))})")

        def knob(name: str) -> Cited:
            c = self.efficiency_knob(name, eff)
            if c is None:
                raise ValueError(f"efficiency.{name} is not set for {gpu_id}")
            return c

        peaks = {k: c.value * 1e12 for k, c in self.peak_tflops_dense.items()}
        sources: dict[str, str] = {}

        def cite(name: str, c: Cited) -> None:
            sources[name] = c.source + (f": {c.note}" if c.note else "")

        cite("memory_bytes", self.memory)
        cite("hbm_bytes_per_s", self.hbm_bandwidth)
        for k, c in self.peak_tflops_dense.items():
            cite(f"peak_flops_per_s.{k}", c)
        cite("intra_node_bytes_per_s", self.intra_node_bandwidth)
        cite("node_size", self.node_size)
        cite("inter_node_bytes_per_s", self.inter_node_bandwidth)
        cite("host_link_bytes_per_s", self.host_link_bandwidth)
        cite("tdp_w", self.tdp_w)
        if self.purchase_usd is not None:
            sources["purchase_usd"] = f"{self.purchase_usd.source} (as_of {self.purchase_usd.as_of})" + (
                f": {self.purchase_usd.note}" if self.purchase_usd.note else "")
        for name in ("hbm_efficiency", "collective_efficiency_intra", "collective_efficiency_inter",
                     "collective_latency_s"):
            cite(name, knob(name))

        if self.efficiency.matmul_curve is not None:
            curve = tuple(sorted((float(n), float(f)) for n, f in self.efficiency.matmul_curve))
            sources["matmul_efficiency"] = self.efficiency.matmul_curve_source
        else:
            # GEMM time = F / (mamf * peak) + t0  =>  fraction(F) = mamf * F / (F + t0 * mamf * peak)
            # (efficiency.yaml header: MAMF from ml-engineering, size dependence as in Calculon)
            mamf, t0 = knob("matmul_mamf"), knob("small_gemm_overhead_s")
            peak = peaks.get("bf16") or peaks.get("fp16") or 0.0
            curve = tuple((f, mamf.value * f / (f + t0.value * mamf.value * peak)) for f in eff.curve_flops)
            sources["matmul_efficiency"] = (
                f"fraction(F) = mamf*F/(F + t0*mamf*peak) with mamf={mamf.value:g} ({mamf.source}"
                + (f": {mamf.note}" if mamf.note else "") + f"), t0={t0.value:g} s ({t0.source}), "
                f"peak = dense bf16/fp16 {peak:.4g} FLOP/s")
        if self.note:
            sources["note"] = self.note
        return GpuSpec(
            id=gpu_id,
            name=self.name,
            vendor=self.vendor,
            memory_bytes=q["memory_bytes"],
            hbm_bytes_per_s=q["hbm_bytes_per_s"],
            peak_flops_per_s=peaks,
            intra_node_bytes_per_s=q["intra_node_bytes_per_s"],
            intra_node_link=self.intra_node_link,
            node_size=int(self.node_size.value),
            inter_node_bytes_per_s=q["inter_node_bytes_per_s"],
            host_link_bytes_per_s=q["host_link_bytes_per_s"],
            tdp_w=self.tdp_w.value,
            matmul_efficiency=curve,
            hbm_efficiency=knob("hbm_efficiency").value,
            collective_efficiency_intra=knob("collective_efficiency_intra").value,
            collective_efficiency_inter=knob("collective_efficiency_inter").value,
            collective_latency_s=knob("collective_latency_s").value,
            purchase_usd=self.purchase_usd.value if self.purchase_usd is not None else None,
            aliases=tuple(self.aliases),
            sources=sources,
        )


# --------------------------------------------------------------------------- platforms


class PriceEntry(Strict):
    """One price of one instance: per INSTANCE hour; `as_of` and `source` are REQUIRED."""

    usd_per_hour: float = Field(ge=0)
    as_of: str = Field(min_length=4, description="date the price was seen/published: 'YYYY-MM-DD', 'YYYY-MM', or 'unknown (why)'")
    source: str = Field(min_length=3)
    region: str = ""
    note: str = ""


class InstanceFile(Strict):
    id: str = Field(min_length=1)
    gpu: str = Field(min_length=1, description="catalog GPU id (gpus/<id>.yaml)")
    gpus: int = Field(ge=1)
    inter_node_bandwidth: Optional[CitedQuantity] = None
    note: str = ""
    prices: dict[str, PriceEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "InstanceFile":
        from sizeup.core.platform import PRICE_KINDS

        for kind in self.prices:
            if kind.replace("_", "-") not in PRICE_KINDS:
                raise ValueError(f"instance {self.id}: unknown price kind {kind!r}; allowed: "
                                 f"{', '.join(k.replace('-', '_') for k in PRICE_KINDS)}")
        return self


class BillingFile(Strict):
    increment_s: Cited
    minimum_s: Cited
    conflicts: list[str] = []
    note: str = ""


class SpotFile(Strict):
    available: bool = True
    preemption_rate_per_hour: Optional[Cited] = None
    notice_s: Optional[Cited] = None
    restart_s: Optional[Cited] = None
    note: str = ""

    @model_validator(mode="after")
    def _check(self) -> "SpotFile":
        if self.available and (self.preemption_rate_per_hour is None or self.notice_s is None or self.restart_s is None):
            raise ValueError("spot.available needs preemption_rate_per_hour, notice_s and restart_s (with sources)")
        if self.preemption_rate_per_hour is not None and not (0 <= self.preemption_rate_per_hour.value < 10):
            raise ValueError("spot.preemption_rate_per_hour must be in [0, 10) per instance-hour")
        return self


class StorageFile(Strict):
    """Prices not collected for a platform are left out (cost then omits them and says so), never guessed."""

    block_usd_per_gb_month: Optional[CitedPrice] = None
    object_usd_per_gb_month: Optional[CitedPrice] = None
    egress_usd_per_gb: Optional[CitedPrice] = None
    egress_free_gb: Optional[Cited] = None
    note: str = ""


class PlatformFile(Strict):
    """One file in catalog/data/platforms/<id>.yaml (or one entry under `platforms:` in a user catalog file)."""

    name: str
    kind: str = Field(description="hyperscaler | neocloud | serverless | marketplace")
    aliases: list[str] = []
    note: str = ""
    billing: BillingFile
    spot: SpotFile
    storage: StorageFile
    instances: list[InstanceFile] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "PlatformFile":
        ids = [i.id for i in self.instances]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate instance ids: {', '.join(sorted(dup))}")
        if self.billing.increment_s.value <= 0 or self.billing.minimum_s.value < 0:
            raise ValueError("billing.increment_s must be > 0 and billing.minimum_s >= 0")
        if not self.spot.available and any("spot" in i.prices for i in self.instances):
            raise ValueError("spot prices listed but spot.available is false")
        return self

    def to_core(self, platform_id: str) -> "Platform":
        from sizeup.core.platform import Instance, InstancePrice, Platform
        from sizeup.units import parse_bandwidth

        def cite(c) -> str:
            if c is None:
                return ""
            return c.source + (f" (as_of {c.as_of})" if getattr(c, "as_of", "") else "") + (f": {c.note}" if c.note else "")

        instances = []
        for inst in self.instances:
            prices = tuple(InstancePrice(k.replace("_", "-"), p.usd_per_hour, p.as_of, p.source, p.region, p.note)
                           for k, p in inst.prices.items())
            bw = inst.inter_node_bandwidth
            instances.append(Instance(inst.id, inst.gpu, inst.gpus, prices,
                                      parse_bandwidth(bw.value) if bw is not None else None, cite(bw), inst.note))
        spot, st, b = self.spot, self.storage, self.billing
        billing_src = cite(b.increment_s) + (f"; minimum: {cite(b.minimum_s)}" if b.minimum_s.value else "")
        if b.conflicts:
            billing_src += "; conflicting sources: " + " | ".join(b.conflicts)
        return Platform(
            id=platform_id,
            name=self.name,
            kind=self.kind,
            billing_increment_s=b.increment_s.value,
            min_billing_s=b.minimum_s.value,
            billing_source=billing_src,
            spot_available=spot.available,
            preemption_rate_per_hour=spot.preemption_rate_per_hour.value if spot.preemption_rate_per_hour else 0.0,
            preemption_source=cite(spot.preemption_rate_per_hour),
            spot_notice_s=spot.notice_s.value if spot.notice_s else 0.0,
            spot_notice_source=cite(spot.notice_s),
            restart_s=spot.restart_s.value if spot.restart_s else 0.0,
            restart_source=cite(spot.restart_s),
            block_storage_usd_per_gb_month=st.block_usd_per_gb_month.value if st.block_usd_per_gb_month else 0.0,
            object_storage_usd_per_gb_month=st.object_usd_per_gb_month.value if st.object_usd_per_gb_month else 0.0,
            storage_source=cite(st.block_usd_per_gb_month) or f"{self.name} storage price not collected (cost omitted)",
            storage_price_known=st.block_usd_per_gb_month is not None,
            egress_usd_per_gb=st.egress_usd_per_gb.value if st.egress_usd_per_gb else 0.0,
            egress_free_gb=st.egress_free_gb.value if st.egress_free_gb else 0.0,
            egress_source=cite(st.egress_usd_per_gb) or f"{self.name} egress price not collected (cost omitted)",
            instances=tuple(instances),
            aliases=tuple(self.aliases),
            conflicts=tuple(b.conflicts),
            note=self.note,
            sources={"billing": billing_src, "spot": cite(spot.preemption_rate_per_hour),
                     "storage": cite(st.block_usd_per_gb_month), "object_storage": cite(st.object_usd_per_gb_month),
                     "egress": cite(st.egress_usd_per_gb)},
        )


class UserCatalogFile(Strict):
    """A user catalog file (--catalog my-prices.yaml): adds or overrides GPUs and platforms.

    An entry whose id already exists is deep-merged over the built-in one (so `aws: {instances: [...]}` adds or
    replaces instances by id and keeps AWS's billing); a new id must be complete."""

    gpus: dict[str, dict] = {}
    platforms: dict[str, dict] = {}
