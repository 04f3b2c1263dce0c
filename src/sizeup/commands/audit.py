"""`sizeup audit CLAIMS.yaml`: check a claimed plan's arithmetic and physics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sizeup.cli import app  # noqa: F401
from sizeup.commands.common import job_command, refusals_except
from sizeup.commands.common import CsvOpt, ExplainOpt, JsonOpt, MarkdownOpt, emit
from sizeup.errors import SizeupError


def load_claims(path: Path):
    from pydantic import ValidationError

    from sizeup.catalog import read_yaml
    from sizeup.errors import pydantic_message
    from sizeup.schema import ClaimsFile

    if not path.exists():
        raise SizeupError(f"claims file {str(path)!r} not found")
    try:
        raw = read_yaml(path)
    except Exception as exc:  # yaml.YAMLError and friends
        raise SizeupError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SizeupError(f"{path}: expected a mapping with params/model, samples or tokens, gpu, gpus, claimed")
    from sizeup.job.flags import JOB_FLAG_NAMES

    # job fields of the claimed plan other than the claim's own keys go to `job` (validated by the job parser)
    raw = dict(raw)
    extra = {k: raw.pop(k) for k in list(raw) if k in JOB_FLAG_NAMES and k not in ClaimsFile.model_fields}
    raw["job"] = {**(raw.get("job") or {}), **extra}
    try:
        return ClaimsFile.model_validate(raw)
    except ValidationError as exc:
        raise SizeupError(f"{path}: {pydantic_message(exc)}") from None


def build_claims(cf, catalog):
    """ClaimsFile -> core Claims (+ the model, when a preset is named)."""
    from sizeup.core.audit import Claims
    from sizeup.core.params import count_params
    from sizeup.units import GB, parse_count

    arch = catalog.model(cf.model) if cf.model else None
    params = float(count_params(arch).total) if arch else parse_count(cf.params)
    samples = parse_count(cf.samples) * cf.epochs if cf.samples is not None else None
    tps = parse_count(cf.tokens_per_sample) if cf.tokens_per_sample is not None else None
    tokens = parse_count(cf.tokens) if cf.tokens is not None else samples * tps
    gpu = catalog.gpu(cf.gpu)
    peft = cf.peft.lower() in ("lora", "qlora", "yes", "true")
    precision = (cf.precision or ("bf16-mixed" if gpu.supports_bf16 else "fp16-mixed")).lower()
    dtype = "fp32" if precision == "fp32" else "tf32" if precision == "tf32" else "fp8" if precision == "fp8" else (
        "bf16" if "bf16" in precision and gpu.supports_bf16 else "fp16")
    peak = gpu.peak(dtype) or gpu.peak("fp16") or gpu.peak("bf16") or gpu.peak("fp32")
    ceiling = max(frac for _, frac in gpu.matmul_efficiency) if gpu.matmul_efficiency else 1.0
    claimed = cf.claimed
    catalog_price = None
    if cf.platform:
        # the cheapest catalog offer of this GPU on the named platform (SizeupError: not rented there)
        offers = catalog.offers(cf.platform, gpu.id, cf.pricing.replace("_", "-"), strict=False)
        catalog_price = offers[0].price_usd_per_gpu_hour if offers else None
    claims = Claims(
        params=params, tokens=tokens, samples=samples, tokens_per_sample=tps, gpu_name=gpu.name, gpus=cf.gpus,
        peak_flops_per_s=peak, gpu_memory_bytes=gpu.memory_bytes, mfu_ceiling=ceiling,
        flops_per_token_factor=4.0 if peft else 6.0,
        claimed_throughput_samples_per_s=claimed.throughput_samples_per_s,
        claimed_throughput_tokens_per_s=claimed.throughput_tokens_per_s,
        claimed_wall_clock_hours=claimed.wall_clock_hours, claimed_gpu_hours=claimed.gpu_hours,
        claimed_cost_usd=claimed.cost_usd, claimed_price_per_gpu_hour=claimed.price_per_gpu_hour,
        claimed_peak_memory_bytes=claimed.peak_memory_gb * GB if claimed.peak_memory_gb else None,
        catalog_price_per_gpu_hour=catalog_price,
    )
    return claims, arch, gpu, precision


def model_checks(claims, arch, gpu, cf, precision):
    """Add sizeup's own memory and time estimates when the model is a known preset."""
    from dataclasses import replace

    if arch is None:
        return claims
    from sizeup.job import build_job
    from sizeup.pipeline import memory_for, train_for

    seq = cf.seq or int(min(claims.tokens_per_sample or arch.max_seq_len, arch.max_seq_len))
    values = {**cf.job, "model": cf.model, "gpu": gpu.id, "gpus": cf.gpus, "seq": seq,
              "micro_batch": cf.micro_batch or cf.job.get("micro_batch") or 1, "precision": precision,
              "peft": cf.peft, "tokens": claims.tokens}
    job = build_job(values)
    setup = job.setup
    mem = memory_for(job)
    est = train_for(job)
    described = (f"micro-batch {setup.micro_batch} x seq {setup.seq_len}, {setup.precision.value}, "
                 f"{setup.peft.value if setup.peft.value != 'none' else 'full training'}, recompute {setup.recompute.value}")
    return replace(claims, modelled_peak_memory_bytes=mem.peak_reserved_bytes, modelled_time_s=est.total_time_s,
                   modelled_setup=described)


@job_command("audit", refuse=refusals_except(['claims_file', 'tolerance', 'mfu_min', 'json_', 'csv_', 'markdown', 'explain'], 'audit reads the plan from the claims file; put this field in the claims'))
def audit_cmd(
    claims_file: Annotated[Path, typer.Argument(help="YAML file with the claimed plan (see examples/claims/).")],
    tolerance: Annotated[float, typer.Option("--tolerance", help="Relative tolerance for arithmetic checks.")] = 0.25,
    mfu_min: Annotated[float, typer.Option("--mfu-min", help="Implied MFU below this is implausibly low.")] = 0.05,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    flags: dict = None,
) -> None:
    """Audit a claimed plan: throughput x time, GPU-hours, cost, implied MFU and memory, each with its arithmetic.

    Examples:

      sizeup audit examples/claims/seed001-tiny-a100.yaml

      sizeup audit examples/claims/seed004-t4-lora.yaml --json
    """
    from sizeup.catalog import load_catalog
    from sizeup.core.audit import AuditLimits, audit
    from sizeup.report import Report, Table

    if not 0 < tolerance < 10:
        raise SizeupError(f"--tolerance must be between 0 and 10, got {tolerance}")
    cf = load_claims(claims_file)
    catalog = load_catalog()
    claims, arch, gpu, precision = build_claims(cf, catalog)
    claims = model_checks(claims, arch, gpu, cf, precision)
    result = audit(claims, AuditLimits(rel_tolerance=tolerance, mfu_min=mfu_min))
    rows = [(k.status.upper(), k.name, k.message, k.arithmetic) for k in result.checks]
    data = {
        "file": str(claims_file), "title": cf.title, "status": result.status,
        "params": claims.params, "tokens": claims.tokens, "gpu": gpu.id, "gpus": claims.gpus,
        "implied_mfu": result.implied_mfu,
        "checks": [{"name": k.name, "status": k.status, "message": k.message, "arithmetic": k.arithmetic,
                    "values": k.values} for k in result.checks],
    }
    title = f"audit of {cf.title or claims_file.name}: {result.status.upper()}"
    emit(Report(data=data, tables=[Table(title, ["status", "check", "finding", "arithmetic"], rows)],
                terms=list(result.terms)), json_, csv_, markdown, explain)
