"""D3 with a neighbour-list skin: equal to torch-dftd's fresh evaluation along trajectories and cell
changes, list reuse and rebuilds; D3 label shifts; MLP + D3 hybrid."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import all_changes
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

from ilcampaign.engine.dispersion.ase_hybrid import hybrid_calculator
from ilcampaign.engine.dispersion.label_shift import d3_results, shift_labels
from ilcampaign.engine.dispersion.torch_dftd import SkinD3Calculator
from ilcampaign.engine.structures.ions import conformer

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"
CUTOFF = 7.93766  # the paper's "8 A"
PARAMS = dict(xc="b97-3c", damping="bj", cutoff=CUTOFF, cn_cutoff=CUTOFF, dtype=torch.float64)


@pytest.fixture(scope="module")
def ion_pairs() -> Atoms:
    """Two BMIM+ BF4- pairs in a periodic 9 A box (60 atoms; periodic images lie within the cutoff)."""
    bmim, bf4 = conformer(BMIM, seed=0), conformer(BF4, seed=0)
    atoms = Atoms(cell=[9.0, 9.0, 9.0], pbc=True)
    for molecule, centre, angle in [(bmim, (2.2, 2.2, 2.2), 0), (bf4, (6.8, 6.8, 2.2), 0), (bmim, (6.8, 2.2, 6.8), 90),
                                    (bf4, (2.2, 6.8, 6.8), 45)]:
        copy = molecule.copy()
        copy.rotate(angle, "z", center="COM")
        copy.translate(np.array(centre) - copy.get_center_of_mass())
        atoms += copy
    return atoms


def assert_equals_fresh_evaluation(atoms: Atoms) -> None:
    """``atoms.calc`` agrees with torch-dftd's own calculator, which builds a new pair list."""
    fresh = atoms.copy()
    fresh.calc = TorchDFTD3Calculator(xc="b97-3c", damping="bj", cutoff=CUTOFF, cnthr=CUTOFF, dtype=torch.float64)
    np.testing.assert_allclose(atoms.get_forces(), fresh.get_forces(), rtol=0, atol=1e-6)  # first: one evaluation
    assert abs(atoms.get_potential_energy() - fresh.get_potential_energy()) < 1e-6
    if atoms.pbc.all():
        np.testing.assert_allclose(atoms.get_stress(), fresh.get_stress(), rtol=0, atol=1e-8)


@pytest.mark.parametrize("periodic", [True, False])
def test_skin_equals_fresh_evaluation_along_a_trajectory(ion_pairs, periodic):
    atoms = ion_pairs.copy()
    atoms.pbc = periodic
    atoms.calc = SkinD3Calculator(skin=0.5, **PARAMS)
    rng = np.random.default_rng(0)
    drift = rng.normal(scale=0.02, size=(len(atoms), 3))  # A per step: pairs cross the cutoff while listed
    n_steps = 50
    for _ in range(n_steps):
        atoms.positions += drift + rng.normal(scale=0.005, size=drift.shape)
        assert_equals_fresh_evaluation(atoms)
    assert atoms.calc.n_calls == n_steps
    assert 3 < atoms.calc.n_builds < n_steps / 2


def test_rebuilds_once_an_atom_has_moved_half_the_skin(ion_pairs):
    atoms = ion_pairs.copy()
    atoms.calc = SkinD3Calculator(skin=0.5, **PARAMS)
    start = atoms.positions[0].copy()
    for shift, builds in [(0.0, 1), (0.2, 1), (0.24, 1), (0.26, 2), (0.3, 2), (0.55, 3)]:
        atoms.positions[0] = start + [shift, 0.0, 0.0]
        atoms.get_forces()
        assert atoms.calc.n_builds == builds, shift
    assert atoms.calc.n_calls == 6


def test_skin_zero_rebuilds_on_every_call(ion_pairs):
    atoms = ion_pairs.copy()
    atoms.calc = SkinD3Calculator(skin=0.0, **PARAMS)
    for _ in range(3):
        atoms.positions[0] += 0.01
        assert_equals_fresh_evaluation(atoms)
    assert atoms.calc.n_builds == atoms.calc.n_calls == 3


def test_cell_changes_stay_exact_and_rebuild_once_strain_uses_up_the_skin(ion_pairs):
    atoms = ion_pairs.copy()
    atoms.calc = SkinD3Calculator(skin=0.5, **PARAMS)
    cell = atoms.cell.array.copy()
    atoms.get_forces()
    # NPT-like fluctuations (atoms scaled with the cell, or not, plus a shear): the list stays valid
    for deformation, scale_atoms in [(np.diag([1.002, 0.999, 1.0]), True), (np.diag([0.998, 1.0, 1.001]), False),
                                     (np.eye(3) + 0.002 * np.eye(3)[[1, 2, 0]], True)]:
        atoms.set_cell(cell @ deformation, scale_atoms=scale_atoms)
        assert_equals_fresh_evaluation(atoms)
    assert atoms.calc.n_builds == 1
    # compression pulls pairs from the skin into the cutoff; beyond 1 - cutoff/(cutoff + skin) = 5.9 % it
    # may pull in unlisted pairs, so the list is rebuilt
    atoms.set_cell(cell, scale_atoms=True)
    for factor in [0.99, 0.97, 0.95]:
        atoms.set_cell(factor * cell, scale_atoms=True)
        assert_equals_fresh_evaluation(atoms)
    assert atoms.calc.n_builds == 1
    atoms.set_cell(0.94 * cell, scale_atoms=True)
    assert_equals_fresh_evaluation(atoms)
    assert atoms.calc.n_builds == 2


