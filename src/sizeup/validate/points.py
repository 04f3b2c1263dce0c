"""Reader for the published-runs schema (`published_runs_dev.yaml` and files with the same layout).

`load_points()` with no path reads the default development set: `published_runs_dev.yaml` plus every other
`*.yaml` in `validate/data/` whose top level says `default: true` and holds a `points:` list (e.g.
`published_runs_more.yaml`); `default_files()` lists them. A point id may appear only once across them.

Every field a source did not state is null, so every field is Optional here. The fixed parts of the
schema (source, model, hardware, parallel, measured) forbid unknown keys; `workload` is open (sources
describe workloads differently: tokens, steps, request counts, datasets...).

A point that does not validate does not stop the run: `load_points` returns it as a `BadPoint`
with a one-line reason, and the validator lists it as skipped.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sizeup.errors import SizeupError, pydantic_message

DATA_DIR = Path(__file__).parent / "data"
DEV_SET = DATA_DIR / "published_runs_dev.yaml"
"""The original development set; always part of the default files."""


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
    head_dim: Optional[int] = None
    """Per-head width when the source sets it apart from hidden/heads (MaxText `head_dim: 128`)."""
    dropout: Optional[float] = None
    """Dropout probability the model applies in training (Hugging Face GPT2Config resid/attn/embd_pdrop default 0.1);
    null = none stated (no dropout assumed)."""
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
    longest_sample_tokens: Optional[int] = None
    """tokens of the longest (padded) micro-batch the run reached, when the source states it or its data filter
    bounds it at the truncation limit (longest_sample_source says how): a run's peak memory is set by it"""
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
    framework: Optional[str] = None
    """Training framework that produced the measurement (deepspeed, maxtext, torchtune, ...): the family
    a point is grouped under; also read (with the source) to pick the framework's kernel profile."""
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
        """Family: the stated `framework`, else the source repository ('mosaicml/llm-foundry') or the
        paper/page title's head."""
        if self.framework and self.framework.strip():
            return self.framework.strip().lower()
        return source_family(self.source[0] if self.source else None)

    def text(self) -> str:
        """All free text of the point (lower case), for reading stated definitions and settings."""
        parts = [self.framework, self.notes, self.quote, self.model.arch_type, self.model.notes,
                 self.hardware.notes, self.parallel.other, self.workload.kind, self.workload.notes]
        parts += [m.notes for m in self.measured]
        # a table's footnote definitions ('*= Uses PagedAdamW', '**= Uses torch compile') describe the rows marked
        # with them, not every row a quote repeats them for: the row's own fields say which marks it carries
        return _FOOTNOTE_DEF.sub(" ", " | ".join(p for p in parts if p)).lower()


_FOOTNOTE_DEF = re.compile(r"'\*+\s*=\s*[^']*'")


class PointsFile(_Fixed):
    schema_version: Optional[int] = None
    generated: Optional[str] = None
    default: Optional[bool] = None
    """True: part of the default development set that `sizeup validate` (no path) reads."""
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
        measured = measured if isinstance(measured, list) else []  # a malformed point may hold anything here
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


