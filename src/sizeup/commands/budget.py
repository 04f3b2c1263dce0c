"""`sizeup budget`: a monthly plan (runs per month x cost per run over months) and buy vs rent."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from sizeup.cli import app  # noqa: F401
from sizeup.commands.common import job_command, refusals_except
from sizeup.commands.common import (
    CsvOpt, EpochsOpt, ExplainOpt, JsonOpt, LoraRankOpt, MarkdownOpt, ModelArg, ModelOpt, PeftOpt, PlatformOpt,
    PrecisionOpt, PricingOpt, SamplesOpt, TokensOpt, TokensPerSampleOpt, emit,
)
from sizeup.errors import SizeupError

PhaseOpt = Annotated[Optional[list[str]], typer.Option(
    "--phase", help="name:months:runs_per_month:cost_per_run, repeatable. cost_per_run is USD (0.62) or "
                    "platform/gpu[/pricing[/gpus]] (lambda/a10) to compute it from the scenario/model workload.")]


def parse_phase(text: str) -> dict:
    parts = [p.strip() for p in str(text).split(":")]
    if len(parts) != 4 or not all(parts):
        raise SizeupError(f"bad --phase {text!r}; write name:months:runs_per_month:cost_per_run, "
                          "e.g. dev:3:4:0.62 or prod:3:1:modal/a100-40gb")
    name, months, runs, cost = parts
    try:
        months_f, runs_f = float(months), float(runs)
    except ValueError:
        raise SizeupError(f"bad --phase {text!r}: months and runs_per_month must be numbers") from None
    if months_f <= 0 or runs_f < 0:
        raise SizeupError(f"bad --phase {text!r}: months must be > 0 and runs_per_month >= 0")
    return {"name": name, "months": months_f, "runs_per_month": runs_f, "cost": cost}


def run_cost(job: Any, spec: str, catalog: Any, knobs: Any, terms_out: list | None = None) -> tuple[float, dict]:
    """Cost of one run of `job` from 'platform/gpu[/pricing[/gpus]]' (its cost Terms appended to `terms_out`)."""
    from sizeup.commands.compare import best_offer, cost_dict, evaluate, offers_for, parse_pricing

    parts = [p for p in spec.split("/") if p]
    if len(parts) < 2:
        raise SizeupError(f"cost per run {spec!r}: give USD (0.62) or platform/gpu[/pricing[/gpus]] (lambda/a10)")
    platform, gpu_name = parts[0], parts[1]
    pricing = parse_pricing(parts[2]) if len(parts) > 2 else "on-demand"
    try:
        gpus = int(parts[3]) if len(parts) > 3 else 1
    except ValueError:
        raise SizeupError(f"cost per run {spec!r}: the GPU count must be a whole number") from None
    gpu = catalog.gpu(gpu_name)
    offers = offers_for(catalog, platform, gpu.id, pricing)
    ev = evaluate(job, gpu, gpus)
    if not ev.fits:
        raise SizeupError(f"cost per run {spec!r}: {job.label} does not fit on {gpus}x {gpu.id}: "
                          f"{'; '.join(ev.reasons)}")
    est, _, ev = best_offer(job, ev, offers, knobs, catalog)
    d = cost_dict(est, gpu)
    d["throughput_tokens_per_sec"] = ev.tokens_per_s
    if terms_out is not None:
        from dataclasses import replace

        keep = ("throughput/tokens_per_s", "time/wall_clock", "cost/billed_time", "cost/total")
        terms_out.extend(replace(t, name=f"run on {spec}: {t.name}") for t in tuple(ev.terms) + tuple(est.terms)
                         if t.name in keep)
    return est.total_cost_usd, d


@job_command("budget", refuse=refusals_except(['target', 'model', 'phase', 'tokens', 'samples', 'tokens_per_sample', 'epochs', 'precision', 'peft', 'lora_rank', 'buy_gpu', 'purchase_usd', 'power_w', 'pue', 'usd_per_kwh', 'amortize_months', 'utilization', 'rent_usd_per_hour', 'platform', 'pricing', 'json_', 'csv_', 'markdown', 'explain'], "the monthly plan prices phases from --phase; evaluate a run with 'sizeup train'"))
def budget_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    phase: PhaseOpt = None,
    tokens: TokensOpt = None,
    samples: SamplesOpt = None,
    tokens_per_sample: TokensPerSampleOpt = None,
    epochs: EpochsOpt = None,
    precision: PrecisionOpt = None,
    peft: PeftOpt = None,
    lora_rank: LoraRankOpt = None,
    buy_gpu: Annotated[Optional[str], typer.Option("--buy-gpu", help="GPU you would buy instead (e.g. rtx-4090).")] = None,
    purchase_usd: Annotated[Optional[str], typer.Option("--purchase-usd", help="Purchase price (default: catalog price of --buy-gpu).")] = None,
    power_w: Annotated[Optional[float], typer.Option("--power-w", help="Wall power while training, W (default: the GPU's TDP).")] = None,
    pue: Annotated[Optional[float], typer.Option("--pue", help="Facility overhead factor (default 1.0 for your own box).")] = None,
    usd_per_kwh: Annotated[Optional[float], typer.Option("--usd-per-kwh", help="Electricity price (default: US residential, energy.yaml).")] = None,
    amortize_months: Annotated[float, typer.Option("--amortize-months", help="Months over which the purchase is written off.")] = 36.0,
    utilization: Annotated[float, typer.Option("--utilization", help="Fraction of the amortization period the card is busy (0-1).")] = 0.25,
    rent_usd_per_hour: Annotated[Optional[float], typer.Option("--rent-usd-per-hour", help="Rental price to compare with (default: cheapest catalog on-demand price of --buy-gpu).")] = None,
    platform: PlatformOpt = None,
    pricing: PricingOpt = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    flags: dict = None,
) -> None:
    """Budget a project: runs per month x cost per run over months, and buy vs rent.

    Examples:

      sizeup budget --phase dev:3:4:0.62 --phase prod:3:1:1.42

      sizeup budget examples/seed004.yaml --phase dev:3:4:lambda/a10 --phase prod:3:1:modal/a100-40gb --buy-gpu rtx-4090

      sizeup budget --buy-gpu rtx-4090 --purchase-usd 1599 --power-w 450 --usd-per-kwh 0.18 --utilization 0.5
    """
    from sizeup.catalog import load_catalog
    from sizeup.commands.compare import build_job, cost_knobs, energy_value, evaluate, offers_for, parse_pricing
    from sizeup.core.cost import Phase, buy_vs_rent, plan_budget
    from sizeup.report import Report, Table
    from sizeup.units import format_usd, parse_usd

    catalog = load_catalog()
    knobs = cost_knobs()
    flags = dict(tokens=tokens, samples=samples, tokens_per_sample=tokens_per_sample, epochs=epochs,
                 precision=precision, peft=peft, lora_rank=lora_rank)
    job, merged = (build_job(target, model, flags) if (target or model) else (None, {}))
    specs = [parse_phase(p) for p in (phase or [])]
    if not specs and merged.get("phases"):
        for p in merged["phases"]:
            if not isinstance(p, dict):
                raise SizeupError("scenario phases must be a list of {name, months, runs_per_month, cost_per_run}")
            specs.append(parse_phase(f"{p.get('name')}:{p.get('months')}:{p.get('runs_per_month')}:{p.get('cost_per_run')}"))
    buy = merged.get("buy") or {}
    buy_gpu = buy_gpu or buy.get("gpu")
    if not specs and not buy_gpu:
        raise SizeupError("give at least one --phase name:months:runs_per_month:cost_per_run, or --buy-gpu")

    phases, run_details, notes, warnings, run_terms = [], {}, [], [], []
    for s in specs:
        try:
            cost = parse_usd(s["cost"])
        except Exception:
            if job is None:
                raise SizeupError(f"--phase {s['name']}: cost {s['cost']!r} needs a model or scenario to compute "
                                  "it from; or give USD") from None
            cost, detail = run_cost(job, s["cost"], catalog, knobs, run_terms)
            run_details[s["name"]] = detail
        phases.append(Phase(s["name"], s["months"], s["runs_per_month"], cost))
    data: dict[str, Any] = {}
    tables, terms = [], []
    plan = None
    if phases:
        plan = plan_budget(phases)
        rows = [(p.name, f"{p.months:g}", f"{p.runs_per_month:g}",
                 run_details.get(p.name, {}).get("platform", "given") + (
                     f" {run_details[p.name]['gpus']}x {run_details[p.name]['gpu']}" if p.name in run_details else ""),
                 format_usd(p.cost_per_run_usd), format_usd(p.monthly_usd), format_usd(p.total_usd))
                for p in plan.phases]
        rows.append(("total", f"{plan.months:g}", "-", "-", "-", "-", format_usd(plan.total_usd)))
        tables.append(Table("monthly plan", ["phase", "months", "runs/month", "where", "cost/run", "monthly", "total"],
                            rows))
        terms.extend(plan.terms)
        terms.extend(run_terms)
        data["plan"] = {"phases": [p.__dict__ for p in plan.phases], "months": plan.months, "runs": plan.runs,
                        "total_usd": plan.total_usd, "runs_detail": run_details}

    if buy_gpu:
        gpu = catalog.gpu(buy_gpu)
        price = purchase_usd or buy.get("purchase_usd")
        if price is not None:
            purchase, purchase_src = parse_usd(price), "--purchase-usd"
        elif gpu.purchase_usd:
            purchase, purchase_src = float(gpu.purchase_usd), gpu.sources.get("purchase_usd", "GPU catalog")
        else:
            raise SizeupError(f"no purchase price for {gpu.id} in the catalog; give --purchase-usd")
        power = power_w or buy.get("power_w") or gpu.tdp_w
        if not power:
            raise SizeupError(f"no TDP for {gpu.id} in the catalog; give --power-w")
        pue_v = pue if pue is not None else float(buy.get("pue") or energy_value("pue", "own")[0])
        kwh_v, kwh_src = (usd_per_kwh, "--usd-per-kwh") if usd_per_kwh is not None else energy_value(
            "electricity_usd_per_kwh", "default")
        if not (0 < utilization <= 1):
            raise SizeupError(f"--utilization must be in (0, 1], got {utilization}")
        if amortize_months <= 0:
            raise SizeupError(f"--amortize-months must be > 0, got {amortize_months}")
        rent, rent_src = rent_usd_per_hour, "--rent-usd-per-hour"
        if rent is None:
            kinds = [parse_pricing(pricing)] if pricing else ["on-demand"]
            cands = []
            for pid in ([platform] if platform else sorted(catalog.platforms)):
                for kind in kinds:
                    cands.extend(offers_for(catalog, pid, gpu.id, kind, strict=bool(platform)))
            if not cands:
                raise SizeupError(f"no catalog rental price for {gpu.id}; give --rent-usd-per-hour")
            best = min(cands, key=lambda o: o.price_usd_per_gpu_hour)
            rent = best.price_usd_per_gpu_hour
            rent_src = f"{best.platform} {best.instance} {best.pricing}: {best.price_source} (as_of {best.price_as_of})"
        used_hours = None
        if plan is not None and job is not None:
            ev = evaluate(job, gpu, 1)
            if ev.fits:
                used_hours = plan.runs * ev.time_s / 3600.0
                notes.append(f"one run on your own {gpu.id} takes {ev.time_s / 3600:.3g} h; the plan's "
                             f"{plan.runs:g} runs use it {used_hours:.3g} h")
            else:
                notes.append(f"{job.label} does not fit on one {gpu.id}: {'; '.join(ev.reasons)}")
        r = buy_vs_rent(purchase, float(power), pue_v, kwh_v, amortize_months, utilization, rent, used_hours)
        terms.extend(r.terms)
        be = r.break_even_hours
        if be is not None:
            from sizeup.core.explain import Term

            terms.append(Term("own/break_even_months", be / (utilization * 730.5), "months",
                              "break_even_hours / (utilization * 730.5 h/month)",
                              {"break_even_hours": be, "utilization": utilization},
                              "730.5 h = mean Gregorian month (30.4375 d)"))
        rows = [
            ("purchase", format_usd(r.purchase_usd), purchase_src),
            ("energy per used hour", format_usd(r.own_energy_usd_per_hour),
             f"{power:g} W x PUE {pue_v:g} x ${kwh_v:g}/kWh ({kwh_src})"),
            ("rental price per GPU-hour", format_usd(rent), rent_src),
            ("break-even hours of use", f"{be:,.0f} h" if be is not None else "never (rent < energy)",
             "purchase / (rent - energy)"),
            ("break-even at utilization", f"{be / (utilization * 730.5):,.1f} months" if be is not None else "never",
             f"{utilization:g} of 730.5 h/month"),
            ("hours used", f"{r.used_hours:,.1f} h", "the plan's runs" if used_hours is not None
             else f"{amortize_months:g} months x {utilization:g} utilization"),
            ("own: purchase + energy", format_usd(r.own_total_usd), ""),
            ("rent the same hours", format_usd(r.rent_total_usd), ""),
        ]
        if plan is not None:
            rows.append(("cloud plan total", format_usd(plan.total_usd), "monthly plan above"))
            cheaper = "cloud" if plan.total_usd <= r.own_total_usd else "buy"
            notes.append(f"over the plan, {'renting' if cheaper == 'cloud' else 'buying'} is cheaper: cloud "
                         f"{format_usd(plan.total_usd)} vs own {format_usd(r.own_total_usd)}")
        tables.append(Table(f"buy {gpu.id} vs rent", ["item", "value", "from"], rows))
        data["buy_vs_rent"] = {k: v for k, v in r.__dict__.items() if k != "terms"}
        data["buy_vs_rent"].update(gpu=gpu.id, purchase_source=purchase_src, rent_source=rent_src)
    emit(Report(data=data, tables=tables, terms=terms, notes=notes, warnings=warnings), json_, csv_, markdown, explain)
