"""Framework memory overheads (catalog/data/overheads.yaml) -> core.types.Overheads."""

from __future__ import annotations

import functools
from pathlib import Path

from sizeup.core.types import Overheads
from sizeup.errors import SizeupError

OVERHEAD_FIELDS = ("cuda_context_bytes", "cublas_workspace_bytes", "nccl_workspace_bytes",
                   "comm_bucket_bytes", "fragmentation_fraction")


def overheads_from_dict(data: dict, where: str = "overheads") -> Overheads:
    """Build Overheads from {field: {value, source}} (or plain numbers); unknown or negative -> SizeupError."""
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for key, entry in (data or {}).items():
        if key not in OVERHEAD_FIELDS:
            from sizeup.errors import did_you_mean

            raise SizeupError(f"{where}: unknown key {key!r}.{did_you_mean(key, OVERHEAD_FIELDS)} "
                              f"Allowed: {', '.join(OVERHEAD_FIELDS)}")
        value = entry.get("value") if isinstance(entry, dict) else entry
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SizeupError(f"{where}: {key} must be a number, got {value!r}") from None
        if not number >= 0 or number == float("inf"):
            raise SizeupError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
        if key == "fragmentation_fraction" and number > 1:
            raise SizeupError(f"{where}: fragmentation_fraction must be in [0, 1], got {number}")
        values[key] = number
        if isinstance(entry, dict) and entry.get("source"):
            sources[key] = " ".join(str(entry["source"]).split())
    return Overheads(**values, sources=sources)


@functools.lru_cache(maxsize=4)
def load_overheads(path: str | None = None) -> Overheads:
    """The catalog's overheads.yaml (or another file with the same keys)."""
    from sizeup.catalog import DATA_DIR, read_yaml

    file = Path(path) if path else DATA_DIR / "overheads.yaml"
    return overheads_from_dict(read_yaml(file) or {}, file.name)
