"""``reference: {kind: stand_in}``: the fast classical stand-in that rehearsals label with.

A box is read as consecutive ions of the spec's SMILES (as the guards read it). Within an ion,
bonded atoms and atoms two bonds apart are held by harmonic springs at their distance in a
reference conformer of the ion (RDKit, engine.structures.ions.conformer): bond lengths and angles
barely differ between conformers, so a box packed from other conformers starts near its minimum;
torsions are free. Between ions, and within an ion beyond three bonds, atoms interact by Lennard-Jones with RDKit's UFF parameters (with a constant
force inside 0.8 of the minimum: PACKMOL may leave an atom close to another molecule's periodic
image, where the r^-12 wall would explode any MD); between ions also
by Coulomb of Gasteiger charges (scaled by 0.8, as ionic-liquid force fields scale theirs), damped
and shifted (Fennell and Gezelter 2006), so energy and forces go smoothly to zero at the cutoff
in any periodic box. The dispersion the real method's labels contain is added as torch-dftd
D3(BJ), two-body only (torch-dftd's three-body term takes seconds a call on a CPU): its D3 block
with that block's functional and cutoff, or a fixed term where dispersion is built in.
Energy, forces and stress (the virial of the pair terms) are consistent: stress is the strain
derivative of the energy.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ilcampaign.campaign.spec.reference.stand_in import StandIn
from ilcampaign.engine.labels.method import LabelMethod, ReferenceFailure, register_method

COULOMB = 14.399645  # eV A / e^2
CHARGE_SCALE = 0.8
SPRINGS = {1: 20.0, 2: 4.0}  # eV/A^2 for pairs 1 and 2 bonds apart
CUTOFF = 8.0  # A, Lennard-Jones and Coulomb
DAMPING = 0.2  # 1/A, the Coulomb damping (alpha)
BUILT_IN_D3 = "pbe"  # the D3(BJ) parameters standing in for dispersion built into a method
SOFT_CORE = 0.8  # x the Lennard-Jones minimum: inside, the force stays at its value there


@register_method
class StandInMethod(LabelMethod):
    kind = "stand_in"
    program = "ilcampaign stand-in"
    url = "https://github.com/ilcampaign/ilcampaign"

    @staticmethod
    def calculator(reference: StandIn, charge: int, workdir: Path) -> Any:
        return StandInCalculator(reference)

    @staticmethod
    def version(reference: StandIn) -> str | None:
        return package_version("ilcampaign")

    @staticmethod
    def level(reference: StandIn) -> str:
        real = reference.real()
        return f"stand-in for {real.kind} {getattr(real, 'method', None) or getattr(real, 'functional', '')}".strip()


@lru_cache(maxsize=32)
def ion_model(smiles: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An ion's elements, springs (i, j, bonds apart, rest length), the pairs beyond three bonds,
    charges (e) and UFF Lennard-Jones (r_min A, depth eV) per atom, in RDKit's atom order."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdForceFieldHelpers

    from ilcampaign.engine.structures.ions import conformer

    reference = conformer(smiles, seed=0)
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    hops = Chem.GetDistanceMatrix(mol)
    positions = reference.get_positions()
    springs, far = [], []
    for i in range(len(mol.GetAtoms())):
        for j in range(i + 1, len(mol.GetAtoms())):
            if hops[i, j] <= max(SPRINGS):
                springs.append((i, j, int(hops[i, j]), float(np.linalg.norm(positions[j] - positions[i]))))
            elif hops[i, j] > 3:
                far.append((i, j))
    AllChem.ComputeGasteigerCharges(mol)
    charges = np.array([atom.GetDoubleProp("_GasteigerCharge") for atom in mol.GetAtoms()])
    charges += (Chem.GetFormalCharge(mol) - charges.sum()) / len(charges)  # exactly the formal charge
    kcal = 0.0433641043  # eV per kcal/mol
    lj = np.array([rdForceFieldHelpers.GetUFFVdWParams(mol, i, i) for i in range(len(charges))])
    return (tuple(a.GetSymbol() for a in mol.GetAtoms()), np.array(springs).reshape(-1, 4),
            np.array(far, dtype=int).reshape(-1, 2), charges, lj * [1.0, kcal])


class StandInCalculator(Calculator):
    """Energy (eV), forces (eV/A) and stress (eV/A^3) of the stand-in force field (module docstring)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, reference: StandIn):
        super().__init__()
        self.reference = reference
        self.dispersion_terms = _dispersion(reference)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        topology = _topology(self.atoms, self.reference.ions)
        if topology is None:
            raise ReferenceFailure("the stand-in reads boxes of the spec's ions in order; this one is not")
        energy, forces, virial = _pair_terms(self.atoms, *topology)
        periodic = bool(self.atoms.pbc.all())
        for term in self.dispersion_terms:
            probe = self.atoms.copy()
            term.calculate(probe, ["energy", "forces", *(["stress"] if periodic else [])], all_changes)
            energy += float(term.results["energy"])
            forces += term.results["forces"]
            if periodic:
                virial -= _full(term.results["stress"]) * self.atoms.get_volume()
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise ReferenceFailure("the stand-in gave a non-finite energy or force")
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if self.atoms.pbc.all():
            stress = -virial / self.atoms.get_volume()
            self.results["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def _full(voigt: np.ndarray) -> np.ndarray:
    xx, yy, zz, yz, xz, xy = voigt
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def _dispersion(reference: StandIn) -> list[Calculator]:
    """torch-dftd D3(BJ) terms for the dispersion the real method's labels hold."""
    import torch
    from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

    terms = []
    block = reference.removable_d3()
    if block is not None:
        terms.append(TorchDFTD3Calculator(xc=block.reference_functional.lower(), damping="bj", cutoff=block.cutoff,
                                          cnthr=block.cutoff, dtype=torch.float64))
    if len(reference.dispersion()) > (block is not None):
        terms.append(TorchDFTD3Calculator(xc=BUILT_IN_D3, damping="bj", cutoff=CUTOFF, cnthr=CUTOFF,
                                          dtype=torch.float64))
    return terms


def _topology(atoms, smiles: list[str]):
    """Per-atom charges and Lennard-Jones parameters, the springs and the excluded intramolecular
    pairs, with atom indices in the box; None if the box is not consecutive ions of ``smiles``."""
    symbols = atoms.get_chemical_symbols()
    charges, lj, springs, far, molecule = [], [], [], [], []
    position, count = 0, 0
    while position < len(atoms):
        match = next((s for s in smiles if tuple(symbols[position:position + len(ion_model(s)[0])])
                      == ion_model(s)[0]), None)
        if match is None:
            return None
        elements, ion_springs, ion_far, ion_charges, ion_lj = ion_model(match)
        springs.append(ion_springs + [position, position, 0, 0])
        far.append(ion_far + position)
        charges.append(ion_charges)
        lj.append(ion_lj)
        molecule += [count] * len(elements)
        position, count = position + len(elements), count + 1
    return (np.concatenate(charges), np.concatenate(lj), np.concatenate(springs), np.concatenate(far),
            np.array(molecule))


def _pair_terms(atoms, charges, lj, springs, far, molecule) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, forces and virial (sum over pairs of r_ij (x) f_ij) of springs, Lennard-Jones and
    damped shifted-force Coulomb, with minimum-image springs and every periodic image within
    the cutoff for the rest."""
    from ase.geometry import find_mic
    from ase.neighborlist import neighbor_list
    from scipy.special import erfc

    n = len(atoms)
    forces = np.zeros((n, 3))
    virial = np.zeros((3, 3))
    energy = 0.0

    def add(i: np.ndarray, j: np.ndarray, vectors: np.ndarray, energies: np.ndarray, slopes: np.ndarray) -> None:
        """Pairs i-j at ``vectors`` (j - i) with energies E(r) and dE/dr."""
        nonlocal energy
        distance = np.linalg.norm(vectors, axis=1)
        pull = (slopes / distance)[:, None] * vectors  # dE/d(vector)
        np.add.at(forces, i, pull)
        np.add.at(forces, j, -pull)
        virial[:] += -(vectors.T @ pull)
        energy += float(energies.sum())

    i, j = springs[:, 0].astype(int), springs[:, 1].astype(int)
    vectors = atoms.positions[j] - atoms.positions[i]
    if atoms.pbc.any():
        vectors, _ = find_mic(vectors, atoms.cell, atoms.pbc)
    k = np.array([SPRINGS[int(h)] for h in springs[:, 2]])
    stretch = np.linalg.norm(vectors, axis=1) - springs[:, 3]
    add(i, j, vectors, 0.5 * k * stretch**2, k * stretch)

    first, second, shifts = neighbor_list("ijS", atoms, CUTOFF, self_interaction=False)
    keep = first < second
    first, second, shifts = first[keep], second[keep], shifts[keep]
    vectors = atoms.positions[second] - atoms.positions[first] + shifts @ atoms.cell.array
    distance = np.linalg.norm(vectors, axis=1)
    same = molecule[first] == molecule[second]
    nearest_image = np.zeros_like(same)  # the image of a pair within an ion that the ion's own geometry gives
    if same.any():
        direct = atoms.positions[second[same]] - atoms.positions[first[same]]
        if atoms.pbc.any():
            direct, _ = find_mic(direct, atoms.cell, atoms.pbc)
        nearest_image[same] = np.abs(np.linalg.norm(direct, axis=1) - distance[same]) < 1e-6
    beyond = np.zeros((n, n), dtype=bool)
    beyond[far[:, 0], far[:, 1]] = True
    bonded = nearest_image & ~beyond[first, second]
    first, second, vectors, distance, same = (first[~bonded], second[~bonded], vectors[~bonded], distance[~bonded],
                                              nearest_image[~bonded])
    r_min = np.sqrt(lj[first, 0] * lj[second, 0])
    depth = np.sqrt(lj[first, 1] * lj[second, 1])

    def lennard_jones(r):
        core = SOFT_CORE * r_min
        x = np.maximum(r, core)
        x6 = (r_min / x) ** 6
        energy, slope = depth * (x6**2 - 2 * x6), 12 * depth * (x6 - x6**2) / x
        return energy + slope * (r - x), slope  # linear inside the core: energy and force continuous

    e_lj, de_lj = lennard_jones(distance)
    e_cut, de_cut = lennard_jones(np.full_like(distance, CUTOFF))
    add(first, second, vectors, e_lj - e_cut - (distance - CUTOFF) * de_cut, de_lj - de_cut)

    qq = COULOMB * CHARGE_SCALE**2 * charges[first] * charges[second] * ~same  # no Coulomb within an ion
    cut = erfc(DAMPING * CUTOFF) / CUTOFF**2 + 2 * DAMPING / np.sqrt(np.pi) * np.exp(-(DAMPING * CUTOFF) ** 2) / CUTOFF
    screened = erfc(DAMPING * distance) / distance
    slope = -(erfc(DAMPING * distance) / distance**2
              + 2 * DAMPING / np.sqrt(np.pi) * np.exp(-(DAMPING * distance) ** 2) / distance)
    add(first, second, vectors, qq * (screened - erfc(DAMPING * CUTOFF) / CUTOFF + cut * (distance - CUTOFF)),
        qq * (slope + cut))
    return energy, forces, virial
