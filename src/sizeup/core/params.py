"""Exact parameter counts from the architecture, as a breakdown that sums to the total.

Symbols: V vocab, h hidden, L layers, a heads, k kv heads, d head dim, f ffn size,
E routed experts, K experts per token, fe expert ffn size; encoder-decoder: L_e encoder and L_d decoder layers,
B relative-position buckets; BERT: P positions, T token types.
Encoder (BERT, transformers modeling_bert.py): word + position + token-type embeddings and their LayerNorm, L x
(q, k, v, o with biases, 2 LayerNorms, 2-matrix GELU MLP with biases), pooler h*h + h, and a classifier
h*labels + labels or no head (BertModel). Encoder-decoder (T5, transformers modeling_t5.py): one shared embedding,
L_e x (q, k, v, o without biases, MLP, 2 RMS norms), L_d x (self q, k, v, o + cross q, k, v, o, MLP, 3 norms), a
B x a relative position bias in the first layer of each stack, a final norm per stack, LM head V*h unless tied
(T5 v1.0 ties it; T5 v1.1 / mT5 / T0 do not, with a gated-GELU MLP of 3 matrices).
Source: counted the way Hugging Face transformers builds each module (checked against
`sum(p.numel())` on the meta device in tests/test_params_vs_torch.py); Megatron's
`theoretical_memory_usage.py` uses the same per-layer terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sizeup.core.explain import Term
from sizeup.core.types import ArchKind, HeadKind, ModelArch, NormKind, PositionKind, QkNorm


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


def head_params(m: ModelArch) -> int:
    """Output head: LM head V*h (+ bias; 0 when tied), classifier h*labels + labels, or none."""
    if m.head == HeadKind.NONE:
        return 0
    if m.head == HeadKind.CLASSIFIER:
        return m.hidden_size * m.num_labels + m.num_labels
    if m.tie_embeddings:
        return 0
    return m.vocab_size * m.hidden_size + (m.vocab_size if m.lm_head_bias else 0)


def count_params(m: ModelArch) -> ParamCount:
    """Total and active (per-token) parameters with a breakdown that sums to the total."""
    if m.arch_kind != ArchKind.DECODER:
        return _count_encoder_params(m)
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


def _count_encoder_params(m: ModelArch) -> ParamCount:
    """Encoder-only (BERT) and encoder-decoder (T5) models: dense layers only (MoE / MLA are decoder-only here)."""
    h, V = m.hidden_size, m.vocab_size
    attn = attention_params(m)
    attn_total = sum(attn.values())
    mlp = mlp_params(m, m.ffn_size)
    norm = norm_params(m, h)
    rel = m.relative_attention_buckets * m.num_heads if m.position == PositionKind.RELATIVE else 0
    Le, Ld = m.num_layers, (m.num_decoder_layers if m.is_encoder_decoder else 0)
    breakdown: dict[str, int] = {"embedding/token": V * h}
    if m.position == PositionKind.LEARNED:
        breakdown["embedding/position"] = m.num_position_embeddings * h
    if m.type_vocab_size:
        breakdown["embedding/token_type"] = m.type_vocab_size * h
    if m.embed_norm:
        breakdown["embedding/norm"] = norm
    enc = "encoder" if m.is_encoder_decoder else "layers"
    breakdown[f"{enc}/attention"] = Le * attn_total
    breakdown[f"{enc}/norms"] = Le * 2 * norm
    breakdown[f"{enc}/mlp"] = Le * mlp
    if rel:
        breakdown[f"{enc}/relative_bias"] = rel
    if m.final_norm:
        breakdown[f"{enc}/final_norm" if m.is_encoder_decoder else "final_norm"] = norm
    if Ld:
        breakdown["decoder/self_attention"] = Ld * attn_total
        breakdown["decoder/cross_attention"] = Ld * attn_total
        breakdown["decoder/norms"] = Ld * 3 * norm
        breakdown["decoder/mlp"] = Ld * mlp
        if rel:
            breakdown["decoder/relative_bias"] = rel
        if m.final_norm:
            breakdown["decoder/final_norm"] = norm
    if m.pooler:
        breakdown["pooler"] = h * h + h
    head = head_params(m)
    if head:
        breakdown["output_head"] = head
    total = sum(breakdown.values())
    per_layer = {f"attention/{k}": v for k, v in attn.items()}
    per_layer["norms"] = 2 * norm
    per_layer["mlp"] = mlp
    if Ld:
        per_layer["decoder/cross_attention"] = attn_total
        per_layer["decoder/norms"] = norm
    notes = [f"{m.arch_kind.value}: {Le} encoder layers" + (f" + {Ld} decoder layers (self + cross attention)"
                                                            if Ld else "")]
    if m.head == HeadKind.LM and m.tie_embeddings:
        notes.append("output head tied to the token embedding: counted once")
    if rel:
        notes.append(f"relative position bias {m.relative_attention_buckets} buckets x {m.num_heads} heads per stack")
    if m.type_vocab_size:
        notes.append(f"token-type embedding of {m.type_vocab_size} rows")
    if m.pooler:
        notes.append("pooler dense h x h + bias")
    if m.head == HeadKind.CLASSIFIER:
        notes.append(f"classifier head over {m.num_labels} labels")
    formula = ("V*h + L_e*(attention + 2 norms + mlp) + L_d*(2*attention + 3 norms + mlp) + 2*(B*a) [relative bias] "
               "+ 2 final norms + (untied ? V*h : 0)" if Ld else
               "V*h + P*h + T*h + emb norm + L*(attention + 2 norms + mlp) + pooler + head")
    terms = (
        Term("params/total", float(total), "params", formula,
             {"V": V, "h": h, "L_enc": Le, "L_dec": Ld, "a": m.num_heads, "d": m.head_dim, "f": m.ffn_size,
              "B": m.relative_attention_buckets, "P": m.num_position_embeddings, "T": m.type_vocab_size,
              "tied": m.tie_embeddings, "head": m.head.value, "attention_per_layer": attn_total,
              "mlp_per_layer": mlp},
             m.source or "architecture; transformers modeling_t5.py / modeling_bert.py module structure"),
        Term("params/active", float(total), "params", "= total (dense)", {}, "architecture"),
    )
    return ParamCount(m.id, total, total, breakdown, per_layer, tuple(notes), terms)


def gpt2_seed_formula(vocab: int, context: int, hidden: int, layers: int) -> dict[str, int]:
    """Seed 002's textbook formula (no biases, untied head, 4h MLP): kept to explain the gap to GPT-2."""
    tok = vocab * hidden
    pos = context * hidden
    block = 4 * hidden * hidden + 2 * hidden * 4 * hidden + 2 * hidden
    return {"tok_emb": tok, "pos_emb": pos, "block": block, "blocks": layers * block,
            "output_head": hidden * vocab, "total": tok + pos + layers * block + hidden * vocab}
