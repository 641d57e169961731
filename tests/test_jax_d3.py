"""JAX D3(BJ) (engine/dispersion/jax_d3.py) against torch-dftd's ASE calculator, finite differences and itself."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.geometry import get_distances
from scipy.spatial.transform import Rotation
from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

from ilcampaign.engine.dispersion import jax_d3, tail
from ilcampaign.engine.dispersion.jax_d3 import (
    B97_3C,
    D3Params,
    build_neighbours,
    build_triplets,
    d3_energy,
    d3_energy_forces_stress,
    load_tables,
)
from ilcampaign.engine.structures.ions import conformer

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"


def ion_box(n_pairs: int, length: float, seed: int = 0) -> Atoms:
    """``n_pairs`` BMIM+ BF4- at random positions and orientations in a periodic cubic box (no two atoms
    of different ions closer than 1.7 A)."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=[length] * 3, pbc=True)
    for molecule in [conformer(BMIM, seed=0), conformer(BF4, seed=0)] * n_pairs:
        for _ in range(2000):
            trial = molecule.copy()
            rotation = Rotation.random(random_state=rng).as_matrix()
            trial.positions = (trial.positions - trial.get_center_of_mass()) @ rotation.T + rng.uniform(0, length, 3)
            if not len(atoms) or get_distances(trial.positions, atoms.positions, atoms.cell, True)[1].min() > 1.7:
                atoms += trial
                break
        else:
            raise RuntimeError("could not place an ion")
    return atoms


@pytest.fixture(scope="module")
def box() -> Atoms:
    """4 ion pairs (120 atoms) in a 12 A box."""
    return ion_box(4, 12.0)


@pytest.fixture(scope="module")
def pair_box() -> Atoms:
    """One ion pair (30 atoms) in a 9 A box: at 20 A, pairs with many images, an atom's own included."""
    return ion_box(1, 9.0, seed=1)


def torch_dftd(atoms: Atoms, cutoff: float, cn_cutoff: float, abc: bool = False, xc: str = "b97-3c"):
    atoms = atoms.copy()
    atoms.calc = TorchDFTD3Calculator(xc=xc, damping="bj", cutoff=cutoff, cnthr=cn_cutoff, abc=abc,
                                      dtype=torch.float64)
    stress = atoms.get_stress() if atoms.pbc.any() else None
    return atoms.get_potential_energy(), atoms.get_forces(), stress


def assert_matches(atoms, cutoff, cn_cutoff, xc="b97-3c", e_tol=1e-8, f_tol=1e-7, s_tol=1e-8, dtype=jnp.float64):
    energy, forces, stress = d3_energy_forces_stress(atoms, xc, cutoff, cn_cutoff, dtype=dtype)
    ref_energy, ref_forces, ref_stress = torch_dftd(atoms, cutoff, cn_cutoff, xc=xc)
    assert abs(energy - ref_energy) / len(atoms) < e_tol
    np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=f_tol)
    if ref_stress is None:
        assert stress is None
    else:
        np.testing.assert_allclose(stress, ref_stress, rtol=0, atol=s_tol)
    return energy, forces, stress


