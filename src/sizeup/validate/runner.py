"""Predict every published measurement with sizeup's physics and report the signed error.

For each point: build ModelArch + GpuSpec + TrainSetup (validate/mapping.py), run the same core
functions the CLI uses (core.timing.estimate_step, core.memory.estimate_memory, core.flops), and
convert the prediction into the point's own quantity, definition and unit. Inference points
(category D) go to `sizeup.validate.inference_points.predict_inference_point` when it exists.

Definitions follow each point's notes (never per-source constants):
- MFU / model TFLOP/s: model FLOPs = 3 x forward matmul FLOPs with attention over the full s^2
  (PaLM appendix B; Narayanan 2021 eq. 3; llm-foundry and NeMo count it so) divided by OUR step time;
  notes saying the source excludes attention ('6ND', 'without attention') use 6*N*T; notes saying it
  counts recompute use the hardware FLOPs (HFU numerator).
- HFU: hardware FLOPs (model + recomputation); notes saying '4x' with checkpointing use 4/3 x model FLOPs
  (the whole forward, logits included, counted again: llm-foundry README).
- error_pct = 100 * (predicted - measured) / measured.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from sizeup.core.types import Precision, Recompute
from sizeup.validate.points import BadPoint, Point, Skip, load_points

# --------------------------------------------------------------------------- units

_BYTES = {"b": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2.0**10, "mib": 2.0**20,
          "gib": 2.0**30, "tib": 2.0**40}
_SECONDS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "mins": 60.0, "minutes": 60.0, "h": 3600.0,
            "hr": 3600.0, "hours": 3600.0, "hour": 3600.0, "day": 86400.0, "days": 86400.0, "d": 86400.0}
_FLOPS = {"flop/s": 1.0, "gflop/s": 1e9, "tflop/s": 1e12, "pflop/s": 1e15, "eflop/s": 1e18,
          "tflops": 1e12, "pflops": 1e15}
_FLOP = {"flop": 1.0, "flops": 1.0, "gflop": 1e9, "tflop": 1e12, "pflop": 1e15, "eflop": 1e18}


_PER_DEVICE = re.compile(r"\s*(/|per\s+)(gpu|device|accelerator|chip)s?$")


def _norm_unit(unit: str) -> str:
    """Lower case, '/GPU' or 'per GPU' suffix dropped (the quantity name says per-GPU), 'sec' -> 's'."""
    u = unit.strip().lower()
    u = _PER_DEVICE.sub("", u) if not re.search(r"token|sample|seq|request", u) else u
    u = re.sub(r"/sec(ond)?s?\b", "/s", u)
    u = u.replace("tflops/s", "tflop/s").replace("flops/s", "flop/s")
    return u


def unit_kind(unit: str) -> str:
    """'%' -> fraction, 'GiB' -> bytes, 'ms' -> seconds, 'TFLOP/s' -> flops_per_s, 'FLOPs' -> flops,
    'A100-80GB GPU-hours' -> gpu_seconds, 'tokens/s/GPU' -> rate. Unknown -> ''."""
    u = _norm_unit(unit)
    if u in ("%", "percent"):
        return "fraction"
    if u.endswith("gpu-hours") or u.endswith("gpu hours") or u.endswith("gpu-days"):
        return "gpu_seconds"
    if u in _BYTES:
        return "bytes"
    if u in _SECONDS:
        return "seconds"
    if u in _FLOPS:
        return "flops_per_s"
    if u in _FLOP:
        return "flops"
    if "/s" in u and re.search(r"token|sample|seq|request|img|image", u):
        return "rate"
    if u in ("usd", "$"):
        return "usd"
    if u in ("tokens", "token", "seqs", "sequences", "samples", "count"):
        return "count"
    return ""


def from_si(value: float, unit: str) -> float:
    """An SI value (fraction, bytes, s, FLOP/s, FLOP, GPU-s, 1/s) expressed in the point's unit."""
    u = _norm_unit(unit)
    kind = unit_kind(unit)
    if kind == "fraction":
        return value * 100.0
    if kind == "bytes":
        return value / _BYTES[u]
    if kind == "seconds":
        return value / _SECONDS[u]
    if kind == "flops_per_s":
        return value / _FLOPS[u]
    if kind == "flops":
        return value / _FLOP[u]
    if kind == "gpu_seconds":
        return value / (86400.0 if u.endswith("days") else 3600.0)
    if kind in ("rate", "usd", "count"):
        return value
    raise Skip(f"unit {unit!r} not understood")


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One measured quantity of one point: predicted (with error) or skipped (with reason)."""

    id: str
    category: str
    family: str
    primary: bool
    completeness: str
    quantity: str
    unit: str
    measured: float | None
    predicted: float | None = None
    error_pct: float | None = None
    skipped: str | None = None
    definition: str = ""
    assumptions: tuple[str, ...] = ()
    bound: bool = False
    setup: str = ""
    """The plan the prediction used, e.g. '8x H100 tp1 pp1 cp1 dp8 mb1 ga16 s4096 fp8 ...'."""
    rounded: bool = False
    """The source rounded the value to an integer: the measurement is the interval [v - 0.5, v + 1)."""
    point: Any = field(default=None, repr=False, compare=False)
    """The Point this row came from (for the calibration fit and leave-one-source-out; not serialised)."""
    context: Any = field(default=None, repr=False, compare=False)
    """The training point's Context (model, setup, GPU, step estimate), kept for the calibration fit."""
    command: str | None = None
    """The equivalent `sizeup train|memory ... --json` command (None when the model is not a catalog preset)."""
    command_check: dict | None = None
    """{key, value}: the figure of that command's JSON this row's prediction is computed from."""

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.predicted is not None

    def to_dict(self) -> dict:
        if not self.ok:
            return {"id": self.id, "quantity": self.quantity, "skipped": self.skipped, "category": self.category,
                    "source": self.family}
        out = {"id": self.id, "quantity": self.quantity, "unit": self.unit, "measured": self.measured,
               "predicted": _round(self.predicted), "error_pct": _round(self.error_pct, 2),
               "category": self.category, "source": self.family, "primary": self.primary,
               "tolerance_pct": tolerance_pct(self), "within_tolerance": abs(self.error_pct) <= tolerance_pct(self)}
        if self.definition:
            out["definition"] = self.definition
        if self.setup:
            out["setup"] = self.setup
        if self.command:
            out["command"] = self.command
            out["command_check"] = self.command_check
        if self.assumptions:
            out["assumptions"] = list(self.assumptions)
        if self.bound:
            out["bound"] = "measured value is an upper bound; error 0 when the prediction is below it"
        if self.rounded:
            out["rounded"] = "measured value rounded to an integer; error measured from the interval [v - 0.5, v + 1)"
        return out


