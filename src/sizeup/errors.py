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


# An error is one readable line: at most MAX_PROBLEMS problems (then a count of the rest), each value
# shown at most MAX_VALUE_CHARS long, the whole line at most MAX_MESSAGE_CHARS.
MAX_PROBLEMS = 5
MAX_VALUE_CHARS = 80
MAX_MESSAGE_CHARS = 600


def cap_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line of at most `limit` characters (whitespace collapsed; the cut says how much was left out)."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    return line[:limit].rstrip() + f" ... ({len(line) - limit:,} more characters)"


def pydantic_message(exc) -> str:
    """Flatten a pydantic ValidationError into one line: the first MAX_PROBLEMS problems and a count of the rest."""
    parts = []
    errors = exc.errors()
    for err in errors[:MAX_PROBLEMS]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        loc = loc if len(loc) <= MAX_VALUE_CHARS else loc[:MAX_VALUE_CHARS] + "..."
        msg = msg if len(msg) <= 2 * MAX_VALUE_CHARS else msg[:2 * MAX_VALUE_CHARS] + "..."
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(errors) - MAX_PROBLEMS
    return "; ".join(parts) + (f"; and {more:,} more problem{'s' if more > 1 else ''}" if more > 0 else "")
