"""Calibration profiles: fitted values kept apart from the cited physics, and the prediction intervals.

catalog/data/timing.yaml (and efficiency.yaml, overheads.yaml) hold cited or derived physics only. The few
values that are fitted to measurements live in a *calibration profile*:

- the packaged one, catalog/data/calibration.yaml, fitted on the development set with source families
  weighted equally (`sizeup calibrate --refit`, sizeup.calib.fit), recording what it was fitted on, how and when;
- a user's own, ~/.config/sizeup/calibrations/NAME.yaml (`sizeup calibrate LOG_OR_YAML --name NAME`), fitted on
  a measured run of their cluster.

Which profile is active: `use(NAME)` (the `--calibration NAME` / `--no-calibration` options), else the
SIZEUP_CALIBRATION environment variable (a name, a path, or `off`), else the packaged profile. With `off`,
every knob keeps its physical value from timing.yaml.

`interval(quantity, regime, value)` turns a figure into (P10, P50, P90) with the multiplicative factors the
profile stores per regime (quantity x framework profile x scale), derived from leave-one-source-out residuals.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from sizeup.errors import SizeupError

PACKAGED_FILE = Path(__file__).resolve().parent.parent / "catalog" / "data" / "calibration.yaml"
ENV = "SIZEUP_CALIBRATION"
OFF = frozenset({"off", "none", "no", "false", "0", "physics"})
DEFAULT = "default"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Knobs a profile may set: timing knobs by name, a mapping entry as "name.key"; memory overheads by name.
TIMING_KNOBS = ("matmul_training_fraction", "attention_end_to_end_scale", "fp8_matmul_relative_efficiency",
                "host_overhead_s_per_layer_microbatch", "elementwise_passes_hidden_fwd.eager")
OVERHEAD_KNOBS = ("fragmentation_fraction",)
SERVING_KNOBS = ("tp_allreduce_exposed_s", "step_host_per_seq_s", "api_server_ttft_s")
"""Serving knobs the packaged calibration fits on the serving rows (calib/serving.py); their physical value
(0, not counted) is in inference.yaml."""

# quantity classes of interval(): rates scale with 1/step time, times (and costs) with the step time
RATE_QUANTITIES = ("throughput", "mfu", "tflops", "tokens_per_s", "samples_per_s")
TIME_QUANTITIES = ("time", "step_time", "wall_clock", "gpu_hours", "cost")
MEMORY_QUANTITIES = ("memory",)
INFERENCE_QUANTITIES = ("inference_rate", "inference_time", "inference_memory")

SCALE_BUCKETS = ((1, "1"), (8, "2-8"), (64, "9-64"), (10**12, "65+"))


def timing_profile(kernel: str | None) -> str:
    """The step-time profile of a kernel family for interval regimes: 'hf-eager' times as 'eager'."""
    k = str(kernel or "")
    return "eager" if "eager" in k else k


def scale_bucket(gpus: Any) -> str:
    """'1', '2-8', '9-64' or '65+' GPUs ('' when unknown)."""
    try:
        n = int(gpus)
    except (TypeError, ValueError):
        return ""
    for top, label in SCALE_BUCKETS:
        if n <= top:
            return label
    return "65+"


def user_dir() -> Path:
    """~/.config/sizeup/calibrations (XDG_CONFIG_HOME respected)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sizeup" / "calibrations"


@dataclass(frozen=True)
class Calibration:
    """One calibration profile (packaged or a user's)."""

    name: str
    path: Path | None
    knobs: Mapping[str, float]
    overheads: Mapping[str, float] = field(default_factory=dict)
    serving: Mapping[str, float] = field(default_factory=dict)
    intervals: Mapping[str, Any] = field(default_factory=dict)
    fitted: Mapping[str, Any] = field(default_factory=dict)
    accuracy: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "packaged"

    def describe(self) -> str:
        when = self.fitted.get("date", "?")
        on = self.fitted.get("on") or self.fitted.get("dev_files") or "?"
        if isinstance(on, (list, tuple)):
            on = ", ".join(map(str, on))
        return f"calibration {self.name!r} ({self.kind}, fitted {when} on {on})"


# --------------------------------------------------------------------------- which profile is active

_ACTIVE: str | None = None


def use(name: str | None) -> None:
    """Make NAME (a profile name, a path, 'default' or 'off') the active calibration; None = back to the env."""
    global _ACTIVE
    if name is not None:
        _check_name(name)
    _ACTIVE = name


