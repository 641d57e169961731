"""D3 on the JIT half list (engine/dispersion/jax_term.py) against torch-dftd: energy, forces and stress;
its short range (``near_energy``, multiple time stepping's every-step share)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ilcampaign.engine.dispersion.jax_d3 import B97_3C, D3Params
from ilcampaign.engine.dispersion.tail import tail_correction
from ilcampaign.engine.dispersion.jax_term import SWITCH_WIDTH, D3Term, d3_energy, d3_inputs, near_energy, switch
from ilcampaign.engine.dispersion.neighbours import build
from tests.test_jax_d3 import ion_box, torch_dftd


@pytest.fixture(scope="module")
def box():
    return ion_box(4, 12.0)


@pytest.fixture(scope="module")
def pair_box():
    return ion_box(1, 9.0, seed=1)


def half_list_d3(atoms, term: D3Term, capacity: int = 200_000):
    """(energy, forces, stress) of ``atoms`` by :func:`d3_energy` on a fresh half list with the term's skin."""
    cell = np.asarray(atoms.cell)
    inputs = d3_inputs(term, atoms.numbers, cell)
    positions = jnp.asarray(atoms.positions)
    pairs = build(positions, cell, inputs.shifts, term.cutoff, term.skin, capacity)
    assert int(pairs.count) <= capacity

    def strained(pos, strain):
        deformation = jnp.eye(3) + 0.5 * (strain + strain.T)
        return d3_energy(pos @ deformation.T, jnp.asarray(cell) @ deformation.T, inputs, pairs, term)

    energy, (grad, virial) = jax.value_and_grad(strained, argnums=(0, 1))(positions, jnp.zeros((3, 3)))
    virial = np.asarray(virial) / atoms.get_volume()
    return float(energy), -np.asarray(grad), virial[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


@pytest.mark.parametrize("cutoff, cn_cutoff, skin", [(8.0, 8.0, 0.5), (20.0, 10.0, 0.5), (20.0, 20.0, 0.0)])
def test_half_list_matches_torch_dftd(box, cutoff, cn_cutoff, skin):
    term = D3Term(B97_3C, cutoff, cn_cutoff, skin, "float64")
    energy, forces, stress = half_list_d3(box, term)
    ref_energy, ref_forces, ref_stress = torch_dftd(box, cutoff, cn_cutoff)
    assert abs(energy - ref_energy) / len(box) < 1e-8
    np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=1e-7)
    np.testing.assert_allclose(stress, ref_stress, rtol=0, atol=1e-8)


def test_a_box_much_smaller_than_the_cutoff_and_a_triclinic_cell(box, pair_box):
    term = D3Term(B97_3C, 20.0, 20.0, 0.5, "float64")
    for atoms in (pair_box, triclinic(box)):
        energy, forces, stress = half_list_d3(atoms, term)
        ref_energy, ref_forces, ref_stress = torch_dftd(atoms, 20.0, 20.0)
        assert abs(energy - ref_energy) / len(atoms) < 1e-8
        np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=1e-7)
        np.testing.assert_allclose(stress, ref_stress, rtol=0, atol=1e-8)


def test_another_functional_and_float32(box):
    pbe = D3Term(D3Params.from_functional("pbe"), 11.0, 8.0, 0.5, "float64")
    energy, forces, _ = half_list_d3(triclinic(box), pbe)
    ref_energy, ref_forces, _ = torch_dftd(triclinic(box), 11.0, 8.0, xc="pbe")
    assert abs(energy - ref_energy) / len(box) < 1e-8
    np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=1e-7)
    energy, forces, stress = half_list_d3(box, D3Term(B97_3C, 20.0, 10.0, 0.5, "float32"))
    ref_energy, ref_forces, ref_stress = torch_dftd(box, 20.0, 10.0)
    assert abs(energy - ref_energy) / len(box) < 1e-7
    np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=1e-5)
    np.testing.assert_allclose(stress, ref_stress, rtol=0, atol=5e-6)


def test_tail_correction_adds_the_tail_energy_and_no_force(box):
    plain, tailed = (D3Term(B97_3C, 8.0, 8.0, 0.5, "float64", tail) for tail in (False, True))
    energy, forces, _ = half_list_d3(box, plain)
    energy_tail, forces_tail, _ = half_list_d3(box, tailed)
    expected, _ = tail_correction(box, B97_3C, 8.0, 8.0)
    assert expected < 0
    assert energy_tail - energy == pytest.approx(expected, rel=1e-10)
    np.testing.assert_array_equal(forces_tail, forces)


