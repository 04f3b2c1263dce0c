"""`sizeup params` and `sizeup models`."""

from __future__ import annotations

from sizeup.cli import app
from sizeup.commands.common import (
    CsvOpt, ExplainOpt, JsonOpt, MarkdownOpt, ModelArg, ModelOpt, emit, pick_target,
)
from sizeup.errors import SizeupError


def breakdown_terms(arch, pc) -> list:
    """A Term for every row of the breakdown and one-layer tables: the weight-shape formula when it reproduces
    the count exactly (dense parts), else the generic sum (MoE, MLA and other variants; see core/params.py)."""
    from sizeup.core.explain import Term

    h, V, L = arch.hidden_size, arch.vocab_size, arch.num_layers
    a, k, d, f = arch.num_heads, arch.num_kv_heads, arch.head_dim, arch.ffn_size
    nb = 2 if arch.norm_bias else 1
    gated = bool(getattr(arch.mlp_kind, "gated", False))
    qb, ob, mb = int(arch.qkv_bias), int(arch.out_bias), int(arch.mlp_bias)
    shapes = {  # name -> (formula, inputs, value)
        "embedding/token": ("V * h", {"V": V, "h": h}, V * h),
        "embedding/position": ("P * h", {"P": arch.num_position_embeddings, "h": h}, arch.num_position_embeddings * h),
        "output_head": ("V * h + bias * V", {"V": V, "h": h, "bias": int(arch.lm_head_bias)},
                        V * h + int(arch.lm_head_bias) * V),
        "final_norm": ("h * (2 if norm has bias else 1)", {"h": h, "norm_bias": arch.norm_bias}, h * nb),
        "attention/q": ("h * a * d + qkv_bias * a * d", {"h": h, "a": a, "d": d, "qkv_bias": qb}, h * a * d + qb * a * d),
        "attention/k": ("h * kv * d + qkv_bias * kv * d", {"h": h, "kv": k, "d": d, "qkv_bias": qb},
                        h * k * d + qb * k * d),
        "attention/v": ("h * kv * d + qkv_bias * kv * d", {"h": h, "kv": k, "d": d, "qkv_bias": qb},
                        h * k * d + qb * k * d),
        "attention/o": ("a * d * h + out_bias * h", {"a": a, "d": d, "h": h, "out_bias": ob}, a * d * h + ob * h),
        "norms": ("norms_per_layer * h * (2 if norm has bias else 1)",
                  {"norms_per_layer": arch.norms_per_layer, "h": h, "norm_bias": arch.norm_bias},
                  arch.norms_per_layer * h * nb),
        "mlp": (("3 * h * f" if gated else "2 * h * f") + " + mlp_bias * (" + ("2f + h" if gated else "f + h") + ")",
                {"h": h, "f": f, "gated": gated, "mlp_bias": mb},
                (3 if gated else 2) * h * f + mb * ((2 * f if gated else f) + h)),
    }
    src = "weight shapes of the architecture (Hugging Face modeling code); counted in sizeup.core.params"
    generic = ("sum of the weight shapes of this part (MoE / MLA / variant layout)",
               {"h": h, "L": L, "E": arch.num_experts, "f_expert": arch.expert_ffn_size})
    out = []
    for key, value in pc.breakdown.items():
        if key.startswith("layers/"):
            part = key.removeprefix("layers/")
            one = sum(v for name, v in pc.per_layer.items() if name == part or name.startswith(part + "/"))
            if one and L * one == value:
                out.append(Term(f"params/{key}", float(value), "params", f"L * (one layer's {part})",
                                {"L": L, f"one_layer_{part}": one}, src))
            else:
                out.append(Term(f"params/{key}", float(value), "params", "sum over layers of this part "
                                "(dense and MoE layers differ)", {"L": L, f"one_layer_{part}": one}, src))
            continue
        formula, inputs, expect = shapes.get(key, (None, None, None))
        if formula is None or expect != value:
            formula, inputs = generic
        out.append(Term(f"params/{key}", float(value), "params", formula, inputs, src))
    for key, value in pc.per_layer.items():
        formula, inputs, expect = shapes.get(key, (None, None, None))
        if formula is None or expect != value:
            formula, inputs = generic
        out.append(Term(f"params/one_layer/{key}", float(value), "params", formula, inputs, src))
    return out


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

    from sizeup.commands.common import from_scenario

    name, _ = from_scenario(pick_target(target, model), {})
    if not name:
        raise SizeupError("give a model: a preset id (see 'sizeup models'), a path to config.json or a scenario .yaml")
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
        terms=list(pc.terms) + breakdown_terms(arch, pc),
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
