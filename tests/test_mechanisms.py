"""Mechanisms of issue 12 checked against independent references: a real checkpoint trace (torch), torch's own
FLOP counter, and hand derivations with their numbers written out here.

Covered: op-level selective AC (torchtitan), attention-only and layer-fraction checkpointing, LoRA adapter GEMMs
and eager PEFT kernels, QLoRA NF4 dequantisation, fp8 recipes, TP/EP overlap fields.
"""

import math

import pytest

from sizeup.core.flops import flops_per_step, lora_adapter_flops_per_token, op_sac_saved_mms, recompute_gemm_share
from sizeup.core.memory import estimate_memory, op_sac_saved_tensors
from sizeup.core.timing import estimate_step
from sizeup.core.types import (
    Fp8Recipe, GpuSpec, LoraImpl, ModelArch, Peft, Precision, Recompute, Sharding, TrainSetup,
)
from sizeup.scenario import load_timing_knobs


def _curve(mamf, peak):
    return tuple((f, mamf * f / (f + 2e-6 * mamf * peak)) for f in (1e6, 1e8, 1e10, 1e12, 1e14))


H100 = GpuSpec(id="h100-sxm", name="H100", vendor="NVIDIA", memory_bytes=80e9, hbm_bytes_per_s=3.35e12,
               peak_flops_per_s={"bf16": 989e12, "fp16": 989e12, "fp8": 1979e12, "tf32": 494e12, "fp32": 67e12},
               intra_node_bytes_per_s=450e9, intra_node_link="NVLink", node_size=8, inter_node_bytes_per_s=50e9,
               host_link_bytes_per_s=63e9, tdp_w=700, matmul_efficiency=_curve(0.8, 989e12), hbm_efficiency=0.9,
               collective_efficiency_intra=0.82, collective_efficiency_inter=0.74)
LLAMA7B = ModelArch(id="llama-2-7b", name="Llama 2 7B", vocab_size=32000, hidden_size=4096, num_layers=32,
                    num_heads=32, num_kv_heads=32, head_dim=128, ffn_size=11008, max_seq_len=4096)

KNOBS = load_timing_knobs()
GiB = 2**30
LLAMA31_8B = ModelArch(id="llama-3.1-8b", name="Llama 3.1 8B", vocab_size=128256, hidden_size=4096, num_layers=32,
                       num_heads=32, num_kv_heads=8, head_dim=128, ffn_size=14336, max_seq_len=131072)


# --------------------------------------------------------------------------- recompute policies


def test_op_sac_saved_bytes_llama31_8b_hand_derivation():
    """torchtitan op-SAC on Llama-3.1-8B, bf16, FSDP over 8 GPUs, b=2, s=8192 (16,384 tokens per GPU).

    The policy counts aten.mm calls per block in forward order wq, wk, wv, wo, w1, w3, w2 and saves all but every
    second one: wq (4096), wv (1024), w1 (14336), w2 (4096) saved; wk, wo, w3 recomputed. SDPA is in the save list:
    its output (4096) and fp32 log-sum-exp (32 heads x 4 B = 128 B). The checkpoint keeps the block input (4096).
    Per token per layer: 2 B x (4096 + 4096 + 1024 + 14336 + 4096 + 4096) + 128 = 63,616 B.
    x 16,384 tokens x 32 layers = 33,353,105,408 B = 31.06 GiB (full AC: 2 x 4096 x 16,384 x 32 = 4.00 GiB;
    none, fused kernels: 68.06 GiB).
    """
    assert [n for n, _k, _n, saved in op_sac_saved_mms(LLAMA31_8B) if saved] == ["wq", "wv", "w1", "w2"]
    per_tok = sum(b for _n, b, _k in op_sac_saved_tensors(LLAMA31_8B, False, 2.0, 2.0))
    assert per_tok == 63_616
    setup = TrainSetup(gpus=8, micro_batch=2, seq_len=8192, sharding=Sharding.FSDP_FULL, recompute=Recompute.OP_SAC)
    est = estimate_memory(LLAMA31_8B, setup, kernel="fused")
    assert est.per_gpu["activations/layers"] / GiB == pytest.approx(33_353_105_408 / GiB, rel=1e-6)
    none = estimate_memory(LLAMA31_8B, setup.with_(recompute=Recompute.NONE), kernel="fused")
    full = estimate_memory(LLAMA31_8B, setup.with_(recompute=Recompute.FULL), kernel="fused")
    sel = estimate_memory(LLAMA31_8B, setup.with_(recompute=Recompute.SELECTIVE), kernel="fused")
    # Megatron selective with flash attention stores nothing less than none (no s x s scores exist)
    assert sel.peak_allocated_bytes == none.peak_allocated_bytes
    assert full.peak_allocated_bytes < est.peak_allocated_bytes < none.peak_allocated_bytes


