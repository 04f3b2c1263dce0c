"""Optimizer step fused into backward and paged optimizers (core/memory.py, `sizeup memory`, validator mapping).

Sources: PyTorch tutorial "How to save memory by fusing the optimizer step into the backward pass"
(register_post_accumulate_grad_hook: step the parameter, then p.grad = None); torchtune README
"Memory and training speed" (+ Fuse optimizer step into backward: 24.9 -> 23.1 GiB on Llama-3.2-3B);
bitsandbytes docs "Paged optimizers" (CUDA unified memory, evicted to host under pressure).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sizeup.core.memory import COMPONENTS, check_setup, estimate_memory, memory_components, _statics
from sizeup.core.types import ModelArch, Optimizer, Precision, Recompute, Sharding, TrainSetup

# Tiny Llama-style model (untied head): V*h = 64_000 is the largest tensor (largest Linear 64 x 172).
LLAMA = ModelArch(id="tiny-llama", name="tiny Llama", vocab_size=1000, hidden_size=64, num_layers=4, num_heads=8,
                  num_kv_heads=2, head_dim=8, ffn_size=172, max_seq_len=4096, hf_model_type="llama")
BASE = TrainSetup(micro_batch=2, seq_len=256, precision=Precision.BF16, recompute=Recompute.FULL)


def test_optimizer_in_backward_keeps_one_tensor_gradient():
    # pure bf16: g_bytes = 2; live gradient = max(V*h, largest Linear) * 2 = 64_000 * 2 bytes (tutorial: one
    # parameter's grad at a time); the full buffer Psi * 2 is never live.
    off = estimate_memory(LLAMA, BASE)
    on = estimate_memory(LLAMA, BASE.with_(optimizer_in_backward=True))
    assert on.per_gpu["gradients"] <= 1000 * 64 * 2 + 1e-6
    assert on.phase_totals["opt"] == pytest.approx(
        on.per_gpu["model/weights"] + on.per_gpu["optimizer/states"] + 1000 * 64 * 2)
    assert on.peak_allocated_bytes < off.peak_allocated_bytes
    assert on.phase_totals["fwd"] <= off.phase_totals["fwd"]
    # everything but gradients is unchanged
    for key in ("model/weights", "optimizer/states", "activations/layers"):
        assert on.per_gpu[key] == pytest.approx(off.per_gpu[key]) or on.peak_phase != off.peak_phase
    assert sum(on.per_gpu.values()) == pytest.approx(on.peak_allocated_bytes)
    grad_term = next(t for t in on.terms if t.name == "memory/gradients")
    assert grad_term.inputs["optimizer_in_backward"] is True


def test_optimizer_in_backward_array_kernel_matches_scalar():
    # the plan search passes numpy arrays: a [False, True] flag must give the two scalar answers
    st = _statics(LLAMA, BASE, "fused")
    comp = memory_components(LLAMA, micro_batch=2, seq_len=256, recompute_code=2, precision=Precision.BF16,
                             statics=st, optimizer_in_backward=np.array([False, True]))
    for i, flag in enumerate((False, True)):
        est = estimate_memory(LLAMA, BASE.with_(optimizer_in_backward=flag))
        assert float(comp["total"][i]) == pytest.approx(est.peak_allocated_bytes)


@settings(max_examples=40, deadline=None)
@given(mb=hs.integers(1, 8), seq=hs.sampled_from([128, 512, 2048]), rec=hs.sampled_from(list(Recompute)),
       prec=hs.sampled_from([Precision.BF16, Precision.BF16_MIXED, Precision.FP32]),
       opt=hs.sampled_from([Optimizer.ADAMW, Optimizer.ADAM8BIT, Optimizer.SGD]), fused=hs.booleans(),
       kernel=hs.sampled_from(["fused", "hf-eager"]), paged=hs.booleans())
def test_breakdown_sums_and_never_grows(mb, seq, rec, prec, opt, fused, kernel, paged):
    setup = TrainSetup(micro_batch=mb, seq_len=seq, recompute=rec, precision=prec, optimizer=opt,
                       fused_optimizer=fused, paged_optimizer=paged)
    off = estimate_memory(LLAMA, setup, kernel=kernel, gpu_memory_bytes=1e6)
    on = estimate_memory(LLAMA, setup.with_(optimizer_in_backward=True), kernel=kernel, gpu_memory_bytes=1e6)
    for est in (off, on):
        assert sum(est.per_gpu.values()) == pytest.approx(est.peak_allocated_bytes, rel=1e-9)
        assert set(est.per_gpu) == set(COMPONENTS)
    assert on.peak_allocated_bytes <= off.peak_allocated_bytes * (1 + 1e-12)


def test_optimizer_in_backward_incompatibilities():
    assert check_setup(LLAMA, BASE.with_(optimizer_in_backward=True)) == []
    assert any("accumulate" in p for p in check_setup(LLAMA, BASE.with_(optimizer_in_backward=True, grad_accum=4)))
    assert any("pp 1" in p for p in check_setup(LLAMA, BASE.with_(optimizer_in_backward=True, gpus=2, pp=2,
                                                                  grad_accum=1)))
    for sharding in (Sharding.ZERO2, Sharding.ZERO3, Sharding.NONE):
        probs = check_setup(LLAMA, BASE.with_(optimizer_in_backward=True, gpus=4, sharding=sharding))
        assert any("does not work" in p for p in probs), sharding
    assert check_setup(LLAMA, BASE.with_(optimizer_in_backward=True, gpus=4, sharding=Sharding.FSDP_FULL)) == []


def test_paged_optimizer_states_go_to_host_only_when_they_do_not_fit():
    setup = BASE.with_(optimizer=Optimizer.ADAM8BIT, paged_optimizer=True)
    roomy = estimate_memory(LLAMA, setup, gpu_memory_bytes=80 * 2**30)
    assert roomy.per_gpu["optimizer/states"] > 0 and roomy.host_bytes == 0
    full = estimate_memory(LLAMA, setup)
    tight = estimate_memory(LLAMA, setup, gpu_memory_bytes=full.peak_allocated_bytes - 1)
    assert tight.per_gpu["optimizer/states"] == 0
    assert tight.host_bytes == pytest.approx(full.per_gpu["optimizer/states"])
    assert any(t.name == "memory/paged_optimizer" for t in tight.terms)


def test_cli_flags(capsys):
    from sizeup.cli import main

    args = ["memory", "llama-3.1-8b", "--gpu", "rtx-4090", "--micro-batch", "2", "--precision", "bf16",
            "--recompute", "full", "--optimizer", "paged_adamw_8bit", "--optimizer-in-backward", "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["setup"]["optimizer"] == "adam8bit"
    assert data["setup"]["paged_optimizer"] is True and data["setup"]["optimizer_in_backward"] is True
    assert data["fits"] is True and data["host_bytes"] > 10 * 2**30  # 8-bit states paged out to the host
    # measured 18.9 GiB (torchtune README, 1x 4090, Llama 3.1 8B full finetune): within 10 %
    assert data["peak_allocated_bytes"] / 2**30 == pytest.approx(18.9, rel=0.10)
    assert main(["memory", "llama-3.1-8b", "--gpu", "h100", "--global-batch", "4", "--optimizer-in-backward"]) == 2
    assert "accumulate" in capsys.readouterr().err


def test_validator_maps_the_torchtune_wording():
    from sizeup.validate.mapping import optimizer_in_backward
    from sizeup.validate.points import load_points

    by_id = {getattr(p, "id", None): p for p in load_points()}
    assert optimizer_in_backward(by_id["torchtune-llama32-3b-a100-opt-in-bwd"])
    assert optimizer_in_backward(by_id["torchtune-llama31-8b-full-4090"])
    assert not optimizer_in_backward(by_id["torchtune-llama32-3b-a100-ac"])


def test_suggestions_offer_the_fused_backward_step_only_where_it_works():
    from sizeup.core.memory import suggest_fixes

    setup = BASE.with_(precision=Precision.BF16_MIXED)
    need = estimate_memory(LLAMA, setup).peak_reserved_bytes
    fixes = suggest_fixes(LLAMA, setup, gpu_memory_bytes=need * 0.9)
    fused = [f for f in fixes if "backward" in f.change]
    assert fused and fused[0].setup.optimizer_in_backward
    assert fused[0].peak_allocated_bytes < estimate_memory(LLAMA, setup).peak_allocated_bytes
    accum = suggest_fixes(LLAMA, setup.with_(grad_accum=4), gpu_memory_bytes=need * 0.9)
    assert not [f for f in accum if "backward" in f.change]
