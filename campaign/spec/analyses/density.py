"""``density``: the mean density of NPT runs against reference data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ilcampaign.campaign.spec.analyses.common import RunAnalysisSettings
from ilcampaign.campaign.spec.base import Problem
from ilcampaign.campaign.spec.registry import ANALYSES

if TYPE_CHECKING:
    from ilcampaign.campaign.spec.campaign_spec import CampaignSpec


@ANALYSES.register
class DensitySettings(RunAnalysisSettings):
    """Mean density of NPT runs with a 95 % CI from block averaging (block size at the plateau of
    the blocked standard error; Student-t)."""

    kind: Literal["density"] = "density"
    reference: str | None = Field(default=None, description="a references entry of rho(T) data")

    def problems(self, spec: CampaignSpec, where: tuple[Any, ...]) -> list[Problem]:
        if any(spec.production.runs[run].ensemble != "npt" for run in spec.analysed_runs(self)):
            return [Problem((*where, "runs"), "density is averaged over NPT runs only", "name the NPT runs in runs")]
        return []