def _round(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    if digits == 2:
        return round(x, 2)
    return float(f"{x:.{digits}g}")


THROUGHPUT_QUANTITIES = frozenset({
    "throughput_tokens_per_s", "throughput_tokens_per_s_per_gpu", "throughput_samples_per_s",
    "model_tflops_per_gpu", "achieved_tflops_per_gpu", "mfu", "hfu", "percent_of_peak", "aggregate_pflops",
    "step_time", "iteration_time",
})
MEMORY_QUANTITIES = frozenset({
    "peak_memory_per_gpu", "peak_gpu_memory", "peak_memory_active", "peak_memory_reserved",
    "peak_memory_allocated", "model_state_memory_per_gpu", "activation_memory_per_gpu", "weights_memory",
    "fits_in_gpu_memory", "max_seq_len_fitting", "cpu_memory", "gpu_memory_used_nvml",
})


def tolerance_pct(row: Row) -> float:
    """Acceptance band for |error|: 25 % throughput/MFU and memory, 35 % for whole-run totals (restarts,
    evaluation and data stalls the sources fold in); x1.5 for numbers read from a secondary copy."""
    q = row.quantity
    base = 25.0 if (q in THROUGHPUT_QUANTITIES or q in MEMORY_QUANTITIES) else 35.0
    return base * (1.5 if not row.primary else 1.0)


# --------------------------------------------------------------------------- prediction context


@dataclass
class Context:
    """Everything known about one training point; physics results computed on first use."""

    point: Point
    catalog: Any
    _cache: dict = field(default_factory=dict)

    def _get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            try:
                self._cache[key] = ("ok", make())
            except Skip as exc:
                self._cache[key] = ("skip", str(exc))
            except Exception as exc:  # physics failure: report it per row, never abort the run
                from sizeup.errors import SizeupError

                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                prefix = "" if isinstance(exc, SizeupError) else f"{type(exc).__name__}: "
                self._cache[key] = ("skip", f"model error: {prefix}{msg}"[:200])
        status, value = self._cache[key]
        if status == "skip":
            raise Skip(value)
        return value

    # inputs
    @property
    def model(self):
        from sizeup.validate.mapping import model_for_point

        return self._get("model", lambda: model_for_point(self.point, self.catalog))[0]

    @property
    def gpu(self):
        from sizeup.validate.mapping import resolve_point_gpu

        def resolve():
            gpu, note = resolve_point_gpu(self.point, self.catalog)
            if note:
                self._cache["extra_notes"] = ("ok", [*self._cache.get("extra_notes", ("ok", []))[1], note])
            return gpu

        return self._get("gpu", resolve)

    def setup_result(self, need_batch: bool = True, need_seq: bool = True):
        from sizeup.validate.mapping import build_setup

        key = f"setup_{int(need_batch)}{int(need_seq)}"
        return self._get(key, lambda: build_setup(self.point, self.model, self.gpu, need_batch=need_batch,
                                                  need_seq=need_seq))

    @property
    def setup(self):
        return self.setup_result().setup

    def assumptions(self, need_batch: bool = True, need_seq: bool = True) -> tuple[str, ...]:
        notes = []
        if "model" in self._cache and self._cache["model"][0] == "ok":
            notes += self._cache["model"][1][1]
        key = f"setup_{int(need_batch)}{int(need_seq)}"
        if key in self._cache and self._cache[key][0] == "ok":
            notes += self._cache[key][1].assumptions
        notes += self._cache.get("extra_notes", ("ok", []))[1]
        from sizeup.validate.points import ERRATUM_MARK

        if ERRATUM_MARK in (self.point.notes or ""):
            notes.append("erratum applied to the shared row (validate/data/errata.yaml; evidence in the row's notes)")
        return tuple(dict.fromkeys(notes))

    def describe(self, need_batch: bool = True, need_seq: bool = True) -> str:
        """One line with the plan used: GPUs, degrees, batch, seq, precision, sharding, recompute, PEFT."""
        entry = self._cache.get(f"setup_{int(need_batch)}{int(need_seq)}")
        if not entry or entry[0] != "ok":
            return ""
        st = entry[1].setup
        gpu = self._cache.get("gpu", ("", None))[1]
        extra = [st.peft.value] if st.peft.value != "none" else []
        if st.offload_optimizer.value != "none":
            extra.append(f"optimizer on {st.offload_optimizer.value}")
        return (f"{st.gpus}x {getattr(gpu, 'id', '?')} tp{st.tp} pp{st.pp} cp{st.cp} dp{st.dp} mb{st.micro_batch} "
                f"ga{st.grad_accum} s{st.seq_len} {st.precision.value} {st.optimizer.value} {st.sharding.value} "
                f"recompute={st.recompute.value}" + (" " + " ".join(extra) if extra else ""))

    # the point as a job (sizeup.validate.jobs): the same job `sizeup train/memory` builds from the row's command
    def job(self, need_batch: bool = True, need_seq: bool = True):
        from sizeup.validate.jobs import point_job

        key = f"job_{int(need_batch)}{int(need_seq)}"
        return self._get(key, lambda: point_job(self.point, self.model, self.gpu,
                                                self.setup_result(need_batch, need_seq).setup, self.catalog))

    # physics: through the pipeline, as every command
    @property
    def step(self):
        def make():
            from sizeup.pipeline import step_for

            return step_for(self.job()[0])
        step = self._get("step", make)
        self._record_used("train", (True, True), "step_time_s", step.step_time_s)
        return step

    def _record_used(self, kind: str, need: tuple[bool, bool], key: str, value: float) -> None:
        """The job behind a predicted figure (its `sizeup train|memory` command); nothing when the job cannot be
        built in this catalog (a stand-in catalog with the physics already given)."""
        try:
            self._cache["used"] = ("ok", (kind, self.job(*need), key, value))
        except Skip:
            self._cache.pop("used", None)

    def memory(self, need_seq: bool = True):
        def make():
            from sizeup.pipeline import memory_for

            # paged optimizers (setup.paged_optimizer) are paged to host memory inside estimate_memory
            return memory_for(self.job(False, need_seq)[0])
        mem = self._get(f"memory_{int(need_seq)}", make)
        self._record_used("memory", (False, need_seq), "peak_allocated_bytes", mem.peak_allocated_bytes)
        return mem

    @property
    def flops(self):
        def make():
            from sizeup.core.flops import flops_per_step

            return flops_per_step(self.model, self.setup)
        return self._get("flops", make)

    # definitions
    def peak_flops_per_s(self) -> float:
        """Dense peak of the compute dtype (the one the step estimate used; fp8 for fp8 recipes)."""
        peak = float(getattr(self.step, "peak_flops_per_s", 0.0) or 0.0)
        if peak > 0:
            return peak
        dtype = {Precision.FP8: "fp8", Precision.BF16: "bf16", Precision.BF16_MIXED: "bf16",
                 Precision.FP16_MIXED: "fp16", Precision.TF32: "tf32", Precision.FP32: "fp32"}[self.setup.precision]
        peak = self.gpu.peak(dtype)
        if peak <= 0:
            raise Skip(f"{self.gpu.name} has no {dtype} peak in the catalog")
        return peak

    def model_flops_per_step(self, measured_notes: str | None) -> tuple[float, str]:
        """The source's model-FLOPs definition (per optimizer step), from the point's notes."""
        t = f"{measured_notes or ''} {self.point.notes or ''}".lower()
        f = self.flops
        if re.search(r"include[sd]? (activation )?recomput|counts? recompute|with recompute", t):
            return f.hardware_flops, "hardware FLOPs (source counts recomputation)"
        if re.search(r"excl\w*\.? attention|without attention|no attention|\b6nd\b|6\s*\*\s*n\s*\*\s*d", t):
            return f.six_nd, "6*N*T (source excludes attention FLOPs)"
        if "causal" in t:
            return f.model_flops_causal, "3 x forward, causal attention (s^2/2)"
        return f.model_flops, "3 x forward incl. attention over full s^2"

    def hardware_flops_per_step(self, measured_notes: str | None) -> tuple[float, str]:
        t = f"{measured_notes or ''}".lower()
        f = self.flops
        if re.search(r"\b4x\b|4 x|4\*", t):
            factor = 4.0 / 3.0 if self.setup.recompute == Recompute.FULL else 1.0
            return f.model_flops * factor, "model FLOPs x 4/3 with full checkpointing (source: '4x')"
        return f.hardware_flops, "model FLOPs + recomputed forward"


# --------------------------------------------------------------------------- quantity handlers
# Each returns (value in SI, definition string). SI: fraction, 1/s, FLOP/s, FLOP, bytes, s, GPU-s.

Handler = Callable[[Context, Any], tuple[float, str]]


def _tok_per_s(ctx: Context, m) -> tuple[float, str]:
    return ctx.step.tokens_per_s, "global tokens/s = tokens per step / step time"


def _tok_per_s_gpu(ctx: Context, m) -> tuple[float, str]:
    return ctx.step.tokens_per_s / ctx.setup.gpus, "tokens/s / GPUs"


def _samples_per_s(ctx: Context, m) -> tuple[float, str]:
    return ctx.step.tokens_per_s / ctx.setup.seq_len, "tokens/s / seq_len"


def _step_time(ctx: Context, m) -> tuple[float, str]:
    return ctx.step.step_time_s, "time of one optimizer step (global batch)"


def _model_flops_per_s_gpu(ctx: Context, m) -> tuple[float, str]:
    flops, how = ctx.model_flops_per_step(m.notes)
    return flops / ctx.step.step_time_s / ctx.setup.gpus, how + " / step time / GPUs"


_ACHIEVED_FAMILY = ("achieved_tflops_per_gpu", "percent_of_peak", "aggregate_pflops")


def _achieved_flops_per_s_gpu(ctx: Context, m) -> tuple[float, str]:
    # one FLOP count per point: a note on any of achieved TFLOP/s, % of peak, aggregate PFLOP/s applies to all
    t = " ".join(x.notes or "" for x in ctx.point.measured if x.quantity in _ACHIEVED_FAMILY).lower()
    t = f"{t} {m.notes or ''}".lower()
    # 'achieved' = FLOPs the hardware executed: recomputation included (Narayanan 2021 eq. 3 counts it)
    # unless the notes say the count is model FLOPs only
    if re.search(r"(excl\w*|without|no)\s+recomput|model flops", t):
        flops, how = ctx.model_flops_per_step(m.notes)
    else:
        flops, how = ctx.flops.hardware_flops, "hardware FLOPs (incl. recomputation)"
    return flops / ctx.step.step_time_s / ctx.setup.gpus, how + " / step time / GPUs"


def _mfu(ctx: Context, m) -> tuple[float, str]:
    value, how = _model_flops_per_s_gpu(ctx, m)
    return value / ctx.peak_flops_per_s(), how + " / dense peak"


def _hfu(ctx: Context, m) -> tuple[float, str]:
    flops, how = ctx.hardware_flops_per_step(m.notes)
    return flops / ctx.step.step_time_s / ctx.setup.gpus / ctx.peak_flops_per_s(), how + " / step time / GPUs / peak"


def _percent_of_peak(ctx: Context, m) -> tuple[float, str]:
    value, how = _achieved_flops_per_s_gpu(ctx, m)
    return value / ctx.peak_flops_per_s(), how + " / dense peak"


def _aggregate(ctx: Context, m) -> tuple[float, str]:
    value, how = _achieved_flops_per_s_gpu(ctx, m)
    return value * ctx.setup.gpus, how + " x GPUs"


def _workload_tokens(ctx: Context) -> float:
    w = ctx.point.workload
    if w.tokens:
        return float(w.tokens)
    if w.steps:
        return float(w.steps) * ctx.setup.tokens_per_step
    raise Skip("training tokens (or steps) unknown")


def _train_time_s(ctx: Context, tokens: float) -> tuple[float, str]:
    """Wall-clock for `tokens`: estimate_training when available (what `sizeup train` prints), else
    tokens / tokens per second."""
    try:
        from sizeup.core.estimate import estimate_training
        from sizeup.core.workload import Workload
    except ImportError:
        estimate_training = None
    if estimate_training is not None:
        try:
            est = estimate_training(ctx.model, ctx.setup, ctx.gpu, Workload(tokens=tokens))
            return float(est.total_time_s), "core.estimate.estimate_training total_time_s"
        except (TypeError, ValueError, AttributeError):
            pass  # an older/newer signature: fall back to the step model directly
    return tokens / ctx.step.tokens_per_s, "tokens / (tokens/s)"


def _wall_clock(ctx: Context, m) -> tuple[float, str]:
    return _train_time_s(ctx, _workload_tokens(ctx))


def _gpu_hours(ctx: Context, m) -> tuple[float, str]:
    _check_gpu_in_unit(ctx, m.unit)
    seconds, how = _train_time_s(ctx, _workload_tokens(ctx))
    return seconds * ctx.setup.gpus, how + " x GPUs"


_COUNT = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def _count(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmbt]?)", text.lower())
    if not m:
        raise Skip(f"count {text!r} not understood")
    return float(m.group(1)) * _COUNT.get(m.group(2), 1.0)


