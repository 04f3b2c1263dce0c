"""`sizeup train`: FLOPs, step time, throughput, MFU/HFU, what bounds the step, wall-clock and GPU-hours."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from sizeup.commands.common import CsvOpt, ExplainOpt, JsonOpt, MarkdownOpt, ModelArg, ModelOpt, emit, job_command
from sizeup.commands.common import CalibrationOpt, NoCalibrationOpt
from sizeup.commands.common import PlotOpt
from sizeup.errors import SizeupError

@job_command("train")
def train_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    calibration: CalibrationOpt = None,
    no_calibration: NoCalibrationOpt = False,
    plot: PlotOpt = None,
    flags: dict = None,
) -> None:
    """Training time: FLOPs per step, step time (roofline + communication + bubble), tokens/s, MFU, bound, GPU-hours.

    A job that does not fit in GPU memory gets fits: false, the reasons and the cheapest fixes, and no time or
    price. Every job flag is accepted (see the Job panels below); what was not given is stated with its default.

    Examples:

      sizeup train llama-2-7b --gpu h100-sxm --gpus 8 --tokens 10B --global-batch 256 --seq 4096

      sizeup train llama-2-70b --gpu h100 --gpus 64 --tp 8 --zero 1 --tokens 2T --global-batch 512 --json

      sizeup train examples/seed003-70b-h100.yaml --explain

      sizeup train examples/seed004.yaml --gpu a10 --framework hf-trainer --platform lambda
    """
    from sizeup.job import build_job, collect_values
    from sizeup.pipeline import evaluate, knobs_for

    from sizeup.calib import use_from_flags

    use_from_flags(calibration, no_calibration)
    values, scenario = collect_values(target, model, flags or {})
    job = build_job(values)
    if job.pricing.platform and job.workload is None:
        raise SizeupError("pricing a run needs its size: give --tokens, or --samples with --tokens-per-sample")
    ev = evaluate(job, knobs_for(job, scenario.timing))
    report = train_report(ev, scenario)
    from sizeup.calib.report import decorate_memory, decorate_train  # P10/P50/P90 next to each figure

    if ev.step is not None:
        decorate_train(report, ev.intervals)
    elif ev.memory is not None:
        decorate_memory(report, ev.intervals)
    emit(report, json_, csv_, markdown, explain, plot=plot)


def job_section(job) -> dict:
    """The job as JSON: the values that rebuild it, the framework profile and the defaults chosen."""
    return {"values": job.to_values(), "framework": job.execution.framework,
            "timing_kernel": job.execution.timing_kernel, "memory_kernel": job.execution.memory_kernel,
            "defaults": dict(job.defaults), "command": job.command("train")}


def defaults_note(job) -> str | None:
    shown = [f"{k.replace('_', '-')} {how}" for k, how in job.defaults if k not in ("framework",)]
    if not shown:
        return None
    return "defaults used: " + "; ".join(shown)


def train_report(ev, scenario):
    """The report of one evaluated job: the estimate, or fits: false with the reasons and fixes."""
    job = ev.job
    if ev.fits is False:
        from sizeup.commands.memory import memory_report

        report = memory_report(job.model, job.setup, ev.memory, ev.fixes, job.gpu, job.execution.memory_kernel)
        mem = ev.memory
        report.data.update({"fits": False, "feasible": False, "reasons": ev.reasons, "job": job_section(job),
                            "memory": {"per_gpu": dict(mem.per_gpu), "peak_allocated_bytes": mem.peak_allocated_bytes,
                                       "peak_reserved_bytes": mem.peak_reserved_bytes,
                                       "gpu_memory_bytes": mem.gpu_memory_bytes, "headroom_bytes": mem.headroom_bytes,
                                       "fits": mem.fits, "reasons": list(mem.reasons)},
                            "step_time_s": None, "tokens_per_s": None, "total_time_s": None, "gpu_hours": None,
                            "cost": None})
        report.notes.insert(0, "does not fit in GPU memory: no time or price is estimated; see the fixes")
        if job.model.max_seq_len and job.batch.seq_len > job.model.max_seq_len:
            report.warnings.append(f"seq {job.batch.seq_len} is longer than {job.model.id}'s context of "
                                   f"{job.model.max_seq_len} tokens (needs RoPE scaling / long-context training)")
        note = defaults_note(job)
        if note:
            report.notes.append(note)
        report.notes.extend(job.notes)
        return report
    report = build_report(job.model, job.setup, job.gpu, ev.step, ev.train, ev.memory, job.execution.timing_kernel,
                          scenario)
    report.data["job"] = job_section(job)
    report.data["framework"] = job.execution.framework
    note = defaults_note(job)
    if note:
        report.notes.append(note)
    report.notes.extend(job.notes)
    if ev.cost is not None:
        add_cost(report, ev.cost)
    report.data["feasible"] = ev.feasible
    if not ev.feasible:
        report.data["reasons"] = ev.reasons
    return report


def add_cost(report, cost: dict) -> None:
    """Price the run (seed 004 field names next to sizeup's own); an infeasible run (spot that cannot make
    progress) shows why and no price."""
    from sizeup.core.explain import Term
    from sizeup.report import Num, Table
    from sizeup.units import format_duration, format_usd

    cost = dict(cost)
    explained = cost.pop("explain", [])
    report.data["cost"] = cost
    for key in ("throughput_tokens_per_sec", "estimated_hours", "cost_breakdown"):
        report.data[key] = cost.get(key)
    report.data["platform"], report.data["pricing"] = cost.get("platform"), cost.get("pricing")
    if cost.get("feasible") is False:
        report.data["cost"] = {k: cost.get(k) for k in ("platform", "instance", "pricing", "feasible", "reasons",
                                                         "expected_interruptions")}
        report.data["feasible"] = False
        report.data["reasons"] = list(cost.get("reasons") or [])
        report.data["estimated_hours"] = None
        report.data["cost_breakdown"] = None
        report.tables.insert(1, Table("cost", ["figure", "value"], [
            ("platform / instance", f"{cost.get('platform')} {cost.get('instance')} ({cost.get('pricing')})"),
            ("feasible", "NO: " + "; ".join(cost.get("reasons") or []))]))
        report.warnings.extend(cost.get("reasons") or [])
        return
    breakdown = cost["cost_breakdown"]
    rows = [("platform / instance", f"{cost.get('platform')} {cost.get('instance')} ({cost.get('pricing')}), "
                                    f"{cost.get('instances')} instance(s), {cost.get('gpus_paid')} GPUs paid"),
            ("price", f"${cost.get('price_usd_per_hour', 0):,.4g}/instance-hour, as of {cost.get('price_as_of')} "
                      f"[{cost.get('price_source')}]"),
            ("wall-clock incl. restarts", format_duration(3600 * cost["estimated_hours"])),
            ("compute cost", format_usd(breakdown["compute_cost"])),
            ("storage cost", Num(None, reason=cost.get("storage_cost_unknown_reason") or "")
             if breakdown["storage_cost"] is None else format_usd(breakdown["storage_cost"])),
            ("egress cost", format_usd(breakdown["egress_cost"])),
            ("total cost", format_usd(breakdown["total_cost"]))]
    report.tables.insert(1, Table("cost", ["figure", "value"], rows, name="cost"))
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
    # typed cells: the display text is unchanged, the raw number (unit in the CSV header) is behind it
    from sizeup.report import Num

    rows = [
        ("params", Num.shown(pc.total, format_count(pc.total)
                             + ("" if pc.active == pc.total else f" ({format_count(pc.active)} active)"))),
        ("setup", f"{setup.gpus}x {gpu.id}: tp={setup.tp} pp={setup.pp} cp={setup.cp} dp={setup.dp} ep={setup.ep}, "
                  f"{setup.sharding.value}, {setup.precision.value}, recompute {setup.recompute.value}, {style} kernels"),
        ("batch", f"micro {setup.micro_batch} x dp {setup.dp} x accum {setup.grad_accum} = {setup.global_batch} seq x "
                  f"{setup.seq_len} = {format_count(setup.tokens_per_step)} tokens/step"),
        ("model FLOPs / step", Num.shown(fl.model_flops,
                                         f"{format_flops(fl.model_flops)}  (6ND would say {format_flops(fl.six_nd)}: "
                                         f"{abs(100 * (fl.six_nd / fl.model_flops - 1)):.1f}% "
                                         f"{'less' if fl.six_nd < fl.model_flops else 'more'}; with causal attention "
                                         f"{format_flops(fl.model_flops_causal)})", "FLOP")),
        ("step time", Num.shown(step.step_time_s, format_duration(step.step_time_s), "s")),
        ("tokens/s", Num.shown(step.tokens_per_s, f"{step.tokens_per_s:,.0f} total, {step.tokens_per_s_per_gpu:,.0f} "
                               "per GPU", "tokens/s")),
        ("MFU / HFU", f"{format_pct(step.mfu)} / {format_pct(step.hfu)}  ({step.model_flops_per_s_per_gpu / 1e12:,.0f} "
                      f"model TFLOP/s per GPU of {step.peak_flops_per_s / 1e12:,.0f} {step.compute_dtype} peak)"),
        ("bound", f"{step.bound} ({step.bound_margin:,.1f}x the next); compute/memory time = {step.compute_memory_ratio:,.1f}"),
    ]
    if memory:
        rows.append(("memory per GPU", Num.shown(mem.peak_reserved_bytes / 2**30,
                                                 f"{format_bytes(mem.peak_reserved_bytes)} of "
                                                 f"{format_bytes(mem.gpu_memory_bytes)} -> "
                                                 f"{'fits' if mem.fits else 'DOES NOT FIT'}", "GiB")))
    if est:
        rows += [("tokens", Num.shown(est.tokens, format_count(est.tokens))),
                 ("steps", Num.shown(est.steps, f"{est.steps:,}")),
                 ("wall-clock", Num.shown(est.total_time_s, format_duration(est.total_time_s), "s")),
                 ("GPU-hours", Num.shown(est.gpu_hours, f"{est.gpu_hours:,.1f}", "h"))]
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
    report = Report(data=data, tables=[Table(f"{arch.name} training estimate", ["figure", "value"], rows, name="estimate"),
                                        Table("step time breakdown (s)", ["part", "seconds", "share"], bd_rows, name="breakdown")],
                    terms=list(pc.terms) + list(est.terms if est else step.terms) + per_gpu_terms(step, setup)
                    + (list(mem.terms) if mem is not None else []),
                    notes=notes, warnings=warnings)
    return report
