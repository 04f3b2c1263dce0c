"""Exact mode: run real training steps of the Hugging Face model on fake tensors and measure them.

The model is built from its config under `FakeTensorMode` on the CPU (no weights, no real memory),
then two full training steps run (forward + loss, backward, optimizer.step, zero_grad):
* memory: `LiveBytes` counts every live storage rounded to 512 B; the steady state is step 2,
  with a peak per phase window (forward, backward, optimizer);
* FLOPs: `FlopCounterMode` over step 1's forward + backward (recompute included when checkpointing).
Speed: a stack of identical layers is traced at two shallow depths and every figure extrapolated
linearly to the full depth (value(L) = v_b + (L - L_b) * (v_b - v_a) / (L_b - L_a)); that is exact for
homogeneous stacks (checked in tests/test_trace.py against a full-depth trace).
Method and validation: /work/shared/reference/trace_feasibility.md.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sizeup.core.explain import Term
from sizeup.core.types import ModelArch
from sizeup.errors import SizeupError

INSTALL_HINT = "exact mode needs the trace extra: pip install 'sizeup[trace]'"
PHASES = ("forward", "backward", "optimizer")
PRECISIONS = ("fp32", "tf32", "bf16-mixed", "fp16-mixed", "bf16")
OPTIMIZERS = ("adamw", "sgd")  # torch Adafactor reads tensor values (.item()), which fake tensors cannot
OPTIMIZER_IMPLS = ("fused", "foreach", "single")

Progress = Callable[[str], None]


def trace_available() -> bool:
    """True when torch and transformers can be imported (the `sizeup[trace]` extra)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


@dataclass(frozen=True)
class TraceResult:
    """Measured (traced) figures of one training micro-step on one device, steady state (2nd step).

    Bytes are allocator bytes (each tensor rounded to 512 B); FLOPs are FlopCounterMode counts of one
    forward + backward of `micro_batch` sequences of `seq_len` tokens (recompute included).
    """

    model_id: str
    hf_model_type: str
    num_layers: int
    traced_layers: tuple[int, ...]
    extrapolated: bool
    micro_batch: int
    seq_len: int
    precision: str
    optimizer: str
    optimizer_impl: str
    gradient_checkpointing: bool
    cuda_like: bool
    params: int
    trainable_params: int
    flops_per_step: int
    attention_flops_per_step: int
    flops_causal_per_step: int
    peak_bytes: int
    peak_phase: str
    phase_peak_bytes: Mapping[str, int]
    first_step_phase_peak_bytes: Mapping[str, int]
    activation_bytes: int
    weights_bytes: int
    grads_bytes: int
    optimizer_state_bytes: int
    step_start_bytes: int
    attention_mask_used: bool
    segment_peak_bytes: Mapping[str, int]
    torch_version: str
    transformers_version: str
    trace_s: float
    notes: tuple[str, ...] = ()
    terms: tuple[Term, ...] = field(default=())

    @property
    def tokens_per_step(self) -> int:
        return self.micro_batch * self.seq_len

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "terms"}
        out["phase_peak_bytes"] = dict(self.phase_peak_bytes)
        out["first_step_phase_peak_bytes"] = dict(self.first_step_phase_peak_bytes)
        out["segment_peak_bytes"] = dict(self.segment_peak_bytes)
        out["traced_layers"] = list(self.traced_layers)
        out["notes"] = list(self.notes)
        out["tokens_per_step"] = self.tokens_per_step
        return out


# --------------------------------------------------------------------------- config helpers


def _layers_key(cfg: Mapping[str, Any]) -> str:
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        if key in cfg:
            return key
    raise SizeupError("config has no layer count (num_hidden_layers / n_layer)")


def config_layers(cfg: Mapping[str, Any]) -> int:
    return int(cfg[_layers_key(cfg)])


def _with_layers(cfg: Mapping[str, Any], layers: int) -> dict:
    out = dict(cfg)
    out[_layers_key(cfg)] = layers
    if "mlp_only_layers" in out:
        out["mlp_only_layers"] = [i for i in out["mlp_only_layers"] if i < layers]
    for key in ("layer_types",):  # per-layer lists must match the depth
        if isinstance(out.get(key), list) and out[key]:
            seq = out[key]
            out[key] = [seq[i % len(seq)] for i in range(layers)]
    return out


def _period(seq: list) -> int:
    """Smallest p with seq[i] == seq[i % p] for all i (1 for an empty or constant list)."""
    for p in range(1, len(seq) + 1):
        if all(seq[i] == seq[i % p] for i in range(len(seq))):
            return p
    return max(1, len(seq))


