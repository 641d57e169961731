"""``reference: {kind: cp2k}``: CP2K Quickstep DFT (the production reference), and its D3 block."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field

from ilcampaign.campaign.spec.base import Section, not_hashed
from ilcampaign.campaign.spec.registry import REFERENCE_METHODS
from ilcampaign.campaign.units import Length, PlaneWaveCutoff


class D3(Section):
    """Grimme D3 with Becke-Johnson damping, as CP2K's PAIR_POTENTIAL block."""

    reference_functional: str = "B97-3c"
    cutoff: Length = Field(default=7.93766, gt=0, description="R_CUTOFF of the pair potential")
    three_body: bool = Field(default=True, description="CALCULATE_C9_TERM")
    short_range_correction: bool = True
    parameter_file: str = "dftd3.dat"


class SCF(Section):
    """SCF settings: orbital transformation (OT) with an outer loop, as in the paper."""

    guess: Literal["restart", "atomic", "core"] = "restart"
    max_scf: int = Field(default=100, ge=1)
    eps_scf: float = Field(default=1e-6, gt=0)
    minimizer: Literal["DIIS", "CG", "BROYDEN", "SD"] = "DIIS"
    preconditioner: Literal["FULL_SINGLE_INVERSE", "FULL_ALL", "FULL_KINETIC"] = "FULL_SINGLE_INVERSE"
    outer_max_scf: int = Field(default=100, ge=1)
    outer_eps_scf: float = Field(default=1e-6, gt=0)


@REFERENCE_METHODS.register
class CP2K(Section):
    """CP2K Quickstep DFT through ASE's CP2K calculator (production reference)."""

    #: failure retries by default: an atomic guess with more SCF steps
    default_retries: ClassVar[list[dict[str, Any]]] = [{"scf": {"guess": "atomic", "max_scf": 300}}]

    kind: Literal["cp2k"] = "cp2k"
    functional: str = Field(default="B97-3c", description="B97-3c (via &BECKE97) or any CP2K XC shortcut, e.g. PBE")
    basis_set: str = "TZVP-GTH"
    basis_set_file: str = "GTH_BASIS_SETS"
    pseudopotential: str = "GTH-PBE"
    potential_file: str = "GTH_POTENTIALS"
    cutoff: PlaneWaveCutoff = Field(default="800 Ry", gt=0, description="plane-wave cutoff of the finest grid")
    rel_cutoff: PlaneWaveCutoff = Field(default="60 Ry", gt=0)
    ngrids: int = Field(default=5, ge=1)
    eps_pgf_orb: float = Field(default=1e-4, gt=0)
    eps_filter_matrix: float = Field(default=0.0, ge=0)
    scf: SCF = Field(default_factory=SCF)
    d3: D3 | None = Field(default_factory=D3, description="null for no dispersion correction")
    extra_input: str = Field(default="", description="raw CP2K input merged into the generated one")
    command: str = not_hashed(default="cp2k_shell", description="cp2k shell executable")
    threads: int = not_hashed(default=1, ge=1, description="OMP_NUM_THREADS for CP2K")

    def dispersion(self) -> tuple[str, ...]:
        """The dispersion terms the labels contain, in words (empty: none)."""
        terms = []
        if self.d3 is not None:
            d3 = self.d3
            terms.append(f"D3(BJ) in CP2K ({d3.reference_functional}, R_cutoff {d3.cutoff:g} A"
                         f"{', C9 three-body' if d3.three_body else ''})")
        if re.search(r"&\s*VDW_POTENTIAL", self.extra_input, re.IGNORECASE):
            terms.append("a CP2K &VDW_POTENTIAL from extra_input")
        return tuple(terms)
