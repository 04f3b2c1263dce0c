"""Training FLOPs from the architecture: per token, per sequence and per optimizer step.

Symbols: b micro-batch, s sequence length, h hidden, L layers, a heads, d head dim, q = a*d,
kv = k*d, f ffn size, V vocab, E experts, K experts per token, N params, T tokens.

Conventions (the sources disagree, so sizeup reports each and says which it uses):
- matmul FLOPs = 2 * M * K * N (one multiply + one add per MAC).
- backward = 2 x forward (one GEMM for input grads + one for weight grads; Narayanan 2021 §5.1).
- attention scores and values: 2 * 2 * s * q per token per layer forward WITHOUT causal discount
  (PaLM appendix B, Narayanan 2021 eq. 3, llm-foundry and NeMo count the full s^2); Megatron-LM's current
  `num_floating_point_operations` halves it for causal masks (flash kernels skip the masked half).
  `model_flops` uses the full-s^2 convention (what most published MFU figures count);
  `model_flops_causal` the halved one; `executed` is what the kernels run (causal for flash, full for eager).
- recompute: selective adds the attention core forward again (Korthikanti 2022 §4), full adds a
  whole layer forward (not the logits); hardware FLOPs (HFU) include it, model FLOPs (MFU) never do.
- PEFT (LoRA/QLoRA): frozen weights need no weight-gradient GEMM, so training = fwd + dgrad = 2x forward on the
  GEMMs (NeMo's LoRA model TFLOP/s use the same 2/3 count).
- encoders (BERT) attend bidirectionally: no causal discount in any convention, flash kernels run the full s^2.
- encoder-decoder (T5; Raffel et al. 2020 Sec. 2.1, transformers modeling_t5.py T5Block): per sequence of s_e input
  and s_d target tokens, forward = s_e*L_e*(layer GEMMs + 2*s_e*(q+v) attention) [encoder]
  + s_d*L_d*(layer GEMMs + cross q/o GEMMs + self attention over s_d keys (causal) + cross attention over s_e keys)
  + s_e*L_d*(cross k/v GEMMs on the encoder output) + s_d*2*h*V [LM head on decoder tokens]. sizeup states every
  figure per INPUT token (T = global batch x s_e): the decoder terms carry r = s_d/s_e, and the layer terms are
  averaged over the L_e + L_d layers (GEMM `share`), so the same per-token kernels serve all three kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sizeup.core.explain import Term
from sizeup.core.params import count_params
from sizeup.core.types import ArchKind, HeadKind, ModelArch, Peft, Recompute, TrainSetup


@dataclass(frozen=True)
class Gemm:
    """One weight GEMM of a layer, per token: FLOPs = 2 * tokens * k * n * share.

    share: fraction of tokens that pass through it (K/E for one routed expert); count: how many such GEMMs.
    tp_split: True when tensor parallelism splits n (column) or k (row) over the TP group.
    """

    name: str
    k: int
    n: int
    count: int = 1
    share: float = 1.0
    tp_split: bool = True
    expert: bool = False

    @property
    def flops_per_token(self) -> float:
        return 2.0 * self.k * self.n * self.count * self.share


@dataclass(frozen=True)
class LayerShapes:
    """Per-layer GEMM list and attention dims, averaged over the layers (dense + MoE mix)."""

    gemms: tuple[Gemm, ...]
    attn_qk_dim: int
    """a * (per-head q/k dim): width of the Q.K^T contraction summed over heads."""
    attn_v_dim: int
    """a * (per-head v dim)."""
    num_heads: int
    window_fraction: float
    """Share of layers with a sliding window (their s_eff is min(s, window))."""
    window: int
    hidden: int
    ffn_act_width: float
    """Width of the MLP activation tensor per token (f, or K*fe for MoE), for elementwise traffic."""
    qkv_width: int
    logits_k: int
    logits_n: int
    causal: bool = True
    """False for bidirectional encoders: the attention core runs the full s^2 even with flash kernels."""
    stacks: tuple[float, float, float] | None = None
    """Encoder-decoder: (L_e/L, L_d/L, r = s_d/s_e) with L = L_e + L_d; None for a single stack."""


def _mlp_gemms(m: ModelArch, ffn: int, prefix: str, count: int = 1, share: float = 1.0,
               expert: bool = False) -> list[Gemm]:
    h = m.hidden_size
    up = 2 if m.mlp_kind.gated else 1  # gate + up fused as one [h, 2f] GEMM for gated MLPs
    return [Gemm(f"{prefix}/up", h, up * ffn, count, share, True, expert),
            Gemm(f"{prefix}/down", ffn, h, count, share, True, expert)]


def decoder_ratio(m: ModelArch, setup: TrainSetup | None) -> float:
    """r = decoder (target) tokens / encoder (input) tokens per sequence of an encoder-decoder; 1 otherwise."""
    if not m.is_encoder_decoder or setup is None:
        return 1.0
    return setup.dec_seq / setup.seq_len


def head_width(m: ModelArch, dec_ratio: float = 1.0) -> float:
    """Output-head columns per input token: V for an LM head (x r on an encoder-decoder, whose head reads the
    decoder tokens only); 0 for a bare encoder or a sequence classifier (one h x labels GEMM per sequence)."""
    if m.head != HeadKind.LM:
        return 0.0
    return m.vocab_size * (dec_ratio if m.is_encoder_decoder else 1.0)


def _enc_dec_shapes(m: ModelArch, r: float) -> LayerShapes:
    """The average layer of an encoder-decoder per input token: encoder layers (share L_e/L), decoder self-attention
    and MLP GEMMs on s_d = r*s_e tokens (share L_d/L * r), cross-attention q/o on decoder tokens and k/v on the
    encoder output (share L_d/L)."""
    h = m.hidden_size
    L = m.total_layers
    fe, fd = m.num_layers / L, m.num_decoder_layers / L
    gemms: list[Gemm] = []
    for prefix, share in (("enc", fe), ("dec", fd * r)):
        gemms += [Gemm(f"attn/{prefix}_qkv", h, m.q_dim + 2 * m.kv_dim, 1, share),
                  Gemm(f"attn/{prefix}_o", m.attn_out_dim, h, 1, share)]
    gemms += [Gemm("attn/cross_q", h, m.q_dim, 1, fd * r), Gemm("attn/cross_kv", h, 2 * m.kv_dim, 1, fd),
              Gemm("attn/cross_o", m.attn_out_dim, h, 1, fd * r)]
    for prefix, share in (("enc", fe), ("dec", fd * r)):
        gemms += [Gemm(g.name.replace("mlp/", f"mlp/{prefix}_"), g.k, g.n, g.count, share) for g in
                  _mlp_gemms(m, m.ffn_size, "mlp")]
    return LayerShapes(tuple(gemms), m.q_dim, m.attn_out_dim, m.num_heads, 0.0, 0, h,
                       (fe + fd * r) * m.ffn_size, m.q_dim + 2 * m.kv_dim, h, int(round(head_width(m, r))),
                       causal=False, stacks=(fe, fd, r))


def layer_shapes(m: ModelArch, dec_ratio: float = 1.0) -> LayerShapes:
    """GEMMs of the average layer (weights of attention + MLP/MoE); MoE layers weighted by their share.
    Encoder-decoder: per input token, averaged over encoder and decoder layers (dec_ratio = s_d/s_e)."""
    if m.is_encoder_decoder:
        return _enc_dec_shapes(m, dec_ratio)
    h = m.hidden_size
    gemms: list[Gemm] = []
    if m.is_mla:
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            gemms += [Gemm("attn/q_a", h, m.q_lora_rank, tp_split=False),
                      Gemm("attn/q_b", m.q_lora_rank, m.num_heads * qk_head)]
        else:
            gemms.append(Gemm("attn/q", h, m.num_heads * qk_head))
        gemms += [Gemm("attn/kv_a", h, m.kv_lora_rank + m.qk_rope_head_dim, tp_split=False),
                  Gemm("attn/kv_b", m.kv_lora_rank, m.num_heads * (m.qk_nope_head_dim + m.v_head_dim)),
                  Gemm("attn/o", m.num_heads * m.v_head_dim, h)]
        qk_dim, v_dim = m.num_heads * qk_head, m.num_heads * m.v_head_dim
    else:
        gemms += [Gemm("attn/qkv", h, m.q_dim + 2 * m.kv_dim), Gemm("attn/o", m.attn_out_dim, h)]
        qk_dim, v_dim = m.q_dim, m.attn_out_dim

    L = m.num_layers
    n_moe = m.num_moe_layers
    moe_frac = n_moe / L
    dense_frac = 1.0 - moe_frac
    act_width = 0.0
    if dense_frac > 0:
        for g in _mlp_gemms(m, m.ffn_size, "mlp"):
            gemms.append(Gemm(g.name, g.k, g.n, g.count, g.share * dense_frac, g.tp_split))
        act_width += dense_frac * m.ffn_size
    if n_moe:
        gemms.append(Gemm("moe/router", h, m.num_experts, 1, moe_frac, tp_split=False))
        share = m.experts_per_token / m.num_experts
        gemms += _mlp_gemms(m, m.expert_ffn_size, "moe/experts", m.num_experts, share * moe_frac, expert=True)
        act_width += moe_frac * m.experts_per_token * m.expert_ffn_size
        if m.num_shared_experts:
            shared_ffn = m.shared_expert_ffn_size or m.expert_ffn_size * m.num_shared_experts
            gemms += _mlp_gemms(m, shared_ffn, "moe/shared", 1, moe_frac)
            act_width += moe_frac * shared_ffn
    window_frac = 0.0
    if m.sliding_window:
        window_frac = (m.sliding_window_layers or L) / L
    return LayerShapes(tuple(gemms), qk_dim, v_dim, m.num_heads, window_frac, m.sliding_window, h, act_width,
                       qk_dim + 2 * m.kv_dim, h, int(head_width(m)), causal=m.causal)


def op_sac_mm_order(m: ModelArch, moe_layer: bool = False) -> list[tuple[str, int, int]]:
    """The aten.mm calls of one transformer block in forward order, as (name, in, out): torchtitan's Llama/DeepSeek
    blocks run wq, wk, wv (MLA: wq or wq_a/wq_b, wkv_a, wkv_b), wo, then w1 (gate), w3 (up), w2 (down); a MoE
    block runs the router gate mm and the shared experts' w1, w3, w2 (routed experts use grouped_mm, not aten.mm)."""
    h = m.hidden_size
    out: list[tuple[str, int, int]] = []
    if m.is_mla:
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            out += [("wq_a", h, m.q_lora_rank), ("wq_b", m.q_lora_rank, m.num_heads * qk_head)]
        else:
            out.append(("wq", h, m.num_heads * qk_head))
        out += [("wkv_a", h, m.kv_lora_rank + m.qk_rope_head_dim),
                ("wkv_b", m.kv_lora_rank, m.num_heads * (m.qk_nope_head_dim + m.v_head_dim))]
    else:
        out += [("wq", h, m.q_dim), ("wk", h, m.kv_dim), ("wv", h, m.kv_dim)]
    out.append(("wo", m.attn_out_dim, h))
    if moe_layer:
        out.append(("router", h, m.num_experts))
        if m.num_shared_experts:
            fs = m.shared_expert_ffn_size or m.expert_ffn_size * m.num_shared_experts
            out += ([("shared_w1", h, fs), ("shared_w3", h, fs)] if m.mlp_kind.gated else [("shared_w1", h, fs)]) \
                + [("shared_w2", fs, h)]
    else:
        f = m.ffn_size
        out += ([("w1", h, f), ("w3", h, f)] if m.mlp_kind.gated else [("w1", h, f)]) + [("w2", f, h)]
    return out


