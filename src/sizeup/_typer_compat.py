"""The one place sizeup adjusts typer (for typer 0.29.x): build an option's value converter only when a value needs it.

Why: typer 0.29 converts each parameter's value with a pydantic TypeAdapter built per parameter on first use
(typer/core.py `_TyperParameter.get_runtime_param` -> typer/_coercion.py `build_runtime_param`). click calls
`process_value` for every parameter of the invoked command, also for the ~60 job options a call did not give
(value None), so every `sizeup train` built ~60 TypeAdapters (~1 ms each) only to return None: for None,
typer's `RuntimeParam.coerce` returns None (or () for a multi-value option) without using the converter.

What: `typer.core.build_runtime_param` (the name `get_runtime_param` calls) is replaced by a function that
returns a lazy RuntimeParam; its first non-None value builds typer's own RuntimeParam with typer's own
`build_runtime_param` and hands every value to it. Conversion, error messages and results stay typer's.

Fast path: most values a sizeup call gives are a plain `str` option, or an `int`/`float` written as plain
decimal digits. For those (no custom parser, no min/max/clamp on the option), the value typer's converter
returns is known exactly: the string itself, `int(text)`, `float(text)` (checked against typer's own converter
in tests/test_typer_compat.py). The shim returns it without building the converter, so a typical estimate never
imports typer's pydantic adapters (~0.1 s of a ~0.45 s call). Anything else (signs, exponents, underscores,
whitespace, bad text, enums, paths, lists) goes to typer's converter, so results and error messages stay typer's.

tests/test_typer_compat.py fails loudly when typer's version or the names used here change; check this file
against the new typer then (newer typers may make it unnecessary).
"""

from __future__ import annotations

import re
from typing import Any

import typer
import typer._coercion as _coercion
import typer.core as _core

TYPER_VERSIONS = ("0.29.",)
"""typer releases this shim was written and checked for (typer/_coercion.py and typer/core.py of 0.29.2)."""

_original_build = _coercion.build_runtime_param

_PLAIN_TEXT = {
    int: (re.compile(r"[0-9]{1,18}"), int),
    float: (re.compile(r"[0-9]{1,15}(?:\.[0-9]{0,15})?"), float),
}
"""Per annotation: the decimal strings whose typer conversion is exactly `convert(text)`, and that convert."""


def plain_value(descriptor: _coercion.TypeDescriptor, value: Any) -> tuple[bool, Any]:
    """(True, converted) where typer's converter would return `converted` for sure; (False, None) otherwise."""
    info = descriptor.parameter_info
    if type(value) is not str or info.parser is not None or descriptor.file_annotation is not None:
        return False, None
    annotation = descriptor.annotation
    if annotation is str:
        return True, value
    plain = _PLAIN_TEXT.get(annotation)
    if plain is None or info.min is not None or info.max is not None or info.clamp:
        return False, None
    pattern, convert = plain
    return (True, convert(value)) if pattern.fullmatch(value) else (False, None)


class LazyRuntimeParam(_coercion.RuntimeParam):
    """typer's RuntimeParam for one parameter, built on the first value that needs converting."""

    def __init__(self, descriptor: _coercion.TypeDescriptor) -> None:
        super().__init__(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)
        object.__setattr__(self, "_descriptor", descriptor)
        object.__setattr__(self, "_real", None)

    @property
    def real(self) -> _coercion.RuntimeParam:
        if self._real is None:
            object.__setattr__(self, "_real", _original_build(self._descriptor))
        return self._real

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        known, converted = plain_value(self._descriptor, value)
        if known:
            return converted
        return self.real._coerce_value(value, param=param, ctx=ctx)


def lazy_build_runtime_param(descriptor: _coercion.TypeDescriptor) -> _coercion.RuntimeParam:
    return LazyRuntimeParam(descriptor)


def install() -> bool:
    """Patch typer (idempotent). False (and typer left as it is) on a typer this shim was not written for."""
    if not typer.__version__.startswith(TYPER_VERSIONS):
        return False
    if getattr(_core, "build_runtime_param", None) is not _original_build:
        return _core.build_runtime_param is lazy_build_runtime_param
    _core.build_runtime_param = lazy_build_runtime_param
    return True
