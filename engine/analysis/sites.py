"""What an analysis looks at: single atoms or centres of mass of atom groups (molecules, or the
atoms of one element within each molecule), with helpers that find the molecules of one ion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Molecule:
    """One molecule of a box: its id, its atom indices (consecutive) and their element symbols."""

    mol_id: int
    atoms: np.ndarray
    symbols: tuple[str, ...]


def molecules(mol_ids: np.ndarray, numbers: np.ndarray) -> list[Molecule]:
    """The molecules of a box: runs of equal ``mol_ids`` (atoms of a molecule are consecutive)."""
    from ase.data import chemical_symbols

    mol_ids, numbers = np.asarray(mol_ids), np.asarray(numbers)
    starts = np.flatnonzero(np.diff(mol_ids) != 0) + 1
    bounds = zip([0, *starts], [*starts, len(mol_ids)])
    return [Molecule(int(mol_ids[s]), np.arange(s, e), tuple(chemical_symbols[z] for z in numbers[s:e]))
            for s, e in bounds]


def of_species(mols: Sequence[Molecule], symbols: Sequence[str]) -> list[Molecule]:
    """The molecules whose element symbols are ``symbols`` in order (an ion's template, e.g.
    ``ilcampaign.engine.structures.guards.template(smiles).symbols``)."""
    symbols = tuple(symbols)
    return [m for m in mols if m.symbols == symbols]


def element_groups(mols: Sequence[Molecule], element: str) -> list[np.ndarray]:
    """Per molecule, the indices of its atoms of ``element`` (e.g. the B of each BF4)."""
    groups = [m.atoms[[s == element for s in m.symbols]] for m in mols]
    if any(len(g) == 0 for g in groups):
        raise ValueError(f"a molecule has no {element} atom")
    return groups


class Sites:
    """Points per frame: atoms by index, or mass-weighted centres of atom groups. Centres are taken
    from the file's unwrapped coordinates, so molecules are whole."""

    def __init__(self, indices: np.ndarray | None = None, weights: np.ndarray | None = None):
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.weights = weights  # (n_sites, n_atoms) mass fractions, or None for plain atoms

    @classmethod
    def atoms(cls, indices: Sequence[int]) -> Sites:
        """Each atom of ``indices`` is a site."""
        return cls(indices=np.asarray(indices, dtype=np.int64))

    @classmethod
    def centres_of_mass(cls, groups: Sequence[Sequence[int]], masses: np.ndarray) -> Sites:
        """One site per group of atom indices, at the group's centre of mass (``masses`` per atom)."""
        masses = np.asarray(masses, dtype=np.float64)
        weights = np.zeros((len(groups), len(masses)))
        for k, group in enumerate(groups):
            group = np.asarray(group, dtype=np.int64)
            weights[k, group] = masses[group] / masses[group].sum()
        return cls(weights=weights)

    @property
    def n_sites(self) -> int:
        return len(self.indices) if self.weights is None else len(self.weights)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Site positions ``(b, n_sites, 3)`` from atom positions ``(b, n_atoms, 3)``."""
        if self.weights is None:
            return positions[:, self.indices]
        return np.matmul(self.weights, positions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sites) or (self.weights is None) != (other.weights is None):
            return False
        if self.weights is None:
            return np.array_equal(self.indices, other.indices)
        return np.array_equal(self.weights, other.weights)

    __hash__ = None
