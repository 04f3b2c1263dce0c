"""A whole training run: params, memory (when the memory model is installed), step time, steps, wall-clock, GPU-hours.

steps = ceil(D / (B * s)); total_time = steps * step_time; gpu_hours = total_time * gpus / 3600.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sizeup.core.explain import Term
from sizeup.core.flops import FlopsEstimate, flops_per_step
from sizeup.core.params import ParamCount, count_params
from sizeup.core.timing import StepEstimate, TimingKnobs, estimate_step, kernel_style
from sizeup.core.memory import estimate_memory
from sizeup.core.types import GpuSpec, ModelArch, Overheads, TrainSetup
from sizeup.core.workload import Workload


@dataclass(frozen=True)
class TrainEstimate:
    params: ParamCount
    memory: Any
    """MemoryEstimate from sizeup.core.memory, or None when not asked for (with_memory=False)."""
    flops: FlopsEstimate
    step: StepEstimate
    steps: int
    tokens: float
    total_time_s: float
    gpu_hours: float
    gpus: int
    terms: tuple[Term, ...] = field(default=())

    @property
    def tokens_per_s(self) -> float:
        return self.step.tokens_per_s

    @property
    def fits(self) -> bool | None:
        return None if self.memory is None else bool(self.memory.fits)

    @property
    def total_flops(self) -> float:
        return self.flops.model_flops * self.steps


def memory_kernel(kernel: str) -> str:
    """The memory profile that goes with a timing kernel family: eager modules keep HF-eager activations."""
    return "hf-eager" if kernel_style(kernel) == "eager" else "fused"


def estimate_training(model: ModelArch, setup: TrainSetup, gpu: GpuSpec, workload: Workload,
                      knobs: TimingKnobs | None = None, kernel: str = "fused", with_memory: bool = True,
                      overheads: Overheads | None = None) -> TrainEstimate:
    """Step estimate x number of optimizer steps for the workload's tokens (+ memory per GPU, with the
    framework overheads given; None = no overheads, i.e. allocated bytes only)."""
    pc = count_params(model)
    step = estimate_step(model, setup, gpu, knobs, kernel=kernel)
    fl = flops_per_step(model, setup)
    tokens = workload.total_tokens
    per_step = float(setup.tokens_per_step)
    steps = max(1, math.ceil(tokens / per_step - 1e-9))
    total = steps * step.step_time_s
    gpus = setup.tp * setup.pp * setup.cp * setup.dp
    gpu_hours = total * gpus / 3600.0
    memory = estimate_memory(model, setup, gpu, overheads=overheads, kernel=memory_kernel(kernel)) if with_memory else None
    terms = (
        workload.term(),
        Term("train/steps", float(steps), "steps", "ceil(D / (B * s))",
             {"D": tokens, "B": setup.global_batch, "s": setup.seq_len}, "optimizer steps to consume the tokens"),
        Term("train/total_time", total, "s", "steps * step_time", {"steps": steps, "step_time_s": step.step_time_s}, ""),
        Term("train/gpu_hours", gpu_hours, "GPU-h", "total_time * gpus / 3600", {"gpus": gpus}, ""),
        Term("train/6ND_time_at_this_mfu", 6.0 * pc.active * tokens / (gpus * step.peak_flops_per_s * max(step.mfu, 1e-9)),
             "s", "6 * N * D / (gpus * peak * MFU)", {"N": pc.active, "D": tokens, "MFU": step.mfu},
             "Transformer Math 101 rule of thumb, for comparison"),
    )
    return TrainEstimate(pc, memory, fl, step, steps, tokens, total, gpu_hours, gpus, terms + step.terms)
