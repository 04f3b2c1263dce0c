"""A private, verified, data-only cache of the packaged catalog's parsed YAML (replaces a pickle cache).

Why: parsing the ~70 catalog YAML files costs ~30 ms per CLI call; reading them back as one JSON file
costs ~1 ms (benchmarks/cli_speed.py). JSON cannot execute code on load, unlike pickle.

Safety rules, each checked on every read (any failure: the cache is ignored and rebuilt, never trusted):
- the directory is created 0700 and used only if it is a real directory (not a symlink) owned by this user
  with no group/other permission bits; the file is opened with O_NOFOLLOW, must be a regular file owned by
  this user, mode 0600, and at most MAX_CACHE_BYTES;
- the file names its format and SCHEMA_VERSION, the sizeup version, the SHA-256 of every source file's
  path and content, and the SHA-256 of its own payload; a mismatch in any of them is a miss;
- YAML-only types are tagged (dates, non-string keys) and checked to round-trip before writing;
- when a new entry is written, all but the KEEP_RECENT most recent entries (other versions or catalogs, e.g. other
  checkouts) and old *.pickle files are pruned.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Callable

SCHEMA_VERSION = 1
FORMAT = "sizeup-catalog-cache"
MAX_CACHE_BYTES = 64 * 1024 * 1024
_PREFIX = "catalog-"
KEEP_RECENT = 4  # cache files kept per folder (this one and the 3 most recently written others)

_state: dict[str, Any] = {}  # per process: {"key": (data_dir, digest), "entries": {relpath: tagged data}}


def _data_dir() -> Path:
    from sizeup.catalog import DATA_DIR

    return DATA_DIR.resolve()


def source_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.rglob("*.yaml"))


def sources_digest(data_dir: Path, files: list[Path] | None = None) -> str:
    """SHA-256 over the schema version, sizeup version and every source file's relative path and bytes."""
    from sizeup import __version__

    h = hashlib.sha256(f"{FORMAT} {SCHEMA_VERSION} {__version__}\n".encode())
    for path in files if files is not None else source_files(data_dir):
        data = path.read_bytes()
        rel = path.relative_to(data_dir).as_posix()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


# --------------------------------------------------------------------------- tagged JSON encoding


def encode_container(value: list | dict, item: Callable[[Any], Any]) -> Any:
    """A list, or a dict (tagged "map" when a key is not a string or "__t" is a key), each item encoded by `item`
    (this module's `encode`, or core_cache's)."""
    if isinstance(value, list):
        return [item(v) for v in value]
    if all(isinstance(k, str) for k in value) and "__t" not in value:
        return {k: item(v) for k, v in value.items()}
    return {"__t": "map", "v": [[item(k), item(v)] for k, v in value.items()]}


def encode(value: Any) -> Any:
    """YAML data -> JSON data; dates and non-string keys become {"__t": ...} tags. TypeError if not encodable."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, dict)):
        return encode_container(value, encode)
    if isinstance(value, _dt.datetime):
        return {"__t": "datetime", "v": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"__t": "date", "v": value.isoformat()}
    if isinstance(value, bytes):
        return {"__t": "bytes", "v": value.hex()}
    raise TypeError(f"cannot cache a {type(value).__name__}")


def decode(value: Any) -> Any:
    """Inverse of encode; builds new containers on every call (callers may mutate what they get)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        tag = value.get("__t")
        if tag is None:
            return {k: decode(v) for k, v in value.items()}
        if tag == "map":
            return {_hashable(decode(k)): decode(v) for k, v in value["v"]}
        if tag == "datetime":
            return _dt.datetime.fromisoformat(value["v"])
        if tag == "date":
            return _dt.date.fromisoformat(value["v"])
        if tag == "bytes":
            return bytes.fromhex(value["v"])
        raise ValueError(f"unknown tag {tag!r}")
    return value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _payload_digest(entries: Any) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --------------------------------------------------------------------------- private directory and files


def private_dir(create: bool) -> Path | None:
    """The cache directory if it is safe to use (created 0700 when asked); None otherwise."""
    from sizeup.catalog import cache_dir

    folder = cache_dir()
    if folder is None:
        return None
    try:
        if create and not os.path.lexists(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)  # makedirs' mode is filtered by the umask
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return None
    if st.st_mode & 0o077:
        try:  # our own directory made by an older sizeup under a loose umask: tighten it
            os.chmod(folder, 0o700)
        except OSError:
            return None
    return folder


