"""Structures without dynamics (ilcampaign.engine.structures.candidates): rigid volume scans, conformers, conformer boxes."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from ilcampaign.campaign.units import to_internal
from ilcampaign.engine.structures.ions import conformer
from ilcampaign.engine.structures.packing import scale_rigid
from ilcampaign.engine.structures.candidates import conformer_boxes, conformers, volume_scan

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"


def intramolecular(atoms: Atoms, mic: bool) -> np.ndarray:
    """All distances between atoms of the same molecule, molecule after molecule."""
    return np.concatenate([
        atoms[atoms.arrays["mol_id"] == mol].get_all_distances(mic=mic).ravel()
        for mol in np.unique(atoms.arrays["mol_id"])
    ])


def grid_box() -> tuple[Atoms, np.ndarray]:
    """Two BMIM+ and two BF4- on a grid in a 16 A box, shifted and wrapped so molecules straddle
    the boundary (no PACKMOL: fast); and the molecules' own intramolecular distances."""
    box = Atoms(cell=[16.0] * 3, pbc=True)
    mol_id = []
    for index, (smiles, seed) in enumerate([(BMIM, 0), (BF4, 1), (BMIM, 2), (BF4, 3)]):
        molecule = conformer(smiles, seed)
        molecule.positions += np.array([index % 2, index // 2, 0.5]) * 8.0 - molecule.get_center_of_mass()
        box += molecule
        mol_id += [index] * len(molecule)
    box.arrays["mol_id"] = np.array(mol_id)
    box.info["charge"] = 0
    whole = intramolecular(box, mic=False)
    box.positions += 4.0
    box.wrap()
    return box, whole


def test_volume_scan_is_rigid_and_hits_the_box_lengths():
    box, whole = grid_box()
    assert not np.allclose(intramolecular(box, mic=False), whole)  # some are split by the wrap
    original = box.positions.copy()
    frames = volume_scan(box, 0.9, 2.0, 12)
    assert len(frames) == 12 and np.array_equal(box.positions, original)
    factors = np.linspace(0.9, 2.0, 12)
    for step, (frame, factor) in enumerate(zip(frames, factors)):
        assert np.allclose(frame.cell.array, box.cell.array * factor, rtol=1e-14, atol=0)
        assert np.abs(intramolecular(frame, mic=False) - whole).max() < 1e-10
        assert frame.info == {"charge": 0, "source": "volume_scan", "step": step, "length_factor": factor}
        assert np.array_equal(frame.positions, scale_rigid(box, factor).positions)  # from the original, not cumulative
        assert np.array_equal(frame.arrays["mol_id"], box.arrays["mol_id"])
    assert frames[0].cell[0, 0] == pytest.approx(14.4) and frames[-1].cell[0, 0] == pytest.approx(32.0)


def test_volume_scan_needs_molecules():
    with pytest.raises(ValueError, match="mol_id"):
        volume_scan(Atoms("Ar", cell=[5.0] * 3, pbc=True), 0.9, 2.0, 3)


def test_conformers_are_deterministic_and_different():
    first = conformers(BMIM, 5, seed=11)
    assert len(first) == 5 and all(c.info["charge"] == 1 and c.get_chemical_formula() == "C8H15N2" for c in first)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(first, conformers(BMIM, 5, seed=11)))
    assert not np.allclose(first[0].positions, conformers(BMIM, 5, seed=12)[0].positions)
    distances = [c.get_all_distances() for c in first]
    assert all(not np.allclose(distances[i], distances[j], atol=1e-3) for i in range(5) for j in range(i))
    bf4 = conformers(BF4, 3, seed=1)  # UFF: MMFF has no boron
    assert all(c.info["charge"] == -1 and np.allclose(c.get_distances(1, [0, 2, 3, 4]), 1.45, atol=0.1) for c in bf4)


@pytest.mark.slow
def test_conformer_boxes():
    density = to_internal("0.9 g/cm^3", "density")
    ions = [(BMIM, 3), (BF4, 3)]
    boxes = conformer_boxes(ions, n_conformers=6, n_boxes=3, density=density, tolerance=2.0, seed=4)
    again = conformer_boxes(ions, n_conformers=6, n_boxes=3, density=density, tolerance=2.0, seed=4)
    assert len(boxes) == 3
    assert all(np.array_equal(a.positions, b.positions) and a.info == b.info for a, b in zip(boxes, again))
    assert not np.allclose(boxes[0].positions, boxes[1].positions)
    for index, box in enumerate(boxes):
        assert box.info["charge"] == 0 and box.info["source"] == "conformers" and box.info["box"] == index
        assert box.get_chemical_formula() == Atoms("C8H15N2BF4" * 3).get_chemical_formula()
        assert box.get_masses().sum() / box.get_volume() == pytest.approx(density, rel=1e-12)
        assert list(np.bincount(box.arrays["mol_id"])) == [25] * 3 + [5] * 3
        drawn = [int(i) for i in box.info["conformers"].split(",")]
        assert len(set(drawn[:3])) == 3  # without replacement: 3 of 6 BMIM conformers
        cations = [box[box.arrays["mol_id"] == m].get_all_distances() for m in range(3)]
        assert not np.allclose(cations[0], cations[1], atol=1e-3) and not np.allclose(cations[1], cations[2], atol=1e-3)
    assert len({box.info["conformers"] for box in boxes}) > 1
    # more molecules than conformers: drawn with replacement
    crowded = conformer_boxes([(BF4, 3), ("[Na+]", 3)], n_conformers=2, n_boxes=1, density=density / 2,
                              tolerance=2.0, seed=0)
    assert crowded[0].info["charge"] == 0 and len(crowded[0]) == 18
