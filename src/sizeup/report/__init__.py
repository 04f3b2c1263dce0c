"""One serializer for every command: a `Report` renders as a table (rich), JSON, CSV or Markdown.

Commands build a Report (JSON payload + human tables + explained terms + notes) and call
`render(report, fmt)`; nothing else in sizeup prints results.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from sizeup.core.explain import Term


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: list[Sequence[Any]]
    note: str = ""


@dataclass
class Report:
    """What a command returns: `data` is exactly what --json prints."""

    data: dict
    tables: list[Table] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf never reach output (they become null), tuples become lists, enums strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return clean(value.item())
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):  # StrEnum
        return value.value
    return value


def to_json(report: Report, explain: bool = False) -> str:
    data = dict(report.data)
    if explain and report.terms:
        data["explain"] = [t.to_dict() for t in report.terms]
    if report.warnings:
        data.setdefault("warnings", list(report.warnings))
    return json.dumps(clean(data), indent=2)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:,.4g}"
    return str(value)


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for i, table in enumerate(report.tables):
        if i:
            buf.write("\n")
        writer.writerow(list(table.columns))
        for row in table.rows:
            writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def to_markdown(report: Report, explain: bool = False) -> str:
    out = []
    for table in report.tables:
        if table.title:
            out.append(f"### {table.title}\n")
        out.append("| " + " | ".join(table.columns) + " |")
        out.append("|" + "|".join("---" for _ in table.columns) + "|")
        for row in table.rows:
            out.append("| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |")
        if table.note:
            out.append(f"\n{table.note}")
        out.append("")
    for note in report.notes:
        out.append(f"- {note}")
    for warning in report.warnings:
        out.append(f"- **warning:** {warning}")
    if explain:
        out.append("\n### How each figure was computed\n")
        out.extend(f"- **{t.name}** = {_cell(t.value)} {t.unit}: `{t.formula}` with {_inputs(t)}"
                   + (f" [{t.source}]" if t.source else "") for t in report.terms)
    return "\n".join(out).rstrip() + "\n"


def _inputs(term: Term) -> str:
    return ", ".join(f"{k}={_cell(v)}" for k, v in term.inputs.items()) or "no inputs"


def explain_text(terms: Sequence[Term]) -> str:
    lines = ["How each figure was computed:"]
    for t in terms:
        lines.append(f"  {t.name} = {_cell(t.value)} {t.unit}")
        lines.append(f"      formula: {t.formula}")
        if t.inputs:
            lines.append(f"      inputs:  {_inputs(t)}")
        if t.source:
            lines.append(f"      source:  {t.source}")
    return "\n".join(lines)


def render(report: Report, fmt: str = "table", explain: bool = False) -> str:
    """fmt: table | json | csv | markdown."""
    if fmt == "json":
        return to_json(report, explain)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "markdown":
        return to_markdown(report, explain)
    return to_text(report, explain)


def to_text(report: Report, explain: bool = False) -> str:
    import shutil

    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    # the terminal's width when there is one (COLUMNS or the tty), else wide enough for the widest tables
    width = max(120, shutil.get_terminal_size(fallback=(200, 40)).columns)
    console = Console(file=io.StringIO(), record=True, width=width, force_terminal=False, color_system=None)
    # plain text everywhere: "[positions]" in a formula or a note is text, not rich markup
    for table in report.tables:
        rt = RichTable(title=Text(table.title) if table.title else None, title_justify="left", show_lines=False)
        for col in table.columns:
            rt.add_column(Text(str(col)), overflow="fold")
        for row in table.rows:
            rt.add_row(*[Text(_cell(v)) for v in row])
        console.print(rt)
        if table.note:
            console.print(table.note, markup=False, highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    if explain and report.terms:
        console.print(explain_text(report.terms), markup=False, highlight=False)
    return console.export_text().rstrip() + "\n"
