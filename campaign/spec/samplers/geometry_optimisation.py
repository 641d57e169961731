"""``geometry_optimisation``: every step of an optimisation with the current model is a candidate."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ilcampaign.campaign.spec.registry import SAMPLERS
from ilcampaign.campaign.spec.samplers.common import Optimiser, SamplerSettings, Start


@SAMPLERS.register
class GeometryOptimisationSettings(Optimiser, SamplerSettings):
    """Optimise the start structure(s); every step of every optimisation is a candidate."""

    chained: ClassVar[bool] = True
    kind: Literal["geometry_optimisation"] = "geometry_optimisation"
    start: Start = Field(default_factory=Start, description="never inherited by later iterations")
