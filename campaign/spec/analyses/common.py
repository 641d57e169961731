"""What the analyses share: the sites they look at and their two bases, analyses over production
runs and analyses over trained models. A subclass adds its own checks across sections in
``problems`` (the generic ones, such as runs and models that exist, are CampaignSpec's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ilcampaign.campaign.spec.base import Problem, Section

if TYPE_CHECKING:
    from ilcampaign.campaign.spec.campaign_spec import CampaignSpec


class Site(Section):
    """Points of one species: its atoms of ``element`` (null: all its atoms), or with ``centre``
    the centre of mass of each molecule (of those atoms, if ``element`` is given)."""

    ion: str = Field(description="an ion name from system.ions")
    element: str | None = None
    centre: bool = Field(default=False, description="one point per molecule: its centre of mass")

    def label(self) -> str:
        what = self.element or "all"
        return f"{self.ion}:{what}{':com' if self.centre else ''}"


class AnalysisSettings(Section):
    """Base of every analysis."""

    def used_sites(self) -> list[Site]:
        """The sites the analysis reads (their ions must exist)."""
        return []

    def problems(self, spec: CampaignSpec, where: tuple[Any, ...]) -> list[Problem]:
        """What is wrong with this analysis given the whole spec, beyond the generic checks."""
        return []


class RunAnalysisSettings(AnalysisSettings):
    """An analysis over production runs: one task per run, then a result across them."""

    runs: list[str] | None = Field(default=None, description="production runs analysed; null: every run")


class ModelAnalysisSettings(AnalysisSettings):
    """An analysis over trained models."""

    models: list[str] = Field(default_factory=lambda: ["all"], description="model names as in production; all: every one")
