"""The hybrid model in ASE: an MLP calculator plus torch-dftd D3 (with the neighbour-list skin) and,
optionally, the D3 tail beyond the cutoff. Our JAX MD runs the same sum in its loop
(``jax_term``); this is the path for Langevin, box ramps, zero damping and the tail in NPT."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from ilcampaign.engine.dispersion.label_shift import SUMMED
from ilcampaign.engine.dispersion.tail import D3TailCalculator
from ilcampaign.engine.dispersion.torch_dftd import SkinD3Calculator

if TYPE_CHECKING:
    from ilcampaign.campaign.spec import DispersionCorrection


class HybridCalculator(Calculator):
    """``mlp`` + ``terms`` (D3, and its tail correction): energy, free energy, forces and stress are
    summed; every other result of the MLP (e.g. ``forces_uncertainty``) is passed through, which
    ASE's SumCalculator drops."""

    def __init__(self, mlp: Calculator, *terms: Calculator):
        super().__init__()
        self.mlp, self.terms = mlp, terms
        self.summed = [key for key in SUMMED if key in mlp.implemented_properties]
        self.implemented_properties = self.summed + [p for p in mlp.implemented_properties if p not in SUMMED]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        for name in properties:
            self.mlp.get_property(name, self.atoms)
        self.results = dict(self.mlp.results)
        present = [key for key in self.summed if key in self.results]
        # forces first: torch-dftd then gets energy, forces and stress in one evaluation
        for key in sorted(present, key=lambda key: key != "forces"):
            self.results[key] = _voigt(self.results[key])
            for term in self.terms:
                self.results[key] = self.results[key] + _voigt(term.get_property(key, self.atoms))


def _voigt(value: Any) -> Any:
    """A stress as ASE's Voigt 6-vector (apax reports the full 3x3 tensor, torch-dftd Voigt)."""
    from ase.stress import full_3x3_to_voigt_6_stress

    return full_3x3_to_voigt_6_stress(value) if np.shape(value) == (3, 3) else value


def calculator_options(section: DispersionCorrection, cutoff: float | None = None) -> dict[str, Any]:
    """Keyword arguments of this module's calculators for a spec's d3 section (``cutoff`` in A instead of
    the section's, if given)."""
    return {"xc": section.functional, "damping": section.damping,
            "cutoff": section.cutoff if cutoff is None else float(cutoff), "cn_cutoff": section.cn_cutoff,
            "skin": section.skin, "dtype": getattr(torch, section.dtype), "tail_correction": section.tail_correction}


def hybrid_calculator(mlp_calc: Calculator, tail_correction: bool = False, **d3_params) -> HybridCalculator:
    """The MLP calculator plus a ``SkinD3Calculator(**d3_params)`` and, with ``tail_correction``, the
    D3 tail beyond its cutoff."""
    terms = [SkinD3Calculator(**d3_params)]
    if tail_correction:
        terms.append(D3TailCalculator(d3_params.get("xc", "b97-3c"), d3_params["cutoff"], d3_params.get("cn_cutoff")))
    return HybridCalculator(mlp_calc, *terms)
