"""``reference``: the method that labels configurations, one module per method picked by
``kind:`` (GFN-xTB through tblite, CP2K DFT), each saying which dispersion its labels contain and
how failed calculations are retried by default. A new method is a module here whose class
``REFERENCE_METHODS.register`` decorates, and its calculator module in ``engine/labels/``."""

from __future__ import annotations

from typing import Any

from ilcampaign.campaign.spec.registry import REFERENCE_METHODS

REFERENCE_METHODS.discover(__name__, __path__)

Reference = REFERENCE_METHODS.union()


def dispersion(reference: Any) -> tuple[str, ...]:
    """The dispersion terms a reference method's labels contain, in words (empty: none)."""
    return reference.dispersion()
