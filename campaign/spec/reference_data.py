"""``references``: reference data the analyses are compared with, as CSV files with their citation."""

from __future__ import annotations

from importlib.resources import files

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.base import Section

#: the package holding the reference data that ship with ilcampaign (the repository's references/)
SHIPPED = "ilcampaign.references"


def shipped_files() -> list[str]:
    """The names of the CSV files shipped with ilcampaign."""
    return sorted(item.name for item in files(SHIPPED).iterdir() if item.name.endswith(".csv"))


class ReferenceData(Section):
    """A CSV file with one row per measurement: temperature, value, uncertainty (may be empty) and
    source, in the columns named here; ``unit`` of the values; the data set's citation. The file is
    either one shipped with ilcampaign (``shipped``, by name: a copied spec finds it from any
    folder) or the user's own (``file``)."""

    shipped: str | None = Field(default=None, description="a CSV file shipped with ilcampaign, by name")
    file: str | None = Field(default=None, description="your own CSV file, relative to the spec's folder")
    quantity: str = Field(description="the analysis kind the data compare with: density, diffusion")
    unit: str = Field(description="unit of the value column: g/cm^3 for density, m^2/s for diffusion")
    citation: str = Field(description="who measured it and where it was published")
    temperature_column: str = "T_K"
    value_column: str = "value"
    uncertainty_column: str | None = Field(default="uncertainty", description="null: none given")
    source_column: str | None = "source"
    species: str | None = Field(default=None, description="diffusion: the site label it refers to (e.g. BMIM:all:com)")

    @model_validator(mode="after")
    def _one_source(self) -> ReferenceData:
        if (self.shipped is None) == (self.file is None):
            raise ValueError("give either shipped (a file shipped with ilcampaign: "
                             f"{', '.join(shipped_files())}) or file (your own, relative to the spec)")
        if self.shipped is not None and self.shipped not in shipped_files():
            raise ValueError(f"shipped: no file {self.shipped!r} ships with ilcampaign; shipped files: "
                             f"{', '.join(shipped_files())}")
        return self
