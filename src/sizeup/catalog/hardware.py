"""GPU and platform catalog: loading (built-in YAML + user catalog files), forgiving GPU name matching.

Used through `sizeup.catalog.Catalog` (`.gpus`, `.gpu(name)`, `.gpu_or_memory(text)`, `.platforms`,
`.platform(name)`, `.offers(...)`); this module holds the logic so that the Catalog class stays small.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
import re
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sizeup.errors import SizeupError, did_you_mean, pydantic_message

if TYPE_CHECKING:  # pragma: no cover
    from sizeup.core.types import GpuSpec

# Words that carry no identity: 'NVIDIA GeForce RTX 4090 GPU' -> 'rtx 4090'.
_NOISE = re.compile(r"\b(nvidia|amd|intel|google|geforce|tesla|instinct|habana|cloud|gpus?|accelerators?|card|chip|"
                    r"tensor\s*core|the|a|an|with|e\.g\.?|class)\b")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(gib|gb|g)\b")
_FORMS = (("nvl", re.compile(r"nvl(?!72)")), ("sxm", re.compile(r"sxm\d?|hgx|dgx|nvl72|superchip")),
          ("pcie", re.compile(r"pci-?e")))


# --------------------------------------------------------------------------- user catalog files


def deep_merge(base: Any, over: Any) -> Any:
    """`over` on top of `base`: dicts merge key by key; lists of {id: ...} merge by id; anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if (isinstance(base, list) and isinstance(over, list) and all(isinstance(x, dict) and "id" in x for x in base)
            and all(isinstance(x, dict) and "id" in x for x in over)):
        out = [copy.deepcopy(x) for x in base]
        index = {str(x["id"]).lower(): i for i, x in enumerate(out)}
        for x in over:
            i = index.get(str(x["id"]).lower())
            if i is None:
                out.append(copy.deepcopy(x))
            else:
                out[i] = deep_merge(out[i], x)
        return out
    return copy.deepcopy(over)


