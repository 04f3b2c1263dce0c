"""`sizeup plot`: draw the chart of a saved `--json` answer (memory, train, compare, search, scale, infer,
serve-plan, validate) as SVG or PNG."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sizeup.cli import app
from sizeup.errors import SizeupError

ResultArg = Annotated[Optional[str], typer.Argument(help="A JSON file printed by a sizeup command with --json ('-' = stdin).",
                                                    show_default=False, metavar="RESULT.json")]
OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Chart file to write: .svg or .png.", metavar="FILE")]
KindOpt = Annotated[Optional[str], typer.Option(
    "--kind", help="Which command printed the JSON: memory | train | compare | search | scale | infer | serve-plan | "
                   "validate (default: told from its keys).")]


@app.command("plot")
def plot_cmd(result: ResultArg = None, out: OutOpt = None, kind: KindOpt = None) -> None:
    """Draw a saved --json answer as a chart (SVG or PNG by the file's extension).

    Examples:

      sizeup train llama-2-7b --gpu a10 --peft lora --tokens 15M --json > run.json

      sizeup plot run.json --out run.svg

      sizeup compare examples/seed004.yaml --json | sizeup plot - --out compare.png
    """
    import json
    import sys
    from pathlib import Path

    from sizeup.report import charts

    if not result:
        raise SizeupError("give the JSON file to draw: sizeup plot RESULT.json --out FILE.svg")
    if not out:
        raise SizeupError("give the chart file to write: --out FILE.svg or --out FILE.png")
    if kind is not None and kind not in charts.KINDS:
        raise SizeupError(f"--kind {kind!r}: charts exist for {', '.join(charts.KINDS)}")
    charts.check_path(out)
    try:
        text = sys.stdin.read() if result == "-" else Path(result).read_text(encoding="utf-8")
    except OSError as exc:
        raise SizeupError(f"cannot read {result!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SizeupError(f"{result!r} is not a text file; give the JSON a sizeup command printed with --json") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SizeupError(f"{result!r} is not JSON (line {exc.lineno}: {exc.msg})") from None
    chart = charts.plot_for(data, kind, out)
    typer.echo(f"wrote {out}: {chart.title}")
