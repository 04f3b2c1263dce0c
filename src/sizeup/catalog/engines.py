"""Loader for catalog/data/engines.yaml: serving-engine profiles (sizeup.core.engines.EngineProfile)."""

from __future__ import annotations

import functools
from typing import Mapping

from sizeup.errors import SizeupError, did_you_mean

ENGINE_ALIASES = {"tensorrt-llm": "trtllm", "trt-llm": "trtllm", "tensorrt_llm": "trtllm", "llamacpp": "llama.cpp",
                  "llama-cpp": "llama.cpp", "hf": "hf-generate", "transformers": "hf-generate",
                  "turbomind": "lmdeploy", "text-generation-inference": "tgi", "gptfast": "gpt-fast"}

# engine fields that may name a timing.yaml knob (e.g. kernel_launch_s: eager_op_dispatch_s) instead of a number
TIMING_REFS = ("kernel_launch_s",)


@functools.lru_cache(maxsize=2)
def load_engines() -> Mapping[str, object]:
    from sizeup.catalog import DATA_DIR, read_yaml
    from sizeup.catalog.knobs import timing_data
    from sizeup.core.engines import EngineProfile

    data = read_yaml(DATA_DIR / "engines.yaml") or {}
    raw = data.get("engines") or {}
    out = {}
    for key in raw:
        entry = _resolve_base(raw, str(key))
        for field in TIMING_REFS:
            ref = entry.get(field)
            if isinstance(ref, str):
                # a timing.yaml knob named instead of a number: the value lives once, with its source, there
                timing = timing_data()
                if ref not in timing:
                    raise SizeupError(f"engine {key}: {field}: no timing.yaml knob {ref!r}")
                entry[field] = float(timing[ref]["value"])
        prof = EngineProfile.from_dict(str(key), entry)
        prof.check()
        out[str(key)] = prof
    return out


def _resolve_base(raw: Mapping, key: str, chain: tuple[str, ...] = ()) -> dict:
    """An entry with `base: NAME` starts from profile NAME's resolved fields and sources; its own fields replace
    those, its sources are added (a field it overrides cites its own source)."""
    entry = dict(raw[key] or {})
    base = entry.pop("base", None)
    if base is None:
        return entry
    if base not in raw or base in chain + (key,):
        raise SizeupError(f"engine {key}: base {base!r} is not another engine profile of engines.yaml")
    merged = _resolve_base(raw, str(base), chain + (key,))
    sources = {**(merged.get("sources") or {}), **(entry.get("sources") or {})}
    merged.update(entry)
    merged["sources"] = sources
    return merged


def engine_profile(name: str | None):
    """The profile named `name` (aliases: tensorrt-llm, turbomind, transformers, ...); None -> the generic
    profile built from catalog/data/inference.yaml knobs. Unknown -> SizeupError with the list."""
    from sizeup.core.engines import GENERIC

    if name is None:
        return GENERIC
    key = str(name).strip().lower()
    key = ENGINE_ALIASES.get(key, key)
    engines = load_engines()
    if key not in engines:
        hint = did_you_mean(key, list(engines))
        raise SizeupError(f"unknown engine {name!r}; known: {', '.join(sorted(engines))}" + hint)
    return engines[key]


def engine_profile_for_version(name: str | None, version: str | None = None):
    """The profile of `name` for a stated release: a profile keyed ENGINE-MAJOR.MINOR (e.g. lmdeploy-0.1) when the
    catalog has one for `version` ('v0.1.0a1' -> 0.1), else engine_profile(name)."""
    import re

    base = engine_profile(name)
    m = re.match(r"\s*v?(\d+)\.(\d+)", str(version or ""))
    if name is None or not m:
        return base
    key = f"{base.id}-{int(m.group(1))}.{int(m.group(2))}"
    return load_engines().get(key, base)
