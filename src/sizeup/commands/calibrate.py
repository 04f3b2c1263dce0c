"""`sizeup calibrate`: fit your cluster's efficiency factors on a measured run, or refit the packaged calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sizeup.commands.common import JsonOpt, MarkdownOpt, ModelOpt, emit, job_command
from sizeup.errors import SizeupError

RunArg = Annotated[Optional[str], typer.Argument(
    help="A training log (Megatron-LM, NeMo, torchtitan, HF Trainer, DeepSpeed, torchtune) or a YAML of a measured "
         "run: {job: {model, gpu, gpus, seq, micro_batch, global_batch, tp, zero, kernel, ...}, measured: "
         "{step_time_s | tokens_per_s | tokens_per_s_per_gpu | samples_per_s, peak_memory_reserved_gib | "
         "peak_memory_allocated_gib} (or measured: {steps: [...]})}.", show_default=False)]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Profile name; later: sizeup train ... --calibration NAME.")]
StoreOpt = Annotated[Optional[str], typer.Option(
    "--store", help="Write the profile here (a .yaml path or a folder) instead of ~/.config/sizeup/calibrations/NAME.yaml.")]
JobOpt = Annotated[Optional[str], typer.Option("--job", help="YAML with the run's job ({job: {...}} in sizeup's flag names).")]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", help="Log format: megatron, nemo, torchtitan, hf-trainer, deepspeed, torchtune (default: detected).")]
HOLDOUT_DEFAULT = 0.5  # fraction of a log's steps held out to show the error before/after calibrating
HoldoutOpt = Annotated[float, typer.Option(
    "--holdout", help="Share of the steps (the last ones) kept out of the fit to show before/after; 0 = fit on all.")]
WarmupOpt = Annotated[Optional[int], typer.Option("--warmup", help="Logged steps to drop at the start (default: the first 10 %).")]
RefitOpt = Annotated[bool, typer.Option(
    "--refit", help="Refit the packaged calibration on the development set (sources weighted equally) and show "
                    "accuracy with calibration off, on and leave-one-source-out.")]
WriteOpt = Annotated[bool, typer.Option("--write", help="With --refit: write catalog/data/calibration.yaml (or --store PATH).")]
DevOpt = Annotated[Optional[str], typer.Option("--dev", help="With --refit: published-runs YAML to fit on (default: the packaged dev set).")]


@job_command("calibrate")
def calibrate_cmd(
    run: RunArg = None,
    model: ModelOpt = None,
    name: NameOpt = None,
    store: StoreOpt = None,
    job: JobOpt = None,
    fmt: FormatOpt = None,
    holdout: HoldoutOpt = HOLDOUT_DEFAULT,
    warmup: WarmupOpt = None,
    refit: RefitOpt = False,
    write: WriteOpt = False,
    dev: DevOpt = None,
    json_: JsonOpt = False,
    markdown: MarkdownOpt = False,
    flags: dict = None,
) -> None:
    """Calibrate sizeup on your cluster from a measured run, or refit the packaged calibration.

    From a log or a measured-run YAML: fits this cluster's compute efficiency (GEMM and attention, from the
    step time / tokens/s) and the allocator's fragmentation (from peak reserved memory), shows the error on the
    held-out last part of the log before and after, and stores the profile (mode 0600). Later estimates use it
    with `--calibration NAME` (narrower intervals).

    Examples:

      sizeup calibrate train.log --job job.yaml --name my-h100s

      sizeup calibrate torchtitan.log --model llama-3-8b --gpu h100-sxm --gpus 8 --framework torchtitan --seq 8192
        --micro-batch 1 --global-batch 8 --recompute full --name h100-pod

      sizeup calibrate measured.yaml --name lab-a100s

      sizeup train llama-3-8b --gpu h100-sxm --gpus 8 --tokens 10B --calibration my-h100s

      sizeup calibrate --refit            (show; add --write to update catalog/data/calibration.yaml)
    """
    from sizeup.report import Report, Table

    if refit:
        if run:
            raise SizeupError("--refit fits on the development set; give no log or YAML with it")
        # the run-calibration options would be ignored by a refit: refuse them rather than drop them silently
        given = [f"--{k.replace('_', '-')}" for k, v in (flags or {}).items() if v is not None]
        given += [f for f, v in (("--model", model), ("--name", name), ("--job", job), ("--format", fmt),
                                 ("--warmup", warmup)) if v is not None]
        if holdout != HOLDOUT_DEFAULT:
            given.append("--holdout")
        if given:
            raise SizeupError(f"--refit refits the packaged calibration on the development set; {', '.join(given)}: "
                              "options for calibrating from a run (sizeup calibrate LOG --name NAME ...)")
        _refit(write, store, dev, json_, markdown)
        return
    if write or dev:
        raise SizeupError("--write and --dev go with --refit")
    if not run:
        raise SizeupError("give a training log or a measured-run YAML (or --refit); see 'sizeup calibrate --help'")
    if not name:
        raise SizeupError("give --name NAME for the profile (later: --calibration NAME)")
    from sizeup.calib import write_profile
    from sizeup.calib.logs import parse_log
    from sizeup.calib.user import build_job, calibrate_run, records_from_yaml

    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    if model:
        flags["model"] = model
    values: dict[str, Any] = {}
    path = Path(run)
    measured_yaml = None
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _read_yaml(path)
        if "measured" not in data:
            raise SizeupError(f"{path}: a measured-run YAML needs 'measured:' (and 'job:' unless --job is given)")
        measured_yaml = data["measured"]
        if not isinstance(measured_yaml, dict):
            raise SizeupError(f"{path}: 'measured' must be a mapping")
        values.update(_job_section(data, path))
    if job:
        values.update(_job_section(_read_yaml(Path(job)), Path(job)))
    values.update({k: v for k, v in flags.items() if v is not None})
    the_job = build_job(values)
    if measured_yaml is not None:
        records = records_from_yaml(measured_yaml)
        source = {"path": str(path), "format": "measured-yaml"}
        if warmup is None:
            warmup = 0
    else:
        parsed = parse_log(path, fmt)
        records = parsed.records
        source = {"path": str(path), "format": parsed.format}
        if not parsed.per_step:
            records, holdout, warmup = records[:1], 0.0, 0  # one whole-run figure: nothing to hold out
    if len(records) < 2:
        holdout = 0.0
    profile, check = calibrate_run(the_job, records, name, source, holdout=holdout, warmup=warmup)
    if check:
        profile["fitted"]["holdout"] = {k: v for k, v in check.items()}
    written = write_profile(profile, name, store)
    rows = [("job", the_job.describe()), ("read", f"{source['format']}: {len(records)} records from {path}"),
            ("fitted on", f"{profile['fitted']['records_used']} records"
             + (f" (last {check['records']} held out)" if check else ""))]
    factors = profile["fitted"]["factors"]
    if "compute_scale" in factors:
        k = profile["knobs"]
        rows.append(("compute scale", f"{factors['compute_scale']:.3f} x packaged -> matmul_training_fraction "
                                      f"{k['matmul_training_fraction']['value']:.3g}, attention_end_to_end_scale "
                                      f"{k['attention_end_to_end_scale']['value']:.3g} (residual "
                                      f"{factors['residual_step_time_pct']:+.1f}% on the fit part)"))
    if "fragmentation_fraction" in factors:
        rows.append(("allocator fragmentation", f"{factors['fragmentation_fraction']:.3f} (packaged physics 0.08)"))
    hold_rows = []
    if check:
        for key, label in (("step_time_s", "step time (s)"), ("peak_memory_bytes", "peak memory (GiB)")):
            c = check.get(key)
            if not c:
                continue
            scale = 2.0**30 if key == "peak_memory_bytes" else 1.0
            hold_rows.append((label + (f" [{c['kind']}]" if c.get("kind") else ""), f"{c['measured'] / scale:.4g}",
                              f"{c['before'] / scale:.4g} ({c['error_before_pct']:+.1f}%)",
                              f"{c['after'] / scale:.4g} ({c['error_after_pct']:+.1f}%)"))
    tables = [Table(f"calibration {name!r}", ["figure", "value"], rows)]
    if hold_rows:
        tables.append(Table("held-out part of the run: measured vs predicted", ["figure", "measured",
                                                                               "before (packaged)", "after (calibrated)"],
                            hold_rows))
    notes = [f"profile written to {written} (mode 0600); use it with --calibration {name}"]
    if not check:
        notes.append("no held-out part: the run gives one figure (or --holdout 0); fitted on all of it")
    if "framework" not in values and "kernel" not in values:
        notes.append(f"framework assumed {the_job.job.execution.framework!r} ({the_job.kernel} kernels); pass "
                     "--framework (megatron, torchtitan, hf-trainer, deepspeed, ...) to match the run")
    emit(Report(data={"profile": profile, "path": str(written)}, tables=tables, notes=notes), json_, False, markdown)


def _read_yaml(path: Path) -> dict:
    from sizeup.catalog import read_user_yaml

    data = read_user_yaml(path, "YAML")
    if not isinstance(data, dict):
        raise SizeupError(f"{path}: expected a mapping")
    return data


def _job_section(data: dict, path: Path) -> dict:
    job = data.get("job", {})
    if not isinstance(job, dict):
        raise SizeupError(f"{path}: 'job' must be a mapping of sizeup flag names (model, gpu, gpus, seq, ...)")
    return {str(k).replace("-", "_"): v for k, v in job.items()}


def _refit(write: bool, store: str | None, dev: str | None, json_: bool, markdown: bool) -> None:
    from sizeup.calib import fit as calfit
    from sizeup.report import Report, Table
    from sizeup.validate.runner import loso_report

    payload = calfit.refit(dev)
    report = loso_report(dev, payload=payload)
    if write:
        path = calfit.write(payload, Path(store) if store else None)
        report.notes.append(f"written: {path}")
    else:
        report.notes.append("not written (add --write to update catalog/data/calibration.yaml)")
    emit(report, json_, False, markdown)