def op_sac_saved_mms(m: ModelArch, moe_layer: bool = False) -> list[tuple[str, int, int, bool]]:
    """(name, in, out, saved) for each mm of a block under torchtitan op-level SAC: the policy counts aten.mm calls
    in forward and saves the output of every one except every second (count % 2 == 0 recomputed), i.e. the 1st,
    3rd, 5th ... mm are saved (pytorch/torchtitan torchtitan/distributed/activation_checkpoint.py _apply_op_sac)."""
    return [(n, k, o, i % 2 == 0) for i, (n, k, o) in enumerate(op_sac_mm_order(m, moe_layer))]


def recompute_gemm_share(m: ModelArch, recompute: Recompute, fraction: float = 1.0) -> float:
    """Share of one layer's forward weight-GEMM FLOPs run again in backward under a recompute policy (averaged
    over dense and MoE layers; routed experts count as recomputed under op-SAC: grouped_mm is not in its save list).
    full 1; layer-fraction f; attention-only: the attention projections' share; op-SAC: the mms it does not save;
    none / Megatron selective 0 (selective recomputes only the attention core, which has no weight GEMM)."""
    if recompute == Recompute.FULL:
        return 1.0
    if recompute == Recompute.LAYER_FRACTION:
        return min(max(fraction, 0.0), 1.0)
    if recompute not in (Recompute.OP_SAC, Recompute.ATTENTION_ONLY):
        return 0.0
    shapes = layer_shapes(m)
    total = sum(g.flops_per_token for g in shapes.gemms)
    if total <= 0:
        return 0.0
    attn = sum(g.flops_per_token for g in shapes.gemms if g.name.startswith("attn/"))
    if recompute == Recompute.ATTENTION_ONLY:
        return attn / total
    L = m.num_layers
    n_moe = m.num_moe_layers
    rc = 0.0
    for moe_l, weight in ((False, (L - n_moe) / L), (True, n_moe / L)):
        if weight <= 0:
            continue
        rc += weight * sum(2.0 * k * n for _name, k, n, saved in op_sac_saved_mms(m, moe_l) if not saved)
    routed = sum(g.flops_per_token for g in shapes.gemms if g.expert)
    return min(1.0, (rc + routed) / total)


