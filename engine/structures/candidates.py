"""Candidate structures made without dynamics: rigid-molecule volume scans and boxes of RDKit conformers.

Every random choice takes an explicit seed, so the same inputs give the same structures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ilcampaign.campaign.spec import Contacts, IonRelaxation
from ilcampaign.engine.structures.packing import pack_box, scale_rigid

if TYPE_CHECKING:
    from ase import Atoms


def volume_scan(atoms: Atoms, start: float, end: float, n_steps: int) -> list[Atoms]:
    """``atoms`` with its box length scaled by n_steps factors from ``start`` to ``end`` (both included),
    every molecule (``arrays["mol_id"]``) moved rigidly; each frame is scaled from ``atoms`` itself."""
    if "mol_id" not in atoms.arrays:
        raise ValueError("a volume scan needs the molecules: atoms.arrays['mol_id'] is missing")
    frames = []
    for step, factor in enumerate(np.linspace(start, end, n_steps)):
        frame = scale_rigid(atoms, float(factor))
        frame.info = {key: value for key, value in atoms.info.items() if key == "charge"}
        frame.info.update(source="volume_scan", step=step, length_factor=float(factor))
        frames.append(frame)
    return frames


def conformers(smiles: str, n: int, seed: int, relaxation: IonRelaxation | None = None,
               contacts: Contacts | None = None) -> list[Atoms]:
    """``n`` 3D conformers of ``smiles`` (hydrogens added): ETKDG embedding relaxed with MMFF; an ion MMFF
    does not know (boron, hypervalent P) is relaxed with ``relaxation`` (xTB) instead, where given.
    Every conformer is checked against ``contacts``; ``info["charge"]`` holds the formal charge."""
    from ilcampaign.engine.structures.ions import ion_conformers

    structures, _ = ion_conformers(smiles, n, seed, relaxation, contacts, relax_all=False)
    for index, atoms in enumerate(structures):
        atoms.info["conformer"] = index
    return structures


def conformer_boxes(ions: list[tuple[str, int]], n_conformers: int, n_boxes: int, density: float, tolerance: float,
                    seed: int, *, unit_density: float | None = None, n_units: int | None = None,
                    relaxation: IonRelaxation | None = None, contacts: Contacts | None = None) -> list[Atoms]:
    """``n_boxes`` periodic boxes of the composition ``ions`` ((smiles, count) pairs), packed by PACKMOL
    at ``density`` (amu/Angstrom^3) with minimum distance ``tolerance``; every molecule is a conformer
    drawn at random from ``n_conformers`` of its species (without replacement within a box where
    there are enough). With ``unit_density``, ``n_units`` formula units (the counts divided by
    their greatest common divisor, e.g. 1 cation + 1 anion) are first packed as clusters at that
    density without periodicity, and the boxes are packed from drawn units (the workflow's ML11).
    ``info["conformers"]`` lists what was drawn for each packed piece, in box order ("3,17,0,...";
    a string, as frame info holds scalars)."""
    from math import gcd

    rng = np.random.default_rng(seed)
    pools = [conformers(smiles, n_conformers, int(rng.integers(2**31)), relaxation, contacts) for smiles, _ in ions]
    counts = [count for _, count in ions]
    if unit_density is not None:
        units = gcd(*counts)
        formula = [count // units for count in counts]
        pools = [[pack_box(_draw(pools, formula, rng)[0], unit_density, seed=int(rng.integers(1, 2**31)),
                           tolerance=tolerance, periodic=False)
                  for _ in range(n_units or n_conformers)]]
        counts = [units]
    boxes = []
    for index in range(n_boxes):
        molecules, drawn = _draw(pools, counts, rng)
        box = pack_box(molecules, density, seed=int(rng.integers(1, 2**31)), tolerance=tolerance)
        box.info.update(source="conformers", box=index, conformers=",".join(map(str, drawn)))
        boxes.append(box)
    return boxes


def _draw(pools: list[list[Atoms]], counts: list[int], rng: np.random.Generator) -> tuple[list, list[int]]:
    """``counts[k]`` structures drawn from ``pools[k]`` (without replacement where there are enough):
    PACKMOL's (structure, 1) pairs, and the drawn indices."""
    picks = [(pool, rng.choice(len(pool), size=count, replace=count > len(pool))) for pool, count in zip(pools, counts)]
    return [(pool[i], 1) for pool, chosen in picks for i in chosen], [int(i) for _, chosen in picks for i in chosen]
