"""Conformers, PACKMOL boxes and rigid rescaling (ilcampaign.engine.structures.packing)."""

from __future__ import annotations

import numpy as np
import pytest

from ilcampaign.campaign.units import to_internal
from ilcampaign.engine.structures.ions import conformer
from ilcampaign.engine.structures.packing import pack_box, scale_rigid

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"
DENSITY = to_internal("1.2 g/cm^3", "density")


def intramolecular(atoms, mic: bool) -> np.ndarray:
    """All distances between atoms of the same molecule, molecule after molecule."""
    return np.concatenate([
        atoms[atoms.arrays["mol_id"] == mol].get_all_distances(mic=mic).ravel()
        for mol in np.unique(atoms.arrays["mol_id"])
    ])


@pytest.fixture(scope="module")
def ions():
    return [(conformer(BMIM, seed=0), 3), (conformer(BF4, seed=1), 3)]


def test_conformer_is_deterministic_and_charged():
    bmim = conformer(BMIM, seed=3)
    assert bmim.get_chemical_formula() == "C8H15N2"
    assert bmim.info["charge"] == 1
    assert np.array_equal(bmim.positions, conformer(BMIM, seed=3).positions)
    bf4 = conformer(BF4, seed=3)  # MMFF has no boron: UFF
    assert bf4.info["charge"] == -1
    assert np.allclose(bf4.get_distances(1, [0, 2, 3, 4]), 1.45, atol=0.1)


@pytest.mark.slow
def test_pack_box(ions):
    box = pack_box(ions, DENSITY, seed=5, tolerance=2.0)
    assert np.array_equal(box.positions, pack_box(ions, DENSITY, seed=5, tolerance=2.0).positions)
    assert not np.allclose(box.positions, pack_box(ions, DENSITY, seed=6, tolerance=2.0).positions)
    assert box.pbc.all() and np.allclose(box.cell.array, np.eye(3) * box.cell[0, 0])
    assert box.get_masses().sum() / box.get_volume() == pytest.approx(DENSITY, rel=1e-12)
    assert box.info["charge"] == 0 and len(box) == 3 * 25 + 3 * 5
    assert list(np.bincount(box.arrays["mol_id"])) == [25] * 3 + [5] * 3
    mol = box.arrays["mol_id"]
    distances = box.get_all_distances(mic=True)
    assert distances[mol[:, None] != mol[None, :]].min() >= 0.9 * 2.0
    # molecules come out whole: their geometry is the conformer's
    assert np.allclose(intramolecular(box[mol == 0], mic=False), ions[0][0].get_all_distances().ravel(), atol=1e-4)


@pytest.mark.slow
def test_pack_box_reports_packmol_failure(ions):
    with pytest.raises(RuntimeError, match=r"(?s)exit code 173.*ENDED WITHOUT PERFECT PACKING"):
        pack_box([(ions[1][0], 2)], 6 * DENSITY, seed=5, tolerance=2.0)  # 2 BF4- in a 3.4 A box


@pytest.mark.slow
@pytest.mark.parametrize("pairs", [1, 3])  # one pair: a box smaller than BMIM
def test_scale_rigid(ions, pairs):
    loose = pack_box([(atoms, pairs) for atoms, _ in ions], 0.7 * DENSITY, seed=5, tolerance=2.0)
    reference = intramolecular(loose, mic=False)
    wrapped = loose.copy()
    wrapped.wrap()  # molecules split across the boundary must be made whole first
    assert not np.allclose(intramolecular(wrapped, mic=False), reference)
    for start in (loose, wrapped):
        dense = scale_rigid(start, 0.7 ** (1 / 3))
        assert dense.get_masses().sum() / dense.get_volume() == pytest.approx(DENSITY, rel=1e-12)
        assert np.abs(intramolecular(dense, mic=False) - reference).max() < 1e-10
        assert np.array_equal(dense.arrays["mol_id"], loose.arrays["mol_id"])
        assert dense.info["charge"] == 0
