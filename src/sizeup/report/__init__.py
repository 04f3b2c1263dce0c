"""One serializer for every command: a `Report` renders as a table (rich), JSON, CSV or Markdown.

Commands build a Report (JSON payload + human tables + explained terms + notes) and call
`render(report, fmt)`; nothing else in sizeup prints results.

Typed tables: a column may be a `Col` (name, unit, priority) and a cell a `Num` (raw number + display format, or
unknown with a reason). Untyped cells such as "5.31 GiB" or "$1,234.50" are read back into number + unit for CSV.
CSV is tidy: one table, one header row, units in the header (`memory_gib`, `cost_usd`), plain numbers in the cells,
`n/a` for unknown. Text tables keep to the terminal width (COLUMNS, the tty, or 100 when piped), dropping the
lowest-priority columns first (`--wide` keeps all) and never splitting a number.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from sizeup.core.explain import Term


@dataclass(frozen=True)
class Col:
    """A typed column: `unit` goes into the CSV header (memory + GiB -> memory_gib); `priority` orders which
    columns stay when the terminal is narrow (0 = always kept, higher = dropped first)."""

    name: str
    unit: str = ""
    priority: int = 1

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Num:
    """A typed cell: the raw number (in the column's unit) and how to show it; value None = unknown (`n/a`),
    with the reason for --explain."""

    value: float | int | None
    fmt: str = "{:,.4g}"
    reason: str = ""
    unit: str = ""
    """The raw value's unit for CSV headers when the column itself has none (figure | value tables)."""

    @staticmethod
    def shown(value: float | int | None, text: str, unit: str = "") -> "Num":
        """A number displayed as ready-made text (e.g. '2.11 d', '791 TFLOP (6ND ...)'), raw `value` in `unit`."""
        return Num(value, text.replace("{", "{{").replace("}", "}}"), unit=unit)

    def display(self) -> str:
        if self.value is None or (isinstance(self.value, float) and not math.isfinite(self.value)):
            return "n/a"
        return self.fmt.format(self.value)

    def raw(self) -> str:
        if self.value is None or (isinstance(self.value, float) and not math.isfinite(self.value)):
            return "n/a"
        if isinstance(self.value, float) and self.value.is_integer() and abs(self.value) < 1e15:
            return str(int(self.value))
        return f"{self.value:.6g}" if isinstance(self.value, float) else str(self.value)

    def __str__(self) -> str:
        return self.display()


@dataclass
class Table:
    title: str
    columns: Sequence[str | Col]
    rows: list[Sequence[Any]]
    note: str = ""
    name: str = ""
    """Short stable name for `--table NAME` and `--csv DIR` file names (default: from the title)."""


@dataclass
class RenderOptions:
    """Set once per CLI call by sizeup.cli.main from --wide / --table / --csv DIR."""

    wide: bool = False
    table: str | None = None
    csv_dir: str | None = None


OPTIONS = RenderOptions()


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
    if report.notes:  # the notes the table prints, after any the answer carries itself (no repeats)
        own = list(data.get("notes") or [])
        data["notes"] = own + [n for n in report.notes if n not in own]
    return json.dumps(clean(data), indent=2)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Num):
        return value.display()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:,.4g}"
    return str(value)


# ----------------------------------------------------------------------------- tidy CSV

_UNIT_NAMES = {"$": "usd", "%": "percent", "B": "bytes", "KiB": "kib", "MiB": "mib", "GiB": "gib", "TiB": "tib",
               "KB": "kb", "MB": "mb", "GB": "gb", "TB": "tb", "PB": "pb", "s": "s", "ms": "ms", "us": "us",
               "min": "min", "h": "h", "d": "days", "days": "days", "W": "w", "kW": "kw", "kWh": "kwh",
               "TFLOP/s": "tflops", "PFLOP/s": "pflops", "GB/s": "gb_per_s", "TB/s": "tb_per_s",
               "tok/s": "tokens_per_s", "tokens/s": "tokens_per_s", "$/h": "usd_per_hour", "x": "x",
               "kg": "kg", "t": "tonnes", "kgCO2e": "kg_co2e", "tCO2e": "t_co2e", "ms/token": "ms_per_token",
               "FLOP": "flop", "params": "params", "tokens": "tokens", "steps": "steps"}