def attention_keys_per_query(s, window: int = 0, causal: bool = True):
    """Average number of keys each query attends to (array-friendly in s).

    causal full attention: (s+1)/2 ~ s/2 (Megatron `num_floating_point_operations`: the causal 1/2);
    non-causal: s; sliding window w (causal): min(s, w) approximately (exact: w - w(w-1)/(2s) for w < s).
    """
    import numpy as np

    full = s / 2.0 if causal else s * 1.0
    if window:
        return np.minimum(full, window) if not isinstance(s, (int, float)) else min(full, window)
    return full


def attention_flops_per_token(shapes: LayerShapes, s, causal: bool):
    """Forward attention-core FLOPs per token per layer: 2*keys*qk_dim (Q.K^T) + 2*keys*v_dim (P.V).
    Encoders never take the causal discount; an encoder-decoder's average layer per input token (s = s_e):
    L_e/L * s_e keys + L_d/L * r * (self keys over s_d = r*s_e, causal discount if asked + cross keys s_e)."""
    if shapes.stacks is not None:
        fe, fd, r = shapes.stacks
        keys = fe * attention_keys_per_query(s, 0, False) + fd * r * (
            attention_keys_per_query(s * r, 0, causal) + attention_keys_per_query(s, 0, False))
        return 2.0 * keys * (shapes.attn_qk_dim + shapes.attn_v_dim)
    causal = causal and shapes.causal
    full = attention_keys_per_query(s, 0, causal)
    if shapes.window_fraction:
        win = attention_keys_per_query(s, shapes.window, causal)
        keys = shapes.window_fraction * win + (1 - shapes.window_fraction) * full
    else:
        keys = full
    return 2.0 * keys * (shapes.attn_qk_dim + shapes.attn_v_dim)


