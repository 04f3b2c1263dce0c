"""How much training: tokens directly, or samples x tokens per sample x epochs; and batch consistency.

Symbols: D tokens, S samples, t tokens per sample, E epochs, B global batch (sequences per optimizer step),
b micro-batch (sequences per GPU per forward/backward), dp data-parallel degree, g gradient accumulation.
Consistency (every data-parallel trainer: PyTorch DDP, DeepSpeed `train_batch_size`, Megatron `--global-batch-size`):
    B = b * dp * g.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sizeup.core.explain import Term
from sizeup.errors import SizeupError


@dataclass(frozen=True)
class Workload:
    """Training amount. Give `tokens`, or `samples` (+ `tokens_per_sample`, `epochs`)."""

    tokens: float | None = None
    samples: float | None = None
    tokens_per_sample: float | None = None
    epochs: float = 1.0

    def __post_init__(self):
        for name in ("tokens", "samples", "tokens_per_sample"):
            v = getattr(self, name)
            if v is not None and (not math.isfinite(v) or v <= 0):
                raise SizeupError(f"{name.replace('_', '-')} must be > 0, got {v}")
        if not math.isfinite(self.epochs) or self.epochs <= 0:
            raise SizeupError(f"epochs must be > 0, got {self.epochs}")
        if self.tokens is None and self.samples is None:
            raise SizeupError("give the amount of training: --tokens, or --samples with --tokens-per-sample (and --epochs)")
        if self.tokens is None and self.tokens_per_sample is None:
            raise SizeupError("--samples needs --tokens-per-sample (average tokens per sample) to count tokens")

    @property
    def total_tokens(self) -> float:
        """D = tokens (x epochs when given as samples: S * t * E)."""
        if self.tokens is not None:
            return float(self.tokens) * self.epochs
        return float(self.samples) * float(self.tokens_per_sample) * self.epochs

    def term(self) -> Term:
        if self.tokens is not None:
            return Term("workload/tokens", self.total_tokens, "tokens", "D = tokens" + (" * epochs" if self.epochs != 1 else ""),
                        {"tokens": self.tokens, "epochs": self.epochs}, "user input")
        return Term("workload/tokens", self.total_tokens, "tokens", "D = samples * tokens_per_sample * epochs",
                    {"samples": self.samples, "tokens_per_sample": self.tokens_per_sample, "epochs": self.epochs},
                    "user input")


@dataclass(frozen=True)
class BatchPlan:
    global_batch: int
    micro_batch: int
    dp: int
    grad_accum: int
    notes: tuple[str, ...] = field(default=())


def resolve_batch(dp: int, micro_batch: int | None = None, global_batch: int | None = None,
                  grad_accum: int | None = None) -> BatchPlan:
    """Fill in the missing one of (global batch, micro-batch, grad accumulation) so that B = b * dp * g.

    Inconsistent values (B not a multiple of b*dp, or all three given and B != b*dp*g) are a SizeupError.
    """
    dp = max(1, int(dp))
    for name, v in (("micro-batch", micro_batch), ("global-batch", global_batch), ("grad-accum", grad_accum)):
        if v is not None and v <= 0:
            raise SizeupError(f"--{name} must be > 0, got {v}")
    notes: list[str] = []
    if global_batch is not None and micro_batch is not None and grad_accum is not None:
        if global_batch != micro_batch * dp * grad_accum:
            raise SizeupError(f"inconsistent batch: global batch {global_batch} != micro-batch {micro_batch} x "
                              f"data-parallel {dp} x grad accumulation {grad_accum} = {micro_batch * dp * grad_accum}")
        return BatchPlan(global_batch, micro_batch, dp, grad_accum)
    if global_batch is not None:
        if micro_batch is None and grad_accum is not None:
            micro_batch = global_batch // (dp * grad_accum) if global_batch % (dp * grad_accum) == 0 else None
            if micro_batch is None or micro_batch < 1:
                raise SizeupError(f"inconsistent batch: global batch {global_batch} is not a multiple of data-parallel "
                                  f"{dp} x grad accumulation {grad_accum}")
        micro_batch = micro_batch or 1
        if global_batch % (micro_batch * dp) != 0:
            raise SizeupError(f"inconsistent batch: global batch {global_batch} must be micro-batch {micro_batch} x "
                              f"data-parallel {dp} x grad accumulation (a multiple of {micro_batch * dp}); "
                              f"try --global-batch {max(1, round(global_batch / (micro_batch * dp))) * micro_batch * dp}")
        grad_accum = global_batch // (micro_batch * dp)
        return BatchPlan(global_batch, micro_batch, dp, grad_accum)
    micro_batch = micro_batch or 1
    grad_accum = grad_accum or 1
    return BatchPlan(micro_batch * dp * grad_accum, micro_batch, dp, grad_accum, tuple(notes))
