"""The embedded catalog: models, GPUs, platforms and defaults, as YAML data with sources.

Nothing is read at import. `load_catalog()` returns a cached `Catalog`; each kind of entry is
read (with the C YAML loader when available) and validated by pydantic the first time it is asked for.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any, Callable

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


def read_user_yaml(path: Path | str, what: str = "file") -> Any:
    """A user's YAML file; missing or malformed -> one-line SizeupError (never a parser traceback)."""
    from sizeup.errors import SizeupError

    p = Path(path)
    if not p.is_file():
        raise SizeupError(f"{what} {str(path)!r} not found")
    try:
        return read_yaml(p)
    except yaml.YAMLError as exc:
        raise SizeupError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise SizeupError(f"{path}: not a text YAML file") from None


def normalize(name: str) -> str:
    """Case-, space-, dash- and underscore-insensitive key: 'Llama-2 7B' -> 'llama27b'."""
    return re.sub(r"[^a-z0-9.]", "", str(name).lower())


def cache_dir() -> Path | None:
    """Where parsed catalogs are kept between runs ($SIZEUP_CACHE_DIR, else $XDG_CACHE_HOME/sizeup or
    ~/.cache/sizeup); None when SIZEUP_NO_CACHE is set."""
    if os.environ.get("SIZEUP_NO_CACHE"):
        return None
    root = os.environ.get("SIZEUP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sizeup")
    return Path(root)


def disk_cached(kind: str) -> Callable:
    """A cached_property whose value is also pickled to cache_dir(), keyed by every catalog file's path, size
    and mtime (and the Python and sizeup versions): a warm CLI call skips YAML parsing and validation."""

    def wrap(build: Callable) -> functools.cached_property:
        def get(self):
            folder = cache_dir()
            path = folder / f"{kind}-{self.cache_key}.pickle" if folder else None
            if path is not None:
                try:
                    with open(path, "rb") as fh:
                        return pickle.load(fh)
                except Exception:  # missing, stale format or unreadable: rebuild
                    pass
            value = build(self)
            if path is not None:
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")
                    with open(tmp, "wb") as fh:
                        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
                    os.replace(tmp, path)
                except Exception:  # read-only home, unpicklable user entry...: just don't cache
                    pass
            return value

        get.__doc__ = build.__doc__
        return functools.cached_property(get)

    return wrap