def test_tables_and_parameters_come_from_torch_dftd_without_importing_torch():
    code = ("import sys; from ilcampaign.engine.dispersion.jax_d3 import D3Params, B97_3C, load_tables; t = load_tables(); "
            "assert t.c6ab.shape == (95, 95, 5, 5, 3) and t.rcov.shape == (95,); "
            "assert D3Params.from_functional('b97-3c') == B97_3C; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert D3Params.from_functional("pbe") == D3Params(s6=1.0, a1=0.4289, s8=0.7875, a2=4.4407)
    with pytest.raises(ValueError):
        D3Params.from_functional("no-such-functional")
    assert load_tables().r2r4[1] == pytest.approx(2.00734901)


@pytest.mark.parametrize("cutoff, cn_cutoff", [(8.0, 8.0), (20.0, 10.0)])
def test_matches_torch_dftd_on_a_periodic_box(box, cutoff, cn_cutoff):
    assert_matches(box, cutoff, cn_cutoff)


def test_box_much_smaller_than_the_cutoff(pair_box):
    assert_matches(pair_box, 20.0, 20.0)


def test_triclinic_cell_and_another_functional(box):
    atoms = box.copy()
    atoms.set_cell(np.array([[12.0, 0.0, 0.0], [3.0, 11.0, 0.0], [-2.0, 1.5, 10.5]]), scale_atoms=True)
    assert_matches(atoms, 11.0, 8.0)  # the lattice vectors are 12, 11.4 and 10.8 A long
    assert_matches(atoms, 11.0, 8.0, xc="pbe")


def test_non_periodic(pair_box):
    atoms = pair_box.copy()
    atoms.pbc = False
    atoms.cell = np.zeros((3, 3))
    assert_matches(atoms, 20.0, 12.0)


def test_float32(box):
    """float32 pair terms (summed in float64) against torch-dftd in float64."""
    energy, forces, stress = d3_energy_forces_stress(box, B97_3C, 20.0, 10.0, dtype=jnp.float32)
    ref_energy, ref_forces, ref_stress = torch_dftd(box, 20.0, 10.0)
    assert abs(energy - ref_energy) / len(box) < 1e-7  # seen: 2e-9 eV/atom
    np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=1e-5)  # seen: 7e-7 eV/A
    np.testing.assert_allclose(stress, ref_stress, rtol=0, atol=5e-6)  # seen: 8e-7 eV/A^3


def test_forces_are_minus_the_finite_difference_gradient(pair_box):
    positions, cell = pair_box.get_positions(), np.asarray(pair_box.cell)
    pairs = build_neighbours(positions, cell, True, 12.0, skin=1.0)
    _, forces, _ = d3_energy_forces_stress(pair_box, B97_3C, 12.0, 8.0)
    h = 1e-4

    def energy(p):
        return float(d3_energy(p, cell, pair_box.numbers, pairs, B97_3C, cutoff=12.0, cn_cutoff=8.0))

    for atom in range(0, len(pair_box), 3):
        for axis in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[atom, axis] += h
            minus[atom, axis] -= h
            assert -(energy(plus) - energy(minus)) / (2 * h) == pytest.approx(forces[atom, axis], abs=1e-7)


def test_stress_is_the_finite_difference_strain_derivative(box):
    atoms = box.copy()
    atoms.set_cell(np.array([[12.0, 0.0, 0.0], [1.0, 12.0, 0.0], [0.5, -1.0, 12.0]]), scale_atoms=True)
    positions, cell = atoms.get_positions(), np.asarray(atoms.cell)
    pairs = build_neighbours(positions, cell, True, 10.0, skin=1.0)
    _, _, stress = d3_energy_forces_stress(atoms, B97_3C, 10.0, 6.0)
    h = 1e-7  # small enough that no pair crosses a cutoff (where the energy jumps)
    for k, (a, b) in enumerate(jax_d3.VOIGT):
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = h / 2 if a != b else h

        def energy(sign, strain=strain):
            deformation = np.eye(3) + sign * strain
            return float(d3_energy(positions @ deformation.T, cell @ deformation.T, atoms.numbers, pairs, B97_3C,
                                   cutoff=10.0, cn_cutoff=6.0))

        derivative = (energy(1) - energy(-1)) / (2 * h) / atoms.get_volume()
        assert derivative == pytest.approx(stress[k], abs=1e-9)


