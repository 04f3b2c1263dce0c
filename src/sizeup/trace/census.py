"""Who holds the memory: a census of the live tensors at a moment of a traced training step.

`LiveCensus` extends `LiveBytes` with, for every storage, the aten op that created it, the module that
was running (slash path, layer index kept), its shape and dtype. `activation_census(...)` traces one
step and returns the storages created during the forward that are still alive at its end (exactly
the traced `activation_bytes`), and the live set at the backward peak. Used by `sizeup trace --breakdown`
and to diagnose the analytic activation formulas (tests/test_memory_vs_trace.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from sizeup.trace.emulate import LiveBytes


@dataclass(frozen=True)
class Holder:
    """One live storage: what created it and where."""

    module: str
    op: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    phase: str

    def as_dict(self) -> dict:
        return {"module": self.module, "op": self.op, "shape": list(self.shape), "dtype": self.dtype,
                "bytes": self.nbytes, "phase": self.phase}


class LiveCensus(LiveBytes):
    """LiveBytes that remembers who created each storage, and snapshots the live set at a window's peak.

    Module attribution is exact in the forward; in the backward, non-reentrant checkpointing stops a
    recompute early (its forward hooks never close), so backward attributions are only indicative.
    """

    def __init__(self, align: int = 512):
        super().__init__(align)
        self.info: dict[int, Holder] = {}
        self.module_stack: list[str] = ["<top>"]
        self.phase = "setup"
        self._op = "<untracked>"
        self.snapshot_at_peak = False
        self.peak_snapshot: list[Holder] = []

    def _on_alloc(self, key: int, t: Any, nbytes: int) -> None:
        self.info[key] = Holder(self.module_stack[-1], self._op, tuple(t.shape), str(t.dtype).replace("torch.", ""),
                                nbytes, self.phase)

    def _on_free(self, key: int) -> None:
        self.info.pop(key, None)

    def _on_peak(self) -> None:
        if self.snapshot_at_peak:
            self.peak_snapshot = list(self.info.values())

    def live_holders(self) -> list[Holder]:
        return list(self.info.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._op = str(func.overloadpacket.__name__)
        for t in tree_leaves(out):
            self.track(t)
        return out


def _module_hooks(model, census: LiveCensus) -> None:
    names = {id(m): n or "model" for n, m in model.named_modules()}

    def pre(module, args):
        census.module_stack.append(names.get(id(module), type(module).__name__))

    def post(module, args, output):
        if len(census.module_stack) > 1:
            census.module_stack.pop()

    for module in model.modules():
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def activation_census(model_spec: Any, micro_batch: int, seq_len: int, precision: str = "bf16",
                      gradient_checkpointing: bool = False, layers: int | None = None,
                      cuda_like: bool = True, dropout: float = 0.0) -> dict:
    """Trace 2 steps; return {"activations": [Holder...] alive at forward end (step 2),
    "backward_peak": [Holder...] live at the backward peak, "activation_bytes", "backward_peak_bytes"}."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from sizeup.trace.emulate import CudaLike
    from sizeup.trace.tracer import _build, _real_run_masking, _with_layers, config_layers, hf_config_for

    cfg, _ = hf_config_for(model_spec, dropout)
    if layers:
        cfg = _with_layers(cfg, layers)
    param_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    amp_dtype = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(precision)
    amp = (lambda: torch.autocast("cpu", dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    emu = CudaLike if cuda_like else contextlib.nullcontext
    result: dict[str, Any] = {}
    with FakeTensorMode(), _real_run_masking():
        model, _ = _build(cfg, param_dtype)
        model.train()
        if gradient_checkpointing:
            kw = {"use_reentrant": False}
            if cuda_like:
                kw["context_fn"] = lambda: (contextlib.nullcontext(), CudaLike())
            model.activation_checkpointing_enable(kw)
        params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
        census = LiveCensus()
        for t in (*params, *model.buffers()):
            census.track(t)
        _module_hooks(model, census)
        with census:
            ids = torch.zeros((micro_batch, seq_len), dtype=torch.long)
            for step in range(2):
                census.phase = "forward"
                census.window("idle")
                before = census.live
                with amp(), emu():
                    loss = model(input_ids=ids, labels=ids).loss
                acts = [h for h in census.live_holders() if h.phase == "forward"]
                act_bytes = census.live - before
                census.window("forward")
                census.phase = "backward"
                census.snapshot_at_peak = step == 1
                census.peak_snapshot = census.live_holders()
                loss.backward()
                del loss
                census.snapshot_at_peak = False
                bwd_peak = census.window("backward")
                snapshot = census.peak_snapshot
                census.phase = "optimizer"
                opt.step()
                opt.zero_grad(set_to_none=True)
                census.phase = "idle"
        result = {"activations": acts, "activation_bytes": act_bytes, "backward_peak": snapshot,
                  "backward_peak_bytes": bwd_peak, "layers": config_layers(cfg)}
    return result


def group(holders, by_layer: bool = True) -> list[tuple[str, str, str, int, int]]:
    """(module with the layer index replaced by '*', op, dtype, count, bytes) sorted by bytes."""
    import re

    acc: dict[tuple[str, str, str], list[int]] = {}
    for h in holders:
        module = re.sub(r"\.(\d+)(\.|$)", r".*\2", h.module) if by_layer else h.module
        key = (module, h.op, h.dtype)
        cur = acc.setdefault(key, [0, 0])
        cur[0] += 1
        cur[1] += h.nbytes
    rows = [(m, op, dt, n, b) for (m, op, dt), (n, b) in acc.items()]
    return sorted(rows, key=lambda r: -r[4])


def summarize(holders) -> str:
    """One line per (module, op, dtype) group: bytes, tensor count."""
    lines = []
    for module, op, dtype, n, nbytes in group(holders):
        lines.append(f"{nbytes:>14,}  x{n:<4} {dtype:9} {op:28} {module}")
    return "\n".join(lines)


def activation_breakdown(model_spec: Any, micro_batch: int, seq_len: int, precision: str = "bf16",
                         gradient_checkpointing: bool = False, cuda_like: bool = True,
                         dropout: float = 0.0, depth: int = 2) -> list[dict]:
    """What the forward leaves alive for the backward, per layer and outside the layers.

    Traced at `depth` identical layers; rows whose module sits under a numbered layer are divided by
    `depth` (bytes per layer), the rest are whole-model. Sorted: per-layer rows first, largest first.
    """
    import re

    res = activation_census(model_spec, micro_batch, seq_len, precision, gradient_checkpointing,
                            layers=depth, cuda_like=cuda_like, dropout=dropout)
    tokens = micro_batch * seq_len
    rows = []
    for module, op, dtype, n, nbytes in group(res["activations"]):
        per_layer = bool(re.search(r"\.\*(\.|$)", module))
        value = nbytes // depth if per_layer else nbytes
        rows.append({"scope": "per layer" if per_layer else "model", "module": module, "op": op, "dtype": dtype,
                     "tensors": n // depth if per_layer else n, "bytes": value,
                     "bytes_per_token": value / tokens})
    rows.sort(key=lambda r: (r["scope"] != "per layer", -r["bytes"]))
    return rows
