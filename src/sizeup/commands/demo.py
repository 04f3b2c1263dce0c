"""`sizeup demo` (what `make demo` runs): seed 004's fine-tuning cost scenario, end to end.

Llama-2-7B, 10,000 samples x 500 tokens x 3 epochs, LoRA r=16, fp16 mixed; compared across
T4, A10, A10G, L4, A100 and H100 on several platforms; then seed 004's claims next to sizeup's
numbers, the optimisation-impact table and the seed's monthly plan vs buying an RTX 4090.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sizeup.cli import app
from sizeup.commands.common import MarkdownOpt

# the scenario of examples/seed004.yaml, embedded so that the demo runs from an installed package
SEED004 = {
    "model": "llama-2-7b", "samples": "10000", "tokens_per_sample": "500", "epochs": 3.0, "global_batch": 16,
    "peft": "lora", "lora_rank": 16, "precision": "fp16-mixed",
    "gpu": ["t4", "a10", "a10g", "l4", "a100-40gb-sxm", "h100-sxm"],
    "platform": ["modal", "lambda", "aws", "gcp", "runpod"],
}
SEED004_CLAIMS = (  # what the seed prints (claims, not truth)
    ("modal", "t4", 3.47, 2.10, 1200),
    ("lambda", "a10", 1.30, 0.62, 3200),
    ("modal", "a100-40gb-sxm", 0.65, 1.42, 6400),
)
SEED004_IMPACT = {"no optimisation": (27.78, 16.40), "mixed precision only": (13.89, 8.20),
                  "PEFT only": (6.94, 4.10), "both": (3.47, 2.10)}


@app.command("demo")
def demo_cmd(
    markdown: MarkdownOpt = False,
    platforms: Annotated[str, typer.Option("--platform", help="Platforms to compare (comma-separated).")] =
    ",".join(SEED004["platform"]),
) -> None:
    """Run seed 004's scenario end to end: compare, seed vs sizeup, optimisation impact, monthly budget.

    Examples:

      sizeup demo

      sizeup demo --markdown
    """
    from sizeup.catalog import load_catalog
    from sizeup.commands.compare import (
        TABLE_COLUMNS, OfferOverrides, build_job, cost_knobs, evaluate, impact_report, mark_rows, offers_for,
        parse_list, run_grid, table_row,
    )
    from sizeup.core.cost import Phase, buy_vs_rent, plan_budget
    from sizeup.report import Report, Table, render
    from sizeup.units import format_bytes, format_usd

    fmt = "markdown" if markdown else "table"
    catalog = load_catalog()
    knobs = cost_knobs()
    job, _ = build_job(None, SEED004["model"], {k: v for k, v in SEED004.items() if k not in ("gpu", "platform")})
    job.label = "seed 004: Llama-2-7B LoRA r=16 fp16, 10k x 500 tok x 3 ep"
    wanted = parse_list(platforms)
    plats = [p for p in wanted if _has(catalog, p)]
    missing = [p for p in wanted if p not in plats]

    def out(report: Report) -> None:
        typer.echo(render(report, fmt), nl=False)
        typer.echo("")

    # 1. the comparison grid
    rows, unfit, notes = run_grid(job, SEED004["gpu"], plats, ["on-demand"], [1], catalog, OfferOverrides(), knobs)
    ok = sorted(mark_rows(rows, None, None), key=lambda r: r.est.total_cost_usd)
    tables = [Table(f"1. {job.label}: {job.tokens / 1e6:.0f}M tokens, 1 GPU, on-demand, sorted by total cost",
                    TABLE_COLUMNS, [table_row(r) for r in ok])]
    if unfit:
        tables.append(Table("does not fit in memory", ["gpu", "gpus", "memory needed", "why"],
                            [(g, n, format_bytes(m) if m else "-", "; ".join(w)) for g, n, w, m in unfit]))
    if missing:
        notes.append(f"platforms not in the catalog: {', '.join(missing)}")
    from datetime import date

    from sizeup.core.cost import price_age_warning

    warnings = []
    for r in ok:
        e = r.est
        offer = next(iter(offers_for(catalog, e.platform, e.gpu_id, e.pricing, strict=False)), None)
        w = price_age_warning(offer.with_(instance=e.instance, price_as_of=e.price_as_of), date.today(), 180) \
            if offer else None
        if w and w not in warnings:
            warnings.append(w)
    out(Report(data={}, tables=tables, notes=notes, warnings=warnings))

    # 2. seed 004's claims next to sizeup's numbers
    claim_rows = []
    for platform, gpu_name, hours, usd, tps in SEED004_CLAIMS:
        ours = _one(job, catalog, platform, gpu_name, knobs)
        if ours is None:
            claim_rows.append((f"{platform} {gpu_name}", f"{hours:.2f}", "-", format_usd(usd), "-", f"{tps:,}", "-",
                               "not in catalog / does not fit"))
            continue
        est, ev = ours
        claim_rows.append((f"{platform} {gpu_name}", f"{hours:.2f}", f"{est.wall_clock_s / 3600:.2f}", format_usd(usd),
                           format_usd(est.total_cost_usd), f"{tps:,}",
                           f"{ev.tokens_per_s:,.0f}" if ev.tokens_per_s else "-",
                           f"billed {est.billed_s / 3600:.3g} h at {format_usd(est.price_usd_per_gpu_hour)}/h "
                           f"(as_of {est.price_as_of.split(' ')[0]})"))
    out(Report(data={}, tables=[Table("2. seed 004 claims vs sizeup", ["run", "seed h", "sizeup h", "seed $",
                                                                        "sizeup $", "seed tok/s", "sizeup tok/s",
                                                                        "sizeup billing"], claim_rows)],
               notes=["seed 004 assumes fixed throughputs (1,200 / 3,200 / 6,400 tok/s); sizeup computes them "
                      "from the GPU's peak, achievable matmul efficiency and the LoRA FLOPs (4ND: no weight "
                      "gradients for the frozen base)",
                      _lambda_hourly_note(job, catalog, knobs)]))

    # 3. optimisation impact on the seed's T4
    impact_platform = "modal" if "modal" in plats else (plats[0] if plats else None)
    if impact_platform and _offered(catalog, impact_platform, "t4"):
        report = impact_report(job, catalog, "t4", [impact_platform], "on-demand", 1, OfferOverrides(), knobs)
        for r, row in zip(report.data["impact"], report.tables[0].rows):
            seed_h, seed_usd = SEED004_IMPACT[r["configuration"]]
            report.tables[0].rows[report.tables[0].rows.index(row)] = (*row, f"{seed_h} h / ${seed_usd:.2f}")
        report.tables[0].columns = [*report.tables[0].columns, "seed 004 says"]
        report.tables[0].title = "3. " + report.tables[0].title
        out(report)

    # 4. the seed's monthly plan, costed with sizeup's per-run numbers, vs buying an RTX 4090
    plan_rows, phases = [], []
    for name, months, runs, platform, gpu_name in (("development", 3, 4, "lambda", "a10"),
                                                   ("production", 3, 1, "modal", "a100-40gb-sxm")):
        ours = _one(job, catalog, platform, gpu_name, knobs)
        if ours is None:
            continue
        phases.append(Phase(f"{name} ({platform} {gpu_name})", months, runs, ours[0].total_cost_usd))
    if phases:
        plan = plan_budget(phases)
        plan_rows = [(p.name, f"{p.months:g}", f"{p.runs_per_month:g}", format_usd(p.cost_per_run_usd),
                      format_usd(p.monthly_usd), format_usd(p.total_usd)) for p in plan.phases]
        plan_rows.append(("total (seed 004 says $11.70)", f"{plan.months:g}", "-", "-", "-", format_usd(plan.total_usd)))
        notes4 = []
        gpu = catalog.gpu("rtx-4090")
        ev = evaluate(job, gpu, 1)
        if ev.fits and gpu.purchase_usd:
            from sizeup.commands.compare import energy_value

            kwh, _ = energy_value("electricity_usd_per_kwh", "default")
            rent = _cheapest_rent(catalog, gpu.id)
            used_h = plan.runs * ev.time_s / 3600
            r = buy_vs_rent(gpu.purchase_usd, gpu.tdp_w, 1.0, kwh, 36, 0.25, rent or 0.0, used_h)
            notes4.append(f"buying an RTX 4090 ({format_usd(gpu.purchase_usd)} MSRP) for the plan's {plan.runs:g} runs "
                          f"({used_h:.1f} h at {gpu.tdp_w:g} W, ${kwh}/kWh): {format_usd(r.own_total_usd)} vs "
                          f"{format_usd(plan.total_usd)} in the cloud (seed 004: $1,805.64 vs $11.70)")
            if r.break_even_hours:
                notes4.append(f"break-even vs renting a 4090 at {format_usd(rent)}/h: {r.break_even_hours:,.0f} h "
                              "of use (sizeup budget --buy-gpu rtx-4090)")
        out(Report(data={}, tables=[Table("4. seed 004 monthly plan with sizeup's per-run costs",
                                          ["phase", "months", "runs/month", "cost/run", "monthly", "total"],
                                          plan_rows)], notes=notes4))


def _has(catalog, platform: str) -> bool:
    try:
        catalog.platform(platform)
        return True
    except Exception:
        return False


def _offered(catalog, platform: str, gpu_name: str) -> bool:
    from sizeup.commands.compare import offers_for

    try:
        return bool(offers_for(catalog, platform, catalog.gpu(gpu_name).id, "on-demand", strict=False))
    except Exception:
        return False


def _one(job, catalog, platform: str, gpu_name: str, knobs):
    from sizeup.commands.compare import best_offer, evaluate, offers_for

    if not _has(catalog, platform):
        return None
    gpu = catalog.gpu(gpu_name)
    offers = offers_for(catalog, platform, gpu.id, "on-demand", strict=False)
    if not offers:
        return None
    ev = evaluate(job, gpu, 1)
    if not ev.fits:
        return None
    est, _, ev = best_offer(job, ev, offers, knobs, catalog)
    return est, ev


def _cheapest_rent(catalog, gpu_id: str) -> float | None:
    from sizeup.commands.compare import offers_for

    cands = []
    for pid in catalog.platforms:
        cands.extend(offers_for(catalog, pid, gpu_id, "on-demand", strict=False))
    return min((o.price_usd_per_gpu_hour for o in cands), default=None)


def _lambda_hourly_note(job, catalog, knobs) -> str:
    """Seed 004 rounds Lambda up to whole hours; the catalog says per-minute (sources conflict)."""
    from sizeup.commands.compare import OfferOverrides, best_offer, evaluate, offers_for

    if not _has(catalog, "lambda"):
        return "lambda is not in the catalog"
    p = catalog.platform("lambda")
    hourly = offers_for(catalog, "lambda", "a10", "on-demand", OfferOverrides(billing_increment_s=3600, min_billing_s=3600),
                        strict=False)
    if not hourly:
        return "lambda does not offer an a10 in the catalog"
    ev = evaluate(job, catalog.gpu("a10"), 1)
    if not ev.fits:
        return "a10: does not fit"
    est, _, ev = best_offer(job, ev, hourly, knobs, catalog)
    return (f"Lambda billing: catalog default every {p.billing_increment_s:g} s (sources conflict: per minute vs per "
            f"hour); with hourly billing, as seed 004 assumes, the A10 run bills {est.billed_s / 3600:g} h = "
            f"${est.total_cost_usd:.2f} at ${est.price_usd_per_gpu_hour:.2f}/h (seed 004's $0.31/h has no source)")
