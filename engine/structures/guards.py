"""Contact and force checks on configurations: bonded pairs too short or too long, non-bonded pairs
overlapping, forces beyond a physical bound.

Which pairs are bonded comes from the ions' SMILES (RDKit's atom order with hydrogens added, the
order every box is built in): a box is read as consecutive molecules (by ``mol_id`` where frames
carry it), each matched to an ion by its elements. A frame that matches no ion sequence is
checked without topology: every pair against ``bonded_min``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from ilcampaign.campaign.spec import Contacts

if TYPE_CHECKING:
    from ase import Atoms


@dataclass(frozen=True)
class Template:
    """One ion: its element symbols and bonds (atom index pairs, i < j) in RDKit's order."""

    symbols: tuple[str, ...]
    bonds: tuple[tuple[int, int], ...]


@lru_cache(maxsize=64)
def template(smiles: str) -> Template:
    """The ion of ``smiles`` with explicit hydrogens, as RDKit orders its atoms."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    bonds = sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds())
    return Template(tuple(atom.GetSymbol() for atom in mol.GetAtoms()), tuple(bonds))


@dataclass(frozen=True)
class Violation:
    """The worst contact of a configuration: which atoms, how far apart, and the bound they break."""

    kind: str  # "bonded", "broken bond", "non-bonded" or, without topology, "contact"
    i: int
    j: int
    symbols: tuple[str, str]
    distance: float
    bound: float
    factor: float

    @property
    def severity(self) -> float:
        """How far beyond its bound (> 1): bound / distance, or distance / bound for a broken bond."""
        return self.distance / self.bound if self.kind == "broken bond" else self.bound / self.distance

    def __str__(self) -> str:
        a, b = self.symbols
        side = "above" if self.kind == "broken bond" else "below"
        return (f"{a}{self.i}-{b}{self.j} ({self.kind}) {self.distance:.2f} A apart, {side} {self.factor:g} x "
                f"their covalent radii = {self.bound:.2f} A")


def bonds_of(atoms: Atoms, templates: list[Template]) -> np.ndarray | None:
    """The bonds (n, 2) of ``atoms`` read as consecutive ions of ``templates``; None if it cannot be read
    so (a frame from a file in another order)."""
    symbols = atoms.get_chemical_symbols()
    if "mol_id" in atoms.arrays:
        ids = atoms.arrays["mol_id"]
        starts = [0, *np.flatnonzero(np.diff(ids) != 0) + 1]
        blocks = list(zip(starts, [*starts[1:], len(atoms)]))
    else:
        blocks = None
    bonds, position = [], 0
    while position < len(atoms):
        end = None if blocks is None else next((e for s, e in blocks if s == position), None)
        match = next((t for t in templates if (end is None or len(t.symbols) == end - position)
                      and tuple(symbols[position:position + len(t.symbols)]) == t.symbols), None)
        if match is None:
            return None
        bonds += [(position + i, position + j) for i, j in match.bonds]
        position += len(match.symbols)
    return np.array(bonds, dtype=int).reshape(-1, 2)


def worst_contact(atoms: Atoms, bonds: np.ndarray | None, contacts: Contacts) -> Violation | None:
    """The contact of ``atoms`` furthest beyond its bound (``bonds``: from ``bonds_of``; None checks every
    pair against ``bonded_min``), or None when all are within bounds. Periodic images are included."""
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    radii = covalent_radii[atoms.numbers]
    symbols = atoms.get_chemical_symbols()
    found: list[Violation] = []

    def add(kind: str, i: int, j: int, distance: float, factor: float) -> None:
        found.append(Violation(kind, int(i), int(j), (symbols[i], symbols[j]), float(distance),
                               float(factor * (radii[i] + radii[j])), factor))

    widest = contacts.nonbonded_min if bonds is not None else contacts.bonded_min
    if len(atoms) > 1:
        first, second, distance = neighbor_list("ijd", atoms, radii * widest, self_interaction=False)
        bonded = set() if bonds is None else set(map(tuple, np.sort(bonds, axis=1).tolist()))
        for i, j, d in zip(first, second, distance):
            if i > j:
                continue
            is_bond = bonds is None or (int(i), int(j)) in bonded
            factor = contacts.bonded_min if is_bond else contacts.nonbonded_min
            if d < factor * (radii[i] + radii[j]):
                add(("bonded" if is_bond else "non-bonded") if bonds is not None else "contact", i, j, d, factor)
    if bonds is not None and len(bonds) and contacts.bonded_max is not None:
        lengths = bond_lengths(atoms, bonds)
        limit = contacts.bonded_max * (radii[bonds[:, 0]] + radii[bonds[:, 1]])
        for k in np.flatnonzero(lengths > limit):
            add("broken bond", *bonds[k], lengths[k], contacts.bonded_max)
    return max(found, key=lambda v: v.severity) if found else None


def bond_lengths(atoms: Atoms, bonds: np.ndarray) -> np.ndarray:
    """Minimum-image lengths (A) of ``bonds``."""
    from ase.geometry import find_mic

    vectors = atoms.positions[bonds[:, 1]] - atoms.positions[bonds[:, 0]]
    if atoms.pbc.any():
        vectors, _ = find_mic(vectors, atoms.cell, atoms.pbc)
    return np.linalg.norm(vectors, axis=1)


def max_force(atoms: Atoms) -> float:
    """The largest force component (eV/A) of a labelled configuration."""
    return float(np.abs(atoms.get_forces()).max())


class ContactCheck:
    """``worst_contact`` for frames of one composition: the bonds are read once per atom count."""

    def __init__(self, contacts: Contacts, smiles: list[str]):
        self.contacts = contacts
        self.templates = sorted((template(s) for s in smiles), key=lambda t: -len(t.symbols))
        self._bonds: dict[tuple, np.ndarray | None] = {}

    def __call__(self, atoms: Atoms) -> Violation | None:
        ids = atoms.arrays.get("mol_id")
        key = (tuple(atoms.numbers), None if ids is None else tuple(ids))
        if key not in self._bonds:
            self._bonds[key] = bonds_of(atoms, self.templates)
        return worst_contact(atoms, self._bonds[key], self.contacts)
