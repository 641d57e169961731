"""``volume_scan``: rigid-molecule volume scans of (optimised) start structures."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ilcampaign.campaign.spec.registry import SAMPLERS
from ilcampaign.campaign.spec.samplers.common import Optimiser, SamplerSettings, Start


@SAMPLERS.register
class VolumeScanSettings(SamplerSettings):
    """Rigid-molecule volume scans: each start structure (optimised first, unless ``optimise`` is
    null) scaled from ``length_factors[0]`` to ``length_factors[1]`` of its cell length in
    ``n_frames`` frames, molecules rigid (centres of mass scaled)."""

    chained: ClassVar[bool] = True
    kind: Literal["volume_scan"] = "volume_scan"
    start: Start = Field(default_factory=Start, description="never inherited by later iterations")
    optimise: Optimiser | None = Field(default_factory=Optimiser)
    length_factors: tuple[float, float] = Field(default=(0.9, 2.0), description="first and last cell length factor")
    n_frames: int = Field(default=100, ge=2, description="per start structure")

    @field_validator("length_factors")
    @classmethod
    def _positive(cls, value: tuple[float, float]) -> tuple[float, float]:
        if min(value) <= 0:
            raise ValueError("length factors must be positive")
        return value
