"""FLOPs from the architecture, checked by hand on tiny configs and against published formulas."""

import pytest

from sizeup.core.flops import flops_per_step, flops_per_token_forward, layer_shapes
from sizeup.core.params import count_params
from sizeup.core.types import MlpKind, ModelArch, NormKind, Peft, PositionKind, Recompute, TrainSetup

# GPT with a 4h GELU MLP, MHA, no biases, untied head: exactly the model of Narayanan et al. 2021 eq. 3
GPT = ModelArch(id="gpt-tiny", name="gpt-tiny", vocab_size=1000, hidden_size=64, num_layers=4, num_heads=4,
                num_kv_heads=4, head_dim=16, ffn_size=256, mlp_kind=MlpKind.GELU, norm_kind=NormKind.LAYERNORM,
                position=PositionKind.ROTARY)
LLAMA7B = ModelArch(id="llama-2-7b", name="Llama 2 7B", vocab_size=32000, hidden_size=4096, num_layers=32,
                    num_heads=32, num_kv_heads=32, head_dim=128, ffn_size=11008, max_seq_len=4096)


def test_narayanan_eq3_exact():
    # Narayanan et al. 2021 eq. 3 without recompute: 72*B*s*L*h^2*(1 + s/(6h) + V/(12hL)) per iteration
    setup = TrainSetup(gpus=1, micro_batch=3, grad_accum=2, seq_len=128)
    B, s, L, h, V = 6, 128, 4, 64, 1000
    expected = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * h * L))
    fl = flops_per_step(GPT, setup)
    assert fl.model_flops == pytest.approx(expected, rel=1e-12)
    assert fl.narayanan == pytest.approx(expected, rel=1e-12)


def test_forward_per_token_by_hand():
    # per layer: qkv 2*h*3h + o 2*h*h + mlp 2*2*h*f; attention 2*s*(h+h) (full s^2); logits 2*h*V
    h, f, s, L, V = 64, 256, 128, 4, 1000
    fwd = flops_per_token_forward(GPT, s)
    assert fwd["layers/gemm"] == L * (2 * h * 3 * h + 2 * h * h + 2 * 2 * h * f)
    assert fwd["layers/attention"] == L * 2 * s * (h + h)
    assert fwd["logits"] == 2 * h * V
    causal = flops_per_token_forward(GPT, s, causal=True)
    # Megatron num_floating_point_operations: causal mask halves the core-attention FLOPs
    assert causal["layers/attention"] == fwd["layers/attention"] / 2


def test_llama7b_matches_flopcountermode():
    # trace_feasibility.md §2, Llama-7B, s=2048, batch 1: 6NT = 82.80 T; FlopCounterMode = 88.88 T, which is
    # 6*N_mm*T + 14*L*h*s*T (flash backward counted as 2.5x forward, full s^2); 6*N_mm*T + 12LhsT = 87.78 T
    setup = TrainSetup(gpus=1, micro_batch=1, grad_accum=1, seq_len=2048)
    fl = flops_per_step(LLAMA7B, setup)
    T, L, h = 2048, 32, 4096
    assert fl.six_nd == pytest.approx(82.80e12, rel=1e-3)
    assert fl.model_flops == pytest.approx(87.78e12, rel=1e-3)
    fwd = fl.forward_per_token
    n_mm = (fwd["layers/gemm"] + fwd["logits"]) / 2
    assert n_mm == 6_607_077_376  # N_mm of the trace (matmul weights incl. lm_head)
    assert 6 * n_mm * T + 14 * L * h * T * T == pytest.approx(88.88e12, rel=1e-3)


def test_recompute_adds_forward_only_to_hardware_flops():
    base = TrainSetup(gpus=1, micro_batch=1, seq_len=256)
    none = flops_per_step(GPT, base)
    sel = flops_per_step(GPT, base.with_(recompute=Recompute.SELECTIVE))
    full = flops_per_step(GPT, base.with_(recompute=Recompute.FULL))
    T = 256
    fwd = none.forward_per_token
    assert sel.model_flops == none.model_flops == full.model_flops  # MFU never counts recompute (PaLM app. B)
    assert sel.hardware_flops == pytest.approx(none.model_flops + fwd["layers/attention"] * T)
    # full: one more forward of every layer, not of the logits (Korthikanti 2022 §5)
    assert full.hardware_flops == pytest.approx(none.model_flops + (fwd["layers/gemm"] + fwd["layers/attention"]) * T)
    assert none.hardware_flops <= sel.hardware_flops <= full.hardware_flops


def test_moe_counts_active_experts_only():
    moe = ModelArch(id="moe", name="moe", vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=4,
                    head_dim=8, ffn_size=64, num_experts=8, experts_per_token=2, expert_ffn_size=48)
    fwd = flops_per_token_forward(moe, 16)
    pc = count_params(moe)
    norms = pc.breakdown["layers/norms"] + pc.breakdown.get("final_norm", 0)
    # forward GEMM FLOPs = 2 x active matmul params (router included), minus embedding lookup (no FLOPs)
    active_mm = pc.active - norms - pc.breakdown["embedding/token"]
    assert fwd["layers/gemm"] + fwd["logits"] == pytest.approx(2 * active_mm)
    shapes = layer_shapes(moe)
    assert any(g.expert for g in shapes.gemms)


def test_lora_skips_weight_gradients():
    base = TrainSetup(gpus=1, micro_batch=1, seq_len=128)
    full = flops_per_step(GPT, base)
    lora = flops_per_step(GPT, base.with_(peft=Peft.LORA))
    fwd = full.forward_per_token
    assert full.model_flops - lora.model_flops == pytest.approx((fwd["layers/gemm"] + fwd["logits"]) * 128)


def test_six_nd_is_reported_next_to_model_flops():
    fl = flops_per_step(LLAMA7B, TrainSetup(gpus=8, micro_batch=2, grad_accum=4, seq_len=4096))
    assert fl.six_nd < fl.model_flops  # 6ND ignores attention (12*L*h*s per token) at s=4096
    names = {t.name for t in fl.terms}
    assert {"flops/6ND", "flops/model_per_step", "flops/narayanan_eq3"} <= names
