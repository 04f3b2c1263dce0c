"""Shared CLI option types, parsers and the output path used by every command.

Every command declares its options with these aliases, so names, help and parsing are the
same everywhere (README "CLI conventions").
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional, TypeVar

import typer

from sizeup.errors import SizeupError, choice_error

# --------------------------------------------------------------------------- options

ModelArg = Annotated[
    Optional[str],
    typer.Argument(help="Model preset id (e.g. llama-2-7b), a Hugging Face config.json path, or a scenario .yaml file.",
                   show_default=False),
]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Same as the first argument.", show_default=False)]
GpuOpt = Annotated[Optional[str], typer.Option("--gpu", help="GPU kind from the catalog (e.g. h100-sxm, a100-80gb, t4) or a memory size like 24GiB.")]
GpusOpt = Annotated[Optional[int], typer.Option("--gpus", help="Number of GPUs.")]
TokensOpt = Annotated[Optional[str], typer.Option("--tokens", help="Training tokens, with suffixes: 15M, 2B, 1.5T.")]
SamplesOpt = Annotated[Optional[str], typer.Option("--samples", help="Training samples (sequences), e.g. 10000 or 10K.")]
TokensPerSampleOpt = Annotated[Optional[str], typer.Option("--tokens-per-sample", help="Average tokens per sample.")]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs", help="Passes over the samples.")]
SeqOpt = Annotated[Optional[int], typer.Option("--seq", help="Sequence length in tokens (default 2048, or the model's context if shorter).")]
MicroBatchOpt = Annotated[Optional[int], typer.Option("--micro-batch", help="Sequences per GPU per forward/backward (default 1).")]
GlobalBatchOpt = Annotated[Optional[int], typer.Option("--global-batch", help="Sequences per optimizer step (sets gradient accumulation).")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help="fp32 | tf32 | fp16-mixed | bf16-mixed | bf16 | fp8 (default bf16-mixed; fp16-mixed on GPUs without bf16).")]
OptimizerOpt = Annotated[Optional[str], typer.Option("--optimizer", help="adamw | adam8bit | adafactor | sgd | lion (default adamw).")]
ZeroOpt = Annotated[Optional[str], typer.Option("--zero", help="Sharding: 0|none (DDP), 1, 2, 3, fsdp-full, fsdp-grad-op, fsdp-hybrid, megatron-distopt.")]
TpOpt = Annotated[Optional[int], typer.Option("--tp", help="Tensor-parallel degree.")]
PpOpt = Annotated[Optional[int], typer.Option("--pp", help="Pipeline-parallel degree.")]
CpOpt = Annotated[Optional[int], typer.Option("--cp", help="Context-parallel degree.")]
EpOpt = Annotated[Optional[int], typer.Option("--ep", help="Expert-parallel degree (MoE).")]
RecomputeOpt = Annotated[Optional[str], typer.Option("--recompute", help="none | selective (Megatron: attention core) | full | op-sac (torchtitan op-level SAC) | attention-only | layer-fraction (activation checkpointing).")]
PeftOpt = Annotated[Optional[str], typer.Option("--peft", help="none | lora | qlora (yes = lora, no = none).")]
LoraRankOpt = Annotated[Optional[int], typer.Option("--lora-rank", help="LoRA rank r (default 16).")]
PlatformOpt = Annotated[Optional[str], typer.Option("--platform", help="Cloud platform id (aws, gcp, azure, lambda, runpod, modal, coreweave, vast).")]
PricingOpt = Annotated[Optional[str], typer.Option("--pricing", help="on-demand | spot | reserved.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print the main table as tidy CSV (units in the header, plain numbers); --table NAME picks another table, --csv-dir DIR (or --csv DIR/) writes one file per table. Tables: --wide shows every column.")]
MarkdownOpt = Annotated[bool, typer.Option("--markdown", help="Print Markdown tables.")]
ExplainOpt = Annotated[bool, typer.Option("--explain", help="Show each figure's formula, inputs and sources.")]
CalibrationOpt = Annotated[Optional[str], typer.Option(
    "--calibration", help="Calibration profile: a name made by 'sizeup calibrate --name', a profile .yaml, 'default' "
                          "(packaged) or 'off' (default: $SIZEUP_CALIBRATION, else the packaged one).")]
NoCalibrationOpt = Annotated[bool, typer.Option(
    "--no-calibration", help="Physical knob values only, no fitted calibration (= --calibration off).")]
PlotOpt = Annotated[Optional[str], typer.Option("--plot", help="Also draw the answer as a chart into FILE (.svg or .png).",
                                                metavar="FILE")]


# --------------------------------------------------------------------------- parsing

# the one alias table lives with the job description (re-exported for the commands that parse lists of choices)
from sizeup.job.choices import (  # noqa: E402,F401
    OFFLOAD_ALIASES, OPTIMIZER_ALIASES, PEFT_ALIASES, PRECISION_ALIASES, RECOMPUTE_ALIASES, ZERO_ALIASES,
)

E = TypeVar("E", bound=Enum)


def parse_choice(kind: str, value: str | None, enum: type[E], aliases: dict[str, str] | None = None) -> E | None:
    """Case-insensitive enum parse with aliases; a bad value is one clear line with the allowed ones."""
    if value is None:
        return None
    key = str(value).strip().lower().replace("_", "-")
    key = (aliases or {}).get(key, key)
    try:
        return enum(key)
    except ValueError:
        raise choice_error(kind, value, [e.value for e in enum]) from None


def positive(name: str, value: int | float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise SizeupError(f"--{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def output_format(json_: bool, csv_: bool, markdown: bool) -> str:
    chosen = [name for name, on in (("json", json_), ("csv", csv_), ("markdown", markdown)) if on]
    if len(chosen) > 1:
        raise SizeupError("choose one of --json, --csv, --markdown")
    return chosen[0] if chosen else "table"


# Set by the web server's worker (sizeup.web.worker) to receive each Report a command emits (tables, terms).
REPORT_SINK: list | None = None


def emit(report, json_: bool = False, csv_: bool = False, markdown: bool = False, explain: bool = False,
         plot: str | None = None, kind: str | None = None) -> None:
    """Print the report; with `plot`, also draw its chart (sizeup.report.charts) into that .svg/.png file."""
    from sizeup.report import csv_others_note, render

    fmt = output_format(json_, csv_, markdown)
    chart = None
    if plot:
        from sizeup.report import charts

        # a bad file name or an answer with nothing to draw is refused before anything is printed
        charts.check_path(plot)
        chart = charts.build(report.data, kind)
    typer.echo(render(report, fmt, explain), nl=False)
    if fmt == "csv" and csv_others_note(report):
        typer.echo(csv_others_note(report), err=True)
    if REPORT_SINK is not None:
        REPORT_SINK.append(report)
    if chart is not None:
        charts.save(chart, plot)


def is_scenario(target: str | None) -> bool:
    return bool(target) and str(target).lower().endswith((".yaml", ".yml"))


def pick_target(target: str | None, model: str | None) -> str | None:
    if target and model and target != model:
        raise SizeupError(f"two models given ({target!r} and --model {model!r}); give one")
    return target or model


# --------------------------------------------------------------------------- job commands

PRICING_FLAGS = ("platform", "pricing", "price_per_gpu_hour", "billing_increment_s", "min_billing_s",
                 "preemption_rate", "restart_s", "checkpoints_kept", "retain", "catalog", "max_price_age_days")


def _job_annotation(f, hidden: bool = False):
    """The typer option of one job flag; `hidden` keeps a flag the command refuses out of its --help."""
    from sizeup.job.flags import JobFlag  # noqa: F401

    kind = {"text": str, "count": str, "int": int, "float": float, "bool": bool, "list": list[str]}[f.kind]
    decls = (f"{f.flag}/--no-{f.flag[2:]}",) if f.kind == "bool" else (f.flag,)
    return Annotated[Optional[kind], typer.Option(*decls, help=f.help, show_default=False,
                                                  rich_help_panel=f"Job: {f.section}", hidden=hidden)]


def job_command(name: str, *, refuse: dict[str, str] | None = None):
    """Register a command that takes a job: every job flag of sizeup.job.flags becomes an option of it (the ones the
    function declares itself keep their own declaration). The function receives the other job flags as
    `flags: dict` (None = not given). A flag in `refuse` that is given on the command line is one line, exit 2,
    saying why it cannot matter for this command."""
    import functools
    import inspect

    from sizeup.cli import app
    from sizeup.job.flags import JOB_FLAGS

    refuse = refuse or {}

    def deco(func):
        sig = inspect.signature(func, eval_str=True)
        own = set(sig.parameters)
        params = [p for p in sig.parameters.values() if p.name != "flags"]
        extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=_job_annotation(f, hidden=f.name in refuse))
                 for f in JOB_FLAGS if f.name not in own]
        names = [p.name for p in extra]

        @functools.wraps(func)
        def wrapper(**kwargs):
            flags = {n: kwargs.pop(n, None) for n in names}
            for key, value in flags.items():
                if value is not None and value != [] and key in refuse:
                    flag = "--" + key.replace("_", "-")
                    raise SizeupError(f"{flag} does not apply to 'sizeup {name}': {refuse[key]}")
            flags = {k: (None if v == [] else v) for k, v in flags.items()}
            return func(**kwargs, flags=flags)

        wrapper.__signature__ = sig.replace(parameters=params + extra)
        wrapper.__annotations__ = {p.name: p.annotation for p in params + extra}  # evaluated, for get_type_hints
        del wrapper.__wrapped__
        return app.command(name)(wrapper)

    return deco


def refuse_all(names, why: str) -> dict[str, str]:
    return {n: why for n in names}


def refusals_except(declared, why: str) -> dict[str, str]:
    """Every job flag a command does not declare itself, refused with the same reason."""
    from sizeup.job.flags import JOB_FLAG_NAMES

    return {n: why for n in JOB_FLAG_NAMES if n not in declared}


def from_scenario(name: str | None, given: dict, whole_lists: tuple[str, ...] = ()) -> tuple[str | None, dict]:
    """(model, values): when `name` is a scenario .yaml, its model and its values (flags in `given` win); else
    (name, given). Lets every command that takes a model take a scenario file too. A key in `whole_lists` that the
    file gives as a list (gpu, platform, ...) keeps the whole list instead of its first item."""
    if not is_scenario(name):
        return name, dict(given)
    from sizeup.scenario import load_scenario

    sc = load_scenario(name)
    whole = {k: v for k, v in sc.lists.items() if k in whole_lists}
    values = {**sc.other, **sc.values, **whole, **{k: v for k, v in given.items() if v is not None}}
    if not values.get("model"):
        raise SizeupError(f"scenario {name!r} names no model")
    return str(values["model"]), values
