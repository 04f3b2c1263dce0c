"""`sizeup memory`: training memory per GPU, the fit check and what would make it fit.

The flags become a job through the one job parser (sizeup.job.build_job); `memory_report` renders a memory
estimate (also used by `sizeup train` for a job that does not fit).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from sizeup.commands.common import (
    OFFLOAD_ALIASES, OPTIMIZER_ALIASES, PEFT_ALIASES, PRECISION_ALIASES, RECOMPUTE_ALIASES, ZERO_ALIASES,
    CpOpt, CsvOpt, EpOpt, ExplainOpt, GlobalBatchOpt, GpuOpt, GpusOpt, JsonOpt, LoraRankOpt, MarkdownOpt,
    MicroBatchOpt, ModelArg, ModelOpt, OptimizerOpt, PeftOpt, PpOpt, PrecisionOpt, RecomputeOpt, SeqOpt,
    TpOpt, ZeroOpt, emit, parse_choice, pick_target, positive, PRICING_FLAGS, job_command, refuse_all,
)
from sizeup.commands.common import CalibrationOpt, NoCalibrationOpt
from sizeup.commands.common import PlotOpt
from sizeup.errors import SizeupError

OffloadOptimizerOpt = Annotated[Optional[str], typer.Option(
    "--offload-optimizer", help="none | cpu | nvme: keep optimizer states (and fp32 master) off the GPU (ZeRO-Offload).")]
OffloadParamsOpt = Annotated[Optional[str], typer.Option(
    "--offload-params", help="none | cpu | nvme: keep sharded parameters off the GPU (needs --zero 3).")]
LoraTargetsOpt = Annotated[Optional[str], typer.Option(
    "--lora-targets", help="Comma list of q,k,v,o,gate,up,down, or 'all' / 'attn' / 'mlp' (default q,k,v,o).")]
KernelOpt = Annotated[Optional[str], typer.Option(
    "--kernel", help="fused (Megatron/TE/flash fused kernels, default) | hf-eager (Hugging Face transformers eager modules + SDPA).")]
AttentionOpt = Annotated[Optional[str], typer.Option(
    "--attention", help="flash (default: no s x s scores stored) | cudnn (cuDNN fused attention, torch SDPA's default on Hopper/Blackwell from torch 2.11; no s x s scores, faster kernels) | math (eager attention keeps s x s scores).")]
FragmentationOpt = Annotated[Optional[float], typer.Option(
    "--fragmentation", help="Caching-allocator fragmentation fraction added to allocated bytes (default from overheads.yaml).")]
SequenceParallelOpt = Annotated[bool, typer.Option(
    "--sequence-parallel", help="Megatron sequence parallelism (splits norm/dropout activations over --tp).")]
OffloadActivationsOpt = Annotated[bool, typer.Option(
    "--offload-activations", help="Move saved activations to host memory (torchtune activation offloading).")]
ForeachOpt = Annotated[bool, typer.Option(
    "--foreach", help="Non-fused (foreach) optimizer step: +1 x params of temporaries (torch default when fused is off).")]
DropoutOpt = Annotated[Optional[float], typer.Option("--dropout", help="Dropout probability (adds 1-byte masks; default 0).")]
LossOpt = Annotated[Optional[str], typer.Option(
    "--loss", help="Loss-head implementation: full (HF: fp32 logits), vocab-parallel (Megatron fused CE), "
                   "chunked (torchtune chunked CE), fused-linear (Liger / cut-cross-entropy). Default per --kernel.")]
OptimizerInBackwardOpt = Annotated[bool, typer.Option(
    "--optimizer-in-backward", help="Fuse the optimizer step into backward (torchtune optimizer_in_bwd): each gradient is "
                                    "applied and freed at once; needs grad-accum 1, pp 1, one GPU or FSDP.")]
MaxGpusOpt = Annotated[Optional[int], typer.Option("--max-gpus", help="Largest GPU count a suggestion may use (default 1024).")]

def _gib(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 2**30:,.2f} GiB"


def memory_report(model, setup, est, suggestions, gpu, kernel: str) -> Any:
    """The Report for `sizeup memory` (also usable by other commands)."""
    from sizeup.report import Report, Table

    from sizeup.report import Col, Num

    total = est.peak_allocated_bytes
    gib = lambda b: Num(b / 2**30, "{:.2f} GiB")  # noqa: E731 - typed cell: raw GiB behind the display
    share = lambda b: Num(100 * b / total, "{:.1f}%") if total else "-"  # noqa: E731
    rows = []
    for key, value in est.per_gpu.items():
        if value > 0:
            rows.append((key, gib(value), share(value)))
    rows.append(("= peak allocated (torch max_memory_allocated)", gib(total), share(total)))
    for key, value in est.overhead_bytes.items():
        if value > 0:
            rows.append((f"+ {key.replace('_', ' ')}", gib(value), ""))
    rows.append(("= peak reserved (nvidia-smi)", gib(est.peak_reserved_bytes), ""))
    fit_rows = [
        ("GPU", gpu.name if gpu is not None else ("memory given" if est.gpu_memory_bytes else "none given")),
        ("GPU memory", _gib(est.gpu_memory_bytes)),
        ("peak reserved", _gib(est.peak_reserved_bytes)),
        ("headroom", _gib(est.headroom_bytes)),
        ("fits", {True: "yes", False: "NO", None: "- (give --gpu)"}[est.fits]),
        ("peak phase", est.peak_phase + (f", {est.worst_stage} pipeline stage" if setup.pp > 1 else "")),
        ("host (CPU) memory", _gib(est.host_bytes)),
    ]
    tables = [
        Table(f"{model.name}: training memory per GPU", ["component", Col("memory", "GiB"), Col("share", "%")], rows,
              note=f"kernel profile: {kernel}; model states {_gib(est.model_state_bytes)}, "
                   f"activations {_gib(est.activation_bytes)}", name="memory"),
        Table("fit", ["", ""], fit_rows),
    ]
    sugg_data = []
    if suggestions:
        srows = []
        for s in suggestions:
            srows.append((s.change, _gib(s.peak_reserved_bytes), "yes" if s.fits else "no", s.gpus, s.cost))
            sugg_data.append({"change": s.change, "peak_reserved_bytes": s.peak_reserved_bytes,
                              "peak_allocated_bytes": s.peak_allocated_bytes, "fits": s.fits, "gpus": s.gpus,
                              "cost": s.cost, "setup": _setup_dict(s.setup)})
        tables.append(Table("what would make it fit (cheapest first)",
                            ["change", "peak reserved", "fits", "GPUs", "cost"], srows))
    data = {
        "model": model.id,
        "kernel": kernel,
        "setup": _setup_dict(setup),
        "per_gpu": dict(est.per_gpu),
        "peak_allocated_bytes": est.peak_allocated_bytes,
        "peak_reserved_bytes": est.peak_reserved_bytes,
        "overhead_bytes": dict(est.overhead_bytes),
        "gpu": gpu.id if gpu is not None else None,
        "gpu_memory_bytes": est.gpu_memory_bytes,
        "headroom_bytes": est.headroom_bytes,
        "fits": est.fits,
        "reasons": list(est.reasons),
        "host_bytes": est.host_bytes,
        "nvme_bytes": est.nvme_bytes,
        "model_state_bytes": est.model_state_bytes,
        "activation_bytes": est.activation_bytes,
        "peak_phase": est.peak_phase,
        "worst_stage": est.worst_stage,
        "suggestions": sugg_data,
    }
    notes = []
    if kernel == "hf-eager":
        notes.append("hf-eager: tensors saved by Hugging Face transformers eager modules with SDPA (unfused norms, "
                     "activations, fp32 loss head)")
    if setup.peft.value == "adapter":
        notes.append(f"adapter: base frozen; {setup.trainable_params:,.0f} trained parameters")
    elif setup.peft.value != "none":
        notes.append(f"{setup.peft.value}: base frozen; adapters r={setup.lora_rank} on {','.join(setup.lora_targets)}")
    if setup.optimizer_in_backward:
        notes.append("optimizer step in backward: each gradient is applied and freed as soon as it is accumulated; "
                     "only the largest parameter's gradient is live (no full gradient buffer, no separate step)")
    if setup.paged_optimizer:
        paged_out = any(t.name == "memory/paged_optimizer" for t in est.terms)
        notes.append("paged optimizer: states live in CUDA unified memory; "
                     + ("they do not fit next to the rest, so they are paged out to host memory (slower step)"
                        if paged_out else "they fit on the GPU"))
    return Report(data=data, tables=tables, terms=list(est.terms), notes=notes, warnings=list(est.reasons))


def _setup_dict(setup) -> dict:
    from dataclasses import asdict

    d = asdict(setup)
    d["dp"] = setup.dp
    return d


@job_command("memory", refuse=refuse_all(PRICING_FLAGS, "memory per GPU does not depend on the price; "
                                                         "'sizeup train --platform' prices a run"))
def memory_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    max_gpus: MaxGpusOpt = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    calibration: CalibrationOpt = None,
    no_calibration: NoCalibrationOpt = False,
    plot: PlotOpt = None,
    flags: dict = None,
) -> None:
    """Training memory per GPU: weights, gradients, optimizer, activations, buffers; does it fit?

    Defaults: full training, bf16-mixed (fp16-mixed on GPUs without bf16), AdamW (fused step),
    micro-batch 1, seq 2048 or the model's max_seq_len if shorter, 1 GPU, the least sharding that fits,
    no recompute, the framework's kernels (--framework; generic = fused kernels + flash attention).
    --gpu also takes a bare size like 24GiB. When it does not fit, lists the cheapest changes that would.

    Examples:

      sizeup memory llama-2-7b --gpu t4

      sizeup memory llama-2-7b --gpu t4 --peft qlora --seq 512

      sizeup memory llama-3-8b --gpu h100-sxm --gpus 8 --zero 3 --micro-batch 4 --recompute full

      sizeup memory gpt2 --gpu 24GiB --kernel hf-eager --micro-batch 8 --seq 1024 --json

      sizeup memory llama-3.1-8b --gpu rtx-4090 --micro-batch 2 --precision bf16 --recompute full --optimizer paged-adamw8bit --optimizer-in-backward
    """
    from sizeup.core.memory import estimate_memory, suggest_fixes
    from sizeup.job import build_job, collect_values
    from sizeup.pipeline import fit_sharding, overheads_for

    from sizeup.calib import use_from_flags

    use_from_flags(calibration, no_calibration)
    values, _ = collect_values(target, model, flags or {})
    for key in ("tokens", "samples", "epochs"):
        if key not in (flags or {}) or (flags or {}).get(key) is None:
            values.pop(key, None)  # a scenario's workload does not change memory per GPU
    positive("max-gpus", max_gpus)
    job = build_job(values, need_gpu=False, allow_memory_gpu=True)
    ov = overheads_for(job)
    job, est = fit_sharding(job, ov)
    setup, arch, kern = job.setup, job.model, job.execution.memory_kernel
    suggestions = []
    if est.fits is False:
        suggestions = suggest_fixes(arch, setup, est.gpu_memory_bytes, ov, max_gpus=max_gpus or 1024, kernel=kern,
                                    loss=job.execution.loss)
    report = memory_report(arch, setup, est, suggestions, job.gpu, kern)
    from sizeup.calib.report import decorate_memory  # P10/P50/P90 of peak reserved
    from sizeup.pipeline import Evaluation

    decorate_memory(report, Evaluation(job, est).intervals)
    report.data["job"] = {"values": job.to_values(), "framework": job.execution.framework,
                          "defaults": dict(job.defaults), "command": job.command("memory")}
    shown = [f"{k.replace('_', '-')} {how}" for k, how in job.defaults
             if k not in ("framework", "global_batch", "gpus")]
    if shown:
        report.notes.append("defaults used: " + "; ".join(shown))
    report.notes.extend(job.notes)
    if arch.max_seq_len and setup.seq_len > arch.max_seq_len:
        report.warnings.append(f"seq {setup.seq_len} is longer than {arch.id}'s context of {arch.max_seq_len} tokens "
                               "(needs RoPE scaling / long-context training)")
    if explain:  # each suggestion's peak reserved, recomputed by the same model with its setup (same number)
        from dataclasses import replace

        for sg in suggestions:
            alt = estimate_memory(arch, sg.setup, gpu=job.gpu, gpu_memory_bytes=est.gpu_memory_bytes, overheads=ov,
                                  kernel=kern, loss=job.execution.loss)
            report.terms.extend(replace(t, name=f"fix '{sg.change}': {t.name}") for t in alt.terms
                                if t.name in ("memory/peak_allocated", "memory/peak_reserved"))
    emit(report, json_, csv_, markdown, explain, plot=plot)


def _overheads(fragmentation: float | None):
    from dataclasses import replace

    from sizeup.catalog.overheads import load_overheads

    ov = load_overheads()
    if fragmentation is not None:
        if not 0.0 <= fragmentation <= 1.0:
            raise SizeupError(f"--fragmentation must be in [0, 1], got {fragmentation}")
        ov = replace(ov, fragmentation_fraction=float(fragmentation))
    return ov
