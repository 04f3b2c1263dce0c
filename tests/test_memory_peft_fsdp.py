"""PEFT and FSDP memory mechanisms added for issue 12 (core/memory.py, job flags, validator reading).

Independent references:
- huggingface/peft src/peft/tuners/lora/layer.py Linear.forward: `x = self._cast_input_dtype(x, lora_A.weight.dtype)`
  per adapted Linear; get_peft_model(autocast_adapter_dtype=True) keeps adapters in fp32 -> each adapted Linear keeps
  its own (bf16, under autocast) copy of its input for lora_A's weight gradient (hand derivation below);
- torch FullyShardedDataParallel docs: no_sync accumulates unsharded gradients; use_orig_params=True units mixing
  frozen and trainable parameters allocate gradients "equivalent to not freezing those parameters";
  lit-gpt finetune/lora.py @8641822 (FSDPStrategy(auto_wrap_policy={Block}), fabric.no_backward_sync);
- Ren et al. 2021 (ZeRO-Offload) Sec. 4.1: fp16 gradients live in CPU memory with the optimizer states;
- measured: sizeup's own H200 benchmark rows (benchmarks/data/gpu_truth/h200-2026-12-04/merged/dev_rows.yaml) and
  LitGPT's resource tables (validate/data/published_runs_more.yaml).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sizeup.core.memory import check_setup, estimate_memory
from sizeup.core.types import ModelArch, Offload, Peft, Precision, Recompute, Sharding, TrainSetup
from sizeup.errors import SizeupError

GIB = 2**30
ROOT = Path(__file__).resolve().parent.parent
GPU_TRUTH = ROOT / "benchmarks" / "data" / "gpu_truth" / "h200-2026-12-04" / "merged" / "dev_rows.yaml"

# Llama-3.2-3B shape (config.json): h 3072, 28 layers, 24 heads / 8 KV, head_dim 128, ffn 8192, vocab 128256, tied
L32_3B = ModelArch(id="l3b", name="Llama-3.2-3B shape", vocab_size=128256, hidden_size=3072, num_layers=28,
                   num_heads=24, num_kv_heads=8, head_dim=128, ffn_size=8192, max_seq_len=131072,
                   tie_embeddings=True, hf_model_type="llama")
ALL = ("q", "k", "v", "o", "gate", "up", "down")


def _fwd_layers(est) -> float:
    return est.per_gpu["activations/layers"] if est.peak_phase != "opt" else float("nan")


def test_fp32_peft_adapters_keep_one_input_copy_per_adapted_linear():
    # Hand derivation from peft's Linear.forward under autocast with fp32 adapters: q, k, v, gate, up each keep their
    # own bf16 cast of the (bf16) norm output instead of sharing one (+2 * (3h - h) + 2 * (2h - h) bytes per token),
    # o keeps its own copy next to SDPA's saved output (+2 * o_dim), down's copy replaces the shared product (+0).
    base = TrainSetup(micro_batch=4, seq_len=2048, precision=Precision.BF16_MIXED, peft=Peft.LORA, lora_rank=16,
                      lora_targets=ALL)
    shared = estimate_memory(L32_3B, base, kernel="hf-eager")
    copies = estimate_memory(L32_3B, base.with_(lora_fp32_adapters=True), kernel="hf-eager")
    h = 3072
    per_token_layer = 2 * (3 * h - h) + 2 * (2 * h - h) + 2 * 3072
    expected = per_token_layer * 4 * 2048 * 28
    assert _fwd_layers(copies) - _fwd_layers(shared) == pytest.approx(expected, rel=1e-9)


def test_fp32_adapters_without_autocast_copy_in_fp32():
    # no autocast (pure bf16 model, fp32 adapters): the cast input itself (fp32, 4 bytes) is what lora_A saves
    base = TrainSetup(micro_batch=2, seq_len=512, precision=Precision.BF16, peft=Peft.LORA, lora_targets=("q", "v"))
    shared = estimate_memory(L32_3B, base, kernel="hf-eager")
    copies = estimate_memory(L32_3B, base.with_(lora_fp32_adapters=True), kernel="hf-eager")
    per_token_layer = 4 * 3072 * 2 - 2 * 3072  # two fp32 copies instead of one shared bf16 norm output
    assert _fwd_layers(copies) - _fwd_layers(shared) == pytest.approx(per_token_layer * 2 * 512 * 28, rel=1e-9)


def _gpu_truth_rows():
    yaml = pytest.importorskip("yaml")
    if not GPU_TRUTH.exists():
        pytest.skip("GPU truth rows not in this checkout")
    return {p["id"]: p for p in yaml.safe_load(GPU_TRUTH.read_text())["points"]}


@pytest.mark.parametrize("suffix, tol", [
    ("llama-3.2-3b-l28-mb4-s2048-lora-adamw-fused-rc-none-mem", 0.03),       # LoRA all-linear, fp32 adapters
    ("llama-3.1-8b-l32-mb2-s4096-lora-adamw-fused-rc-none-mem", 0.03),
    ("llama-3.2-3b-l28-mb4-s4096-bf16-adamw-fused-rc-every-2-mem", 0.05),    # every 2nd layer checkpointed
    ("llama-3.1-8b-l32-mb2-s4096-bf16-adamw-fused-rc-every-2-mem", 0.05),
])
def test_measured_h200_rows(suffix, tol):
    from sizeup.catalog import load_catalog
    from sizeup.validate.points import load_points
    from sizeup.validate.runner import predict_point

    rows = _gpu_truth_rows()
    rid = f"gpu-truth-nvidia-h200-{suffix}"
    assert rid in rows
    point = next(p for p in load_points(GPU_TRUTH) if getattr(p, "id", None) == rid)
    got = {r.quantity: r for r in predict_point(point, load_catalog())}
    row = got["peak_memory_allocated"]
    assert row.ok, row.skipped
    assert abs(row.error_pct) <= 100 * tol, (row.measured, row.predicted)


def test_every_nth_layer_prose_is_a_layer_fraction():
    from sizeup.validate.prose import mentions, recompute_layers

    text = ("full activation checkpointing of every 2nd decoder layer only (14 of 28 layers: 0,2,4,6,8,10,12,14,16,"
            "18,20,22,24,26; Hugging Face gradient_checkpointing_enable(use_reentrant=False))")
    assert recompute_layers(text) == "14/28"
    assert mentions(text)["recompute_layer_fraction"] is True
    assert recompute_layers("checkpoint every other transformer block") == "every-2"
    assert recompute_layers("every 4th layer") == "every-4"
    assert recompute_layers("full activation checkpointing") is None
    assert recompute_layers("no checkpointing of every 2nd layer") is None
    # a list of layer indices after a colon is not a denial ('= 0' still is)
    assert mentions("sequence_parallel=0") == {"sequence_parallel": False}


def test_adapter_method_model_state_by_hand():
    # frozen 16-bit base (2 B/param) + N trained fp32 parameters with fp32 gradients and two fp32 Adam moments
    n = 1_229_760
    setup = TrainSetup(micro_batch=1, seq_len=1024, precision=Precision.BF16_MIXED, peft=Peft.ADAPTER,
                       lora_targets=(), trainable_params=n)
    est = estimate_memory(L32_3B, setup, kernel="hf-eager")
    from sizeup.core.params import count_params

    total = count_params(L32_3B).total
    assert est.per_gpu["model/weights"] == pytest.approx(2 * total, rel=1e-9)
    assert est.per_gpu["model/adapter_weights"] == pytest.approx(4 * n, rel=1e-9)
    assert est.per_gpu["optimizer/states"] == pytest.approx(8 * n, rel=1e-9)
    # no Linear keeps its input: fewer saved bytes than LoRA on q,v
    lora = estimate_memory(L32_3B, setup.with_(peft=Peft.LORA, lora_targets=("q", "v"), trainable_params=0.0),
                           kernel="hf-eager")
    assert est.per_gpu["activations/layers"] < lora.per_gpu["activations/layers"]
    assert check_setup(L32_3B, setup.with_(trainable_params=0.0))  # the count is required


def test_adapter_on_nf4_base_holds_linear_weights_in_4_bit():
    setup = TrainSetup(micro_batch=1, seq_len=512, precision=Precision.BF16_MIXED, peft=Peft.ADAPTER,
                       lora_targets=(), trainable_params=1e6)
    bf16 = estimate_memory(L32_3B, setup, kernel="hf-eager")
    nf4 = estimate_memory(L32_3B, setup.with_(nf4_base=True), kernel="hf-eager")
    qlora = estimate_memory(L32_3B, setup.with_(peft=Peft.QLORA, lora_targets=("q", "v"), trainable_params=0.0),
                            kernel="hf-eager")
    assert nf4.per_gpu["model/weights"] == pytest.approx(qlora.per_gpu["model/weights"], rel=1e-9)
    assert nf4.per_gpu["model/weights"] < 0.45 * bf16.per_gpu["model/weights"]


def test_job_flags_for_adapter_methods():
    from sizeup.job import build_job

    job = build_job({"model": "llama-2-7b", "gpu": "a100-40gb-sxm", "peft": "adapter", "trainable_params": 1229760,
                     "nf4_base": True, "framework": "litgpt"})
    assert job.setup.peft == Peft.ADAPTER and job.setup.trainable_params == 1229760 and job.setup.nf4_base
    with pytest.raises(SizeupError, match="trainable-params"):
        build_job({"model": "llama-2-7b", "gpu": "a100-40gb-sxm", "peft": "adapter"})
    with pytest.raises(SizeupError, match="adapter"):
        build_job({"model": "llama-2-7b", "gpu": "a100-40gb-sxm", "peft": "lora", "trainable_params": 5})


def test_fsdp_no_sync_and_mixed_units_by_hand():
    # lit-gpt LoRA on 2 GPUs: FlatParameters mix LoRA with frozen weights (gradient for every parameter, bf16) and
    # accumulation runs under no_sync (unsharded): persistent gradients = all params x 2 bytes on every rank
    from sizeup.core.params import count_params

    base = TrainSetup(gpus=2, micro_batch=1, grad_accum=64, seq_len=1024, precision=Precision.BF16,
                      sharding=Sharding.FSDP_FULL, recompute=Recompute.FULL, peft=Peft.LORA, lora_rank=8,
                      lora_targets=("q", "v"))
    plain = estimate_memory(L32_3B, base, kernel="hf-eager")
    both = estimate_memory(L32_3B, base.with_(fsdp_no_sync_accumulation=True, fsdp_mixed_frozen_units=True),
                           kernel="hf-eager")
    mixed = estimate_memory(L32_3B, base.with_(fsdp_mixed_frozen_units=True), kernel="hf-eager")
    total = count_params(L32_3B).total
    assert both.per_gpu["gradients"] == pytest.approx(2 * total, rel=1e-9)
    assert mixed.per_gpu["gradients"] == pytest.approx(2 * total / 2, rel=1e-9)   # reduce-scattered each micro-step
    assert plain.per_gpu["gradients"] < 0.01 * mixed.per_gpu["gradients"]
    # no_sync alone on full training: the gradients stop being divided by the sharding degree
    full = base.with_(peft=Peft.NONE, precision=Precision.BF16_MIXED)
    a = estimate_memory(L32_3B, full, kernel="hf-eager")
    b = estimate_memory(L32_3B, full.with_(fsdp_no_sync_accumulation=True), kernel="hf-eager")
    assert b.phase_totals["opt"] - a.phase_totals["opt"] == pytest.approx(4 * total / 2, rel=1e-6)


def test_litgpt_fsdp_lora_rows_are_within_25_percent():
    # LitGPT resource tables (A100 40GB, max_memory_allocated): e.g. Llama 2 7B LoRA on 2 GPUs 22.18 GB, 13B on 4 GPUs
    # 35.57 GB; before these mechanisms sizeup predicted 8.5 / 8.9 GB
    from sizeup.validate.runner import run_validation

    rows = [r for r in run_validation(id_contains="litgpt-lora-").rows
            if r.quantity == "peak_memory_allocated" and "gpu" in r.id and not r.id.endswith("1gpu")]
    assert len(rows) == 10 and all(r.ok for r in rows)
    assert all(abs(r.error_pct) <= 25 for r in rows), [(r.id, round(r.error_pct, 1)) for r in rows]


def test_optimizer_offload_moves_gradients_to_the_host():
    setup = TrainSetup(micro_batch=1, seq_len=1024, precision=Precision.FP16_MIXED, sharding=Sharding.ZERO3,
                       offload_optimizer=Offload.CPU, recompute=Recompute.FULL)
    est = estimate_memory(L32_3B, setup)
    assert est.per_gpu["gradients"] <= 5e8 * 2 + 1e-6
    no = estimate_memory(L32_3B, setup.with_(offload_optimizer=Offload.NONE))
    assert est.peak_allocated_bytes < no.peak_allocated_bytes


def test_peak_of_padded_runs_needs_the_longest_batch_stated():
    from sizeup.validate.runner import run_validation

    peft = [r for r in run_validation(id_contains="peft-metamathqa-lora-rank32").rows if r.id.endswith("rank32")]
    assert peft and all(r.ok for r in peft)
    assert "s768" in peft[0].setup
    base = run_validation(id_contains="torchtune-llama32-3b-a100-baseline").rows
    mem = [r for r in base if r.quantity == "peak_memory_active"]
    assert mem and "only a maximum" in (mem[0].skipped or "")


def test_gpu_not_stated_stands_in_for_memory_only():
    from sizeup.validate.runner import run_validation

    rows = run_validation(id_contains="torchtune-docs-e2e-llama3.2-3b-lora-init").rows
    assert rows and all(r.ok for r in rows)
    assert any("stands in" in a for a in rows[0].assumptions)
    assert abs(rows[0].error_pct) < 10  # 'Memory Stats after model init' 6.21 GiB (bf16 base + adapters)


def test_qwen25_3b_matches_the_model_card():
    # Qwen2.5-3B card: "Number of Parameters: 3.09B; Number of Paramaters (Non-Embedding): 2.77B"
    from sizeup.catalog import load_catalog
    from sizeup.core.params import count_params

    m = load_catalog().model("Qwen/Qwen2.5-3B")
    pc = count_params(m)
    assert pc.total == pytest.approx(3.09e9, rel=0.005)
    assert pc.total - pc.breakdown["embedding/token"] == pytest.approx(2.77e9, rel=0.005)


def test_gemini_auto_placement_fills_to_the_cap_then_offloads():
    # Colossal-AI AutoPlacementPolicy: model data may use steady_cuda_cap_ratio (0.9) x CUDA capacity minus the
    # non-model data; with more model data than that, the rest sits on the host (GeminiPlugin docstring)
    from sizeup.core.memory import GEMINI_STEADY_CUDA_CAP_RATIO

    gpu_mem = 40 * GIB
    big = TrainSetup(micro_batch=1, seq_len=1024, precision=Precision.FP16_MIXED, sharding=Sharding.ZERO3,
                     offload_optimizer=Offload.CPU, offload_params=Offload.CPU, recompute=Recompute.FULL)
    auto = estimate_memory(L32_3B.with_(num_layers=200), big.with_(offload_auto_cap=GEMINI_STEADY_CUDA_CAP_RATIO),
                           gpu_memory_bytes=gpu_mem)
    assert auto.peak_allocated_bytes == pytest.approx(0.9 * gpu_mem)
    # a model that fits under the cap stays on the GPU (same as no offload)
    small = estimate_memory(L32_3B, big.with_(offload_auto_cap=0.9), gpu_memory_bytes=80 * GIB)
    none = estimate_memory(L32_3B, big.with_(offload_optimizer=Offload.NONE, offload_params=Offload.NONE),
                           gpu_memory_bytes=80 * GIB)
    assert small.peak_allocated_bytes == pytest.approx(none.peak_allocated_bytes)
    # Lightning ColossalAIStrategy(placement_policy="auto"), GPT-2 24B on one A100 40GB: 36483 MiB measured
    from sizeup.validate.runner import run_validation

    row = next(r for r in run_validation(id_contains="colossalai-lightning-gpt2-24b-1gpu-auto").rows
               if r.quantity == "peak_memory_allocated")
    assert row.ok and abs(row.error_pct) < 5


def test_bitsandbytes_4bit_linears_keep_their_inputs():
    # bitsandbytes MatMul4Bit.forward: ctx.tensors = (A, B) whenever A needs a gradient, so every 4-bit base Linear
    # keeps its input; torchao's NF4 linear (torchtune) keeps only the weight. Hand count per token per layer for LoRA
    # on q,v (inputs q/k/v share the attention norm output, already kept for the adapters): the MLP norm output
    # (2h), the reshaped attention output o_proj reads (2 o_dim) and the down_proj input (2f).
    base = TrainSetup(micro_batch=1, seq_len=1024, precision=Precision.BF16, peft=Peft.QLORA, lora_targets=("q", "v"))
    off = estimate_memory(L32_3B, base, kernel="hf-eager")
    on = estimate_memory(L32_3B, base.with_(nf4_saves_inputs=True), kernel="hf-eager")
    per_token_layer = 2 * 3072 + 2 * 3072 + 2 * 8192
    assert _fwd_layers(on) - _fwd_layers(off) == pytest.approx(per_token_layer * 1024 * 28, rel=1e-9)


def test_eager_modules_with_sdpa_are_not_eager_attention():
    # lit-gpt lit_gpt/model.py @8641822: F.scaled_dot_product_attention(..., is_causal=mask is None) with mask None in
    # training: flash / memory-efficient SDPA, no s x s scores, although the modules are eager PyTorch
    from sizeup.validate.prose import says

    assert not says("eager PyTorch modules (lit_gpt/model.py), SDPA attention", "eager_attention")
    assert says("attn_implementation='eager'", "eager_attention")
    assert says("eager attention", "eager_attention")


def test_llama_adapter_v2_keeps_every_linear_output():
    # lit-gpt adapter_v2.py: adapter_scale * (linear(x) + adapter_bias) with a trained scale keeps each Linear's
    # output; norm_1 / norm_2 train, keeping their normalized inputs. Hand count per token per layer (bf16, Llama
    # MHA-free shape here: q 3072, k = v = 1024, o 3072, gate + up 2 x 8192, down 3072; two RMSNorms x 3072)
    base = TrainSetup(micro_batch=1, seq_len=1024, precision=Precision.BF16, peft=Peft.ADAPTER, lora_targets=(),
                      trainable_params=2e6)
    v1 = estimate_memory(L32_3B, base, kernel="hf-eager")
    v2 = estimate_memory(L32_3B, base.with_(adapter_linear_scales=True), kernel="hf-eager")
    per_token_layer = 2 * (3072 + 2 * 1024 + 3072 + 2 * 8192 + 3072) + 2 * 3072 * 2
    assert _fwd_layers(v2) - _fwd_layers(v1) == pytest.approx(per_token_layer * 1024 * 28, rel=1e-9)
