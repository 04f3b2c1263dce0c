"""A private, verified cache of the packaged catalog's *validated* objects (ModelArch, GpuSpec, Platform).

Why: validating catalog files with the pydantic models of `sizeup.schema` means importing pydantic and building
those models' validators on every CLI call (~0.1 s of a ~0.45 s estimate, benchmarks/cli_speed.py). The packaged
files change only when sizeup does, so the objects their validation yields are kept here once validated, and a
call that uses only packaged entries reads them back without pydantic.

What it trusts, each checked on every read (any failure: the objects are built by validation as before):
- the same private directory, file and payload checks as `catalog_cache` (0700 / 0600, owner, O_NOFOLLOW, size,
  the SHA-256 of the payload);
- the file's key is the SHA-256 of the packaged catalog sources (`catalog_cache.current_sources_digest`) AND of
  the sizeup code that validates them and defines the objects (`code_digest`: every module of sizeup/core and
  sizeup/catalog, schema.py, units.py, errors.py), so an edited validator or dataclass is a miss, also in an
  editable checkout whose version string did not change;
- the encoding names classes from a fixed list only (`CLASSES`); anything else is a miss, never an import;
- before writing, every object must decode back equal (dataclass equality) to the validated one, else nothing
  is written.
User catalog files (`--catalog`) and non-packaged data folders never use it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from sizeup.catalog import catalog_cache

FORMAT = "sizeup-core-cache"
PREFIX = "core-"


@functools.lru_cache(maxsize=1)
def classes() -> dict[str, type]:
    """The only classes an entry may name: the catalog's core dataclasses and the enums their fields use."""
    from sizeup.catalog.hardware import GpuKey
    from sizeup.core import types
    from sizeup.core.platform import Instance, InstancePrice, Platform

    out: dict[str, type] = {c.__name__: c for c in (types.ModelArch, types.GpuSpec, Platform, Instance,
                                                    InstancePrice, GpuKey)}
    for value in vars(types).values():
        if isinstance(value, type) and issubclass(value, enum.Enum) and value.__module__ == types.__name__:
            out[value.__name__] = value
    return out


def encode(value: Any) -> Any:
    """A core object -> JSON data with {"__t": ...} tags for dataclasses, enums, tuples and non-finite floats."""
    if isinstance(value, enum.Enum):  # before str: a StrEnum member is a str too
        name = type(value).__name__
        if classes().get(name) is not type(value):
            raise TypeError(f"cannot cache enum {name}")
        return {"__t": "enum", "c": name, "v": value.value}
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else {"__t": "float", "v": repr(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if classes().get(name) is not type(value):
            raise TypeError(f"cannot cache {name}")
        if any(not f.init for f in dataclasses.fields(value)):
            raise TypeError(f"cannot cache {name}: a field outside __init__")
        return {"__t": "dc", "c": name, "f": {f.name: encode(getattr(value, f.name))
                                              for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"__t": "tuple", "v": [encode(v) for v in value]}
    if isinstance(value, (list, dict)):
        return catalog_cache.encode_container(value, encode)
    raise TypeError(f"cannot cache a {type(value).__name__}")


def decode(value: Any) -> Any:
    """Inverse of `encode`; ValueError / KeyError / TypeError on anything it did not write."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get("__t")
    if tag is None:
        return {k: decode(v) for k, v in value.items()}
    if tag == "dc":
        cls = classes()[value["c"]]
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{value['c']} is not a dataclass")
        return cls(**{k: decode(v) for k, v in value["f"].items()})
    if tag == "enum":
        cls = classes()[value["c"]]
        if not issubclass(cls, enum.Enum):
            raise TypeError(f"{value['c']} is not an enum")
        return cls(value["v"])
    if tag == "tuple":
        return tuple(decode(v) for v in value["v"])
    if tag == "map":
        return {decode(k): decode(v) for k, v in value["v"]}
    if tag == "float":
        return float(value["v"])
    raise ValueError(f"unknown tag {tag!r}")


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type at every level (plain == would call a StrEnum member equal to its string)."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(k, j) and same(a[k], b[j]) for k, j in zip(a, b))
    return a == b


def code_files() -> list[Path]:
    """The sizeup sources whose change can change a validated catalog object."""
    root = Path(__file__).resolve().parent.parent
    files = [root / "schema.py", root / "units.py", root / "errors.py"]
    for folder in ("core", "catalog"):
        files += sorted((root / folder).glob("*.py"))
    return files


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of `code_files` (once per process: the code a process runs does not change under it)."""
    h = hashlib.sha256(f"{FORMAT} {catalog_cache.SCHEMA_VERSION}\n".encode())
    for path in code_files():
        data = path.read_bytes()
        h.update(f"{path.name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _key() -> str | None:
    sources = catalog_cache.current_sources_digest()
    if sources is None:
        return None
    return hashlib.sha256(f"{sources}\0{code_digest()}".encode()).hexdigest()


def build(catalog) -> dict | None:
    """Every packaged model, GPU, GPU name key and platform, validated the usual way and encoded; None when any
    of them fails to validate or to round-trip (the usual path then reports or serves it as before)."""
    from sizeup.errors import SizeupError

    try:
        objects = {"models": dict(catalog.models), "gpus": dict(catalog.gpus),
                   "gpu_keys": dict(catalog._gpu_matcher.keys), "platforms": dict(catalog.platforms)}
        entries = {kind: {k: encode(v) for k, v in items.items()} for kind, items in objects.items()}
        back = json.loads(json.dumps(entries, allow_nan=False))
        for kind, items in objects.items():
            for k, v in items.items():
                if not same(decode(back[kind][k]), v):
                    return None
    except (SizeupError, TypeError, ValueError, KeyError, RecursionError):
        return None
    return back


_state: dict[str, Any] = {}  # per process: {"key": ..., "entries": ...}


def entries(catalog) -> dict | None:
    """The verified entries for the packaged catalog (built and written on a miss), or None (cache off, unsafe
    directory, user catalog files, a catalog that does not validate)."""
    from sizeup.catalog import DATA_DIR

    if catalog.extra_files or Path(catalog.data_dir).resolve() != Path(DATA_DIR).resolve():
        return None
    try:
        key = _key()
        if key is None:
            return None
        if _state.get("key") == key:
            return _state.get("entries")
        if _state.get("building"):  # build() validates through the catalog, whose lookups come here first
            return None
        folder = catalog_cache.private_dir(create=True)
        if folder is None:
            return None
        found = catalog_cache.load_entries(folder, key, prefix=PREFIX, fmt=FORMAT)
        if found is None:
            _state["building"] = True
            try:
                found = build(catalog)
            finally:
                _state.pop("building", None)
            if found is not None:
                try:
                    catalog_cache.write_entries(folder, key, found, prefix=PREFIX, fmt=FORMAT)
                except (OSError, TypeError, ValueError):  # read-only home, full disk: use what was built
                    pass
        _state.update(key=key, entries=found)
        return found
    except Exception:  # an optimisation: never a reason to fail
        return None


def get(catalog, kind: str, name: str | None = None) -> tuple[bool, Any]:
    """(True, object) from the cache (`name` None: the whole {id: object} dict of `kind`); (False, None) on a miss."""
    found = entries(catalog)
    if not found or kind not in found:
        return False, None
    try:
        if name is None:
            return True, {k: decode(v) for k, v in found[kind].items()}
        if name not in found[kind]:
            return False, None
        return True, decode(found[kind][name])
    except (TypeError, ValueError, KeyError, RecursionError):
        return False, None


def reset() -> None:
    """Forget this process's view of the cache (tests)."""
    _state.clear()
