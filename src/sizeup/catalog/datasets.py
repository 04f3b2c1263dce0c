"""Training datasets with the sample length a prediction needs (catalog/data/datasets.yaml)."""

from __future__ import annotations

import functools
import re

from sizeup.catalog import DATA_DIR


@functools.lru_cache(maxsize=1)
def datasets() -> tuple[dict, ...]:
    from sizeup.catalog import read_yaml

    return tuple((read_yaml(DATA_DIR / "datasets.yaml") or {}).get("datasets") or ())


def dataset_by_name(name: str) -> dict | None:
    """The dataset whose id or alias is `name` (case-insensitive), or None."""
    key = str(name).strip().lower()
    for d in datasets():
        if key == d["id"] or key in [a.lower() for a in d.get("aliases") or ()]:
            return d
    return None


def dataset_named_in(text: str) -> dict | None:
    """The first catalog dataset an English text names (an alias as a whole word), or None."""
    t = text.lower()
    for d in datasets():
        for alias in sorted(d.get("aliases") or (), key=len, reverse=True):
            if re.search(rf"(?<![a-z0-9]){re.escape(alias.lower())}(?![a-z0-9])", t):
                return d
    return None
