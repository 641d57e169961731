"""Contact, bond and force checks on configurations: bonded pairs too short or too long, non-bonded
pairs overlapping, bonds far from their length in the relaxed ion, forces beyond a physical bound.

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

from ilcampaign.campaign.spec import BondGuard, Contacts

if TYPE_CHECKING:
    from ase import Atoms


@dataclass(frozen=True)
class Template:
    """One ion: its element symbols, bonds (atom index pairs, i < j) in RDKit's order and formal charge."""

    symbols: tuple[str, ...]
    bonds: tuple[tuple[int, int], ...]
    charge: int = 0


@lru_cache(maxsize=64)
def template(smiles: str) -> Template:
    """The ion of ``smiles`` with explicit hydrogens, as RDKit orders its atoms."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    bonds = sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds())
    return Template(tuple(atom.GetSymbol() for atom in mol.GetAtoms()), tuple(bonds), Chem.GetFormalCharge(mol))


@dataclass(frozen=True)
class Violation:
    """The worst contact of a configuration: which atoms, how far apart, and the bound they break
    (``factor`` x ``basis``: their covalent radii, or the bond's relaxed length)."""

    kind: str  # "bonded", "broken bond", "non-bonded", without topology "contact"; "compressed/stretched bond"
    i: int
    j: int
    symbols: tuple[str, str]
    distance: float
    bound: float
    factor: float
    basis: str = "their covalent radii"

    @property
    def above(self) -> bool:
        """Whether the bound is an upper one (a bond too long)."""
        return self.kind in ("broken bond", "stretched bond")

    @property
    def guard(self) -> str:
        """Which guard it breaks: ``bond guard`` (relative to the relaxed length) or ``contact guard``."""
        return "bond guard" if self.kind in ("compressed bond", "stretched bond") else "contact guard"

    @property
    def severity(self) -> float:
        """How far beyond its bound (> 1): bound / distance, or distance / bound for an upper bound."""
        return self.distance / self.bound if self.above else self.bound / self.distance

    def __str__(self) -> str:
        a, b = self.symbols
        side = "above" if self.above else "below"
        return (f"{a}{self.i}-{b}{self.j} ({self.kind}) {self.distance:.2f} A apart, {side} {self.factor:g} x "
                f"{self.basis} = {self.bound:.2f} A")


def molecules_of(atoms: Atoms, templates: list[Template]) -> list[tuple[int, Template]] | None:
    """``atoms`` read as consecutive ions of ``templates``: each molecule's first atom and template;
    None if it cannot be read so (a frame from a file in another order)."""
    symbols = atoms.get_chemical_symbols()
    if "mol_id" in atoms.arrays:
        ids = atoms.arrays["mol_id"]
        starts = [0, *np.flatnonzero(np.diff(ids) != 0) + 1]
        blocks = list(zip(starts, [*starts[1:], len(atoms)]))
    else:
        blocks = None
    molecules, position = [], 0
    while position < len(atoms):
        end = None if blocks is None else next((e for s, e in blocks if s == position), None)
        match = next((t for t in templates if (end is None or len(t.symbols) == end - position)
                      and tuple(symbols[position:position + len(t.symbols)]) == t.symbols), None)
        if match is None:
            return None
        molecules.append((position, match))
        position += len(match.symbols)
    return molecules


def bonds_of(atoms: Atoms, templates: list[Template]) -> np.ndarray | None:
    """The bonds (n, 2) of ``atoms`` read as consecutive ions of ``templates``; None if it cannot be read
    so (a frame from a file in another order)."""
    molecules = molecules_of(atoms, templates)
    if molecules is None:
        return None
    bonds = [(start + i, start + j) for start, match in molecules for i, j in match.bonds]
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


def _composition(atoms: Atoms) -> tuple:
    """What a frame's topology depends on: its atoms and, where it has them, its molecule ids."""
    ids = atoms.arrays.get("mol_id")
    return tuple(atoms.numbers), None if ids is None else tuple(ids)


class ContactCheck:
    """``worst_contact`` for frames of one composition: the bonds are read once per composition."""

    def __init__(self, contacts: Contacts, smiles: list[str]):
        self.contacts = contacts
        self.templates = sorted((template(s) for s in smiles), key=lambda t: -len(t.symbols))
        self._bonds: dict[tuple, np.ndarray | None] = {}

    def __call__(self, atoms: Atoms) -> Violation | None:
        key = _composition(atoms)
        if key not in self._bonds:
            self._bonds[key] = bonds_of(atoms, self.templates)
        return worst_contact(atoms, self._bonds[key], self.contacts)


class BondCheck:
    """The bond furthest outside ``bounds`` x its length in the relaxed ion, or None. ``ions``: the
    relaxed structure of each ion of ``smiles`` (the ``molecules`` step's output, same order). A
    frame that cannot be read as consecutive ions has no bonds to check (the contact guard still
    checks it without topology)."""

    def __init__(self, bounds: BondGuard, smiles: list[str], ions: list[Atoms]):
        self.bounds = bounds
        self.templates = sorted((template(s) for s in smiles), key=lambda t: -len(t.symbols))
        self.relaxed = {template(s): bond_lengths(ion, np.array(template(s).bonds, dtype=int).reshape(-1, 2))
                        for s, ion in zip(smiles, ions)}
        self._bonds: dict[tuple, tuple[np.ndarray, np.ndarray] | None] = {}

    def topology(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray] | None:
        """The bonds (n, 2) of ``atoms`` and their relaxed lengths (A), or None without topology."""
        key = _composition(atoms)
        if key not in self._bonds:
            molecules = molecules_of(atoms, self.templates)
            self._bonds[key] = None if molecules is None else (
                bonds_of(atoms, self.templates),
                np.concatenate([self.relaxed[match] for _, match in molecules] or [np.zeros(0)]))
        return self._bonds[key]

    def __call__(self, atoms: Atoms) -> Violation | None:
        topology = self.topology(atoms)
        if topology is None or not len(topology[0]):
            return None
        bonds, relaxed = topology
        ratio = bond_lengths(atoms, bonds) / relaxed
        low, high = self.bounds.min, self.bounds.max if self.bounds.max is not None else np.inf
        # severity as Violation defines it: how far beyond its bound
        severity = np.maximum(low / ratio, ratio / high)
        k = int(severity.argmax())
        if severity[k] <= 1:
            return None
        i, j = map(int, bonds[k])
        compressed = ratio[k] < low
        factor = low if compressed else high
        symbols = atoms.get_chemical_symbols()
        return Violation("compressed bond" if compressed else "stretched bond", i, j, (symbols[i], symbols[j]),
                         float(ratio[k] * relaxed[k]), float(factor * relaxed[k]), factor,
                         f"its relaxed length {relaxed[k]:.2f} A")


class FrameCheck:
    """The worst violation of a frame over the contact guard and the bond guard (either may be
    off); None when the frame passes both."""

    def __init__(self, contacts: Contacts | None, bonds: BondGuard | None, smiles: list[str],
                 ions: list[Atoms] | None = None):
        self.checks = ([ContactCheck(contacts, smiles)] if contacts is not None else []) + (
            [BondCheck(bonds, smiles, ions)] if bonds is not None else [])

    def __call__(self, atoms: Atoms) -> Violation | None:
        found = [v for v in (check(atoms) for check in self.checks) if v is not None]
        return max(found, key=lambda v: v.severity) if found else None
