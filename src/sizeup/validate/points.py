"""Reader for the published-runs schema (`published_runs_dev.yaml` and files with the same layout).

Every field a source did not state is null, so every field is Optional here. The fixed parts of the
schema (source, model, hardware, parallel, measured) forbid unknown keys; `workload` is open (sources
describe workloads differently: tokens, steps, request counts, datasets...).

A point that does not validate does not stop the run: `load_points` returns it as a `BadPoint`
with a one-line reason, and the validator lists it as skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sizeup.errors import SizeupError, pydantic_message

DATA_DIR = Path(__file__).parent / "data"
DEV_SET = DATA_DIR / "published_runs_dev.yaml"
DEFAULT_FILES = (DEV_SET, DATA_DIR / "serving_points.yaml", DATA_DIR / "published_runs_more.yaml")
"""Files `load_points()` reads when no path is given (those that exist), in this order."""


class _Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Fixed):
    title: Optional[str] = None
    url: Optional[str] = None
    repo: Optional[str] = None
    path: Optional[str] = None
    commit: Optional[str] = None
    via: Optional[str] = None
    primary: Optional[bool] = True


class ModelInfo(_Fixed):
    name: Optional[str] = None
    params: Optional[float] = None
    layers: Optional[int] = None
    hidden: Optional[int] = None
    heads: Optional[int] = None
    kv_heads: Optional[int] = None
    ffn: Optional[int] = None
    vocab: Optional[int] = None
    seq_len: Optional[int] = None
    arch_type: Optional[str] = None
    arch_source: Optional[str] = None
    notes: Optional[str] = None


class Hardware(_Fixed):
    gpu: Optional[str] = None
    gpu_memory_gb: Optional[float] = None
    count: Optional[int] = None
    interconnect: Optional[str] = None
    notes: Optional[str] = None


class Parallel(_Fixed):
    tp: Optional[int] = None
    pp: Optional[int] = None
    dp: Optional[int] = None
    cp: Optional[int] = None
    ep: Optional[int] = None
    virtual_pp: Optional[int] = None
    sharding: Optional[str] = None
    micro_batch: Optional[int] = None
    grad_accum: Optional[int] = None
    global_batch_seqs: Optional[int] = None
    global_batch_tokens: Optional[float] = None
    recompute: Optional[str] = None
    precision: Optional[str] = None
    optimizer: Optional[str] = None
    other: Optional[str] = None


class Workload(BaseModel):
    """Open: known keys are typed, anything else is kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Optional[str] = None
    tokens: Optional[float] = None
    steps: Optional[float] = None
    batch_size: Optional[int] = None
    input_len: Optional[int] = None
    output_len: Optional[int] = None
    num_requests: Optional[int] = None
    seq_len: Optional[int] = None
    dataset: Optional[str] = None
    notes: Optional[str] = None


class Measured(_Fixed):
    quantity: str
    value: float
    unit: str
    notes: Optional[str] = None


class Point(_Fixed):
    id: str
    category: Literal["A", "B", "C", "D"]
    source: list[Source]
    quote: Optional[str] = None
    model: ModelInfo = Field(default_factory=ModelInfo)
    hardware: Hardware = Field(default_factory=Hardware)
    parallel: Parallel = Field(default_factory=Parallel)
    workload: Workload = Field(default_factory=Workload)
    measured: list[Measured]
    notes: Optional[str] = None
    completeness: Optional[str] = None
    """full / partial / minimal (informational: only "full" A/B points enter the full-configuration coverage)."""

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return []
        return value if isinstance(value, list) else [value]

    @field_validator("model", "hardware", "parallel", "workload", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    # ------------------------------------------------------------------ helpers
    @property
    def primary(self) -> bool:
        """True when the first (main) source is the primary document."""
        return bool(self.source[0].primary) if self.source and self.source[0].primary is not None else True

    @property
    def family(self) -> str:
        """Source family: the repository ('mosaicml/llm-foundry') or the paper/page title's head."""
        return source_family(self.source[0] if self.source else None)

    def text(self) -> str:
        """All free text of the point (lower case), for reading stated definitions and settings."""
        parts = [self.notes, self.quote, self.model.arch_type, self.model.notes, self.hardware.notes,
                 self.parallel.other, self.workload.kind, self.workload.notes]
        parts += [m.notes for m in self.measured]
        return " | ".join(p for p in parts if p).lower()


class PointsFile(_Fixed):
    schema_version: Optional[int] = None
    generated: Optional[str] = None
    points: list[Any]


class Skip(Exception):
    """A point (or one of its quantities) cannot be predicted; the message says exactly why."""


class BadPoint:
    """A point that failed schema validation: reported as skipped, never fatal."""

    def __init__(self, raw: Any, reason: str):
        self.raw = raw
        self.reason = reason
        self.id = str(raw.get("id", "?")) if isinstance(raw, dict) else "?"
        self.category = str(raw.get("category", "?")) if isinstance(raw, dict) else "?"
        measured = raw.get("measured") if isinstance(raw, dict) else None
        self.quantities = [str(m.get("quantity", "?")) for m in measured or [] if isinstance(m, dict)] or ["?"]


_REPO_RE = re.compile(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)\b")


def source_family(source: Source | None) -> str:
    if source is None:
        return "unknown"
    if source.repo:
        return source.repo
    title = (source.title or "").strip()
    match = _REPO_RE.match(title)
    if match:
        return match.group(1)
    # "Chowdhery et al. 2022, PaLM (arXiv:...)" -> "Chowdhery et al. 2022, PaLM"
    head = re.split(r"\s*\(|:|\s+-\s+|,?\s+'", title)[0].strip(" '\",")
    return head[:60] or "unknown"


def load_points(path: str | Path | list | tuple | None = None) -> list[Point | BadPoint]:
    """Points of a published-runs file, or of several (a list), invalid ones as BadPoint.
    Default: every existing file of DEFAULT_FILES (the dev set, the serving points, further published runs)."""
    if path is None:
        path = [f for f in DEFAULT_FILES if f.exists()]
    if isinstance(path, (list, tuple)):
        return [p for f in path for p in load_points(f)]
    return _load_file(Path(path))


def _load_file(path: Path) -> list[Point | BadPoint]:
    import yaml

    if not path.exists():
        raise SizeupError(f"validation file not found: {path}")
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with open(path, "rb") as fh:
            raw = yaml.load(fh, Loader=loader)
    except yaml.YAMLError as exc:
        raise SizeupError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(raw, list):
        raw = {"points": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("points"), list):
        raise SizeupError(f"{path}: expected a mapping with a 'points:' list (published-runs schema)")
    try:
        PointsFile.model_validate(raw)
    except ValidationError as exc:
        raise SizeupError(f"{path}: {pydantic_message(exc)}") from None
    out: list[Point | BadPoint] = []
    for item in raw["points"]:
        try:
            out.append(Point.model_validate(item))
        except ValidationError as exc:
            out.append(BadPoint(item, f"schema: {pydantic_message(exc)}"))
    return out