def test_list_with_skin_equals_a_fresh_list(box):
    rng = np.random.default_rng(3)
    positions, cell = box.get_positions(), np.asarray(box.cell)
    pairs = build_neighbours(positions, cell, True, 8.0, skin=1.0, capacity=80_000)
    moved = box.copy()
    moved.positions += rng.uniform(-0.25, 0.25, size=positions.shape)
    listed = float(d3_energy(moved.positions, cell, box.numbers, pairs, B97_3C, cutoff=8.0, cn_cutoff=6.0))
    fresh, _, _ = d3_energy_forces_stress(moved, B97_3C, 8.0, 6.0)
    assert listed == pytest.approx(fresh, abs=1e-10)
    with pytest.raises(ValueError, match="capacity"):
        build_neighbours(positions, cell, True, 8.0, capacity=100)


def _overcounted_c6(counts):
    """torch-dftd's abc=True gradient: its C6 matrix for the ATM term is filled by index assignment from
    every listed image pair, so backward hands the C6 -> CN gradient to each of them (counts times)."""
    def c6(*args):
        value = _original_c6(*args)
        if value.shape[0] != len(counts):
            return value
        return value + (jnp.asarray(counts) - 1) * (value - jax.lax.stop_gradient(value))
    return c6


_original_c6 = jax_d3.c6_coefficient


@pytest.mark.slow
def test_three_body_term(box, monkeypatch):
    """ATM energy equals torch-dftd's; our forces are the energy's gradient; torch-dftd's forces and stress
    differ from them only by its overcounted C6 gradient (reproduced here to 1e-12)."""
    cutoff, cn_cutoff = 8.0, 5.0
    energy, forces, _ = d3_energy_forces_stress(box, B97_3C, cutoff, cn_cutoff, abc=True)
    two_body, _, _ = d3_energy_forces_stress(box, B97_3C, cutoff, cn_cutoff)
    ref_energy, ref_forces, ref_stress = torch_dftd(box, cutoff, cn_cutoff, abc=True)
    assert abs(energy - ref_energy) / len(box) < 1e-8
    assert abs(energy - two_body) > 1e-4  # the three-body term is there

    positions, cell = box.get_positions(), np.asarray(box.cell)
    pairs = build_neighbours(positions, cell, True, cutoff, skin=0.5)
    triplets = build_triplets(positions, cell, pairs, cn_cutoff, skin=0.5)
    h = 1e-4
    for atom in (0, 30, 57, 101):
        for axis in range(3):
            shifted = [positions.copy(), positions.copy()]
            shifted[0][atom, axis] += h
            shifted[1][atom, axis] -= h
            plus, minus = (float(d3_energy(p, cell, box.numbers, pairs, B97_3C, cutoff=cutoff, cn_cutoff=cn_cutoff,
                                           triplets=triplets)) for p in shifted)
            assert -(plus - minus) / (2 * h) == pytest.approx(forces[atom, axis], abs=1e-7)

    exact = build_neighbours(positions, cell, True, cutoff)
    counts = np.bincount(exact.pair[exact.valid], minlength=len(exact.pair_i)).astype(float)
    monkeypatch.setattr(jax_d3, "c6_coefficient", _overcounted_c6(counts))
    jax.clear_caches()
    try:
        _, torch_like_forces, torch_like_stress = d3_energy_forces_stress(box, B97_3C, cutoff, cn_cutoff, abc=True)
        _, two_body_overcounted, two_body_stress = d3_energy_forces_stress(box, B97_3C, cutoff, cn_cutoff)
    finally:
        monkeypatch.undo()
        jax.clear_caches()
    _, two_body_forces, two_body_exact_stress = d3_energy_forces_stress(box, B97_3C, cutoff, cn_cutoff)
    # the overcount applies to the three-body term only in torch-dftd
    torch_like_forces = torch_like_forces - two_body_overcounted + two_body_forces
    torch_like_stress = torch_like_stress - two_body_stress + two_body_exact_stress
    np.testing.assert_allclose(torch_like_forces, ref_forces, rtol=0, atol=1e-10)
    np.testing.assert_allclose(torch_like_stress, ref_stress, rtol=0, atol=1e-12)
    assert np.abs(ref_forces - forces).max() > 1e-5  # torch-dftd's abc forces are not its energy's gradient


