"""Scenario files (YAML) for `sizeup train` and friends, and the timing-knob loader.

A scenario holds the model, the workload, the training setup, the hardware and the platform/pricing
(kept for the cost commands). CLI flags override it. Two spellings are accepted:

    # sectioned (preferred)                     # flat (the shared flag names, as examples/seed004.yaml)
    model: llama-2-70b                          model: llama-2-7b
    workload: {tokens: 2T}                      samples: 10000
    training: {seq: 4096, global_batch: 128,    tokens_per_sample: 500
               tp: 8, pp: 2, zero: 1}           gpu: t4
    hardware: {gpu: h100-sxm, gpus: 512}        platform: modal
    platform: {name: aws, pricing: spot}
    timing: {dp_overlap: 0.8}                   # optional knob overrides (catalog/data/timing.yaml)

Unknown keys are errors (pydantic extra="forbid"), with did-you-mean.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizeup.errors import SizeupError

from sizeup.catalog.knobs import TIMING_FILE, load_timing_knobs  # noqa: F401  (re-exported)


# The file schema (pydantic) lives in sizeup.scenario_schema and is imported on first use of one of its names.
_SCHEMA_NAMES = ("Num", "WorkloadSection", "TrainingSection", "HardwareSection", "PlatformSection",
                 "PricingFlagsSection", "ScenarioFile", "FLAT_SECTIONS", "OTHER_KEYS")


def __getattr__(name: str):
    if name in _SCHEMA_NAMES:
        from sizeup import scenario_schema

        return getattr(scenario_schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Scenario:
    """A scenario flattened to the shared flag names (None = not given), plus knob overrides."""

    values: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    description: str = ""
    path: str = ""
    notes: list[str] = field(default_factory=list)
    other: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, list] = field(default_factory=dict)  # gpu / platform / pricing given as lists, whole

    def get(self, key: str, default=None):
        v = self.values.get(key)
        return default if v is None else v

    def merged(self, flags: dict[str, Any]) -> dict[str, Any]:
        """Scenario values overridden by every flag that was given (not None)."""
        out = dict(self.values)
        out.update({k: v for k, v in flags.items() if v is not None})
        return out


def _first(value, key: str, notes: list[str]):
    if isinstance(value, list):
        if not value:
            return None
        if len(value) > 1:
            notes.append(f"scenario lists several values for {key} ({', '.join(map(str, value))}); "
                         f"using the first ({value[0]}); `sizeup compare` evaluates them all")
        return value[0]
    return value


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML; SizeupError with the offending key on bad input."""
    from pydantic import ValidationError

    from sizeup.catalog import read_yaml
    from sizeup.errors import did_you_mean, pydantic_message
    from sizeup.scenario_schema import FLAT_SECTIONS, OTHER_KEYS, PlatformSection, ScenarioFile

    p = Path(path)
    if not p.exists():
        raise SizeupError(f"scenario file {str(path)!r} not found")
    if not p.is_file():
        raise SizeupError(f"scenario {str(path)!r} is not a regular file (a directory, FIFO or device); give a .yaml file")
    try:
        raw = read_yaml(p)
    except Exception as exc:  # yaml.YAMLError and friends
        raise SizeupError(f"cannot read scenario {str(path)!r}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise SizeupError(f"scenario {str(path)!r} must be a mapping (model, workload, training, hardware, platform)")
    flat_keys = {key: section for section, model in FLAT_SECTIONS for key in model.model_fields}
    known = list(ScenarioFile.model_fields) + list(flat_keys)
    for key in raw:
        if key not in known:
            raise SizeupError(f"scenario {p.name}: unknown key {key!r}.{did_you_mean(str(key), known)} "
                              "Sections: model, workload, training, hardware, platform, pricing, timing")
    flat = {section: {k: v for k, v in raw.items() if flat_keys.get(k) == section} for section, _ in FLAT_SECTIONS}
    try:
        sf = ScenarioFile.model_validate({k: v for k, v in raw.items() if k not in flat_keys})
        top = [model.model_validate(flat[section]) for section, model in FLAT_SECTIONS]
    except ValidationError as exc:
        raise SizeupError(f"scenario {p.name}: {pydantic_message(exc)}") from None

    notes: list[str] = []
    values: dict[str, Any] = {}

    def put(key: str, value, where: str):
        if value is None:
            return
        if values.get(key) is not None and values[key] != value:
            raise SizeupError(f"scenario {p.name}: {key} given twice ({values[key]!r} and {value!r} in {where})")
        values[key] = value

    model = sf.model
    if isinstance(model, dict):
        model = model.get("preset") or model.get("config") or model.get("id")
        if not model:
            raise SizeupError(f"scenario {p.name}: model must be a preset id / config.json path, or {{preset: ...}}")
    put("model", model, "model")
    for section in top:
        for key, v in section.model_dump().items():
            put(key, v, "top level")
    for name, section in (("workload", sf.workload), ("training", sf.training), ("hardware", sf.hardware)):
        if section:
            for key, v in section.model_dump().items():
                put(key, v, name)
    plat = sf.platform
    if isinstance(plat, PlatformSection):
        put("platform", plat.name, "platform")
        put("pricing", plat.pricing, "platform")
        put("region", plat.region, "platform")
    else:
        put("platform", plat, "platform")
    put("pricing", sf.pricing, "pricing")
    lists = {key: list(values[key]) for key in ("gpu", "gpus", "platform", "pricing")
             if isinstance(values.get(key), list) and values[key]}
    for key in ("gpu", "gpus", "platform", "pricing"):
        if key in values:
            values[key] = _first(values[key], key, notes)
    other = {k: getattr(sf, k) for k in OTHER_KEYS if getattr(sf, k) is not None}
    return Scenario(values, dict(sf.timing), sf.name, sf.description, str(p), notes, other, lists)
