"""``campaign``: who runs which study, how to cite its data, and the seed behind every random choice."""

from __future__ import annotations

from pydantic import Field

from ilcampaign.campaign.spec.base import Section

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
ORCID = r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$"


class Author(Section):
    name: str = Field(min_length=1)
    orcid: str | None = Field(default=None, pattern=ORCID, description="e.g. 0000-0002-1825-0097")
    affiliation: str | None = None
    email: str | None = Field(default=None, pattern=EMAIL)


class Contact(Section):
    """Who answers questions about the data (a deposit needs a name and an address)."""

    name: str = Field(min_length=1)
    email: str = Field(pattern=EMAIL)


class Publication(Section):
    """The article the data belongs to."""

    doi: str = Field(pattern=r"^10\.\d{4,9}/\S+$", description="bare DOI, e.g. 10.1039/D4FD00025K")
    citation: str = Field(default="", description="the reference as text")


class Funding(Section):
    agency: str = Field(min_length=1)
    grant: str | None = None


class Citation(Section):
    """How the campaign's data is cited: read by the RO-Crate and data deposits, never hashed into steps."""

    title: str = Field(min_length=1)
    authors: list[Author] = Field(min_length=1)
    contact: Contact | None = None
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    license: str = Field(default="CC-BY-4.0", pattern=r"^[A-Za-z0-9][A-Za-z0-9.+-]*$", description="SPDX id")
    related_publication: Publication | None = None
    funding: list[Funding] = Field(default_factory=list)


class CampaignInfo(Section):
    """Who runs which study; ``seed`` drives every random choice of the campaign."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="used for the work directory")
    seed: int = Field(default=0, ge=0, lt=2**31)
    description: str = ""
    authors: list[Author] = Field(default_factory=list)
    citation: Citation | None = None
