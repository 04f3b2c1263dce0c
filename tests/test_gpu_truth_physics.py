"""Mechanisms found on the H200 ground-truth rows (issue 16), checked against their independent references: the
measured kernel files of the run (benchmarks/data/gpu_truth/h200-2026-12-04/run1), torch's foreach AdamW kernel list
(torch/optim/adam.py _multi_tensor_adam) and the SDPA backend rule (sdp_utils.cpp check_prefer_cudnn_attention)."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

RUN1 = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "gpu_truth" / "h200-2026-12-04" / "run1"
ROWS = Path(__file__).resolve().parents[1] / "src" / "sizeup" / "validate" / "data" / "gpu_truth_h200.yaml"
PEAK_BF16 = 989e12  # H200 dense bf16 peak (catalog gpus/h200.yaml, mle_tflops)


def _attention_csv() -> list[dict]:
    with open(RUN1 / "attention.csv") as fh:
        return list(csv.DictReader(fh))


def test_h200_attention_tables_are_the_measured_kernels():
    """timing.yaml's H200 entries are the run's SDPA measurements: the default dispatch (cuDNN on torch 2.11) for the
    fused table, the FLASH_ATTENTION backend (FlashAttention-2) for the FA2 table; causal, head dim 128."""
    from sizeup.core.timing import _attention_eff
    from sizeup.catalog import load_catalog
    from sizeup.catalog.knobs import load_timing_knobs

    rows = _attention_csv()
    default = [r for r in rows if r["backend"] == "default" and r["causal"] == "True" and r["head_dim"] == "128"
               and int(r["seq"]) >= 2048]
    fwd = statistics.median(float(r["fwd_tflops"]) * 1e12 / PEAK_BF16 for r in default)
    bwd = statistics.median(float(r["bwd_tflops"]) * 1e12 / PEAK_BF16 for r in default)
    fa2 = next(r for r in rows if r["backend"] == "FLASH_ATTENTION" and r["causal"] == "True")
    cud = next(r for r in rows if r["backend"] == "CUDNN_ATTENTION" and r["causal"] == "True")
    # the default dispatch runs cuDNN: same rate as the forced CUDNN_ATTENTION backend, ~1.9x FlashAttention-2
    same = next(r for r in default if r["seq"] == cud["seq"] and r["batch"] == cud["batch"])
    assert float(same["fwd_tflops"]) == pytest.approx(float(cud["fwd_tflops"]), rel=0.02)
    assert float(cud["fwd_tflops"]) > 1.7 * float(fa2["fwd_tflops"])
    gpu, knobs = load_catalog().gpu("h200"), load_timing_knobs()
    assert _attention_eff(gpu, knobs, "eager", cudnn_attention=True) == pytest.approx((fwd, bwd), abs=0.002)
    assert _attention_eff(gpu, knobs, "eager") == pytest.approx(
        (float(fa2["fwd_tflops"]) * 1e12 / PEAK_BF16, float(fa2["bwd_tflops"]) * 1e12 / PEAK_BF16), abs=0.002)
    # GPUs without a fused entry (torch prefers cuDNN on sm90/sm100 only) keep the FlashAttention-2 table
    a100 = load_catalog().gpu("a100-80gb-sxm")
    assert _attention_eff(a100, knobs, "eager", cudnn_attention=True) == _attention_eff(a100, knobs, "eager")


def test_torch_211_sdpa_rows_run_cudnn_attention_and_foreach_rows_the_foreach_step():
    from sizeup.catalog import load_catalog
    from sizeup.core.types import Attention
    from sizeup.validate.points import load_points
    from sizeup.validate.runner import Context

    cat = load_catalog()
    pts = {p.id: p for p in load_points(ROWS)}
    fused = Context(pts["gpu-truth-nvidia-h200-llama-3.2-1b-l16-mb4-s2048-bf16-mixed-adamw-fused-rc-none-tput"], cat)
    foreach = Context(pts["gpu-truth-nvidia-h200-llama-3.2-1b-l16-mb4-s2048-bf16-mixed-adamw-foreach-rc-none-tput"], cat)
    assert fused.setup.attention == Attention.CUDNN and fused.setup.fused_optimizer
    assert not foreach.setup.fused_optimizer
    # torch/optim/adam.py _multi_tensor_adam: mul_(p) 8 + lerp_(m, g) 12 + mul_(v) 8 + addcmul_(v, g, g) 12
    # + sqrt(v) 8 + div_ 8 + add_(eps) 8 + addcdiv_(p, m, d) 16 = 80 B per fp32 parameter; fused: 36 (timing.yaml)
    params = 1_235_814_400
    gpu = cat.gpu("h200")
    expected = params * (80 - 36) / (gpu.hbm_bytes_per_s * gpu.hbm_efficiency)
    got = foreach.step.breakdown["optimizer_step"] - fused.step.breakdown["optimizer_step"]
    assert got == pytest.approx(expected, rel=1e-6)
    # and the measured foreach - fused gap of the run (0.1965 - 0.1815 s) is within 25 % of it
    assert abs(expected - (0.19648 - 0.18145)) < 0.25 * (0.19648 - 0.18145)


def test_attention_cudnn_is_a_job_choice_and_keeps_no_scores():
    """--attention cudnn: accepted by the job parser; memory treats it as flash (no s x s scores); the step is faster
    than FlashAttention-2 on an H200 at long sequence (the cuDNN table is ~1.9x the FA2 one)."""
    from sizeup.job import build_job
    from sizeup.pipeline import memory_for, step_for

    base = {"model": "llama-3.1-8b", "gpu": "h200", "gpus": 1, "seq": 8192, "micro_batch": 1, "precision": "bf16",
            "recompute": "full"}
    flash, cudnn = build_job(dict(base, attention="flash")), build_job(dict(base, attention="cudnn"))
    assert memory_for(cudnn).peak_allocated_bytes == memory_for(flash).peak_allocated_bytes
    a_f = step_for(flash).breakdown["compute/attention"]
    a_c = step_for(cudnn).breakdown["compute/attention"]
    assert 1.6 < a_f / a_c < 2.2


def test_autocast_weight_cast_and_fp32_residual_traffic():
    """Eager AMP over fp32 weights: per micro-batch a forward cast (read 4 B, write 2 B) and a gradient cast back
    (read 2 B, write 4 B) of every layer GEMM weight = 12 B each, plus the fp32 residual stream's extra traffic, as
    HBM time; pure bf16 has none, LoRA on a frozen bf16 base neither. Reference: the hand count of Llama-3.2-1B's
    layer weights (16 x (q 2048x2048 + k,v 2048x512 + o 2048x2048 + 3 x 2048x8192)) and widths."""
    from sizeup.catalog import load_catalog
    from sizeup.catalog.knobs import load_timing_knobs
    from sizeup.core.timing import kernel_args, step_kernel
    from sizeup.validate.points import load_points
    from sizeup.validate.runner import Context

    cat = load_catalog()
    pts = {p.id: p for p in load_points(ROWS)}
    ctx = Context(pts["gpu-truth-nvidia-h200-llama-3.2-1b-l16-mb4-s2048-bf16-mixed-adamw-fused-rc-none-tput"], cat)
    job = ctx.job()[0]
    knobs = load_timing_knobs()
    mi, g, plan = kernel_args(job.model, job.setup, job.gpu, knobs, job.execution.timing_kernel)
    assert plan["autocast_weight_cast"] is True
    on = step_kernel(mi, g, knobs, **plan)["elementwise_s"]
    off = step_kernel(mi, g, knobs, **dict(plan, autocast_weight_cast=False))["elementwise_s"]
    layer_weights = 2048 * 2048 + 2 * 2048 * 512 + 2048 * 2048 + 3 * 2048 * 8192
    # + the fp32 residual stream: 22 B x h + 16 B x (q 2048 + k 512) per token forward, backward 2x (timing.yaml
    # elementwise_bwd_factor), 8192 tokens per micro-batch
    resid = 3.0 * 8192 * (22.0 * 2048 + 16.0 * (2048 + 512))
    expected = 16 * (layer_weights * 12.0 + resid) / (g.hbm_bytes_per_s * g.hbm_efficiency)
    assert float(on - off) == pytest.approx(expected, rel=1e-9)
    pure = Context(pts["gpu-truth-nvidia-h200-llama-3.2-1b-l16-mb4-s2048-bf16-adamw-fused-rc-none-tput"], cat).job()[0]
    assert kernel_args(pure.model, pure.setup, pure.gpu, knobs, pure.execution.timing_kernel)[2]["autocast_weight_cast"] is False
    lora = Context(pts["gpu-truth-nvidia-h200-llama-3.2-1b-l16-mb4-s2048-lora-adamw-fused-rc-none-tput"], cat).job()[0]
    mi, g, plan = kernel_args(lora.model, lora.setup, lora.gpu, knobs, lora.execution.timing_kernel)
    on = step_kernel(mi, g, knobs, **plan)["elementwise_s"]
    off = step_kernel(mi, g, knobs, **dict(plan, autocast_weight_cast=False))["elementwise_s"]
    assert float(on - off) < 0.01 * float(off)  # adapters only (~0.1 % of the weights), no fp32 stream
