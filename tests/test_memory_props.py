"""Property tests for core/memory.py: invariants over random accepted setups."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sizeup.core.memory import (
    COMPONENTS, OFFLOAD_CODE, RECOMPUTE_CODE, SCHEDULE_CODE, SHARDING_CODE, _statics, check_setup, components_for,
    estimate_memory, memory_components,
)
from sizeup.core.types import (
    Attention, MlpKind, ModelArch, NormKind, Offload, Optimizer, Peft, PipelineSchedule, PositionKind, Precision,
    Recompute, Sharding, TrainSetup,
)

LLAMA = ModelArch(id="p-llama", name="p-llama", vocab_size=3000, hidden_size=128, num_layers=8, num_heads=8,
                  num_kv_heads=2, head_dim=16, ffn_size=344, max_seq_len=8192, hf_model_type="llama")
GPT = ModelArch(id="p-gpt", name="p-gpt", vocab_size=2000, hidden_size=96, num_layers=6, num_heads=4, num_kv_heads=4,
                head_dim=24, ffn_size=384, mlp_kind=MlpKind.GELU, norm_kind=NormKind.LAYERNORM, norm_bias=True,
                qkv_bias=True, out_bias=True, mlp_bias=True, position=PositionKind.LEARNED,
                num_position_embeddings=8192, max_seq_len=8192, tie_embeddings=True, hf_model_type="gpt2")
MOE = ModelArch(id="p-moe", name="p-moe", vocab_size=2000, hidden_size=128, num_layers=4, num_heads=8, num_kv_heads=4,
                head_dim=16, ffn_size=0, num_experts=8, experts_per_token=2, expert_ffn_size=128, max_seq_len=8192,
                hf_model_type="mixtral")
MODELS = [LLAMA, GPT, MOE]

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


@st.composite
def setups(draw):
    model = draw(st.sampled_from(MODELS))
    tp = draw(st.sampled_from([1, 2, 4]))
    pp = draw(st.sampled_from([1, 2]))
    cp = draw(st.sampled_from([1, 2]))
    dp = draw(st.sampled_from([1, 2, 4]))
    ep = draw(st.sampled_from([1, 2])) if model.is_moe else 1
    sharding = draw(st.sampled_from(list(Sharding)))
    peft = draw(st.sampled_from(list(Peft)))
    setup = TrainSetup(
        gpus=tp * pp * cp * dp, tp=tp, pp=pp, cp=cp, ep=ep,
        micro_batch=draw(st.integers(1, 8)), grad_accum=draw(st.integers(1, 8)),
        seq_len=draw(st.sampled_from([64, 256, 1024, 4096])),
        precision=draw(st.sampled_from(list(Precision))), optimizer=draw(st.sampled_from(list(Optimizer))),
        fused_optimizer=draw(st.booleans()), sharding=sharding, sequence_parallel=draw(st.booleans()),
        pp_schedule=draw(st.sampled_from(list(PipelineSchedule))), recompute=draw(st.sampled_from(list(Recompute))),
        attention=draw(st.sampled_from(list(Attention))),
        offload_optimizer=draw(st.sampled_from(list(Offload))),
        offload_params=draw(st.sampled_from(list(Offload))) if sharding in (Sharding.ZERO3, Sharding.FSDP_FULL)
        else Offload.NONE,
        offload_activations=draw(st.booleans()), peft=peft, lora_rank=draw(st.sampled_from([4, 16, 64])),
        lora_targets=tuple(draw(st.sets(st.sampled_from(["q", "k", "v", "o", "up", "down"]), min_size=1))),
        dropout=draw(st.sampled_from([0.0, 0.1])), gpus_per_node=draw(st.sampled_from([4, 8])),
    )
    assume(not check_setup(model, setup))
    kernel = draw(st.sampled_from(["fused", "hf-eager"]))
    return model, setup, kernel


@SETTINGS
@given(setups())
def test_breakdown_sums_to_total_and_everything_finite(case):
    model, setup, kernel = case
    est = estimate_memory(model, setup, gpu_memory_bytes=80 * 2**30, kernel=kernel)
    assert set(est.per_gpu) == set(COMPONENTS)
    values = list(est.per_gpu.values()) + [est.peak_allocated_bytes, est.peak_reserved_bytes, est.host_bytes,
                                           est.headroom_bytes, est.activation_bytes, est.model_state_bytes]
    assert all(math.isfinite(v) and v >= -1e-6 for v in values if v is not est.headroom_bytes)
    assert math.isfinite(est.headroom_bytes)
    assert sum(est.per_gpu.values()) == pytest.approx(est.peak_allocated_bytes, rel=1e-9)
    assert est.peak_reserved_bytes >= est.peak_allocated_bytes
    assert all(math.isfinite(t.value) for t in est.terms)


@SETTINGS
@given(setups(), st.integers(1, 4), st.sampled_from([2, 4]))
def test_memory_never_falls_when_micro_batch_or_seq_grows(case, extra_mb, seq_factor):
    model, setup, kernel = case
    base = estimate_memory(model, setup, kernel=kernel).peak_allocated_bytes
    more_mb = setup.with_(micro_batch=setup.micro_batch + extra_mb)
    longer = setup.with_(seq_len=setup.seq_len * seq_factor)
    assert estimate_memory(model, more_mb, kernel=kernel).peak_allocated_bytes >= base * (1 - 1e-12)
    if not check_setup(model, longer):
        assert estimate_memory(model, longer, kernel=kernel).peak_allocated_bytes >= base * (1 - 1e-12)


@SETTINGS
@given(setups(), st.sampled_from([2, 3, 4]))
def test_zero3_per_gpu_memory_never_rises_with_more_gpus(case, factor):
    model, setup, kernel = case
    setup = setup.with_(sharding=Sharding.ZERO3, ep=1)
    # from 2 data-parallel ranks up (going 1 -> 2 adds communication buckets and NCCL buffers)
    setup = setup.with_(gpus=setup.tp * setup.pp * setup.cp * max(2, setup.dp))
    assume(not check_setup(model, setup))
    grown = setup.with_(gpus=setup.gpus * factor)
    a = estimate_memory(model, setup, kernel=kernel)
    b = estimate_memory(model, grown, kernel=kernel)
    assert b.peak_allocated_bytes <= a.peak_allocated_bytes * (1 + 1e-12)


@SETTINGS
@given(st.lists(setups(), min_size=1, max_size=6))
def test_array_kernel_equals_scalar_path(cases):
    # plans of one model and the same plan-constant choices, evaluated at once with numpy arrays
    model, first, kernel = cases[0]
    same = [(s) for m, s, k in cases if m is model and k == kernel]
    const = dict(precision=first.precision, optimizer=first.optimizer, fused_optimizer=first.fused_optimizer,
                 peft=first.peft, lora_rank=first.lora_rank, lora_targets=first.lora_targets,
                 attention=first.attention, dropout=first.dropout)
    plans = [s.with_(**const) for s in same]
    plans = [p for p in plans if not check_setup(model, p)]
    assume(plans)
    arr = lambda f: np.array([f(p) for p in plans])  # noqa: E731
    out = memory_components(
        model, tp=arr(lambda p: p.tp), pp=arr(lambda p: p.pp), dp=arr(lambda p: p.dp), cp=arr(lambda p: p.cp),
        ep=arr(lambda p: p.ep), micro_batch=arr(lambda p: p.micro_batch), grad_accum=arr(lambda p: p.grad_accum),
        seq_len=arr(lambda p: p.seq_len), sharding_code=arr(lambda p: SHARDING_CODE[p.sharding]),
        recompute_code=arr(lambda p: RECOMPUTE_CODE[p.recompute]),
        offload_optimizer_code=arr(lambda p: OFFLOAD_CODE[p.offload_optimizer]),
        offload_params_code=arr(lambda p: OFFLOAD_CODE[p.offload_params]),
        offload_activations=arr(lambda p: p.offload_activations),
        sequence_parallel=arr(lambda p: p.sequence_parallel), schedule_code=arr(lambda p: SCHEDULE_CODE[p.pp_schedule]),
        virtual_pp=arr(lambda p: p.virtual_pp), gpus_per_node=arr(lambda p: p.gpus_per_node),
        kernel=kernel, statics=_statics(model, plans[0], kernel), **const,
    )
    for i, plan in enumerate(plans):
        scalar = components_for(model, plan, kernel)
        for key in (*COMPONENTS, "total", "host", "phase", "stage"):
            assert float(out[key][i]) == pytest.approx(float(scalar[key]), rel=1e-9, abs=1e-6), key
