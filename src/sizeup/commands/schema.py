"""`sizeup schema COMMAND`: the JSON Schema of a command's --json output (from sizeup.report.schemas)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sizeup.cli import app


@app.command("schema")
def schema_cmd(
    command: Annotated[str, typer.Argument(help="A command with --json output, e.g. train, memory, search.",
                                           show_default=False)],
) -> None:
    """Print the JSON Schema of a command's --json output (for validating it in other tools).

    Examples:

      sizeup schema train > train.schema.json

      sizeup train llama-3-8b --gpu h100 --gpus 8 --tokens 10B --json > out.json
      check-jsonschema --schemafile train.schema.json out.json
    """
    from sizeup.report.schemas import json_schema

    typer.echo(json.dumps(json_schema(command.strip().lower()), indent=2))