def _per_tokens(ctx: Context, m) -> tuple[float, str]:
    """gpu_hours_per_300B_tokens, est_days_10T_tokens_1k_gpus, est_minutes_10M_tokens, ..."""
    q = m.quantity.lower()
    mt = re.search(r"(\d+(?:\.\d+)?[kmbt]?)_tokens", q)
    tokens = _count(mt.group(1))
    mg = re.search(r"tokens_(\d+(?:\.\d+)?[kmbt]?)_gpus", q)
    if q.startswith("gpu_hours"):
        _check_gpu_in_unit(ctx, m.unit)
        seconds, how = _train_time_s(ctx, tokens)
        return seconds * ctx.setup.gpus, f"time for {mt.group(1).upper()} tokens x GPUs ({how})"
    per_gpu = ctx.step.tokens_per_s / ctx.setup.gpus
    if mg:
        n = _count(mg.group(1))
        return tokens / (per_gpu * n), f"{mt.group(1).upper()} tokens / (tokens/s/GPU x {n:g} GPUs)"
    return tokens / (per_gpu * ctx.setup.gpus), f"{mt.group(1).upper()} tokens / (tokens/s/GPU x {ctx.setup.gpus} GPUs)"


def _total_flops(ctx: Context, m) -> tuple[float, str]:
    tokens = _workload_tokens(ctx)
    flops, how = ctx.model_flops_per_step(m.notes)
    return flops / ctx.setup.tokens_per_step * tokens, how + " per token x training tokens"


