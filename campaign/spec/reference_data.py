"""``references``: reference data the analyses are compared with, as CSV files with their citation."""

from __future__ import annotations

from pydantic import Field

from ilcampaign.campaign.spec.base import Section


class ReferenceData(Section):
    """A CSV file with one row per measurement: temperature, value, uncertainty (may be empty) and
    source, in the columns named here; ``unit`` of the values; the data set's citation."""

    file: str = Field(description="relative to the spec's folder")
    quantity: str = Field(description="the analysis kind the data compare with: density, diffusion")
    unit: str = Field(description="unit of the value column: g/cm^3 for density, m^2/s for diffusion")
    citation: str = Field(description="who measured it and where it was published")
    temperature_column: str = "T_K"
    value_column: str = "value"
    uncertainty_column: str | None = Field(default="uncertainty", description="null: none given")
    source_column: str | None = "source"
    species: str | None = Field(default=None, description="diffusion: the site label it refers to (e.g. BMIM:all:com)")