_COUNT_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12, "P": 1e15}
_NUM_RE = __import__("re").compile(
    r"^(?P<dollar>\$)?(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"(?:(?P<suffix>[KMBTP])\b)?(?:\s?(?P<unit>%|[A-Za-z$/][A-Za-z0-9$/]*(?:/[A-Za-z]+)?))?$")


def _parse_cell(text: str) -> tuple[float, str] | None:
    """'5.31 GiB' -> (5.31, 'GiB'); '$1,234.50' -> (1234.5, '$'); '7.0B' -> (7e9, ''); '45%' -> (45, '%')."""
    m = _NUM_RE.match(text.strip())
    if not m:
        return None
    value = float(m.group("num").replace(",", ""))
    if m.group("suffix"):
        value *= _COUNT_SUFFIX[m.group("suffix")]
    unit = "$" if m.group("dollar") else (m.group("unit") or "")
    if m.group("dollar") and m.group("unit"):
        unit = "$" + m.group("unit") if m.group("unit").startswith("/") else "$"
    if unit and unit not in _UNIT_NAMES:
        return None
    return value, unit


_LONG_UNIT = {"h": ("hours", "hour"), "s": ("seconds", "second"), "days": ("days",), "percent": ("percent", "pct"),
              "tokens": ("tokens",), "params": ("params",), "steps": ("steps",)}


def with_unit(label: str, unit: str) -> str:
    """`label_unit`, unless the label already names the unit (gpu_hours + h, tokens + tokens)."""
    if not unit or label.endswith(unit) or any(label.endswith(w) for w in _LONG_UNIT.get(unit, ())):
        return label
    return f"{label}_{unit}"


def snake(name: str) -> str:
    import re

    # a spaced slash joins two things ('binding / reason'); a bare one is a rate ('req/s')
    text = name.replace(" / ", " and ")
    text = text.replace("%", " percent ").replace("$", " usd ").replace("/", " per ").replace("#", " n ")
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    return text or "value"


def table_name(table: Table, index: int) -> str:
    if table.name:
        return table.name
    title = table.title.rsplit(": ", 1)[-1] if table.title else f"table{index + 1}"
    import re

    title = re.sub(r"\([^)]*\)", "", title)
    words = snake(title).split("_")[:5]
    return "-".join(w for w in words if w) or f"table{index + 1}"


def _raw_number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def tidy(table: Table) -> tuple[list[str], list[list[str]]]:
    """Header + rows for CSV: units into the header, plain numbers in the cells; a column whose cells carry
    different units becomes a number column plus a `<name>_unit` column."""
    cols = list(table.columns)
    header: list[str] = []
    columns_out: list[list[str]] = []
    n = len(table.rows)
    for j, col in enumerate(cols):
        cells = [row[j] if j < len(row) else None for row in table.rows]
        name = snake(str(col))
        if isinstance(col, Col):
            header.append(with_unit(name, _UNIT_NAMES.get(col.unit, snake(col.unit)) if col.unit else ""))
            columns_out.append([c.raw() if isinstance(c, Num) else _plain(c) for c in cells])
            continue
        parsed = []
        for c in cells:
            if isinstance(c, Num):
                parsed.append((c, c.unit))
            elif isinstance(c, (int, float)) and not isinstance(c, bool):
                parsed.append((Num(c), ""))
            elif isinstance(c, str) and c.strip() not in ("", "-", "n/a"):
                parsed.append(_parse_cell(c))
            else:
                parsed.append("blank")
        filled = [p for p in parsed if p != "blank"]
        if filled and all(p is not None for p in filled):
            units = {p[1] for p in filled}
            values = ["n/a" if p == "blank" else (p[0].raw() if isinstance(p[0], Num) else _raw_number(p[0]))
                      for p in parsed]
            if len(units) == 1:
                header.append(with_unit(name, _UNIT_NAMES.get(next(iter(units)), "")))
                columns_out.append(values)
            else:
                header += [name, f"{name}_unit"]
                columns_out.append(values)
                columns_out.append(["" if p == "blank" else _UNIT_NAMES.get(p[1], p[1]) for p in parsed])
            continue
        header.append(name)
        columns_out.append([_plain(c) for c in cells])
    seen: dict[str, int] = {}
    for k, h in enumerate(header):  # unique names for pandas
        if h in seen:
            seen[h] += 1
            header[k] = f"{h}_{seen[h]}"
        else:
            seen[h] = 1
    rows = [[col[i] for col in columns_out] for i in range(n)]
    return header, rows


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Num):
        return value.raw()
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else _raw_number(value)
    return str(value)


def _key_value(table: Table) -> bool:
    """A 'figure | value [| note]' table: text labels in the first column, values of different kinds in the second."""
    if not 2 <= len(table.columns) <= 3 or not table.rows or isinstance(table.columns[1], Col):
        return False
    labels = [str(r[0]) for r in table.rows if r]
    if len(set(labels)) != len(labels) or any(_parse_cell(lbl) for lbl in labels):
        return False
    parsed = [_parse_cell(_cell(r[1])) if not isinstance(r[1], (int, float, Num)) else (0.0, "") for r in table.rows]
    return any(p is None for p in parsed) or len({p[1] for p in parsed if p}) > 1


