"""User-facing errors: one clear line, exit code 2, never a traceback."""

from __future__ import annotations

import difflib
from typing import Iterable


class SizeupError(Exception):
    """Bad input. The message is one line: what is wrong, what is allowed, 'did you mean ...?'."""

    exit_code = 2


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean: a, b?' or '' when nothing is close."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.5)
    if not close:
        close = [lowered[c] for c in lowered if word.lower() in c][:n]
    else:
        close = [lowered[c] for c in close]
    return f" Did you mean: {', '.join(close)}?" if close else ""


def choice_error(kind: str, value: str, allowed: Iterable[str]) -> SizeupError:
    allowed = list(allowed)
    return SizeupError(f"unknown {kind} {value!r}.{did_you_mean(str(value), allowed)} Allowed: {', '.join(allowed)}")


def pydantic_message(exc) -> str:
    """Flatten a pydantic ValidationError into one line."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
