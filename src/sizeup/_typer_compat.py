"""The one place sizeup adjusts typer (for typer 0.29.x): build an option's value converter only when a value comes.

Why: typer 0.29 converts each parameter's value with a pydantic TypeAdapter built per parameter on first use
(typer/core.py `_TyperParameter.get_runtime_param` -> typer/_coercion.py `build_runtime_param`). click calls
`process_value` for every parameter of the invoked command, also for the ~60 job options a call did not give
(value None), so every `sizeup train` built ~60 TypeAdapters (~1 ms each) only to return None: for None,
typer's `RuntimeParam.coerce` returns None (or () for a multi-value option) without using the converter.

What: `typer.core.build_runtime_param` (the name `get_runtime_param` calls) is replaced by a function that
returns a lazy RuntimeParam; its first non-None value builds typer's own RuntimeParam with typer's own
`build_runtime_param` and hands every value to it. Conversion, error messages and results stay typer's.

tests/test_typer_compat.py fails loudly when typer's version or the names used here change; check this file
against the new typer then (newer typers may make it unnecessary).
"""

from __future__ import annotations

from typing import Any

import typer
import typer._coercion as _coercion
import typer.core as _core

TYPER_VERSIONS = ("0.29.",)
"""typer releases this shim was written and checked for (typer/_coercion.py and typer/core.py of 0.29.2)."""

_original_build = _coercion.build_runtime_param


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
