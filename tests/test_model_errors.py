"""ilcampaign.engine.analysis.model_errors on a tiny real model: a [16, 16] two-member ensemble trained for a few
epochs on one BMIM BF4 ion pair (30 atoms) labelled with GFN2-xTB, evaluated on held-out frames of
30 and 60 atoms (training dominates the run time)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ilcampaign.campaign.spec import ApaxModel
from ilcampaign.campaign.units import to_internal
from ilcampaign.engine.analysis.model_errors import model_errors

pytestmark = pytest.mark.slow


def labelled(atoms: Atoms) -> Atoms:
    """``atoms`` with GFN2-xTB energy, forces and stress on a SinglePointCalculator."""
    from tblite.ase import TBLite

    atoms = atoms.copy()
    atoms.calc = TBLite(method="GFN2-xTB", charge=0, verbosity=0)
    labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **labels)
    return atoms


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    """10 rattled frames: 8 of the 30-atom box (4 train, 2 valid, 2 test), 2 of it doubled (test)."""
    from ilcampaign.engine.structures.ions import conformer
    from ilcampaign.engine.structures.packing import pack_box

    ions = [(conformer("CCCCn1cc[n+](C)c1", 1), 1), (conformer("F[B-](F)(F)F", 1), 1)]
    box = pack_box(ions, to_internal("1.0 g/cm^3", "density"), seed=1, tolerance=2.0)
    rng = np.random.default_rng(0)
    out = []
    for index, stdev in enumerate(0.02 + 0.015 * np.arange(10)):
        atoms = box.repeat((2, 1, 1)) if index >= 8 else box.copy()
        atoms.positions += rng.normal(0.0, stdev, atoms.positions.shape)
        out.append(labelled(atoms))
    return out


@pytest.fixture(scope="module")
def model_dir(frames, tmp_path_factory):
    from ilcampaign.engine.models.training import train

    model = ApaxModel(nn=[16, 16], n_basis=4, n_radial=3, r_max=3.0, epochs=5, batch_size=2, valid_batch_size=2)
    return train(model, frames[:4], frames[4:6], tmp_path_factory.mktemp("train"), checkpoint_every=100).model_dir


@pytest.fixture(scope="module")
def test_frames(frames) -> list[Atoms]:
    """The held-out frames (30, 30, 60, 60 atoms); the second has no stress label."""
    held_out = [atoms.copy() for atoms in frames[6:]]
    for atoms, frame in zip(held_out, frames[6:]):
        results = dict(frame.calc.results)
        if atoms is held_out[1]:
            del results["stress"]
        atoms.calc = SinglePointCalculator(atoms, **results)
    return held_out


def by_hand(model_dir, frames: list[Atoms]) -> dict[str, np.ndarray]:
    """Per-frame errors with apax's ASE calculator, one frame at a time. Every box is wider than
    2 r_max, so the calculator takes its jax_md neighbour list, whose stress is right (its
    padded-offset path for smaller boxes leaves the offsets unstrained)."""
    from ilcampaign.engine.models.apax import force_uncertainty, load_calculator

    calc = load_calculator(model_dir)
    energy, forces, stress, sigma, symbols = [], [], [], [], []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calc
        energy.append((atoms.get_potential_energy() - frame.get_potential_energy()) / len(atoms))
        forces.append((atoms.get_forces() - frame.calc.results["forces"]).ravel())
        if "stress" in frame.calc.results:
            stress.append(atoms.get_stress() - frame.calc.results["stress"])
        sigma.append(force_uncertainty(calc.results))
        symbols.append(np.repeat(frame.get_chemical_symbols(), 3))
    return {"energy": np.array(energy), "forces": np.concatenate(forces), "stress": np.concatenate(stress),
            "sigma": np.array(sigma), "symbols": np.concatenate(symbols)}


def test_errors_match_a_per_frame_calculator_loop(model_dir, test_frames, tmp_path, monkeypatch):
    from ilcampaign.archive.arrays import write_dataset

    monkeypatch.chdir(tmp_path)
    errors = model_errors(model_dir, test_frames, batch_size=3)  # two batches, the second padded
    assert list(tmp_path.iterdir()) == []  # writes nothing, not even apax's dataset cache
    hand = by_hand(model_dir, test_frames)

    def close(name: str, value: float) -> None:
        assert float(errors[name]) == pytest.approx(value, rel=1e-6, abs=1e-9), name

    close("energy_mae_per_atom", np.mean(np.abs(hand["energy"])))
    close("energy_rmse_per_atom", np.sqrt(np.mean(hand["energy"] ** 2)))
    close("force_mae", np.mean(np.abs(hand["forces"])))
    close("force_rmse", np.sqrt(np.mean(hand["forces"] ** 2)))
    close("stress_mae", np.mean(np.abs(hand["stress"])))
    close("stress_rmse", np.sqrt(np.mean(hand["stress"] ** 2)))
    np.testing.assert_allclose(errors["energy_error_per_atom"], hand["energy"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(errors["force_predicted"] - errors["force_reference"], hand["forces"], atol=1e-6)
    np.testing.assert_allclose(errors["force_uncertainty"], hand["sigma"], rtol=1e-5)
    assert errors["force_element"].values.tolist() == hand["symbols"].tolist()

    assert errors["n_atoms"].values.tolist() == [30, 30, 60, 60]
    assert int(errors["n_frames"]) == 4 and int(errors["n_frames_with_stress"]) == 3
    assert errors["force_component"].size == 3 * 180
    assert np.isnan(errors["stress_reference"][1]).all() and np.isfinite(errors["stress_predicted"]).all()
    write_dataset(tmp_path / "errors.nc", errors)  # refuses a numeric variable without units


def test_per_element_errors_add_up_to_the_totals(model_dir, test_frames):
    errors = model_errors(model_dir, test_frames)
    count = errors["n_force_components_per_element"].values
    assert errors["element"].values.tolist() == ["H", "B", "C", "N", "F"]
    assert count.sum() == errors["force_component"].size
    mae, rmse = errors["force_mae_per_element"].values, errors["force_rmse_per_element"].values
    assert (count * mae).sum() / count.sum() == pytest.approx(float(errors["force_mae"]), rel=1e-12)
    assert np.sqrt((count * rmse**2).sum() / count.sum()) == pytest.approx(float(errors["force_rmse"]), rel=1e-12)
    for element, element_mae in zip(errors["element"].values, mae):
        pick = errors["force_element"] == element
        error = (errors["force_predicted"] - errors["force_reference"])[pick]
        assert float(np.abs(error).mean()) == pytest.approx(element_mae, rel=1e-12)


def test_frames_without_labels_are_refused(model_dir, test_frames):
    bare = test_frames[0].copy()  # no calculator
    with pytest.raises(ValueError, match="frame 1 has no energy or forces label"):
        model_errors(model_dir, [test_frames[0], bare])
    energy_only = test_frames[0].copy()
    energy_only.calc = SinglePointCalculator(energy_only, energy=-1.0)
    with pytest.raises(ValueError, match="frame 0 has no forces label"):
        model_errors(model_dir, [energy_only])
    with pytest.raises(ValueError, match="at least one"):
        model_errors(model_dir, [])
