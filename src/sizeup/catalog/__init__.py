"""The embedded catalog: models, GPUs, platforms and defaults, as YAML data with sources.

Nothing is read at import. `load_catalog()` returns a cached `Catalog`; each kind of entry is
read (with the C YAML loader when available) and validated by pydantic the first time it is asked for.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

from sizeup.errors import SizeupError, did_you_mean, pydantic_message

DATA_DIR = Path(__file__).parent / "data"

try:  # the C loader is ~10x faster than the pure-Python one
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


def read_yaml(path: Path) -> Any:
    with open(path, "rb") as fh:
        return yaml.load(fh, Loader=_Loader)


def normalize(name: str) -> str:
    """Case-, space-, dash- and underscore-insensitive key: 'Llama-2 7B' -> 'llama27b'."""
    return re.sub(r"[^a-z0-9.]", "", str(name).lower())


class Catalog:
    """Entries by kind. Lookups are forgiving (case, dashes, aliases) and fail with 'did you mean'."""

    def __init__(self, data_dir: Path = DATA_DIR, extra_files: tuple[Path, ...] = ()):
        self.data_dir = Path(data_dir)
        self.extra_files = tuple(Path(p) for p in extra_files)

    # ------------------------------------------------------------------ models
    @functools.cached_property
    def models(self) -> dict:
        from sizeup.schema import ModelFile
        from pydantic import ValidationError

        out = {}
        for path in sorted((self.data_dir / "models").glob("*.yaml")):
            try:
                out[path.stem] = ModelFile.model_validate(read_yaml(path)).to_core(path.stem)
            except ValidationError as exc:
                raise SizeupError(f"catalog model {path.name}: {pydantic_message(exc)}") from None
        return out

    @functools.cached_property
    def _model_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for model_id, arch in self.models.items():
            for key in (model_id, *arch.aliases):
                index[normalize(key)] = model_id
                if "/" in key:  # 'meta-llama/Llama-2-7b-hf' also matches 'Llama-2-7b-hf'
                    index.setdefault(normalize(key.split("/", 1)[1]), model_id)
        return index

    def model(self, name: str):
        """A preset by id, alias or Hugging Face repo name (case-insensitive)."""
        key = normalize(name)
        model_id = self._model_index.get(key)
        if model_id is None:
            raise SizeupError(
                f"unknown model {name!r}.{did_you_mean(name, self.models)} "
                "Run 'sizeup models' for the list, or pass a path to a Hugging Face config.json"
            )
        return self.models[model_id]


@functools.lru_cache(maxsize=8)
def _load(data_dir: str, extra: tuple[str, ...]) -> Catalog:
    return Catalog(Path(data_dir), tuple(Path(p) for p in extra))


def load_catalog(extra_files: tuple[str, ...] | list[str] = ()) -> Catalog:
    """The embedded catalog, plus optional user catalog files (loaded once, cached)."""
    return _load(str(DATA_DIR), tuple(str(p) for p in extra_files))


def resolve_model(spec: str, catalog: Catalog | None = None):
    """A model from a preset id/alias or a path to a Hugging Face config.json."""
    catalog = catalog or load_catalog()
    text = str(spec)
    if text.lower().endswith(".json"):
        from sizeup.catalog.hf_config import load_hf_config

        return load_hf_config(Path(text))
    return catalog.model(text)
