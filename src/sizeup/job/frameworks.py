"""Framework profiles (catalog/data/frameworks.yaml): what a named framework executes by default."""

from __future__ import annotations

import functools
from pathlib import Path

from sizeup.errors import SizeupError, did_you_mean

FRAMEWORKS_FILE = Path(__file__).resolve().parent.parent / "catalog" / "data" / "frameworks.yaml"
PROFILE_FIELDS = ("timing_kernel", "memory_kernel", "attention", "loss", "selective_recompute", "lora_impl",
                  "fp8_library", "fp8_recipe", "compile", "sequence_parallel_with_tp", "grads_set_to_none",
                  "dp_overlap", "tp_overlap")


@functools.lru_cache(maxsize=1)
def _frameworks_file() -> dict:
    from sizeup.catalog import read_yaml

    return read_yaml(FRAMEWORKS_FILE) or {}


@functools.lru_cache(maxsize=1)
def framework_profiles() -> dict[str, dict]:
    """{id: profile} in the file's order, plus 'generic' (the default when no framework is named)."""
    data = _frameworks_file()
    out: dict[str, dict] = {}
    for entry in list(data.get("frameworks") or []) + [data["generic"]]:
        missing = [f for f in PROFILE_FIELDS if f not in entry]
        if missing:
            raise SizeupError(f"frameworks.yaml: {entry.get('id')!r} lacks {', '.join(missing)}")
        out[entry["id"]] = entry
    return out


def framework_profile(name: str | None) -> dict:
    """A profile by id or alias (case-insensitive); None = the generic profile."""
    profiles = framework_profiles()
    if name is None:
        return profiles["generic"]
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    for pid, prof in profiles.items():
        if key == pid or key in [a.lower() for a in prof.get("aliases") or ()]:
            return prof
    names = [p for p in profiles if p != "generic"]
    raise SizeupError(f"unknown framework {name!r}.{did_you_mean(str(name), names)} Known: {', '.join(names)} "
                      "(see 'sizeup frameworks')")


def peft_default_lora_targets(model_type: str | None) -> tuple[str, ...] | None:
    """Hugging Face PEFT's default LoRA targets for a transformers model_type (frameworks.yaml
    peft_default_lora_targets), or None when PEFT has no default for it."""
    table = (_frameworks_file().get("peft_default_lora_targets") or {}).get("by_model_type") or {}
    targets = table.get(str(model_type or "").strip().lower())
    return tuple(str(t) for t in targets) if targets else None