def _check_gpu_in_unit(ctx: Context, unit: str) -> None:
    """'A100-80GB GPU-hours' names a GPU: it must be the one the point ran on (same catalog entry)."""
    head = re.sub(r"\s*gpu[- ](hours|days)$", "", unit.strip(), flags=re.I).strip()
    if not head:
        return
    try:
        named = ctx.catalog.gpu(head)
    except Exception:
        return
    if named.id != ctx.gpu.id and named.name.split()[:2] != ctx.gpu.name.split()[:2]:
        raise Skip(f"unit names {head} but the point ran on {ctx.gpu.name}")


# memory --------------------------------------------------------------------


def _mem_sum(mem, prefixes: tuple[str, ...]) -> float:
    return float(sum(v for k, v in mem.per_gpu.items() if k.split("/")[0].lower().startswith(prefixes)))


def _peak_allocated(ctx: Context, m) -> tuple[float, str]:
    t = f"{m.quantity} {m.notes or ''}".lower()
    mem = ctx.memory()
    if "reserved" in t:
        return float(mem.peak_reserved_bytes), "peak reserved (allocator) bytes"
    return float(mem.peak_allocated_bytes), "peak allocated bytes (torch max_memory_allocated)"


def _peak_reserved(ctx: Context, m) -> tuple[float, str]:
    return float(ctx.memory().peak_reserved_bytes), "peak reserved bytes"


