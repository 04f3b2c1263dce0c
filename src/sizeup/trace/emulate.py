"""The three torch modes exact mode runs a training step under (imports torch: load lazily).

* `LiveBytes`: a TorchDispatchMode that counts live tensor storages, each rounded up to the CUDA caching
  allocator's 512-byte block (c10/cuda/CUDACachingAllocator.cpp `kMinBlockSize`), and keeps a peak per window.
* `CudaLike`: a TorchFunctionMode that makes CPU fake tracing allocate what CUDA would:
  SDPA without dropout (flash saved set instead of the CPU math fallback), `F.dropout` as
  `native_dropout` (1-byte bool mask, CUDA's fused path), and CUDA autocast's fp32 op list
  (aten/src/ATen/autocast_mode.cpp, `KERNEL_CUDA(..., fp32)`), which CPU autocast leaves in bf16.
* `flop_mapping()`: FlopCounterMode formulas for ops torch 2.13 does not count on CPU: the CPU flash SDPA
  forward/backward and `_grouped_mm` (MoE experts).
Validated in /work/shared/reference/trace_feasibility.md (fake trace == real CPU allocator peak to 48 B;
CudaLike == fake-CUDA forward within 0.013 %).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

CUDA_BLOCK_BYTES = 512  # CUDACachingAllocator kMinBlockSize: every allocation rounds up to 512 B


def round_up(nbytes: int, align: int) -> int:
    return -(-int(nbytes) // align) * align if align > 1 else int(nbytes)


class LiveBytes(TorchDispatchMode):
    """Live bytes of every tensor storage produced by an op (or registered with `track`), freed on GC.

    `window(name)` closes the current window and records its peak; `peaks` maps window -> peak bytes.
    """

    def __init__(self, align: int = CUDA_BLOCK_BYTES):
        super().__init__()
        self.align = align
        self.live = 0
        self.window_peak = 0
        self.peaks: dict[str, int] = {}
        self._refs: dict[int, weakref.ref] = {}

    def track(self, t: Any) -> None:
        if not isinstance(t, torch.Tensor):
            return
        st = t.untyped_storage()
        key = st._cdata
        if key in self._refs:
            return
        nbytes = round_up(st.nbytes(), self.align)

        def _free(_ref, key=key, nbytes=nbytes, self_ref=weakref.ref(self)):
            me = self_ref()
            if me is not None and me._refs.pop(key, None) is not None:
                me.live -= nbytes
                me._on_free(key)

        self._refs[key] = weakref.ref(st, _free)
        self._on_alloc(key, t, nbytes)
        self.live += nbytes
        if self.live > self.window_peak:
            self.window_peak = self.live
            self._on_peak()

    # hooks for subclasses that attribute bytes (trace/census.py)
    def _on_alloc(self, key: int, t: Any, nbytes: int) -> None:
        pass

    def _on_free(self, key: int) -> None:
        pass

    def _on_peak(self) -> None:
        pass

    def storage_bytes(self, tensors) -> int:
        """Rounded bytes of the distinct storages among `tensors`."""
        seen: dict[int, int] = {}
        for t in tensors:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                seen[st._cdata] = round_up(st.nbytes(), self.align)
        return sum(seen.values())

    def window(self, name: str) -> int:
        """Close the window `name`: record and return its peak, start the next one at the current live bytes."""
        peak = max(self.window_peak, self.live)
        self.peaks[name] = peak
        self.window_peak = self.live
        return peak

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            self.track(t)
        return out


# CUDA autocast's fp32 list (autocast_mode.cpp, KERNEL_CUDA fp32) for the ops HF decoders call;
# CPU autocast runs these in the low-precision dtype (or leaves them alone).
# `fp32`: inputs cast to fp32; `fp32_set_opt_dtype` (sum, prod, cumsum, softmax, ...): run with dtype=fp32,
# which upcasts inside the kernel (no fp32 copy of the input) and returns fp32.
_FP32_NAMES = (
    "pow", "exp", "log", "log2", "log10", "log1p", "expm1", "rsqrt", "reciprocal", "layer_norm", "group_norm",
    "cross_entropy", "nll_loss", "logsumexp", "softplus", "erfinv", "acos", "asin", "cosh", "sinh", "tan", "norm",
    "mse_loss", "binary_cross_entropy_with_logits",
)
_SET_DTYPE_NAMES = ("sum", "prod", "cumsum", "cumprod", "softmax", "log_softmax")


def _funcs(names) -> frozenset:
    found = set()
    for name in names:
        for owner in (torch, F, torch.Tensor):
            fn = getattr(owner, name, None)
            if fn is not None:
                found.add(fn)
    return frozenset(found)


_FP32 = _funcs(_FP32_NAMES) | {torch.Tensor.__pow__, torch.Tensor.__rpow__}
_SET_DTYPE = _funcs(_SET_DTYPE_NAMES)
_LOW = (torch.bfloat16, torch.float16)


def _to_fp32(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.dtype in _LOW:
        return x.float()
    return x


class CudaLike(TorchFunctionMode):
    """Make a CPU (fake) trace allocate like CUDA: flash-style SDPA, bool dropout masks, CUDA autocast fp32 ops."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is F.scaled_dot_product_attention:
            # CPU SDPA with dropout_p > 0 falls back to the math kernel (s x s tensors); CUDA flash does not.
            if len(args) > 4:
                args = (*args[:4], 0.0, *args[5:])
            kwargs["dropout_p"] = 0.0
        elif func is F.dropout:
            x = args[0] if args else kwargs.get("input")
            p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
            training = args[2] if len(args) > 2 else kwargs.get("training", True)
            inplace = args[3] if len(args) > 3 else kwargs.get("inplace", False)
            if training and 0.0 < p < 1.0 and not inplace:
                # CUDA's fused dropout keeps a 1-byte bool mask (native_dropout); CPU keeps a full-precision one.
                return torch.native_dropout(x, p, True)[0]
        elif func in _FP32 and torch.is_autocast_enabled("cpu"):
            args = tree_map(_to_fp32, args)
            kwargs = tree_map(_to_fp32, kwargs)
        elif (func in _SET_DTYPE and torch.is_autocast_enabled("cpu") and kwargs.get("dtype") is None
              and not any(isinstance(a, torch.dtype) for a in args)):
            first = args[0] if args else kwargs.get("input")
            if isinstance(first, torch.Tensor) and first.dtype in _LOW:
                kwargs["dtype"] = torch.float32
        return func(*args, **kwargs)


