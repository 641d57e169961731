"""The D3 pair dispersion beyond the cutoff, analytically for a homogeneous liquid: energy and
pressure (no forces), as a function of the coefficient sums (``jax_d3.tail_sums``) and as an ASE
calculator that adds it to a hybrid model (``d3: {tail_correction: true}``)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ilcampaign.engine.dispersion.jax_d3 import B97_3C, D3_AUTOANG, D3_AUTOEV, D3Params, tail_sums


def tail_terms(s6: float, s8: float, volume: float, params: D3Params, cutoff: float) -> tuple[float, np.ndarray]:
    """(energy eV, stress eV/A^3 in ASE's Voigt order and sign) of the pair dispersion beyond ``cutoff`` (A)
    in a homogeneous liquid of ``volume`` (A^3) (g(r) = 1 there, BJ damping negligible):

        E = -(2 pi / V) [s6 S6 / (3 rc^3) + s8 S8 / (5 rc^5)],  S_n = sum_i sum_j C_n,ij

    The pressure is the virial of the missing pairs, P = (2 E6 + 8/3 E8) / V, not -dE/dV of E
    alone (which gives E / V: it misses the pairs crossing the cutoff as the box scales); the
    stress is -P on the diagonal. The coefficients' dependence on the coordination numbers is
    neglected, so the term adds no force.
    """
    rc, v_bohr = cutoff / D3_AUTOANG, volume / D3_AUTOANG**3
    e6 = -2 * np.pi / v_bohr * params.s6 * s6 / (3 * rc**3) * D3_AUTOEV
    e8 = -2 * np.pi / v_bohr * params.s8 * s8 / (5 * rc**5) * D3_AUTOEV
    pressure = (2 * e6 + 8 / 3 * e8) / volume
    return e6 + e8, np.array([-pressure] * 3 + [0.0] * 3)


def tail_correction(atoms: Atoms, params: D3Params | str = B97_3C, cutoff: float = 20.0,
                    cn_cutoff: float | None = None) -> tuple[float, np.ndarray]:
    """:func:`tail_terms` of ``atoms`` at their own coordination numbers and volume."""
    if isinstance(params, str):
        params = D3Params.from_functional(params)
    s6, s8 = tail_sums(atoms, cutoff if cn_cutoff is None else min(cn_cutoff, cutoff))
    return tail_terms(s6, s8, abs(atoms.cell.volume), params, cutoff)


class D3TailCalculator(Calculator):
    """The analytic D3 pair tail beyond the cutoff (``tail_terms``): energy and stress
    of a homogeneous liquid, no forces. Its coefficient sums come from the first structure it sees
    and are kept (a fresh calculator per MD chunk, so results do not depend on where a run resumed;
    a liquid's coordination numbers barely change); the volume is always the current one."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, xc: str = "b97-3c", cutoff: float = 7.93766, cn_cutoff: float | None = None):
        super().__init__()
        self.params, self.cutoff = D3Params.from_functional(xc), cutoff
        self.cn_cutoff = cutoff if cn_cutoff is None else min(cn_cutoff, cutoff)
        self.sums: tuple[float, float] | None = None
        self.numbers: np.ndarray | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.sums is None or not np.array_equal(self.numbers, self.atoms.numbers):
            self.sums, self.numbers = tail_sums(self.atoms, self.cn_cutoff), self.atoms.numbers.copy()
        energy, stress = tail_terms(*self.sums, abs(self.atoms.cell.volume), self.params, self.cutoff)
        self.results = {"energy": energy, "free_energy": energy, "forces": np.zeros((len(self.atoms), 3)),
                        "stress": stress}
