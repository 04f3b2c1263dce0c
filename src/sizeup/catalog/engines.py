"""Loader for catalog/data/engines.yaml: serving-engine profiles (sizeup.core.engines.EngineProfile)."""

from __future__ import annotations

import functools
from typing import Mapping

from sizeup.errors import SizeupError, did_you_mean

ENGINE_ALIASES = {"tensorrt-llm": "trtllm", "trt-llm": "trtllm", "tensorrt_llm": "trtllm", "llamacpp": "llama.cpp",
                  "llama-cpp": "llama.cpp", "hf": "hf-generate", "transformers": "hf-generate",
                  "turbomind": "lmdeploy", "text-generation-inference": "tgi", "gptfast": "gpt-fast"}


@functools.lru_cache(maxsize=2)
def load_engines() -> Mapping[str, object]:
    from sizeup.catalog import DATA_DIR, read_yaml
    from sizeup.core.engines import EngineProfile

    data = read_yaml(DATA_DIR / "engines.yaml") or {}
    out = {}
    for key, entry in (data.get("engines") or {}).items():
        prof = EngineProfile.from_dict(str(key), entry or {})
        prof.check()
        out[str(key)] = prof
    return out


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
