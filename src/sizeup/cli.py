"""The `sizeup` command line: a thin typer app over the library.

Commands live in `sizeup/commands/<name>.py` and register themselves on `app`; heavy imports
happen inside command bodies so that `sizeup --help` and a single estimate start fast.
Bad input (SizeupError) prints one line to stderr and exits 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="sizeup",
    help="Size AI training and inference runs before renting a GPU: parameters, memory, FLOPs, time, cost.\n\n"
    "Examples:\n\n"
    "  sizeup params llama-2-7b\n\n"
    "  sizeup memory llama-2-7b --gpu t4 --peft qlora --seq 512\n\n"
    "  sizeup train llama-3-8b --gpu h100-sxm --gpus 8 --tokens 10B --explain",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Each module registers its commands on `app` when imported (order = order in --help).
COMMAND_MODULES = (
    "params",
    "hardware",
    "memory",
    "trace",
    "train",
    "validate",
    "compare",
    "budget",
    "infer",
    "search",
    "workload",
    "audit",
    "scale",
    "demo",
)


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"sizeup.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sizeup.commands.{name}":
                raise


_register()


def main(argv: list[str] | None = None) -> int:
    from sizeup.errors import SizeupError
    from sizeup.units import UnitError

    try:
        app(args=argv, standalone_mode=False)
    except (SizeupError, UnitError) as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except Exception as exc:  # click usage errors and friends
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


def entrypoint() -> None:
    sys.exit(main())
