"""Reference calculators (ilcampaign.engine.labels.reference): CP2K input, single points and failures; tblite.

The CP2K tests need Debian's cp2k (``cp2k_shell`` and /usr/share/cp2k); CI installs it.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.cp2k import InputSection, parse_input

from ilcampaign.campaign.spec import CP2K, XTB
from ilcampaign.engine.structures.ions import conformer
from ilcampaign.engine.labels.cp2k import cp2k_input
from ilcampaign.engine.labels.method import ReferenceFailure, compute, make_calculator

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"
# small and fast (~5 s with one thread): PBE, double-zeta MOLOPT basis, 250 Ry
PBE = CP2K(
    functional="PBE", basis_set="DZVP-MOLOPT-SR-GTH", basis_set_file="BASIS_MOLOPT", pseudopotential="GTH-PBE",
    cutoff="250 Ry", d3=None, scf={"guess": "atomic"},
)


def bf4_anion(box: float | None = 8.0) -> Atoms:
    """Tetrahedral BF4- (B-F 1.40 A) in the middle of a cubic periodic box (or in vacuum)."""
    d = 1.40 / np.sqrt(3)
    atoms = Atoms("BF4", positions=np.array([[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]]))
    if box is not None:
        atoms.set_cell([box] * 3)
        atoms.pbc = True
        atoms.positions += box / 2
    return atoms


def ion_pair() -> Atoms:
    """BMIM+ with BF4- placed 4.5 A above its ring centre."""
    cation, anion = conformer(BMIM, seed=0), conformer(BF4, seed=0)
    ring = cation.positions[[4, 5, 6, 7, 9]].mean(axis=0)
    anion.positions += ring + [0.0, 0.0, 4.5] - anion.positions[1]
    return cation + anion


def section(root: InputSection, path: str) -> InputSection | None:
    """The section at ``path`` (``NAME`` or ``NAME PARAMS`` parts), or None; ASE's lookup would create it."""
    for part in path.upper().split("/"):
        name, _, params = part.partition(" ")
        found = [s for s in root.subsections if s.name == name and (not params or (s.params or "").upper() == params)]
        if len(found) != 1:
            return None
        root = found[0]
    return root


# --------------------------------------------------------------------------- CP2K input


