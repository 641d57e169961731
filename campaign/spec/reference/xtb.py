"""``reference: {kind: xtb}``: GFN-xTB through tblite, the fast embedded reference method."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from ilcampaign.campaign.spec.base import Section, not_hashed
from ilcampaign.campaign.spec.registry import REFERENCE_METHODS
from ilcampaign.campaign.units import Temperature

XTBMethod = Literal["GFN2-xTB", "GFN1-xTB"]

#: dispersion that each method's energy contains by construction
BUILT_IN_DISPERSION = {"GFN2-xTB": "D4 (built into GFN2-xTB)", "GFN1-xTB": "D3(BJ) (built into GFN1-xTB)"}


@REFERENCE_METHODS.register
class XTB(Section):
    """GFN-xTB through tblite: the fast embedded reference method."""

    #: failure retries by default: a higher electronic temperature (Fermi smearing) converges most SCFs
    default_retries: ClassVar[list[dict[str, Any]]] = [{"electronic_temperature": 1000.0},
                                                       {"electronic_temperature": 3000.0}]

    kind: Literal["xtb"] = "xtb"
    method: XTBMethod = "GFN2-xTB"
    electronic_temperature: Temperature = Field(default=300.0, gt=0)
    accuracy: float = Field(default=1.0, gt=0)
    max_iterations: int = Field(default=250, ge=1)
    threads: int = not_hashed(
        default=1, ge=1, description="OpenMP threads; more is faster but not bit-reproducible (parallel sums)"
    )

    def dispersion(self) -> tuple[str, ...]:
        """The dispersion terms the labels contain, in words: xTB's own."""
        return (BUILT_IN_DISPERSION[self.method],)
