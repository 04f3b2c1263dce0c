"""Pydantic v2 models for everything a user or a catalog file can give sizeup.

Each model forbids unknown keys and checks ranges; `.to_core()` builds the frozen dataclass
that `core/` works with. Errors are turned into one clear line by `sizeup.errors`.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sizeup.core.types import (
    MlpKind,
    ModelArch,
    NormKind,
    PositionKind,
    QkNorm,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# =========================================================================== models


class ModelFile(Strict):
    """One file in catalog/data/models/<id>.yaml (or a model built from a HF config.json)."""

    name: str
    source: str = Field(min_length=3, description="where the config numbers come from (URL or paper table)")
    aliases: list[str] = []
    hf_model_type: str = ""
    architecture: str = "decoder"
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
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> "ModelFile":
        if self.architecture != "decoder":
            raise ValueError(
                f"architecture {self.architecture!r} is not supported: sizeup models decoder-only transformers "
                "(encoder-decoder and encoder-only models are out of scope for now)"
            )
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
            source=self.source,
            hf_model_type=self.hf_model_type,
            aliases=tuple(self.aliases),
        )


# =========================================================================== hardware
# (GPU and platform catalog models are defined below this line.)
