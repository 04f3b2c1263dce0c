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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sizeup.core.explain import Term
from sizeup.core.params import count_params
from sizeup.core.types import ModelArch, Peft, Recompute, TrainSetup


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


def _mlp_gemms(m: ModelArch, ffn: int, prefix: str, count: int = 1, share: float = 1.0,
               expert: bool = False) -> list[Gemm]:
    h = m.hidden_size
    up = 2 if m.mlp_kind.gated else 1  # gate + up fused as one [h, 2f] GEMM for gated MLPs
    return [Gemm(f"{prefix}/up", h, up * ffn, count, share, True, expert),
            Gemm(f"{prefix}/down", ffn, h, count, share, True, expert)]


def layer_shapes(m: ModelArch) -> LayerShapes:
    """GEMMs of the average layer (weights of attention + MLP/MoE); MoE layers weighted by their share."""
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
                       qk_dim + 2 * m.kv_dim, h, m.vocab_size)


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
    """Forward attention-core FLOPs per token per layer: 2*keys*qk_dim (Q.K^T) + 2*keys*v_dim (P.V)."""
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
    """Forward FLOPs per token (dict: layers/gemm, layers/attention, logits); s may be an array."""
    shapes = shapes or layer_shapes(m)
    gemm = m.num_layers * sum(g.flops_per_token for g in shapes.gemms)
    attn = m.num_layers * attention_flops_per_token(shapes, s, causal)
    logits = 2.0 * m.hidden_size * m.vocab_size
    return {"layers/gemm": gemm, "layers/attention": attn, "logits": logits}


def lora_adapter_shapes(m: ModelArch, targets) -> list[tuple[int, int]]:
    """(in, out) features of each LoRA-adapted Linear of one layer (dense shapes; MLA q/kv projections as q/k/v)."""
    h = m.hidden_size
    widths = {"q": (h, m.q_dim), "k": (h, m.kv_dim), "v": (h, m.kv_dim), "o": (m.attn_out_dim, h),
              "gate": (h, m.ffn_size), "up": (h, m.ffn_size), "down": (m.ffn_size, h)}
    return [widths[t] for t in targets if t in widths]


def lora_adapter_flops_per_token(m: ModelArch, setup: TrainSetup) -> float:
    """Forward FLOPs per token of all LoRA adapters: L * sum 2*r*(k+n); 0 without PEFT."""
    if setup.peft == Peft.NONE:
        return 0.0
    return float(m.num_layers * sum(2.0 * setup.lora_rank * (k + n)
                                    for k, n in lora_adapter_shapes(m, setup.lora_targets)))


def flops_per_step(m: ModelArch, setup: TrainSetup) -> FlopsEstimate:
    """Model, hardware and executed FLOPs of one optimizer step, with 6ND and Narayanan's eq. 3 alongside.

    Attention is counted over the span a query can see: the sequence, or with document-masked packing the packed
    document (`setup.attention_span`: each document of n tokens is its own n x n attention problem)."""
    s = setup.seq_len
    s_attn = setup.attention_span
    T = float(setup.tokens_per_step)
    shapes = layer_shapes(m)
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
    h, L, V = m.hidden_size, m.num_layers, m.vocab_size
    # Narayanan et al. 2021 eq. 3 (per iteration, B = global batch sequences)
    narayanan = 72.0 * setup.global_batch * s * L * h * h * (1 + s / (6 * h) + V / (12 * h * L))
    per_component = {k: 3.0 * v * T for k, v in fwd.items()}

    inputs = {"T": T, "s": s, "L": L, "h": h, "V": V, "N_active": n_active, "b_global": setup.global_batch}
    if s_attn != s:
        inputs["s_attn (packed document)"] = s_attn
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
    return FlopsEstimate(T, fwd, model, model_causal, hardware, executed, rc_model, six_nd, six_nd_ne, narayanan,
                         per_component, terms)
