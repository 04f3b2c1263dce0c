"""Exact parameter counts from the architecture, as a breakdown that sums to the total.

Symbols: V vocab, h hidden, L layers, a heads, k kv heads, d head dim, f ffn size,
E routed experts, K experts per token, fe expert ffn size.
Source: counted the way Hugging Face transformers builds each module (checked against
`sum(p.numel())` on the meta device in tests/test_params_vs_torch.py); Megatron's
`theoretical_memory_usage.py` uses the same per-layer terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sizeup.core.explain import Term
from sizeup.core.types import ModelArch, NormKind, PositionKind, QkNorm


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts. `breakdown` keys are slash paths; their values sum to `total`."""

    model_id: str
    total: int
    active: int
    breakdown: Mapping[str, int]
    per_layer: Mapping[str, int]
    notes: tuple[str, ...] = ()
    terms: tuple[Term, ...] = field(default=())

    @property
    def embedding(self) -> int:
        return self.breakdown.get("embedding/token", 0) + self.breakdown.get("embedding/position", 0)


def norm_params(m: ModelArch, width: int) -> int:
    """One norm over `width` features: weight (+ bias for LayerNorm with bias)."""
    return width * (2 if (m.norm_kind == NormKind.LAYERNORM and m.norm_bias) else 1)


def attention_params(m: ModelArch) -> dict[str, int]:
    """Attention projections of one layer (q, k, v, o, plus MLA down/up projections and norms)."""
    h = m.hidden_size
    out: dict[str, int] = {}
    if m.is_mla:
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            # q_a_proj (h -> q_lora), q_a_layernorm, q_b_proj (q_lora -> a*(nope+rope))
            out["q"] = h * m.q_lora_rank + norm_params(m, m.q_lora_rank) + m.q_lora_rank * m.num_heads * qk_head
        else:
            out["q"] = h * m.num_heads * qk_head
        # kv_a_proj_with_mqa (h -> kv_lora + rope), kv_a_layernorm, kv_b_proj (kv_lora -> a*(nope+v))
        out["kv"] = (
            h * (m.kv_lora_rank + m.qk_rope_head_dim)
            + norm_params(m, m.kv_lora_rank)
            + m.kv_lora_rank * m.num_heads * (m.qk_nope_head_dim + m.v_head_dim)
        )
        out["o"] = m.num_heads * m.v_head_dim * h + (h if m.out_bias else 0)
        return out
    q_width = m.num_heads * m.head_dim
    kv_width = m.num_kv_heads * m.head_dim
    out["q"] = h * q_width + (q_width if m.qkv_bias else 0)
    out["k"] = h * kv_width + (kv_width if m.qkv_bias else 0)
    out["v"] = h * kv_width + (kv_width if m.qkv_bias else 0)
    out["o"] = q_width * h + (h if m.out_bias else 0)
    if m.qk_norm == QkNorm.HEAD:
        out["qk_norm"] = 2 * norm_params(m, m.head_dim)
    elif m.qk_norm == QkNorm.FULL:
        out["qk_norm"] = norm_params(m, q_width) + norm_params(m, kv_width)
    return out


def mlp_params(m: ModelArch, ffn: int) -> int:
    """One dense MLP: 3*h*f (gated) or 2*h*f (plain), plus biases."""
    h = m.hidden_size
    if m.mlp_kind.gated:
        weights = 3 * h * ffn
        biases = (2 * ffn + h) if m.mlp_bias else 0
    else:
        weights = 2 * h * ffn
        biases = (ffn + h) if m.mlp_bias else 0
    return weights + biases


def moe_params(m: ModelArch) -> dict[str, int]:
    """One MoE layer: router (h*E), E routed experts, shared experts (+ optional shared gate)."""
    h = m.hidden_size
    out = {
        "router": h * m.num_experts + (m.num_experts if m.router_bias else 0),
        "experts": m.num_experts * mlp_params(m, m.expert_ffn_size),
    }
    if m.num_shared_experts:
        shared_ffn = m.shared_expert_ffn_size or m.expert_ffn_size * m.num_shared_experts
        out["shared_experts"] = mlp_params(m, shared_ffn)
        if m.shared_expert_gate:
            out["shared_experts"] += h
    return out


