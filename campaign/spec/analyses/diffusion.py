"""``diffusion``: self-diffusion coefficients from the MSD, finite-size and Arrhenius fits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.analyses.common import RunAnalysisSettings, Site
from ilcampaign.campaign.spec.base import added_option
from ilcampaign.campaign.spec.registry import ANALYSES


@ANALYSES.register
class DiffusionSettings(RunAnalysisSettings):
    """Self-diffusion coefficients from the FFT MSD: a linear fit over ``window`` with an error from
    ``blocks`` independent time blocks (Student-t 95 % CI), the Yeh-Hummer finite-size correction
    over the run's system sizes (and analytically with ``viscosity``), and an Arrhenius fit over T."""

    kind: Literal["diffusion"] = "diffusion"
    sites: list[Site] = Field(min_length=1)
    window: tuple[float, float] = Field(default=(0.2, 0.8), description="fit window as fractions of a time block's length")
    blocks: int = Field(default=5, ge=2, description="independent time blocks for the uncertainty")
    viscosity: float | None = Field(default=None, gt=0, description="Pa s, for the analytic Yeh-Hummer correction")
    finite_size_correction: bool = added_option(True, description=(
        "extrapolate D to an infinite box over the system sizes run at each temperature (Yeh-Hummer; needs 3 "
        "sizes, `campaign validate` warns where there are fewer); false: report the finite boxes' D only"))
    reference: str | None = Field(default=None, description="a references entry of D(T) data")

    @model_validator(mode="after")
    def _check(self) -> DiffusionSettings:
        if not 0 <= self.window[0] < self.window[1] <= 1:
            raise ValueError("window: two fractions 0 <= start < end <= 1 of a time block's length")
        return self

    def used_sites(self) -> list[Site]:
        return list(self.sites)
