"""`sizeup train`: FLOPs, step time, throughput, MFU/HFU, what bounds the step, wall-clock and GPU-hours."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from sizeup.cli import app
from sizeup.commands.common import (
    CpOpt, CsvOpt, EpochsOpt, EpOpt, ExplainOpt, GlobalBatchOpt, GpuOpt, GpusOpt, JsonOpt, LoraRankOpt, MarkdownOpt,
    MicroBatchOpt, ModelArg, ModelOpt, OptimizerOpt, PeftOpt, PlatformOpt, PpOpt, PrecisionOpt, PricingOpt,
    RecomputeOpt, SamplesOpt, SeqOpt, TokensOpt, TokensPerSampleOpt, TpOpt, ZeroOpt, emit, is_scenario,
    pick_target,
)
from sizeup.commands.common import CalibrationOpt, NoCalibrationOpt
from sizeup.errors import SizeupError

KernelOpt = Annotated[Optional[str], typer.Option(
    "--kernel", help="fused (fused norm/activation kernels + FlashAttention-2, default) | te (Megatron-Core/NeMo with "
                     "Transformer Engine/cuDNN attention) | eager (plain PyTorch / Hugging Face modules).")]
GradAccumOpt = Annotated[Optional[int], typer.Option("--grad-accum", help="Gradient accumulation steps (else derived from --global-batch).")]

def _int(name: str, value) -> int | None:
    if value is None:
        return None
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise SizeupError(f"{name} must be a whole number, got {value!r}") from None
    if out <= 0:
        raise SizeupError(f"--{name} must be > 0, got {value}")
    return out


def build_train_setup(arch, gpu, values: dict[str, Any]):
    """TrainSetup from merged scenario/flag values: `sizeup memory`'s parser (same flags, aliases and checks),
    with the batch resolved from any two of micro-batch / global batch / accumulation, the sequence taken from
    tokens per sample when not given (unpacked samples), and sequence parallelism on with tensor parallelism."""
    from sizeup.commands.memory import build_setup
    from sizeup.core.workload import resolve_batch

    gpus = _int("gpus", values.get("gpus")) or 1
    tp, pp, cp = (_int(k, values.get(k)) or 1 for k in ("tp", "pp", "cp"))
    if gpus % (tp * pp * cp):
        raise SizeupError(f"--gpus {gpus} must be a multiple of tp x pp x cp = {tp}x{pp}x{cp} = {tp * pp * cp}")
    seq = _int("seq", values.get("seq"))
    if seq is None and values.get("tokens_per_sample") is not None:
        from sizeup.units import parse_count

        seq = max(1, min(int(-(-parse_count(values["tokens_per_sample"]) // 1)), arch.max_seq_len))
    batch = resolve_batch(gpus // (tp * pp * cp), _int("micro-batch", values.get("micro_batch")),
                          _int("global-batch", values.get("global_batch")), _int("grad-accum", values.get("grad_accum")))
    peft = values.get("peft")
    sp = values.get("sequence_parallel")
    return build_setup(
        arch, gpu, gpus=gpus, seq=seq, micro_batch=batch.micro_batch, grad_accum=batch.grad_accum, tp=tp, pp=pp,
        cp=cp, ep=_int("ep", values.get("ep")), precision=values.get("precision"), optimizer=values.get("optimizer"),
        zero=None if values.get("zero") is None else str(values["zero"]), recompute=values.get("recompute"),
        peft=("lora" if peft else "none") if isinstance(peft, bool) else peft,
        lora_rank=_int("lora-rank", values.get("lora_rank")), attention=values.get("attention"),
        offload_optimizer=values.get("offload_optimizer"), virtual_pp=_int("virtual-pp", values.get("virtual_pp")),
        sequence_parallel=(tp > 1) if sp is None else bool(sp),
    )


def _workload(values: dict[str, Any]):
    from sizeup.core.workload import Workload
    from sizeup.units import parse_count

    tokens = values.get("tokens")
    samples = values.get("samples")
    tps = values.get("tokens_per_sample")
    epochs = values.get("epochs")
    if tokens is None and samples is None:
        return None
    return Workload(tokens=parse_count(tokens) if tokens is not None else None,
                    samples=parse_count(samples) if samples is not None else None,
                    tokens_per_sample=parse_count(tps) if tps is not None else None,
                    epochs=float(epochs) if epochs is not None else 1.0)


@app.command("train")
def train_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    gpu: GpuOpt = None,
    gpus: GpusOpt = None,
    tokens: TokensOpt = None,
    samples: SamplesOpt = None,
    tokens_per_sample: TokensPerSampleOpt = None,
    epochs: EpochsOpt = None,
    seq: SeqOpt = None,
    micro_batch: MicroBatchOpt = None,
    global_batch: GlobalBatchOpt = None,
    grad_accum: GradAccumOpt = None,
    precision: PrecisionOpt = None,
    optimizer: OptimizerOpt = None,
    zero: ZeroOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    cp: CpOpt = None,
    ep: EpOpt = None,
    recompute: RecomputeOpt = None,
    peft: PeftOpt = None,
    lora_rank: LoraRankOpt = None,
    kernel: KernelOpt = None,
    platform: PlatformOpt = None,
    pricing: PricingOpt = None,
    calibration: CalibrationOpt = None,
    no_calibration: NoCalibrationOpt = False,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Training time: FLOPs per step, step time (roofline + communication + bubble), tokens/s, MFU, bound, GPU-hours.

    Examples:

      sizeup train llama-2-7b --gpu h100-sxm --gpus 8 --tokens 10B --global-batch 256 --seq 4096

      sizeup train llama-2-70b --gpu h100 --gpus 64 --tp 8 --zero 1 --tokens 2T --global-batch 512 --json

      sizeup train examples/seed003-70b-h100.yaml --explain

      sizeup train examples/seed004.yaml --gpu a10 --kernel eager
    """
    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.catalog.overheads import load_overheads
    from sizeup.core.estimate import estimate_training, memory_kernel
    from sizeup.core.memory import estimate_memory
    from sizeup.core.timing import estimate_step
    from sizeup.scenario import Scenario, load_scenario, load_timing_knobs

    from sizeup.calib import use_from_flags

    use_from_flags(calibration, no_calibration)
    name = pick_target(target, model)
    scenario = load_scenario(name) if is_scenario(name) else Scenario()
    flags = dict(model=None if is_scenario(name) else name, gpu=gpu, gpus=gpus, tokens=tokens, samples=samples,
                 tokens_per_sample=tokens_per_sample, epochs=epochs, seq=seq, micro_batch=micro_batch,
                 global_batch=global_batch, grad_accum=grad_accum, precision=precision, optimizer=optimizer, zero=zero,
                 tp=tp, pp=pp, cp=cp, ep=ep, recompute=recompute, peft=peft, lora_rank=lora_rank, kernel=kernel,
                 platform=platform, pricing=pricing)
    values = scenario.merged(flags)
    if not values.get("model"):
        raise SizeupError("give a model (preset id, config.json) or a scenario .yaml; see 'sizeup models'")
    catalog = load_catalog()
    arch = resolve_model(str(values["model"]), catalog)
    if not values.get("gpu"):
        raise SizeupError("give --gpu (e.g. h100-sxm, a100-80gb, t4); see 'sizeup hardware'")
    gpu_spec = catalog.gpu(str(values["gpu"]))
    if gpu_spec.peak("bf16") <= 0 and gpu_spec.peak("fp16") <= 0 and gpu_spec.peak("fp32") <= 0:
        raise SizeupError(f"GPU {gpu_spec.id} has no FLOP/s figures in the catalog; pick a GPU with peaks")
    setup = build_train_setup(arch, gpu_spec, values)
    from sizeup.core.timing import KERNELS

    kernel_name = str(values.get("kernel") or "fused").lower()
    if kernel_name not in KERNELS:
        raise SizeupError(f"--kernel must be one of {', '.join(KERNELS)}, got {values['kernel']!r}")
    knobs = load_timing_knobs(scenario.timing)
    workload = _workload(values)
    from sizeup.calib import apply_to_overheads

    overheads = apply_to_overheads(load_overheads())  # a user calibration's fitted fragmentation
    if workload is not None:
        est = estimate_training(arch, setup, gpu_spec, workload, knobs, kernel=kernel_name, overheads=overheads)
        step, mem = est.step, est.memory
    else:
        est = None
        step = estimate_step(arch, setup, gpu_spec, knobs, kernel=kernel_name)
        mem = estimate_memory(arch, setup, gpu_spec, overheads=overheads, kernel=memory_kernel(kernel_name))
    report = build_report(arch, setup, gpu_spec, step, est, mem, kernel_name, scenario)
    from sizeup.calib.report import decorate_train

    decorate_train(report, step, est, mem, setup, kernel_name)
    if values.get("platform"):
        add_cost(report, est, values, arch, setup, gpu_spec, catalog)
    emit(report, json_, csv_, markdown, explain)