@dataclass(frozen=True)
class FlopsEstimate:
    """FLOPs of one optimizer step (global, all GPUs). Per-token figures are forward-only unless named."""

    tokens_per_step: float
    forward_per_token: Mapping[str, float]
    """Forward FLOPs per token by component: layers/gemm, layers/attention (full s^2), logits."""
    model_flops: float
    """3 x forward, attention counted over the full s^2 (PaLM / Narayanan convention): MFU numerator."""
    model_flops_causal: float
    """Same with the causal 1/2 on attention (Megatron-LM `num_floating_point_operations`)."""
    hardware_flops: float
    """model_flops + recomputation (HFU numerator; same attention convention as model_flops)."""
    executed_flops: float
    """What the kernels run: causal 1/2 with flash attention, full s^2 with eager; + recompute; FA backward 2.5x."""
    recompute_flops: float
    six_nd: float
    """6 * N * T (Kaplan 2020 / Transformer Math 101), N = active parameters incl. embeddings."""
    six_nd_non_embedding: float
    narayanan: float
    """72*b*s*L*h^2*(1 + s/(6h) + V/(12hL)) per step (Narayanan 2021 eq. 3; GPT, 4h MLP, no GQA, full recompute excluded)."""
    per_component: Mapping[str, float]
    """Step FLOPs (model convention) by component: layers/gemm, layers/attention, logits."""
    terms: tuple[Term, ...] = field(default=())

    @property
    def model_flops_per_token(self) -> float:
        return self.model_flops / self.tokens_per_step