def test_attention_only_and_layer_fraction_hand_derivation():
    """Same job. Attention-only keeps the block input (2 x 4096) and the MLP's saved tensors in the fused layout
    (Korthikanti 2022 eq. 1 with a gated MLP): MLP norm input 2h + fc1 input 2h + fc1 output 2 x 2f + SwiGLU output
    2f = 4h + 6f = 16,384 + 86,016 = 102,400 B; total 110,592 B/token/layer x 16,384 x 32 = 54.00 GiB.
    Layer-fraction 0.5: half the blocks keep 8,192 B, half everything (68.06 GiB / 32 / 16,384 per token):
    0.5 x 4.00 + 0.5 x 68.06 = 36.03 GiB."""
    setup = TrainSetup(gpus=8, micro_batch=2, seq_len=8192, sharding=Sharding.FSDP_FULL)
    attn = estimate_memory(LLAMA31_8B, setup.with_(recompute=Recompute.ATTENTION_ONLY), kernel="fused")
    assert attn.per_gpu["activations/layers"] == pytest.approx(110_592 * 16_384 * 32, rel=1e-9)
    none = estimate_memory(LLAMA31_8B, setup, kernel="fused").per_gpu["activations/layers"]
    half = estimate_memory(LLAMA31_8B, setup.with_(recompute=Recompute.LAYER_FRACTION, recompute_fraction=0.5),
                           kernel="fused").per_gpu["activations/layers"]
    assert half == pytest.approx(0.5 * 8192 * 16_384 * 32 + 0.5 * none, rel=1e-9)
    # fraction 1 is full checkpointing, fraction 0 is none
    one = estimate_memory(LLAMA31_8B, setup.with_(recompute=Recompute.LAYER_FRACTION, recompute_fraction=1.0),
                          kernel="fused")
    full = estimate_memory(LLAMA31_8B, setup.with_(recompute=Recompute.FULL), kernel="fused")
    assert one.per_gpu["activations/layers"] == pytest.approx(full.per_gpu["activations/layers"])


def test_recompute_flops_hand_derivation():
    """Llama-2-7B (h 4096, MHA, f 11008) layer GEMMs per token: 4 x 4096^2 + 3 x 4096 x 11008 = 202.4 M MACs.
    op-SAC recomputes wk (4096^2), wo (4096^2), w3 (4096 x 11008) = 78.6 M -> share 0.3886;
    attention-only recomputes the 4 attention projections: 67.1 / 202.4 = 0.3316."""
    h, f = 4096, 11008
    total = 4 * h * h + 3 * h * f
    assert recompute_gemm_share(LLAMA7B, Recompute.OP_SAC) == pytest.approx((2 * h * h + h * f) / total)
    assert recompute_gemm_share(LLAMA7B, Recompute.ATTENTION_ONLY) == pytest.approx(4 * h * h / total)
    base = TrainSetup(gpus=8, micro_batch=1, seq_len=4096, sharding=Sharding.FSDP_FULL)
    fl = {rc: flops_per_step(LLAMA7B, base.with_(recompute=rc)) for rc in Recompute}
    gemm_step = fl[Recompute.NONE].per_component["layers/gemm"] / 3.0
    assert fl[Recompute.OP_SAC].recompute_flops == pytest.approx(0.3886 * gemm_step, rel=1e-3)
    steps = {rc: estimate_step(LLAMA7B, base.with_(recompute=rc), H100, KNOBS).step_time_s for rc in Recompute}
    assert steps[Recompute.NONE] < steps[Recompute.OP_SAC] < steps[Recompute.FULL]
    assert steps[Recompute.NONE] < steps[Recompute.ATTENTION_ONLY] < steps[Recompute.FULL]
    for rc in Recompute:
        est = estimate_step(LLAMA7B, base.with_(recompute=rc, recompute_fraction=0.25), H100, KNOBS)
        assert sum(est.breakdown.values()) == pytest.approx(est.step_time_s, rel=1e-9)