def _split_range(text: str) -> tuple[tuple[float, str], tuple[float, str], tuple[float, str]] | None:
    """'28.0 ms (25.6 ms–52.5 ms)' -> ((28.0, 'ms'), (25.6, 'ms'), (52.5, 'ms')): a figure with its P10–P90 range,
    when all three parse in one unit (else None: the cell stays text)."""
    import re

    m = re.match(r"^(?P<main>[^()]*?)\s*\((?P<lo>[^()–]*)–(?P<hi>[^()–]*)\)$", text.strip())
    if not m:
        return None
    parts = [_parse_cell(m.group(k)) for k in ("main", "lo", "hi")]
    if any(p is None for p in parts) or len({p[1] for p in parts}) != 1:
        return None
    return parts[0], parts[1], parts[2]


def transpose(table: Table) -> tuple[list[str], list[list[str]]]:
    """One row: a column per figure (its unit in the name), so that every numeric figure loads as a number; a figure
    shown with its P10–P90 range gets `<figure>_p10` and `<figure>_p90` columns beside it."""
    header, row = [], []
    for r in table.rows:
        label, value = snake(str(r[0])), r[1]
        if isinstance(value, Num):
            header.append(with_unit(label, _UNIT_NAMES.get(value.unit, snake(value.unit)) if value.unit else ""))
            row.append(value.raw())
            continue
        rng = _split_range(_cell(value)) if isinstance(value, str) else None
        if rng is not None:
            unit = _UNIT_NAMES.get(rng[0][1], "")
            for suffix, (num, _unit) in zip(("", "_p10", "_p90"), rng):
                header.append(with_unit(label + suffix, unit))
                row.append(_raw_number(num))
            for extra, col in zip(r[2:], table.columns[2:]):
                if str(extra).strip() not in ("", "-"):
                    header.append(f"{label}_{snake(str(col))}")
                    row.append(_plain(extra))
            continue
        p = _parse_cell(_cell(value)) if not isinstance(value, (int, float)) else (float(value), "")
        if p is None:
            header.append(label)
            row.append(_plain(value))
        else:
            header.append(with_unit(label, _UNIT_NAMES.get(p[1], "")))
            row.append(_raw_number(p[0]))
        for extra, col in zip(r[2:], table.columns[2:]):
            if str(extra).strip() not in ("", "-"):
                header.append(f"{label}_{snake(str(col))}")
                row.append(_plain(extra))
    seen: dict[str, int] = {}
    for k, h in enumerate(header):
        seen[h] = seen.get(h, 0) + 1
        if seen[h] > 1:
            header[k] = f"{h}_{seen[h]}"
    return header, [row]


def table_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header, rows = transpose(table) if _key_value(table) else tidy(table)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def pick_table(report: Report, name: str) -> Table:
    from sizeup.errors import SizeupError

    names = [table_name(t, i) for i, t in enumerate(report.tables)]
    if name.isdigit() and 1 <= int(name) <= len(names):
        return report.tables[int(name) - 1]
    if name in names:
        return report.tables[names.index(name)]
    raise SizeupError(f"--table: no table {name!r}; this output has: {', '.join(names) or 'no tables'}")


def to_csv(report: Report, options: RenderOptions | None = None) -> str:
    """One table as CSV: --table NAME, or the first (main) table; with --csv-dir every table to its own file."""
    opts = options or OPTIONS
    if not report.tables:
        return ""
    if opts.csv_dir:
        import os

        os.makedirs(opts.csv_dir, exist_ok=True)
        tables = [pick_table(report, opts.table)] if opts.table else report.tables
        paths = []
        for i, t in enumerate(tables):
            path = os.path.join(opts.csv_dir, f"{table_name(t, report.tables.index(t))}.csv")
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(table_csv(t))
            paths.append(path)
        return "".join(f"wrote {p}\n" for p in paths)
    table = pick_table(report, opts.table) if opts.table else report.tables[0]
    return table_csv(table)


def csv_others_note(report: Report, options: RenderOptions | None = None) -> str:
    """The line (for stderr) naming the tables that plain --csv left out, or ''."""
    opts = options or OPTIONS
    if opts.table or opts.csv_dir or len(report.tables) < 2:
        return ""
    names = [table_name(t, i) for i, t in enumerate(report.tables)]
    return (f"note: CSV of table '{names[0]}'; other tables: {', '.join(names[1:])} "
            "(--table NAME, or --csv-dir DIR for one file per table)")


def to_markdown(report: Report, explain: bool = False) -> str:
    out = []
    for table in report.tables:
        if table.title:
            out.append(f"### {table.title}\n")
        out.append("| " + " | ".join(str(c) for c in table.columns) + " |")
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


def terminal_width() -> int:
    """COLUMNS, else the terminal's width, else 100 (piped output)."""
    import os
    import shutil
    import sys

    env = os.environ.get("COLUMNS", "")
    if env.strip().isdigit() and int(env) > 0:
        return max(40, int(env))
    if sys.stdout.isatty():
        return max(40, shutil.get_terminal_size(fallback=(100, 40)).columns)
    return 100