def _nvml(ctx: Context, m) -> tuple[float, str]:
    return float(ctx.memory().peak_reserved_bytes), "peak reserved bytes incl. CUDA context (what nvidia-smi shows)"


def _model_state(ctx: Context, m) -> tuple[float, str]:
    mem = ctx.memory(need_seq=False)
    value = getattr(mem, "model_state_bytes", None)
    if value is None:
        value = _mem_sum(mem, ("weight", "param", "grad", "optim", "master"))
    return float(value), "weights + gradients + optimizer states per GPU"


def _activations(ctx: Context, m) -> tuple[float, str]:
    mem = ctx.memory()
    value = getattr(mem, "activation_bytes", None)
    if value is None:
        value = _mem_sum(mem, ("activation",))
    return float(value), "activation bytes per GPU"


def _weights(ctx: Context, m) -> tuple[float, str]:
    mem = ctx.memory(need_seq=False)
    value = getattr(mem, "weights_bytes", None)
    if value is None:
        value = _mem_sum(mem, ("model",))  # model/weights + model/adapter_weights (sizeup.core.memory.COMPONENTS)
    return float(value), "weights bytes per GPU"


def _host(ctx: Context, m) -> tuple[float, str]:
    return float(ctx.memory().host_bytes), "host (CPU) bytes"


def _fits_bound(ctx: Context, m) -> tuple[float, str]:
    return float(ctx.memory().peak_reserved_bytes), "peak reserved bytes (upper-bound check)"


def _max_seq_len(ctx: Context, m) -> tuple[float, str]:
    """Largest seq_len (multiple of 128) whose peak reserved memory fits the GPU: bisection."""
    from sizeup.core.memory import estimate_memory
    from sizeup.pipeline import overheads_for

    job = ctx.job(False, False)[0]  # the point's job: its kernels, loss and overheads, as every command uses
    setup, ex, ov = job.setup, job.execution, overheads_for(job)

    def fits(s: int) -> bool:
        return bool(estimate_memory(ctx.model, setup.with_(seq_len=s), gpu=ctx.gpu, kernel=ex.memory_kernel,
                                    loss=ex.loss, overheads=ov).fits)

    lo, hi = 0, 128
    while hi <= 2**22 and fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 128:
        mid = (lo + hi) // 2 // 128 * 128
        if mid <= lo:
            break
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return float(lo), "largest seq_len (x128) with peak reserved <= GPU memory"


HANDLERS: dict[str, Handler] = {
    "throughput_tokens_per_s": _tok_per_s,
    "throughput_tokens_per_s_per_gpu": _tok_per_s_gpu,
    "throughput_samples_per_s": _samples_per_s,
    "step_time": _step_time,
    "iteration_time": _step_time,
    "model_tflops_per_gpu": _model_flops_per_s_gpu,
    "achieved_tflops_per_gpu": _achieved_flops_per_s_gpu,
    "mfu": _mfu,
    "hfu": _hfu,
    "percent_of_peak": _percent_of_peak,
    "aggregate_pflops": _aggregate,
    "wall_clock": _wall_clock,
    "wall_clock_ideal": _wall_clock,
    "gpu_hours": _gpu_hours,
    "total_flops": _total_flops,
    "peak_memory_per_gpu": _peak_allocated,
    "peak_gpu_memory": _peak_allocated,
    "peak_memory_active": _peak_allocated,
    "peak_memory_allocated": _peak_allocated,
    "peak_memory_reserved": _peak_reserved,
    "gpu_memory_used_nvml": _nvml,
    "model_state_memory_per_gpu": _model_state,
    "activation_memory_per_gpu": _activations,
    "weights_memory": _weights,
    "cpu_memory": _host,
    "fits_in_gpu_memory": _fits_bound,
    "max_seq_len_fitting": _max_seq_len,
}
# quantities that need the global batch split (micro-batch x grad-accum); memory needs only the micro-batch
_NEEDS_STEP = THROUGHPUT_QUANTITIES | {"wall_clock", "wall_clock_ideal", "gpu_hours", "total_flops"}
_PER_TOKENS_RE = re.compile(r"^(gpu_hours|est_(days|hours|minutes|min))_.*tokens")
_NOT_PREDICTED = {
    "weak_scaling_efficiency": "relative to another run (a ratio of two measurements), not a prediction target",
    "cost": "dollar cost depends on a price not stated in the point",
    "mfu_full_recompute": "alternative-configuration figure quoted without its own layout",
    "estimate_total_size": "another tool's estimate, not a measurement",
    "estimate_training_adam": "another tool's estimate, not a measurement",
    "mean_step_time_incl_first_step": "mean over a run's first steps including the first one, whose one-off work "
                                      "(lazy optimizer-state creation, communicator setup, first-iteration tracing) "
                                      "sizeup's steady-state step does not model",
}


