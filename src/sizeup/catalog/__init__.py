"""The embedded catalog: models, GPUs, platforms and defaults, as YAML data with sources.

Nothing is read at import. `load_catalog()` returns a cached `Catalog`; each kind of entry is
read (with the C YAML loader when available) and validated by pydantic the first time it is asked for.

Every file the CLI reads goes through `read_user_bytes` (regular files only, size-bounded, never blocks
on a FIFO) and YAML through `read_yaml` (one-line errors, bounded nesting and size). The parsed YAML of
the packaged catalog is kept between runs in a private JSON cache (`catalog_cache.py`): data only, never
code, verified against a hash of the source files and rebuilt on any mismatch.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from pathlib import Path
from typing import Any

from sizeup.errors import SizeupError, did_you_mean, pydantic_message

DATA_DIR = Path(__file__).parent / "data"

# Largest file the CLI reads (scenario, config.json, claims, token specs, catalogs, published points).
# The largest real input is a published-runs file of a few hundred KB; 16 MiB leaves room and bounds memory.
MAX_FILE_BYTES = 16 * 1024 * 1024
# Deepest nesting and most nodes a user YAML/JSON file may have: real files nest < 10 levels and hold
# < 100k values; the bounds refuse recursion bombs and alias ("billion laughs") expansions.
MAX_NESTING = 64
MAX_NODES = 2_000_000



def yaml_loader():
    """(the yaml module, its safe loader): the C loader when available (~10x faster than the pure-Python one).
    PyYAML is imported on first use: a CLI call whose catalog comes from the JSON cache never needs it."""
    import yaml

    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def __getattr__(name: str) -> Any:  # `_Loader`, the loader class, for callers that import it by name
    if name == "_Loader":
        return yaml_loader()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_user_bytes(path: Path | str, what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file; anything else (missing, directory, FIFO, device, unreadable, larger than
    max_bytes) is a one-line SizeupError. Opened non-blocking, so a FIFO swapped in after the check cannot hang."""
    text = str(path)
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise SizeupError(f"{what} {text!r} not found") from None
    except (OSError, ValueError) as exc:
        raise SizeupError(f"cannot read {what} {text!r}: {_os_reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SizeupError(f"{what} {text!r} is a directory; give a file")
    if not stat.S_ISREG(st.st_mode):
        raise SizeupError(f"{what} {text!r} is not a regular file (a FIFO, socket or device); give a file")
    if st.st_size > max_bytes:
        raise SizeupError(f"{what} {text!r} is {st.st_size:,} bytes; the limit is {max_bytes:,} bytes")
    try:
        fd = os.open(text, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise SizeupError(f"cannot read {what} {text!r}: {_os_reason(exc)}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SizeupError(f"{what} {text!r} is not a regular file (a FIFO, socket or device); give a file")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise SizeupError(f"{what} {text!r} is larger than the limit of {max_bytes:,} bytes")
            chunks.append(chunk)
    except OSError as exc:
        raise SizeupError(f"cannot read {what} {text!r}: {_os_reason(exc)}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_user_text(path: Path | str, what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> str:
    """A regular UTF-8 text file (see read_user_bytes); binary content is a one-line SizeupError."""
    data = read_user_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SizeupError(f"{what} {str(path)!r} is not a UTF-8 text file") from None


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def check_shape(data: Any, where: str, max_depth: int = MAX_NESTING, max_nodes: int = MAX_NODES) -> Any:
    """Refuse parsed data nested deeper than max_depth or holding more than max_nodes values (counting a
    YAML alias each time it is used): one line instead of a RecursionError or an exponential walk."""
    budget = [max_nodes]
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            raise SizeupError(f"{where}: more than {max_nodes:,} values (after expanding aliases); refused")
        if isinstance(node, dict):
            if depth >= max_depth:
                raise SizeupError(f"{where}: nested more than {max_depth} levels deep; refused")
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node if isinstance(k, (tuple, frozenset)))
        elif isinstance(node, (list, tuple)):
            if depth >= max_depth:
                raise SizeupError(f"{where}: nested more than {max_depth} levels deep; refused")
            stack.extend((v, depth + 1) for v in node)
    return data


def parse_yaml_text(data: bytes | str, where: str) -> Any:
    """YAML text -> data; a parse error, a recursion bomb or an alias bomb is one line naming `where`."""
    yaml, loader = yaml_loader()
    try:
        value = yaml.load(data, Loader=loader)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SizeupError(f"{where}: not valid YAML ({first[:200]})") from None
    except UnicodeDecodeError:
        raise SizeupError(f"{where}: not a UTF-8 text YAML file") from None
    except RecursionError:
        raise SizeupError(f"{where}: nested more than {MAX_NESTING} levels deep; refused") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp out of range
        raise SizeupError(f"{where}: not valid YAML ({type(exc).__name__}: {str(exc)[:200]})") from None
    return check_shape(value, where)


def parse_json_text(text: str, where: str) -> Any:
    """JSON text -> data with one-line errors (syntax, recursion bombs, huge integers)."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SizeupError(f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise SizeupError(f"{where}: nested more than {MAX_NESTING} levels deep; refused") from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        raise SizeupError(f"{where} is not valid JSON ({str(exc)[:200]})") from None
    return check_shape(value, where)


_RESOLVED_DATA_DIR: dict[Path, Path] = {}


def data_rel(path: Path | str) -> str | None:
    """The file's path inside the packaged data dir ('models/gpt2.yaml'), or None when it is not in it
    (symlinks resolved; the data dir itself is resolved once per process)."""
    try:
        root = _RESOLVED_DATA_DIR.get(DATA_DIR)
        if root is None:
            root = _RESOLVED_DATA_DIR[DATA_DIR] = DATA_DIR.resolve()
        return Path(path).resolve().relative_to(root).as_posix()
    except (OSError, ValueError):
        return None


def _in_data_dir(path: Path) -> bool:
    return data_rel(path) is not None


def read_yaml(path: Path, what: str = "file", key: str | None = None) -> Any:
    """A YAML file's data (with `key`: only that top-level value of a mapping, None when absent). Packaged
    catalog files come from the verified JSON cache when it is current; every other file is read as a user
    file (read_user_bytes + parse_yaml_text: one-line errors, bounds)."""
    rel = data_rel(path)
    if rel is not None:
        from sizeup.catalog import catalog_cache

        hit, value = catalog_cache.lookup(Path(path), rel=rel, key=key)
        if hit:
            return value
        yaml, loader = yaml_loader()
        with open(path, "rb") as fh:
            value = yaml.load(fh, Loader=loader)
    else:
        value = parse_yaml_text(read_user_bytes(path, what), str(path))
    if key is None:
        return value
    return value.get(key) if isinstance(value, dict) else None


def read_user_yaml(path: Path | str, what: str = "file") -> Any:
    """A user's YAML file; missing, not a regular file, too large or malformed -> one-line SizeupError."""
    return parse_yaml_text(read_user_bytes(path, what), str(path))


# Characters a catalog name or a free-text GPU name may hold ('NVIDIA H100 SXM5 80GB', 'A100-80GB (PCIe)',
# 'gaudi2', 'Apple M2 (16GB unified)', 'org/model'). Anything else (';', '|', '$', quotes, control characters)
# is refused rather than fuzzy-matched to the nearest entry.
_NAME_OK = re.compile(r"[A-Za-z0-9 ._+/()\-:,@]+")
MAX_NAME_CHARS = 200


def check_name(name: str, kind: str) -> str:
    """`name` if it can be a name of `kind`; SizeupError otherwise (empty, too long, or odd characters)."""
    text = str(name)
    if not text.strip():
        raise SizeupError(f"the {kind} name is empty")
    if len(text) > MAX_NAME_CHARS:
        raise SizeupError(f"the {kind} name is {len(text)} characters long; the limit is {MAX_NAME_CHARS}")
    if not _NAME_OK.fullmatch(text):
        bad = "".join(sorted({c for c in text if not _NAME_OK.fullmatch(c)}))
        raise SizeupError(f"unknown {kind} {text!r}: a {kind} name has no {bad!r} characters")
    return text


def normalize(name: str) -> str:
    """Case-, space-, dash- and underscore-insensitive key: 'Llama-2 7B' -> 'llama27b'."""
    return re.sub(r"[^a-z0-9.]", "", str(name).lower())


def cache_dir() -> Path | None:
    """Where the parsed catalog is kept between runs ($SIZEUP_CACHE_DIR, else $XDG_CACHE_HOME/sizeup or
    ~/.cache/sizeup); None when SIZEUP_NO_CACHE is set."""
    if os.environ.get("SIZEUP_NO_CACHE"):
        return None
    root = os.environ.get("SIZEUP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sizeup")
    return Path(root)


class Catalog:
    """Entries by kind. Lookups are forgiving (case, dashes, aliases) and fail with 'did you mean'."""

    def __init__(self, data_dir: Path = DATA_DIR, extra_files: tuple[Path, ...] = ()):
        self.data_dir = Path(data_dir)
        self.extra_files = tuple(Path(p) for p in extra_files)
        self._archs: dict = {}  # model id -> validated ModelArch

    # ------------------------------------------------------------------ models
    @functools.cached_property
    def _model_files(self) -> dict[str, Path]:
        return {path.stem: path for path in sorted((self.data_dir / "models").glob("*.yaml"))}

    def _validated_model(self, model_id: str):
        """The ModelArch of one catalog file, validated (schema.ModelFile) the first time it is asked for."""
        arch = self._archs.get(model_id)
        if arch is None:
            hit, arch = self._cached("models", model_id)
            if hit:
                self._archs[model_id] = arch
                return arch
            from pydantic import ValidationError

            from sizeup.schema import ModelFile

            path = self._model_files[model_id]
            try:
                arch = ModelFile.model_validate(read_yaml(path)).to_core(model_id)
            except ValidationError as exc:
                raise SizeupError(f"catalog model {path.name}: {pydantic_message(exc)}") from None
            self._archs[model_id] = arch
        return arch

    def _cached(self, kind: str, name: str | None = None):
        """(True, object) of a packaged entry from the validated-object cache (catalog/core_cache.py), else
        (False, None): then the entry is validated from its file as usual."""
        from sizeup.catalog import core_cache

        return core_cache.get(self, kind, name)

    @functools.cached_property
    def models(self) -> dict:
        """id -> ModelArch of every catalog model (each validated; a single lookup validates only its own file)."""
        return {model_id: self._validated_model(model_id) for model_id in self._model_files}

    @functools.cached_property
    def _model_index(self) -> dict[str, str]:
        """normalized id/alias -> model id, from each file's id and `aliases` list; only the model asked for is
        validated (a file whose aliases are not a list of names is validated here, failing as it would there)."""
        index: dict[str, str] = {}
        for model_id in self._model_files:
            aliases = read_yaml(self._model_files[model_id], key="aliases")  # decodes only that field
            aliases = [] if aliases is None else aliases
            if not (isinstance(aliases, list) and all(isinstance(a, str) for a in aliases)):
                aliases = self._validated_model(model_id).aliases
            for key in (model_id, *aliases):
                index[normalize(key)] = model_id
                if "/" in key:  # 'meta-llama/Llama-2-7b-hf' also matches 'Llama-2-7b-hf'
                    index.setdefault(normalize(key.split("/", 1)[1]), model_id)
        return index

    def model(self, name: str):
        """A preset by id, alias or Hugging Face repo name (case-insensitive)."""
        check_name(name, "model")
        key = normalize(name)
        model_id = self._model_index.get(key)
        if model_id is None:
            raise SizeupError(
                f"unknown model {name!r}.{did_you_mean(name, self._model_files)} "
                "Run 'sizeup models' for the list, or pass a path to a Hugging Face config.json"
            )
        return self._validated_model(model_id)

    # ------------------------------------------------------------------ GPUs and platforms (catalog/hardware.py)
    @functools.cached_property
    def _user_entries(self) -> tuple[dict, dict]:
        from sizeup.catalog.hardware import read_user_files

        return read_user_files(self.extra_files)

    @functools.cached_property
    def efficiency(self):
        """catalog/data/efficiency.yaml (schema.EfficiencyFile): achievable-fraction defaults and families."""
        from sizeup.catalog.hardware import load_efficiency

        return load_efficiency(self.data_dir)

    @functools.cached_property
    def _gpu_files(self) -> dict:
        from sizeup.catalog.hardware import load_gpu_files

        return load_gpu_files(self.data_dir, self._user_entries[0])

    @functools.cached_property
    def gpus(self) -> dict:
        """id -> GpuSpec (dense peaks, one-direction links, achievable fractions; sources in .sources)."""
        from sizeup.catalog.hardware import build_gpus

        hit, gpus = self._cached("gpus")
        return gpus if hit else build_gpus(self._gpu_files, self.efficiency)

    @functools.cached_property
    def _gpu_matcher(self):
        from sizeup.catalog.hardware import GpuMatcher

        hit, keys = self._cached("gpu_keys")
        return GpuMatcher.from_keys(keys) if hit else GpuMatcher(self._gpu_files)

    def gpu_id(self, name: str) -> str:
        """Catalog id for a free-text GPU name ('NVIDIA H100 SXM5' -> 'h100-sxm'); SizeupError if unknown."""
        from sizeup.catalog.hardware import unknown_gpu

        check_name(name, "GPU")
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

    @functools.cached_property
    def platforms(self) -> dict:
        """id -> core.platform.Platform (billing, spot, storage, instances with dated prices)."""
        from sizeup.catalog.hardware import load_platforms

        hit, platforms = self._cached("platforms")
        return platforms if hit else load_platforms(self.data_dir, self._user_entries[1], set(self.gpus))

    @functools.cached_property
    def _platform_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for pid, p in self.platforms.items():
            for key in (pid, p.name, *p.aliases):
                index.setdefault(normalize(key), pid)
        return index

    def platform(self, name: str):
        """A Platform by id or alias ('aws', 'Amazon', 'GCP', 'Lambda Labs'); SizeupError listing them if unknown."""
        check_name(name, "platform")
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
