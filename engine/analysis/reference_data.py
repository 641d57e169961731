"""Reference data (the spec's ``references``): a CSV read into a hashed table, and the comparison
of a computed value and its 95 % interval with the measurements at the same temperature."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

#: measurements within this many K count as "at the same temperature"
SAME_TEMPERATURE_K = 0.5


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature_K: float
    value: float
    uncertainty: float | None
    source: str


class ReferenceTable(BaseModel):
    """A reference data set as the steps see it: its rows are part of the step's key, so an edited
    file reruns the comparison."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    quantity: str
    unit: str
    citation: str
    species: str | None = None
    rows: list[Measurement]

    def at(self, temperature: float) -> list[Measurement]:
        """The measurements within SAME_TEMPERATURE_K of ``temperature``."""
        return [row for row in self.rows if abs(row.temperature_K - temperature) <= SAME_TEMPERATURE_K]


def reference_path(entry: Any, base: Path) -> Path:
    """Where a references entry's CSV file is: shipped with ilcampaign, or relative to ``base``."""
    if entry.shipped is not None:
        from importlib.resources import files

        from ilcampaign.campaign.spec.reference_data import SHIPPED

        return Path(str(files(SHIPPED) / entry.shipped))
    return (base / entry.file).resolve()


def load_reference(name: str, entry: Any, base: Path) -> ReferenceTable:
    """The spec's references entry ``name`` (a ilcampaign.campaign.spec.ReferenceData) read from its CSV file;
    ValueError naming the file, row and column for a missing column or a bad number."""
    path = reference_path(entry, base)
    if not path.is_file():
        raise ValueError(f"references.{name}: no file {path}")
    rows = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        wanted = [entry.temperature_column, entry.value_column, entry.uncertainty_column, entry.source_column]
        missing = [c for c in wanted if c is not None and c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"references.{name}: {path} has no column(s) {missing} (it has {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            try:
                uncertainty = row[entry.uncertainty_column] if entry.uncertainty_column else ""
                rows.append(Measurement(temperature_K=float(row[entry.temperature_column]),
                                        value=float(row[entry.value_column]),
                                        uncertainty=float(uncertainty) if uncertainty.strip() else None,
                                        source=row[entry.source_column] if entry.source_column else entry.citation))
            except ValueError as exc:
                raise ValueError(f"references.{name}: {path} line {line}: {exc}") from None
    return ReferenceTable(name=name, quantity=entry.quantity, unit=entry.unit, citation=entry.citation,
                          species=entry.species, rows=rows)


def compare(table: ReferenceTable | None, temperature: float, value: float, low: float, high: float) -> dict[str, Any]:
    """Our ``value`` (95 % interval ``low``..``high``) against the measurements at ``temperature``:
    the deviation from their mean (absolute and %), and per measurement whether it lies inside our
    interval (None where there is no interval). ``available: False`` with the reason where there is nothing to compare with."""
    if table is None:
        return {"available": False, "reason": "no reference data given in the spec"}
    rows = table.at(temperature)
    if not rows:
        return {"available": False, "reason": f"{table.name} has no measurement at {temperature:g} K"}
    mean = sum(row.value for row in rows) / len(rows)
    decidable = math.isfinite(low) and math.isfinite(high)  # without an interval: neither inside nor outside
    return {
        "available": True, "reference": table.name, "temperature_K": temperature, "reference_mean": mean,
        "unit": table.unit, "deviation": value - mean, "deviation_percent": 100 * (value - mean) / mean,
        "measurements": [{"value": row.value, "uncertainty": row.uncertainty, "source": row.source,
                          "inside_ci95": bool(low <= row.value <= high) if decidable else None} for row in rows],
    }