def _extrapolation_depths(cfg: Mapping[str, Any], depth: int) -> tuple[int, int] | None:
    """Two shallow depths one repeating unit apart (leading dense layers kept), or None: trace every layer.

    The unit is one layer, or the period of the stack (MoE every n-th layer, alternating attention types).
    Extrapolation needs depth - first = whole units and depth beyond the two traced depths.
    """
    first = len(cfg.get("mlp_only_layers") or ()) or int(cfg.get("first_k_dense_replace") or 0)
    if cfg.get("mlp_only_layers") and list(cfg["mlp_only_layers"]) != list(range(first)):
        return None
    period = 1
    for key in ("decoder_sparse_step", "moe_layer_freq", "interleave_moe_layer_step"):
        period = max(period, int(cfg.get(key) or 1))
    for key in ("layer_types", "no_rope_layers"):
        if isinstance(cfg.get(key), list) and cfg[key]:
            period = max(period, _period(list(cfg[key])))
    if cfg.get("model_type") in ("gemma2", "cohere2") and not cfg.get("layer_types"):
        period = max(period, 2)  # sliding / global attention alternate
    la, lb = first + 2 * period, first + 3 * period
    if depth <= lb or (depth - first) % period:
        return None
    return la, lb


def _max_positions(cfg: Mapping[str, Any]) -> int | None:
    for key in ("n_positions", "max_position_embeddings"):
        if key in cfg and cfg[key]:
            return int(cfg[key])
    return None


# dropout keys of the transformers configs exact mode builds (set from the training setup's dropout)
_DROPOUT_KEYS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout", "dropout",
                 "activation_dropout", "emb_pdrop", "hidden_dropout_prob", "attention_probs_dropout_prob")


def hf_config_for(model: ModelArch | Mapping[str, Any], dropout: float = 0.0) -> tuple[dict, str]:
    """(transformers config dict, model id) from a ModelArch or an already-loaded config.json dict.

    A ModelArch with a Hugging Face model_type goes through `catalog.hf_config.to_hf_config_dict` (the
    inverse of the importer); others (and types it cannot export) through `trace.hfconfig`.
    Dropout comes from the setup for a ModelArch, from the file for a config.json.
    """
    if not isinstance(model, ModelArch):
        cfg = dict(model)
        if "model_type" not in cfg:
            raise SizeupError("config.json has no 'model_type'; exact mode needs a Hugging Face causal-LM config")
        return cfg, str(cfg.get("_name_or_path") or cfg["model_type"])
    from sizeup.trace.hfconfig import arch_to_hf_config

    cfg = None
    if model.hf_model_type:
        try:
            from sizeup.catalog.hf_config import to_hf_config_dict

            cfg = dict(to_hf_config_dict(model))
        except (ImportError, SizeupError):
            cfg = None
    if cfg is None:
        cfg = arch_to_hf_config(model, dropout)
    for key in _DROPOUT_KEYS:
        cfg[key] = dropout
    if cfg.get("model_type") == "mpt":
        cfg.setdefault("attn_config", {})
        cfg["attn_config"] = {**cfg["attn_config"], "attn_pdrop": dropout or 0}  # MptAttentionConfig: int 0 ok, 0.0 not
    cfg["use_cache"] = False
    return cfg, model.id


# --------------------------------------------------------------------------- one trace