def test_op_sac_matches_a_real_checkpoint_trace():
    """Run a torchtitan-style block (RMSNorm, wq/wk/wv/wo, SDPA, RMSNorm, w1/w3/w2 SwiGLU) under
    torch.utils.checkpoint with torchtitan's op-SAC policy (save every other aten.mm and SDPA) and count the
    bytes still alive after the forward (sizeup.trace LiveBytes, no rounding; torch's CPU flash SDPA op stands in
    for the CUDA one in the save list). They are the block's output (the next
    block's checkpoint input) + what SAC cached: sizeup's op_sac_saved_tensors per token x tokens."""
    torch = pytest.importorskip("torch")
    from collections import defaultdict

    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

    from sizeup.trace.emulate import LiveBytes

    h, heads, kv_heads, hd, f, b, s = 256, 4, 2, 64, 512, 2, 64
    arch = ModelArch(id="t", name="t", vocab_size=1000, hidden_size=h, num_layers=1, num_heads=heads,
                     num_kv_heads=kv_heads, head_dim=hd, ffn_size=f)
    dt = torch.bfloat16
    g = torch.Generator().manual_seed(0)

    def w(i, o):
        return (torch.randn(o, i, generator=g) * 0.02).to(dt).requires_grad_()

    wq, wk, wv, wo = w(h, heads * hd), w(h, kv_heads * hd), w(h, kv_heads * hd), w(heads * hd, h)
    w1, w3, w2 = w(h, f), w(h, f), w(f, h)

    def rms(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    def block(x):
        y = rms(x)
        q = torch.nn.functional.linear(y, wq).view(b, s, heads, hd).transpose(1, 2)
        k = torch.nn.functional.linear(y, wk).view(b, s, kv_heads, hd).transpose(1, 2)
        v = torch.nn.functional.linear(y, wv).view(b, s, kv_heads, hd).transpose(1, 2)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + torch.nn.functional.linear(a.transpose(1, 2).reshape(b, s, heads * hd), wo)
        y = rms(x)
        return x + torch.nn.functional.linear(
            torch.nn.functional.silu(torch.nn.functional.linear(y, w1)) * torch.nn.functional.linear(y, w3), w2)

    sdpa_ops = {op for op in (getattr(torch.ops.aten, n, None) for n in (
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention")) if op is not None}
    save = {torch.ops.aten.mm.default} | {op.default for op in sdpa_ops}

    def context():
        meta = defaultdict(int)

        def policy(ctx, func, *args, **kwargs):
            key = "recompute" if ctx.is_recompute else "forward"
            if func == torch.ops.aten.mm.default:
                meta[key] += 1
            keep = func in save and not (func == torch.ops.aten.mm.default and meta[key] % 2 == 0)
            return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE
        return create_selective_checkpoint_contexts(policy)

    x = torch.randn(b, s, h, generator=g).to(dt).requires_grad_()
    tracker = LiveBytes(align=1)
    with tracker:
        for t in (x, wq, wk, wv, wo, w1, w3, w2):  # weight views (aten.t) are not new storage
            tracker.track(t)
        before = tracker.live
        out = checkpoint(block, x, use_reentrant=False, context_fn=context)
        traced = tracker.live - before
    expected = b * s * sum(v for _n, v, _k in op_sac_saved_tensors(arch, False, 2.0, 2.0))
    assert traced == pytest.approx(expected, rel=0.02), (traced, expected)
    out.sum().backward()  # the policy is a valid one: backward runs


# --------------------------------------------------------------------------- LoRA / QLoRA


def test_lora_flops_match_torch_flop_counter():
    """Frozen base Linear + LoRA A (k x r) and B (r x n) trainable, forward + backward under
    torch.utils.flop_counter.FlopCounterMode: the base runs forward + dgrad only (2 x 2*M*k*n) and the adapters
    3 x (2*M*k*r + 2*M*r*n). sizeup's adapter FLOPs per token (x 3) and frozen-base rule must match that count."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from sizeup.core.flops import lora_adapter_shapes

    arch = ModelArch(id="t", name="t", vocab_size=1000, hidden_size=128, num_layers=1, num_heads=4, num_kv_heads=2,
                     head_dim=32, ffn_size=320)
    targets = ("q", "k", "v", "o", "gate", "up", "down")
    setup = TrainSetup(peft=Peft.LORA, lora_rank=8, lora_targets=targets)
    M, r = 96, 8
    counted = 0
    base_expected = 0
    for k, n in lora_adapter_shapes(arch, targets):
        x = torch.randn(M, k, requires_grad=True)
        w = torch.randn(n, k)  # frozen
        a = torch.randn(r, k, requires_grad=True)
        bb = torch.randn(n, r, requires_grad=True)
        with FlopCounterMode(display=False) as fc:
            y = torch.nn.functional.linear(x, w) + torch.nn.functional.linear(torch.nn.functional.linear(x, a), bb)
            y.sum().backward()
        counted += fc.get_total_flops()
        base_expected += 2 * (2 * M * k * n)
    adapter = 3 * lora_adapter_flops_per_token(arch, setup) * M
    assert counted == pytest.approx(base_expected + adapter, rel=1e-9)


def test_eager_peft_adapters_cost_more_than_fused_and_qlora_dequant_hand_derivation():
    """QLoRA dequantises every NF4 base weight before each forward and backward matmul (bitsandbytes
    MatMul4Bit: F.dequantize_4bit in forward and again in backward): the kernel reads 0.5 B/param and writes
    2 B/param. Llama-2-7B layer weights 4 x 4096^2 + 3 x 4096 x 11008 = 202.4 M params x 32 layers = 6.476 G;
    x 2.5 B = 16.19 GB per use; fwd + bwd + recomputed fwd = 3 uses = 48.57 GB per micro-batch; at
    3.35e12 B/s x hbm_efficiency 0.9 = 3.015e12 B/s -> 16.11 ms per micro-batch over plain LoRA."""
    st = TrainSetup(gpus=1, micro_batch=1, seq_len=1024, peft=Peft.LORA, lora_rank=16,
                    lora_targets=("q", "k", "v", "o", "gate", "up", "down"), recompute=Recompute.FULL)
    lora = estimate_step(LLAMA7B, st, H100, KNOBS, kernel="hf-eager")
    qlora = estimate_step(LLAMA7B, st.with_(peft=Peft.QLORA), H100, KNOBS, kernel="hf-eager")
    params = 32 * (4 * 4096**2 + 3 * 4096 * 11008)
    expected = 3 * 2.5 * params / (3.35e12 * 0.9)
    assert expected == pytest.approx(16.11e-3, rel=1e-3)
    assert qlora.step_time_s - lora.step_time_s == pytest.approx(expected, rel=1e-6)
    peft = estimate_step(LLAMA7B, st.with_(lora_impl=LoraImpl.PEFT), H100, KNOBS, kernel="hf-eager")
    assert peft.breakdown["compute/lora_adapters"] > lora.breakdown["compute/lora_adapters"] > 0
    assert peft.step_time_s > lora.step_time_s
    assert "time/lora_adapters" in {t.name for t in peft.terms}
    # no adapters, no adapter time: full fine-tuning is unchanged by the LoRA fields
    ft = TrainSetup(gpus=1, micro_batch=1, seq_len=1024)
    assert estimate_step(LLAMA7B, ft.with_(lora_impl=LoraImpl.PEFT), H100, KNOBS).step_time_s == \
        estimate_step(LLAMA7B, ft, H100, KNOBS).step_time_s


def test_lora_adapter_bytes_hand_derivation():
    """One adapted Linear (q of Llama-2-7B, k = n = 4096, r = 16) at M = 8192 tokens, fused impl, on the test H100
    (3.35e12 B/s x 0.9). The 6 adapter GEMMs are memory-bound (2*M*k*r = 1.07 GFLOP each); their bytes:
    fwd A: 2(Mk + kr + Mr) = 67.50 MB; fwd B: 2(Mr + rn + Mn) + 2Mn (addmm reads the base output) = 134.61 MB;
    bwd dB, d(xA), dA: 67.50 MB each; dx: 67.50 + 67.11 MB (addmm into the base dgrad) = 134.61 MB.
    Sum fwd 202.11 MB = 67.04 us; bwd 337.12 MB = 111.81 us."""
    from sizeup.core.timing import gpu_numbers, lora_adapter_time, model_inputs

    st = TrainSetup(peft=Peft.LORA, lora_rank=16, lora_targets=("q",))
    mi = model_inputs(LLAMA7B, st)
    g = gpu_numbers(H100, Precision.BF16_MIXED, KNOBS)
    M, k, r = 8192, 4096, 16
    one = 2 * (M * k + k * r + M * r)
    fwd_b = one + (2 * (M * r + r * k + M * k) + 2 * M * k)
    bwd_b = 3 * one + one + 2 * M * k
    assert fwd_b == pytest.approx(202.11e6, rel=1e-4) and bwd_b == pytest.approx(337.12e6, rel=1e-4)
    f, b_, kf, kb = lora_adapter_time(mi, g, M, 1, 2.0, 0, 0.0)
    bw = 3.35e12 * 0.9
    assert f == pytest.approx(67.04e-6, rel=1e-3) and b_ == pytest.approx(111.81e-6, rel=1e-3)
    assert f == pytest.approx(fwd_b / bw, rel=1e-6) and b_ == pytest.approx(bwd_b / bw, rel=1e-6)
    assert (kf, kb) == (2.0, 4.0)
    _, _, kf, kb = lora_adapter_time(mi, g, M, 1, 2.0, 1, 0.05)
    assert (kf, kb) == (7.0, 9.0)


# --------------------------------------------------------------------------- TP / EP overlap


def test_tp_overlap_field_hides_tp_traffic_up_to_the_gemm_window():
    """Llama-2-70B TP8 on the test H100: with the default (timing.yaml tp_overlap 0) all TP all-reduces are exposed;
    tp_comm_overlap=1 hides them wholly when they are shorter than the layer's GEMMs. The exposed formula c*(1-f) + max(0, c*f - window) at f = 0.5 leaves half of c."""
    from sizeup.core.memory import check_setup

    m70 = ModelArch(id="llama-2-70b", name="Llama 2 70B", vocab_size=32000, hidden_size=8192, num_layers=80,
                    num_heads=64, num_kv_heads=8, head_dim=128, ffn_size=28672, max_seq_len=4096)
    st = TrainSetup(gpus=64, tp=8, pp=2, micro_batch=1, grad_accum=16, seq_len=4096,
                    sharding=Sharding.MEGATRON_DISTOPT, sequence_parallel=True)
    base = estimate_step(m70, st, H100, KNOBS)
    half = estimate_step(m70, st.with_(tp_comm_overlap=0.5), H100, KNOBS)
    full = estimate_step(m70, st.with_(tp_comm_overlap=1.0), H100, KNOBS)
    c = base.breakdown["comm/tensor_parallel"]
    assert c > 0
    assert half.breakdown["comm/tensor_parallel"] == pytest.approx(0.5 * c, rel=1e-9)
    assert full.breakdown["comm/tensor_parallel"] == pytest.approx(0.0, abs=1e-12)
    # the pipeline bubble is (p-1) micro-batch slots, so the step shrinks by c x (m + p - 1)/m = c x 17/16
    assert base.step_time_s - full.step_time_s == pytest.approx(c * 17 / 16, rel=1e-6)
    assert check_setup(m70, st.with_(tp_comm_overlap=1.5)) == ["tp-comm-overlap must be in [0, 1], got 1.5"]


# --------------------------------------------------------------------------- fp8 recipes


def test_fp8_recipe_cast_traffic_and_weight_copies_hand_derivation():
    """Llama-2-7B, 1 H100 (test spec), b=1 s=4096, fp8. Per layer forward the GEMM inputs are h (qkv), the
    attention output (4096) and the MLP activation (f = 11008) -> h + f + 4096 = 19,200 elements per token
    (the kernel's h + ffn_act_width + attn_v_dim). delayed casts read 2 B + write 1 B = 3 B/element; tensorwise
    (current scaling) needs an extra amax read, 5 B; rowwise/blockwise cast along both axes, 6 B.
    tensorwise - delayed: 2 B x 19,200 x 4096 tokens = 157.3 MB per layer forward; with backward (x (1 + 2))
    and 32 layers: 15.10 GB / (3.35e12 x 0.9 B/s) = 5.01 ms more per step.
    Weight copies (memory): delayed 1 B per matmul parameter; blockwise 2 x (1 + 4/128) = 2.0625 B; for the
    6.476 G layer matmul params + the 131 M head: 6.607 G x 1.0625 B = 7.02 GB more."""
    st = TrainSetup(gpus=1, micro_batch=1, seq_len=4096, precision=Precision.FP8)
    d = estimate_step(LLAMA7B, st, H100, KNOBS)
    t = estimate_step(LLAMA7B, st.with_(fp8_recipe=Fp8Recipe.TENSORWISE), H100, KNOBS)
    extra = 2.0 * 19_200 * 4096 * 3 * 32 / (3.35e12 * 0.9)
    assert extra == pytest.approx(5.01e-3, rel=1e-3)
    assert t.breakdown["compute/elementwise"] - d.breakdown["compute/elementwise"] == pytest.approx(extra, rel=1e-6)
    # rowwise GEMMs are slower than tensorwise ones; blockwise runs at the tensor-scaled rate
    r = estimate_step(LLAMA7B, st.with_(fp8_recipe=Fp8Recipe.ROWWISE), H100, KNOBS)
    b = estimate_step(LLAMA7B, st.with_(fp8_recipe=Fp8Recipe.BLOCKWISE), H100, KNOBS)
    assert r.breakdown["compute/gemm"] > t.breakdown["compute/gemm"] == pytest.approx(b.breakdown["compute/gemm"])
    assert d.breakdown["compute/gemm"] == pytest.approx(t.breakdown["compute/gemm"])
    md = estimate_memory(LLAMA7B, st, kernel="fused")
    mb = estimate_memory(LLAMA7B, st.with_(fp8_recipe=Fp8Recipe.BLOCKWISE), kernel="fused")
    params = 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 32000 * 4096
    assert mb.per_gpu["activations/weight_casts"] - md.per_gpu["activations/weight_casts"] == \
        pytest.approx(params * 1.0625, rel=1e-9)


def test_fp8_tensorwise_speedup_near_torchao_measurement():
    """Independent published measurement (torchao float8 README, 'Training benchmarks', NVIDIA H100):
    Llama3-8B on 8 x H100, batch 1, seq 8192, torch.compile, FSDP2, per-op SAC: bf16 6150 tokens/s, tensorwise
    fp8 (float8 all-gather) 7689.5 (+25.0 %). Only the rowwise factor was derived from that table, so the tensorwise
    figure is a check: sizeup (catalog H100, fused kernels) must land within 8 points of +25 %."""
    from sizeup.catalog import load_catalog

    gpu = load_catalog().gpus["h100-sxm"]
    st = TrainSetup(gpus=8, micro_batch=1, seq_len=8192, sharding=Sharding.FSDP_FULL, recompute=Recompute.OP_SAC)
    m = LLAMA31_8B
    bf16 = estimate_step(m, st, gpu, KNOBS).step_time_s
    fp8 = estimate_step(m, st.with_(precision=Precision.FP8, fp8_recipe=Fp8Recipe.TENSORWISE), gpu, KNOBS).step_time_s
    assert bf16 / fp8 - 1.0 == pytest.approx(0.25, abs=0.08)


# --------------------------------------------------------------------------- pipeline stages


def test_uneven_pipeline_split_second_stage_hand_derivation():
    """Llama-2-70B, tp 8, pp 4, 1F1B, m = 8, s = 4096, b = 1, SP, full recompute, Megatron distributed optimizer,
    first and last stages with 17 layers (Megatron --decoder-first/last-pipeline-num-layers 17):
    the two middle stages get ceil((80 - 34) / 2) = 23 layers. Stage index 1 holds p - 1 = 3 micro-batches in
    flight (stage 0 holds 4 but only 17 layers): 23 x 3 = 69 > 17 x 4 = 68 layer-micro-batches, and 23 layers of
    weights, so the second stage is the worst.
    Weights: per layer h(q + 2kv) + q h + 3 h f = 150,994,944 + 704,643,072 = 855,638,016 split by t = 8
    -> 106,954,752 + 16,384 norm weights = 106,971,136 params x 23 layers x 2 B = 4,920,672,256 B.
    Activations at the end of backward (the stage's first layer): kept per layer per micro-batch = layer input
    2 B x 8192 / 8 (SP) x 4096 tokens = 8,388,608 B; 23 x 3 x that x (1 - 1/3) + one layer = 394,264,576 B."""
    m70 = ModelArch(id="llama-2-70b", name="Llama 2 70B", vocab_size=32000, hidden_size=8192, num_layers=80,
                    num_heads=64, num_kv_heads=8, head_dim=128, ffn_size=28672, max_seq_len=4096)
    st = TrainSetup(gpus=32, tp=8, pp=4, micro_batch=1, grad_accum=8, seq_len=4096,
                    sharding=Sharding.MEGATRON_DISTOPT, recompute=Recompute.FULL, sequence_parallel=True)
    uneven = st.with_(pp_first_stage_layers=17, pp_last_stage_layers=17)
    e = estimate_memory(m70, uneven, kernel="fused")
    assert e.worst_stage == "second"
    assert e.per_gpu["model/weights"] == pytest.approx(4_920_672_256, rel=1e-12)
    assert e.peak_phase == "bwd_end"
    assert e.per_gpu["activations/layers"] == pytest.approx(394_264_576, rel=1e-9)
    even = estimate_memory(m70, st, kernel="fused")
    assert even.worst_stage == "first" and even.peak_allocated_bytes < e.peak_allocated_bytes
    # time: the 23-layer stages set the pace (20 layers when even)
    t_even = estimate_step(m70, st, H100, KNOBS)
    t_uneven = estimate_step(m70, uneven, H100, KNOBS)
    assert t_uneven.step_time_s > t_even.step_time_s
    from sizeup.core.memory import check_setup
    assert check_setup(m70, st.with_(pp_first_stage_layers=40, pp_last_stage_layers=40))


# --------------------------------------------------------------------------- FSDP buffers


def test_fsdp_reduce_scatter_buffers_hand_derivation():
    """FSDP2 (pytorch torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py foreach_reduce): the reduce-scatter
    input is allocated in reduce_dtype and filled from the unsharded gradients, which are freed only after the
    copy-in, so a unit's gradient is live twice (compute dtype + reduce dtype) in backward; in forward only the
    unit being computed and the prefetched next one are unsharded.
    Llama-3.1-8B, FSDP over 8, bf16-mixed: the largest unit is the 128,256 x 4096 = 525,336,576-param embedding,
    the next layer has 218,112,000 params (4096 x (4096 + 2 x 1024) + 4096^2 + 3 x 4096 x 14336 + 2 x 4096).
    forward: (525,336,576 + 218,112,000) x 2 B = 1,486,897,152 B; backward with reduce_dtype fp32:
    + 525,336,576 x (2 + 4) = 3,152,019,456 -> 4,638,916,608 B; bf16 reduce: + 525,336,576 x 4 -> 3,588,243,456 B."""
    from sizeup.core.memory import components_for

    st = TrainSetup(gpus=8, micro_batch=1, seq_len=4096, sharding=Sharding.FSDP_FULL)
    layer = 4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 14336 + 2 * 4096
    assert layer == 218_112_000
    emb = 128_256 * 4096
    fp32 = components_for(LLAMA31_8B, st.with_(grad_reduce_dtype="fp32"), "fused")
    bf16 = components_for(LLAMA31_8B, st.with_(grad_reduce_dtype="bf16"), "fused")
    phase = {0: "fwd", 1: "bwd", 2: "bwd_end"}[int(fp32["phase"])]
    assert phase in ("bwd", "bwd_end")
    assert float(fp32["buffers/gathered_params"]) == pytest.approx((emb + layer) * 2 + emb * 6, rel=1e-12)
    assert float(bf16["buffers/gathered_params"]) == pytest.approx((emb + layer) * 2 + emb * 4, rel=1e-12)
    assert (emb + layer) * 2 == 1_486_897_152 and (emb + layer) * 2 + emb * 6 == 4_638_916_608
    # the forward phase holds only the two unsharded units
    assert float(fp32["phase_fwd"]) - float(bf16["phase_fwd"]) == 0.0
    # the reduce dtype also sets the reduce-scatter bytes in the step time
    t32 = estimate_step(LLAMA31_8B, st.with_(grad_reduce_dtype="fp32"), H100, KNOBS)
    t16 = estimate_step(LLAMA31_8B, st.with_(grad_reduce_dtype="bf16"), H100, KNOBS)
    assert t32.breakdown["comm/data_parallel_exposed"] >= t16.breakdown["comm/data_parallel_exposed"]


# --------------------------------------------------------------------------- MoE


def _moe():
    return ModelArch(id="moe-test", name="moe", vocab_size=32000, hidden_size=2048, num_layers=16, num_heads=16,
                     num_kv_heads=16, head_dim=128, ffn_size=8192, num_experts=64, experts_per_token=8,
                     expert_ffn_size=1024)


def test_moe_load_imbalance_matches_a_multinomial_simulation():
    """The busiest of ep = 8 expert-parallel ranks under uniform routing: draw M*K = 4096 x 8 token-expert
    assignments per rank, 8 ranks, each to a uniform random rank (numpy multinomial, 4000 trials, seed 0); the
    mean of (max load / mean load) is the imbalance factor the step model applies to the expert GEMMs and
    all-to-all. Normal approximation (counts = mean + sqrt(M K) (Z_i - Z_bar)): 1 + e(8) / sqrt(32768)
    = 1 + 1.4236 / 181.02 = 1.00786, e(8) the expected maximum of 8 standard normals."""
    import numpy as np

    from sizeup.core.timing import expected_max_std_normal

    ep, mk = 8, 4096 * 8
    rng = np.random.default_rng(0)
    loads = rng.multinomial(mk * ep, [1.0 / ep] * ep, size=4000)
    simulated = float((loads.max(axis=1) / mk).mean())
    formula = 1.0 + float(expected_max_std_normal(ep)) / np.sqrt(mk)
    assert formula == pytest.approx(1.00786, abs=2e-5)
    assert formula - 1.0 == pytest.approx(simulated - 1.0, rel=0.05)


def test_moe_routing_traffic_imbalance_and_capacity_in_step_time():
    """One MoE layer type (64 experts, top-8, h 2048) on one test H100, b=1 s=4096, no EP: the routing traffic per
    layer forward is 16 B x M x E (fp32 router softmax/top-k) + 2 B x M x h x (2 + 2K) (permute: read M h, write
    K M h; unpermute: read K M h, write M h) = 16 x 4096 x 64 + 2 x 4096 x 2048 x 18 = 4,194,304 + 301,989,888
    = 306,184,192 B; with backward (x 3) and 16 layers: 14.70 GB / 3.015e12 B/s = 4.874 ms of elementwise time.
    With EP the busiest rank's expert GEMMs scale by the imbalance; padding to capacity 1.25 costs 1.25x expert
    GEMM time over an unpadded dropless run on one rank."""
    m = _moe()
    st = TrainSetup(gpus=1, micro_batch=1, seq_len=4096)
    dense_equiv = m.with_(num_experts=0, experts_per_token=0, expert_ffn_size=0)
    t = estimate_step(m, st, H100, KNOBS)
    route = 16 * 4096 * 64 + 2 * 4096 * 2048 * 18
    assert route == 306_184_192
    # the elementwise difference between the MoE model and its dense twin = routing + the MLP activation width
    from sizeup.core.flops import layer_shapes
    sh_m, sh_d = layer_shapes(m), layer_shapes(dense_equiv)
    t_d = estimate_step(dense_equiv, st, H100, KNOBS)
    diff = t.breakdown["compute/elementwise"] - t_d.breakdown["compute/elementwise"]
    ffn_passes = 3.0  # fused SwiGLU passes (timing.yaml elementwise_passes_ffn_fwd.fused)
    act = 2.0 * 4096 * ffn_passes * (sh_m.ffn_act_width - sh_d.ffn_act_width)
    expected = (route + act) * 3 * 16 / (3.35e12 * 0.9)
    assert diff == pytest.approx(expected, rel=1e-6)
    assert route * 3 * 16 / (3.35e12 * 0.9) == pytest.approx(4.874e-3, rel=1e-3)
    pad = estimate_step(m, st.with_(moe_capacity_factor=1.25, moe_pad_to_capacity=True), H100, KNOBS)
    drop = estimate_step(m, st.with_(moe_capacity_factor=1.25), H100, KNOBS)
    assert drop.step_time_s == pytest.approx(t.step_time_s)  # one rank: no imbalance, nothing dropped
    assert pad.step_time_s > t.step_time_s


def test_moe_terms_in_explain():
    m = _moe()
    st = TrainSetup(gpus=8, micro_batch=1, seq_len=4096, ep=8, sharding=Sharding.FSDP_FULL)
    est = estimate_step(m, st, H100, KNOBS)
    term = {t.name: t for t in est.terms}["moe/load_imbalance"]
    import numpy as np
    from sizeup.core.timing import expected_max_std_normal
    assert term.value == pytest.approx(1.0 + float(expected_max_std_normal(8)) / np.sqrt(4096 * 8), rel=1e-12)
    assert "time/expert_parallel_comm" in {t.name for t in est.terms}


def test_qlora_kbit_preparation_hand_derivation():
    """PEFT prepare_model_for_kbit_training casts the non-quantized parameters to fp32. Llama-2-7B (untied):
    embedding 32000 x 4096 + head 32000 x 4096 + 65 RMSNorms x 4096 = 262,410,240 params x 2 B more =
    524,820,480 B of weights; the NF4 layer weights are unchanged. Its other default, gradient checkpointing,
    is what separates ~26.5 GiB (none) from ~6.7 GiB (full) for b4 s1024 under hf-eager: a job that omits it
    is predicted ~4x too high."""
    m = LLAMA7B.with_(hf_model_type="llama")
    st = TrainSetup(gpus=1, micro_batch=4, seq_len=1024, peft=Peft.QLORA, lora_rank=16,
                    lora_targets=("q", "k", "v", "o", "gate", "up", "down"), recompute=Recompute.FULL)
    a = estimate_memory(m, st, kernel="hf-eager")
    b = estimate_memory(m, st.with_(kbit_fp32_non_quantized=True), kernel="hf-eager")
    assert b.per_gpu["model/weights"] - a.per_gpu["model/weights"] == pytest.approx(2 * 262_410_240, rel=1e-12)
    none = estimate_memory(m, st.with_(recompute=Recompute.NONE), kernel="hf-eager")
    assert none.peak_allocated_bytes > 3 * a.peak_allocated_bytes


def test_eager_peft_kernel_count_matches_a_dispatch_trace():
    """Count the non-view aten ops an eager PEFT LoRA Linear dispatches (huggingface/peft LoraLayer.forward without
    dropout: result = base(x) + lora_B(lora_A(x)) * scaling, fp32 adapters under bf16 autocast) minus those of the
    frozen base Linear alone, forward and backward, with a TorchDispatchMode. The trace shows forward mm, _to_copy,
    mm, _to_copy, mul, add (6) and backward mul, 4 x mm, 2 x _to_copy, add (8): the kernel counts the step model
    charges dispatch time for (impl peft, no dropout)."""
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    from sizeup.core.timing import gpu_numbers, lora_adapter_time, model_inputs

    views = {"t", "view", "_unsafe_view", "transpose", "expand", "detach", "alias", "as_strided", "reshape",
             "permute", "unsqueeze", "squeeze", "slice", "select", "_reshape_alias"}

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.split(".")[0] not in views:
                self.ops.append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    def run(lora: bool):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 32, 128, generator=g).to(torch.bfloat16).requires_grad_()
        w = torch.randn(96, 128, generator=g).to(torch.bfloat16)
        a = torch.randn(8, 128, generator=g, requires_grad=True)
        b = torch.randn(96, 8, generator=g, requires_grad=True)
        c = Count()
        with torch.autocast("cpu", dtype=torch.bfloat16), c:
            y = torch.nn.functional.linear(x, w)
            if lora:
                y = y + torch.nn.functional.linear(torch.nn.functional.linear(x, a), b) * 2.0
            n_fwd = len(c.ops)
            y.backward(torch.ones_like(y))
        return n_fwd, len(c.ops) - n_fwd

    base_f, base_b = run(False)
    lora_f, lora_b = run(True)
    mi = model_inputs(LLAMA7B, TrainSetup(peft=Peft.LORA, lora_rank=16, lora_targets=("q",)))
    _, _, kf, kb = lora_adapter_time(mi, gpu_numbers(H100, Precision.BF16_MIXED, KNOBS), 4096, 1, 2.0, 1, 0.0)
    assert (lora_f - base_f, lora_b - base_b) == (6, 8) == (kf, kb)


# --------------------------------------------------------------------------- packed documents, masked attention


def test_packed_document_attention_flops_hand_derivation():
    """Document-masked packing: each of the s/N documents of a packed sequence is its own N x N attention problem, so
    the model's attention FLOPs per token are those of a sequence of N tokens. Llama-2-7B (MHA, q = v width 4096,
    32 layers): forward attention per token = L * 2 * keys * (q_dim + v_dim) with keys = N (model convention, full
    N^2): s = 4096 -> 32 * 2 * 4096 * 8192 = 2.147e9; N = 256 -> 32 * 2 * 256 * 8192 = 1.342e8. GEMMs and logits do
    not change."""
    full = flops_per_step(LLAMA7B, TrainSetup(seq_len=4096))
    packed = flops_per_step(LLAMA7B, TrainSetup(seq_len=4096, packed_doc_tokens=256))
    assert full.forward_per_token["layers/attention"] == pytest.approx(32 * 2 * 4096 * 8192)
    assert packed.forward_per_token["layers/attention"] == pytest.approx(32 * 2 * 256 * 8192)
    assert packed.forward_per_token["layers/gemm"] == full.forward_per_token["layers/gemm"]
    assert packed.tokens_per_step == full.tokens_per_step
    # a document longer than the sequence is cut at the sequence: no change
    longer = flops_per_step(LLAMA7B, TrainSetup(seq_len=4096, packed_doc_tokens=8192))
    assert longer.model_flops == pytest.approx(full.model_flops)


def test_packed_document_attention_time_scales_per_document_only_with_flash():
    """Flash varlen attention runs per document; its time per token falls with N like its FLOPs (same kernel
    efficiency curve, hand check: the step saves (1 - N/s) of the flash attention time). Eager attention under a
    block mask still computes and stores the s x s scores: unchanged."""
    from sizeup.core.types import Attention

    base = TrainSetup(gpus=1, seq_len=4096, micro_batch=1)
    full = estimate_step(LLAMA7B, base, H100, KNOBS)
    packed = estimate_step(LLAMA7B, base.with_(packed_doc_tokens=512), H100, KNOBS)
    attn_full = full.breakdown["compute/attention"]
    attn_packed = packed.breakdown["compute/attention"]
    assert 0 < attn_packed < attn_full * 512 / 4096 * 1.5  # per-token work / 8; small calls a little less efficient
    saved = full.step_time_s - packed.step_time_s
    assert saved == pytest.approx(attn_full - attn_packed, rel=0.02)
    eager = base.with_(attention=Attention.MATH)
    assert estimate_step(LLAMA7B, eager.with_(packed_doc_tokens=512), H100, KNOBS).step_time_s == pytest.approx(
        estimate_step(LLAMA7B, eager, H100, KNOBS).step_time_s)


# --------------------------------------------------------------------------- eager RMSNorm


def test_eager_rmsnorm_traffic_hand_derivation():
    """An eager RMSNorm (torchtitan/models/norms.py and transformers' LlamaRMSNorm: `self._norm(x.float()).type_as(x)
    * weight`) runs six kernels over the h-wide activations. Bytes per element, read + write: upcast 2 + 4, pow 4 + 4,
    mean 4, x * rsqrt 4 + 4, cast back 4 + 2, * weight 2 + 2 = 36 B = 18 two-byte passes, of which the eager
    elementwise count already holds ~4: 14 extra passes (timing.yaml eager_rmsnorm_extra_passes). The step model
    must add exactly those bytes per norm (2 per layer) per token, forward plus a 2x backward
    (elementwise_bwd_factor), at the GPU's effective HBM bandwidth, and nothing in fused kernels."""
    import dataclasses
    kernel_bytes = (2 + 4) + (4 + 4) + 4 + (4 + 4) + (4 + 2) + (2 + 2)
    assert kernel_bytes / 2 - 4 == KNOBS.eager_rmsnorm_extra_passes == 14
    setup = TrainSetup(gpus=1, micro_batch=1, seq_len=2048, sharding=Sharding.NONE, recompute=Recompute.NONE)
    no_extra = dataclasses.replace(KNOBS, eager_rmsnorm_extra_passes=0.0)
    extra_s = (estimate_step(LLAMA31_8B, setup, H100, KNOBS, kernel="eager").step_time_s
               - estimate_step(LLAMA31_8B, setup, H100, no_extra, kernel="eager").step_time_s)
    tokens, h, layers, norms = 2048, 4096, 32, 2
    by_hand = 14 * 2 * tokens * h * norms * layers * (1 + 2.0) / (3.35e12 * 0.9)
    assert extra_s == pytest.approx(by_hand, rel=1e-9)
    fused = [estimate_step(LLAMA31_8B, setup, H100, k, kernel="fused").step_time_s for k in (KNOBS, no_extra)]
    assert fused[0] == fused[1]
