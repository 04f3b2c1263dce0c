"""The pydantic models of a scenario file (sizeup.scenario reads them only when a file is given, so that an
estimate from flags alone never imports pydantic)."""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

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