def use_from_flags(calibration: str | None, no_calibration: bool = False) -> None:
    """The --calibration NAME / --no-calibration options of a command (checked: the profile must load)."""
    if calibration is not None and no_calibration and not is_off(calibration):
        raise SizeupError("--calibration and --no-calibration contradict each other; give one")
    if no_calibration:
        use("off")
    elif calibration is not None:
        use(calibration.strip())
        load()  # a missing or malformed profile: one clear line now, not in the middle of the estimate
    else:
        use(None)  # back to $SIZEUP_CALIBRATION / the packaged profile (a previous call in this process may have set one)


@contextlib.contextmanager
def using(name: str | None) -> Iterator[None]:
    """Temporarily make NAME the active calibration (restores the previous choice)."""
    global _ACTIVE
    before = _ACTIVE
    use(name)
    try:
        yield
    finally:
        _ACTIVE = before


_PROFILE: list = []  # in-memory profiles pushed by using_profile (not written to disk)


@contextlib.contextmanager
def using_profile(cal: "Calibration | None") -> Iterator[None]:
    """Temporarily make the Calibration object `cal` active (None = calibration off)."""
    _PROFILE.append(cal)
    try:
        yield
    finally:
        _PROFILE.pop()


def active_name() -> str:
    if _ACTIVE is not None:
        return _ACTIVE
    env = os.environ.get(ENV, "").strip()
    return env or DEFAULT


def is_off(name: str | None = None) -> bool:
    return (name if name is not None else active_name()).strip().lower() in OFF


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise SizeupError("calibration name must be a non-empty name, a path to a profile .yaml, or 'off'")


def profile_path(name: str) -> Path:
    """Where the profile NAME lives: the packaged file for 'default', a path as given, else the user dir."""
    if name == DEFAULT:
        return PACKAGED_FILE
    if name.endswith((".yaml", ".yml")) or os.sep in name or "/" in name:
        return Path(name).expanduser()
    if not _NAME_RE.match(name):
        raise SizeupError(f"calibration name {name!r} must be letters, digits, '.', '_' or '-' (at most 64), "
                          "or a path to a .yaml profile")
    return user_dir() / f"{name}.yaml"


_CACHE: dict[tuple[str, float], Calibration] = {}


def load(name: str | None = None) -> Calibration | None:
    """The profile NAME (default: the active one); None when calibration is off. Bad profile -> SizeupError."""
    if name is None and _PROFILE:
        return _PROFILE[-1]
    name = active_name() if name is None else name
    _check_name(name)
    if is_off(name):
        return None
    path = profile_path(name)
    if not path.is_file():
        if name == DEFAULT:
            return None
        known = sorted(p.stem for p in user_dir().glob("*.yaml")) if user_dir().is_dir() else []
        raise SizeupError(f"calibration {name!r} not found ({path}); make one with 'sizeup calibrate LOG --name "
                          f"{name}'" + (f"; known: {', '.join(known)}" if known else ""))
    key = (str(path), path.stat().st_mtime)
    if key not in _CACHE:
        _CACHE[key] = _parse(name, path)
    return _CACHE[key]


def _parse(name: str, path: Path) -> Calibration:
    from sizeup.catalog import parse_yaml_text, read_user_bytes, read_yaml

    if path == PACKAGED_FILE:  # part of the packaged catalog: its parsed data comes from the verified JSON cache
        raw = read_yaml(path, "calibration")
    else:  # the shared reader: a regular file, bounded, parsed by the C loader (the pure-Python one took ~0.1 s)
        raw = parse_yaml_text(read_user_bytes(path, "calibration"), f"calibration {path}")
    if not isinstance(raw, dict) or not isinstance(raw.get("knobs"), dict):
        raise SizeupError(f"calibration {path}: expected a mapping with a 'knobs:' mapping")
    knobs: dict[str, float] = {}
    overheads: dict[str, float] = {}
    serving: dict[str, float] = {}
    for key, entry in raw["knobs"].items():
        value = entry.get("value") if isinstance(entry, dict) else entry
        number = _finite(value, f"calibration {path}: knob {key}")
        if key in TIMING_KNOBS:
            knobs[key] = number
        elif key in OVERHEAD_KNOBS:
            if number > 1:
                raise SizeupError(f"calibration {path}: {key} must be in [0, 1], got {number}")
            overheads[key] = number
        elif key in SERVING_KNOBS:
            serving[key] = number
        else:
            from sizeup.errors import did_you_mean

            allowed = TIMING_KNOBS + OVERHEAD_KNOBS + SERVING_KNOBS
            raise SizeupError(f"calibration {path}: unknown knob {key!r}.{did_you_mean(str(key), allowed)} "
                              f"Allowed: {', '.join(allowed)}")
    intervals = raw.get("intervals") or {}
    if not isinstance(intervals, dict):
        raise SizeupError(f"calibration {path}: 'intervals' must be a mapping")
    return Calibration(name=str(raw.get("name") or name), path=path, knobs=knobs, overheads=overheads,
                       serving=serving, intervals=intervals, fitted=raw.get("fitted") or {},
                       accuracy=raw.get("accuracy") or {}, kind=str(raw.get("kind") or ("packaged" if path == PACKAGED_FILE else "user")))