def read_user_files(paths: tuple[Path, ...]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(gpus, platforms) raw entries from user catalog files, later files winning."""
    from pydantic import ValidationError

    from sizeup.schema import UserCatalogFile

    gpus: dict[str, dict] = {}
    platforms: dict[str, dict] = {}
    from sizeup.catalog import read_user_yaml

    for path in paths:
        # regular files only, size and nesting bounds, one-line errors (catalog.read_user_bytes)
        raw = read_user_yaml(Path(path), "catalog file") or {}
        if not isinstance(raw, dict):
            raise SizeupError(f"catalog file {path}: expected a mapping with top-level 'gpus:' and/or 'platforms:'")
        try:
            user = UserCatalogFile.model_validate(raw)
        except ValidationError as exc:
            raise SizeupError(f"catalog file {path}: {pydantic_message(exc)} "
                              "(allowed top-level keys: gpus, platforms)") from None
        for kind, target in (("gpus", gpus), ("platforms", platforms)):
            for key, entry in getattr(user, kind).items():
                key = str(key).strip().lower()
                target[key] = deep_merge(target[key], entry) if key in target else entry
    return gpus, platforms


# --------------------------------------------------------------------------- GPUs


def load_efficiency(data_dir: Path):
    from pydantic import ValidationError

    from sizeup.catalog import read_yaml
    from sizeup.schema import EfficiencyFile

    try:
        return EfficiencyFile.model_validate(read_yaml(data_dir / "efficiency.yaml"))
    except ValidationError as exc:
        raise SizeupError(f"catalog efficiency.yaml: {pydantic_message(exc)}") from None


def load_gpu_files(data_dir: Path, user_gpus: dict[str, dict]) -> dict[str, Any]:
    """id -> validated GpuFile (built-in files, with user entries merged over / added)."""
    from pydantic import ValidationError

    from sizeup.catalog import read_yaml
    from sizeup.schema import GpuFile

    raw: dict[str, tuple[str, dict]] = {}
    for path in sorted((data_dir / "gpus").glob("*.yaml")):
        raw[path.stem] = (path.name, read_yaml(path))
    for gpu_id, entry in user_gpus.items():
        where = f"user catalog gpus.{gpu_id}"
        raw[gpu_id] = (where, deep_merge(raw[gpu_id][1], entry) if gpu_id in raw else entry)
    out = {}
    for gpu_id, (where, data) in raw.items():
        try:
            out[gpu_id] = GpuFile.model_validate(data)
        except ValidationError as exc:
            raise SizeupError(f"catalog GPU {where}: {pydantic_message(exc)}") from None
    return out


def build_gpus(files: dict[str, Any], efficiency) -> dict[str, "GpuSpec"]:
    out = {}
    for gpu_id, f in files.items():
        try:
            out[gpu_id] = f.to_core(gpu_id, efficiency)
        except (ValueError, SizeupError) as exc:
            raise SizeupError(f"catalog GPU {gpu_id}: {exc}") from None
    return out


def _clean(text: str) -> str:
    t = str(text).lower().replace("_", " ")
    return re.sub(r"\s+", " ", t).strip()


def _strip_noise(text: str) -> str:
    t = re.sub(r"\([^)]*\)", " ", _clean(text))  # drop parenthesised remarks
    return _NOISE.sub(" ", t)


@dataclass(frozen=True)
class GpuKey:
    """What name matching needs of one catalog GPU."""

    name: str
    aliases: tuple[str, ...]
    family: str
    memory_gb: float
    form: str
    default: bool


class GpuMatcher:
    """Resolve free-text GPU names to catalog ids.

    1. exact (normalized) id / name / alias;  2. the same after dropping vendor words ('NVIDIA', 'GeForce'),
       then parenthesised remarks, then both;
    3. tokens: family ('a100', longest match wins), memory size ('80GB'), form factor (sxm/pcie/nvl);
       among several candidates the family default (match.default) wins, then SXM, then the smaller id."""

    def __init__(self, files: dict[str, Any]):
        # plain data only (no pydantic objects), so the keys go into the validated-object cache (core_cache)
        self._index_keys({
            gpu_id: GpuKey(f.name, tuple(f.aliases), f.match.family, float(f.match.memory_gb), f.match.form,
                           bool(f.match.default))
            for gpu_id, f in files.items()
        })

    @classmethod
    def from_keys(cls, keys: dict[str, GpuKey]) -> "GpuMatcher":
        matcher = cls.__new__(cls)
        matcher._index_keys(dict(keys))
        return matcher

    def _index_keys(self, keys: dict[str, GpuKey]) -> None:
        from sizeup.catalog import normalize

        self.keys: dict[str, GpuKey] = keys
        self.index: dict[str, str] = {}
        for gpu_id, k in self.keys.items():
            for key in (gpu_id, k.name, *k.aliases):
                self.index.setdefault(normalize(key), gpu_id)
        self.families: dict[str, list[str]] = {}
        for gpu_id, k in sorted(self.keys.items()):
            self.families.setdefault(normalize(k.family), []).append(gpu_id)
        self._family_keys = sorted(self.families, key=len, reverse=True)
        # 'rtx4090' matches 'RTX 4090', 'rtx-4090'; never inside a longer number ('h100' not in 'h1000')
        self._family_re = {k: re.compile(r"(?<![a-z0-9])" + r"[\s\-_.]*".join(map(re.escape, k)) + r"(?![0-9])")
                           for k in self._family_keys}

    def names(self) -> list[str]:
        out = list(self.keys)
        for k in self.keys.values():
            out.extend(a for a in k.aliases if len(a) <= 24)
        return out

    def resolve(self, name: str) -> str | None:
        from sizeup.catalog import normalize

        text = str(name)
        for candidate in (text, _NOISE.sub(" ", _clean(text)), re.sub(r"\([^)]*\)", " ", text), _strip_noise(text)):
            key = normalize(candidate)
            if key and key in self.index:
                return self.index[key]
        return self._by_tokens(text)

    def family(self, text: str) -> str | None:
        """The GPU family named in free text ('nvidia a100 80gb' -> 'a100'), longest family name first."""
        t = _NOISE.sub(" ", _clean(text))
        return next((k for k in self._family_keys if self._family_re[k].search(t)), None)

    def _by_tokens(self, text: str) -> str | None:
        t = _clean(text)
        family = self.family(text)
        if family is None:
            return None
        ids = list(self.families[family])
        m = _MEMORY.search(t)
        if m:
            mem = float(m.group(1))
            ids = [i for i in ids if abs(self.keys[i].memory_gb - mem) <= max(1.0, 0.03 * mem)]
            if not ids:
                return None
        for form, pattern in _FORMS:
            if pattern.search(t):
                narrowed = [i for i in ids if self.keys[i].form == form]
                if narrowed:
                    ids = narrowed
                break
        ids.sort(key=lambda i: (not self.keys[i].default, self.keys[i].form != "sxm", i))
        return ids[0] if ids else None


def unknown_gpu(name: str, matcher: GpuMatcher) -> SizeupError:
    family = matcher.family(name)
    if family is not None:  # the family is known, the memory size is not
        variants = ", ".join(f"{i} ({matcher.keys[i].memory_gb:g} GB {matcher.keys[i].form})"
                             for i in matcher.families[family])
        return SizeupError(f"unknown GPU {name!r}: no {family.upper()} with that memory size in the catalog; "
                           f"known: {variants}. Run 'sizeup gpus', or add it with --catalog my-gpus.yaml")
    hint = did_you_mean(_strip_noise(name).strip() or name, matcher.names())
    return SizeupError(f"unknown GPU {name!r}.{hint} Run 'sizeup gpus' for the list, "
                       "or give a memory size like 24GiB (sizeup memory only)")


_PURE_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gib|gb|mib|mb|tib|tb)\s*$", re.I)
_ANY_MEMORY = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*(gib|gb|tib|tb)\b", re.I)


def generic_gpu(memory_bytes: float, label: str, efficiency) -> "GpuSpec":
    """A GPU known only by its memory size (for memory estimates); every speed figure is 0 (unknown)."""
    from sizeup.core.types import GpuSpec

    return GpuSpec(
        id=f"generic-{label.replace(' ', '').lower()}",
        name=f"GPU with {label}",
        vendor="generic",
        memory_bytes=float(memory_bytes),
        hbm_bytes_per_s=0.0,
        peak_flops_per_s={},
        intra_node_bytes_per_s=0.0,
        intra_node_link="unknown",
        node_size=8,
        inter_node_bytes_per_s=0.0,
        host_link_bytes_per_s=0.0,
        tdp_w=0.0,
        matmul_efficiency=(),
        hbm_efficiency=efficiency.defaults.hbm_efficiency.value,
        collective_efficiency_intra=efficiency.defaults.collective_efficiency_intra.value,
        collective_efficiency_inter=efficiency.defaults.collective_efficiency_inter.value,
        collective_latency_s=efficiency.defaults.collective_latency_s.value,
        sources={"memory_bytes": f"given as {label!r} (GB = 1e9 B, GiB = 2^30 B); speeds unknown"},
    )


def memory_in_text(text: str, anywhere: bool = False) -> tuple[float, str] | None:
    """('24GiB' -> (25769803776, '24GiB')); None when the text is not a pure memory size
    (anywhere=True: the first memory size inside longer text, 'Apple M2 (16GB unified)' -> 16GB)."""
    from sizeup.units import parse_bytes

    m = (_ANY_MEMORY.search if anywhere else _PURE_MEMORY.match)(str(text))
    if not m:
        return None
    label = f"{m.group(1)}{m.group(2).upper().replace('I', 'i')}"
    return parse_bytes(label), label


# --------------------------------------------------------------------------- platforms


def load_platforms(data_dir: Path, user_platforms: dict[str, dict], gpu_ids: set[str]) -> dict:
    from pydantic import ValidationError

    from sizeup.catalog import read_yaml
    from sizeup.schema import PlatformFile

    raw: dict[str, tuple[str, dict]] = {}
    for path in sorted((data_dir / "platforms").glob("*.yaml")):
        raw[path.stem] = (path.name, read_yaml(path))
    for pid, entry in user_platforms.items():
        raw[pid] = (f"user catalog platforms.{pid}", deep_merge(raw[pid][1], entry) if pid in raw else entry)
    out = {}
    for pid, (where, data) in raw.items():
        try:
            pf = PlatformFile.model_validate(data)
        except ValidationError as exc:
            raise SizeupError(f"catalog platform {where}: {pydantic_message(exc)}") from None
        for inst in pf.instances:
            if inst.gpu not in gpu_ids:
                raise SizeupError(f"catalog platform {where}: instance {inst.id} names GPU {inst.gpu!r}, which is "
                                  f"not a catalog GPU id.{did_you_mean(inst.gpu, gpu_ids)}")
        out[pid] = pf.to_core(pid)
    return out


# --------------------------------------------------------------------------- other data files


class LazyYamlDir(Mapping):
    """Read-only mapping stem -> parsed YAML for the *.yaml files directly in a folder, each read once on demand."""

    def __init__(self, folder: Path):
        self._paths = {p.stem: p for p in sorted(Path(folder).glob("*.yaml"))}
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        from sizeup.catalog import read_yaml

        if key not in self._cache:
            self._cache[key] = read_yaml(self._paths[key])  # KeyError for unknown stems, as a dict
        return self._cache[key]

    def __iter__(self):
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)
