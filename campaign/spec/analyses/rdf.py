"""``rdf``: radial distribution functions and running coordination numbers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ilcampaign.campaign.spec.analyses.common import RunAnalysisSettings, Site
from ilcampaign.campaign.spec.registry import ANALYSES
from ilcampaign.campaign.units import Length


@ANALYSES.register
class RDFSettings(RunAnalysisSettings):
    """Radial distribution functions (MDAnalysis InterRDF's normalisation) with running coordination numbers."""

    kind: Literal["rdf"] = "rdf"
    elements: bool = Field(default=True, description="every pair of elements (all atoms of an element together)")
    pairs: list[tuple[Site, Site]] = Field(default_factory=list, description="site pairs besides the element pairs")
    r_max: Length = Field(default=6.0, gt=0)
    bins: int = Field(default=1000, ge=10, description="the paper's 1000")

    def used_sites(self) -> list[Site]:
        return [site for pair in self.pairs for site in pair]