def flops_per_token_forward(m: ModelArch, s, causal: bool = False, shapes: LayerShapes | None = None):
    """Forward FLOPs per (input) token (dict: layers/gemm, layers/attention, logits); s may be an array.
    Encoder-decoder: `shapes` carries s_d/s_e (layer_shapes(m, r)); the layers are the L_e + L_d of both stacks."""
    shapes = shapes or layer_shapes(m)
    L = m.total_layers
    gemm = L * sum(g.flops_per_token for g in shapes.gemms)
    attn = L * attention_flops_per_token(shapes, s, causal)
    logits = 2.0 * m.hidden_size * shapes.logits_n
    return {"layers/gemm": gemm, "layers/attention": attn, "logits": logits}


def lora_linears(m: ModelArch) -> dict[str, tuple[int, int, bool]]:
    """The Linears LoRA can adapt in one layer: target -> (in features, out features, column-parallel under TP)
    (dense shapes; MLA q/kv projections as q/k/v)."""
    h = m.hidden_size
    return {"q": (h, m.q_dim, True), "k": (h, m.kv_dim, True), "v": (h, m.kv_dim, True),
            "o": (m.attn_out_dim, h, False), "gate": (h, m.ffn_size, True), "up": (h, m.ffn_size, True),
            "down": (m.ffn_size, h, False)}


def lora_adapter_shapes(m: ModelArch, targets) -> list[tuple[int, int]]:
    """(in, out) features of each LoRA-adapted Linear of one layer."""
    table = lora_linears(m)
    return [table[t][:2] for t in targets if t in table]


def lora_adapter_size(m: ModelArch, targets, rank: float, dec_ratio: float = 1.0) -> float:
    """sum over the adapted Linears of the average layer of r*(in + out), each weighted by the attention blocks or MLPs
    per layer that carry it (adapted_attention_per_layer): x L gives the adapter parameters (dec_ratio 1) or, x 2,
    the forward FLOPs per input token."""
    attn_w, mlp_w = adapted_attention_per_layer(m, dec_ratio)
    table = lora_linears(m)
    return float(sum(rank * (table[t][0] + table[t][1]) * (attn_w if t in ("q", "k", "v", "o") else mlp_w)
                     for t in targets if t in table))


def adapted_attention_per_layer(m: ModelArch, dec_ratio: float = 1.0) -> tuple[float, float]:
    """(attention blocks, MLPs) per average layer and input token that carry LoRA adapters: 1 and 1 for one stack;
    an encoder-decoder's decoder layers hold a self- and a cross-attention block (PEFT adapts every module whose
    name matches, e.g. T5 `q`/`v` in SelfAttention and EncDecAttention: peft/utils/constants.py), decoder tokens
    weigh r = s_d/s_e (cross k/v run on the encoder output: counted at r as well, a small over-count)."""
    if not m.is_encoder_decoder:
        return 1.0, 1.0
    L = m.total_layers
    fe, fd = m.num_layers / L, m.num_decoder_layers / L
    return fe + 2 * fd * dec_ratio, fe + fd * dec_ratio


