"""CLI surface: every command is registered where cli.py says, has examples in --help, and bad input exits 2."""

import importlib
import re

import pytest

from sizeup import cli
from sizeup.cli import COMMAND_MODULES, COMMAND_TO_MODULE, main


def registered_commands() -> dict[str, str]:
    """command name -> module, as the modules themselves register them."""
    out = {}
    for module in COMMAND_MODULES:
        src = importlib.import_module(f"sizeup.commands.{module}").__file__
        for name in re.findall(r'@(?:app\.command|job_command)\("([^"]+)"', open(src).read()):
            out[name] = module
    return out


def test_command_table_matches_the_modules():
    assert registered_commands() == COMMAND_TO_MODULE


@pytest.mark.parametrize("command", sorted(COMMAND_TO_MODULE))
def test_every_command_has_examples_in_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and f"sizeup {command}" in out


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMAND_TO_MODULE:
        assert command in out


@pytest.mark.parametrize("argv,fragment", [
    (["paramz", "gpt2"], "No such command"),
    (["params", "gpt2", "--bogus"], "No such option"),
    (["params", "llama-2-7x"], "Did you mean"),
    (["memory", "llama-2-7b", "--gpus", "0"], "gpus"),
    (["train", "llama-2-7b", "--gpu", "h100-sxm", "--tokens", "lots"], "tokens"),
])
def test_bad_input_is_one_line_and_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err


def test_only_the_invoked_command_module_is_needed():
    assert cli._command_in(["--json", "train", "x"]) == "train"
    assert cli._command_in(["--help"]) is None
    assert cli._command_in(["nonsense"]) is None


def test_brackets_in_formulas_and_notes_are_text_not_markup(capsys):
    assert main(["params", "gpt2", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "[token emb]" in out and "[positions]" in out


def _help_flags(command: str, capsys) -> set[str]:
    assert main([command, "--help"]) == 0
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", capsys.readouterr().out))


@pytest.mark.parametrize("command, shown, refused", [
    ("infer", "--engine", "--zero"),
    ("serve-plan", "--ttft-p95", "--optimizer"),
    ("memory", "--zero", "--platform"),
])
def test_help_lists_only_the_flags_a_command_takes(command, shown, refused, capsys):
    """A job flag the command refuses (one line, exit 2) is not offered in its --help; the ones it takes are."""
    flags = _help_flags(command, capsys)
    assert shown in flags and refused not in flags
    assert main([command, "llama-2-7b", refused, "1"]) == 2
    assert "does not apply" in capsys.readouterr().err
