"""Exact mode (sizeup.trace): traced params, FLOPs and memory of tiny Hugging Face models on fake tensors.

Needs the `sizeup[trace]` extra (torch + transformers); skipped otherwise. Each trace takes < 1 s.
"""

from __future__ import annotations

import json

import pytest

from sizeup.core.params import count_params
from sizeup.core.types import MlpKind, ModelArch, NormKind, PositionKind

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sizeup.trace import trace_training  # noqa: E402

pytestmark = pytest.mark.trace

LLAMA = ModelArch(id="tiny-llama", name="tiny llama", vocab_size=1000, hidden_size=128, num_layers=5, num_heads=4,
                  num_kv_heads=2, head_dim=32, ffn_size=344, max_seq_len=512)
GPT2 = ModelArch(id="tiny-gpt2", name="tiny gpt2", vocab_size=1000, hidden_size=128, num_layers=5, num_heads=4,
                 num_kv_heads=4, head_dim=32, ffn_size=512, mlp_kind=MlpKind.GELU, norm_kind=NormKind.LAYERNORM,
                 norm_bias=True, qkv_bias=True, out_bias=True, mlp_bias=True, position=PositionKind.LEARNED,
                 num_position_embeddings=256, max_seq_len=256, tie_embeddings=True)
MIXTRAL = ModelArch(id="tiny-mixtral", name="tiny mixtral", vocab_size=1000, hidden_size=128, num_layers=4,
                    num_heads=4, num_kv_heads=2, head_dim=32, ffn_size=0, num_experts=4, experts_per_token=2,
                    expert_ffn_size=256)
QWEN2_MOE = ModelArch(id="tiny-qwen2-moe", name="tiny qwen2 moe", vocab_size=1000, hidden_size=128, num_layers=4,
                      num_heads=4, num_kv_heads=2, head_dim=32, ffn_size=256, num_experts=8, experts_per_token=2,
                      expert_ffn_size=64, num_shared_experts=1, shared_expert_ffn_size=256, shared_expert_gate=True,
                      qkv_bias=True)


def matmul_params(m: ModelArch) -> int:
    """N_mm: weights that take part in a GEMM per token (attention, MLP or top-k experts + router, lm_head)."""
    h = m.hidden_size
    attn = h * m.q_dim + 2 * h * m.kv_dim + m.attn_out_dim * h
    if m.is_moe:
        mlp = m.experts_per_token * 3 * h * m.expert_ffn_size + h * m.num_experts
        if m.num_shared_experts:
            mlp += 3 * h * m.shared_expert_ffn_size + h  # shared expert + its sigmoid gate (h -> 1)
    else:
        mlp = (3 if m.mlp_kind.gated else 2) * h * m.ffn_size
    return m.num_layers * (attn + mlp) + m.vocab_size * h


@pytest.mark.parametrize("arch", [LLAMA, GPT2, MIXTRAL, QWEN2_MOE], ids=lambda a: a.id)
def test_params_and_flops_match_formulas(arch):
    b, s = 2, 64
    res = trace_training(arch, micro_batch=b, seq_len=s, precision="bf16", extrapolate=False)
    # params: the module transformers builds has exactly count_params (tied head counted once)
    assert res.params == count_params(arch).total
    # FLOPs: FlopCounterMode counts GEMMs and SDPA only, so forward + backward is exactly
    # 6 * N_mm * T + 14 * L * h_q * s * T (trace_feasibility.md section 2: flash SDPA forward 4*b*s^2*h_q,
    # its backward 2.5x that; T = b * s tokens; h_q = heads * head_dim)
    tokens = b * s
    h_q = arch.num_heads * arch.head_dim
    attention = 14 * arch.num_layers * h_q * s * tokens
    assert res.attention_flops_per_step == attention
    assert res.flops_per_step == 6 * matmul_params(arch) * tokens + attention
    assert res.flops_causal_per_step == res.flops_per_step - attention // 2


