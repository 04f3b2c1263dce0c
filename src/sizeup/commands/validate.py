"""`sizeup validate`: predicted vs published measurements, with signed errors and skip reasons."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sizeup.cli import app
from sizeup.commands.common import CsvOpt, JsonOpt, MarkdownOpt, emit, positive
from sizeup.commands.common import PlotOpt

FileArg = Annotated[Optional[str], typer.Argument(
    help="Published-runs YAML (schema of validate/data/published_runs_dev.yaml); default: the packaged development set (published_runs_dev.yaml plus every validate/data file marked default: true, e.g. published_runs_more.yaml).",
    show_default=False)]
CategoryOpt = Annotated[Optional[str], typer.Option(
    "--category", help="Only these categories, comma-separated: A pretraining run, B throughput table, C memory, D inference.")]
SourceOpt = Annotated[Optional[str], typer.Option(
    "--source", help="Only points whose source (repo, title or URL) contains this text, e.g. llm-foundry.")]
QuantityOpt = Annotated[Optional[str], typer.Option(
    "--quantity", help="Only these measured quantities, comma-separated, e.g. mfu,throughput_tokens_per_s_per_gpu.")]
IdOpt = Annotated[Optional[str], typer.Option("--id", help="Only points whose id contains this text; with 20 rows or fewer the definition and assumptions of each row are shown.")]
WorstOpt = Annotated[Optional[int], typer.Option("--worst", help="Show only the N rows with the largest |error|.")]
SkippedOpt = Annotated[bool, typer.Option("--skipped/--no-skipped", help="List skipped measurements with reasons.")]
LosoOpt = Annotated[bool, typer.Option(
    "--loso", help="Leave-one-source-out cross-validation: for each source family, refit the calibration without it "
                   "and predict it; per-family and overall median / p90 |error| and coverage.")]
NoCalibrationOpt = Annotated[bool, typer.Option(
    "--no-calibration", help="Physical knob values only (timing.yaml), no fitted calibration (= SIZEUP_CALIBRATION=off).")]


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    a = abs(x)
    if a >= 1e7 or (0 < a < 1e-2):
        return f"{x:.4g}"
    if a >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{round(x, 1) + 0.0:+.1f}%"


@app.command("validate")
def validate_cmd(
    file: FileArg = None,
    category: CategoryOpt = None,
    source: SourceOpt = None,
    quantity: QuantityOpt = None,
    id_: IdOpt = None,
    worst: WorstOpt = None,
    skipped: SkippedOpt = True,
    loso: LosoOpt = False,
    no_calibration: NoCalibrationOpt = False,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    plot: PlotOpt = None,
) -> None:
    """Compare sizeup's predictions with published training and inference measurements.

    Every point is predicted from its stated model, GPU and parallel layout with the same physics as
    `sizeup train` / `memory` / `infer`, converted to the point's own unit and definition (e.g. an MFU
    that counts attention FLOPs), and reported with its signed error; points that lack what the
    prediction needs are listed as skipped, with the reason.

    Examples:

      sizeup validate

      sizeup validate --category A,B --source llm-foundry --worst 10

      sizeup validate --quantity mfu,hfu --json

      sizeup validate --id nemo2407-h100-fp8-llama2-7b

      sizeup validate my_runs.yaml --markdown

      sizeup validate --loso

      sizeup validate --no-calibration
    """
    from sizeup.report import Report, Table
    from sizeup.validate.runner import run_validation

    positive("worst", worst)
    if loso:
        from sizeup.validate.runner import loso_report

        if category or source or quantity or id_ or worst or no_calibration:
            from sizeup.errors import SizeupError

            raise SizeupError("--loso runs on the whole file; it takes no --category/--source/--quantity/--id/--worst/"
                              "--no-calibration")
        emit(loso_report(file), json_, csv_, markdown)
        return
    from sizeup.calib import use_from_flags

    use_from_flags(None, no_calibration)
    cats = [c for c in (category or "").split(",") if c.strip()]
    bad = [c for c in cats if c.strip().upper() not in ("A", "B", "C", "D")]
    if bad:
        from sizeup.errors import SizeupError

        raise SizeupError(f"unknown category {bad[0]!r}; allowed: A, B, C, D (comma-separated)")
    qs = [q for q in (quantity or "").split(",") if q.strip()]
    result = run_validation(file, categories=cats, source=source, quantities=qs, id_contains=id_)
    rows = result.predicted
    if worst:
        rows = sorted(rows, key=lambda r: abs(r.error_pct), reverse=True)[:worst]
    s = result.summary
    data = {"points": [r.to_dict() for r in (rows + (result.skipped if not worst else []))], "summary": s}
    tables = [Table(
        "predicted vs measured" + (f" (worst {worst})" if worst else ""),
        ["id", "quantity", "unit", "measured", "predicted", "error"],
        [(r.id, r.quantity, r.unit, _fmt(r.measured), _fmt(r.predicted), _pct(r.error_pct)) for r in rows],
    )]
    summary_rows = []
    for label, st in [("overall", s["overall"]), ("throughput + MFU/HFU", s["throughput_and_mfu"]),
                      ("full-config training (A/B)", s["full_training_points"])]:
        summary_rows.append((label, st["n"], st.get("total"), _cov(st), _pct0(st["median_abs_error_pct"]),
                             _pct0(st["p90_abs_error_pct"]), _pct(st["median_signed_error_pct"])))
    for q, st in s["by_quantity"].items():
        summary_rows.append((f"quantity {q}", st["n"], st["total"], _cov(st), _pct0(st["median_abs_error_pct"]),
                             _pct0(st["p90_abs_error_pct"]), _pct(st["median_signed_error_pct"])))
    for src, st in s["by_source"].items():
        summary_rows.append((f"source {src}", st["n"], st["total"], _cov(st), _pct0(st["median_abs_error_pct"]),
                             _pct0(st["p90_abs_error_pct"]), _pct(st["median_signed_error_pct"])))
    if len(rows) <= 20 and rows:
        tables.append(Table("how each prediction was made", ["id", "quantity", "setup", "definition", "assumptions"],
                            [(r.id, r.quantity, r.setup or "-", r.definition, "; ".join(r.assumptions) or "-")
                             for r in rows]))
    if skipped and not worst and result.skipped:
        tables.append(Table("skipped (not predicted)", ["id", "quantity", "reason"],
                            [(r.id, r.quantity, r.skipped) for r in result.skipped]))
    tables.append(Table("summary (|error| = |predicted - measured| / measured)",
                        ["group", "predicted", "total", "coverage", "median |err|", "p90 |err|", "median err"],
                        summary_rows))
    if not result.rows:
        from sizeup.errors import SizeupError

        raise SizeupError("no measurement matches the filters (--category / --source / --quantity / --id); "
                          "run 'sizeup validate' without them to see the quantities and sources")
    notes = [f"{s['points']['predicted']}/{s['points']['total']} points predicted; "
             f"full-configuration training measurements: {s['full_training_points']['n']}/"
             f"{s['full_training_points']['total']} predicted"]
    from sizeup.calib import load as load_calibration

    cal = load_calibration()
    notes.append("calibration: " + (cal.describe() if cal else "off (physical knob values only)")
                 + "; in-sample figures: 'sizeup validate --loso' gives the cross-validated ones")
    for label, key in (("all measurements", "overall"), ("throughput, MFU/HFU, TFLOP/s", "throughput_and_mfu")):
        st = s[key]
        notes.append(f"{label}: median |error| {_pct0(st['median_abs_error_pct'])}, p90 {_pct0(st['p90_abs_error_pct'])}, "
                     f"{st['n']}/{st['total']} predicted")
    emit(Report(data=data, tables=tables, notes=notes), json_, csv_, markdown, plot=plot)


def _cov(st: dict) -> str:
    return "-" if st.get("coverage") is None else f"{100 * st['coverage']:.0f}%"


def _pct0(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}%"