def lora_adapter_flops_per_token(m: ModelArch, setup: TrainSetup) -> float:
    """Forward FLOPs per token of all LoRA adapters: L * sum 2*r*(k+n); 0 without PEFT."""
    if setup.peft == Peft.NONE:
        return 0.0
    return 2.0 * m.total_layers * lora_adapter_size(m, setup.lora_targets, setup.lora_rank, decoder_ratio(m, setup))


def stack_flops_per_sequence(m: ModelArch, s_e: int, s_d: int | None = None) -> dict[str, float]:
    """Forward FLOPs of one sequence by stack (full-s^2 attention convention), written out directly from the
    module structure (transformers modeling_bert.py BertLayer; modeling_t5.py T5Block): the `--explain` split of an
    encoder or encoder-decoder. layer GEMMs per token G = 2*h*(q + 2kv) + 2*o*h + 2*h*u*f + 2*f*h (u = 2 gated);
    encoder s_e*L_e*(G + 2*s_e*(q + o)); decoder self s_d*L_d*(G + 2*s_d*(q + o)); cross attention
    L_d*(s_d*(2*h*q + 2*o*h) + s_e*2*h*2kv + 2*s_d*s_e*(q + o)); LM head 2*h*V*s_d."""
    h, q, kv, o, f = m.hidden_size, m.q_dim, m.kv_dim, m.attn_out_dim, m.ffn_size
    u = 2 if m.mlp_kind.gated else 1
    G = 2.0 * h * (q + 2 * kv) + 2.0 * o * h + 2.0 * h * u * f + 2.0 * f * h
    out = {"encoder": float(s_e * m.num_layers * (G + 2.0 * s_e * (q + o)))}
    if m.is_encoder_decoder:
        s_d = s_d or s_e
        Ld = m.num_decoder_layers
        out["decoder_self"] = float(s_d * Ld * (G + 2.0 * s_d * (q + o)))
        out["cross_attention"] = float(Ld * (s_d * (2.0 * h * q + 2.0 * o * h) + s_e * 2.0 * h * 2 * kv
                                             + 2.0 * s_d * s_e * (q + o)))
        out["head"] = float(2.0 * h * head_width(m, 1.0) * s_d)
    else:
        out["head"] = float(2.0 * h * head_width(m) * s_e)
    return out


