"""`sizeup memory`: training memory per GPU, the fit check and what would make it fit.

`build_setup(...)` turns the shared CLI flags into a TrainSetup (aliases, defaults, validation) and is
public so that `sizeup train` / `sizeup search` build setups exactly the same way.
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
    "--attention", help="flash (default: no s x s scores stored) | math (eager attention keeps s x s scores).")]
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

LORA_TARGET_SETS = {
    "all": ("q", "k", "v", "o", "gate", "up", "down"),
    "all-linear": ("q", "k", "v", "o", "gate", "up", "down"),
    "attn": ("q", "k", "v", "o"), "attention": ("q", "k", "v", "o"),
    "mlp": ("gate", "up", "down"),
}
LORA_TARGET_ALIASES = {
    "q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "out_proj": "o", "output_proj": "o",
    "gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up", "w2": "down",
    "c_attn": "qkv", "c_proj": "o", "c_fc": "up", "fc1": "up", "fc2": "down",
}

DEFAULT_SEQ = 2048


def parse_lora_targets(text: str | None, model=None) -> tuple[str, ...] | None:
    """'q,v' / 'all' / 'q_proj,v_proj' -> canonical target names; unknown -> SizeupError."""
    from sizeup.core.memory import LORA_TARGETS
    from sizeup.errors import did_you_mean

    if text is None:
        return None
    key = text.strip().lower()
    if key in LORA_TARGET_SETS:
        targets = LORA_TARGET_SETS[key]
        if model is not None and not model.mlp_kind.gated:
            targets = tuple(t for t in targets if t != "gate")
        return targets
    out: list[str] = []
    for raw in key.split(","):
        name = raw.strip()
        if not name:
            continue
        name = LORA_TARGET_ALIASES.get(name, name)
        names = ("q", "k", "v") if name == "qkv" else (name,)
        for n in names:
            if n not in LORA_TARGETS:
                raise SizeupError(f"unknown LoRA target {raw.strip()!r}.{did_you_mean(raw.strip(), LORA_TARGETS)} "
                                  f"Allowed: {', '.join(LORA_TARGETS)}, or all, attn, mlp")
            if n not in out:
                out.append(n)
    if not out:
        raise SizeupError("--lora-targets is empty; give e.g. q,v or all")
    return tuple(out)


def default_precision(gpu) -> str:
    """bf16-mixed, or fp16-mixed on GPUs without bf16 (V100, T4)."""
    if gpu is None or getattr(gpu, "vendor", "") == "generic" or gpu.supports_bf16:
        return "bf16-mixed"
    return "fp16-mixed"


def resolve_gpu_or_memory(text: str | None):
    """(GpuSpec | None, memory bytes | None) from --gpu: a catalog GPU or a size like 24GiB / 16GB."""
    if text is None:
        return None, None
    from sizeup.units import UnitError, parse_bytes

    try:
        mem = parse_bytes(text)
    except (UnitError, ValueError):
        mem = None
    from sizeup.catalog import load_catalog

    catalog = load_catalog()
    if mem is not None:
        if mem <= 0:
            raise SizeupError(f"--gpu memory must be > 0, got {text!r}")
        if hasattr(catalog, "gpu_or_memory"):
            try:
                gpu = catalog.gpu_or_memory(text)
                return gpu, float(gpu.memory_bytes)
            except SizeupError:
                pass
        return None, float(mem)
    if not hasattr(catalog, "gpu"):
        raise SizeupError(f"--gpu {text!r}: the GPU catalog is not available; give a memory size like 24GiB")
    gpu = catalog.gpu(text)
    return gpu, float(gpu.memory_bytes)


def build_setup(
    model,
    gpu=None,
    gpus: int | None = None,
    seq: int | None = None,
    micro_batch: int | None = None,
    global_batch: int | None = None,
    precision: str | None = None,
    optimizer: str | None = None,
    zero: str | None = None,
    tp: int | None = None,
    pp: int | None = None,
    cp: int | None = None,
    ep: int | None = None,
    recompute: str | None = None,
    peft: str | None = None,
    lora_rank: int | None = None,
    lora_targets: str | tuple[str, ...] | None = None,
    offload_optimizer: str | None = None,
    offload_params: str | None = None,
    offload_activations: bool = False,
    attention: str | None = None,
    sequence_parallel: bool = False,
    foreach: bool = False,
    dropout: float | None = None,
    pp_schedule: str | None = None,
    virtual_pp: int | None = None,
    grad_accum: int | None = None,
    gpus_per_node: int | None = None,
    check: bool = True,
    optimizer_in_backward: bool = False,
):
    """A TrainSetup from CLI-style values (None = default). Raises SizeupError (exit 2) on bad input.

    Defaults: full training, bf16-mixed (fp16-mixed on GPUs without bf16), adamw (fused step), micro-batch 1,
    seq 2048 or the model's max_seq_len if shorter, 1 GPU, no sharding, no recompute, flash attention.
    `global_batch` sets gradient accumulation = global_batch / (micro_batch * dp).
    `optimizer` may name a bitsandbytes paged optimizer ("paged-adamw", "paged-adamw8bit"): the same states,
    with `paged_optimizer=True` (evicted to host memory when the GPU runs out).
    """
    from sizeup.core.memory import check_setup
    from sizeup.core.types import (
        Attention, Offload, Optimizer, Peft, PipelineSchedule, Precision, Recompute, Sharding, TrainSetup,
    )

    for name, value in (("gpus", gpus), ("seq", seq), ("micro-batch", micro_batch), ("global-batch", global_batch),
                        ("tp", tp), ("pp", pp), ("cp", cp), ("ep", ep), ("lora-rank", lora_rank),
                        ("virtual-pp", virtual_pp), ("grad-accum", grad_accum), ("gpus-per-node", gpus_per_node)):
        positive(name, value)
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise SizeupError(f"--dropout must be in [0, 1), got {dropout}")

    prec_text = precision
    if prec_text is not None:
        key = str(prec_text).strip().lower().replace("_", "-")
        key = PRECISION_ALIASES.get(key, key)
        if key == "mixed":
            key = default_precision(gpu)
        prec = parse_choice("precision", key, Precision)
    else:
        prec = Precision(default_precision(gpu))
    if gpu is not None and getattr(gpu, "vendor", "") != "generic" and prec in (Precision.BF16_MIXED, Precision.BF16) \
            and not gpu.supports_bf16:
        raise SizeupError(f"{gpu.name} has no bf16 support; use --precision fp16-mixed (or fp32)")
    if gpu is not None and prec == Precision.FP8 and getattr(gpu, "vendor", "") != "generic" and gpu.peak("fp8") <= 0:
        raise SizeupError(f"{gpu.name} has no fp8 tensor cores; use --precision bf16-mixed or fp16-mixed")
    paged = False
    optimizer_text = optimizer
    if optimizer is not None:
        key = str(optimizer).strip().lower().replace("_", "-")
        if key.startswith("paged"):  # PagedAdamW, PagedAdamW8bit, paged_adamw_8bit, paged-lion ...
            paged = True
            key = key[len("paged"):].lstrip("-") or "adamw"
            optimizer = {"adamw-8bit": "adam8bit", "adamw-32bit": "adamw", "adam-8bit": "adam8bit"}.get(key, key)
    try:
        opt = parse_choice("optimizer", optimizer, Optimizer, OPTIMIZER_ALIASES) or Optimizer.ADAMW
    except SizeupError:
        if not paged:
            raise
        raise SizeupError(f"unknown paged optimizer {optimizer_text!r}; paged variants exist for: "
                          "paged-adamw, paged-adamw8bit, paged-lion") from None
    shard = parse_choice("sharding (--zero)", zero, Sharding, ZERO_ALIASES) or Sharding.NONE
    rec = parse_choice("recompute", recompute, Recompute, RECOMPUTE_ALIASES) or Recompute.NONE
    pft = parse_choice("peft", peft, Peft, PEFT_ALIASES) or Peft.NONE
    off_o = parse_choice("offload", offload_optimizer, Offload, OFFLOAD_ALIASES) or Offload.NONE
    off_p = parse_choice("offload", offload_params, Offload, OFFLOAD_ALIASES) or Offload.NONE
    attn = parse_choice("attention", attention, Attention, {"sdpa": "flash", "eager": "math", "fa2": "flash"}) \
        or Attention.FLASH
    sched = parse_choice("pipeline schedule", pp_schedule, PipelineSchedule, {"1f1b": "1f1b"})
    if isinstance(lora_targets, str) or lora_targets is None:
        targets = parse_lora_targets(lora_targets, model)
    else:
        targets = tuple(lora_targets)
    if targets is None:
        targets = ("q", "k", "v", "o")
    if lora_targets is not None and pft == Peft.NONE:
        pft = Peft.LORA
    if lora_rank is not None and pft == Peft.NONE:
        pft = Peft.LORA

    seq_len = seq if seq is not None else min(DEFAULT_SEQ, model.max_seq_len or DEFAULT_SEQ)
    n_gpus = gpus or 1
    t, p, c, e = tp or 1, pp or 1, cp or 1, ep or 1
    if (off_o != Offload.NONE) and shard == Sharding.NONE:
        shard = Sharding.ZERO2 if off_p == Offload.NONE else Sharding.ZERO3
    if off_p != Offload.NONE and shard == Sharding.NONE:
        shard = Sharding.ZERO3
    mb = micro_batch or 1
    dp = max(1, n_gpus // (t * p * c))
    ga = grad_accum or 1
    if global_batch is not None:
        if global_batch % (mb * dp):
            raise SizeupError(f"--global-batch ({global_batch}) must be a multiple of micro-batch x data-parallel "
                              f"ranks ({mb} x {dp} = {mb * dp})")
        ga = global_batch // (mb * dp)
    if virtual_pp and virtual_pp > 1 and sched is None:
        sched = PipelineSchedule.INTERLEAVED
    node = gpus_per_node or (getattr(gpu, "node_size", None) or 8)
    setup = TrainSetup(
        gpus=n_gpus, tp=t, pp=p, cp=c, ep=e, micro_batch=mb, grad_accum=ga, seq_len=seq_len, precision=prec,
        optimizer=opt, fused_optimizer=not foreach, sharding=shard, sequence_parallel=bool(sequence_parallel),
        pp_schedule=sched or PipelineSchedule.ONE_F_ONE_B, virtual_pp=virtual_pp or 1, recompute=rec,
        attention=attn, offload_optimizer=off_o, offload_params=off_p, offload_activations=bool(offload_activations),
        peft=pft, lora_rank=lora_rank or 16, lora_targets=targets, dropout=dropout or 0.0, gpus_per_node=int(node),
        optimizer_in_backward=bool(optimizer_in_backward), paged_optimizer=paged,
    )
    if check:
        problems = check_setup(model, setup)
        if problems:
            raise SizeupError("; ".join(problems))
    return setup


# the brief also names it this way
setup_from_options = build_setup


def _gib(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 2**30:,.2f} GiB"


def memory_report(model, setup, est, suggestions, gpu, kernel: str) -> Any:
    """The Report for `sizeup memory` (also usable by other commands)."""
    from sizeup.report import Report, Table

    total = est.peak_allocated_bytes
    rows = []
    for key, value in est.per_gpu.items():
        if value > 0:
            rows.append((key, _gib(value), f"{100 * value / total:.1f}%" if total else "-"))
    rows.append(("= peak allocated (torch max_memory_allocated)", _gib(total), "100.0%"))
    for key, value in est.overhead_bytes.items():
        if value > 0:
            rows.append((f"+ {key.replace('_', ' ')}", _gib(value), ""))
    rows.append(("= peak reserved (nvidia-smi)", _gib(est.peak_reserved_bytes), ""))
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
        Table(f"{model.name}: training memory per GPU", ["component", "bytes", "share"], rows,
              note=f"kernel profile: {kernel}; model states {_gib(est.model_state_bytes)}, "
                   f"activations {_gib(est.activation_bytes)}"),
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
    if setup.peft.value != "none":
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

    decorate_memory(report, est, setup, kern)
    report.data["job"] = {"values": job.to_values(), "framework": job.execution.framework,
                          "defaults": dict(job.defaults), "command": job.command("memory")}
    shown = [f"{k.replace('_', '-')} {how}" for k, how in job.defaults
             if k not in ("framework", "global_batch", "gpus")]
    if shown:
        report.notes.append("defaults used: " + "; ".join(shown))
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
    emit(report, json_, csv_, markdown, explain)


def _overheads(fragmentation: float | None):
    from dataclasses import replace

    from sizeup.catalog.overheads import load_overheads

    ov = load_overheads()
    if fragmentation is not None:
        if not 0.0 <= fragmentation <= 1.0:
            raise SizeupError(f"--fragmentation must be in [0, 1], got {fragmentation}")
        ov = replace(ov, fragmentation_fraction=float(fragmentation))
    return ov