def test_only_bj_damping_runs_in_jax():
    with pytest.raises(ValueError, match="BJ damping only"):
        D3Term.from_section("b97-3c", "zero", 8.0, 8.0, 0.5, "float32", False)
    term = D3Term.from_section("b97-3c", "bj", 8.0, 20.0, 0.5, "float32", False)
    assert term.params == B97_3C and term.cn_cutoff == 8.0


def triclinic(atoms):
    atoms = atoms.copy()
    atoms.set_cell(np.array([[12.0, 0.0, 0.0], [3.0, 11.0, 0.0], [-2.0, 1.5, 10.5]]), scale_atoms=True)
    return atoms


def full_list_near(atoms, term: D3Term, reach: float, list_cutoff: float):
    """(energy, forces, dU/d(eps)) of :func:`near_energy` at ``atoms`` on ASE's full list within ``list_cutoff``."""
    from ase.neighborlist import neighbor_list

    i, j, shifts = neighbor_list("ijS", atoms, list_cutoff)
    inputs, cell = d3_inputs(term, atoms.numbers, atoms.cell.array), atoms.cell.array

    def energy(positions, eps):
        d = (positions[j] - positions[i] + shifts @ cell) * (1 + eps)
        return near_energy(d, i, j, np.ones(len(i), bool), inputs, term, reach)

    value, (gradient, strain) = jax.value_and_grad(energy, argnums=(0, 1))(jnp.asarray(atoms.positions), 0.0)
    return float(value), -np.asarray(gradient), float(strain)


def test_the_short_range_switched_off_beyond_the_cutoff_is_the_whole_term(box):
    """``near_energy`` with its switch beyond the D3 cutoff (every pair weighted 1) on a full list is the
    whole D3 term: torch-dftd's energy, forces and V tr(stress) in float64, at 8 A in a 12 A box."""
    term = D3Term(B97_3C, 8.0, 8.0, 0.5, "float64")
    energy, forces, strain = full_list_near(box, term, reach=8.0 + SWITCH_WIDTH + 0.1, list_cutoff=8.1)
    ref_energy, ref_forces, ref_stress = torch_dftd(box, 8.0, 8.0)
    assert abs(energy - ref_energy) / len(box) < 1e-8
    np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=1e-7)
    assert strain == pytest.approx(box.get_volume() * ref_stress[:3].sum(), abs=1e-6)


def test_the_short_range_is_smooth_and_switched(box):
    """The switch is 1 inside, 0 outside and C2-smooth; at reach 5 A the short range carries most of
    the D3 energy and force, with a remainder beyond it (about 13 % of the energy in this box) that
    the impulses must carry, its forces are minus its gradient (central differences), and a list
    longer than the reach changes nothing."""
    r = np.array([3.0, 3.99, 4.0, 4.5, 5.0, 5.5])
    np.testing.assert_allclose(switch(r, 5.0), [1.0, 1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-12)
    slope = jax.vmap(jax.grad(lambda x: switch(x, 5.0)))(jnp.array([4.0, 5.0]))
    np.testing.assert_allclose(slope, 0.0, atol=1e-12)
    term = D3Term(B97_3C, 20.0, 20.0, 0.5, "float64")
    energy, forces, _ = full_list_near(box, term, reach=5.0, list_cutoff=5.0)
    assert (energy, forces[0]) == (pytest.approx(full_list_near(box, term, 5.0, 6.5)[0], abs=1e-12),
                                   pytest.approx(full_list_near(box, term, 5.0, 6.5)[1][0], abs=1e-12))
    whole_energy, whole_forces, _ = torch_dftd(box, 20.0, 20.0)
    assert 0.05 < 1 - energy / whole_energy < 0.3
    assert np.linalg.norm(whole_forces - forces) < 0.3 * np.linalg.norm(whole_forces)
    shifted, h = box.copy(), 1e-5
    for atom, axis in ((0, 0), (57, 2)):
        plus, minus = shifted.copy(), shifted.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = (full_list_near(minus, term, 5.0, 5.0)[0] - full_list_near(plus, term, 5.0, 5.0)[0]) / (2 * h)
        assert forces[atom, axis] == pytest.approx(numeric, abs=1e-7)