def flop_mapping() -> dict:
    """Extra FlopCounterMode formulas (shape-wrapped): CPU flash SDPA fwd/bwd and grouped GEMMs."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
        # same convention as torch's flash/efficient formulas: 2 matmuls, causal mask not halved
        return sdpa_flop_count(query, key, value)

    def sdpa_cpu_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        # torch's convention: recompute scores + 4 gradient matmuls = 2.5x forward
        return sdpa_backward_flop_count(grad_out, query, key, value)

    def grouped_mm(a, b, *args, out_shape=None, **kwargs) -> int:
        # each row of a 2-D operand belongs to exactly one group, so a grouped GEMM costs 2*M*K*N
        if len(a) == 2 and len(b) == 3:  # (M,K) x (G,K,N) -> (M,N)
            return 2 * a[0] * a[1] * b[2]
        if len(a) == 2 and len(b) == 2:  # (K,M) x (M,N) -> (G,K,N): weight gradient
            return 2 * a[0] * a[1] * b[1]
        if len(a) == 3 and len(b) == 2:  # (G,M,K) x (K,N) -> (M?,N): rare layout
            return 2 * a[1] * a[2] * b[1]
        return 2 * a[0] * a[1] * a[2] * b[2]  # (G,M,K) x (G,K,N) batched

    def grouped_fallback(x, w, *args, out_shape=None, **kwargs) -> int:
        # transformers::grouped_mm_fallback(input (S,K), weight (G,K,N), offs): 2*S*K*N
        return 2 * x[0] * x[1] * w[2]

    def grouped_fallback_bwd(x, w, *args, out_shape=None, **kwargs) -> int:
        # grad_input and grad_weight: two GEMMs of the forward's size
        return 4 * x[0] * x[1] * w[2]

    mapping: dict[Any, Callable] = {}
    hf_ops = getattr(torch.ops, "transformers", None)
    for name, fn in (("grouped_mm_fallback", grouped_fallback), ("grouped_mm_fallback_backward", grouped_fallback_bwd)):
        try:
            mapping[getattr(hf_ops, name)] = fn  # FlopCounterMode keys on the overload packet
        except (AttributeError, RuntimeError):
            pass
    for name, fn in (
        ("_scaled_dot_product_flash_attention_for_cpu", sdpa_cpu),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", sdpa_cpu_bwd),
        ("_grouped_mm", grouped_mm),
    ):
        op = getattr(aten, name, None)
        if op is not None:
            mapping[op] = fn
    return mapping


SDPA_OP_NAMES = ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention")