@pytest.mark.slow
def test_input_written_for_the_paper_settings(tmp_path):
    calc = make_calculator(CP2K(), charge=0, workdir=tmp_path)
    try:
        pair = ion_pair()
        pair.set_cell([20.0] * 3)
        pair.pbc = True
        text = calc.generated_input(pair)
        without_d3 = make_calculator(CP2K(d3=None), charge=0, workdir=tmp_path / "no_d3")
        plain = parse_input(without_d3.generated_input(pair))
        without_d3.close()
    finally:
        calc.close()
    root = parse_input(text)
    dft = section(root, "FORCE_EVAL/DFT")
    assert section(root, "FORCE_EVAL").keywords == ["METHOD QUICKSTEP", "STRESS_TENSOR ANALYTICAL"]
    assert dft.keywords == ["BASIS_SET_FILE_NAME GTH_BASIS_SETS", "POTENTIAL_FILE_NAME GTH_POTENTIALS", "CHARGE 0"]
    assert section(dft, "MGRID").keywords == ["CUTOFF [Ry] 800", "REL_CUTOFF [Ry] 60", "NGRIDS 5"]
    assert section(dft, "QS").keywords == ["EPS_PGF_ORB 0.0001", "EPS_FILTER_MATRIX 0"]
    assert section(dft, "SCF").keywords == ["SCF_GUESS RESTART", "MAX_SCF 100", "EPS_SCF 1e-06"]
    assert section(dft, "SCF/OT").keywords == ["MINIMIZER DIIS", "PRECONDITIONER FULL_SINGLE_INVERSE"]
    assert section(dft, "SCF/OUTER_SCF").keywords == ["MAX_SCF 100", "EPS_SCF 1e-06"]
    assert section(dft, "SCF/PRINT/RESTART OFF") is not None
    assert section(dft, "XC/XC_FUNCTIONAL").params is None
    assert section(dft, "XC/XC_FUNCTIONAL/BECKE97").keywords == ["PARAMETRIZATION B97-3C", "SCALE_X 1.0", "SCALE_C 1.0"]
    assert section(dft, "XC/VDW_POTENTIAL").keywords == ["POTENTIAL_TYPE PAIR_POTENTIAL"]
    assert section(dft, "XC/VDW_POTENTIAL/PAIR_POTENTIAL").keywords == [
        "TYPE DFTD3(BJ)",
        "PARAMETER_FILE_NAME dftd3.dat",
        "REFERENCE_FUNCTIONAL B97-3c",
        "R_CUTOFF [angstrom] 7.93766",
        "CALCULATE_C9_TERM .TRUE.",
        "SHORT_RANGE_CORRECTION .TRUE.",
    ]
    # ASE added none of its own physics: no LDA, no eV cutoff, no LS_SCF, no second basis per kind
    assert [s.name for s in dft.subsections] == ["MGRID", "QS", "SCF", "XC"]
    assert [s.name for s in section(dft, "XC/XC_FUNCTIONAL").subsections] == ["BECKE97"]
    valence = {"H": 1, "B": 3, "C": 4, "N": 5, "F": 7}
    for element, q in valence.items():
        kind = section(root, f"FORCE_EVAL/SUBSYS/KIND {element}")
        assert kind.keywords == [f"BASIS_SET TZVP-GTH-q{q}", f"POTENTIAL GTH-PBE-q{q}"]
    assert len([s for s in section(root, "FORCE_EVAL/SUBSYS").subsections if s.name == "KIND"]) == 5
    assert section(root, "FORCE_EVAL/SUBSYS/CELL").keywords[0] == "PERIODIC XYZ"
    assert len(section(root, "FORCE_EVAL/SUBSYS/COORD").keywords) == len(pair)
    assert section(plain, "FORCE_EVAL/DFT/XC/VDW_POTENTIAL") is None
    assert section(plain, "FORCE_EVAL/DFT/XC/XC_FUNCTIONAL/BECKE97") is not None


@pytest.mark.slow
def test_input_other_functional_extra_input_and_unknown_basis():
    extra = """&FORCE_EVAL
      &DFT
        &SCF
          MAX_SCF 20  ! replaces the inner MAX_SCF only
          &PRINT
            &RESTART ON
            &END RESTART
          &END PRINT
        &END SCF
      &END DFT
      &SUBSYS
        &KIND H
          BASIS_SET DZVP-GTH
        &END KIND
      &END SUBSYS
    &END FORCE_EVAL"""
    root = parse_input(cp2k_input(PBE.model_copy(update={"extra_input": extra}), {"H", "N"}, charge=1))
    dft = section(root, "FORCE_EVAL/DFT")
    assert section(dft, "XC/XC_FUNCTIONAL").params == "PBE" and not section(dft, "XC/XC_FUNCTIONAL").subsections
    assert "CHARGE 1" in dft.keywords
    assert section(dft, "SCF").keywords == ["SCF_GUESS ATOMIC", "EPS_SCF 1e-06", "MAX_SCF 20"]
    assert section(dft, "SCF/OUTER_SCF").keywords[0] == "MAX_SCF 100"
    assert section(dft, "SCF/PRINT/RESTART ON") is not None
    assert section(root, "FORCE_EVAL/SUBSYS/KIND H").keywords == ["POTENTIAL GTH-PBE-q1", "BASIS_SET DZVP-GTH"]
    assert section(root, "FORCE_EVAL/SUBSYS/KIND N").keywords == [
        "BASIS_SET DZVP-MOLOPT-SR-GTH-q5",
        "POTENTIAL GTH-PBE-q5",
    ]
    with pytest.raises(ValueError, match=r"'TZVP-GTH' for element K in .*GTH_BASIS_SETS"):
        cp2k_input(CP2K(), {"K", "Cl"}, charge=0)


# --------------------------------------------------------------------------- CP2K runs


@pytest.fixture(scope="module")
def pbe_calculator(tmp_path_factory):
    calc = make_calculator(PBE, charge=-1, workdir=tmp_path_factory.mktemp("cp2k"))
    yield calc
    calc.close()


