"""`sizeup gpus` and `sizeup platforms`: what the hardware and price catalog holds, with sources and dates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sizeup.cli import app
from sizeup.commands.common import CsvOpt, ExplainOpt, GpuOpt, JsonOpt, MarkdownOpt, PricingOpt, emit

CatalogFilesOpt = Annotated[Optional[list[Path]], typer.Option(
    "--catalog", help="Extra catalog YAML (top-level gpus: / platforms:) that adds or overrides entries (repeatable).")]
MaxAgeOpt = Annotated[int, typer.Option("--max-age-days", help="Warn when a price is older than this many days.")]
GpuNameArg = Annotated[Optional[str], typer.Argument(help="Show one GPU in detail (id, alias or name).",
                                                     show_default=False)]
PlatformNameArg = Annotated[Optional[str], typer.Argument(help="Show one platform (aws, gcp, lambda, ...).",
                                                          show_default=False)]

_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "fp6", "fp4", "int8", "int4")


def _catalog(files):
    from sizeup.catalog import load_catalog

    return load_catalog(extra_files=tuple(str(p) for p in (files or ())))


def _gpu_row(g) -> dict:
    return {
        "id": g.id, "name": g.name, "vendor": g.vendor,
        "memory_bytes": g.memory_bytes, "memory_gib": g.memory_bytes / 2**30,
        "peak_flops_per_s_dense": dict(g.peak_flops_per_s),
        "hbm_bytes_per_s": g.hbm_bytes_per_s,
        "intra_node_bytes_per_s": g.intra_node_bytes_per_s, "intra_node_link": g.intra_node_link,
        "node_size": g.node_size, "inter_node_bytes_per_s": g.inter_node_bytes_per_s,
        "host_link_bytes_per_s": g.host_link_bytes_per_s, "tdp_w": g.tdp_w, "purchase_usd": g.purchase_usd,
        "matmul_efficiency": [list(p) for p in g.matmul_efficiency], "hbm_efficiency": g.hbm_efficiency,
        "collective_efficiency_intra": g.collective_efficiency_intra,
        "collective_efficiency_inter": g.collective_efficiency_inter,
        "collective_latency_s": g.collective_latency_s, "aliases": list(g.aliases), "sources": dict(g.sources),
    }


def _short_sources(g) -> str:
    keys = []
    for k in ("peak_flops_per_s.bf16", "peak_flops_per_s.fp16", "memory_bytes", "hbm_bytes_per_s",
              "intra_node_bytes_per_s"):
        src = g.sources.get(k, "").split(":", 1)[0].strip()
        if src and src not in keys:
            keys.append(src)
    return ", ".join(keys)


def gpu_terms(g) -> list:
    """Each catalog figure of one GPU as a Term: a catalog input (no formula beyond the value) with its source."""
    from sizeup.core.explain import Term

    figures = [("gpu/memory", g.memory_bytes, "B", "memory_bytes")]
    figures += [(f"gpu/peak_flops_per_s/{k}", g.peak(k), "FLOP/s", f"peak_flops_per_s.{k}") for k in _DTYPES
                if g.peak(k) > 0]
    figures += [
        ("gpu/hbm_bandwidth", g.hbm_bytes_per_s, "B/s", "hbm_bytes_per_s"),
        ("gpu/intra_node_bandwidth", g.intra_node_bytes_per_s, "B/s", "intra_node_bytes_per_s"),
        ("gpu/node_size", g.node_size, "GPUs", "node_size"),
        ("gpu/inter_node_bandwidth", g.inter_node_bytes_per_s, "B/s", "inter_node_bytes_per_s"),
        ("gpu/host_link_bandwidth", g.host_link_bytes_per_s, "B/s", "host_link_bytes_per_s"),
        ("gpu/tdp", g.tdp_w, "W", "tdp_w"),
        ("gpu/purchase_price", g.purchase_usd, "USD", "purchase_usd"),
        ("gpu/hbm_efficiency", g.hbm_efficiency, "fraction", "hbm_efficiency"),
        ("gpu/collective_efficiency_intra", g.collective_efficiency_intra, "fraction", "collective_efficiency_intra"),
        ("gpu/collective_efficiency_inter", g.collective_efficiency_inter, "fraction", "collective_efficiency_inter"),
        ("gpu/collective_latency", g.collective_latency_s, "s", "collective_latency_s"),
    ]
    return [Term(name, float(value), unit, "catalog value (one direction for links; dense peaks)", {"gpu": g.id},
                 g.sources.get(key, "") or "catalog/data/gpus")
            for name, value, unit, key in figures if value]


@app.command("gpus")
def gpus_cmd(
    name: GpuNameArg = None,
    vendor: Annotated[Optional[str], typer.Option("--vendor", help="Only this vendor (nvidia, amd, google, intel).")] = None,
    catalog_file: CatalogFilesOpt = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """List the GPUs in the catalog: memory, DENSE peak FLOP/s, HBM and link bandwidth (one direction), TDP.

    Give a name to see one GPU with every figure's source and its achievable-efficiency data.

    Examples:

      sizeup gpus

      sizeup gpus --vendor amd --json

      sizeup gpus "NVIDIA H100 SXM5"

      sizeup gpus a100 --catalog my-gpus.yaml
    """
    from sizeup.report import Report, Table
    from sizeup.units import format_bandwidth, format_bytes

    catalog = _catalog(catalog_file)
    if name:
        g = catalog.gpu(name)
        rows = [("memory", format_bytes(g.memory_bytes), g.sources.get("memory_bytes", ""))]
        for k in _DTYPES:
            if g.peak(k) > 0:
                rows.append((f"{k} dense peak", f"{g.peak(k) / 1e12:,.4g} TFLOP/s", g.sources.get(f"peak_flops_per_s.{k}", "")))
        rows += [
            ("HBM bandwidth", format_bandwidth(g.hbm_bytes_per_s), g.sources.get("hbm_bytes_per_s", "")),
            ("intra-node link (one direction)", f"{format_bandwidth(g.intra_node_bytes_per_s)} {g.intra_node_link}",
             g.sources.get("intra_node_bytes_per_s", "")),
            ("GPUs per node / link domain", g.node_size, g.sources.get("node_size", "")),
            ("inter-node per GPU (one direction)", format_bandwidth(g.inter_node_bytes_per_s),
             g.sources.get("inter_node_bytes_per_s", "")),
            ("host link (one direction)", format_bandwidth(g.host_link_bytes_per_s), g.sources.get("host_link_bytes_per_s", "")),
            ("TDP", f"{g.tdp_w:g} W" if g.tdp_w else "unknown", g.sources.get("tdp_w", "")),
            ("purchase price", f"${g.purchase_usd:,.0f}" if g.purchase_usd else "-", g.sources.get("purchase_usd", "")),
            ("HBM efficiency", g.hbm_efficiency, g.sources.get("hbm_efficiency", "")),
            ("collective efficiency intra / inter", f"{g.collective_efficiency_intra:g} / {g.collective_efficiency_inter:g}",
             g.sources.get("collective_efficiency_intra", "") + " | " + g.sources.get("collective_efficiency_inter", "")),
            ("collective latency", f"{g.collective_latency_s * 1e6:g} us", g.sources.get("collective_latency_s", "")),
        ]
        curve = [(f"{f:.0e}", f"{e:.3f}") for f, e in g.matmul_efficiency]
        notes = [f"matmul efficiency: {g.sources.get('matmul_efficiency', '')}"]
        if g.sources.get("note"):
            notes.insert(0, g.sources["note"])
        if explain:
            import re

            used = sorted({t for v in g.sources.values() for t in re.findall(r"[a-z][a-z0-9_]+", v)}
                          & set(catalog.hw_sources))
            notes += [f"source {k}: {catalog.hw_sources[k].get('title', '')}"
                      + (f" -- {catalog.hw_sources[k]['where']}" if catalog.hw_sources[k].get("where") else "")
                      for k in used]
        emit(Report(data=_gpu_row(g),
                    tables=[Table(f"{g.name} ({g.id})", ["figure", "value", "source"], rows),
                            Table("GEMM efficiency curve (fraction of dense peak vs GEMM FLOPs = 2mnk)",
                                  ["GEMM FLOPs", "fraction"], curve)],
                    terms=gpu_terms(g), notes=notes), json_, csv_, markdown, explain)
        return

    gpus = sorted(catalog.gpus.values(), key=lambda g: (g.vendor, -g.peak("bf16") or -g.peak("fp16"), g.id))
    if vendor:
        gpus = [g for g in gpus if g.vendor.lower() == vendor.lower()]
        if not gpus:
            from sizeup.errors import choice_error

            raise choice_error("vendor", vendor, sorted({g.vendor.lower() for g in catalog.gpus.values()}))
    rows = []
    for g in gpus:
        bf16 = g.peak("bf16")
        peak_txt = f"{bf16 / 1e12:,.4g}" if bf16 else (f"{g.peak('fp16') / 1e12:,.4g} (fp16)" if g.peak("fp16") else "-")
        rows.append((g.id, g.name, f"{g.memory_bytes / 2**30:,.1f}", peak_txt, f"{g.hbm_bytes_per_s / 1e12:.3g}",
                     f"{g.intra_node_bytes_per_s / 1e9:,.4g} {g.intra_node_link.split(' (')[0]}",
                     f"{g.tdp_w:g}" if g.tdp_w else "?", _short_sources(g)))
    emit(Report(
        data={"gpus": [_gpu_row(g) for g in gpus]},
        tables=[Table("GPU catalog", ["id", "name", "memory GiB", "bf16 TFLOP/s dense", "HBM TB/s",
                                      "link GB/s (1 dir)", "TDP W", "sources"], rows)],
        notes=["peaks are DENSE (no 2:4 sparsity); GeForce bf16/fp16 are FP32-accumulate rates; link figures are "
               "one direction per GPU; memory is the usable total nvidia-smi reports where known.",
               "details and every source: sizeup gpus <name> --explain"],
    ), json_, csv_, markdown)


@app.command("platforms")
def platforms_cmd(
    name: PlatformNameArg = None,
    gpu: GpuOpt = None,
    pricing: PricingOpt = None,
    max_age_days: MaxAgeOpt = 180,
    catalog_file: CatalogFilesOpt = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """List cloud platforms, their instances and dated prices (USD per instance hour and per GPU-hour).

    Warns about prices older than --max-age-days (default 180) relative to today, and about
    sources that disagree (billing granularity, egress).

    Examples:

      sizeup platforms

      sizeup platforms lambda

      sizeup platforms --gpu h100 --pricing spot --json

      sizeup platforms aws --catalog my-prices.yaml --max-age-days 90
    """
    from datetime import date

    from sizeup.core.cost import price_age_days
    from sizeup.errors import SizeupError
    from sizeup.report import Report, Table

    if max_age_days < 0:
        raise SizeupError(f"--max-age-days must be >= 0, got {max_age_days}")
    catalog = _catalog(catalog_file)
    platforms = [catalog.platform(name)] if name else [catalog.platforms[k] for k in sorted(catalog.platforms)]
    gpu_id = catalog.gpu_id(gpu) if gpu else None
    today = date.today()
    offers = []
    for p in platforms:
        offers += p.offers(gpu_id, pricing, strict=bool(name))
    if not offers:
        raise SizeupError(f"no catalog platform rents {gpu_id}" + (f" at {pricing} pricing" if pricing else "")
                          + ". Add your own price with --catalog my-prices.yaml")
    if gpu_id:  # cheapest GPU-hour first across platforms
        offers.sort(key=lambda o: (o.price_usd_per_gpu_hour, o.platform, o.instance))
    else:
        offers.sort(key=lambda o: (o.platform, o.gpu_id, o.instance, o.pricing))
    rows, data, warnings, stale = [], [], [], 0
    for o in offers:
        age = price_age_days(o.price_as_of, today)
        if age is None or age > max_age_days:
            stale += 1
        rows.append((o.platform, o.instance, o.gpu_id, o.gpus_per_instance, o.pricing, f"{o.price_usd_per_hour:,.4g}",
                     f"{o.price_usd_per_gpu_hour:,.4g}", o.price_as_of, "?" if age is None else age, o.price_source))
        data.append({"platform": o.platform, "instance": o.instance, "gpu": o.gpu_id, "gpus": o.gpus_per_instance,
                     "pricing": o.pricing, "usd_per_hour": o.price_usd_per_hour,
                     "usd_per_gpu_hour": o.price_usd_per_gpu_hour, "as_of": o.price_as_of, "age_days": age,
                     "source": o.price_source, "note": o.note})
    if stale:
        warnings.append(f"{stale} of {len(offers)} prices are older than {max_age_days} days or undated (age '?'): "
                        "re-check them before quoting, or pass current prices with --catalog my-prices.yaml")
    prow, pdata = [], []
    for p in platforms:
        spot = (f"{p.preemption_rate_per_hour:g}/h, notice {p.spot_notice_s:g} s" if p.spot_available else "no spot")
        prow.append((p.id, p.kind, f"{p.billing_increment_s:g} s", f"{p.min_billing_s:g} s", spot,
                     f"{p.block_storage_usd_per_gb_month:g}" if p.block_storage_usd_per_gb_month else "-",
                     "-" if "not collected" in p.egress_source else f"{p.egress_usd_per_gb:g}"))
        pdata.append({"id": p.id, "name": p.name, "kind": p.kind, "billing_increment_s": p.billing_increment_s,
                      "min_billing_s": p.min_billing_s, "billing_source": p.billing_source,
                      "spot_available": p.spot_available, "preemption_rate_per_hour": p.preemption_rate_per_hour,
                      "preemption_source": p.preemption_source, "spot_notice_s": p.spot_notice_s,
                      "restart_s": p.restart_s, "block_storage_usd_per_gb_month": p.block_storage_usd_per_gb_month,
                      "object_storage_usd_per_gb_month": p.object_storage_usd_per_gb_month,
                      "storage_source": p.storage_source, "egress_usd_per_gb": p.egress_usd_per_gb,
                      "egress_free_gb": p.egress_free_gb, "egress_source": p.egress_source,
                      "conflicts": list(p.conflicts), "note": p.note})
        for c in p.conflicts:
            warnings.append(f"{p.id} billing: sources disagree -- {c} (default used: {p.billing_increment_s:g} s "
                            f"increment, {p.min_billing_s:g} s minimum)")
    notes = ["prices are per INSTANCE hour; $/GPU-h = instance price / GPUs; age = days between as_of and today "
             f"({today.isoformat()})"]
    if explain:
        for p in platforms:
            notes += [f"{p.id} billing: {p.billing_source}", f"{p.id} spot: {p.preemption_source or 'no spot tier'}",
                      f"{p.id} storage: {p.storage_source}; egress: {p.egress_source}"]
            if p.note:
                notes.append(f"{p.id}: {p.note}")
    emit(Report(
        data={"today": today.isoformat(), "max_age_days": max_age_days, "platforms": pdata, "offers": data},
        tables=[Table("platforms", ["id", "kind", "billing step", "minimum", "spot", "block $/GB-mo", "egress $/GB"], prow),
                Table("instances and prices", ["platform", "instance", "gpu", "gpus", "pricing", "$/h", "$/GPU-h",
                                               "as_of", "age d", "source"], rows)],
        terms=offer_terms(offers) if explain else [], notes=notes, warnings=warnings,
    ), json_, csv_, markdown, explain)


def offer_terms(offers) -> list:
    """$/GPU-h of each listed offer: the instance price (a dated catalog input) over the instance's GPUs."""
    from sizeup.core.explain import Term

    return [Term(f"price/{o.platform}/{o.instance}/{o.pricing}: usd_per_gpu_hour", o.price_usd_per_gpu_hour,
                 "USD/GPU-h", "usd_per_hour / gpus",
                 {"usd_per_hour": o.price_usd_per_hour, "gpus": o.gpus_per_instance, "as_of": o.price_as_of},
                 o.price_source) for o in offers]