def count_params(m: ModelArch) -> ParamCount:
    """Total and active (per-token) parameters with a breakdown that sums to the total."""
    h, V, L = m.hidden_size, m.vocab_size, m.num_layers
    attn = attention_params(m)
    attn_total = sum(attn.values())
    norms = m.norms_per_layer * norm_params(m, h)
    dense_mlp = mlp_params(m, m.ffn_size)
    n_moe = m.num_moe_layers
    n_dense = L - n_moe

    breakdown: dict[str, int] = {}
    breakdown["embedding/token"] = V * h
    if m.position == PositionKind.LEARNED:
        breakdown["embedding/position"] = m.num_position_embeddings * h
    if m.embed_norm:
        breakdown["embedding/norm"] = norm_params(m, h)
    breakdown["layers/attention"] = L * attn_total
    breakdown["layers/norms"] = L * norms
    if n_dense:
        breakdown["layers/mlp"] = n_dense * dense_mlp
    moe = moe_params(m) if n_moe else {}
    for key, value in moe.items():
        breakdown[f"layers/{key}"] = n_moe * value
    if m.final_norm:
        breakdown["final_norm"] = norm_params(m, h)
    if not m.tie_embeddings:
        breakdown["output_head"] = V * h + (V if m.lm_head_bias else 0)
    total = sum(breakdown.values())

    active = total
    if n_moe:
        inactive_experts = m.num_experts - m.experts_per_token
        active -= n_moe * inactive_experts * mlp_params(m, m.expert_ffn_size)

    per_layer = {f"attention/{k}": v for k, v in attn.items()}
    per_layer["norms"] = norms
    if n_dense:
        per_layer["mlp"] = dense_mlp
    for key, value in moe.items():
        per_layer[key] = value

    notes = []
    if m.tie_embeddings:
        notes.append("output head tied to the token embedding: counted once")
    if m.position == PositionKind.LEARNED:
        notes.append(f"learned position table of {m.num_position_embeddings} rows")
    if m.qkv_bias or m.out_bias or m.mlp_bias or m.norm_bias:
        notes.append("biases counted: " + ", ".join(
            n for n, on in (("qkv", m.qkv_bias), ("attn out", m.out_bias), ("mlp", m.mlp_bias), ("norms", m.norm_bias)) if on))
    if n_moe:
        notes.append(f"{n_moe} MoE layers x {m.num_experts} experts, {m.experts_per_token} active per token")

    terms = (
        Term("params/total", float(total), "params",
             "V*h [token emb] + P*h [positions] + L*(attention + norms + mlp|moe) + final norm + (untied ? V*h : 0)",
             {"V": V, "h": h, "L": L, "a": m.num_heads, "kv": m.num_kv_heads, "d": m.head_dim, "f": m.ffn_size,
              "tied": m.tie_embeddings, "attention_per_layer": attn_total, "mlp_per_layer": dense_mlp},
             m.source or "architecture"),
        Term("params/active", float(active), "params",
             "total - n_moe_layers * (E - K) * expert_mlp" if n_moe else "= total (dense)",
             {"E": m.num_experts, "K": m.experts_per_token, "n_moe_layers": n_moe}, "architecture"),
    )
    return ParamCount(m.id, total, active, breakdown, per_layer, tuple(notes), terms)


def gpt2_seed_formula(vocab: int, context: int, hidden: int, layers: int) -> dict[str, int]:
    """Seed 002's textbook formula (no biases, untied head, 4h MLP): kept to explain the gap to GPT-2."""
    tok = vocab * hidden
    pos = context * hidden
    block = 4 * hidden * hidden + 2 * hidden * 4 * hidden + 2 * hidden
    return {"tok_emb": tok, "pos_emb": pos, "block": block, "blocks": layers * block,
            "output_head": hidden * vocab, "total": tok + pos + layers * block + hidden * vocab}