@pytest.mark.slow
def test_cp2k_single_point(pbe_calculator):
    anion = bf4_anion()
    results = compute(anion, pbe_calculator)
    assert set(results) == {"energy", "forces", "stress"}
    assert -2800 < results["energy"] < -2650  # about -100.15 Hartree
    assert results["forces"].shape == (5, 3) and results["stress"].shape == (6,)
    assert np.abs(results["forces"].sum(axis=0)).max() < 0.01  # zero up to the grid's egg-box error
    assert np.abs(results["forces"]).max() < 2.0


@pytest.mark.slow
def test_cp2k_recovers_from_a_crashed_shell(pbe_calculator):
    anion = bf4_anion()
    energy = compute(anion, pbe_calculator)["energy"]
    moved = anion.copy()
    moved.positions[1] += 0.05
    pid = pbe_calculator._shell._child.pid
    threading.Timer(1.0, os.kill, (pid, 9)).start()  # dies mid-SCF
    with pytest.raises(ReferenceFailure, match="CP2K shell exited with code -9"):
        compute(moved, pbe_calculator)
    assert compute(anion, pbe_calculator)["energy"] == pytest.approx(energy, abs=1e-6)  # a fresh shell


@pytest.mark.slow
def test_cp2k_scf_not_converged_raises(tmp_path):
    settings = PBE.model_copy(update={"scf": PBE.scf.model_copy(update={"max_scf": 2, "outer_max_scf": 1})})
    calc = make_calculator(settings, charge=-1, workdir=tmp_path)
    try:
        for _ in range(2):  # the calculator stays usable after a failure
            with pytest.raises(ReferenceFailure, match="SCF not converged"):
                compute(bf4_anion(), calc)
    finally:
        calc.close()


@pytest.mark.slow
def test_cp2k_input_error_is_reported(tmp_path):
    settings = PBE.model_copy(update={"extra_input": "&FORCE_EVAL\n&DFT\nNO_SUCH_KEYWORD 1\n&END DFT\n&END FORCE_EVAL"})
    calc = make_calculator(settings, charge=-1, workdir=tmp_path)
    with pytest.raises(ReferenceFailure, match="unknown keyword NO_SUCH_KEYWORD in section DFT"):
        compute(bf4_anion(), calc)


# --------------------------------------------------------------------------- tblite


@pytest.mark.slow
def test_tblite_single_points(tmp_path):
    anion = compute(bf4_anion(box=None), make_calculator(XTB(), charge=-1, workdir=tmp_path))
    assert set(anion) == {"energy", "forces", "charges"}
    assert anion["energy"] == pytest.approx(-561.0, abs=1.0)
    assert anion["charges"].sum() == pytest.approx(-1.0)
    pair = ion_pair()
    calc = make_calculator(XTB(), charge=0, workdir=tmp_path)
    bound = compute(pair, calc)
    assert bound["forces"].shape == (30, 3) and np.abs(bound["forces"].sum(axis=0)).max() < 1e-8
    assert bound["charges"][:25].sum() == pytest.approx(1.0, abs=0.3)  # charge stays mostly on the cation
    cation = compute(pair[:25], make_calculator(XTB(), charge=1, workdir=tmp_path))["energy"]
    separate = cation + compute(pair[25:], make_calculator(XTB(), charge=-1, workdir=tmp_path))["energy"]
    assert bound["energy"] < separate  # the pair is bound
    pair.set_cell([15.0] * 3)
    pair.pbc = True
    assert compute(pair, calc)["stress"].shape == (6,)


@pytest.mark.slow
def test_tblite_not_converged_raises(tmp_path):
    calc = make_calculator(XTB(max_iterations=1), charge=0, workdir=tmp_path)
    with pytest.raises(ReferenceFailure, match="SCF not converged in 1 cycles"):
        compute(ion_pair(), calc)
    calc.set(max_iterations=250)  # the calculator is still usable
    assert np.isfinite(compute(ion_pair(), calc)["energy"])


class _NaNCalculator(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=None, system_changes=()):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.full((len(self.atoms), 3), np.nan)}


def test_non_finite_results_raise():
    with pytest.raises(ReferenceFailure, match="non-finite forces"):
        compute(bf4_anion(box=None), _NaNCalculator())
