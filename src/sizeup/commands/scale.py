"""`sizeup scale` (seed 001's scaling table, computed) and `sizeup fit-budget` (reverse mode)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sizeup.cli import app  # noqa: F401
from sizeup.commands.common import job_command, refusals_except
from sizeup.commands.common import PlotOpt
from sizeup.commands.common import (
    CsvOpt, ExplainOpt, GlobalBatchOpt, JsonOpt, MarkdownOpt, OptimizerOpt, PrecisionOpt, SeqOpt, emit, parse_choice,
)
from sizeup.errors import SizeupError

SizesOpt = Annotated[str, typer.Option("--sizes", help="Model sizes, comma-separated (10M,100M,500M,1B,3B).")]
OptionsOpt = Annotated[str, typer.Option("--gpus", "--gpu", help="Hardware options, comma-separated; 'Nx' = N GPUs "
                                                                 "of that kind, data parallel (rtx-3090,2xrtx-3090,a100-80gb).")]
SamplesPerParamOpt = Annotated[Optional[float], typer.Option("--samples-per-param", help="Training samples per parameter (seed 001: 0.1, i.e. 10M params -> 1M samples).")]
SamplesListOpt = Annotated[Optional[str], typer.Option("--samples", help="Samples per size, comma-separated (1M,10M,...), or one value for all.")]
TokensListOpt = Annotated[Optional[str], typer.Option("--tokens", help="Training tokens per size, comma-separated (200M,2B,...), or one value for all.")]
TpsOpt = Annotated[Optional[str], typer.Option("--tokens-per-sample", help="Tokens per sample (default: --seq).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch", help="Global batch in sequences per optimizer step (default 32, seed 001).")]
PlatformsOpt = Annotated[Optional[str], typer.Option("--platform", help="Platforms to take the cheapest offer from, comma-separated (default all).")]
PricingsOpt = Annotated[Optional[str], typer.Option("--pricing", help="Pricing kinds, comma-separated (default on-demand,spot).")]
PriceOpt = Annotated[Optional[float], typer.Option("--price-per-gpu-hour", help="Use this price (USD per GPU-hour) instead of the catalog.")]
VocabOpt = Annotated[int, typer.Option("--vocab", help="Vocabulary size of the scaled family.")]
TiedOpt = Annotated[bool, typer.Option("--tied/--untied", help="Tie input and output embeddings (default tied).")]
KernelOpt = Annotated[str, typer.Option("--kernel", help="fused | te | eager (timing kernels; memory uses hf-eager for eager).")]
TokensSpecOpt = Annotated[Optional[Path], typer.Option("--tokens-spec", help="YAML of input streams (as for 'sizeup tokens') to turn tokens into hours of data.")]
DataRateOpt = Annotated[Optional[float], typer.Option("--data-tokens-per-second", help="Tokens per second of recorded data (for data hours) when there is no --tokens-spec.")]
KeptOpt = Annotated[Optional[int], typer.Option("--checkpoints-kept", help="Checkpoints kept on storage (default from energy.yaml).")]


# --------------------------------------------------------------------------- helpers


def _list(text: str | None) -> list[str]:
    return [p.strip() for p in str(text or "").split(",") if p.strip()]


def _per_size(text: str | None, n: int, what: str) -> list[float] | None:
    from sizeup.units import parse_count

    if text is None:
        return None
    vals = [parse_count(v) for v in _list(text)]
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n:
        raise SizeupError(f"--{what} needs one value per size ({n}) or one for all, got {len(vals)}")
    if any(v <= 0 for v in vals):
        raise SizeupError(f"--{what} values must be > 0")
    return vals


def _enum(kind: str, value: str | None, enum_name: str, default):
    from sizeup.core import types as T

    if value is None:
        return default
    aliases = {"Precision": {"fp16": "fp16-mixed", "mixed": "bf16-mixed", "amp": "fp16-mixed"}}.get(enum_name, {})
    return parse_choice(kind, value, getattr(T, enum_name), aliases)


def _kernel(value: str) -> str:
    from sizeup.core.timing import KERNELS

    k = str(value).strip().lower()
    if k not in KERNELS:
        from sizeup.errors import choice_error

        raise choice_error("kernel", value, list(KERNELS))
    return k


def _family(vocab: int, tied: bool, seq: int):
    from sizeup.core.scale import ScaleFamily

    if vocab < 1:
        raise SizeupError(f"--vocab must be >= 1, got {vocab}")
    return ScaleFamily(vocab_size=vocab, tie_embeddings=tied, max_seq_len=max(2048, seq))


def build_pricings(catalog: Any, gpu_ids: list[str], platforms: list[str], kinds: list[str],
                   price_per_gpu_hour: float | None, kept: int | None = None) -> tuple[dict, list[str]]:
    """{gpu_id: {kind: Pricing}} from the platform catalog (cheapest offer is picked per plan), + notes."""
    from sizeup.commands.compare import OfferOverrides, cost_knobs, energy_value, instance_gpu, offers_for
    from sizeup.core.cost import Offer
    from sizeup.core.scale import Pricing

    knobs = cost_knobs(checkpoints_kept=kept)
    per_token, _ = energy_value("storage", "dataset_bytes_per_token")
    overrides = OfferOverrides(price_per_gpu_hour=price_per_gpu_hour)
    names = platforms or sorted(catalog.platforms)
    for p in names:
        catalog.platform(p)  # unknown platform -> one clear line
    out: dict = {}
    notes: list[str] = []
    for gid in gpu_ids:
        out[gid] = {}
        for kind in kinds:
            offers = []
            for p in names:
                offers.extend(offers_for(catalog, p, gid, kind, overrides, strict=False))
            if not offers and price_per_gpu_hour is not None:
                offers = [Offer("flag", gid, gid, 1, kind, price_per_gpu_hour, "flag", "--price-per-gpu-hour")]
            if not offers:
                notes.append(f"{gid}: no {kind} offer on {', '.join(names)}")
                continue
            gpu = catalog.gpu(gid)
            wired = tuple(instance_gpu(gpu, o, catalog) for o in offers)
            out[gid][kind] = Pricing(tuple(offers), knobs, per_token, wired)
    return out, notes


def _data_rate(tokens_spec: Path | None, rate: float | None) -> tuple[float | None, str, list]:
    """Tokens per HOUR of recorded data: from a streams YAML (token_budget) or a flag."""
    if tokens_spec is not None:
        from pydantic import ValidationError

        from sizeup.catalog import read_user_yaml
        from sizeup.core.tokens import token_budget
        from sizeup.errors import pydantic_message
        from sizeup.schema import TokensFile

        if not tokens_spec.exists():
            raise SizeupError(f"token spec {str(tokens_spec)!r} not found")
        raw = read_user_yaml(tokens_spec, "token spec") or {}
        if not isinstance(raw, dict):
            raise SizeupError(f"{tokens_spec}: expected a mapping with sample_seconds and streams")
        raw = {k: v for k, v in raw.items() if k in ("sample_seconds", "streams")}
        try:
            tf = TokensFile.model_validate(raw)
        except ValidationError as exc:
            raise SizeupError(pydantic_message(exc)) from None
        b = token_budget(tuple(s.to_core() for s in tf.streams), tf.sample_seconds)
        if b.tokens_per_hour <= 0:
            raise SizeupError(f"{tokens_spec}: the streams give 0 tokens per hour of data")
        return b.tokens_per_hour, f"{tokens_spec.name}: {b.tokens_per_hour:,.0f} tokens per hour of data " \
                                  f"({b.tokens_per_sample:,.0f} per {tf.sample_seconds:g} s sample)", list(b.terms)
    if rate is not None:
        if rate <= 0:
            raise SizeupError(f"--data-tokens-per-second must be > 0, got {rate}")
        return rate * 3600.0, f"{rate:,.4g} tokens per second of data (--data-tokens-per-second)", []
    return None, "", []


def _gb(b: float | None) -> str:
    from sizeup.units import format_bytes

    return "-" if b is None or not math.isfinite(b) else format_bytes(b)


def _usd(pp) -> str:
    from sizeup.units import format_usd

    if pp is not None and not pp.cost.feasible:
        return "infeasible"
    return "-" if pp is None else format_usd(pp.cost.total_cost_usd)


def _dur(s: float) -> str:
    from sizeup.units import format_duration

    return "-" if s is None or not math.isfinite(s) else format_duration(s)


def _hours(h: float) -> str:
    return "-" if h is None or not math.isfinite(h) else (f"{h:,.3g}" if h < 1000 else f"{h:,.0f}")


def _offer(point, pp) -> str:
    if pp is None:
        return "-"
    c = pp.cost
    out = f"{c.platform} {c.instance} ${c.price_usd_per_gpu_hour:.3g}/GPU-h"
    if c.instances > 1:
        out += f", {c.instances} instances"
    if pp.train is not point.train:
        out += f" (re-timed over the instance network: {_dur(c.wall_clock_s)})"
    return out


def _memory_parts(mem) -> dict:
    pg = dict(mem.per_gpu)
    weights = pg.get("model/weights", 0.0) + pg.get("model/adapter_weights", 0.0)
    grads = pg.get("gradients", 0.0)
    opt = sum(v for k, v in pg.items() if k.startswith("optimizer/"))
    acts = sum(v for k, v in pg.items() if k.startswith("activations/"))
    other = mem.peak_allocated_bytes - weights - grads - opt - acts
    return {"weights": weights, "gradients": grads, "optimizer": opt, "activations": acts,
            "buffers": other, "overheads": mem.peak_reserved_bytes - mem.peak_allocated_bytes}


def _point_dict(pt, kinds) -> dict:
    s = pt.fit.setup
    mem = pt.fit.memory
    d = {
        "option": pt.option, "gpu": pt.gpu_id, "gpus": pt.gpus, "fits": pt.fits, "memory_fix_level": pt.fit.level,
        "fixes_needed": list(pt.fit.fixes), "gradient_checkpointing": pt.fit.gradient_checkpointing,
        "zero": pt.fit.zero or None, "tp": s.tp, "offload": pt.fit.offload or None,
        "micro_batch": s.micro_batch, "grad_accum": s.grad_accum, "global_batch": s.global_batch,
        "peak_reserved_bytes_per_gpu": mem.peak_reserved_bytes, "peak_allocated_bytes_per_gpu": mem.peak_allocated_bytes,
        "gpu_memory_bytes": mem.gpu_memory_bytes, "memory_parts_bytes": _memory_parts(mem),
        "reasons": list(pt.fit.reasons),
    }
    if pt.train is not None:
        st = pt.train.step
        d.update({"step_time_s": st.step_time_s, "tokens_per_s": st.tokens_per_s, "samples_per_s": st.samples_per_s,
                  "mfu": st.mfu, "bound": st.bound, "steps": pt.train.steps, "wall_clock_s": pt.train.total_time_s,
                  "wall_clock_hours": pt.train.total_time_s / 3600.0, "gpu_hours": pt.train.gpu_hours})
        d["checkpoint_bytes"] = pt.files.checkpoint_bytes
        d["dataset_bytes"] = pt.files.dataset_bytes
    costs = {}
    for kind in kinds:
        pp = pt.costs.get(kind)
        est = pp.cost if pp is not None else None
        if est is not None and not est.feasible:  # no invented time or price for a run that cannot progress
            costs[kind] = {"platform": est.platform, "instance": est.instance, "feasible": False,
                           "reasons": list(est.reasons), "price_usd_per_gpu_hour": est.price_usd_per_gpu_hour,
                           "price_as_of": est.price_as_of, "price_source": est.price_source}
        elif est is not None:
            costs[kind] = {"feasible": True, "platform": est.platform, "instance": est.instance, "total_cost_usd": est.total_cost_usd,
                           "compute_cost_usd": est.compute_cost_usd, "storage_cost_usd": est.storage_cost_usd,
                           "price_usd_per_gpu_hour": est.price_usd_per_gpu_hour, "price_as_of": est.price_as_of,
                           "price_source": est.price_source, "wall_clock_s": est.wall_clock_s,
                           "billed_s": est.billed_s, "gpus_paid": est.gpus_paid,
                           "retimed_for_instance_network": pp.train is not pt.train,
                           "compute_s": pp.train.total_time_s}
        else:
            costs[kind] = None
    d["cost"] = costs
    return d


# --------------------------------------------------------------------------- sizeup scale


@job_command("scale", refuse=refusals_except(['sizes', 'gpus', 'samples_per_param', 'samples', 'tokens', 'tokens_per_sample', 'batch', 'global_batch', 'seq', 'precision', 'optimizer', 'platform', 'pricing', 'price_per_gpu_hour', 'vocab', 'tied', 'kernel', 'tokens_spec', 'data_tokens_per_second', 'checkpoints_kept', 'json_', 'csv_', 'markdown', 'explain'], "the scaling table sizes a model family from --sizes with its own recipe; evaluate one size with 'sizeup train'"))
def scale_cmd(
    sizes: SizesOpt = "10M,100M,500M,1B,3B",
    gpus: OptionsOpt = "rtx-3090,2xrtx-3090,a100-80gb",
    samples_per_param: SamplesPerParamOpt = None,
    samples: SamplesListOpt = None,
    tokens: TokensListOpt = None,
    tokens_per_sample: TpsOpt = None,
    batch: BatchOpt = None,
    global_batch: GlobalBatchOpt = None,
    seq: SeqOpt = None,
    precision: PrecisionOpt = None,
    optimizer: OptimizerOpt = None,
    platform: PlatformsOpt = None,
    pricing: PricingsOpt = None,
    price_per_gpu_hour: PriceOpt = None,
    vocab: VocabOpt = 32000,
    tied: TiedOpt = True,
    kernel: KernelOpt = "fused",
    tokens_spec: TokensSpecOpt = None,
    data_tokens_per_second: DataRateOpt = None,
    checkpoints_kept: KeptOpt = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    plot: PlotOpt = None,
    flags: dict = None,
) -> None:
    """Scaling table (seed 001): one model family at several sizes, on several hardware options.

    For each size: a scaled architecture (layers x hidden, heads = hidden/64) whose exact parameter count
    hits the size, the samples/steps/tokens, and for each hardware option the memory fix needed to fit
    (gradient checkpointing, then ZeRO-2/3, then TP, then CPU offload), peak memory per GPU, GPU-hours,
    wall-clock, cost on-demand and spot (cheapest catalog offer), checkpoint size, data hours and the
    Chinchilla tokens-per-parameter view.

    Examples:

      sizeup scale

      sizeup scale --sizes 10M,100M,500M,1B,3B --gpus rtx-3090,2xrtx-3090,a100-80gb --samples-per-param 0.1 --markdown

      sizeup scale --sizes 100M,1B --tokens 2B,20B --gpus a100-80gb,8xh100-sxm --platform lambda,runpod --json

      sizeup scale --tokens-spec examples/tokens/vr-session.yaml --csv
    """
    from sizeup.catalog import load_catalog
    from sizeup.catalog.overheads import load_overheads
    from sizeup.commands.compare import parse_pricing
    from sizeup.core.scale import parse_option, scale_row, workload_for
    from sizeup.core.timing import default_knobs
    from sizeup.core.types import Optimizer, Precision
    from sizeup.report import Report, Table
    from sizeup.units import format_count, parse_count

    size_list = [parse_count(s) for s in _list(sizes)]
    if not size_list:
        raise SizeupError("give --sizes, e.g. 10M,100M,500M,1B,3B")
    if any(s < 1e5 for s in size_list):
        raise SizeupError("--sizes must be at least 100K parameters each (e.g. 10M)")
    if sum(x is not None for x in (samples_per_param, samples, tokens)) > 1:
        raise SizeupError("give one of --samples-per-param, --samples, --tokens")
    if samples_per_param is not None and samples_per_param <= 0:
        raise SizeupError(f"--samples-per-param must be > 0, got {samples_per_param}")
    if batch is not None and global_batch is not None and batch != global_batch:
        raise SizeupError("--batch and --global-batch are the same; give one")
    gb = batch or global_batch or 32
    if gb < 1:
        raise SizeupError(f"--batch must be >= 1, got {gb}")
    seq_len = seq or 2048
    if seq_len < 1:
        raise SizeupError(f"--seq must be >= 1, got {seq_len}")
    tps = parse_count(tokens_per_sample) if tokens_per_sample is not None else float(seq_len)
    if tps <= 0:
        raise SizeupError("--tokens-per-sample must be > 0")
    prec = _enum("precision", precision, "Precision", Precision.BF16_MIXED)
    opt = _enum("optimizer", optimizer, "Optimizer", Optimizer.ADAMW)
    kern = _kernel(kernel)
    family = _family(vocab, tied, seq_len)
    samples_l = _per_size(samples, len(size_list), "samples")
    tokens_l = _per_size(tokens, len(size_list), "tokens")

    catalog = load_catalog()
    options = []
    for text in _list(gpus):
        n, name = parse_option(text)
        if n < 1:
            raise SizeupError(f"GPU count must be >= 1 in {text!r}")
        g = catalog.gpu(name)
        label = f"{n}x {g.id}" if n > 1 else g.id
        options.append((label, g, n))
    if not options:
        raise SizeupError("give hardware options: --gpus rtx-3090,2xrtx-3090,a100-80gb")
    kinds = [parse_pricing(k) for k in (_list(pricing) or ["on-demand", "spot"])]
    pricings, price_notes = build_pricings(catalog, sorted({g.id for _, g, _ in options}), _list(platform), kinds,
                                           price_per_gpu_hour, checkpoints_kept)
    per_hour, data_note, data_terms = _data_rate(tokens_spec, data_tokens_per_second)
    overheads = load_overheads()
    knobs = default_knobs()

    rows = []
    for i, size in enumerate(size_list):
        wl, n_samples = workload_for(size, samples_per_param=samples_per_param,
                                     samples=samples_l[i] if samples_l else None,
                                     tokens=tokens_l[i] if tokens_l else None, tokens_per_sample=tps)
        rows.append(scale_row(size, options, wl, n_samples, family=family, global_batch=gb, seq_len=seq_len,
                              precision=prec, optimizer=opt, overheads=overheads, knobs=knobs, kernel=kern,
                              pricings_by_gpu=pricings, data_tokens_per_hour=per_hour))

    labels = [o[0] for o in options]
    main_cols = ["Scale", "Params", "Params (exact)", "Layers x hidden (heads)", "Training Samples", "Training Steps",
                 "Tokens Seen", "Tokens/param (Chinchilla 20)"] + [f"GPU Hours ({lb})" for lb in labels]
    main_rows = []
    for r in rows:
        a = r.arch
        main_rows.append(
            [r.name, format_count(r.target_params), f"{a.params:,}", f"{a.layers} x {a.hidden} ({a.heads})",
             format_count(r.samples) if r.samples else "-", f"{r.steps:,}", format_count(r.tokens),
             f"{r.chinchilla.tokens_per_param:,.3g}"]
            + [_hours(p.gpu_hours) if p.fits else "does not fit" for p in r.points])

    hw_cols = ["Scale", "Hardware", "Micro-batch x accum", "Gradient checkpointing", "ZeRO", "TP", "Offload",
               "Peak memory/GPU", "Tokens/s", "MFU", "Wall clock", "GPU Hours"] + \
              [f"Cost {k}" for k in kinds] + [f"Offer {k}" for k in kinds]
    hw_rows, mem_rows = [], []
    for r in rows:
        for p in r.points:
            s = p.fit.setup
            mem = p.fit.memory
            peak = f"{_gb(mem.peak_reserved_bytes)} / {_gb(mem.gpu_memory_bytes)}"
            if not p.fits:
                hw_rows.append([r.name, p.option, "-", "-", "-", "-", "-", peak + " (does not fit)", "-", "-", "-", "-"]
                               + ["-"] * (2 * len(kinds)))
            else:
                st = p.train.step
                hw_rows.append(
                    [r.name, p.option, f"{s.micro_batch} x {s.grad_accum}",
                     "needed" if p.fit.gradient_checkpointing else "no", p.fit.zero or "no",
                     str(s.tp) if s.tp > 1 else "no", p.fit.offload or "no", peak, f"{st.tokens_per_s:,.0f}",
                     f"{st.mfu:.1%}", _dur(p.wall_clock_s), _hours(p.gpu_hours)]
                    + [_usd(p.costs.get(k)) for k in kinds]
                    + [_offer(p, p.costs.get(k)) for k in kinds])
            parts = _memory_parts(mem)
            mem_rows.append([r.name, p.option, _gb(parts["weights"]), _gb(parts["gradients"]), _gb(parts["optimizer"]),
                             _gb(parts["activations"]), _gb(parts["buffers"] + parts["overheads"]),
                             _gb(mem.peak_reserved_bytes), "yes" if p.fits else "no",
                             ", ".join(p.fit.fixes) or "none"])
    ck_rows = []
    for r in rows:
        fitted = next((p for p in r.points if p.fits), None)
        ck = fitted.files.checkpoint_bytes if fitted else None
        data_b = fitted.files.dataset_bytes if fitted else None
        ck_rows.append([r.name, _gb(ck), _gb(data_b),
                        f"{r.data_hours:,.0f}" if r.data_hours is not None else "-",
                        format_count(r.chinchilla.rule_tokens), f"{r.chinchilla.tokens_per_param:,.3g}",
                        r.chinchilla.verdict.split(":")[0].split(" (")[0]])

    tables = [
        Table("scaling table (seed 001 layout, computed)", main_cols, main_rows),
        Table("per hardware option: memory fixes, throughput, cost", hw_cols, hw_rows),
        Table("memory per GPU (peak, by component)", ["Scale", "Hardware", "Weights", "Gradients", "Optimizer",
                                                       "Activations", "Buffers + overheads", "Peak reserved", "Fits",
                                                       "Fixes"], mem_rows),
        Table("checkpoints, data and Chinchilla", ["Scale", "Checkpoint", "Dataset (tokenised)", "Data hours",
                                                   "Chinchilla tokens (20 N)", "Tokens/param", "Verdict"], ck_rows),
    ]
    notes = [
        f"family: Llama-style decoder, vocab {family.vocab_size} ({'tied' if family.tie_embeddings else 'untied'} "
        "embeddings), heads = hidden/64, hidden a multiple of 64, ffn = 64*ceil(8h/3/64); for each size the "
        f"(layers, hidden) within {family.tolerance:.0%} of the target whose hidden/layers is closest to the seed "
        f"baseline's 512/6 = {family.aspect:.1f}",
        f"global batch {gb} sequences x {seq_len} tokens per step; 'Nx' options are data parallel over N GPUs; "
        "micro-batch shrinks with gradient accumulation before any other memory fix",
        "memory fix ladder: none -> gradient checkpointing -> ZeRO-2 -> ZeRO-3 -> TP -> CPU offload; the first that "
        "fits is used (and its time and cost)",
        "GPU Hours = wall clock x GPUs; costs: cheapest catalog offer per pricing kind (whole instances, billing "
        "increments, spot preemptions, storage of dataset + kept checkpoints)",
    ]
    if data_note:
        notes.append("data hours = tokens / tokens per hour of data; " + data_note)
    else:
        notes.append("data hours omitted: give --tokens-spec streams.yaml or --data-tokens-per-second")
    notes.extend(price_notes)
    data = {
        "family": {"vocab_size": family.vocab_size, "tie_embeddings": family.tie_embeddings,
                   "head_dim": family.head_dim, "aspect_hidden_per_layer": family.aspect,
                   "tolerance": family.tolerance},
        "global_batch": gb, "seq_len": seq_len, "tokens_per_sample": tps, "precision": prec.value,
        "optimizer": opt.value, "kernel": kern, "pricing": kinds, "options": labels,
        "rows": [{
            "scale": r.name, "target_params": r.target_params, "params": r.arch.params,
            "params_error": r.arch.error, "layers": r.arch.layers, "hidden": r.arch.hidden, "heads": r.arch.heads,
            "ffn": r.arch.model.ffn_size, "samples": r.samples, "steps": r.steps, "tokens": r.tokens,
            "data_hours": r.data_hours,
            "chinchilla": {"tokens_per_param": r.chinchilla.tokens_per_param, "rule_tokens": r.chinchilla.rule_tokens,
                           "law_params": r.chinchilla.law_params, "law_tokens": r.chinchilla.law_tokens,
                           "verdict": r.chinchilla.verdict},
            "hardware": {p.option: _point_dict(p, kinds) for p in r.points},
        } for r in rows],
    }
    from dataclasses import replace as _replace

    def named(prefix: str, ts) -> list:  # one row's figures, told apart by its scale / hardware option
        return [_replace(t, name=f"{prefix}: {t.name}") for t in ts]

    shown = ("throughput/tokens_per_s", "efficiency/mfu", "train/total_time", "train/gpu_hours")
    terms = list(data_terms)
    for r in rows:
        terms.extend(named(r.name, r.terms))
        first = next((p for p in r.points if p.fits), None)
        if first is not None and explain:
            terms.extend(named(f"{r.name} on {first.option}", (t for t in first.train.terms
                                                                if t.name.startswith("train/"))))
            terms.extend(named(f"{r.name} on {first.option}", first.files.terms))
        if explain:
            for p in r.points:
                prefix = f"{r.name} on {p.option}"
                terms.extend(named(prefix, (t for t in p.fit.memory.terms if t.name == "memory/peak_reserved")))
                if p.fits:
                    terms.extend(named(prefix, (t for t in p.train.terms if t.name in shown
                                                and not (p is first and t.name.startswith("train/")))))
                    for kind in kinds:
                        pp = p.costs.get(kind)
                        if pp is not None:
                            terms.extend(named(f"{prefix} {kind}", (t for t in pp.cost.terms
                                                                    if t.name == "cost/total")))
    emit(Report(data=data, tables=tables, terms=terms, notes=notes), json_, csv_, markdown, explain, plot=plot)


# --------------------------------------------------------------------------- sizeup fit-budget


@job_command("fit-budget", refuse=refusals_except(['budget', 'deadline', 'gpu', 'gpus', 'max_gpus', 'platform', 'pricing', 'tokens', 'params', 'tokens_per_param', 'seq', 'global_batch', 'precision', 'optimizer', 'price_per_gpu_hour', 'vocab', 'tied', 'kernel', 'json_', 'csv_', 'markdown', 'explain'], "reverse mode searches model size / tokens / GPU count with its own recipe; evaluate the answer with 'sizeup train'"))
def fit_budget_cmd(
    budget: Annotated[Optional[str], typer.Option("--budget", help="Most you will pay (USD), e.g. 5000 or 5k.")] = None,
    deadline: Annotated[Optional[str], typer.Option("--deadline", help="Latest wall-clock, e.g. 10d, 36h.")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="GPU kinds to consider, comma-separated (a100-80gb,h100-sxm).")] = None,
    gpus: Annotated[Optional[int], typer.Option("--gpus", help="Use exactly this many GPUs.")] = None,
    max_gpus: Annotated[Optional[int], typer.Option("--max-gpus", help="Try 1, 2, 4, ... up to this many GPUs.")] = None,
    platform: PlatformsOpt = None,
    pricing: Annotated[Optional[str], typer.Option("--pricing", help="on-demand | spot | reserved (default on-demand).")] = None,
    tokens: Annotated[Optional[str], typer.Option("--tokens", help="Fixed training tokens (with --deadline: fewest GPUs).")] = None,
    params: Annotated[Optional[str], typer.Option("--params", help="Fixed model size (e.g. 1B): the most tokens that fit.")] = None,
    tokens_per_param: Annotated[float, typer.Option("--tokens-per-param", help="Chinchilla ratio D/N for the largest-model search.")] = 20.0,
    seq: SeqOpt = None,
    global_batch: GlobalBatchOpt = None,
    precision: PrecisionOpt = None,
    optimizer: OptimizerOpt = None,
    price_per_gpu_hour: PriceOpt = None,
    vocab: VocabOpt = 32000,
    tied: TiedOpt = True,
    kernel: KernelOpt = "fused",
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    flags: dict = None,
) -> None:
    """Reverse mode: from a budget and/or deadline to the plan that fits it.

    No --params/--tokens: the largest Chinchilla-consistent model (D = 20 N) that fits. --params: the most
    tokens for that model. --tokens (+ --deadline): the fewest GPUs that meet the deadline (model D/20 unless
    --params). Every candidate runs the full forward model (memory fit with fixes, step time, cost on the
    cheapest offer); the answer is found by bisection and the binding constraint is named.

    Examples:

      sizeup fit-budget --budget 5000 --gpu a100-80gb --gpus 8 --platform aws

      sizeup fit-budget --budget 5000 --deadline 10d --gpu a100-80gb,h100-sxm --max-gpus 16 --pricing spot

      sizeup fit-budget --budget 2000 --params 1B --gpu h100-sxm --gpus 8

      sizeup fit-budget --deadline 3d --tokens 100B --gpu h100-sxm --params 1B --json
    """
    from sizeup.catalog import load_catalog
    from sizeup.catalog.overheads import load_overheads
    from sizeup.commands.compare import parse_pricing
    from sizeup.core.reverse import Constraints, Recipe, fewest_gpus, largest_model, most_tokens
    from sizeup.core.scale import scaled_arch
    from sizeup.core.timing import default_knobs
    from sizeup.core.types import Optimizer, Precision
    from sizeup.report import Report, Table
    from sizeup.units import format_count, parse_count, parse_duration, parse_usd

    budget_usd = parse_usd(budget) if budget is not None else None
    deadline_s = parse_duration(deadline) if deadline is not None else None
    if budget_usd is None and deadline_s is None:
        raise SizeupError("give --budget (USD) and/or --deadline (e.g. 10d)")
    if budget_usd is not None and budget_usd <= 0:
        raise SizeupError(f"--budget must be > 0, got {budget}")
    if deadline_s is not None and deadline_s <= 0:
        raise SizeupError(f"--deadline must be > 0, got {deadline}")
    if not gpu:
        raise SizeupError("give --gpu (GPU kinds to consider, e.g. a100-80gb,h100-sxm)")
    if gpus is not None and max_gpus is not None:
        raise SizeupError("give --gpus (exact count) or --max-gpus (search), not both")
    for name, v in (("gpus", gpus), ("max-gpus", max_gpus)):
        if v is not None and v < 1:
            raise SizeupError(f"--{name} must be >= 1, got {v}")
    if tokens_per_param <= 0:
        raise SizeupError(f"--tokens-per-param must be > 0, got {tokens_per_param}")
    if budget_usd is not None and price_per_gpu_hour is not None and price_per_gpu_hour <= 0:
        # a free GPU-hour makes any budget unbounded: the bisection would only stop at its search cap
        raise SizeupError(f"--price-per-gpu-hour must be > 0 with --budget, got {price_per_gpu_hour}")
    seq_len = seq or 2048
    if global_batch is not None and global_batch < 1:
        raise SizeupError(f"--global-batch must be >= 1, got {global_batch}")
    catalog = load_catalog()
    specs = [catalog.gpu(g) for g in _list(gpu)]
    kind = parse_pricing(pricing or "on-demand")
    pr, price_notes = build_pricings(catalog, [g.id for g in specs], _list(platform), [kind], price_per_gpu_hour)
    pricings = {gid: kinds[kind] for gid, kinds in pr.items() if kind in kinds}
    if not pricings:
        raise SizeupError(f"no {kind} offer for {', '.join(g.id for g in specs)} on "
                          f"{platform or 'any platform'}; try --pricing on-demand, another --platform, "
                          "or --price-per-gpu-hour")
    family = _family(vocab, tied, seq_len)
    # default batch: ~1M tokens per optimizer step (GPT-3, Brown et al. 2020 Table 2.1: 1M tokens for 1.3B-2.7B)
    gb = global_batch or max(1, round(2**20 / seq_len))
    recipe = Recipe(seq_len=seq_len, global_batch=gb,
                    precision=_enum("precision", precision, "Precision", Precision.BF16_MIXED),
                    optimizer=_enum("optimizer", optimizer, "Optimizer", Optimizer.ADAMW),
                    overheads=load_overheads(), knobs=default_knobs(), kernel=_kernel(kernel),
                    family=family, tokens_per_param=tokens_per_param)
    constraints = Constraints(budget_usd, deadline_s)
    if gpus is not None:
        counts = [gpus]
    else:
        cap = max_gpus or 8
        counts, n = [], 1
        while n <= cap:
            counts.append(n)
            n *= 2
        if cap not in counts:
            counts.append(cap)
    options = [(g, counts) for g in specs]
    fixed_model = scaled_arch(parse_count(params), family) if params is not None else None
    if fixed_model is not None and fixed_model.params <= 0:
        raise SizeupError("--params must be > 0")
    if tokens is not None:
        d = parse_count(tokens)
        if d <= 0:
            raise SizeupError("--tokens must be > 0")
        model = fixed_model or scaled_arch(d / tokens_per_param, family)
        answer = fewest_gpus(model.model, d, specs, pricings, constraints, recipe,
                             max_gpus=gpus or max_gpus or 4096)
        question = f"fewest GPUs to train {format_count(model.params)} params on {format_count(d)} tokens"
    elif fixed_model is not None:
        answer = most_tokens(fixed_model.model, options, pricings, constraints, recipe)
        question = f"most tokens for a {format_count(fixed_model.params)}-param model"
    else:
        answer = largest_model(options, pricings, constraints, recipe)
        question = f"largest model trained compute-optimally (D = {tokens_per_param:g} N)"

    limits = ", ".join(x for x in (f"budget ${budget_usd:,.2f}" if budget_usd is not None else "",
                                   f"deadline {_dur(deadline_s)}" if deadline_s is not None else "") if x)
    p = answer.plan
    notes = [f"global batch {gb} sequences x {seq_len} tokens" + ("" if global_batch else
             " (default ~1M tokens per step, GPT-3 Table 2.1; --global-batch to change)"),
             f"{answer.evaluations} plans evaluated forward (memory fit with fixes, step time, cheapest {kind} offer)",
             f"binding constraint: {answer.binding}"]
    if answer.next_plan is not None and answer.next_plan.reasons:
        nx = answer.next_plan
        where = "just beyond the answer" if p is not None else "smallest candidate"
        notes.append(f"{where} ({format_count(nx.params)} params, {format_count(nx.tokens)} tokens, "
                     f"{nx.gpus}x {nx.gpu_id}): " + "; ".join(nx.reasons[:2]))
    notes.extend(price_notes)
    if p is None:
        rows = [("answer", "nothing fits"), ("why", "; ".join(answer.next_plan.reasons[:2]) if answer.next_plan else "-")]
        data = {"mode": answer.mode, "question": question, "budget_usd": budget_usd, "deadline_s": deadline_s,
                "answer": None, "binding": answer.binding,
                "reasons": list(answer.next_plan.reasons) if answer.next_plan else []}
        emit(Report(data=data, tables=[Table(f"{question} within {limits}", ["figure", "value"], rows)], notes=notes),
             json_, csv_, markdown, explain)
        return
    m = p.model
    s = p.fit.setup
    rows = [
        ("answer", {"largest-model": f"{format_count(p.params)} params", "most-tokens": f"{format_count(p.tokens)} tokens",
                    "fewest-gpus": f"{p.gpus} GPUs"}[answer.mode]),
        ("model", f"{p.params:,.0f} params: {m.num_layers} layers x {m.hidden_size} hidden ({m.num_heads} heads), "
                  f"vocab {m.vocab_size}"),
        ("tokens", f"{format_count(p.tokens)} ({p.tokens / p.params:,.3g} tokens/param)"),
        ("hardware", f"{p.gpus}x {p.gpu_id}"),
        ("parallelism", f"dp {s.dp}, tp {s.tp}, micro-batch {s.micro_batch} x accum {s.grad_accum} "
                        f"(global batch {s.global_batch}), fixes: {', '.join(p.fit.fixes) or 'none'}"),
        ("peak memory / GPU", f"{_gb(p.fit.memory.peak_reserved_bytes)} of {_gb(p.fit.memory.gpu_memory_bytes)}"),
        ("MFU", f"{p.mfu:.1%}"),
        ("compute time", _dur(p.train.total_time_s)),
        ("wall clock (with restarts)", _dur(p.wall_clock_s)),
        ("cost", f"${p.cost_usd:,.2f} on {p.cost.platform} {p.cost.instance} ({p.cost.pricing}, "
                 f"${p.cost.price_usd_per_gpu_hour:.3g}/GPU-h, as of {p.cost.price_as_of})"),
        ("binding constraint", answer.binding),
    ]
    cand_rows = [(c.gpu_id, c.gpus, format_count(c.params), format_count(c.tokens), _dur(c.wall_clock_s),
                  f"${c.cost_usd:,.0f}", f"{c.mfu:.1%}") for c in answer.candidates if c is not None]
    tables = [Table(f"{question} within {limits}", ["figure", "value"], rows)]
    if len(cand_rows) > 1:
        tables.append(Table("best per GPU kind and count", ["gpu", "gpus", "params", "tokens", "wall clock", "cost",
                                                            "MFU"], cand_rows))

    def plan_dict(x):
        if x is None:
            return None
        return {"gpu": x.gpu_id, "gpus": x.gpus, "params": x.params, "tokens": x.tokens,
                "layers": x.model.num_layers, "hidden": x.model.hidden_size, "heads": x.model.num_heads,
                "feasible": x.feasible, "failed": list(x.failed), "reasons": list(x.reasons),
                "fixes": list(x.fit.fixes), "micro_batch": x.fit.setup.micro_batch,
                "grad_accum": x.fit.setup.grad_accum, "tp": x.fit.setup.tp, "dp": x.fit.setup.dp,
                "peak_reserved_bytes_per_gpu": x.fit.memory.peak_reserved_bytes,
                "compute_time_s": x.train.total_time_s if x.train else None,
                "wall_clock_s": x.wall_clock_s, "cost_usd": x.cost_usd if x.cost else None,
                "mfu": x.mfu if x.train else None,
                "platform": x.cost.platform if x.cost else None, "instance": x.cost.instance if x.cost else None}

    data = {"mode": answer.mode, "question": question, "budget_usd": budget_usd, "deadline_s": deadline_s,
            "pricing": kind, "answer": plan_dict(p), "binding": answer.binding, "next": plan_dict(answer.next_plan),
            "candidates": [plan_dict(c) for c in answer.candidates if c is not None],
            "evaluations": answer.evaluations}
    emit(Report(data=data, tables=tables, terms=list(answer.terms), notes=notes), json_, csv_, markdown, explain)
