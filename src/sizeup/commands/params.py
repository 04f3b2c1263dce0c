"""`sizeup params` and `sizeup models`."""

from __future__ import annotations

from sizeup.cli import app
from sizeup.commands.common import (
    CsvOpt, ExplainOpt, JsonOpt, MarkdownOpt, ModelArg, ModelOpt, emit, pick_target,
)
from sizeup.errors import SizeupError


@app.command("params")
def params_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Count parameters exactly from the architecture, with a breakdown.

    Examples:

      sizeup params gpt2

      sizeup params meta-llama/Llama-2-7b-hf --json

      sizeup params ./config.json --explain
    """
    from sizeup.catalog import resolve_model
    from sizeup.core.params import count_params
    from sizeup.report import Report, Table
    from sizeup.units import format_count

    name = pick_target(target, model)
    if not name:
        raise SizeupError("give a model: a preset id (see 'sizeup models') or a path to config.json")
    arch = resolve_model(name)
    pc = count_params(arch)
    rows = [(k, v, format_count(v), f"{100 * v / pc.total:.2f}%") for k, v in pc.breakdown.items()]
    rows.append(("total", pc.total, format_count(pc.total), "100.00%"))
    if pc.active != pc.total:
        rows.append(("active per token", pc.active, format_count(pc.active), f"{100 * pc.active / pc.total:.2f}%"))
    per_layer = [(k, v, format_count(v)) for k, v in pc.per_layer.items()]
    report = Report(
        data={"model": arch.id, "name": arch.name, "total_params": pc.total, "active_params": pc.active,
              "breakdown": dict(pc.breakdown), "per_layer": dict(pc.per_layer), "notes": list(pc.notes), "preset_notes": arch.notes,
              "source": arch.source},
        tables=[Table(f"{arch.name} ({arch.id}) parameters", ["component", "params", "human", "share"], rows),
                Table("one layer", ["part", "params", "human"], per_layer)],
        terms=list(pc.terms),
        notes=list(pc.notes) + ([f"config source: {arch.source}"] if arch.source else [])
        + ([f"preset notes: {arch.notes}"] if arch.notes else []),
    )
    if arch.id == "gpt2":
        from sizeup.core.params import gpt2_seed_formula

        seed = gpt2_seed_formula(50257, 256, 768, 12)
        report.notes.append(
            f"the textbook formula (seed 002: untied head, no biases, 256 positions) gives {seed['total']:,}; "
            f"GPT-2 ties the output head to the token embedding (-{seed['output_head']:,}), has 1024 learned "
            f"positions (+{(1024 - 256) * 768:,}), and biases on qkv/out/mlp/LayerNorm plus the final LayerNorm "
            f"(+{pc.total - (seed['total'] - seed['output_head'] + (1024 - 256) * 768):,}) -> {pc.total:,}"
        )
        report.data["seed_002_formula"] = seed
    emit(report, json_, csv_, markdown, explain)


@app.command("models")
def models_cmd(json_: JsonOpt = False, csv_: CsvOpt = False, markdown: MarkdownOpt = False) -> None:
    """List the model presets in the catalog.

    Examples:

      sizeup models

      sizeup models --json
    """
    from sizeup.catalog import load_catalog
    from sizeup.core.params import count_params
    from sizeup.report import Report, Table
    from sizeup.units import format_count

    catalog = load_catalog()
    rows = []
    data = []
    for model_id, arch in sorted(catalog.models.items()):
        pc = count_params(arch)
        rows.append((model_id, arch.name, format_count(pc.total), format_count(pc.active), ", ".join(arch.aliases[:2])))
        data.append({"id": model_id, "name": arch.name, "total_params": pc.total, "active_params": pc.active,
                     "aliases": list(arch.aliases)})
    emit(Report(data={"models": data}, tables=[Table("model presets", ["id", "name", "params", "active", "aliases"], rows)]),
         json_, csv_, markdown)