def _read_yaml(path: Path) -> Any:
    """Parsed YAML of a file, cached on (path, size, mtime): the default set is parsed once per process even
    though `default_files()` and `load_points()` both read it. Callers must not mutate the result."""
    try:
        st = path.stat()
    except OSError as exc:
        raise SizeupError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return _read_yaml_cached(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _read_yaml_cached(path: str, size: int, mtime_ns: int) -> Any:
    from sizeup.catalog import read_user_yaml

    # regular files only (a FIFO or a directory is one line, never a hang), size and nesting bounds
    return read_user_yaml(path, "validation file")


def _is_default(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("default") is True and isinstance(raw.get("points"), list)


def default_files(data_dir: str | Path | None = None) -> list[Path]:
    """The files `load_points()` reads without a path: the dev set, then every other `*.yaml` of the data
    folder marked `default: true` with a `points:` list, in name order."""
    folder = Path(data_dir) if data_dir else DATA_DIR
    dev = folder / DEV_SET.name
    out = [dev] if dev.exists() else []
    for path in sorted(folder.glob("*.yaml")):
        if path == dev:
            continue
        if _is_default(_read_yaml(path)):
            out.append(path)
    return out


def _points_of(path: Path, raw: Any) -> list[Point | BadPoint]:
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


ERRATA = DATA_DIR / "errata.yaml"
ERRATUM_MARK = "[erratum (validate/data/errata.yaml)"
"""Prefix of the note apply_errata appends to a patched point (the runner lists it among the row's assumptions)."""
_ERRATA_LOCKED = ("id", "measured", "quote", "source", "category")


def load_errata(path: Path | None = None) -> list[dict]:
    """validate/data/errata.yaml: corrections to points of the shared development file, each with its evidence."""
    path = path or ERRATA
    if not path.exists():
        return []
    entries = (_read_yaml(path) or {}).get("errata") or []
    out = []
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("ids"), list):  # one erratum for several rows
            out += [{**{k: v for k, v in e.items() if k != "ids"}, "id": i} for i in e["ids"]]
        else:
            out.append(e)
    entries = out
    for e in entries:
        if not isinstance(e, dict) or not e.get("id") or not isinstance(e.get("patch"), dict):
            raise SizeupError(f"{path.name}: every erratum needs an id (or ids) and a patch mapping")
        if len(str(e.get("evidence") or "").strip()) < 40:
            raise SizeupError(f"{path.name}: erratum {e['id']!r} needs its evidence (a quote, commit or URL)")
        locked = [k for k in e["patch"] if k in _ERRATA_LOCKED]
        if locked:
            raise SizeupError(f"{path.name}: erratum {e['id']!r} may not change {', '.join(locked)}")
    return entries


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base.get(k), v)
        return out
    return patch


def apply_errata(raw: Any, errata: list[dict]) -> Any:
    """The raw points with each erratum's patch deep-merged into its point (measured values and quotes untouched);
    the point's notes say that an erratum applies. An erratum naming no point is an error (stale errata)."""
    if not errata or not isinstance(raw, dict) or not isinstance(raw.get("points"), list):
        return raw
    by_id = {e["id"]: e for e in errata}
    points, used = [], set()
    for item in raw["points"]:
        e = by_id.get(item.get("id")) if isinstance(item, dict) else None
        if e is not None:
            item = _merge(item, e["patch"])
            item["notes"] = f"{item.get('notes') or ''} {ERRATUM_MARK}: {e['evidence']}]".strip()
            used.add(e["id"])
        points.append(item)
    stale = sorted(set(by_id) - used)
    if stale:
        raise SizeupError(f"errata.yaml: no development-set point has id {', '.join(map(repr, stale))}")
    return {**raw, "points": points}


def load_points(path: str | Path | None = None) -> list[Point | BadPoint]:
    """Points of a published-runs file, invalid ones as BadPoint. Without a path: the default development
    set, i.e. every file of `default_files()` (an id repeated across those files is an error)."""
    if path:
        path = Path(path)
        if not path.exists():
            raise SizeupError(f"validation file not found: {path}")
        if not path.is_file():  # a directory, FIFO or device: one line before any stat-keyed cache
            from sizeup.catalog import read_user_bytes

            read_user_bytes(path, "validation file")
        return _points_of(path, _read_yaml(path))
    out: list[Point | BadPoint] = []
    seen: dict[str, Path] = {}
    for file in default_files():
        raw = _read_yaml(file)
        if file.name == DEV_SET.name:
            raw = apply_errata(raw, load_errata(file.parent / ERRATA.name))
        for p in _points_of(file, raw):
            if p.id in seen and p.id != "?":
                raise SizeupError(f"point id {p.id!r} appears in both {seen[p.id].name} and {file.name}")
            seen[p.id] = file
            out.append(p)
    return out
