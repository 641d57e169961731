"""Dihedral quadruples from SMARTS and angles under minimum image (ilcampaign.engine.analysis.dihedrals)."""

from __future__ import annotations

import ase
import numpy as np
import pytest

from ilcampaign.archive.frames import write_frames
from ilcampaign.engine.analysis import Trajectory, dihedral_angles, dihedral_distributions, dihedral_quads
from ilcampaign.engine.structures.guards import template

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"


def _chain(torsion_deg, bond=1.54, angle_deg=111.0):
    """Four atoms 0-1-2-3 with one bond length and bond angle and the given torsion (0 = cis)."""
    a, phi = np.radians(angle_deg), np.radians(torsion_deg)
    p1, p2 = np.zeros(3), np.array([bond, 0.0, 0.0])
    p0 = bond * np.array([np.cos(a), np.sin(a), 0.0])
    p3 = p2 + bond * np.array([-np.cos(a), np.sin(a) * np.cos(phi), np.sin(a) * np.sin(phi)])
    return np.array([p0, p1, p2, p3])


@pytest.mark.parametrize("torsion", [60.0, 180.0, -60.0, 0.0, 120.0, -179.5])
def test_known_torsions(torsion):
    pos = _chain(torsion)
    cell = np.eye(3) * 20.0
    got = dihedral_angles(pos[None], cell[None], np.array([[0, 1, 2, 3]]))[0, 0]
    assert got == pytest.approx(torsion, abs=1e-9)
    ase_angle = ase.Atoms("C4", positions=pos).get_dihedral(0, 1, 2, 3)  # [0, 360)
    assert (got - ase_angle) % 360 == pytest.approx(0.0, abs=1e-9) or (got - ase_angle) % 360 == pytest.approx(360.0, abs=1e-9)


def test_angle_range_is_open_at_minus_180():
    pos = _chain(180.0)
    got = dihedral_angles(pos[None], (np.eye(3) * 20)[None], np.array([[0, 1, 2, 3], [3, 2, 1, 0]]))
    assert np.all(got == 180.0)


def test_minimum_image_on_bond_vectors_in_a_triclinic_cell():
    cell = np.array([[10.0, 0, 0], [3.0, 10.0, 0], [-2.0, 1.0, 11.0]])
    pos = _chain(-75.0) + 4.0
    moved = pos.copy()
    moved[2] += cell[0] - 2 * cell[2]  # one atom in another image: bonds must be wrapped back
    moved[3] += cell[1]
    quads = np.array([[0, 1, 2, 3]])
    got = dihedral_angles(np.stack([pos, moved]), np.stack([cell, cell]), quads)
    np.testing.assert_allclose(got, -75.0, atol=1e-9)


def _box_numbers():
    """Two BMIM and two BF4, as the box files order them: cation, anion, cation, anion."""
    from ase.data import atomic_numbers

    numbers, mol_ids = [], []
    for k, smiles in enumerate([BMIM, BF4, BMIM, BF4]):
        symbols = template(smiles).symbols
        numbers += [atomic_numbers[s] for s in symbols]
        mol_ids += [k] * len(symbols)
    return np.array(numbers), np.array(mol_ids)


def test_bmim_butyl_smarts_picks_n_c_c_c_in_every_cation():
    from rdkit import Chem

    numbers, mol_ids = _box_numbers()
    quads = dihedral_quads("[n+0]CCC", BMIM, mol_ids, numbers)
    n_bmim = len(template(BMIM).symbols)
    start2 = n_bmim + 5
    assert quads.shape == (2, 4)
    assert quads[1].tolist() == (quads[0] + start2).tolist()
    mol = Chem.AddHs(Chem.MolFromSmiles(BMIM))
    atoms = [mol.GetAtomWithIdx(int(i)) for i in quads[0]]
    assert [a.GetSymbol() for a in atoms] == ["N", "C", "C", "C"]
    assert atoms[0].GetIsAromatic() and atoms[0].GetFormalCharge() == 0  # the ring N bearing the butyl
    for a, b in zip(quads[0][:-1], quads[0][1:]):
        assert mol.GetBondBetweenAtoms(int(a), int(b)) is not None
    assert not atoms[3].GetIsAromatic() and atoms[3].GetTotalNumHs(includeNeighbors=True) == 2  # chain CH2, not the terminal CH3
    # a mapped pattern picks the mapped atoms in map order: ring C - N - CH2 - CH2 (two ring neighbours)
    mapped = dihedral_quads("[CH2:3]([CH2:4])[n:2][c:1]", BMIM, mol_ids, numbers)
    assert mapped.shape == (4, 4)
    assert all(mol.GetAtomWithIdx(int(i)).GetIsAromatic() for i in mapped[:2, :2].ravel())
    assert np.all(mapped[:2, 1:] == quads[0][:3])


def test_quads_need_the_ion_in_the_box():
    numbers, mol_ids = _box_numbers()
    with pytest.raises(ValueError, match="no molecule"):
        dihedral_quads("CCCC", "CCCCC", mol_ids, numbers)


def test_distributions_over_growing_windows(tmp_path):
    # first 10 frames at +65, the other 30 at 180: the windows see the switch
    frames = []
    for t in range(40):
        atoms = ase.Atoms("C4", positions=_chain(65.0 if t < 10 else 180.0) + 5.0, cell=np.eye(3) * 20.0, pbc=True)
        atoms.arrays["mol_id"] = np.zeros(4, dtype=int)
        frames.append(atoms)
    path = tmp_path / "d.h5"
    write_frames(path, frames)
    with Trajectory(path) as traj:
        res = dihedral_distributions(traj, np.array([[0, 1, 2, 3]]), windows=(0.25, 1.0), bins=36, block=3)
    assert res.n_frames.tolist() == [10, 40]
    assert res.count.sum(axis=1).tolist() == [10, 40]
    widths = np.diff(res.edges)
    np.testing.assert_allclose((res.density * widths).sum(axis=1), 1.0)
    bin60, bin180 = 24, 35  # [60, 70) and [170, 180]
    assert res.count[0, bin60] == 10 and res.count[0, bin180] == 0
    assert res.count[1, bin60] == 10 and res.count[1, bin180] == 30