def add_cost(report, est, values, arch, setup, gpu_spec, catalog) -> None:
    """`--platform P [--pricing K]`: price the run (seed 004 field names next to sizeup's own)."""
    from sizeup.commands.compare import cost_section
    from sizeup.core.explain import Term
    from sizeup.report import Table
    from sizeup.units import format_duration, format_usd

    if est is None:
        raise SizeupError("pricing a run needs its size: give --tokens, or --samples with --tokens-per-sample")
    pricing = str(values.get("pricing") or "on-demand")
    cost = cost_section(est, str(values["platform"]), pricing, gpu_spec, model=arch, setup=setup,
                        tokens=est.tokens, catalog=catalog)
    explained = cost.pop("explain", [])
    report.data["cost"] = cost
    for key in ("throughput_tokens_per_sec", "estimated_hours", "cost_breakdown"):
        report.data[key] = cost.get(key)
    report.data["platform"], report.data["pricing"] = cost.get("platform"), cost.get("pricing")
    breakdown = cost["cost_breakdown"]
    rows = [("platform / instance", f"{cost.get('platform')} {cost.get('instance')} ({cost.get('pricing')}), "
                                    f"{cost.get('instances')} instance(s), {cost.get('gpus_paid')} GPUs paid"),
            ("price", f"${cost.get('price_usd_per_hour', 0):,.4g}/instance-hour, as of {cost.get('price_as_of')} "
                      f"[{cost.get('price_source')}]"),
            ("wall-clock incl. restarts", format_duration(3600 * cost["estimated_hours"])),
            ("compute cost", format_usd(breakdown["compute_cost"])),
            ("storage cost", format_usd(breakdown["storage_cost"])),
            ("egress cost", format_usd(breakdown["egress_cost"])),
            ("total cost", format_usd(breakdown["total_cost"]))]
    report.tables.insert(1, Table("cost", ["figure", "value"], rows))
    report.warnings.extend(cost.get("warnings", []))
    report.terms.extend(Term(t["name"], t["value"], t["unit"], t["formula"], t.get("inputs", {}), t.get("source", ""))
                        for t in explained)