# Columns kept first when a table is narrowed (what users read first: what, where, whether it fits, cost, time),
# by header name (exact, or the start of the header followed by a space); other columns follow in table order.
KEEP_FIRST = ("#", "scale", "platform", "gpu", "hardware", "gpus", "#gpus", "feasible", "fits", "fits with",
              "total", "cost", "$/month", "$/hour", "days", "wall clock", "hours", "gpu hours", "memory/gpu",
              "peak memory/gpu", "memory needed", "step time", "mfu", "sharding", "tok/s", "tokens/s", "ttft p95", "tpot p95",
              "replicas", "params", "pricing", "tp", "tp/pp/dp/cp/ep")


def _priority(col: Any, j: int) -> int:
    if isinstance(col, Col):
        return col.priority
    if j == 0:
        return 0
    name = str(col).strip().lower()
    for k, key in enumerate(KEEP_FIRST):
        if name == key or name.startswith(key + " ") or name.startswith(key + "("):
            return 1 + k
    return 100 + j


def _is_numeric_column(cells: list[str]) -> bool:
    filled = [c for c in cells if c not in ("", "-", "n/a")]
    return bool(filled) and all(_parse_cell(c) is not None or isinstance(c, Num) for c in filled)


def fit_columns(table: Table, width: int, wide: bool = False) -> list[int]:
    """Indices of the columns to show so that the table fits `width` (rich's box: 3 characters per column + 1),
    dropping the highest `priority` first; numbers keep their full width, text columns may wrap down to 12."""
    n = len(table.columns)
    keep = list(range(n))
    if wide:
        return keep
    texts = [[_cell(row[j]) if j < len(row) else "" for row in table.rows] for j in range(n)]
    need = []
    for j in range(n):
        longest = max([len(t) for t in texts[j]] + [0])
        header_word = max((len(w) for w in str(table.columns[j]).split()), default=1)
        if _is_numeric_column(texts[j]):
            need.append(max(longest, header_word))
        else:
            words = max((len(w) for t in texts[j] for w in t.split()), default=1)
            need.append(max(header_word, min(longest, max(12, min(words, 24)))))
    order = sorted(range(n), key=lambda j: (_priority(table.columns[j], j), j))
    while len(keep) > 1 and sum(need[j] for j in keep) + 3 * len(keep) + 1 > width:
        drop = max((j for j in keep if _priority(table.columns[j], j) > 0), key=order.index, default=None)
        if drop is None:
            break
        keep.remove(drop)
    return keep


def to_text(report: Report, explain: bool = False, options: RenderOptions | None = None,
            width: int | None = None) -> str:
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    opts = options or OPTIONS
    width = width or terminal_width()
    if opts.wide:  # every column at its natural width, however wide the terminal
        width = max([width] + [sum(max([len(str(c))] + [len(_cell(r[j])) for r in t.rows if j < len(r)]) + 3
                                   for j, c in enumerate(t.columns)) + 1 for t in report.tables])
    console = Console(file=io.StringIO(), record=True, width=width, force_terminal=False, color_system=None)
    # plain text everywhere: "[positions]" in a formula or a note is text, not rich markup
    for table in report.tables:
        keep = fit_columns(table, width, opts.wide)
        rt = RichTable(title=Text(table.title) if table.title else None, title_justify="left", show_lines=False)
        for j in keep:
            cells = [_cell(row[j]) if j < len(row) else "" for row in table.rows]
            numeric = _is_numeric_column(cells)
            rt.add_column(Text(str(table.columns[j])), overflow="fold", no_wrap=numeric,
                          justify="right" if numeric and j else "left")
        for row in table.rows:
            rt.add_row(*[Text(_cell(row[j]) if j < len(row) else "") for j in keep])
        console.print(rt)
        if len(keep) < len(table.columns):
            hidden = [str(table.columns[j]) for j in range(len(table.columns)) if j not in keep]
            console.print(f"({len(hidden)} more column(s) at this width: {', '.join(hidden)}; --wide shows all)",
                          markup=False, highlight=False)
        if table.note:
            console.print(table.note, markup=False, highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    if explain and report.terms:
        console.print(explain_text(report.terms), markup=False, highlight=False)
    if explain:
        unknown = [(str(row[0]) if _key_value(t) or j else str(t.columns[j]), c.reason) for t in report.tables
                   for row in t.rows for j, c in enumerate(row) if isinstance(c, Num) and c.value is None and c.reason]
        for col, reason in dict.fromkeys(unknown):
            console.print(f"n/a ({col}): {reason}", markup=False, highlight=False)
    return console.export_text().rstrip() + "\n"
