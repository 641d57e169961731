"""Grimme D3(BJ) dispersion with torch-dftd: a neighbour-list-skin ASE calculator, D3 shifts of
labelled datasets (the same data with and without D3) and an MLP + D3 hybrid calculator.

torch-dftd rebuilds its (pymatgen) pair list on every call; the paper reuses it until atoms have moved
more than a 0.5 A skin, which roughly doubled the speed of MD with the D3 term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from torch import Tensor
from torch_dftd.functions.edge_extraction import calc_edge_index
from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

if TYPE_CHECKING:
    from ilcampaign.campaign.spec import DispersionCorrection

SUMMED = ("energy", "free_energy", "forces", "stress")  # additive properties of MLP and D3


class SkinD3Calculator(TorchDFTD3Calculator):
    """D3 calculator that builds its pair list with ``cutoff + skin`` and reuses it until an atom may
    have come within ``cutoff`` of a pair outside the list (Verlet criterion, cell strain included).

    Every call passes only the listed pairs within ``cutoff`` at the current geometry to torch-dftd,
    whose energy does not apply ``cutoff`` itself, so results equal a fresh evaluation. ``skin=0``
    rebuilds on every call (torch-dftd's own behaviour). ``n_builds``/``n_calls`` count list builds
    and evaluations.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        *,
        cutoff: float,
        cn_cutoff: float | None = None,
        skin: float = 0.5,
        xc: str = "b97-3c",
        damping: str = "bj",
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        **kwargs,
    ):
        """Lengths in Angstrom; ``cn_cutoff`` (coordination numbers) defaults to ``cutoff``."""
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        cn_cutoff = cutoff if cn_cutoff is None else cn_cutoff
        super().__init__(xc=xc, damping=damping, cutoff=cutoff, cnthr=cn_cutoff, dtype=dtype, device=device,
                         **kwargs)
        self.skin = skin
        self.n_builds = 0
        self.n_calls = 0
        self._pairs: tuple[Tensor, Tensor] | None = None  # edge_index, integer cell shifts S
        self._built_at: tuple[np.ndarray, np.ndarray | None, np.ndarray] | None = None  # positions, cell, pbc

    def _calc_edge_index(self, pos: Tensor, cell: Tensor | None = None, pbc: Tensor | None = None):
        """Pairs (and their cell shifts) within ``cutoff`` at ``pos``, from the cached list."""
        self.n_calls += 1
        state = (pos.detach().cpu().double().numpy(), None if cell is None else cell.detach().cpu().double().numpy(),
                 pbc.detach().cpu().numpy())
        if self._stale(*state):
            self._pairs = calc_edge_index(pos, cell, pbc, cutoff=self.cutoff + self.skin, bidirectional=True)
            self._built_at = state
            self.n_builds += 1
        edge_index, shifts = self._pairs
        with torch.no_grad():
            vectors = pos[edge_index[1]] - pos[edge_index[0]]
            if cell is not None:
                vectors = vectors + shifts @ cell
            keep = (vectors**2).sum(dim=1) <= self.cutoff**2
        return edge_index[:, keep], shifts[keep]

    def _stale(self, positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray) -> bool:
        """True if a pair now within ``cutoff`` may be missing from the list built at ``_built_at``.

        Positions are mapped into the build cell (same fractional coordinates); a pair's distance there
        changed by at most twice the largest mapped displacement, and the cell deformation F shrinks
        distances by at most its smallest singular value, so the list is complete while
        ``sigma_min(F) * (cutoff + skin - 2 * max_displacement) > cutoff``.
        """
        if self.skin == 0 or self._built_at is None:
            return True
        ref_positions, ref_cell, ref_pbc = self._built_at
        if positions.shape != ref_positions.shape or (pbc != ref_pbc).any() or (cell is None) != (ref_cell is None):
            return True
        stretch = 1.0
        if cell is not None and not np.array_equal(cell, ref_cell):
            if not pbc.all():  # a non-periodic direction may have a singular cell vector
                return True
            positions = positions @ np.linalg.solve(cell, ref_cell)
            stretch = np.linalg.svd(np.linalg.solve(ref_cell, cell), compute_uv=False).min()
        displacement = np.sqrt(((positions - ref_positions) ** 2).sum(axis=1).max())
        return stretch * (self.cutoff + self.skin - 2 * displacement) <= self.cutoff


def d3_results(
    frames: list[Atoms],
    *,
    xc: str = "b97-3c",
    damping: str = "bj",
    cutoff: float,
    cn_cutoff: float,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """D3 energy (eV), forces (eV/A) and, for periodic frames, Voigt stress (eV/A^3) of each frame."""
    calc = SkinD3Calculator(xc=xc, damping=damping, cutoff=cutoff, cn_cutoff=cn_cutoff, skin=0.0, dtype=dtype)
    out = []
    for atoms in frames:
        calc.reset()
        calc.calculate(atoms, ["energy", "forces"], all_changes)
        result = {"energy": float(calc.results["energy"])}
        result |= {key: np.array(calc.results[key], dtype=float) for key in ("forces", "stress") if key in calc.results}
        out.append(result)
    return out


def shift_labels(frames: list[Atoms], d3: list[dict], sign: int) -> list[Atoms]:
    """Copies of ``frames`` whose energy/free energy/forces/stress labels are shifted by ``sign`` (+1: add,
    -1: remove) times the D3 contribution; other labels and ``info`` are kept."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign}")
    if len(frames) != len(d3):
        raise ValueError(f"{len(frames)} frames but {len(d3)} D3 results")
    shifted = []
    for atoms, correction in zip(frames, d3):
        labels = dict(atoms.calc.results)
        for key in SUMMED:
            if key in labels:
                labels[key] = labels[key] + sign * correction["energy" if key == "free_energy" else key]
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, **labels)
        shifted.append(copy)
    return shifted


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


class D3TailCalculator(Calculator):
    """The analytic D3 pair tail beyond the cutoff (``ilcampaign.engine.dispersion.jax_d3.tail_terms``): energy and stress
    of a homogeneous liquid, no forces. Its coefficient sums come from the first structure it sees
    and are kept (a fresh calculator per MD chunk, so results do not depend on where a run resumed;
    a liquid's coordination numbers barely change); the volume is always the current one."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, xc: str = "b97-3c", cutoff: float = 7.93766, cn_cutoff: float | None = None):
        super().__init__()
        from ilcampaign.engine.dispersion.jax_d3 import D3Params

        self.params, self.cutoff = D3Params.from_functional(xc), cutoff
        self.cn_cutoff = cutoff if cn_cutoff is None else min(cn_cutoff, cutoff)
        self.sums: tuple[float, float] | None = None
        self.numbers: np.ndarray | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ilcampaign.engine.dispersion.jax_d3 import tail_sums, tail_terms

        super().calculate(atoms, properties, system_changes)
        if self.sums is None or not np.array_equal(self.numbers, self.atoms.numbers):
            self.sums, self.numbers = tail_sums(self.atoms, self.cn_cutoff), self.atoms.numbers.copy()
        energy, stress = tail_terms(*self.sums, abs(self.atoms.cell.volume), self.params, self.cutoff)
        self.results = {"energy": energy, "free_energy": energy, "forces": np.zeros((len(self.atoms), 3)),
                        "stress": stress}


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
