"""``campaign``: who runs which study, and the seed behind every random choice."""

from __future__ import annotations

from pydantic import Field

from campaign.spec.base import Section


class Author(Section):
    name: str = Field(min_length=1)
    orcid: str | None = Field(default=None, pattern=r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
    affiliation: str | None = None


class CampaignInfo(Section):
    """Who runs which study; ``seed`` drives every random choice of the campaign."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="used for the work directory")
    seed: int = Field(default=0, ge=0, lt=2**31)
    description: str = ""
    authors: list[Author] = Field(default_factory=list)
