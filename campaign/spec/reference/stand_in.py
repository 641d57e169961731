"""``reference: {kind: stand_in}``: a fast classical stand-in for a reference method, which
``campaign rehearse`` puts in place of the real one (it is not meant for studies): the labels of a
simple force field of the ions, plus the dispersion the real method's labels contain."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ilcampaign.campaign.spec.base import Section, not_hashed
from ilcampaign.campaign.spec.registry import REFERENCE_METHODS


@REFERENCE_METHODS.register
class StandIn(Section):
    """A stand-in for the reference method ``mirrors`` (that method's whole section): an elastic
    network within each ion, Lennard-Jones and damped Coulomb between ions, plus dispersion as the
    real method has it. A D3 block of the real method (CP2K's ``d3``) is added as torch-dftd D3(BJ)
    with its parameters, so a relabel with ``{d3: null}`` removes it as it removes the real one;
    dispersion built into the real method (xTB's) is added as a D3(BJ) term nothing removes."""

    default_retries: ClassVar[list[dict[str, Any]]] = []

    kind: Literal["stand_in"] = "stand_in"
    mirrors: dict[str, Any] = Field(description="the reference section this stands in for")
    ions: list[str] = Field(min_length=1, description="the system's ions' SMILES: each ion's topology")
    threads: int = not_hashed(default=1, ge=1, description="OpenMP threads (torch-dftd)")

    @field_validator("mirrors")
    @classmethod
    def _a_real_method(cls, value: dict[str, Any]) -> dict[str, Any]:
        kind = value.get("kind")
        if kind not in REFERENCE_METHODS.classes or kind == "stand_in":
            raise ValueError(f"mirrors: a reference section of one of {', '.join(REFERENCE_METHODS.names())}")
        return REFERENCE_METHODS[kind].model_validate(value).model_dump(mode="json")

    def real(self) -> Any:
        """The section of the method this stands in for."""
        return REFERENCE_METHODS[self.mirrors["kind"]].model_validate(self.mirrors)

    def dispersion(self) -> tuple[str, ...]:
        """The real method's dispersion terms: the labels carry them."""
        return self.real().dispersion()

    def removable_d3(self) -> Any:
        """The real method's D3 block (a relabel with ``d3: null`` removes it), or None."""
        return getattr(self.real(), "d3", None)