def _finite(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SizeupError(f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise SizeupError(f"{where} must be a finite number >= 0, got {value!r}")
    return number


# --------------------------------------------------------------------------- applying a profile


def apply_to_timing(data: Mapping[str, Any], cal: Calibration | None = None, *, use_active: bool = True) -> dict:
    """timing.yaml's {name: {value, source}} with the profile's fitted values put in (source says so)."""
    out = dict(data)
    cal = cal if cal is not None else (load() if use_active else None)
    if cal is None:
        return out
    note = f"fitted: {cal.describe()}"
    for key, value in cal.knobs.items():
        name, _, sub = key.partition(".")
        base = out.get(name)
        if sub:
            inner = dict(base["value"]) if isinstance(base, Mapping) and isinstance(base.get("value"), Mapping) else {}
            inner[sub] = value
            src = base.get("source", "") if isinstance(base, Mapping) else ""
            out[name] = {"value": inner, "source": f"{src} [{sub}: {note}]".strip()}
        else:
            physical = base.get("value") if isinstance(base, Mapping) else base
            out[name] = {"value": value, "source": f"{note}; physical value {physical}"}
    return out


def apply_to_serving(knobs, cal: Calibration | None = None):
    """core.inference.ServingKnobs with the profile's fitted serving knobs (SERVING_KNOBS) put in, each source
    saying so; unchanged when calibration is off or the profile fits none."""
    cal = cal if cal is not None else load()
    if cal is None or not cal.serving:
        return knobs
    note = f"fitted: {cal.describe()}"
    sources = dict(knobs.sources)
    serving_fit = cal.fitted.get("serving") if isinstance(cal.fitted.get("serving"), Mapping) else None
    fitted = set(serving_fit.get("fitted_knobs") or ()) if serving_fit is not None else set(cal.serving)
    for key in cal.serving:
        physical = f"physical value {getattr(knobs, key)} ({sources.get(key, 'inference.yaml')})"
        sources[key] = (f"{note}; {physical}" if key in fitted else
                        f"{cal.describe()} keeps the physical value: fitting it did not lower the leave-one-source-out "
                        f"score (docs/methodology.md, 'Serving knobs fitted on the serving rows'); {physical}")
    return knobs.with_(**{k: float(v) for k, v in cal.serving.items()}, sources=sources)


def apply_to_overheads(overheads, cal: Calibration | None = None):
    """core.types.Overheads with the profile's fitted overheads (a user's allocator fragmentation)."""
    cal = cal if cal is not None else load()
    if cal is None or not cal.overheads:
        return overheads
    from dataclasses import replace

    sources = dict(getattr(overheads, "sources", {}) or {})
    for key in cal.overheads:
        sources[key] = f"fitted: {cal.describe()}"
    return replace(overheads, **dict(cal.overheads), sources=sources)


# --------------------------------------------------------------------------- intervals


def _quantity_class(quantity: str) -> tuple[str, bool]:
    """(class in the stored intervals, invert?) for a figure's quantity name."""
    q = quantity.lower()
    if q in INFERENCE_QUANTITIES:
        return q, False
    if q in MEMORY_QUANTITIES or "memory" in q or q.endswith("_bytes"):
        return "memory", False
    if q in TIME_QUANTITIES or q.endswith(("_s", "_time", "hours", "_usd")) or "cost" in q:
        return "throughput", True
    if q in RATE_QUANTITIES or "throughput" in q or "tokens_per" in q or "flops" in q or q in ("mfu", "hfu"):
        return "throughput", False
    raise SizeupError(f"interval: unknown quantity {quantity!r}; use one of throughput, time, cost, memory, "
                      f"{', '.join(INFERENCE_QUANTITIES)}")


def job_signature(setup: Any, model_id: str, gpu_id: str, kernel: str) -> str:
    """What identifies 'the same job' for a user profile's same-job interval (batch and token count aside)."""
    st = setup
    return (f"{model_id}|{gpu_id}|{st.gpus}|tp{st.tp}|pp{st.pp}|cp{st.cp}|ep{st.ep}|mb{st.micro_batch}|s{st.seq_len}|"
            f"{st.precision.value}|{st.sharding.value}|{st.recompute.value}|{st.peft.value}|{kernel}")


def regime_keys(quantity_class: str, profile: str | None = None, gpus: Any = None) -> list[str]:
    """Most specific first: 'throughput|eager|2-8', 'throughput|eager', 'throughput'."""
    keys = []
    bucket = scale_bucket(gpus)
    if profile and bucket:
        keys.append(f"{quantity_class}|{profile}|{bucket}")
    if profile:
        keys.append(f"{quantity_class}|{profile}")
    if bucket:
        keys.append(f"{quantity_class}||{bucket}")
    keys.append(quantity_class)
    return keys


def interval_factors(quantity: str, regime: Mapping[str, Any] | None = None,
                     cal: Calibration | None = None) -> tuple[float, float, float, str] | None:
    """(f10, f50, f90, regime key used) such that the P-quantiles of the true value are value x f; None when the
    profile stores no interval for the quantity (or calibration is off and no physics intervals exist)."""
    regime = dict(regime or {})
    klass, invert = _quantity_class(quantity)
    if cal is None:
        cal = load()
    table = _interval_table(cal)
    keys = regime_keys(klass, regime.get("profile"), regime.get("gpus"))
    if cal is not None and regime.get("job") and regime.get("job") == cal.fitted.get("job_signature"):
        keys.insert(0, f"{klass}|same-job")  # the very job the profile was fitted on: its own held-out spread
    for key in keys:
        entry = table.get(key)
        if isinstance(entry, Mapping) and all(k in entry for k in ("p10", "p50", "p90")):
            f10, f50, f90 = float(entry["p10"]), float(entry["p50"]), float(entry["p90"])
            if invert:  # a time is 1 / rate: the low rate quantile is the high time quantile
                f10, f50, f90 = 1.0 / f90, 1.0 / f50, 1.0 / f10
            return f10, f50, f90, key
    return None


def _interval_table(cal: Calibration | None) -> Mapping[str, Any]:
    if cal is None:  # calibration off: the intervals of the physics-only model (nothing fitted: in-sample = LOSO)
        packaged = load(DEFAULT)
        return (packaged.intervals.get("physical") or {}) if packaged else {}
    table = dict(cal.intervals.get("regimes") or {})
    return table


def interval(quantity: str, regime: Mapping[str, Any] | None, value: float,
             cal: Calibration | None = None) -> tuple[float, float, float]:
    """(P10, P50, P90) of a predicted figure. quantity: throughput / mfu / tflops (rates), time / step_time /
    wall_clock / gpu_hours / cost (times), memory, inference_rate / inference_time / inference_memory.
    regime: {'profile': kernel profile ('eager', 'fused', 'te', 'hf-eager'), 'gpus': GPU count}; unknown parts
    fall back to the pooled interval. Without a stored interval the figure itself is returned three times."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise SizeupError(f"interval: value must be a finite number >= 0, got {value!r}")
    f = interval_factors(quantity, regime, cal)
    if f is None:
        return v, v, v
    return v * f[0], v * f[1], v * f[2]


def interval_dict(quantity: str, regime: Mapping[str, Any] | None, value: float,
                  cal: Calibration | None = None) -> dict:
    """{'p10', 'p50', 'p90', 'interval_regime'} for JSON output."""
    f = interval_factors(quantity, regime, cal)
    v = float(value)
    if f is None:
        return {"p10": v, "p50": v, "p90": v, "interval_regime": None}
    return {"p10": v * f[0], "p50": v * f[1], "p90": v * f[2], "interval_regime": f[3]}


# --------------------------------------------------------------------------- writing a user profile


def write_profile(data: Mapping[str, Any], name: str, store: str | Path | None = None) -> Path:
    """Write a user profile (mode 0600) to --store PATH or ~/.config/sizeup/calibrations/NAME.yaml."""
    import yaml

    if store:
        path = Path(store).expanduser()
        if path.is_dir() or not path.suffix:
            path = path / f"{name}.yaml"
    else:
        if not _NAME_RE.match(name) or name == DEFAULT or name.lower() in OFF:
            raise SizeupError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (not 'default' or 'off')")
        path = user_dir() / f"{name}.yaml"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(_plain(data), fh, sort_keys=False, default_flow_style=False, width=120)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    except OSError as exc:
        raise SizeupError(f"cannot write calibration profile {path}: {exc.strerror or exc}") from None
    return path


def _plain(x: Any) -> Any:
    """numpy scalars/tuples -> plain YAML types."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            return x.item()
        except (TypeError, ValueError):
            pass
    if isinstance(x, float):
        return float(f"{x:.6g}")
    return x
