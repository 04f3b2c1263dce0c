"""`sizeup frameworks`: the framework profiles (what each framework executes by default), with sources."""

from __future__ import annotations

from sizeup.cli import app
from sizeup.commands.common import CsvOpt, JsonOpt, MarkdownOpt, emit


@app.command("frameworks")
def frameworks_cmd(json_: JsonOpt = False, csv_: CsvOpt = False, markdown: MarkdownOpt = False) -> None:
    """Framework profiles for --framework: kernels, attention, loss, recompute meaning, LoRA, fp8, compile, overlap.

    Each field can be overridden by its own flag (--kernel, --attention, --loss, --lora-impl, --fp8-recipe,
    --compile, --tp-overlap, --dp-overlap, --sequence-parallel).

    Examples:

      sizeup frameworks

      sizeup frameworks --json
    """
    from sizeup.job.frameworks import PROFILE_FIELDS, framework_profiles
    from sizeup.report import Report, Table

    profiles = framework_profiles()
    rows = []
    for pid, p in profiles.items():
        rows.append((pid, p["name"], f"{p['timing_kernel']}/{p['memory_kernel']}", p["attention"], p["loss"] or "kernel default",
                     p["selective_recompute"], p["lora_impl"], f"{p['fp8_library']} {p['fp8_recipe']}",
                     "yes" if p["compile"] else "no", p.get("default_sharding") or "none"))
    sources = [(pid, key, text) for pid, p in profiles.items() for key, text in (p.get("sources") or {}).items()]
    data = {"frameworks": [{"id": pid, "name": p["name"], "aliases": list(p.get("aliases") or []),
                            **{f: p[f] for f in PROFILE_FIELDS}, "default_sharding": p.get("default_sharding"),
                            "sources": dict(p.get("sources") or {})} for pid, p in profiles.items()]}
    tables = [Table("framework profiles (--framework)", ["id", "name", "kernels (time/memory)", "attention", "loss",
                                                          "'selective' means", "LoRA", "fp8", "compile", "sharding"], rows),
              Table("sources", ["id", "field", "source"], sources)]
    emit(Report(data=data, tables=tables, notes=["generic is the default when no --framework is given"]),
         json_, csv_, markdown)