def test_memory_bookkeeping_adamw_mixed():
    res = trace_training(LLAMA, micro_batch=2, seq_len=64, precision="bf16-mixed", extrapolate=False)
    # bf16-mixed: fp32 weights (4 B/param), fp32 grads, two fp32 AdamW moments (8 B/param); every tensor
    # is rounded up to 512 B, so bytes >= 4 B/param and the overhead is < 512 B per tensor
    n_tensors = 3 + 9 * LLAMA.num_layers  # embedding, final norm, lm_head + q, k, v, o, gate, up, down, 2 norms
    assert 4 * res.params <= res.weights_bytes < 4 * res.params + 512 * n_tensors
    assert res.grads_bytes == res.weights_bytes
    assert 2 * res.weights_bytes <= res.optimizer_state_bytes <= 2 * res.weights_bytes + 512 * n_tensors
    # steady state starts each step with weights + optimizer states (grads set to None)
    assert res.step_start_bytes >= res.weights_bytes + res.optimizer_state_bytes
    assert res.peak_bytes == max(res.phase_peak_bytes.values())
    assert res.peak_bytes >= res.step_start_bytes + res.activation_bytes


def test_full_recompute_keeps_one_layer_input():
    # Korthikanti et al. 2022, section 4.1: full recompute stores only each layer's input, 2*s*b*h bytes in bf16.
    # Per-layer growth of the activations = one bf16 [b, s, h] tensor (rounded to 512 B).
    b, s, h = 2, 64, LLAMA.hidden_size
    a = trace_training(LLAMA.with_(num_layers=3), micro_batch=b, seq_len=s, precision="bf16",
                       gradient_checkpointing=True, extrapolate=False)
    c = trace_training(LLAMA.with_(num_layers=4), micro_batch=b, seq_len=s, precision="bf16",
                       gradient_checkpointing=True, extrapolate=False)
    assert c.activation_bytes - a.activation_bytes == 2 * b * s * h
    # recompute adds one more forward of every layer to the FLOPs (not of the lm_head)
    plain = trace_training(LLAMA.with_(num_layers=4), micro_batch=b, seq_len=s, precision="bf16", extrapolate=False)
    assert c.flops_per_step > plain.flops_per_step


@pytest.mark.parametrize("arch,precision,ckpt", [
    (LLAMA, "bf16-mixed", False),
    (LLAMA, "bf16", True),
    (GPT2, "bf16-mixed", True),
    (MIXTRAL, "bf16", False),
], ids=["llama-mixed", "llama-bf16-ckpt", "gpt2-mixed-ckpt", "mixtral-bf16"])
def test_extrapolation_equals_full_trace(arch, precision, ckpt):
    kw = dict(micro_batch=2, seq_len=64, precision=precision, gradient_checkpointing=ckpt, dropout=0.1)
    full = trace_training(arch, extrapolate=False, **kw)
    fast = trace_training(arch, extrapolate=True, **kw)
    assert fast.extrapolated and fast.traced_layers == (2, 3)
    assert not full.extrapolated and full.traced_layers == (arch.num_layers,)
    for field in ("params", "flops_per_step", "attention_flops_per_step", "peak_bytes", "activation_bytes",
                  "weights_bytes", "grads_bytes", "optimizer_state_bytes", "step_start_bytes"):
        assert getattr(fast, field) == getattr(full, field), field
    assert dict(fast.phase_peak_bytes) == dict(full.phase_peak_bytes)
    assert fast.peak_phase == full.peak_phase


def test_fused_adamw_has_no_full_size_temporary():
    # foreach AdamW allocates a params-sized sqrt(exp_avg_sq) temporary during step (trace_feasibility.md 3);
    # the fused kernel does not
    kw = dict(micro_batch=1, seq_len=32, precision="bf16", extrapolate=False)
    fused = trace_training(LLAMA, optimizer_impl="fused", **kw)
    foreach = trace_training(LLAMA, optimizer_impl="foreach", **kw)
    extra = foreach.phase_peak_bytes["optimizer"] - fused.phase_peak_bytes["optimizer"]
    assert foreach.weights_bytes <= extra <= 2 * foreach.weights_bytes


def test_seq_beyond_learned_positions_is_an_error():
    from sizeup.errors import SizeupError

    with pytest.raises(SizeupError, match="learned positions"):
        trace_training(GPT2, micro_batch=1, seq_len=GPT2.num_position_embeddings + 1)


# --------------------------------------------------------------------------- CLI


