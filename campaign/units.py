"""Physical quantities in specs: a number in the field's unit, or a string such as ``"800 Ry"``.

Every quantity is converted to ASE units (eV, Angstrom, fs, K, amu/Angstrom^3 for density,
eV/Angstrom^3 for pressure) when the spec is loaded, so step hashes see one canonical number
whichever unit the author wrote. Conversion factors are CODATA values as used by ASE.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_EV_PER_HARTREE = 27.211386024367243
_AMU_GRAMS = 1.66053906660e-24
_EV_PER_J = 1.0 / 1.602176634e-19

#: dimension -> {unit spelling: factor to the internal (ASE) unit}
UNITS: dict[str, dict[str, float]] = {
    "energy": {
        "eV": 1.0,
        "meV": 1e-3,
        "Ha": _EV_PER_HARTREE,
        "Hartree": _EV_PER_HARTREE,
        "Ry": _EV_PER_HARTREE / 2,
        "kcal/mol": 0.0433641043,
        "kJ/mol": 0.0103642688,
    },
    "length": {"A": 1.0, "Å": 1.0, "Angstrom": 1.0, "nm": 10.0, "pm": 0.01, "bohr": 0.529177210903},
    "time": {"fs": 1.0, "ps": 1e3, "ns": 1e6, "as": 1e-3},
    "temperature": {"K": 1.0},
    "force": {"eV/Angstrom": 1.0, "eV/A": 1.0, "meV/A": 1e-3, "meV/Angstrom": 1e-3, "Ha/bohr": _EV_PER_HARTREE / 0.529177210903},
    "density": {
        "amu/Angstrom^3": 1.0,
        "amu/A^3": 1.0,
        "g/cm^3": 1.0 / (_AMU_GRAMS * 1e24),
        "g/cm3": 1.0 / (_AMU_GRAMS * 1e24),
        "kg/m^3": 1e-3 / (_AMU_GRAMS * 1e24),
        "kg/m3": 1e-3 / (_AMU_GRAMS * 1e24),
    },
    "pressure": {
        "eV/Angstrom^3": 1.0,
        "eV/A^3": 1.0,
        "bar": 1e5 * _EV_PER_J * 1e-30,
        "atm": 101325.0 * _EV_PER_J * 1e-30,
        "GPa": 1e9 * _EV_PER_J * 1e-30,
        "Pa": _EV_PER_J * 1e-30,
    },
}

#: the unit a bare number is read in, per dimension (what a chemist writes by habit)
DEFAULT_UNIT = {
    "energy": "eV",
    "length": "A",
    "time": "fs",
    "temperature": "K",
    "force": "eV/A",
    "density": "g/cm^3",
    "pressure": "bar",
}

#: the internal (ASE) unit; quantities are written back (show-spec) as "value unit" in it
INTERNAL_UNIT = {
    "energy": "eV",
    "length": "Angstrom",
    "time": "fs",
    "temperature": "K",
    "force": "eV/Angstrom",
    "density": "amu/Angstrom^3",
    "pressure": "eV/Angstrom^3",
}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S.*?)?\s*$")


def to_internal(value: object, dimension: str) -> float:
    """Convert a number (read in DEFAULT_UNIT) or a ``"value unit"`` string to ASE units."""
    table = UNITS[dimension]
    if isinstance(value, bool):
        raise ValueError(f"expected a {dimension}, got a boolean")
    if isinstance(value, (int, float)):
        return float(value) * table[DEFAULT_UNIT[dimension]]
    if isinstance(value, str):
        match = _QUANTITY.match(value)
        if match:
            number, unit = float(match.group(1)), match.group(2) or DEFAULT_UNIT[dimension]
            if unit in table:
                return number * table[unit]
            raise ValueError(f"unknown {dimension} unit {unit!r}; use one of {', '.join(table)}")
    raise ValueError(
        f"expected a {dimension} as a number (in {DEFAULT_UNIT[dimension]}) or a string like "
        f"'1.5 {DEFAULT_UNIT[dimension]}'"
    )


def from_internal(value: float, dimension: str, unit: str) -> float:
    """Express an internal (ASE-unit) value in ``unit`` (one of ``UNITS[dimension]``)."""
    return value / UNITS[dimension][unit]


def show(value: float, dimension: str, unit: str) -> str:
    """Write an internal value as a "value unit" string, 12 significant digits (what hashing keeps)."""
    return f"{float(f'{from_internal(value, dimension, unit):.12g}')!r} {unit}"


def dimension(field: Any) -> str | None:
    """The dimension of a pydantic field holding a quantity (``Length``, ``Length | None``: "length"),
    or None."""

    def metadata(annotation: Any) -> list[Any]:
        return [*getattr(annotation, "__metadata__", ()), *(m for arg in get_args(annotation) for m in metadata(arg))]

    for item in [*field.metadata, *metadata(field.annotation)]:
        if isinstance(item, WithJsonSchema) and item.json_schema:
            name = str(item.json_schema.get("description", "")).partition(":")[0]
            if name in UNITS:
                return name
    return None


def describe(dimension: str) -> str:
    """How a quantity of ``dimension`` is written, in words (the schema's description of it)."""
    return (f"{dimension}: a number in {DEFAULT_UNIT[dimension]} or a string with one of the units "
            f"{', '.join(UNITS[dimension])}; stored in {INTERNAL_UNIT[dimension]}")


def _quantity(dimension: str, shown_in: str | None = None):
    unit = shown_in or INTERNAL_UNIT[dimension]
    schema = {"anyOf": [{"type": "number"}, {"type": "string"}], "description": describe(dimension)}
    return Annotated[
        float,
        BeforeValidator(lambda v: to_internal(v, dimension)),
        PlainSerializer(lambda v: show(v, dimension, unit), when_used="json"),
        WithJsonSchema(schema, mode="validation"),
    ]


Energy = _quantity("energy")
PlaneWaveCutoff = _quantity("energy", shown_in="Ry")
Length = _quantity("length")
Time = _quantity("time")
Temperature = _quantity("temperature")
Force = _quantity("force")
Density = _quantity("density", shown_in="g/cm^3")
Pressure = _quantity("pressure", shown_in="bar")