def _build(cfg_dict: Mapping[str, Any], param_dtype):
    """The causal-LM module for the config (call under FakeTensorMode): (model, attention implementation)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    d = {k: v for k, v in cfg_dict.items() if k not in ("model_type", "torch_dtype", "dtype", "quantization_config",
                                                        "_name_or_path")}
    is_moe = any(k in cfg_dict for k in ("num_local_experts", "num_experts", "n_routed_experts"))
    attempts = [("sdpa", "grouped_mm"), ("sdpa", None), ("eager", None)] if is_moe else [("sdpa", None), ("eager", None)]
    old = torch.get_default_dtype()
    torch.set_default_dtype(param_dtype)
    error: Exception | None = None
    try:
        for attn, experts in attempts:
            cfg = AutoConfig.for_model(cfg_dict["model_type"], **d)  # fresh: from_config mutates it
            cfg.use_cache = False
            kwargs: dict[str, Any] = {"attn_implementation": attn}
            if experts:
                kwargs["experts_implementation"] = experts  # what transformers picks on a CUDA GPU
            try:
                return AutoModelForCausalLM.from_config(cfg, **kwargs), attn
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                error = exc
    finally:
        torch.set_default_dtype(old)
    msg = str(error).splitlines()[0] if error and str(error) else type(error).__name__
    raise SizeupError(f"transformers cannot build this {cfg_dict['model_type']!r} config: {msg}")


@contextlib.contextmanager
def _real_run_masking():
    """transformers treats a FakeTensor cache position as graph tracing and then always builds an explicit
    causal mask; a real eager training step (no padding, no cache) takes SDPA's is_causal fast path.
    Answer masking_utils' question the way a real run would."""
    try:
        from transformers import masking_utils
    except ImportError:  # pragma: no cover - older transformers
        yield
        return
    original = getattr(masking_utils, "_ignore_causal_mask_sdpa", None)
    if original is None:  # pragma: no cover
        yield
        return

    def ignore_causal_mask(padding_mask, q_length, kv_length, q_offset, kv_offset, local_attention_size=None):
        if padding_mask is None and (local_attention_size is None or kv_length < local_attention_size):
            return True  # training: q_offset == 0 and kv_length == q_length
        return original(padding_mask, q_length, kv_length, q_offset, kv_offset, local_attention_size)

    def find_packed_sequence_indices(position_ids, *args, **kwargs):
        return None  # the traced batch is one unpadded sequence per row (position_ids = arange), never packed

    saved = {name: getattr(masking_utils, name, None) for name in ("_ignore_causal_mask_sdpa",
                                                                    "find_packed_sequence_indices")}
    masking_utils._ignore_causal_mask_sdpa = ignore_causal_mask
    if saved["find_packed_sequence_indices"] is not None:
        masking_utils.find_packed_sequence_indices = find_packed_sequence_indices
    moe, can_grouped = None, None
    try:
        from transformers.integrations import moe

        can_grouped = getattr(moe, "_can_use_grouped_mm", None)
    except ImportError:  # pragma: no cover
        pass
    if can_grouped is not None:
        import torch

        def can_use_grouped_mm(input, weight, offs):
            # torch's _grouped_mm takes bf16 only (meta check mirrors the CUDA kernel); other dtypes take
            # transformers' own grouped_mm_fallback op, which saves the same tensors
            return weight.dtype == torch.bfloat16 and can_grouped(input, weight, offs)

        moe._can_use_grouped_mm = can_use_grouped_mm
    try:
        yield
    finally:
        for name, fn in saved.items():
            if fn is not None:
                setattr(masking_utils, name, fn)
        if can_grouped is not None:
            moe._can_use_grouped_mm = can_grouped


def _optimizer(params, name: str, impl: str, lr: float = 1e-4):
    import torch

    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "single": {"foreach": False}}[impl]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, **flags)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, **flags)
    raise SizeupError(f"exact mode supports --optimizer {', '.join(OPTIMIZERS)}, got {name!r}")


def _layer_stack(model) -> list:
    """The decoder layers (the largest ModuleList whose length is the config's depth)."""
    import torch

    depth = config_layers(model.config.to_dict())
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            return list(module)
    return []


def _first_tensor(args, kwargs):
    import torch

    for x in (*args, *kwargs.values()):
        if isinstance(x, torch.Tensor) and x.requires_grad:
            return x
    return None


def _close(tracker, name: str) -> None:
    tracker.window(name)  # a tensor hook must return None (or a replacement gradient)


def _segment_hooks(stack: list, tracker, state: dict) -> None:
    """Close a LiveBytes window at every layer boundary, in the forward and (via tensor hooks) the backward.

    Windows: forward/pre (embeddings), forward/layer{i}, forward/post (final norm, head, loss);
    backward/pre (loss, head), backward/layer{i}, backward/post (embeddings); optimizer/pre.
    The peak inside a run of identical layers is linear in the layer index, so the first and last
    layers bound it; each of these segment peaks is linear in depth, which makes extrapolation exact.
    """
    last = len(stack) - 1

    for i, layer in enumerate(stack):
        def pre(module, args, kwargs, i=i):
            if state["phase"] != "forward":
                return  # recompute under checkpointing
            tracker.window("forward/pre" if i == 0 else f"forward/layer{i - 1}")
            x = _first_tensor(args, kwargs)
            if x is not None:
                x.register_hook(lambda grad, i=i: _close(tracker, f"backward/layer{i}"))

        def post(module, args, output, i=i):
            if state["phase"] != "forward" or i != last:
                return
            tracker.window(f"forward/layer{i}")
            y = _first_tensor(output if isinstance(output, tuple) else (output,), {})
            if y is not None:
                y.register_hook(lambda grad: _close(tracker, "backward/pre"))

        layer.register_forward_pre_hook(pre, with_kwargs=True)
        layer.register_forward_hook(post)