def _tiny_config(tmp_path):
    cfg = {"model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 172,
           "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 256, "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def test_cli_trace_json(tmp_path, capsys):
    from sizeup.cli import main

    path = _tiny_config(tmp_path)
    code = main(["trace", str(path), "--seq", "64", "--micro-batch", "2", "--precision", "bf16", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    # embed 512*64 + lm_head 512*64 + 4 layers * (q 64*64 + k,v 2*64*32 + o 64*64 + mlp 3*64*172 + 2 norms 64)
    # + final norm 64
    layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 172 + 2 * 64
    assert data["params"] == 2 * 512 * 64 + 4 * layer + 64
    assert data["flops_6nd"] == 6 * data["params"] * 128
    assert data["peak_bytes"] > data["weights_bytes"] > 0
    assert "tracing" in captured.err  # progress goes to stderr


def test_cli_trace_table(tmp_path, capsys):
    from sizeup.cli import main

    code = main(["trace", str(_tiny_config(tmp_path)), "--seq", "32", "--recompute", "full", "--full", "--breakdown"])
    out = capsys.readouterr().out
    assert code == 0
    assert "FLOPs per step" in out and "6ND" in out and "peak allocated" in out
    assert "what the forward keeps for the backward" in out


def test_cli_bad_precision_is_one_line_exit_2(tmp_path, capsys):
    from sizeup.cli import main

    code = main(["trace", str(_tiny_config(tmp_path)), "--precision", "fp8"])
    assert code == 2
    assert "precision" in capsys.readouterr().err


def test_cli_without_trace_extra(monkeypatch, tmp_path, capsys):
    import sizeup.trace.tracer as tracer
    from sizeup.cli import main

    monkeypatch.setattr(tracer, "trace_available", lambda: False)
    code = main(["trace", str(_tiny_config(tmp_path))])
    err = capsys.readouterr().err
    assert code == 2
    assert "exact mode needs the trace extra: pip install 'sizeup[trace]'" in err
    assert len(err.strip().splitlines()) == 1


def test_breakdown_adds_up_to_activations():
    from sizeup.trace.census import activation_breakdown

    kw = dict(micro_batch=2, seq_len=64, precision="bf16-mixed")
    rows = activation_breakdown(LLAMA, gradient_checkpointing=False, depth=2, **kw)
    res = trace_training(LLAMA.with_(num_layers=4), extrapolate=False, **kw)
    per_layer = sum(r["bytes"] for r in rows if r["scope"] == "per layer")
    outside = sum(r["bytes"] for r in rows if r["scope"] == "model")
    assert 4 * per_layer + outside == res.activation_bytes
    # SwiGLU (Shazeer 2020) in HF eager keeps gate, up, silu(gate) and silu*up: bf16 under autocast, 2*b*s*f B each
    mlp = [r for r in rows if r["scope"] == "per layer" and ".mlp" in r["module"] and r["dtype"] == "bfloat16"
           and r["op"] in ("mm", "silu", "mul")]
    assert sum(r["bytes"] for r in mlp) == 4 * 2 * (2 * 64) * LLAMA.ffn_size


@pytest.mark.parametrize("arch,precision,dropout", [
    (GPT2.with_(num_layers=2, hidden_size=64, head_dim=16, ffn_size=256, vocab_size=256), "fp32", 0.1),
], ids=["gpt2-fp32-dropout"])
def test_fake_trace_equals_real_cpu_allocations(arch, precision, dropout):
    """The fake-tensor trace allocates what eager PyTorch really allocates: the same 2 training steps run on
    real CPU tensors under torch.profiler(profile_memory=True); its allocation timeline peaks at the traced
    peak (1-byte granularity, CPU semantics) up to a few bytes of scalar bookkeeping."""
    memory_profiler = pytest.importorskip("torch.profiler._memory_profiler")
    from torch.profiler import ProfilerActivity, profile

    from sizeup.trace.tracer import _trace_once, hf_config_for

    cfg, _ = hf_config_for(arch, dropout=dropout)
    args = (cfg, 2, 32, precision, "adamw", "foreach", False, False)
    fake = _trace_once(*args, fake=True, align=1)
    fake_peak = max(v for k, v in fake.items() if k.startswith(("seg0/", "seg1/")))
    torch.manual_seed(0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        _trace_once(*args, fake=False, align=1)
    live = peak = 0
    Action = memory_profiler.Action
    for _, action, _, size in memory_profiler.MemoryProfileTimeline(prof._memory_profile()).timeline:
        if action in (Action.PREEXISTING, Action.CREATE):
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    assert 0 <= peak - fake_peak <= 64