_ALIASES = {
    "tflops_per_gpu": "model_tflops_per_gpu", "model_tflops": "model_tflops_per_gpu",
    "model_tflop_per_gpu": "model_tflops_per_gpu", "tflops": "model_tflops_per_gpu",
    "hardware_tflops_per_gpu": "achieved_tflops_per_gpu", "hw_tflops_per_gpu": "achieved_tflops_per_gpu",
    "tokens_per_s_per_gpu": "throughput_tokens_per_s_per_gpu", "tokens_per_sec_per_gpu": "throughput_tokens_per_s_per_gpu",
    "throughput_per_gpu": "throughput_tokens_per_s_per_gpu", "tgs": "throughput_tokens_per_s_per_gpu",
    "tokens_per_s": "throughput_tokens_per_s", "tokens_per_sec": "throughput_tokens_per_s",
    "throughput": "throughput_tokens_per_s", "samples_per_s": "throughput_samples_per_s",
    "samples_per_sec": "throughput_samples_per_s", "sequences_per_s": "throughput_samples_per_s",
    "step_time_s": "step_time", "time_per_step": "step_time", "time_per_iteration": "iteration_time",
    "iter_time": "iteration_time", "elapsed_time_per_iteration": "iteration_time",
    "peak_memory": "peak_memory_per_gpu", "max_memory_allocated": "peak_memory_allocated",
    "memory_per_gpu": "peak_memory_per_gpu", "gpu_memory": "peak_memory_per_gpu",
    "max_memory_reserved": "peak_memory_reserved", "peak_reserved": "peak_memory_reserved",
    "training_time": "wall_clock", "time_to_train": "wall_clock", "train_time": "wall_clock",
    "gpu_days": "gpu_hours", "mfu_pct": "mfu", "hfu_pct": "hfu",
    # torchtitan / Megatron / DeepSpeed log names
    "tps": "throughput_tokens_per_s_per_gpu", "wps": "throughput_tokens_per_s_per_gpu",
    "tokens_per_second": "throughput_tokens_per_s", "tokens_per_second_per_gpu": "throughput_tokens_per_s_per_gpu",
    "tokens_per_second_per_device": "throughput_tokens_per_s_per_gpu", "tflops_per_device": "model_tflops_per_gpu",
    "throughput_per_device": "throughput_tokens_per_s_per_gpu", "samples_per_second": "throughput_samples_per_s",
    "max_reserved_memory": "peak_memory_reserved", "memory_reserved": "peak_memory_reserved",
    "max_allocated_memory": "peak_memory_allocated", "max_memory_active": "peak_memory_active",
}


def canonical_quantity(quantity: str, unit: str) -> str:
    """A known quantity name for common synonyms; the unit decides total vs per-GPU vs per-sample rates."""
    q = quantity.strip().lower()
    q = _ALIASES.get(q, q)
    u = unit.strip().lower()
    if q in ("throughput_tokens_per_s", "throughput_tokens_per_s_per_gpu", "throughput_samples_per_s"):
        if re.search(r"sample|seq", u) and "token" not in u:
            return "throughput_samples_per_s"
        if "token" in u:
            return "throughput_tokens_per_s_per_gpu" if re.search(r"(/|per\s*)(gpu|device)", u) else "throughput_tokens_per_s"
    return q


def _handler_for(quantity: str) -> Handler | None:
    if quantity in HANDLERS:
        return HANDLERS[quantity]
    if _PER_TOKENS_RE.match(quantity):
        return _per_tokens
    return None


def _needs_batch(quantity: str) -> bool:
    return quantity in _NEEDS_STEP or bool(_PER_TOKENS_RE.match(quantity))


_SEQ_FREE = frozenset({"model_state_memory_per_gpu", "weights_memory", "max_seq_len_fitting"})
# memory quantities whose bytes do not depend on the GPU model (not the capacity checks): a GPU that is not stated or
# not resolved is stood in for them (sizeup.validate.mapping.gpu_stand_in_for_memory)
_GPU_FREE_MEMORY = MEMORY_QUANTITIES - {"fits_in_gpu_memory", "max_seq_len_fitting"}


def _needs_seq(quantity: str) -> bool:
    return quantity not in _SEQ_FREE


# --------------------------------------------------------------------------- per point


def predict_point(point: Point | BadPoint, catalog) -> list[Row]:
    """One Row per measured quantity of the point."""
    from sizeup.validate.mapping import seq_len_is_a_maximum

    if isinstance(point, BadPoint):
        return [Row(point.id, point.category, "unknown", True, "?", q, "", None, skipped=point.reason)
                for q in point.quantities]
    base = dict(id=point.id, category=point.category, family=point.family, primary=point.primary,
                completeness=point.completeness or "?")
    if point.category == "D":
        return _predict_inference(point, catalog, base)
    ctx = Context(point, catalog)
    mem_ctx = None
    rows = []
    for m in point.measured:
        quantity = canonical_quantity(m.quantity, m.unit)
        q_ctx = ctx
        if quantity in _GPU_FREE_MEMORY:
            if mem_ctx is None:
                from sizeup.validate.mapping import gpu_stand_in_for_memory

                stand_in = gpu_stand_in_for_memory(point, catalog)
                mem_ctx = ctx
                if stand_in is not None:
                    mem_ctx = Context(point, catalog)
                    mem_ctx._cache["gpu"] = ("ok", stand_in[0])
                    mem_ctx._cache["extra_notes"] = ("ok", [stand_in[1]])
            q_ctx = mem_ctx
        row = Row(quantity=m.quantity, unit=m.unit, measured=m.value, point=point, context=q_ctx, **base)
        row.rounded = "rounded" in (m.notes or "").lower() and float(m.value).is_integer()
        rows.append(row)
        handler = _handler_for(quantity)
        if handler is None:
            row.skipped = _NOT_PREDICTED.get(quantity, f"quantity {m.quantity!r} not predicted by sizeup")
            continue
        if quantity != m.quantity:
            m = m.model_copy(update={"quantity": quantity})
        if not unit_kind(m.unit):
            row.skipped = f"unit {m.unit!r} not understood"
            continue
        if _needs_seq(quantity) and seq_len_is_a_maximum(point) and not (
                quantity in MEMORY_QUANTITIES and point.workload.longest_sample_tokens):
            # a peak memory is the longest padded micro-batch's: predictable when that length is stated
            row.skipped = "sequence length is only a maximum (unpacked samples); tokens per sequence unknown"
            continue
        try:
            if quantity == "model_state_memory_per_gpu" and not point.model.layers and point.model.params:
                _use_stand_in(q_ctx)
            q_ctx._cache.pop("used", None)
            value_si, how = handler(q_ctx, m)
            predicted = from_si(value_si, m.unit)
        except Skip as exc:
            row.skipped = str(exc)
            continue
        nb = _needs_batch(quantity)
        _finish(row, predicted, how, q_ctx.assumptions(nb, _needs_seq(quantity) or nb), bound=quantity == "fits_in_gpu_memory")
        row.setup = q_ctx.describe(nb, _needs_seq(quantity) or nb)
        used = q_ctx._cache.get("used")
        if row.ok and used and used[0] == "ok":
            kind, (job, reproducible), key, value = used[1]
            if reproducible:
                row.command = job.command(kind) + " --json"
                row.command_check = {"key": key, "value": value}
    return rows


