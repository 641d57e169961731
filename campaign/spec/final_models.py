"""``final_models``: models trained on the final dataset, optionally relabelled or D3-shifted first."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ilcampaign.campaign.spec.base import Section
from ilcampaign.campaign.units import Length


class FinalModel(Section):
    """A model trained on the whole final dataset, optionally relabelled first: ``relabel`` is a
    partial reference section applied to every frame (e.g. ``{d3: null}``: DFT without D3), and
    ``d3`` adds (``add``) or removes (``remove``) torch-dftd D3 from the labels, with the ``d3``
    section's settings and an optional ``d3_cutoff`` (used for both cutoffs)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    relabel: dict[str, Any] | None = None
    d3: Literal["keep", "add", "remove"] = "keep"
    d3_cutoff: Length | None = Field(default=None, gt=0)
    model: dict[str, Any] = Field(default_factory=dict, description="overrides of the model section")