def flops_per_step(m: ModelArch, setup: TrainSetup) -> FlopsEstimate:
    """Model, hardware and executed FLOPs of one optimizer step, with 6ND and Narayanan's eq. 3 alongside.

    Attention is counted over the span a query can see: the sequence, or with document-masked packing the packed
    document (`setup.attention_span`: each document of n tokens is its own n x n attention problem)."""
    s = setup.seq_len
    s_attn = setup.attention_span
    T = float(setup.tokens_per_step)
    shapes = layer_shapes(m, decoder_ratio(m, setup))
    fwd = flops_per_token_forward(m, s_attn, causal=False, shapes=shapes)
    fwd_causal = flops_per_token_forward(m, s_attn, causal=True, shapes=shapes)
    fwd_total = sum(fwd.values())
    fwd_causal_total = sum(fwd_causal.values())
    # training = forward + backward (2x forward): Narayanan 2021 §5.1, PaLM appendix B
    model = 3.0 * fwd_total * T
    model_causal = 3.0 * fwd_causal_total * T
    # recompute: selective = attention core forward again (Korthikanti 2022 §4); full = layer forward again
    if setup.recompute == Recompute.FULL:
        rc_model = (fwd["layers/gemm"] + fwd["layers/attention"]) * T
        rc_exec_attn = fwd_causal["layers/attention"] if setup.attention.fused else fwd["layers/attention"]
        rc_exec = (fwd["layers/gemm"] + rc_exec_attn) * T
    elif setup.recompute == Recompute.SELECTIVE:
        rc_model = fwd["layers/attention"] * T
        rc_exec = (fwd_causal if setup.attention.fused else fwd)["layers/attention"] * T
    elif setup.recompute in (Recompute.OP_SAC, Recompute.ATTENTION_ONLY, Recompute.LAYER_FRACTION):
        # op-SAC: the unsaved mms again, SDPA saved; attention-only: attention projections + core;
        # layer-fraction: a share f of the layers in full
        share = recompute_gemm_share(m, setup.recompute, setup.recompute_fraction)
        attn_share = {Recompute.OP_SAC: 0.0, Recompute.ATTENTION_ONLY: 1.0}.get(
            setup.recompute, min(max(setup.recompute_fraction, 0.0), 1.0))
        attn_ex = (fwd_causal if setup.attention.fused else fwd)["layers/attention"]
        rc_model = (share * fwd["layers/gemm"] + attn_share * fwd["layers/attention"]) * T
        rc_exec = (share * fwd["layers/gemm"] + attn_share * attn_ex) * T
    else:
        rc_model = rc_exec = 0.0
    if setup.peft != Peft.NONE:
        # frozen base weights get no weight-gradient GEMM: backward = dgrad only (LoRA adapters are negligible)
        frozen = (fwd["layers/gemm"] + fwd["logits"]) * T
        model -= frozen
        model_causal -= frozen
    hardware = model + rc_model
    # flash attention: backward runs 5 matmuls vs 2 forward (recomputes S): 2.5x forward (Dao 2023, FA2 §3.1)
    attn_exec = fwd_causal["layers/attention"] if setup.attention.fused else fwd["layers/attention"]
    attn_bwd = 2.5 if setup.attention.fused else 2.0
    gemm_passes = 2.0 if setup.peft != Peft.NONE else 3.0
    executed = (gemm_passes * (fwd["layers/gemm"] + fwd["logits"]) + (1.0 + attn_bwd) * attn_exec) * T + rc_exec
    # LoRA adapters: forward x@A (2*k*r) and @B (2*r*n) per token, backward 2x (dA, dB, d(xA), dx): 3x forward,
    # + one more forward when the layer is recomputed (Hu et al. 2021 eq. 3)
    adapter_fwd = lora_adapter_flops_per_token(m, setup)
    adapter = adapter_fwd * T * (3.0 + {Recompute.FULL: 1.0, Recompute.OP_SAC: 1.0, Recompute.LAYER_FRACTION:
                                        min(max(setup.recompute_fraction, 0.0), 1.0)}.get(setup.recompute, 0.0))
    executed += adapter

    pc = count_params(m)
    n_active = float(pc.active)
    n_embed = float(pc.embedding)
    six_nd = 6.0 * n_active * T
    six_nd_ne = 6.0 * (n_active - n_embed) * T
    h, L, V = m.hidden_size, m.total_layers, m.vocab_size
    # Narayanan et al. 2021 eq. 3 (per iteration, B = global batch sequences)
    narayanan = 72.0 * setup.global_batch * s * L * h * h * (1 + s / (6 * h) + V / (12 * h * L))
    per_component = {k: 3.0 * v * T for k, v in fwd.items()}

    inputs = {"T": T, "s": s, "L": L, "h": h, "V": V, "N_active": n_active, "b_global": setup.global_batch}
    if s_attn != s:
        inputs["s_attn_packed_document"] = s_attn
    terms = (
        Term("flops/forward_per_token", fwd_total, "FLOP",
             "L*(sum 2*k*n over layer GEMMs + 2*s_attn*(q_dim+v_dim)) + 2*h*V",
             {**inputs, "gemm": fwd["layers/gemm"], "attention_full": fwd["layers/attention"], "logits": fwd["logits"]},
             "matmul = 2*M*K*N; attention over the full s_attn^2 (PaLM appendix B); s_attn = s, or the packed "
             "document's length with document-masked attention (each document its own attention problem)"),
        Term("flops/model_per_step", model, "FLOP", "3 * forward_per_token * T  (backward = 2x forward)", inputs,
             "Narayanan et al. 2021 §5.1; PaLM (Chowdhery 2022) appendix B MFU definition"),
        Term("flops/model_causal_per_step", model_causal, "FLOP",
             "3 * (gemm + attention/2 + logits) * T", inputs,
             "Megatron-LM training.py num_floating_point_operations (causal 1/2 on core attention)"),
        Term("flops/recompute_per_step", rc_model, "FLOP",
             {"full": "(gemm + attention) forward * T", "selective": "attention forward * T",
              "none": "0", "op-sac": "share_unsaved_mm * gemm forward * T (SDPA saved)",
              "attention-only": "(attention projections + attention) forward * T",
              "layer-fraction": "f * (gemm + attention) forward * T"}[setup.recompute.value],
             {"recompute": setup.recompute.value,
              "gemm_share_recomputed": recompute_gemm_share(m, setup.recompute, setup.recompute_fraction),
              "recompute_fraction": setup.recompute_fraction},
             "Korthikanti et al. 2022 §4-5; op-sac: pytorch/torchtitan distributed/activation_checkpoint.py "
             "(saves every other aten.mm and SDPA)"),
        Term("flops/hardware_per_step", hardware, "FLOP", "model + recompute", {}, "HFU numerator (PaLM appendix B)"),
        Term("flops/executed_per_step", executed, "FLOP",
             "3*(gemm+logits)*T + (1+bwd_factor)*attention_executed*T + recompute_executed",
             {"attention": setup.attention.value, "bwd_factor": attn_bwd},
             "flash: causal half computed, backward 5 vs 2 matmuls (Dao 2023 FlashAttention-2 §3.1)"),
        Term("flops/lora_adapters_per_step", adapter, "FLOP",
             "L * sum_targets 2*r*(k+n) * T * (3 [+1 full recompute])  (executed only; MFU counts the frozen base)",
             {"r": setup.lora_rank, "targets": ",".join(setup.lora_targets), "peft": setup.peft.value},
             "Hu et al. 2021 LoRA eq. 3 (h = W0 x + B A x)"),
        Term("flops/6ND", six_nd, "FLOP", "6 * N_active * T", {"N_active": n_active, "T": T},
             "Kaplan et al. 2020 §2.1; Transformer Math 101"),
        Term("flops/narayanan_eq3", narayanan, "FLOP", "72*B*s*L*h^2*(1 + s/(6h) + V/(12hL))",
             {"B": setup.global_batch, "s": s, "L": L, "h": h, "V": V},
             "Narayanan et al. 2021 eq. 3 (assumes 4h MLP, MHA, no recompute)"),
    )
    if setup.peft == Peft.NONE:
        terms = tuple(t for t in terms if t.name != "flops/lora_adapters_per_step")
    if m.arch_kind != ArchKind.DECODER:
        split = stack_flops_per_sequence(m, s, setup.dec_seq)
        if m.is_encoder_decoder:
            formula = ("encoder s_e*L_e*(G + 2*s_e*(q+o)) + decoder self s_d*L_d*(G + 2*s_d*(q+o)) + cross attention "
                       "L_d*(s_d*4*h*q + s_e*4*h*kv + 2*s_d*s_e*(q+o)) + head 2*h*V*s_d  [per sequence, forward]")
            src = ("Raffel et al. 2020 Sec. 2.1 (encoder, decoder with cross-attention); transformers "
                   "modeling_t5.py T5Block; per input token = per sequence / s_e")
        else:
            formula = "encoder s*L*(G + 2*s*(q+o)) (bidirectional: no causal discount) + head  [per sequence, forward]"
            src = "Devlin et al. 2019 (bidirectional encoder); transformers modeling_bert.py BertLayer"
        terms = terms + (Term("flops/stacks_forward_per_sequence", sum(split.values()), "FLOP", formula,
                              {**{k: v for k, v in split.items()}, "s_e": s, "s_d": setup.dec_seq if
                               m.is_encoder_decoder else 0, "L_e": m.num_layers, "L_d": m.num_decoder_layers,
                               "per_input_token": sum(split.values()) / s}, src),)
    return FlopsEstimate(T, fwd, model, model_causal, hardware, executed, rc_model, six_nd, six_nd_ne, narayanan,
                         per_component, terms)