def _use_stand_in(ctx: Context) -> None:
    from sizeup.validate.mapping import stand_in_arch

    arch = stand_in_arch(ctx.point.model.params, ctx.point.model.name or ctx.point.id)
    ctx._cache["model"] = ("ok", (arch, ["only N stated: GPT-shaped stand-in with the same N (model states depend on N only)"]))


def _finish(row: Row, predicted: float, how: str, assumptions: Iterable[str], bound: bool = False) -> None:
    if predicted is None or not math.isfinite(predicted):
        row.skipped = "model returned a non-finite value"
        return
    row.predicted = float(predicted)
    row.definition = how
    row.assumptions = tuple(assumptions)
    row.bound = bound
    row.error_pct = error_pct_for(row, float(predicted))
    if row.error_pct is None:
        row.skipped = "measured value is 0 (rounded in the source); relative error undefined"
        row.predicted = None


def measured_interval(row: Row) -> tuple[float, float]:
    """(lo, hi) a prediction may take with 0 error: a bound is met by anything at or below it (0, v); an
    integer-rounded figure lies in [v - 0.5, v + 1) (rounded to nearest, or truncated as llm-foundry's
    int(throughput) does; the notes do not say which); otherwise the figure itself (v, v)."""
    if row.bound:
        return 0.0, row.measured
    if row.rounded:
        return max(row.measured - 0.5, 0.0), row.measured + 1.0
    return row.measured, row.measured


def error_pct_for(row: Row, predicted: float) -> float | None:
    """Signed % error of `predicted` from the nearest edge of the row's measured_interval (None when the
    measurement is 0)."""
    if row.bound or row.rounded:
        lo, hi = measured_interval(row)
        if predicted > hi:
            return 100.0 * (predicted - hi) / hi
        if predicted < lo:
            return 100.0 * (predicted - lo) / lo
        return 0.0
    if row.measured:
        return 100.0 * (predicted - row.measured) / row.measured
    return None


def _predict_inference(point: Point, catalog, base: dict) -> list[Row]:
    rows = [Row(quantity=m.quantity, unit=m.unit, measured=m.value, point=point, **base) for m in point.measured]
    try:
        from sizeup.validate.inference_points import predict_inference_point
    except ImportError:
        for r in rows:
            r.skipped = "inference predictor not available"
        return rows
    try:
        why: dict = {}
        predictions = predict_inference_point(point.model_dump(mode="python"), catalog, why)
    except Exception as exc:  # H8 raises its Skip(reason); anything else is reported, not fatal
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if type(exc).__name__ != "Skip":
            reason = f"model error: {type(exc).__name__}: {reason}"
        for r in rows:
            r.skipped = reason[:200]
        return rows
    by_q: dict[str, Any] = {}
    for item in predictions or []:
        by_q.setdefault(item[0], item)
    for r in rows:
        item = by_q.get(r.quantity)
        if item is None:
            r.skipped = why.get(r.quantity) or f"quantity {r.quantity!r} not predicted by the inference model"
            continue
        how = item[2] if len(item) > 2 else "core.inference"
        _finish(r, float(item[1]), str(how), ())
    return rows


# --------------------------------------------------------------------------- the run


