"""`sizeup compare`: one workload across GPUs x platforms x pricing x GPU counts, priced and ranked.

Also the cost helpers other commands call: `cost_section()` (adds cost to `sizeup train` output),
`offers_for()` (catalog platform -> priced `Offer`s), `cost_knobs()` (energy.yaml + flags) and
`evaluate()` (memory fit + time for one GPU kind and count).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sizeup.commands.common import job_command
from sizeup.commands.common import PlotOpt
from sizeup.commands.common import (
    CsvOpt, EpochsOpt, ExplainOpt, GlobalBatchOpt, JsonOpt, LoraRankOpt, MarkdownOpt, MicroBatchOpt, ModelArg,
    ModelOpt, OptimizerOpt, PeftOpt, PrecisionOpt, RecomputeOpt, SamplesOpt, SeqOpt, TokensOpt,
    TokensPerSampleOpt, ZeroOpt, emit, is_scenario, pick_target,
)
from sizeup.errors import SizeupError, choice_error, did_you_mean

from sizeup.plan import *  # noqa: F401,F403  (the library the command renders)
from sizeup.plan import (  # noqa: F401
    PRICING_ALIASES, Evaluation, Job, OfferOverrides, Row, _as_list, _kernel, best_offer, build_job, cost_dict,
    cost_knobs, cost_section, energy_value, evaluate, gpu_counts, impact_rows, mark_rows, offers_for, parse_list,
    parse_pricing, row_dict, row_terms, table_row, TABLE_COLUMNS,
)

# ------------------------------------------------------------------------------ shared options

GpuListOpt = Annotated[Optional[str], typer.Option("--gpu", help="GPU kinds, comma-separated (t4,a10,a100-80gb).")]
GpusListOpt = Annotated[Optional[str], typer.Option("--gpus", help="GPU counts, comma-separated (1,2,8).")]
PlatformListOpt = Annotated[Optional[str], typer.Option("--platform", help="Platforms, comma-separated (modal,lambda,aws); default all.")]
PricingListOpt = Annotated[Optional[str], typer.Option("--pricing", help="on-demand | spot | reserved, comma-separated (default on-demand).")]
PricePerGpuHourOpt = Annotated[Optional[float], typer.Option("--price-per-gpu-hour", help="Override the price (USD per GPU-hour) of every offer.")]
BillingIncrementOpt = Annotated[Optional[float], typer.Option("--billing-increment-s", help="Override the billing increment (s).")]
MinBillingOpt = Annotated[Optional[float], typer.Option("--min-billing-s", help="Override the minimum billed time (s).")]
CatalogOpt = Annotated[Optional[list[Path]], typer.Option("--catalog", help="Extra catalog YAML with your own prices (repeatable).")]
MaxPriceAgeOpt = Annotated[int, typer.Option("--max-price-age-days", help="Warn when a price is older than this.")]
PreemptionOpt = Annotated[Optional[float], typer.Option("--preemption-rate", help="Spot preemptions per instance-hour (overrides the catalog).")]
RestartOpt = Annotated[Optional[float], typer.Option("--restart-s", help="Seconds lost to each restart after a preemption/failure.")]
KeepOpt = Annotated[Optional[int], typer.Option("--checkpoints-kept", help="Checkpoints kept on storage.")]
RetainOpt = Annotated[Optional[str], typer.Option("--retain", help="Keep storage after the run, e.g. 30d.")]


# ------------------------------------------------------------------------------ command


@job_command("compare")
def compare_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    gpu: GpuListOpt = None,
    gpus: GpusListOpt = None,
    platform: PlatformListOpt = None,
    pricing: PricingListOpt = None,
    tokens: TokensOpt = None,
    samples: SamplesOpt = None,
    tokens_per_sample: TokensPerSampleOpt = None,
    epochs: EpochsOpt = None,
    seq: SeqOpt = None,
    micro_batch: MicroBatchOpt = None,
    global_batch: GlobalBatchOpt = None,
    precision: PrecisionOpt = None,
    optimizer: OptimizerOpt = None,
    zero: ZeroOpt = None,
    recompute: RecomputeOpt = None,
    peft: PeftOpt = None,
    lora_rank: LoraRankOpt = None,
    deadline: Annotated[Optional[str], typer.Option("--deadline", help="Latest acceptable wall-clock, e.g. 10d, 6h.")] = None,
    budget: Annotated[Optional[str], typer.Option("--budget", help="Most you will pay for the run (USD), e.g. 5000.")] = None,
    max_gpus: Annotated[Optional[int], typer.Option("--max-gpus", help="Drop GPU counts above this.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="cost | time")] = "cost",
    kernel: Annotated[Optional[str], typer.Option("--kernel", help="fused (Megatron/TE/flash) | hf-eager (Hugging Face modules).")] = None,
    impact: Annotated[bool, typer.Option("--impact", help="Optimisation-impact table (precision x PEFT) on the first GPU/platform.")] = False,
    price_per_gpu_hour: PricePerGpuHourOpt = None,
    billing_increment_s: BillingIncrementOpt = None,
    min_billing_s: MinBillingOpt = None,
    preemption_rate: PreemptionOpt = None,
    restart_s: RestartOpt = None,
    checkpoints_kept: KeepOpt = None,
    retain: RetainOpt = None,
    catalog: CatalogOpt = None,
    max_price_age_days: MaxPriceAgeOpt = 180,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    plot: PlotOpt = None,
    flags: dict = None,
) -> None:
    """Compare one training job across GPUs x platforms x pricing x GPU counts, sorted by total cost.

    Rows that do not fit in memory are listed with why; the cheapest, fastest and Pareto-optimal
    (cost vs time) rows are marked. Prices carry their as_of date and source.

    Examples:

      sizeup compare llama-2-7b --samples 10000 --tokens-per-sample 500 --epochs 3 --peft lora --precision fp16-mixed --gpu t4,a10,a100-40gb --platform modal,lambda,aws

      sizeup compare examples/seed004.yaml --pricing on-demand,spot --sort time

      sizeup compare examples/seed004.yaml --impact --gpu t4 --platform modal

      sizeup compare llama-3-8b --tokens 1B --zero 3 --gpu h100-sxm --gpus 8,16,32 --platform aws,lambda --pricing on-demand,spot --deadline 2d --budget 5000
    """
    from sizeup.catalog import load_catalog
    from sizeup.report import Report, Table
    from sizeup.units import format_bytes, parse_duration, parse_usd

    catalog_file = catalog
    flags = {**(flags or {}), **dict(tokens=tokens, samples=samples, tokens_per_sample=tokens_per_sample, epochs=epochs, seq=seq,
                 micro_batch=micro_batch, global_batch=global_batch, precision=precision, optimizer=optimizer,
                 zero=zero, recompute=recompute, peft=peft, lora_rank=lora_rank, gpu=gpu, gpus=gpus,
                 platform=platform, pricing=pricing, deadline=deadline, budget=budget, max_gpus=max_gpus,
                 kernel=kernel)}
    job, merged = build_job(target, model, flags)
    if sort not in ("cost", "time"):
        raise choice_error("--sort", sort, ["cost", "time"])
    catalog = load_catalog(extra_files=tuple(str(p) for p in (catalog_file or ())))
    gpu_names = _as_list(merged.get("gpu"))
    if not gpu_names:
        raise SizeupError("give GPUs to compare: --gpu t4,a10,a100-80gb")
    platforms = _as_list(merged.get("platform")) or sorted(catalog.platforms)
    for p in platforms:
        catalog.platform(p)  # unknown platform -> one clear line
    pricings = [parse_pricing(p) for p in (_as_list(merged.get("pricing")) or ["on-demand"])]
    counts = gpu_counts(merged.get("gpus"))
    cap = merged.get("max_gpus")
    if cap is not None:
        counts = [c for c in counts if c <= int(cap)]
        if not counts:
            raise SizeupError(f"--max-gpus {cap} removes every GPU count in --gpus")
    deadline_s = parse_duration(merged["deadline"]) if merged.get("deadline") else None
    budget_usd = parse_usd(merged["budget"]) if merged.get("budget") is not None else None
    overrides = OfferOverrides(price_per_gpu_hour, billing_increment_s, min_billing_s, preemption_rate, restart_s)
    knobs = cost_knobs(restart_s=restart_s, checkpoints_kept=checkpoints_kept,
                       retain_s=parse_duration(retain) if retain else 0.0)
    today = date.today()

    if impact:
        report = impact_report(job, catalog, gpu_names[0], platforms, pricings[0], counts[0], overrides, knobs)
        emit(report, json_, csv_, markdown, explain, plot=plot)
        return

    rows, unfit, notes = run_grid(job, gpu_names, platforms, pricings, counts, catalog, overrides, knobs)
    if not rows and not unfit:
        raise SizeupError(f"none of the platforms {', '.join(platforms)} offers {', '.join(gpu_names)} "
                          f"with {', '.join(pricings)} pricing; see 'sizeup hardware' / the platform catalog")
    ok = mark_rows(rows, deadline_s, budget_usd)
    key = (lambda r: r.est.total_cost_usd) if sort == "cost" else (lambda r: r.est.wall_clock_s)
    ok.sort(key=key)
    excluded = sorted([r for r in rows if r.excluded], key=key)
    warnings = []
    seen = set()
    from sizeup.core.cost import price_age_warning

    for r in ok + excluded:
        o = r.est
        k = (o.platform, o.instance, o.pricing)
        if k in seen:
            continue
        seen.add(k)
        from sizeup.core.cost import Offer

        w = price_age_warning(Offer(o.platform, o.instance, o.gpu_id, 1, o.pricing, o.price_usd_per_hour,
                                    o.price_as_of, o.price_source), today, max_price_age_days)
        if w:
            warnings.append(w)

    tables = [Table(f"{job.label}: {job.tokens:,.0f} tokens, sorted by {sort}", TABLE_COLUMNS,
                    [table_row(r) for r in ok], name="options")]
    if excluded:
        tables.append(Table("excluded by constraints", TABLE_COLUMNS, [table_row(r) for r in excluded]))
    if unfit:
        tables.append(Table("does not fit in memory (not priced)", ["gpu", "gpus", "memory needed", "why"],
                            [(g, n, format_bytes(m) if m else "-", "; ".join(why)) for g, n, why, m in unfit]))
        notes.append("to fit more: --zero 3 (shard states over GPUs), --recompute full, --peft lora/qlora, "
                     "--optimizer adam8bit; 'sizeup memory' shows the breakdown")
    cheapest = next((r for r in ok if "cheapest" in r.marks), None)
    fastest = next((r for r in ok if "fastest" in r.marks), None)
    if cheapest:
        notes.append(f"cheapest: {cheapest.est.platform} {cheapest.est.gpus}x {cheapest.est.gpu_id} "
                     f"{cheapest.est.pricing} ${cheapest.est.total_cost_usd:,.2f}")
    if fastest:
        notes.append(f"fastest: {fastest.est.platform} {fastest.est.gpus}x {fastest.est.gpu_id} "
                     f"{fastest.est.wall_clock_s / 3600:.3g} h")
    notes.append("billed time = wall-clock rounded up to each platform's billing increment and minimum; "
                 "whole instances are paid; storage = dataset + kept checkpoints + logs for the run")
    terms = list(cheapest.est.terms) if cheapest else []
    if cheapest and cheapest.ev.terms:
        terms = list(cheapest.ev.terms) + terms
    # every other row's figures too (the cheapest row's in full above, each row's table columns here)
    for r in ok + excluded:
        terms.extend(row_terms(r))
    data = {
        "workload": {"model": job.model.id, "tokens": job.tokens, "dataset_tokens": job.dataset_tokens,
                     "seq_len": job.seq_len, "samples": job.samples, "tokens_per_sample": job.tokens_per_sample,
                     "epochs": job.epochs},
        "rows": [row_dict(r) for r in ok],
        "excluded": [row_dict(r) for r in excluded],
        "does_not_fit": [{"gpu": g, "gpus": n, "memory_reserved_bytes": m, "reasons": list(why)}
                         for g, n, why, m in unfit],
        "cheapest": row_dict(cheapest) if cheapest else None,
        "fastest": row_dict(fastest) if fastest else None,
        "pareto": [row_dict(r) for r in ok if "pareto" in r.marks],
        "sort": sort, "deadline_s": deadline_s, "budget_usd": budget_usd,
    }
    emit(Report(data=data, tables=tables, terms=terms, notes=notes, warnings=warnings), json_, csv_, markdown, explain, plot=plot)


def impact_report(job: Job, catalog: Any, gpu_name: str, platforms: list[str], pricing: str, gpus: int,
                  overrides: OfferOverrides, knobs: Any):
    from sizeup.report import Report, Table
    from sizeup.units import format_bytes, format_usd

    gpu = catalog.gpu(gpu_name)
    offers = []
    for p in platforms:
        offers.extend(offers_for(catalog, p, gpu.id, pricing, overrides, strict=len(platforms) == 1))
    if not offers:
        raise SizeupError(f"none of {', '.join(platforms)} offers {gpu.id} with {pricing} pricing")
    terms: list = []
    rows = impact_rows(job, gpu, gpus, offers, knobs, terms)
    table = []
    for r in rows:
        if r["fits"]:
            saving = r["savings_vs_most_expensive_usd"]
            table.append((r["configuration"], r["precision"], r["peft"], format_bytes(r["memory_reserved_bytes"])
                          if r["memory_reserved_bytes"] else "-", f"{r['hours']:.3g}", format_usd(r["total_cost_usd"]),
                          f"{r['speedup_vs_slowest']:.2f}x", format_usd(saving) if saving > 0 else "-"))
        else:
            need = format_bytes(r["memory_reserved_bytes"]) if r["memory_reserved_bytes"] else "-"
            why = f"needs {need} > {format_bytes(gpu.memory_bytes)}" if r["memory_reserved_bytes"] else (
                "; ".join(r["reasons"])[:80])
            table.append((r["configuration"], r["precision"], r["peft"], need, "does not fit", "-", "-", why))
    title = f"impact of optimisations: {job.label} on {gpus}x {gpu.id} ({gpu.memory_bytes / 2**30:.0f} GiB), {pricing}"
    notes = ["speedup and savings are relative to the slowest / most expensive configuration that fits",
             "seed 004 assumes every configuration fits and 2x/4x speedups; here each is computed "
             "(memory first, then time from the timing model)"]
    return Report(data={"gpu": gpu.id, "gpus": gpus, "pricing": pricing, "impact": rows},
                  tables=[Table(title, ["configuration", "precision", "peft", "memory", "hours", "cost",
                                        "speedup", "savings / why"], table)],
                  terms=terms, notes=notes)
