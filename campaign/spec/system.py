"""``system``: the ions (by SMILES), the box density and how PACKMOL builds the box."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ilcampaign.campaign.spec.base import Section
from ilcampaign.campaign.spec.reference.xtb import XTBMethod
from ilcampaign.campaign.units import Density, Force, Length


class Ion(Section):
    """One ion species: its SMILES (formal charges included) and how many are in the box."""

    name: str = Field(pattern=r"^[A-Za-z0-9_+-]+$")
    smiles: str
    count: int = Field(ge=1)

    @field_validator("smiles")
    @classmethod
    def _parse_smiles(cls, smiles: str) -> str:
        formal_charge(smiles)
        return smiles


def formal_charge(smiles: str) -> int:
    """Net formal charge of a SMILES string, parsed with RDKit; ValueError if RDKit rejects it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}; check brackets, ring closures and charges")
    return Chem.GetFormalCharge(mol)


class IonRelaxation(Section):
    """How each ion's 3D structure is made before packing: RDKit embedding (MMFF where it has
    parameters; hypervalent centres such as P in PF6- placed on their ideal polyhedron), then
    relaxed in vacuum, with the ion's charge, by xTB through tblite."""

    method: XTBMethod = "GFN2-xTB"
    fmax: Force = Field(default=0.01, gt=0)
    max_steps: int = Field(default=1000, ge=1)


class System(Section):
    """The simulation box: ions, density, and how PACKMOL builds it."""

    ions: list[Ion] = Field(min_length=1)
    density: Density = Field(gt=0, description="target mass density of the box")
    packing_density: Density | None = Field(
        default=None,
        gt=0,
        description="density PACKMOL packs at (defaults to `density`); if lower, molecules are then moved "
        "rigidly (centres of mass scaled) to the target density",
    )
    packmol_tolerance: Length = Field(default=2.0, gt=0, description="minimum distance between molecules")
    relax_ions: IonRelaxation | None = Field(
        default_factory=IonRelaxation, description="null: pack RDKit's force-field structures as they are")

    @model_validator(mode="after")
    def _check(self) -> System:
        names = [ion.name for ion in self.ions]
        if len(set(names)) != len(names):
            raise ValueError(f"ion names must be unique, got {names}")
        charge = sum(formal_charge(ion.smiles) * ion.count for ion in self.ions)
        if charge != 0:
            parts = ", ".join(f"{ion.count} x {ion.name} ({formal_charge(ion.smiles):+d})" for ion in self.ions)
            raise ValueError(f"the ion set is not neutral: {parts} gives a net charge of {charge:+d}; adjust the counts")
        if self.packing_density is None:
            self.packing_density = self.density
        if self.packing_density > self.density * (1 + 1e-9):
            raise ValueError("packing_density must not exceed density (pack loose, then compress)")
        return self
