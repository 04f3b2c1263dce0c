"""`sizeup trace`: exact mode, a traced training step of the real Hugging Face module (needs sizeup[trace])."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sizeup.cli import app  # noqa: F401
from sizeup.commands.common import job_command, refusals_except
from sizeup.commands.common import (
    CsvOpt, ExplainOpt, JsonOpt, MarkdownOpt, MicroBatchOpt, ModelArg, ModelOpt, OptimizerOpt, PrecisionOpt,
    RecomputeOpt, SeqOpt, emit, pick_target, positive,
)
from sizeup.errors import SizeupError, choice_error

LayersOpt = Annotated[Optional[int], typer.Option(
    "--layers", help="Report the model at this depth (default: its own number of layers).")]
FullOpt = Annotated[bool, typer.Option(
    "--full", help="Trace every layer instead of tracing 2 and 3 layers and extrapolating (slower, same result "
                   "for identical layers).")]
OptimizerImplOpt = Annotated[Optional[str], typer.Option(
    "--optimizer-impl", help="fused | foreach | single: the torch.optim implementation (default fused, as the "
                             "Hugging Face Trainer uses with torch >= 2.8).")]
BreakdownOpt = Annotated[bool, typer.Option(
    "--breakdown", help="Also list the tensors the forward keeps for the backward: op, dtype and bytes per layer.")]
DeviceSemanticsOpt = Annotated[Optional[str], typer.Option(
    "--device-semantics", help="cuda (default: allocate like a CUDA GPU) | cpu (plain CPU kernels).")]


def _load_target(name: str):
    """(ModelArch | None, model spec for the tracer): a config.json is traced as is."""
    from sizeup.catalog import resolve_model

    if name.lower().endswith(".json"):
        from sizeup.catalog import parse_json_text, read_user_text

        path = Path(name)
        cfg = parse_json_text(read_user_text(path, "config file"), name)
        if not isinstance(cfg, dict):
            raise SizeupError(f"{name}: expected a JSON object (a Hugging Face config.json)")
        cfg.setdefault("_name_or_path", path.parent.name if path.name == "config.json" else path.stem)
        try:
            arch = resolve_model(name)
        except (SizeupError, ImportError):
            arch = None
        return arch, cfg
    arch = resolve_model(name)
    from sizeup.core.types import ArchKind

    if arch.arch_kind != ArchKind.DECODER:
        raise SizeupError(f"exact mode traces causal-LM training steps; {arch.id} is {arch.arch_kind.value} "
                          "(use sizeup memory / train for its analytic estimate)")
    return arch, arch


class _Progress:
    """Progress on stderr: a rich spinner on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.status = None

    def __call__(self, message: str) -> None:
        if self.console.is_terminal:
            if self.status is None:
                self.status = self.console.status(message)
                self.status.start()
            else:
                self.status.update(message)
        else:
            print(f"sizeup trace: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


# exact mode traces the Hugging Face model as it is: adapters would need the peft package, which is not a dependency
TRACE_PEFT = {n: "exact mode traces full training of the Hugging Face model (LoRA adapters need the peft package, "
                 "which sizeup does not install); 'sizeup memory --peft lora|qlora' models adapters analytically"
              for n in ("peft", "lora_rank", "lora_targets", "lora_impl")}


@job_command("trace", refuse={**refusals_except(['target', 'model', 'micro_batch', 'seq', 'precision', 'optimizer', 'recompute', 'layers', 'full', 'optimizer_impl', 'device_semantics', 'breakdown', 'json_', 'csv_', 'markdown', 'explain'], 'exact mode traces one training step of the HF model; this field does not change that trace'), **TRACE_PEFT})
def trace_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    micro_batch: MicroBatchOpt = None,
    seq: SeqOpt = None,
    precision: PrecisionOpt = None,
    optimizer: OptimizerOpt = None,
    recompute: RecomputeOpt = None,
    layers: LayersOpt = None,
    full: FullOpt = False,
    optimizer_impl: OptimizerImplOpt = None,
    device_semantics: DeviceSemanticsOpt = None,
    breakdown: BreakdownOpt = False,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    flags: dict = None,
) -> None:
    """Exact mode: run two training steps of the real Hugging Face model on fake tensors and measure
    parameters, FLOPs and peak memory per phase (needs: pip install 'sizeup[trace]').

    Examples:

      sizeup trace llama-2-7b --micro-batch 1 --seq 2048

      sizeup trace gpt2 --micro-batch 8 --seq 1024 --precision bf16 --recompute full

      sizeup trace ./config.json --seq 512 --json

      sizeup trace llama-2-7b --seq 4096 --precision bf16 --breakdown
    """
    from sizeup.trace.tracer import INSTALL_HINT, OPTIMIZER_IMPLS, PRECISIONS, trace_available

    from sizeup.commands.common import from_scenario

    name, vals = from_scenario(pick_target(target, model), dict(micro_batch=micro_batch, seq=seq, precision=precision,
                                                                  optimizer=optimizer, recompute=recompute))
    micro_batch, seq, precision, optimizer, recompute = (vals.get(k) for k in ("micro_batch", "seq", "precision",
                                                                               "optimizer", "recompute"))
    if not name:
        raise SizeupError("give a model: a preset id (see 'sizeup models'), a path to config.json or a scenario .yaml")
    positive("micro-batch", micro_batch)
    positive("seq", seq)
    positive("layers", layers)
    prec = (precision or "bf16-mixed").strip().lower()
    if prec not in PRECISIONS:
        raise choice_error("--precision (exact mode)", precision, list(PRECISIONS))
    opt = (optimizer or "adamw").strip().lower()
    rec = (recompute or "none").strip().lower()
    if rec not in ("none", "full"):
        raise choice_error("--recompute (exact mode)", recompute, ["none", "full"])
    impl = (optimizer_impl or "fused").strip().lower()
    if impl not in OPTIMIZER_IMPLS:
        raise choice_error("--optimizer-impl", optimizer_impl, list(OPTIMIZER_IMPLS))
    sem = (device_semantics or "cuda").strip().lower()
    if sem not in ("cuda", "cpu"):
        raise choice_error("--device-semantics", device_semantics, ["cuda", "cpu"])
    arch, spec = _load_target(name)
    if not trace_available():
        raise SizeupError(INSTALL_HINT)

    from sizeup.core.params import count_params
    from sizeup.report import Report, Table
    from sizeup.trace.tracer import _max_positions, trace_training
    from sizeup.units import format_bytes, format_count, format_flops

    if seq is None:
        context = arch.max_seq_len if arch is not None else (_max_positions(spec) or 2048)
        seq = min(2048, context) if context else 2048
    progress = _Progress()
    try:
        res = trace_training(spec, micro_batch=micro_batch or 1, seq_len=seq, precision=prec, optimizer=opt,
                             gradient_checkpointing=rec == "full", layers=layers, cuda_like=sem == "cuda",
                             optimizer_impl=impl, extrapolate=not full, progress=progress)
    finally:
        progress.close()

    tokens = res.tokens_per_step
    analytic = count_params(arch.with_(num_layers=res.num_layers)) if arch is not None else None
    n_active = analytic.active if analytic is not None else res.params
    flops_6nd = 6 * n_active * tokens  # Kaplan et al. 2020 eq. 2.1: C = 6 N D
    rows = [
        ("parameters (traced)", res.params, format_count(res.params)),
    ]
    if analytic is not None:
        rows.append(("parameters (analytic, count_params)", analytic.total,
                     "equal" if analytic.total == res.params else f"differs by {analytic.total - res.params:+,}"))
    rows += [
        ("FLOPs per step (forward + backward)", res.flops_per_step, format_flops(res.flops_per_step)),
        ("  of which attention (s x s)", res.attention_flops_per_step, format_flops(res.attention_flops_per_step)),
        ("FLOPs per step, causal (attention halved)", res.flops_causal_per_step,
         format_flops(res.flops_causal_per_step)),
        ("6ND (N active params, D tokens)", flops_6nd,
         f"{format_flops(flops_6nd)}; traced / 6ND = {res.flops_per_step / flops_6nd:.3f}"),
        (f"peak allocated ({res.peak_phase})", res.peak_bytes, format_bytes(res.peak_bytes)),
    ]
    rows += [(f"  peak in {p}", v, format_bytes(v)) for p, v in res.phase_peak_bytes.items()]
    rows += [
        ("activations (end of forward - start)", res.activation_bytes, format_bytes(res.activation_bytes)),
        ("weights", res.weights_bytes, format_bytes(res.weights_bytes)),
        ("gradients", res.grads_bytes, format_bytes(res.grads_bytes)),
        ("optimizer states", res.optimizer_state_bytes, format_bytes(res.optimizer_state_bytes)),
    ]
    title = (f"exact trace: {res.model_id}, {res.num_layers} layers, micro-batch {res.micro_batch} x seq "
             f"{res.seq_len}, {res.precision}, {res.optimizer} ({res.optimizer_impl}), recompute {rec}")
    note = (f"traced at {', '.join(map(str, res.traced_layers))} layers"
            + (" and extrapolated" if res.extrapolated else "") + f" in {res.trace_s:.1f} s")
    data = res.to_dict()
    data.update({"flops_6nd": flops_6nd, "active_params": n_active, "recompute": rec,
                 "analytic_params": analytic.total if analytic is not None else None})
    tables = [Table(title, ["figure", "value", "human"], rows, note)]
    if breakdown:
        from sizeup.trace.census import activation_breakdown

        progress("listing saved tensors (2-layer trace)")
        parts = activation_breakdown(spec, res.micro_batch, res.seq_len, prec, rec == "full", sem == "cuda")
        progress.close()
        data["activation_breakdown"] = parts
        tables.append(Table(
            "what the forward keeps for the backward (live at the end of the forward)",
            ["scope", "module", "created by", "dtype", "bytes", "B/token"],
            [(p["scope"], p["module"], p["op"], p["dtype"], format_bytes(p["bytes"]),
              round(p["bytes_per_token"], 1) if p["bytes_per_token"] < 100 else int(round(p["bytes_per_token"])))
             for p in parts],
            f"per-layer rows x {res.num_layers} layers + model rows = activations"))
    report = Report(data=data, tables=tables, terms=list(res.terms), notes=list(res.notes))
    emit(report, json_, csv_, markdown, explain)