def labelled_frames(atoms: Atoms) -> list[Atoms]:
    """Rattled copies with made-up labels (periodic with stress, one non-periodic without) and info."""
    rng = np.random.default_rng(1)
    frames = []
    for index in range(3):
        frame = atoms.copy()
        frame.rattle(0.05, seed=index)
        frame.pbc = index < 2
        frame.info = {"charge": 0, "index": index}
        labels = dict(energy=rng.normal(), forces=rng.normal(size=(len(frame), 3)), charges=rng.normal(size=len(frame)))
        if frame.pbc.all():
            labels["stress"] = rng.normal(scale=0.01, size=6)
        frame.calc = SinglePointCalculator(frame, **labels)
        frames.append(frame)
    return frames


def test_shift_labels_adds_and_removes_d3(ion_pairs):
    frames = labelled_frames(ion_pairs)
    d3 = d3_results(frames, **PARAMS)
    for frame, result in zip(frames, d3):
        reference = frame.copy()
        reference.calc = TorchDFTD3Calculator(xc="b97-3c", damping="bj", cutoff=CUTOFF, cnthr=CUTOFF,
                                              dtype=torch.float64)
        assert result["energy"] == pytest.approx(reference.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(result["forces"], reference.get_forces(), atol=1e-9)
        assert ("stress" in result) == frame.pbc.all()

    with_d3 = shift_labels(frames, d3, +1)
    for frame, shifted, result in zip(frames, with_d3, d3):
        assert shifted.info == frame.info
        assert shifted.get_potential_energy() == pytest.approx(frame.get_potential_energy() + result["energy"])
        np.testing.assert_allclose(shifted.get_forces(), frame.get_forces() + result["forces"])
        np.testing.assert_array_equal(shifted.calc.results["charges"], frame.calc.results["charges"])
        if frame.pbc.all():
            np.testing.assert_allclose(shifted.get_stress(), frame.get_stress() + result["stress"])

    for frame, back in zip(frames, shift_labels(with_d3, d3, -1)):
        assert back.info == frame.info
        assert set(back.calc.results) == set(frame.calc.results)
        for key, value in frame.calc.results.items():
            np.testing.assert_allclose(back.calc.results[key], value, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        shift_labels(frames, d3, 2)


class UncertainLJ(LennardJones):
    """Stand-in MLP: Lennard-Jones plus a made-up force uncertainty, as an ensemble model reports;
    ``full_stress`` reports the stress as a 3x3 tensor, as apax's calculator does."""

    implemented_properties = LennardJones.implemented_properties + ["forces_uncertainty"]

    def __init__(self, full_stress: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.full_stress = full_stress

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        from ase.stress import voigt_6_to_full_3x3_stress

        super().calculate(atoms, properties, system_changes)
        self.results["forces_uncertainty"] = np.full(len(self.atoms), 0.1)
        if self.full_stress:
            self.results["stress"] = voigt_6_to_full_3x3_stress(self.results["stress"])


@pytest.mark.parametrize("full_stress", [False, True], ids=["voigt", "3x3"])
def test_hybrid_sums_mlp_and_d3_and_passes_uncertainty_through(ion_pairs, full_stress):
    atoms = ion_pairs.copy()
    atoms.rattle(0.05, seed=2)
    mlp = UncertainLJ(full_stress=full_stress, sigma=2.5, epsilon=0.01, rc=6.0)
    atoms.calc = hybrid_calculator(mlp, skin=0.5, **PARAMS)
    forces = atoms.get_forces()
    assert "forces_uncertainty" in atoms.calc.results
    np.testing.assert_array_equal(atoms.calc.get_property("forces_uncertainty", atoms), 0.1)

    alone = [atoms.copy(), atoms.copy()]
    alone[0].calc = UncertainLJ(sigma=2.5, epsilon=0.01, rc=6.0)  # Voigt stress
    alone[1].calc = SkinD3Calculator(skin=0.0, **PARAMS)
    assert atoms.get_potential_energy() == pytest.approx(sum(a.get_potential_energy() for a in alone), abs=1e-9)
    np.testing.assert_allclose(forces, sum(a.get_forces() for a in alone), atol=1e-9)
    np.testing.assert_allclose(atoms.get_stress(), sum(a.get_stress() for a in alone), atol=1e-12)
    assert atoms.calc.terms[0].n_calls == 1  # energy, forces and stress from one D3 evaluation
