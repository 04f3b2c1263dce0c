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
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sizeup.errors import SizeupError

from sizeup.catalog.knobs import TIMING_FILE, load_timing_knobs  # noqa: F401  (re-exported)


# --------------------------------------------------------------------------- schema

Num = Union[int, float, str]


class _Strict(BaseModel):
    # strict: a YAML `seq: true` or `seq: 2048.5` is refused, never read as 1 or 2048
    # defer_build: the validator is built when a scenario file is first read (pydantic's ConfigDict.defer_build)
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class WorkloadSection(_Strict):
    tokens: Optional[Num] = None
    samples: Optional[Num] = None
    tokens_per_sample: Optional[Num] = None
    epochs: Optional[float] = Field(default=None, gt=0)


class TrainingSection(_Strict):
    seq: Optional[int] = Field(default=None, gt=0)
    decoder_seq: Optional[int] = Field(default=None, gt=0)
    micro_batch: Optional[int] = Field(default=None, gt=0)
    global_batch: Optional[int] = Field(default=None, gt=0)
    grad_accum: Optional[int] = Field(default=None, gt=0)
    precision: Optional[str] = None
    optimizer: Optional[str] = None
    zero: Optional[Union[int, str]] = None
    tp: Optional[int] = Field(default=None, gt=0)
    pp: Optional[int] = Field(default=None, gt=0)
    cp: Optional[int] = Field(default=None, gt=0)
    ep: Optional[int] = Field(default=None, gt=0)
    virtual_pp: Optional[int] = Field(default=None, gt=0)
    sequence_parallel: Optional[bool] = None
    recompute: Optional[str] = None
    attention: Optional[str] = None
    peft: Optional[Union[str, bool]] = None
    lora_rank: Optional[int] = Field(default=None, gt=0)
    offload_optimizer: Optional[str] = None
    optimizer_in_backward: Optional[bool] = None
    kernel: Optional[str] = None


class HardwareSection(_Strict):
    gpu: Optional[Union[str, list[str]]] = None
    gpus: Optional[Union[int, list[int]]] = None
    gpus_per_node: Optional[int] = Field(default=None, gt=0)


class PlatformSection(_Strict):
    name: Optional[Union[str, list[str]]] = None
    pricing: Optional[Union[str, list[str]]] = None
    region: Optional[str] = None


def _with_every_job_flag(model: type[BaseModel], sections: tuple[str, ...], name: str,
                         exclude: tuple[str, ...] = ()) -> type[BaseModel]:
    """`model` plus an optional field for every job flag (sizeup.job.flags, the one flag table) of `sections` it does
    not declare itself, so that a scenario file takes every job flag the CLI takes; the job parser checks the values
    (one line per bad value), the section model only their YAML types."""
    from pydantic import create_model

    from sizeup.job.flags import JOB_FLAGS

    types = {"int": Optional[int], "float": Optional[Union[int, float]], "bool": Optional[bool],
             "count": Optional[Num], "text": Optional[Union[str, int, float, list[str]]],
             "list": Optional[Union[str, list[str]]]}
    extra = {f.name: (types[f.kind], None) for f in JOB_FLAGS
             if f.section in sections and f.name not in model.model_fields and f.name not in exclude}
    return create_model(name, __base__=model, **extra) if extra else model


TrainingSection = _with_every_job_flag(  # type: ignore[misc]
    TrainingSection, ("model", "batch", "parallelism", "precision", "optimizer", "recompute", "offload", "peft",
                      "execution"), "TrainingSection")
HardwareSection = _with_every_job_flag(HardwareSection, ("cluster",), "HardwareSection")  # type: ignore[misc]


class PricingFlagsSection(_Strict):
    """Pricing job flags other than the platform and pricing model (those have their own keys): top level only."""


PricingFlagsSection = _with_every_job_flag(  # type: ignore[misc]
    PricingFlagsSection, ("pricing",), "PricingFlagsSection", exclude=("platform", "pricing"))

# Every section key may also be written at the top level (the shared flag names); those keys are validated by
# the same section model, so ranges and spellings are checked once.
FLAT_SECTIONS = (("workload", WorkloadSection), ("training", TrainingSection), ("hardware", HardwareSection),
                 ("pricing_flags", PricingFlagsSection))
# keys other commands (compare, budget, demo, audit) read from the same file; kept, not used by `train`
OTHER_KEYS = ("deadline", "budget", "max_gpus", "impact", "phases", "buy", "seed_claims", "sort",
              # serving (infer, serve-plan)
              "rps", "prompt_len", "output_len", "concurrency", "batch", "requests", "engine", "engine_opt", "weights",
              "kv_dtype", "trace", "static", "gpu_memory_utilization", "allow_long_context", "ttft_p95", "tpot_p95",
              "ttft_p50", "tpot_p50")


class ScenarioFile(_Strict):
    name: str = ""
    description: str = ""
    source: str = ""
    model: Optional[Union[str, dict[str, Any]]] = None
    workload: Optional[WorkloadSection] = None
    training: Optional[TrainingSection] = None
    hardware: Optional[HardwareSection] = None
    platform: Optional[Union[str, list[str], PlatformSection]] = None
    pricing: Optional[Union[str, list[str]]] = None
    timing: dict[str, Any] = {}
    # read by other commands
    deadline: Optional[Any] = None
    budget: Optional[Any] = None
    max_gpus: Optional[Any] = None
    impact: Optional[Any] = None
    phases: Optional[Any] = None
    buy: Optional[Any] = None
    seed_claims: Optional[Any] = None
    sort: Optional[Any] = None
    # serving (infer, serve-plan): the same names and meanings as their flags
    rps: Optional[float] = None
    prompt_len: Optional[Union[int, str]] = None   # 512, '2K', 'p50=512,p95=2048' or 'mean=730,p95=2048'
    output_len: Optional[Union[int, str]] = None
    concurrency: Optional[int] = None
    batch: Optional[int] = None
    requests: Optional[int] = None
    engine: Optional[str] = None
    engine_opt: Optional[Union[list[str], dict[str, Union[str, int, float, bool]]]] = None  # FIELD=VALUE or a mapping
    weights: Optional[str] = None
    kv_dtype: Optional[str] = None
    trace: Optional[str] = None
    static: Optional[bool] = None
    gpu_memory_utilization: Optional[float] = None
    allow_long_context: Optional[bool] = None
    ttft_p95: Optional[Union[str, float]] = None   # '2s', '500ms' or seconds
    tpot_p95: Optional[Union[str, float]] = None
    ttft_p50: Optional[Union[str, float]] = None
    tpot_p50: Optional[Union[str, float]] = None


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
    from sizeup.catalog import read_yaml
    from sizeup.errors import did_you_mean, pydantic_message

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
