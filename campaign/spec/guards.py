"""``guards``: checks that keep unphysical structures out of a campaign, with thresholds that never
fire on a healthy liquid. Contacts are measured against the sum of the two atoms' covalent radii
(ASE's, Cordero 2008), bonds against their length in the relaxed ion; which pairs are bonded comes
from the ions' SMILES."""

from __future__ import annotations

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.base import Section
from ilcampaign.campaign.units import Force


class Contacts(Section):
    """Distances between atoms, as fractions of the sum of their covalent radii. Applied to the
    relaxed ions, the packed box, every initial-MD frame (whatever drives it), rattled frames and
    every sampler's candidates (MD and geometry optimisation stop at the first frame that fails,
    like the uncertainty stop)."""

    bonded_min: float = Field(default=0.6, gt=0, description="a bond shorter than this has collapsed "
                              "(C-H 0.64 A, C-C 0.91 A; a C#N triple bond sits at 0.79)")
    bonded_max: float | None = Field(default=1.6, gt=1, description="a bond longer than this is broken "
                                     "(C-H 1.71 A); null for liquids whose protons transfer")
    nonbonded_min: float = Field(default=0.9, gt=0, description="atoms not bonded to each other closer than "
                                 "this overlap (H...H 0.56 A, H...F 0.79 A, F...F 1.03 A)")

    @model_validator(mode="after")
    def _check(self) -> Contacts:
        if self.bonded_min >= self.nonbonded_min:
            raise ValueError("bonded_min must be below nonbonded_min: bonded atoms sit closer than non-bonded ones")
        return self


class BondGuard(Section):
    """Each bond's length as a fraction of its length in the relaxed ion (the ``molecules`` step).
    Applied to every frame of the initial MD, rattled frames (redrawn until they pass) and every
    sampler's candidates (MD and geometry optimisation stop at the first frame that fails; ``select``
    drops it). Thermal motion at 500 K moves a C-H bond by about 0.05 A (5 %)."""

    min: float = Field(default=0.8, gt=0, lt=1, description="a bond shorter than this x its relaxed length is "
                       "compressed (C-H 0.87 A, C-C 1.22 A)")
    max: float | None = Field(default=1.5, gt=1, description="a bond longer than this x its relaxed length is "
                              "stretched beyond a liquid's reach (C-H 1.64 A); null for liquids whose protons transfer")


class TemperatureGuard(Section):
    """Every MD run (the initial MD whatever drives it, learning-on-the-fly, production) stops when its
    instantaneous temperature passes ``blow_up_ratio`` x its target once, or ``ratio`` x its target
    for ``steps`` steps in a row."""

    blow_up_ratio: float = Field(default=5.0, gt=1)
    ratio: float = Field(default=2.0, gt=1)
    steps: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _check(self) -> TemperatureGuard:
        if self.ratio >= self.blow_up_ratio:
            raise ValueError("ratio must be below blow_up_ratio (which fires on a single step)")
        return self


class Guards(Section):
    """The campaign's sanity checks; ``contacts: null`` and ``bonds: null`` switch those checks off."""

    contacts: Contacts | None = Field(default_factory=Contacts)
    bonds: BondGuard | None = Field(default_factory=BondGuard, description="null switches the bond guard off")
    temperature: TemperatureGuard = Field(default_factory=TemperatureGuard)
    max_force: Force | None = Field(
        default=50.0, gt=0, description="a reference label with a force component above this is refused as "
        "training data (recorded, never used); null accepts every label")