class Catalog:
    """Entries by kind. Lookups are forgiving (case, dashes, aliases) and fail with 'did you mean'."""

    def __init__(self, data_dir: Path = DATA_DIR, extra_files: tuple[Path, ...] = ()):
        self.data_dir = Path(data_dir)
        self.extra_files = tuple(Path(p) for p in extra_files)

    @functools.cached_property
    def cache_key(self) -> str:
        from sizeup import __version__

        digest = hashlib.sha1(f"{__version__} {sys.version}".encode())
        # the code that builds the cached objects is part of the key: a new field must not come back from an old pickle
        code = [Path(__file__).resolve().parent.parent / f for f in ("schema.py", "core/types.py", "core/platform.py",
                                                                      "core/cost.py", "catalog/hardware.py")]
        for path in sorted(self.data_dir.rglob("*.yaml")) + code + [Path(p).resolve() for p in self.extra_files]:
            try:
                st = path.stat()
                digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                digest.update(f"{path}:missing;".encode())
        return digest.hexdigest()[:20]

    # ------------------------------------------------------------------ models
    @disk_cached("models")
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

    # ------------------------------------------------------------------ GPUs and platforms (catalog/hardware.py)
    @functools.cached_property
    def _user_entries(self) -> tuple[dict, dict]:
        from sizeup.catalog.hardware import read_user_files

        return read_user_files(self.extra_files)

    @disk_cached("efficiency")
    def efficiency(self):
        """catalog/data/efficiency.yaml (schema.EfficiencyFile): achievable-fraction defaults and families."""
        from sizeup.catalog.hardware import load_efficiency

        return load_efficiency(self.data_dir)

    @disk_cached("gpu_files")
    def _gpu_files(self) -> dict:
        from sizeup.catalog.hardware import load_gpu_files

        return load_gpu_files(self.data_dir, self._user_entries[0])

    @disk_cached("gpus")
    def gpus(self) -> dict:
        """id -> GpuSpec (dense peaks, one-direction links, achievable fractions; sources in .sources)."""
        from sizeup.catalog.hardware import build_gpus

        return build_gpus(self._gpu_files, self.efficiency)

    @disk_cached("gpu_matcher")
    def _gpu_matcher(self):
        from sizeup.catalog.hardware import GpuMatcher

        return GpuMatcher(self._gpu_files)

    def gpu_id(self, name: str) -> str:
        """Catalog id for a free-text GPU name ('NVIDIA H100 SXM5' -> 'h100-sxm'); SizeupError if unknown."""
        from sizeup.catalog.hardware import unknown_gpu

        gpu_id = self._gpu_matcher.resolve(name)
        if gpu_id is None:
            raise unknown_gpu(name, self._gpu_matcher)
        return gpu_id

    def gpu(self, name: str):
        """A GpuSpec by id, alias or free text ('A100-80GB', 'a100 80gb sxm', 'NVIDIA H100 SXM5', 't4')."""
        if name in self.gpus:
            return self.gpus[name]
        return self.gpus[self.gpu_id(name)]

    def matmul_mamf(self, gpu: str, dtype: str = "bf16") -> tuple[float, str]:
        """(largest-GEMM achievable fraction of the dense peak, source) for a GPU and compute dtype.

        bf16/fp16 use `matmul_mamf` (also the top of GpuSpec.matmul_efficiency); fp8 uses `matmul_mamf_fp8`
        where efficiency.yaml has a measurement, else the bf16 value (stated in the source string)."""
        f = self._gpu_files[self.gpu_id(gpu) if gpu not in self._gpu_files else gpu]
        c8 = f.efficiency_knob("matmul_mamf_fp8", self.efficiency) if dtype == "fp8" else None
        c = c8 or f.efficiency_knob("matmul_mamf", self.efficiency)
        src = c.source + (f": {c.note}" if c.note else "")
        if dtype == "fp8" and c8 is None:
            src = f"no FP8 MAMF measurement; bf16 value used ({src})"
        return c.value, src

    def gpu_or_memory(self, text: str):
        """A catalog GPU, or a generic GpuSpec with only memory for a size like '24GiB' / '16GB'."""
        from sizeup.catalog.hardware import generic_gpu, memory_in_text

        mem = memory_in_text(text)
        if mem is not None:
            return generic_gpu(mem[0], mem[1], self.efficiency)
        try:
            return self.gpu(text)
        except SizeupError:
            # 'Apple M2 (16GB unified)': not a catalog GPU, but its memory size is stated
            mem = memory_in_text(text, anywhere=True)
            if mem is None or self._gpu_matcher.family(text) is not None:
                raise
            return generic_gpu(mem[0], mem[1], self.efficiency)

    @functools.cached_property
    def defaults(self):
        """Raw data of the top-level catalog/data/*.yaml files by stem ('timing', 'energy', 'efficiency', ...),
        each read on first access. Validation is up to the consumer (schema models)."""
        from sizeup.catalog.hardware import LazyYamlDir

        return LazyYamlDir(self.data_dir)

    @functools.cached_property
    def hw_sources(self) -> dict:
        """Source key -> {title, where, ...} for the keys used in gpus/, platforms/ and efficiency.yaml."""
        path = self.data_dir / "hw_sources.yaml"
        return (read_yaml(path) or {}).get("sources", {}) if path.is_file() else {}

    @disk_cached("platforms")
    def platforms(self) -> dict:
        """id -> core.platform.Platform (billing, spot, storage, instances with dated prices)."""
        from sizeup.catalog.hardware import load_platforms

        return load_platforms(self.data_dir, self._user_entries[1], set(self.gpus))

    @functools.cached_property
    def _platform_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for pid, p in self.platforms.items():
            for key in (pid, p.name, *p.aliases):
                index.setdefault(normalize(key), pid)
        return index

    def platform(self, name: str):
        """A Platform by id or alias ('aws', 'Amazon', 'GCP', 'Lambda Labs'); SizeupError listing them if unknown."""
        pid = self._platform_index.get(normalize(name))
        if pid is None:
            raise SizeupError(f"unknown platform {name!r}.{did_you_mean(name, self.platforms)} "
                              f"Known platforms: {', '.join(sorted(self.platforms))}")
        return self.platforms[pid]

    def offers(self, platform: str | None = None, gpu: str | None = None, pricing: str | None = None,
               strict: bool = True) -> list:
        """core.cost.Offer list for a platform (or all platforms when None) and a GPU name, cheapest per GPU first."""
        gpu_id = self.gpu_id(gpu) if gpu else None
        if platform:
            return self.platform(platform).offers(gpu_id, pricing, strict=strict)
        out = [o for p in self.platforms.values() for o in p.offers(gpu_id, pricing, strict=False)]
        if not out and strict:
            raise SizeupError(f"no platform in the catalog rents {gpu_id or 'any GPU'}"
                              + (f" at {pricing} pricing" if pricing else "")
                              + ". Add your own price with --catalog my-prices.yaml")
        return sorted(out, key=lambda o: (o.price_usd_per_gpu_hour, o.platform, o.instance))


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
