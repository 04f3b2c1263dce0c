"""The timing knobs (catalog/data/timing.yaml) with optional overrides: the one loader every entry point uses."""

from __future__ import annotations

import functools
from pathlib import Path

from sizeup.errors import SizeupError

TIMING_FILE = Path(__file__).parent / "data" / "timing.yaml"




@functools.lru_cache(maxsize=4)
def _timing_data(path: str) -> dict:
    from sizeup.catalog import read_yaml

    return read_yaml(Path(path)) or {}


def timing_data() -> dict:
    """timing.yaml's {knob: {value, source}} as cited, before any calibration (cached; the engine profiles name
    knobs of it, catalog.engines.TIMING_REFS)."""
    return _timing_data(str(TIMING_FILE))


def load_timing_knobs(overrides: dict | None = None, path: Path | None = None):
    """TimingKnobs from catalog/data/timing.yaml, with optional {name: value} overrides (dicts merge)."""
    from sizeup.core.timing import TimingKnobs

    from sizeup.calib import apply_to_timing

    data = apply_to_timing(_timing_data(str(path or TIMING_FILE)))  # fitted values (calibration.yaml) unless off
    for key, value in (overrides or {}).items():
        _check_override(str(key), value, data.get(key))
        base = data.get(key)
        if isinstance(value, dict) and isinstance(base, dict) and isinstance(base.get("value"), dict):
            merged = dict(base["value"])
            merged.update(value)
            value = merged
        data[key] = {"value": value, "source": "scenario override"}
    try:
        return TimingKnobs.from_mapping(data)
    except KeyError as exc:
        from dataclasses import fields

        from sizeup.errors import did_you_mean

        names = [f.name for f in fields(TimingKnobs) if f.name != "sources"]
        raise SizeupError(f"unknown timing knob {exc.args[0]!r}.{did_you_mean(str(exc.args[0]), names)} "
                          f"Known: {', '.join(names)}") from None
    except TypeError as exc:
        raise SizeupError(f"bad timing knob value: {exc}") from None




def _check_override(key: str, value, base) -> None:
    """A timing override must have the type of the catalog value it replaces, with finite numbers; fractions
    (overlaps, efficiencies) stay in [0, 1]."""
    import math

    base_value = base.get("value") if isinstance(base, dict) and "value" in base else base
    values = value.values() if isinstance(value, dict) else [value]
    if isinstance(base_value, dict) != isinstance(value, dict) and base is not None:
        kind = "a mapping" if isinstance(base_value, dict) else "a number"
        raise SizeupError(f"timing override {key}: must be {kind}, got {value!r}")
    if base is not None and isinstance(base_value, (int, float)) and not isinstance(base_value, bool) \
            and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise SizeupError(f"timing override {key}: must be a number, got {value!r}")
    for x in values:
        if isinstance(x, list) and all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in x):
            items = x
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            items = [x]
        else:
            raise SizeupError(f"timing override {key}: must be a number, got {x!r}")
        for i in items:
            if not math.isfinite(i) or i < 0:
                raise SizeupError(f"timing override {key}: must be a finite number >= 0, got {i!r}")
            if (key.endswith(("_overlap", "_fraction", "_efficiency")) or "efficiency" in key) and i > 1:
                raise SizeupError(f"timing override {key}: a fraction must be in [0, 1], got {i!r}")


# --------------------------------------------------------------------------- serving knobs

@functools.lru_cache(maxsize=4)
def _serving_knobs_from_file(path: str):
    from sizeup.catalog import read_yaml
    from sizeup.core.inference import ServingKnobs

    data = read_yaml(Path(path)) or {}
    return ServingKnobs.from_dict(data.get("knobs") or {})


def load_serving_knobs(catalog=None):
    """ServingKnobs from catalog/data/inference.yaml (or `catalog.defaults['inference']` when present), with the
    active calibration's in-model GEMM fraction (with_model_matmul_fraction)."""
    defaults = getattr(catalog, "defaults", None) if catalog is not None else None
    try:
        section = defaults.get("inference") if defaults is not None and hasattr(defaults, "get") else None
    except Exception:  # defaults not loadable: fall back to the file
        section = None
    if isinstance(section, dict) and isinstance(section.get("knobs"), dict):
        from sizeup.core.inference import ServingKnobs

        return with_serving_calibration(with_model_matmul_fraction(ServingKnobs.from_dict(section["knobs"])))
    from sizeup.catalog import DATA_DIR

    return with_serving_calibration(with_model_matmul_fraction(_serving_knobs_from_file(str(DATA_DIR / "inference.yaml"))))


def with_serving_calibration(knobs):
    """The active calibration's fitted serving knobs (calibration.yaml: tp_allreduce_exposed_s, api_server_ttft_s;
    their physical value 0 stays with --no-calibration)."""
    from sizeup import calib

    return calib.apply_to_serving(knobs)


def with_model_matmul_fraction(knobs):
    """Serving GEMMs run at the same fraction of the MAMF curve inside a model's forward as training's: the active
    timing knobs' matmul_training_fraction (the packaged calibration's fitted value, a user calibration's, or the
    physical 1.0 with --no-calibration). One figure for both, fitted on training rows only."""
    tk = load_timing_knobs()
    src = tk.sources.get("matmul_training_fraction", "")
    return knobs.with_(matmul_model_fraction=float(tk.matmul_training_fraction),
                       sources={**dict(knobs.sources), "matmul_model_fraction": f"timing knob matmul_training_fraction "
                                                                                f"({src})"})
