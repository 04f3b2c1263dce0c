"""Every number sizeup prints can be explained: its formula, its inputs and where they came from.

A `Term` is one explained figure. Results in `core/` carry a tuple of Terms next to their
plain fields; `--explain` prints them, `--json` includes them under "explain".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class Term:
    """One explained output figure.

    name:     slash path of the figure, e.g. "memory/optimizer" or "time/step".
    value:    the number, in SI units (`unit` says which).
    formula:  the formula with named symbols, e.g. "12 * N / dp" (symbols explained in `inputs`).
    inputs:   symbol -> value used (numbers or short strings).
    source:   paper/table/catalog source of the formula or of the inputs.
    """

    name: str
    value: float
    unit: str
    formula: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "formula": self.formula,
            "inputs": dict(self.inputs),
            "source": self.source,
        }


def terms_to_dicts(terms: Iterable[Term]) -> list[dict]:
    return [t.to_dict() for t in terms]