def per_gpu_terms(step, setup) -> list:
    """Terms for the per-GPU rates the table shows next to tokens/s and MFU."""
    from sizeup.core.explain import Term

    return [
        Term("throughput/tokens_per_s_per_gpu", step.tokens_per_s_per_gpu, "tokens/s", "tokens_per_s / gpus",
             {"tokens_per_s": step.tokens_per_s, "gpus": setup.gpus}, "definition"),
        Term("throughput/model_flops_per_s_per_gpu", step.model_flops_per_s_per_gpu, "FLOP/s",
             "model_flops_per_step / step_time / gpus",
             {"model_flops_per_step": step.model_flops_per_step, "step_time_s": step.step_time_s, "gpus": setup.gpus},
             "MFU numerator (PaLM appendix B)"),
    ]


def build_report(arch, setup, gpu, step, est, mem, style, scenario):
    from sizeup.core.flops import flops_per_step
    from sizeup.core.params import count_params
    from sizeup.report import Report, Table
    from sizeup.units import format_bytes, format_count, format_duration, format_flops, format_pct

    pc = count_params(arch)
    fl = flops_per_step(arch, setup)
    memory = None
    if mem is not None:
        memory = {"per_gpu": dict(mem.per_gpu), "peak_allocated_bytes": mem.peak_allocated_bytes,
                  "peak_reserved_bytes": mem.peak_reserved_bytes, "gpu_memory_bytes": mem.gpu_memory_bytes,
                  "headroom_bytes": mem.headroom_bytes, "fits": mem.fits, "reasons": list(mem.reasons)}
    data = {
        "model": arch.id, "gpu": gpu.id, "gpus": setup.gpus, "kernel": style,
        "setup": {"tp": setup.tp, "pp": setup.pp, "cp": setup.cp, "ep": setup.ep, "dp": setup.dp,
                  "micro_batch": setup.micro_batch, "grad_accum": setup.grad_accum, "global_batch": setup.global_batch,
                  "seq_len": setup.seq_len, "tokens_per_step": setup.tokens_per_step,
                  "precision": setup.precision.value, "optimizer": setup.optimizer.value,
                  "sharding": setup.sharding.value, "recompute": setup.recompute.value, "peft": setup.peft.value,
                  "attention": setup.attention.value, "sequence_parallel": setup.sequence_parallel},
        "params": {"total": pc.total, "active": pc.active},
        "memory": memory,
        "flops_per_step": fl.model_flops,
        "flops": {"model_per_step": fl.model_flops, "model_causal_per_step": fl.model_flops_causal,
                  "hardware_per_step": fl.hardware_flops, "executed_per_step": fl.executed_flops,
                  "model_per_token": fl.model_flops_per_token, "six_nd_per_step": fl.six_nd,
                  "six_nd_vs_model": fl.six_nd / fl.model_flops - 1.0, "narayanan_eq3_per_step": fl.narayanan,
                  "forward_per_token": dict(fl.forward_per_token)},
        "step_time_s": step.step_time_s,
        "tokens_per_s": step.tokens_per_s,
        "tokens_per_s_per_gpu": step.tokens_per_s_per_gpu,
        "samples_per_s": step.samples_per_s,
        "model_flops_per_s_per_gpu": step.model_flops_per_s_per_gpu,
        "mfu": step.mfu, "mfu_causal": step.mfu_causal, "hfu": step.hfu,
        "peak_flops_per_s": step.peak_flops_per_s, "compute_dtype": step.compute_dtype,
        "bound": step.bound, "bound_margin": step.bound_margin, "compute_memory_ratio": step.compute_memory_ratio,
        "bound_parts_s": dict(step.parts),
        "breakdown_s": dict(step.breakdown),
        "steps": est.steps if est else None,
        "tokens": est.tokens if est else None,
        "total_time_s": est.total_time_s if est else None,
        "gpu_hours": est.gpu_hours if est else None,
        "six_nd": {"flops": 6.0 * pc.active * est.tokens if est else None,
                   "model_flops": fl.model_flops * est.steps if est else None},
        "platform": scenario.get("platform"), "pricing": scenario.get("pricing"),
        # an infeasible plan is a result: fits false + reasons (None when no memory estimate was made)
        "fits": mem.fits if mem is not None else None,
        "reasons": list(mem.reasons) if mem is not None else [],
    }
    rows = [
        ("params", format_count(pc.total) + ("" if pc.active == pc.total else f" ({format_count(pc.active)} active)")),
        ("setup", f"{setup.gpus}x {gpu.id}: tp={setup.tp} pp={setup.pp} cp={setup.cp} dp={setup.dp} ep={setup.ep}, "
                  f"{setup.sharding.value}, {setup.precision.value}, recompute {setup.recompute.value}, {style} kernels"),
        ("batch", f"micro {setup.micro_batch} x dp {setup.dp} x accum {setup.grad_accum} = {setup.global_batch} seq x "
                  f"{setup.seq_len} = {format_count(setup.tokens_per_step)} tokens/step"),
        ("model FLOPs / step", f"{format_flops(fl.model_flops)}  (6ND would say {format_flops(fl.six_nd)}: "
                               f"{abs(100 * (fl.six_nd / fl.model_flops - 1)):.1f}% "
                               f"{'less' if fl.six_nd < fl.model_flops else 'more'}; with causal attention "
                               f"{format_flops(fl.model_flops_causal)})"),
        ("step time", format_duration(step.step_time_s)),
        ("tokens/s", f"{step.tokens_per_s:,.0f} total, {step.tokens_per_s_per_gpu:,.0f} per GPU"),
        ("MFU / HFU", f"{format_pct(step.mfu)} / {format_pct(step.hfu)}  ({step.model_flops_per_s_per_gpu / 1e12:,.0f} "
                      f"model TFLOP/s per GPU of {step.peak_flops_per_s / 1e12:,.0f} {step.compute_dtype} peak)"),
        ("bound", f"{step.bound} ({step.bound_margin:,.1f}x the next); compute/memory time = {step.compute_memory_ratio:,.1f}"),
    ]
    if memory:
        rows.append(("memory per GPU", f"{format_bytes(mem.peak_reserved_bytes)} of {format_bytes(mem.gpu_memory_bytes)} "
                                        f"-> {'fits' if mem.fits else 'DOES NOT FIT'}"))
    if est:
        rows += [("tokens", format_count(est.tokens)), ("steps", f"{est.steps:,}"),
                 ("wall-clock", format_duration(est.total_time_s)), ("GPU-hours", f"{est.gpu_hours:,.1f}")]
    bd_rows = [(k, v, f"{100 * v / step.step_time_s:.1f}%") for k, v in step.breakdown.items() if v > 0]
    notes = list(scenario.notes)
    notes.append("MFU counts attention over the full s^2 (PaLM appendix B, llm-foundry, NeMo); mfu_causal halves it "
                 "(Megatron-LM); 6ND ignores attention and counts embeddings")
    warnings = []
    bubble = step.breakdown.get("pipeline_bubble", 0.0) / step.step_time_s
    if bubble > 0.15:
        notes.append(f"pipeline bubble is {100 * bubble:.0f}% of the step ((p-1)/(m*v) with m = {setup.grad_accum} "
                     f"micro-batches per pipeline): more micro-batches or interleaving (training.virtual_pp) shrink it")
    comm = sum(v for k, v in step.breakdown.items() if k.startswith("comm/")) / step.step_time_s
    if comm > 0.2:
        notes.append(f"exposed communication is {100 * comm:.0f}% of the step; see comm/* in the breakdown")
    from sizeup.core.timing import PEAK_DTYPE

    if PEAK_DTYPE[setup.precision] != step.compute_dtype:
        warnings.append(f"{gpu.id} has no {PEAK_DTYPE[setup.precision]} tensor-core path in the catalog; "
                        f"GEMMs are timed at its {step.compute_dtype} peak")
    if mem is not None and not mem.fits:
        warnings.append("does not fit in GPU memory: " + "; ".join(mem.reasons[:2]))
    if arch.max_seq_len and setup.seq_len > arch.max_seq_len:
        warnings.append(f"seq {setup.seq_len} is longer than {arch.id}'s context of {arch.max_seq_len} tokens "
                        "(needs RoPE scaling / long-context training)")
    report = Report(data=data, tables=[Table(f"{arch.name} training estimate", ["figure", "value"], rows),
                                        Table("step time breakdown (s)", ["part", "seconds", "share"], bd_rows)],
                    terms=list(pc.terms) + list(est.terms if est else step.terms) + per_gpu_terms(step, setup)
                    + (list(mem.terms) if mem is not None else []),
                    notes=notes, warnings=warnings)
    return report