@dataclass
class Validation:
    rows: list[Row]
    summary: dict

    @property
    def predicted(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def skipped(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


def _pctl(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default 'linear' method)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _stats(rows: list[Row], total: int | None = None) -> dict:
    errs = [abs(r.error_pct) for r in rows if r.ok]
    out = {"n": len(errs), "median_abs_error_pct": _round(statistics.median(errs), 2) if errs else None,
           "p90_abs_error_pct": _round(_pctl(errs, 0.9), 2) if errs else None,
           "median_signed_error_pct": _round(statistics.median([r.error_pct for r in rows if r.ok]), 2) if errs else None,
           "within_tolerance": sum(1 for r in rows if r.ok and abs(r.error_pct) <= tolerance_pct(r))}
    if total is not None:
        out["total"] = total
        out["coverage"] = _round(len(errs) / total, 4) if total else None
    return out


def summarize(rows: list[Row]) -> dict:
    by_q: dict[str, list[Row]] = {}
    by_src: dict[str, list[Row]] = {}
    for r in rows:
        by_q.setdefault(r.quantity, []).append(r)
        by_src.setdefault(r.family, []).append(r)
    full_training = [r for r in rows if r.completeness == "full" and r.category in ("A", "B")]
    tput = [r for r in rows if r.quantity in THROUGHPUT_QUANTITIES]
    points = {}
    for r in rows:
        points.setdefault(r.id, False)
        points[r.id] = points[r.id] or r.ok
    full_pts = {}
    for r in full_training:
        full_pts.setdefault(r.id, False)
        full_pts[r.id] = full_pts[r.id] or r.ok
    return {
        "overall": _stats(rows, len(rows)),
        "throughput_and_mfu": _stats(tput, len(tput)),
        "full_training_points": {**_stats(full_training, len(full_training)),
                                 "points": len(full_pts), "points_predicted": sum(full_pts.values())},
        "points": {"total": len(points), "predicted": sum(points.values()),
                   "coverage": _round(sum(points.values()) / len(points), 4) if points else None},
        "by_quantity": {q: _stats(rs, len(rs)) for q, rs in sorted(by_q.items())},
        "by_source": {s: _stats(rs, len(rs)) for s, rs in sorted(by_src.items())},
    }


def run_validation(path=None, categories: Iterable[str] | None = None, source: str | None = None,
                   quantities: Iterable[str] | None = None, catalog=None, id_contains: str | None = None,
                   ids: Iterable[str] | None = None) -> Validation:
    """Load points (default: the packaged dev set), filter, predict, summarize. `ids`: only the points with these
    ids (the calibration's refits re-predict the points a knob can move)."""
    from sizeup.catalog import load_catalog

    catalog = catalog or load_catalog()
    points = load_points(path)
    cats = {c.strip().upper() for c in categories or () if c.strip()}
    if cats:
        points = [p for p in points if p.category in cats]
    if source:
        s = source.lower()
        points = [p for p in points if isinstance(p, BadPoint) or s in _source_text(p)]
    if id_contains:
        points = [p for p in points if id_contains.lower() in p.id.lower()]
    if ids is not None:
        keep = set(ids)
        points = [p for p in points if p.id in keep]
    qs = {q.strip() for q in quantities or () if q.strip()}
    rows: list[Row] = []
    for p in points:
        if qs and not (set(getattr(p, "quantities", None) or [m.quantity for m in p.measured]) & qs):
            continue
        rows += [r for r in predict_point(p, catalog) if not qs or r.quantity in qs]
    return Validation(rows, summarize(rows))


def _source_text(p: Point) -> str:
    return " ".join(f"{s.repo or ''} {s.title or ''} {s.url or ''}" for s in p.source).lower() + " " + p.family.lower()


# --------------------------------------------------------------------------- leave-one-source-out


def loso_report(path=None, payload: dict | None = None):
    """`sizeup validate --loso`: refit the calibration without each source family and predict that family
    (sizeup.calib.fit); per-family and overall median / p90 |error| and coverage, with calibration off and
    in-sample next to it."""
    from sizeup.calib import fit as calfit
    from sizeup.report import Report, Table

    payload = payload or calfit.refit(path)
    acc = payload["accuracy"]

    def cells(st: dict | None) -> tuple:
        if not st or not st.get("total"):
            return ("-", "-", "-", "-")
        cov = "-" if st.get("coverage") is None else f"{100 * st['coverage']:.0f}%"
        return (f"{st['n']}/{st['total']}", cov, _fmt_pct(st["median_abs_error_pct"]), _fmt_pct(st["p90_abs_error_pct"]))

    rows = []
    for label, key in (("overall, calibration off", "calibration_off"),
                       ("overall, calibration on (in-sample)", "calibration_on_in_sample"),
                       ("overall, leave-one-source-out", "loso")):
        for group, st in acc[key]["overall"].items():
            if isinstance(st, dict):
                rows.append((label, group) + cells(st))
    for fam, groups in acc["loso"]["families"].items():
        for group, st in groups.items():
            rows.append((f"family {fam} (left out)", group) + cells(st))
    knob_rows = [(name, k["physical"], k["value"], f"{k['loso_range'][0]:.4g} - {k['loso_range'][1]:.4g}"
                  if k.get("loso_range") else "-") for name, k in payload["knobs"].items()]
    cov = payload["intervals"]["coverage_loso"]
    notes = [
        "fit objective: " + payload["fitted"]["objective"],
        "memory predictions use no fitted knob (leave-one-source-out = in-sample); inference predictions use the "
        "in-model GEMM fraction fitted on training rows and the serving knobs fitted on the inference rows "
        f"({', '.join(payload['fitted'].get('serving', {}).get('fitted_knobs') or ['none'])} fitted; "
        "calib/serving.py); each inference row is predicted with the folds that left its family out",
        f"80 % interval (P10-P90) coverage under leave-one-source-out: {100 * (cov['all']['covered'] or 0):.0f}% of "
        f"{cov['all']['n']} rows; stricter, with each family's intervals built from the other families only: "
        f"{100 * (payload['intervals']['coverage_nested_loso']['covered'] or 0):.0f}%",
    ]
    return Report(data={"loso": payload}, tables=[
        Table("leave-one-source-out accuracy (|error| = |predicted - measured| / measured)",
              ["group", "quantity", "predicted", "coverage", "median |err|", "p90 |err|"], rows),
        Table("calibration knobs: physical, fitted on all families, range over the LOSO folds",
              ["knob", "physical", "fitted", "LOSO folds"], knob_rows)], notes=notes)


def _fmt_pct(x) -> str:
    return "-" if x is None else f"{x:.1f}%"