@pytest.fixture(scope="module")
def argon_gas() -> Atoms:
    """300 Ar atoms uniformly at random in a 14 A box: g(r) = 1 at every distance, and argon's C6 has
    one reference (no dependence on coordination), so the tail formula holds exactly on average."""
    rng = np.random.default_rng(0)
    return Atoms("Ar" * 300, positions=rng.uniform(0.0, 14.0, (300, 3)), cell=[14.0] * 3, pbc=True)


def test_tail_correction_closes_the_cutoff_gap_in_energy_and_pressure(argon_gas):
    n, to_gpa = len(argon_gas), 160.21766
    totals = {}
    for cutoff in (8.0, 12.0):
        energy, _, stress = d3_energy_forces_stress(argon_gas, cutoff=cutoff, cn_cutoff=8.0)
        tail_energy, tail_stress = tail.tail_correction(argon_gas, cutoff=cutoff, cn_cutoff=8.0)
        assert tail_energy < 0 and np.all(tail_stress[:3] > 0) and np.all(tail_stress[3:] == 0)  # attractive: P < 0
        totals[cutoff] = (energy / n, -stress[:3].mean() * to_gpa, (energy + tail_energy) / n,
                          -(stress[:3].mean() + tail_stress[:3].mean()) * to_gpa)
    (e8, p8, e8_tail, p8_tail), (e12, p12, e12_tail, p12_tail) = totals[8.0], totals[12.0]
    assert abs(e12 - e8) > 0.01 and abs(p12 - p8) > 0.4  # the truncated term misses a lot at 8 A
    assert abs(e12_tail - e8_tail) < 1e-4  # eV/atom (measured 4e-5)
    assert abs(p12_tail - p8_tail) < 0.02  # GPa (measured 0.003)


def test_tail_pressure_is_the_virial_not_the_volume_derivative(argon_gas):
    """-dE/dV of the tail energy alone is E/V; the virial of the missing pairs is (2 E6 + 8/3 E8)/V."""
    s6, s8 = jax_d3.tail_sums(argon_gas, 8.0)
    volume, cutoff = argon_gas.cell.volume, 8.0
    energy, stress = tail.tail_terms(s6, s8, volume, B97_3C, cutoff)
    h = 1e-4 * volume
    minus_dE_dV = -(tail.tail_terms(s6, s8, volume + h, B97_3C, cutoff)[0]
                    - tail.tail_terms(s6, s8, volume - h, B97_3C, cutoff)[0]) / (2 * h)
    assert minus_dE_dV == pytest.approx(energy / volume, rel=1e-6)
    e6 = tail.tail_terms(s6, 0.0, volume, B97_3C, cutoff)[0]
    assert -stress[0] == pytest.approx((2 * e6 + 8 / 3 * (energy - e6)) / volume, rel=1e-12)


def test_hybrid_with_tail_adds_the_tail_to_energy_and_stress_only(box):
    from ase.calculators.lj import LennardJones

    from ilcampaign.engine.dispersion.ase_hybrid import hybrid_calculator

    atoms = box.copy()
    plain = hybrid_calculator(LennardJones(rc=4.0), cutoff=8.0, cn_cutoff=8.0, dtype=torch.float64)
    tailed = hybrid_calculator(LennardJones(rc=4.0), tail_correction=True, cutoff=8.0, cn_cutoff=8.0,
                               dtype=torch.float64)
    results = {}
    for name, calc in (("plain", plain), ("tailed", tailed)):
        atoms.calc = calc
        results[name] = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    tail_energy, tail_stress = tail.tail_correction(box, cutoff=8.0, cn_cutoff=8.0)
    assert results["tailed"][0] == pytest.approx(results["plain"][0] + tail_energy, abs=1e-9)
    np.testing.assert_allclose(results["tailed"][1], results["plain"][1], atol=1e-12)
    np.testing.assert_allclose(results["tailed"][2], results["plain"][2] + tail_stress, atol=1e-12)
