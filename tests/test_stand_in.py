"""The rehearsals' stand-in reference (engine/labels/stand_in.py) on a packed 2-pair BMIM BF4 box:
forces are minus the gradient of its energy, stress the strain derivative, and its dispersion is
the real method's: a CP2K D3 block that a relabel with {d3: null} removes, exactly, and xTB's
built-in dispersion that nothing removes."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.calculator import all_changes
from ase.stress import voigt_6_to_full_3x3_stress

from ilcampaign.campaign.spec import CP2K, XTB, with_overrides
from ilcampaign.campaign.spec.reference.stand_in import StandIn
from ilcampaign.campaign.units import to_internal
from ilcampaign.engine.labels.stand_in import StandInCalculator
from ilcampaign.engine.structures.ions import conformer
from ilcampaign.engine.structures.packing import pack_box

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"


@pytest.fixture(scope="module")
def box():
    return pack_box([(conformer(BMIM, 1), 2), (conformer(BF4, 1), 2)], to_internal("1.21 g/cm^3", "density"),
                    seed=3, tolerance=2.0)


def stand_in(reference) -> StandIn:
    return StandIn(mirrors=reference.model_dump(mode="json"), ions=[BMIM, BF4])


def energy(atoms, reference: StandIn) -> float:
    atoms = atoms.copy()
    atoms.calc = StandInCalculator(reference)
    return atoms.get_potential_energy()


def test_forces_are_minus_the_gradient_and_stress_the_strain_derivative(box):
    reference = stand_in(CP2K())
    atoms = box.copy()
    atoms.calc = StandInCalculator(reference)
    forces, stress = atoms.get_forces(), voigt_6_to_full_3x3_stress(atoms.get_stress())
    h = 1e-5
    for atom, axis in [(0, 0), (5, 1), (33, 2), (41, 0)]:  # BMIM atoms and a BF4 atom
        moved = [box.copy(), box.copy()]
        moved[0].positions[atom, axis] += h
        moved[1].positions[atom, axis] -= h
        assert forces[atom, axis] == pytest.approx(-(energy(moved[0], reference) - energy(moved[1], reference)) / (2 * h),
                                                   rel=1e-5, abs=1e-6)
    for a, b in [(0, 0), (2, 2), (0, 1), (1, 2)]:
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = h if a == b else h / 2

        def strained(sign):
            atoms = box.copy()
            atoms.set_cell(box.cell.array @ (np.eye(3) + sign * strain), scale_atoms=True)
            return energy(atoms, reference)

        derivative = (strained(1) - strained(-1)) / (2 * h) / box.get_volume()
        assert stress[a, b] == pytest.approx(derivative, rel=1e-5, abs=1e-8)


def test_a_relabel_without_d3_removes_exactly_the_d3_term(box):
    from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

    with_d3 = stand_in(CP2K())
    without = with_overrides(with_d3, {"mirrors": {"d3": None}})
    assert with_d3.dispersion() == CP2K().dispersion() and without.dispersion() == ()
    block = CP2K().d3
    d3 = TorchDFTD3Calculator(xc="b97-3c", damping="bj", cutoff=block.cutoff, cnthr=block.cutoff)
    probe = box.copy()
    d3.calculate(probe, ["energy"], all_changes)
    assert energy(box, with_d3) - energy(box, without) == pytest.approx(float(d3.results["energy"]), abs=1e-5)
    assert float(d3.results["energy"]) < -0.5  # a real dispersion energy, not a rounding difference


def test_dispersion_built_into_the_real_method_stays(box):
    xtb = stand_in(XTB())
    assert xtb.dispersion() == ("D4 (built into GFN2-xTB)",) and xtb.removable_d3() is None
    plain = stand_in(CP2K(d3=None))
    assert energy(box, xtb) < energy(box, plain) - 0.5  # the built-in term is there
    with pytest.raises(ValueError, match="d3"):
        with_overrides(xtb, {"mirrors": {"d3": None}})  # as with the real xTB: it has no D3 block to drop


def test_a_box_of_other_ions_is_a_reference_failure(box):
    from ilcampaign.engine.labels.method import ReferenceFailure

    reference = StandIn(mirrors=CP2K().model_dump(mode="json"), ions=["[Na+]", "[Cl-]"])
    with pytest.raises(ReferenceFailure, match="ions in order"):
        energy(box, reference)
