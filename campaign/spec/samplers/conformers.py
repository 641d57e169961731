"""``conformers``: boxes of RDKit conformers packed at a reduced density."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ilcampaign.campaign.spec.registry import SAMPLERS
from ilcampaign.campaign.spec.samplers.common import SamplerSettings
from ilcampaign.campaign.units import Density, Length


@SAMPLERS.register
class ConformersSettings(SamplerSettings):
    """RDKit conformers of every ion, packed with PACKMOL into periodic boxes of the system's
    composition at a reduced density. With ``unit_density``, formula units (the smallest neutral
    set of ions, e.g. 1 cation + 1 anion) are packed first without periodicity, and boxes are
    packed from those units (the workflow's ML11)."""

    kind: Literal["conformers"] = "conformers"
    n_conformers: int = Field(default=200, ge=1, description="per ion species")
    n_boxes: int = Field(default=20, ge=1)
    density: Density = Field(default=0.9, gt=0)
    tolerance: Length = Field(default=2.0, gt=0)
    unit_density: Density | None = Field(default=None, gt=0, description="pack formula units first, at this density")
    n_units: int | None = Field(default=None, ge=1, description="formula units to pack (default n_conformers)")
