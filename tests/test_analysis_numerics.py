"""RDF and MSD of ilcampaign.engine.analysis against MDAnalysis and against direct numpy on small synthetic
trajectories. Coordinates lie on a 2^-10 A grid and cells are ones MDAnalysis's float32 arithmetic
holds exactly (power-of-two lengths; triclinic cells that survive its box round trip), so both
codes see the same distances to the last bit and histogram counts must agree exactly."""

from __future__ import annotations

from itertools import product

import ase
import numpy as np
import pytest

from ilcampaign.archive.frames import read_frames, write_frames
from ilcampaign.engine.analysis import MSD, RDF, Sites, Trajectory, molecules
from ilcampaign.engine.analysis.msd import msd_fft

GRID = 2.0**-10
N_ATOMS, N_FRAMES = 40, 200
NUMBERS = [6, 8] * (N_ATOMS // 2)


def _grid(x):
    return np.round(np.asarray(x) / GRID) * GRID


@pytest.fixture(scope="module")
def walk_file(tmp_path_factory):
    """Unwrapped random walk (2-atom molecules) in an orthorhombic cell that changes every frame."""
    rng = np.random.default_rng(11)
    steps = _grid(rng.normal(0, 0.3, (N_FRAMES, N_ATOMS, 3)))
    pos = _grid(rng.uniform(0, 16, (N_ATOMS, 3))) + np.cumsum(steps, axis=0)
    pos[:, 1::2] = pos[:, 0::2] + _grid([1.25, 0.5, -0.25])  # each molecule's second atom rides along
    boxes = [np.diag(d) for d in ([16.0, 16, 16], [16.0, 32, 16], [32.0, 16, 16], [16.0, 16, 32])]
    frames = []
    for t in range(N_FRAMES):
        atoms = ase.Atoms(numbers=NUMBERS, positions=pos[t], cell=boxes[t % 4], pbc=True)
        atoms.arrays["mol_id"] = np.arange(N_ATOMS) // 2
        frames.append(atoms)
    path = tmp_path_factory.mktemp("walk") / "walk.h5"
    write_frames(path, frames)
    return path, pos, np.array([boxes[t % 4] for t in range(N_FRAMES)])


@pytest.fixture(scope="module")
def triclinic_file(tmp_path_factory):
    """Atoms inside triclinic cells that alternate between two shapes and volumes."""
    mdamath = pytest.importorskip("MDAnalysis.lib.mdamath")
    cells = [mdamath.triclinic_vectors(mdamath.triclinic_box(*np.array(e, float))).astype(np.float64)
             for e in ([[16, 0, 0], [4, 16, 0], [2, -3, 16]], [[17, 0, 0], [3, 17.5, 0], [-2, 1, 18]])]
    rng = np.random.default_rng(5)
    frames = []
    for t in range(N_FRAMES):
        cell = cells[t % 2]
        points = _grid(rng.uniform(-6, 40, (4000, 3)))
        frac = points @ np.linalg.inv(cell)
        inside = points[np.all((frac > 0.001) & (frac < 0.999), axis=1)][:N_ATOMS]
        frames.append(ase.Atoms(numbers=NUMBERS, positions=inside, cell=cell, pbc=True))
    path = tmp_path_factory.mktemp("tric") / "tric.h5"
    write_frames(path, frames)
    return path


def _universe(path):
    mda = pytest.importorskip("MDAnalysis")
    u = mda.Universe.empty(N_ATOMS, trajectory=False)
    u.load_new(str(path), format="H5MD")
    return u


@pytest.mark.parametrize("cell", ["orthorhombic NPT", "triclinic NPT"])
@pytest.mark.parametrize("pairs", ["same", "cross"])
def test_rdf_equals_mdanalysis(walk_file, triclinic_file, cell, pairs):
    from MDAnalysis.analysis.rdf import InterRDF

    path, r_max = (walk_file[0], 8.0) if cell.startswith("ortho") else (triclinic_file, 7.5)
    u = _universe(path)
    with Trajectory(path) as traj:
        if pairs == "same":
            ours = RDF(traj, Sites.atoms(range(N_ATOMS)), r_max=r_max, bins=1000).run(block=7)
            ref = InterRDF(u.atoms, u.atoms, nbins=1000, range=(0, r_max), exclusion_block=(1, 1)).run()
        else:
            ours = RDF(traj, Sites.atoms(range(0, N_ATOMS, 2)), Sites.atoms(range(1, N_ATOMS, 2)),
                       r_max=r_max, bins=1000).run(block=7)
            ref = InterRDF(u.atoms[0::2], u.atoms[1::2], nbins=1000, range=(0, r_max)).run()
    assert ref.results.count.sum() > 10_000
    np.testing.assert_array_equal(ours.results.count, ref.results.count)
    np.testing.assert_allclose(ours.results.rdf, ref.results.rdf, rtol=1e-6, atol=0)
    np.testing.assert_allclose(ours.results.bins, ref.results.bins, rtol=1e-12)
    n_a = N_ATOMS if pairs == "same" else N_ATOMS // 2
    assert ours.results.cn[-1] == pytest.approx(ref.results.count.sum() / (N_FRAMES * n_a))


def test_rdf_frame_selection_matches_mdanalysis(walk_file):
    from MDAnalysis.analysis.rdf import InterRDF

    u = _universe(walk_file[0])
    with Trajectory(walk_file[0]) as traj:
        ours = RDF(traj, Sites.atoms(range(N_ATOMS)), r_max=6.0, bins=300).run(10, 150, 3, block=4)
    ref = InterRDF(u.atoms, u.atoms, nbins=300, range=(0, 6.0), exclusion_block=(1, 1)).run(10, 150, 3)
    assert ours.results.n_frames == ref.n_frames == len(range(10, 150, 3))
    np.testing.assert_allclose(ours.results.rdf, ref.results.rdf, rtol=1e-6, atol=0)


def test_rdf_refuses_r_max_beyond_half_the_cell(walk_file):
    with Trajectory(walk_file[0]) as traj, pytest.raises(ValueError, match="half the smallest cell width"):
        RDF(traj, Sites.atoms(range(N_ATOMS)), r_max=8.01).run()


def _brute_distances(a, b, cell):
    """All minimum-image distances between rows of a and b by trying the 125 nearest images."""
    shifts = np.array(list(product(range(-2, 3), repeat=3))) @ cell
    dx = b[None, :, None, :] - a[:, None, None, :] + shifts[None, None]
    return np.sqrt((dx**2).sum(-1)).min(axis=2)


def test_centre_of_mass_rdf_equals_direct_numpy(walk_file):
    path, pos, cells = walk_file
    with Trajectory(path) as traj:
        mols = molecules(traj.mol_ids, traj.numbers)
        sites = Sites.centres_of_mass([m.atoms for m in mols], traj.masses)
        ours = RDF(traj, sites, r_max=8.0, bins=200).run(block=16)
        masses = traj.masses
    com = (pos[:, 0::2] * masses[0] + pos[:, 1::2] * masses[1]) / (masses[0] + masses[1])
    edges = np.linspace(0, 8.0, 201)
    count = np.zeros(200)
    for t in range(N_FRAMES):
        d = _brute_distances(com[t], com[t], cells[t])
        d = d[~np.eye(len(d), dtype=bool)]
        count += np.histogram(d[d <= 8.0], bins=edges)[0]
    np.testing.assert_array_equal(ours.results.count, count)
    volume = np.mean([np.linalg.det(c) for c in cells])
    n = N_ATOMS // 2
    shells = 4 / 3 * np.pi * np.diff(edges**3)
    np.testing.assert_allclose(ours.results.rdf, count / (N_FRAMES * shells * n * (n - 1) / volume), rtol=1e-12)


def test_msd_equals_mdanalysis_einstein_fft(walk_file):
    pytest.importorskip("tidynamics")
    from MDAnalysis.analysis.msd import EinsteinMSD

    u = _universe(walk_file[0])
    ref = EinsteinMSD(u.atoms, msd_type="xyz", fft=True).run()
    with Trajectory(walk_file[0]) as traj:
        ours = MSD(traj, Sites.atoms(range(N_ATOMS))).run(per_site=True, block=9)
    np.testing.assert_allclose(ours.results.msd[1:], ref.results.timeseries[1:], rtol=1e-6, atol=0)
    np.testing.assert_allclose(ours.results.by_site[1:], ref.results.msds_by_particle[1:], rtol=1e-6, atol=0)
    assert abs(ours.results.msd[0]) < 1e-9
    assert ours.results.msd[1] > 0.1  # a real walk, not a trivially equal zero


def _direct_msd(x):
    """Windowed MSD, averaged over time origins and sites: x (T, S, 3)."""
    return np.array([0.0] + [((x[m:] - x[:-m]) ** 2).sum(-1).mean() for m in range(1, len(x))])


def test_centre_of_mass_msd_and_time_blocks_equal_direct_numpy(walk_file):
    path, pos, _ = walk_file
    with Trajectory(path, timestep_fs=2.5) as traj:
        mols = molecules(traj.mol_ids, traj.numbers)
        sites = Sites.centres_of_mass([m.atoms for m in mols], traj.masses)
        ours = MSD(traj, sites).run(0, 199, 2, n_blocks=3, block=10)
        masses = traj.masses
    com = (pos[:, 0::2] * masses[0] + pos[:, 1::2] * masses[1]) / (masses[0] + masses[1])
    series = com[0:199:2]  # 100 frames
    np.testing.assert_allclose(ours.results.msd, _direct_msd(series), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.results.times[:3], [0.0, 5.0, 10.0])
    assert ours.results.block_msd.shape == (3, 33)
    for k in range(3):
        np.testing.assert_allclose(ours.results.block_msd[k], _direct_msd(series[33 * k: 33 * (k + 1)]),
                                   rtol=1e-9, atol=1e-9)


def test_msd_fft_on_a_line():
    # x = v t: MSD(m) = (v m)^2 exactly, whatever the offset
    t = np.arange(50.0)
    x = np.zeros((50, 1, 3))
    x[:, 0, 0] = 100.0 + 0.5 * t
    np.testing.assert_allclose(msd_fft(x)[:, 0], (0.5 * t) ** 2, atol=1e-9)


def test_trajectory_blocks_read_the_right_frames(walk_file):
    path = walk_file[0]
    with Trajectory(path) as traj:
        assert (traj.n_frames, traj.n_atoms) == (N_FRAMES, N_ATOMS)
        assert traj.numbers.tolist() == NUMBERS and traj.mol_ids.tolist() == (np.arange(N_ATOMS) // 2).tolist()
        assert traj.timestep == 1.0 and traj.times[0] == 1.0  # write_frames' nominal clock
        seen = list(traj.blocks(5, 60, 7, size=3))
        indices = np.concatenate([f for f, _, _ in seen])
        assert indices.tolist() == list(range(5, 60, 7)) and max(len(f) for f, _, _ in seen) == 3
        want = read_frames(path, indices)
        got = np.concatenate([p for _, p, _ in seen])
        np.testing.assert_array_equal(got, [a.positions for a in want])
        np.testing.assert_array_equal(np.concatenate([c for _, _, c in seen]), [a.cell.array for a in want])
        with pytest.raises(ValueError):
            next(traj.blocks(step=0))
    with Trajectory(path, timestep_fs=0.5) as traj:
        assert traj.times[:3].tolist() == [0.0, 0.5, 1.0]