def _read_private(path: Path) -> bytes | None:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077
                or st.st_size > MAX_CACHE_BYTES):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(MAX_CACHE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def _cache_file(folder: Path, digest: str, prefix: str = _PREFIX) -> Path:
    return folder / f"{prefix}v{SCHEMA_VERSION}-{digest[:32]}.json"


def load_entries(folder: Path, digest: str, prefix: str = _PREFIX, fmt: str = FORMAT) -> dict | None:
    """The verified entries of the cache file for `digest`, or None (missing, foreign, corrupt, tampered).
    `prefix` / `fmt`: which cache (this module's parsed YAML, or catalog.core_cache's validated objects)."""
    raw = _read_private(_cache_file(folder, digest, prefix))
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        ok = (isinstance(doc, dict) and doc.get("format") == fmt and doc.get("schema") == SCHEMA_VERSION
              and doc.get("sources_sha256") == digest and isinstance(doc.get("entries"), dict)
              and doc.get("payload_sha256") == _payload_digest(doc["entries"]))
    except (ValueError, RecursionError, TypeError):
        return None
    return doc["entries"] if ok else None


def write_entries(folder: Path, digest: str, entries: dict, prefix: str = _PREFIX, fmt: str = FORMAT) -> None:
    """Atomically write a 0600 cache file, then prune the folder's files of that cache (`prune`)."""
    doc = {"format": fmt, "schema": SCHEMA_VERSION, "sources_sha256": digest,
           "payload_sha256": _payload_digest(entries), "entries": entries}
    target = _cache_file(folder, digest, prefix)
    tmp = folder / f".{prefix}{os.getpid()}-{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    prune(folder, keep=target, prefix=prefix)


def prune(folder: Path, keep: Path | None = None, keep_recent: int = KEEP_RECENT, prefix: str = _PREFIX) -> int:
    """Remove stale cache files: leftover temp files, old *.pickle, and catalog-*.json beyond the `keep_recent` most
    recently written (`keep` always stays), so that a few checkouts or versions sharing one cache folder do not evict
    each other on every call. Returns the count removed."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    stale: list[Path] = []
    entries: list[tuple[float, Path]] = []
    for name in names:
        path = folder / name
        if keep is not None and path == keep:
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()):
            continue
        if name.startswith(prefix) and name.endswith(".json"):
            entries.append((st.st_mtime, path))
        elif name.endswith(".pickle") or name.startswith(f".{prefix}") and name.endswith(".tmp"):
            stale.append(path)
    entries.sort(reverse=True)
    others = max(0, keep_recent - (1 if keep is not None else 0))
    stale += [path for _, path in entries[others:]]
    for path in stale:
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


# --------------------------------------------------------------------------- lookup


def _entries() -> dict | None:
    data_dir = _data_dir()
    folder = private_dir(create=True)
    files = source_files(data_dir)
    try:
        digest = sources_digest(data_dir, files)
    except OSError:
        return None
    key = (str(data_dir), digest)
    if _state.get("key") == key:
        return _state.get("entries")
    entries = load_entries(folder, digest) if folder is not None else None
    if entries is None:
        entries = _build(data_dir, files)
        if folder is not None and entries is not None:
            try:
                write_entries(folder, digest, entries)
            except (OSError, TypeError, ValueError):  # read-only home, full disk: run without the cache
                pass
    _state.update(key=key, entries=entries)
    return entries


def _build(data_dir: Path, files: list[Path]) -> dict | None:
    from sizeup.catalog import yaml_loader

    yaml, loader = yaml_loader()

    entries = {}
    for path in files:
        try:
            with open(path, "rb") as fh:
                value = yaml.load(fh, Loader=loader)
            tagged = encode(value)
            if decode(json.loads(json.dumps(tagged))) != value:  # NaN or an odd type: not cached
                continue
        except (OSError, TypeError, ValueError, yaml.YAMLError):
            continue  # read directly (and reported) when asked for
        entries[path.relative_to(data_dir).as_posix()] = tagged
    return entries


def _ensure_checked() -> None:
    if _state.get("checked") is None:
        _state["checked"] = True
        try:
            _entries()
        except Exception:  # the cache is an optimisation: never a reason to fail
            _state.update(key=None, entries=None)


def current_sources_digest() -> str | None:
    """The SHA-256 of the packaged catalog files (and sizeup's version) this process's cache was checked against;
    None when the cache is off or could not be read."""
    _ensure_checked()
    key = _state.get("key")
    return key[1] if key and _state.get("entries") else None


def lookup(path: Path, rel: str | None = None, key: str | None = None) -> tuple[bool, Any]:
    """(True, data) for a packaged catalog file held by the current cache; (False, None) otherwise.
    `rel`: the path inside the data dir when the caller has it; `key`: decode only that top-level value of a
    mapping (None when absent)."""
    _ensure_checked()
    entries = _state.get("entries")
    if not entries:
        return False, None
    if rel is None:
        try:
            rel = Path(path).resolve().relative_to(_data_dir()).as_posix()
        except ValueError:
            return False, None
    if rel not in entries:
        return False, None
    entry = entries[rel]
    if key is not None and isinstance(entry, dict) and "__t" not in entry:
        return True, decode(entry.get(key))
    value = decode(entry)
    if key is None:
        return True, value
    return True, (value.get(key) if isinstance(value, dict) else None)


def reset() -> None:
    """Forget this process's view of the cache (tests)."""
    _state.clear()
