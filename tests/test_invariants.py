"""Invariant properties of the library (issue 15) that tests/test_memory_props.py does not already cover:
tokens/s x time = tokens, cost linear in price, every figure of a training estimate finite and >= 0, and the
ZeRO-3 per-GPU memory non-increasing in GPUs on real catalog GPUs. (Memory monotone in micro-batch and sequence,
breakdown sums and ZeRO-3 on toy models are in test_memory_props.py.)"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sizeup.catalog import load_catalog
from sizeup.core.cost import CostKnobs, Offer, estimate_cost
from sizeup.core.estimate import estimate_training
from sizeup.core.memory import check_setup, estimate_memory
from sizeup.core.timing import runnable_precisions
from sizeup.core.types import Precision, Recompute, Sharding, TrainSetup
from sizeup.core.workload import Workload

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
CATALOG = load_catalog()
MODELS = ["gpt2", "llama-2-7b", "mixtral-8x7b", "gemma-2-2b"]
GPUS = ["h100-sxm", "a100-80gb-sxm", "t4", "tpu-v5e", "gaudi2", "mi300x", "rtx-4090", "v100-32gb-sxm"]


@st.composite
def plans(draw):
    model = CATALOG.model(draw(st.sampled_from(MODELS)))
    gpu = CATALOG.gpu(draw(st.sampled_from(GPUS)))
    precision = Precision(draw(st.sampled_from(runnable_precisions(gpu))))
    tp = draw(st.sampled_from([1, 2, 4]))
    dp = draw(st.sampled_from([1, 2, 8]))
    setup = TrainSetup(gpus=tp * dp, tp=tp, micro_batch=draw(st.integers(1, 8)), grad_accum=draw(st.integers(1, 4)),
                       seq_len=draw(st.sampled_from([256, 1024, 2048])), precision=precision,
                       sharding=draw(st.sampled_from([Sharding.NONE, Sharding.ZERO1, Sharding.ZERO3])),
                       recompute=draw(st.sampled_from(list(Recompute))), gpus_per_node=8)
    assume(not check_setup(model, setup))
    return model, gpu, setup


def _numbers(obj, path="est", depth=0):
    """(path, value) of every float/int field of a dataclass tree."""
    if depth > 3:
        return
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj
    elif hasattr(obj, "__dataclass_fields__"):
        for f in fields(obj):
            if f.name != "terms":
                yield from _numbers(getattr(obj, f.name), f"{path}.{f.name}", depth + 1)


@SETTINGS
@given(plans(), st.sampled_from([1e6, 3.3e8, 1e10]))
def test_tokens_per_second_times_time_is_the_tokens_trained(plan, tokens):
    model, gpu, setup = plan
    est = estimate_training(model, setup, gpu, Workload(tokens=tokens), with_memory=False)
    trained = est.tokens_per_s * est.total_time_s  # whole steps: at least the tokens, less than one step more
    assert trained == pytest.approx(est.steps * setup.tokens_per_step, rel=1e-9)
    assert tokens * (1 - 1e-9) <= trained < tokens + setup.tokens_per_step * (1 + 1e-9)


@SETTINGS
@given(plans())
def test_every_training_figure_is_finite_and_non_negative(plan):
    model, gpu, setup = plan
    est = estimate_training(model, setup, gpu, Workload(tokens=1e9), with_memory=True)
    # headroom = GPU memory - need is a signed difference (negative = does not fit, with fits false)
    bad = [(p, v) for p, v in _numbers(est) if not math.isfinite(v) or (v < 0 and "headroom" not in p)]
    assert not bad, bad
    assert all(math.isfinite(t.value) for t in est.terms if isinstance(t.value, (int, float)))


OFFER = Offer(platform="p", instance="i", gpu_id="h100-sxm", gpus_per_instance=8, pricing="on-demand",
              price_usd_per_hour=20.0, price_as_of="2026-01-01", price_source="test", billing_increment_s=1.0,
              storage_usd_per_gb_month=0.0)


@SETTINGS
@given(st.floats(60, 1e7), st.sampled_from([8, 16, 64]), st.floats(0.01, 1000), st.floats(1.5, 10))
def test_compute_cost_is_linear_in_price(compute_s, gpus, price, factor):
    a = estimate_cost(compute_s, gpus, replace(OFFER, price_usd_per_hour=price), knobs=CostKnobs())
    b = estimate_cost(compute_s, gpus, replace(OFFER, price_usd_per_hour=price * factor), knobs=CostKnobs())
    assert a.wall_clock_s == b.wall_clock_s and a.billed_s == b.billed_s  # time does not depend on price
    assert b.compute_cost_usd == pytest.approx(a.compute_cost_usd * factor, rel=1e-9)
    assert a.total_cost_usd >= a.compute_cost_usd >= 0


@SETTINGS
@given(st.sampled_from(["llama-2-7b", "mixtral-8x7b"]), st.sampled_from(["h100-sxm", "mi300x", "tpu-v5e"]),
       st.sampled_from([2, 4, 8]), st.sampled_from([2, 4]))
def test_zero3_memory_per_gpu_non_increasing_in_gpus_on_catalog_gpus(model_id, gpu_id, dp, factor):
    model, gpu = CATALOG.model(model_id), CATALOG.gpu(gpu_id)
    precision = Precision(runnable_precisions(gpu)[0] if "bf16-mixed" not in runnable_precisions(gpu)
                          else "bf16-mixed")
    small = TrainSetup(gpus=dp, micro_batch=1, grad_accum=1, seq_len=1024, precision=precision,
                       sharding=Sharding.ZERO3, gpus_per_node=8)
    big = replace(small, gpus=dp * factor)
    a = estimate_memory(model, small, gpu=gpu).peak_allocated_bytes
    b = estimate_memory(model, big, gpu=gpu).peak_allocated_bytes
    assert b <= a * (1 + 1e-9)
