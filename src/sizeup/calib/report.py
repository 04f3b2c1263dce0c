"""Put P10/P50/P90 next to the figures of a `sizeup train` / `sizeup memory` report (JSON and tables).

JSON: report.data["intervals"][figure] = {"p10", "p50", "p90", "interval_regime"} for each figure shown
(step_time_s, tokens_per_s, tokens_per_s_per_gpu, mfu, total_time_s, gpu_hours, peak_reserved_bytes), and
report.data["calibration"] names the profile used. Tables: '7.9 h (6.8–9.4)' (P10–P90).
"""

from __future__ import annotations

from typing import Any, Callable

from sizeup.calib import active_name, is_off, load


def _fmt_range(d: dict, fmt: Callable[[float], str]) -> str:
    return f" ({fmt(d['p10'])}–{fmt(d['p90'])})"


def _append(table, label_prefix: str, d: dict, fmt: Callable[[float], str]) -> None:
    for i, row in enumerate(table.rows):
        if str(row[0]).startswith(label_prefix) and len(row) >= 2:
            table.rows[i] = (row[0], f"{row[1]}{_fmt_range(d, fmt)}", *row[2:])
            return


def calibration_note(report) -> None:
    cal = load()
    report.data["calibration"] = None if cal is None else cal.name
    if cal is None:
        report.notes.append("calibration off: physical knob values only (timing.yaml); intervals of the physics-only "
                            "model")
    elif cal.kind == "user":
        report.notes.append(f"using {cal.describe()}")


def decorate_train(report, iv: dict) -> None:
    """Show the intervals of an evaluation (sizeup.pipeline.intervals_for) in a `sizeup train` report."""
    from sizeup.units import format_bytes, format_duration, format_usd

    cal = load()
    report.data["intervals"] = iv
    _terms(report, iv, cal)
    calibration_note(report)
    if not report.tables:
        return
    t = report.tables[0]
    if "step_time_s" in iv:
        _append(t, "step time", iv["step_time_s"], format_duration)
        _append(t, "tokens/s", iv["tokens_per_s"], lambda x: f"{x:,.0f}")
    if "total_time_s" in iv:
        _append(t, "wall-clock", iv["total_time_s"], format_duration)
        _append(t, "GPU-hours", iv["gpu_hours"], lambda x: f"{x:,.1f}")
    if "peak_reserved_bytes" in iv:
        _append(t, "memory per GPU", iv["peak_reserved_bytes"], format_bytes)
    if "total_cost_usd" in iv:
        for table in report.tables:
            if table.title == "cost":
                _append(table, "total cost", iv["total_cost_usd"], format_usd)
    if not is_off(active_name()):
        report.notes.append("(P10–P90) ranges: leave-one-source-out residuals of this regime (calibration.yaml "
                            "intervals); 80 % of measured runs of the regime fall inside")


def decorate_memory(report, iv: dict) -> None:
    """Show the peak-memory interval of an evaluation in a `sizeup memory` report (or a train report that does not
    fit)."""
    from sizeup.units import format_bytes

    cal = load()
    d = iv.get("peak_reserved_bytes")
    if d is None:
        return
    report.data.setdefault("intervals", {})["peak_reserved_bytes"] = d
    _terms(report, {"peak_reserved_bytes": d}, cal)
    calibration_note(report)
    for t in report.tables:
        if t.title == "fit":
            _append(t, "peak reserved", d, format_bytes)


def decorate_infer(report, iv: dict) -> None:
    """Show the intervals of a serving estimate (sizeup.pipeline.serving_intervals) in a `sizeup infer` report:
    closed-form TTFT / TPOT / latency / tokens/s, the simulated load's p50 figures and $ per 1M tokens."""
    cal = load()
    report.data["intervals"] = iv
    _terms(report, iv, cal)
    calibration_note(report)

    def ms(x: float) -> str:
        return f"{x * 1e3:,.1f} ms" if x < 10 else f"{x:,.2f} s"

    shown = {"closed form": [("TTFT", "ttft_s", ms), ("TPOT", "tpot_s", ms), ("end-to-end latency", "e2e_latency_s",
                                                                              lambda x: f"{x:,.2f} s"),
                             ("output tokens/s (replica)", "output_tokens_per_s", lambda x: f"{x:,.0f}"),
                             ("output tokens/s per GPU", "output_tokens_per_s_per_gpu", lambda x: f"{x:,.0f}")],
             # the load table's p50/p90/p99 columns are the simulated requests' spread; the model's own uncertainty
             # of its p50 figures is in the JSON ('load_*') and --explain, not in those cells
             "cost at the simulated load": [("$ per 1M input", "usd_per_1m_input_tokens", lambda x: f"{x:,.4f}"),
                                            ("$ per 1M output", "usd_per_1m_output_tokens", lambda x: f"{x:,.4f}")]}
    for t in report.tables:
        for head, rows in shown.items():
            if t.title.startswith(head):
                for label, key, fmt in rows:
                    if key in iv:
                        _append(t, label, iv[key], fmt)
    if iv and not is_off(active_name()):
        report.notes.append("(P10–P90) ranges: leave-one-source-out residuals of the dev set's inference rows for "
                            "this GPU count (calibration.yaml intervals, inference_rate / inference_time); 80 % of "
                            "measured serving figures fall inside")
        outside = _range_beyond_central(report.data, iv)
        if outside:
            report.notes.append(outside)


def _range_beyond_central(data: dict, iv: dict) -> str:
    """A note when a time range lies wholly above its central figure: the measured runs of this regime were all
    slower than the model, so the range, not the central physics figure, is the expectation."""
    for key in ("tpot_s", "ttft_s", "e2e_latency_s"):
        d, central = iv.get(key), data.get(key)
        if d and central and d.get("p10", 0.0) > central:
            f10, f90 = d["p10"] / central, d["p90"] / central
            return (f"the ranges lie above the central figures: measured serving times of this regime "
                    f"({d.get('interval_regime', 'inference_time')}) ran {f10:.2f}–{f90:.2f} x sizeup's prediction "
                    "(P10–P90 under leave-one-source-out; docs/methodology.md names the runs behind it), so expect the "
                    "range rather than the central figure")
    return ""


def _terms(report, iv: dict, cal) -> None:
    """--explain: one Term per interval (value, the factors' regime, where they come from)."""
    from sizeup.core.explain import Term

    where = ("calibration off: residuals of the physics-only model on the dev set (calibration.yaml intervals.physical)"
             if cal is None else f"{cal.describe()}: intervals from leave-one-source-out residuals")
    units = {"step_time_s": "s", "total_time_s": "s", "gpu_hours": "GPU-h", "tokens_per_s": "tokens/s",
             "tokens_per_s_per_gpu": "tokens/s", "mfu": "fraction", "peak_reserved_bytes": "B", "total_cost_usd": "USD"}
    units |= {k: "s" for k in iv if k.endswith("_s")} | {k: "USD" for k in iv if k.startswith("usd_")} \
        | {k: "tokens/s" for k in iv if "tokens_per_s" in k}
    for name, d in iv.items():
        formula = ("storage + egress + compute x total_time_q / total_time_p50" if name == "total_cost_usd" else
                   "$ per token / (f90, f50, f10) of the inference_rate regime" if name.startswith("usd_per_1m") else
                   "figure x (f10, f50, f90) of the regime; time = 1 / rate factors")
        report.terms.append(Term(f"interval/{name} (P50)", d["p50"], units.get(name, ""), formula,
                                 {"p10": d["p10"], "p90": d["p90"], "regime": d.get("interval_regime") or "none"}, where))
