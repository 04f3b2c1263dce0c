"""The `sizeup` command line: a thin typer app over the library.

Commands live in `sizeup/commands/<name>.py` and register themselves on `app`; heavy imports
happen inside command bodies so that `sizeup --help` and a single estimate start fast.
Bad input (SizeupError) prints one line to stderr and exits 2.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
import typer.core

from sizeup import _typer_compat

_typer_compat.install()  # typer builds an option's converter only for the options a call gives (_typer_compat.py)


class _GroupedHelp(typer.core.TyperGroup):
    """`sizeup --help`: commands grouped by what users do, each with its full first docstring line."""

    def format_commands(self, ctx, formatter) -> None:
        register()
        listed = set()
        for group, names in HELP_GROUPS:
            rows = []
            for name in names:
                cmd = self.get_command(ctx, name)
                if cmd is None or cmd.hidden:
                    continue
                listed.add(name)
                rows.append((name, " ".join((cmd.help or "").strip().split("\n\n")[0].split())))
            if rows:
                with formatter.section(group):
                    formatter.write_dl(rows, col_max=14)
        rest = [n for n in self.list_commands(ctx) if n not in listed]
        if rest:
            with formatter.section("Other"):
                formatter.write_dl([(n, " ".join((self.get_command(ctx, n).help or "").strip().split("\n\n")[0].split()))
                                    for n in rest])


# `sizeup --help` sections (by what users do); tests/test_outputs.py checks every command is in one.
HELP_GROUPS = (
    ("Size a model", ("params", "memory", "trace", "tokens")),
    ("Plan training", ("train", "compare", "search", "export", "scale", "fit-budget", "budget")),
    ("Serve", ("infer", "serve-plan")),
    ("Check claims and accuracy", ("audit", "validate", "calibrate", "demo")),
    ("Catalog", ("models", "gpus", "platforms", "frameworks")),
    ("Output, charts and the web page", ("schema", "plot", "serve")),
)

app = typer.Typer(
    name="sizeup",
    cls=_GroupedHelp,
    help="Size AI training and inference runs before renting a GPU: parameters, memory, FLOPs, time, cost.\n\n"
    "Examples:\n\n"
    "  sizeup params llama-2-7b\n\n"
    "  sizeup memory llama-2-7b --gpu t4 --peft qlora --seq 512\n\n"
    "  sizeup train llama-3-8b --gpu h100-sxm --gpus 8 --tokens 10B --explain\n\n"
    "Output options of every table command: --json, --csv (main table; --table NAME for another, --csv-dir DIR for "
    "one file per table), --markdown, --wide (all columns), --explain. 'sizeup schema COMMAND' prints the JSON "
    "Schema of a command's --json output. Shell completion: 'sizeup --install-completion' (or "
    "'sizeup --show-completion bash >> ~/.bashrc').",
    no_args_is_help=True,
    add_completion=True,
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
    "calibrate",
    "frameworks",
    "plot",
    "serve",
    "schema",
)

# command name -> module, so one call imports (and typer builds the parser of) only the command it runs;
# typer otherwise evaluates every command's signature on each call (~0.1 s). tests/test_cli.py keeps this
# table in step with the commands the modules register.
COMMAND_TO_MODULE = {
    "params": "params", "models": "params", "gpus": "hardware", "platforms": "hardware", "memory": "memory",
    "trace": "trace", "train": "train", "validate": "validate", "compare": "compare", "budget": "budget",
    "demo": "demo", "infer": "infer", "serve-plan": "infer", "search": "search", "export": "search",
    "tokens": "workload", "audit": "audit", "scale": "scale", "fit-budget": "scale",
    "calibrate": "calibrate",
    "frameworks": "frameworks", "schema": "schema",
    "plot": "plot", "serve": "serve",
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
    try:
        argv = render_options(argv)
    except SizeupError as exc:
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        return 2
    command = _command_in(argv)
    register((command,) if command else None)
    try:
        check_numbers(argv)
        app(args=argv, standalone_mode=False)
    except (SizeupError, UnitError) as exc:
        typer.echo(f"error: {_one_line(_name_the_option(str(exc), argv))}", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # usage errors from typer's click (unknown option, extra argument, bad int): one line, exit 2
            where = f"sizeup {command} --help" if command else "sizeup --help"
            text = _one_line(exc.format_message())
            text += f" See '{where}'." if text.endswith((".", "?", "!")) else f"; see '{where}'"
            typer.echo(f"error: {text}", err=True)
            return int(exc.exit_code)
        if os.environ.get("SIZEUP_DEBUG"):
            raise
        # a bug, not bad input: still one line (SIZEUP_DEBUG=1 shows the traceback)
        typer.echo(f"error: internal error ({type(exc).__name__}: {_one_line(str(exc))}); please report it with "
                   "the command line (SIZEUP_DEBUG=1 shows the traceback)", err=True)
        return 1
    return 0


def render_options(argv: list[str]) -> list[str]:
    """Take the output options every table command shares out of argv into sizeup.report.OPTIONS:
    --wide (all columns), --table NAME (one table of several), --csv-dir DIR / --csv=DIR / --csv DIR/ (one CSV file
    per table; `--csv DIR` when DIR is an existing folder or ends with a slash).
    Returns argv without them (the command's own parser never sees them)."""
    from sizeup import report
    from sizeup.errors import SizeupError

    opts = report.RenderOptions()
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        flag, eq, value = arg.partition("=")
        if arg == "--wide":
            opts.wide = True
        elif arg == "--csv" and i + 1 < len(argv) and not argv[i + 1].startswith("-") and (
                argv[i + 1].endswith(("/", os.sep)) or os.path.isdir(argv[i + 1])):
            opts.csv_dir = argv[i + 1]  # `--csv DIR`: a folder (existing, or written with a trailing slash)
            out.append("--csv")
            i += 1
        elif flag in ("--table", "--csv-dir") or (flag == "--csv" and eq):
            if not eq:
                if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                    raise SizeupError(f"{flag} needs a value")
                i += 1
                value = argv[i]
            if not value.strip():
                raise SizeupError(f"{flag} needs a value")
            if flag == "--table":
                opts.table = value.strip()
            else:
                opts.csv_dir = value
                out.append("--csv")
        else:
            out.append(arg)
        i += 1
    if "--help" in out:
        return out
    report.OPTIONS = opts
    return out


def _one_line(text: str) -> str:
    from sizeup.errors import cap_message

    return cap_message(text)


# Numeric flags and the range every command accepts for them (same flag, same rule everywhere):
# value > 0, or value >= 0. Values that are not plain numbers (lists "1,2,8", ranges, "24GiB", "7B")
# are left to the command's own parser; NaN/inf are refused for every flag.
POSITIVE_FLAGS = frozenset({
    "--gpus", "--seq", "--micro-batch", "--global-batch", "--grad-accum", "--tp", "--pp", "--cp", "--ep",
    "--lora-rank", "--max-gpus", "--top", "--batch", "--concurrency", "--layers", "--vocab", "--epochs",
    "--tokens", "--samples", "--tokens-per-sample", "--params", "--rps", "--budget", "--deadline",
    "--sample-seconds", "--power-w", "--pue", "--amortize-months", "--tokens-per-param", "--samples-per-param",
    "--data-tokens-per-second", "--virtual-pp", "--gpus-per-node",
})
NON_NEGATIVE_FLAGS = frozenset({
    "--price-per-gpu-hour", "--billing-increment-s", "--min-billing-s", "--preemption-rate", "--restart-s",
    "--checkpoints-kept", "--usd-per-kwh", "--rent-usd-per-hour", "--purchase-usd", "--retain",
    "--max-age-days", "--max-price-age-days", "--dropout", "--fragmentation",
})


# Upper bounds of the sizes that drive work or memory (same everywhere; stated in the error). Each is far
# above any real run (the largest published clusters are ~10^5 GPUs, contexts ~10^7 tokens, ~10^2 layers)
# and low enough that every command answers in well under a second and integers stay below 2^63.
UPPER_BOUNDS = {
    "--gpus": 1 << 20, "--max-gpus": 1 << 20, "--min-gpus": 1 << 20, "--gpus-per-node": 1 << 16,
    "--tp": 1 << 20, "--pp": 1 << 20, "--cp": 1 << 20, "--ep": 1 << 20, "--virtual-pp": 1 << 10,
    "--seq": 1 << 26, "--prompt-len": 1 << 26, "--output-len": 1 << 26,
    "--micro-batch": 1 << 24, "--global-batch": 1 << 30, "--grad-accum": 1 << 24, "--batch": 1 << 24,
    "--concurrency": 1 << 24, "--layers": 1 << 14, "--vocab": 1 << 24, "--lora-rank": 1 << 16,
    "--top": 10_000, "--worst": 10_000, "--epochs": 1e6, "--checkpoints-kept": 1e6,
    "--mfu-min": 1.0, "--dropout": 1.0, "--fragmentation": 10.0, "--preemption-rate": 1e6,
}
NON_NEGATIVE_FLAGS = NON_NEGATIVE_FLAGS | {"--mfu-min", "--utilization"}


def _number(value: str) -> float | None:
    """The value as a number ('0', '-2', '1e3', 'nan', '0s', '-5h'), or None when it is not a plain number."""
    import math

    text = value.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    if text[-1:] in ("s", "m", "h", "d", "w") and text[:-1]:  # a duration like 0s, -2h
        try:
            x = float(text[:-1])
            return x if math.isfinite(x) else None
        except ValueError:
            return None
    return None


def check_numbers(argv: list[str]) -> None:
    """Refuse NaN/inf for any option, and zero/negative values for the counts and sizes above (exit 2)."""
    import math
    import re

    from sizeup.errors import SizeupError

    if "--help" in argv:
        return
    for i, arg in enumerate(argv):
        if arg == "--":
            return
        flag, eq, value = arg.partition("=")
        if not eq:
            if not arg.startswith("--") or i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                continue
            value = argv[i + 1]
        x = _number(value)
        if x is None and re.match(r"\s*[-\u2212]\s*\$?\s*[\d.]", value):  # '-1B', '-$5': negative with a suffix
            x = -1.0
        if x is None:
            continue
        if not math.isfinite(x):
            raise SizeupError(f"{flag} must be a finite number, got {value!r}")
        if flag in POSITIVE_FLAGS and x <= 0:
            raise SizeupError(f"{flag} must be > 0, got {value}")
        if flag in NON_NEGATIVE_FLAGS and x < 0:
            raise SizeupError(f"{flag} must be >= 0, got {value}")
        if flag in UPPER_BOUNDS:
            _check_upper(flag, value, UPPER_BOUNDS[flag])


def _check_upper(flag: str, value: str, bound: float) -> None:
    """Refuse a value above the flag's bound; lists ('1,2,8'), ranges ('8..64') and suffixes ('64K') are read."""
    import re

    from sizeup.errors import SizeupError
    from sizeup.units import UnitError, parse_count

    for part in re.split(r"\.\.|[,:=]|\s+", value):
        part = part.strip()
        if not part or not re.match(r"[+]?[\d.]", part):
            continue
        try:
            x = parse_count(part)
        except UnitError:
            continue
        if x > bound:
            shown = f"{bound:,.0f}" if bound >= 10 else f"{bound:g}"
            raise SizeupError(f"{flag} must be <= {shown}, got {value}")


def _name_the_option(message: str, argv: list[str]) -> str:
    """Prefix a value error with the option that carried the value: "--tokens: cannot read count 'lots' ...";
    "tokens must be > 0" becomes "--tokens must be > 0" when --tokens was given."""
    import re

    bare = re.match(r"([a-z][a-z0-9_-]*) must ", message)
    if bare:
        flag = "--" + bare.group(1).replace("_", "-")
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            return flag + message[len(bare.group(1)):]
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("--") and repr(value) in message and not message.startswith("--"):
            return f"{flag}: {message}"
        if i and argv[i - 1].startswith("--") and repr(arg) in message and not message.startswith("--"):
            return f"{argv[i - 1]}: {message}"
    # a value inside a structured flag, e.g. --stream video:fps=abc -> "cannot read count 'abc'"
    quoted = re.findall(r"'([^']+)'", message)
    for i, arg in enumerate(argv):
        if i and argv[i - 1].startswith("--") and not message.startswith("--") and any(
                re.search(rf"[=:,]{re.escape(q)}(,|$)", arg) for q in quoted):
            return f"{argv[i - 1]} {arg!r}: {message}"
    return message


def entrypoint() -> None:
    sys.exit(main())
