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
    "demo",
    "infer",
    "search",
    "workload",
    "audit",
    "scale",
)

# command name -> module, so one call imports (and typer builds the parser of) only the command it runs;
# typer otherwise evaluates every command's signature on each call (~0.1 s). tests/test_cli.py keeps this
# table in step with the commands the modules register.
COMMAND_TO_MODULE = {
    "params": "params", "models": "params", "gpus": "hardware", "platforms": "hardware", "memory": "memory",
    "trace": "trace", "train": "train", "validate": "validate", "compare": "compare", "budget": "budget",
    "demo": "demo", "infer": "infer", "serve-plan": "infer", "search": "search", "export": "search",
    "tokens": "workload", "audit": "audit", "scale": "scale", "fit-budget": "scale",
}


@app.callback()
def _group() -> None:
    """Size AI training and inference runs before renting a GPU."""


def register(names: tuple[str, ...] | None = None) -> None:
    """Import the command modules (all of them, or those of `names`) so their commands exist on `app`."""
    modules = COMMAND_MODULES if names is None else tuple(dict.fromkeys(COMMAND_TO_MODULE[n] for n in names))
    for name in modules:
        importlib.import_module(f"sizeup.commands.{name}")


def _command_in(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMAND_TO_MODULE else None
    return None


def main(argv: list[str] | None = None) -> int:
    from sizeup.errors import SizeupError
    from sizeup.units import UnitError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    register((command,) if command else None)
    try:
        app(args=argv, standalone_mode=False)
    except (SizeupError, UnitError) as exc:
        typer.echo(f"error: {_name_the_option(str(exc), argv)}", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except Exception as exc:  # usage errors from typer's click: one line + usage, exit 2
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return int(exc.exit_code)
        raise
    return 0


def _name_the_option(message: str, argv: list[str]) -> str:
    """Prefix a value error with the option that carried the value: "--tokens: cannot read count 'lots' ..."."""
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("--") and repr(value) in message:
            return f"{flag}: {message}"
        if i and argv[i - 1].startswith("--") and repr(arg) in message and not message.startswith("--"):
            return f"{argv[i - 1]}: {message}"
    return message


def entrypoint() -> None:
    sys.exit(main())
