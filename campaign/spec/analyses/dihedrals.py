"""``dihedrals``: distributions of a SMARTS-matched dihedral over growing time windows (Fig. 5)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.analyses.common import RunAnalysisSettings, Site
from ilcampaign.campaign.spec.registry import ANALYSES


@ANALYSES.register
class DihedralsSettings(RunAnalysisSettings):
    """Distributions of a dihedral (four atoms matched by ``smarts`` in ``ion``) over growing time
    windows (fractions of the run after equilibration), as the paper's Fig. 5."""

    kind: Literal["dihedrals"] = "dihedrals"
    ion: str
    smarts: str = Field(description="four atoms; with atom maps :1-:4, those")
    windows: list[float] = Field(default_factory=lambda: [0.1, 0.5, 1.0])
    bins: int = Field(default=72, ge=4)

    @model_validator(mode="after")
    def _check(self) -> DihedralsSettings:
        if sorted(self.windows) != self.windows or not all(0 < w <= 1 for w in self.windows):
            raise ValueError("windows: increasing fractions in (0, 1]")
        return self

    def used_sites(self) -> list[Site]:
        return [Site(ion=self.ion)]
