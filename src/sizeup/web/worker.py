"""One worker process: runs `sizeup.cli.main(argv)` for each job it is sent, capturing stdout/stderr, the
emitted Report (tables, explained terms, notes) and the chart as SVG."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from typing import Any


def run_job(command: str, argv: list[str], config_text: str | None, want_chart: bool, tmpdir: str) -> dict[str, Any]:
    from sizeup.cli import main
    from sizeup.commands import common
    from sizeup.report import charts

    config_path = None
    if config_text is not None:
        # a content-addressed file in the worker's private folder; the id is the file name stem
        digest = hashlib.sha256(config_text.encode("utf-8")).hexdigest()[:12]
        config_path = os.path.join(tmpdir, f"pasted-{digest}.json")
        if not os.path.exists(config_path):
            with open(config_path, "w", encoding="utf-8") as fh:
                fh.write(config_text)
        argv = [config_path if a == "@config" else a for a in argv]
    out, err = io.StringIO(), io.StringIO()
    sink: list = []
    common.REPORT_SINK = sink
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    finally:
        common.REPORT_SINK = None
    result: dict[str, Any] = {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue().strip()}
    if config_path:
        result["stdout"] = result["stdout"].replace(config_path, "pasted-config.json")
        result["stderr"] = result["stderr"].replace(config_path, "pasted-config.json")
    if rc == 0 and sink:
        report = sink[-1]
        result["tables"] = [{"title": t.title, "columns": [str(c) for c in t.columns],
                             "rows": [[_cell(v) for v in row] for row in t.rows], "note": t.note} for t in report.tables]
        result["terms"] = [_term(t) for t in report.terms]
        result["notes"] = list(report.notes)
        result["warnings"] = list(report.warnings)
        if want_chart and command in charts.KINDS:
            try:
                data = json.loads(result["stdout"])
                result["svg"] = charts.to_svg(data)  # told from the JSON: a train that does not fit is a memory answer
            except Exception as exc:  # nothing to draw (e.g. no feasible row): say why instead of a chart
                result["chart_error"] = " ".join(str(exc).split())
    return result


def _cell(value: Any) -> str:
    from sizeup.report import _cell as cell

    return cell(value)


def _term(t) -> dict:
    from sizeup.report import _cell as cell

    return {"name": t.name, "value": cell(t.value), "unit": t.unit, "formula": t.formula,
            "inputs": ", ".join(f"{k}={cell(v)}" for k, v in t.inputs.items()), "source": t.source or ""}


def serve(conn) -> None:
    """Worker loop: receive (command, argv, config_text, want_chart), send back the result dict."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import sizeup.cli  # noqa: F401 - warm the imports before the first job
    from sizeup.report import charts  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="sizeup-web-") as tmpdir:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            try:
                result = run_job(*msg, tmpdir=tmpdir)
            except BaseException as exc:  # noqa: BLE001 - the worker must answer every job
                result = {"rc": 1, "stdout": "", "stderr": f"error: internal error ({type(exc).__name__}: {exc})"}
            try:
                conn.send(result)
            except (BrokenPipeError, OSError):
                return