def _segments(peaks: Mapping[str, int], depth: int) -> dict[str, int]:
    """Window peaks -> per phase: pre, first layer processed, last layer processed, post."""
    out: dict[str, int] = {}
    for phase, order in (("forward", range(depth)), ("backward", range(depth - 1, -1, -1)), ("optimizer", ())):
        idx = list(order)
        named = {"pre": peaks.get(f"{phase}/pre"), "post": peaks.get(f"{phase}/post")}
        if idx:
            named["first"] = peaks.get(f"{phase}/layer{idx[0]}")
            named["last"] = peaks.get(f"{phase}/layer{idx[-1]}")
        for kind, value in named.items():
            out[f"{phase}/{kind}"] = int(value) if value is not None else 0
    return out


def _trace_once(cfg_dict: Mapping[str, Any], micro_batch: int, seq_len: int, precision: str, optimizer: str,
                optimizer_impl: str, gradient_checkpointing: bool, cuda_like: bool, fake: bool = True,
                align: int | None = None) -> dict:
    """One traced depth: raw counters (segment peaks per step, FLOPs, bytes). `fake=False` runs the same
    two steps on real CPU tensors (used by the tests to check the fake trace against the real allocator)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    from sizeup.trace.emulate import SDPA_OP_NAMES, CudaLike, LiveBytes, flop_mapping

    param_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    amp_dtype = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(precision)

    masked = {"used": False}

    class _Cuda(CudaLike):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.nn.functional.scaled_dot_product_attention:
                mask = args[3] if len(args) > 3 else (kwargs or {}).get("attn_mask")
                masked["used"] = masked["used"] or mask is not None
            return super().__torch_function__(func, types, args, kwargs)

    def emu():
        return _Cuda() if cuda_like else contextlib.nullcontext()

    def amp():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=amp_dtype)

    with FakeTensorMode() if fake else contextlib.nullcontext(), _real_run_masking():
        model, attn_impl = _build(cfg_dict, param_dtype)
        model.train()
        if gradient_checkpointing:
            kw = {"use_reentrant": False}
            if cuda_like:
                # recompute runs inside backward, outside the modes entered around the step: re-enter CudaLike
                kw["context_fn"] = lambda: (contextlib.nullcontext(), _Cuda())
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(kw)
            else:  # transformers < 5
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
        params = list(model.parameters())
        n_params = sum(p.numel() for p in params)
        n_trainable = sum(p.numel() for p in params if p.requires_grad)
        opt = _optimizer([p for p in params if p.requires_grad], optimizer, optimizer_impl)

        tracker = LiveBytes() if align is None else LiveBytes(align)
        for t in (*params, *model.buffers()):
            tracker.track(t)
        stack = _layer_stack(model)
        state = {"phase": "idle"}
        _segment_hooks(stack, tracker, state)
        with tracker:
            ids = torch.zeros((micro_batch, seq_len), dtype=torch.long)
            out: dict[str, Any] = {}
            for step in range(2):
                tracker.window("idle")
                tracker.peaks.clear()
                before = tracker.live
                flops = FlopCounterMode(display=False, custom_mapping=flop_mapping()) if step == 0 else None
                with flops or contextlib.nullcontext():
                    state["phase"] = "forward"
                    with amp(), emu():
                        loss = model(input_ids=ids, labels=ids).loss
                    fwd_end = tracker.live
                    tracker.window("forward/post")
                    state["phase"] = "backward"
                    loss.backward()
                    del loss
                    tracker.window("backward/post")
                grads = tracker.storage_bytes(p.grad for p in params if p.grad is not None)
                state["phase"] = "optimizer"
                opt.step()
                opt.zero_grad(set_to_none=True)
                tracker.window("optimizer/pre")
                state["phase"] = "idle"
                for key, value in _segments(tracker.peaks, len(stack)).items():
                    out[f"seg{step}/{key}"] = value
                if flops is not None:
                    total = flops.get_total_flops()
                    attn = sum(v for op, v in flops.get_flop_counts().get("Global", {}).items()
                               if any(n in str(op) for n in SDPA_OP_NAMES))
                    out["flops"] = int(total)
                    out["attention_flops"] = int(attn)
                out["activation"] = fwd_end - before
                out["step_start"] = before
                out["grads"] = grads
            states = [v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
            out["optimizer_state"] = tracker.storage_bytes(states)
            out["weights"] = tracker.storage_bytes(params)
            out["params"] = n_params
            out["trainable_params"] = n_trainable
            out["attention_mask_used"] = masked["used"]
            out["attn_implementation"] = attn_impl
    return out


# --------------------------------------------------------------------------- public API


def trace_training(
    model: ModelArch | Mapping[str, Any],
    micro_batch: int = 1,
    seq_len: int = 2048,
    precision: str = "bf16-mixed",
    optimizer: str = "adamw",
    gradient_checkpointing: bool = False,
    layers: int | None = None,
    cuda_like: bool = True,
    optimizer_impl: str = "fused",
    extrapolate: bool = True,
    dropout: float = 0.0,
    progress: Progress | None = None,
) -> TraceResult:
    """Trace two training steps of `model` (a ModelArch or a Hugging Face config dict) on fake tensors.

    layers: report the model at this depth (default: its own); extrapolate: trace 2 shallow depths and
    extrapolate linearly (exact for identical layers) instead of tracing every layer.
    """
    precision = str(getattr(precision, "value", precision)).lower()
    optimizer = str(getattr(optimizer, "value", optimizer)).lower()
    if precision not in PRECISIONS:
        raise SizeupError(f"exact mode supports --precision {', '.join(PRECISIONS)}, got {precision!r}")
    if optimizer not in OPTIMIZERS:
        raise SizeupError(f"exact mode supports --optimizer {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if optimizer_impl not in OPTIMIZER_IMPLS:
        raise SizeupError(f"optimizer implementation must be one of {', '.join(OPTIMIZER_IMPLS)}, got {optimizer_impl!r}")
    if micro_batch < 1 or seq_len < 1:
        raise SizeupError(f"--micro-batch and --seq must be >= 1, got {micro_batch} and {seq_len}")
    if not trace_available():
        raise SizeupError(INSTALL_HINT)
    say = progress or (lambda msg: None)

    cfg, model_id = hf_config_for(model, dropout)
    depth = int(layers) if layers else config_layers(cfg)
    if depth < 1:
        raise SizeupError(f"--layers must be >= 1, got {depth}")
    max_pos = _max_positions(cfg)
    learned = cfg.get("model_type") in ("gpt2", "gpt_neo", "opt", "gpt_bigcode")
    if learned and max_pos and seq_len > max_pos:
        raise SizeupError(f"--seq {seq_len} exceeds the model's {max_pos} learned positions")

    import torch
    import transformers

    pair = _extrapolation_depths(cfg, depth) if extrapolate else None
    depths = pair if pair is not None else (depth,)
    t0 = time.perf_counter()
    raw = []
    hf_logging = transformers.utils.logging
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # config warnings (e.g. token ids outside a tiny vocab) are noise here
    try:
        for i, n in enumerate(depths):
            say(f"tracing {n}-layer model ({i + 1}/{len(depths)}): 2 training steps on fake tensors")
            raw.append(_trace_once(_with_layers(cfg, n), micro_batch, seq_len, precision, optimizer,
                                   optimizer_impl, gradient_checkpointing, cuda_like))
    finally:
        hf_logging.set_verbosity(verbosity)
    trace_s = time.perf_counter() - t0

    if pair is not None:
        (la, a), (lb, b) = zip(pair, raw)

        def val(key: str) -> int:
            # linear in depth: v(L) = v_b + (L - L_b) / (L_b - L_a) * (v_b - v_a), (L - L_b) whole units
            return int(b[key] + (depth - lb) // (lb - la) * (b[key] - a[key]))
    else:
        def val(key: str) -> int:
            return int(raw[0][key])

    def phase_peak(step: int, phase: str) -> int:
        # each segment peak is linear in depth; the phase peak is the largest segment
        keys = [k for k in raw[-1] if k.startswith(f"seg{step}/{phase}/")]
        return max(val(k) for k in keys)

    phase_peaks = {p: phase_peak(1, p) for p in PHASES}
    # where in the step each peak sits: forward/pre (embeddings), forward/first|last (first/last layer run),
    # forward/post (head + loss), backward/pre (loss + head backward), backward/first|last, backward/post
    segments = {k.split("/", 1)[1]: val(k) for k in raw[-1] if k.startswith("seg1/") and val(k) > 0}
    first_peaks = {p: phase_peak(0, p) for p in PHASES}
    peak_phase = max(PHASES, key=lambda p: phase_peaks[p])
    flops = val("flops")
    attn = val("attention_flops")
    causal = flops - attn // 2

    notes = [
        f"traced Hugging Face transformers {transformers.__version__} ({cfg['model_type']}, "
        f"attn_implementation={raw[-1]['attn_implementation']}) "
        f"with torch {torch.__version__} on fake tensors: no weights, no memory",
        "memory = what eager PyTorch allocates (each tensor rounded to 512 B, like the CUDA caching allocator); "
        "add CUDA context, cuBLAS/NCCL workspaces and fragmentation for the reserved total",
        "FLOPs count matmuls and attention only (FlopCounterMode); flash backward = 2.5x its forward; "
        "the causal figure halves the attention term",
    ]
    if pair is not None:
        notes.append(f"traced at {pair[0]} and {pair[1]} layers and extrapolated linearly to {depth} "
                     "(exact for a stack of identical layers)")
    if cuda_like:
        notes.append("CUDA semantics emulated on CPU: flash-style SDPA, bool dropout masks, CUDA autocast fp32 ops")
    if raw[-1]["attn_implementation"] != "sdpa":
        notes.append(f"transformers has no SDPA path for {cfg['model_type']}: traced its eager attention, "
                     "which keeps the s x s scores and probabilities")
    if isinstance(model, ModelArch):
        from sizeup.core.params import count_params

        expected = count_params(model.with_(num_layers=depth)).total
        if expected != val("params"):
            notes.append(f"the built module has {val('params'):,} parameters, the architecture {expected:,}: "
                         "the Hugging Face config does not express this architecture exactly")
    if raw[-1]["attention_mask_used"]:
        notes.append("transformers passed an explicit attention mask to SDPA (no is_causal fast path): "
                     "on CUDA this selects the memory-efficient kernel and keeps a b*s^2 mask")
    if precision == "fp16-mixed":
        notes.append("fp16-mixed traced without a GradScaler (its buffers are a few bytes)")
    if any(k in cfg for k in ("num_local_experts", "num_experts")):
        notes.append("MoE experts run transformers' grouped_mm path; routing is data-dependent, so the trace "
                     "assumes exactly top-k experts per token (all token slots are allocated)")

    tokens = micro_batch * seq_len
    terms = (
        Term("trace/params", float(val("params")), "params", "sum(p.numel() for p in model.parameters())",
             {"layers": depth}, "transformers module built from the config"),
        Term("trace/flops_per_step", float(flops), "FLOP", "FlopCounterMode(forward + backward)",
             {"tokens": tokens, "checkpointing": gradient_checkpointing}, "torch.utils.flop_counter"),
        Term("trace/flops_causal_per_step", float(causal), "FLOP", "flops - attention_flops / 2",
             {"attention_flops": attn}, "causal mask skips half of the s x s scores"),
        Term("trace/peak", float(phase_peaks[peak_phase]), "B", "max over phases of live allocated bytes (step 2)",
             {f"{p}_peak_bytes": v for p, v in phase_peaks.items()}, "LiveBytes dispatch mode, 512-B blocks"),
        Term("trace/activations", float(val("activation")), "B", "live at end of forward - live before forward",
             {"micro_batch": micro_batch, "seq_len": seq_len}, "LiveBytes dispatch mode"),
    )
    return TraceResult(
        model_id=model_id, hf_model_type=str(cfg["model_type"]), num_layers=depth,
        traced_layers=tuple(depths), extrapolated=pair is not None, micro_batch=micro_batch, seq_len=seq_len,
        precision=precision, optimizer=optimizer, optimizer_impl=optimizer_impl,
        gradient_checkpointing=gradient_checkpointing, cuda_like=cuda_like,
        params=val("params"), trainable_params=val("trainable_params"),
        flops_per_step=flops, attention_flops_per_step=attn, flops_causal_per_step=causal,
        peak_bytes=phase_peaks[peak_phase], peak_phase=peak_phase, phase_peak_bytes=phase_peaks,
        first_step_phase_peak_bytes=first_peaks, activation_bytes=val("activation"),
        weights_bytes=val("weights"), grads_bytes=val("grads"), optimizer_state_bytes=val("optimizer_state"),
        step_start_bytes=val("step_start"), attention_mask_used=bool(raw[-1]["attention_mask_used"]),
        segment_peak_bytes=segments,
        torch_version=str(torch.__version__), transformers_version=str(transformers.__version__),
        trace_s=trace_s, notes=tuple(notes), terms=terms,
    )
