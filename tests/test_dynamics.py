"""Sampling dynamics (engine.dynamics): eqn 9 ramps, the uncertainty stop, the blow-up guard, NPT,
rigid density ramps, geometry optimisation.

The dynamics logic is tested on EMT nitrogen (N2 molecules in a periodic box: fast, bonded, with
stress); the "uncertainty" in those tests is a stand-in, a deterministic function of the positions,
because the stop logic is what is under test. One slow test runs GFN2-xTB on a real ion pair.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixBondLengths

from archive.arrays import write_dataset
from campaign.spec import DensityRamp, GeometryOptimisation, MDSampler, TemperatureRamp
from campaign.units import to_internal
from engine.dynamics import optimise, ramp, run_md


def eqn9(t, start, end, amplitude, t_end, t_per):
    """The paper's eqn 9, written out."""
    return start + t / t_end * (end - start) + amplitude * math.sin(2 * math.pi * t / t_per)


def nitrogen_box(n: int = 2, spacing: float = 4.0, seed: int = 0) -> Atoms:
    """n^3 randomly oriented N2 molecules (EMT bond length) on a grid in a periodic cubic box."""
    rng = np.random.default_rng(seed)
    positions = []
    for centre in np.indices((n, n, n)).reshape(3, -1).T * spacing + spacing / 2:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        positions += [centre - 0.52 * axis, centre + 0.52 * axis]
    atoms = Atoms("N" * len(positions), positions=positions, cell=[n * spacing] * 3, pbc=True)
    atoms.arrays["mol_id"] = np.repeat(np.arange(n**3), 2)
    return atoms


def displacement_from(start: Atoms):
    """Stand-in for the ensemble force uncertainty: the largest displacement from ``start`` (A)."""
    reference = start.positions.copy()
    return lambda atoms: float(np.abs(atoms.positions - reference).max())


def centres_fractional(frame: Atoms) -> np.ndarray:
    masses, mol = frame.get_masses(), frame.arrays["mol_id"]
    centres = np.array([masses[mol == m] @ frame.positions[mol == m] / masses[mol == m].sum() for m in np.unique(mol)])
    return centres @ np.linalg.inv(frame.cell.array)


def sampler(**kwargs) -> MDSampler:
    return MDSampler(**{"timestep": 1.0, "n_steps": 40, "interval": 10, **kwargs})


# --------------------------------------------------------------------------- eqn 9


def test_ramp_is_eqn9():
    r = TemperatureRamp(start=230, end=500, amplitude=150, oscillations=10)
    for t in (0, 1, 1250, 2500, 37674, 49999, 50000):
        assert ramp(r, t, 50000) == pytest.approx(eqn9(t, 230, 500, 150, 50000, 50000 / 10), rel=1e-12)
    steps = np.arange(0, 50001, 7)
    assert np.array_equal(ramp(r, steps, 50000), [ramp(r, int(t), 50000) for t in steps])
    assert ramp(TemperatureRamp.model_validate(298.15), 1234, 50000) == 298.15  # a number: constant
    assert ramp(TemperatureRamp(start=300, amplitude=50), 777, 1000) == 300  # amplitude without oscillations
    assert ramp(TemperatureRamp(start=300, oscillations=3), 777, 1000) == 300  # oscillations without amplitude
    d = DensityRamp(start="1.21 g/cm^3", amplitude="0.1 g/cm^3", oscillations=3)  # end None: oscillate about start
    rho, amp = to_internal("1.21 g/cm^3", "density"), to_internal("0.1 g/cm^3", "density")
    assert ramp(d, 100, 1000) == pytest.approx(eqn9(100, rho, rho, amp, 1000, 1000 / 3), rel=1e-12)


def test_ramp_to_non_positive_values_is_refused():
    with pytest.raises(ValueError, match="temperature ramp reaches"):
        run_md(nitrogen_box(), EMT(), sampler(temperature={"start": 100, "amplitude": 150, "oscillations": 1}),
               seed=0, uncertainty=None)


# --------------------------------------------------------------------------- ramps in MD


@pytest.mark.parametrize("thermostat", ["langevin", "nose_hoover_chain"])
def test_ramps_follow_eqn9_and_move_centres_with_the_box(thermostat):
    temperature = {"start": 300, "end": 500, "amplitude": 80, "oscillations": 2}
    density = {"start": "0.6 g/cm^3", "end": "1.2 g/cm^3", "amplitude": "0.05 g/cm^3", "oscillations": 1}
    s = sampler(thermostat=thermostat, temperature=temperature, density=density, n_steps=20, interval=1, timestep=0.5)
    result = run_md(nitrogen_box(), EMT(), s, seed=3, uncertainty=None)
    assert result.stopped_at is None and [f.info["step"] for f in result.frames] == list(range(1, 21))
    series = result.series
    assert list(series.step.values) == list(range(21))
    expected_t = [eqn9(t, 300, 500, 80, 20, 20 / 2) for t in range(21)]
    expected_rho = [eqn9(t, 0.6, 1.2, 0.05, 20, 20) for t in range(21)]  # g/cm^3, the series' unit
    assert series.target_temperature.attrs["units"] == "K" and series.density.attrs["units"] == "g/cm^3"
    assert np.allclose(series.target_temperature.values, expected_t, rtol=1e-12, atol=0)
    assert np.allclose(series.target_density.values, expected_rho, rtol=1e-12, atol=0)
    assert np.allclose(series.density.values, expected_rho, rtol=1e-12, atol=0)  # the box is at the ramp's density
    assert np.allclose(series.time.values, 0.5 * np.arange(21))
    for frame in result.frames:
        assert frame.info["target_temperature_K"] == pytest.approx(expected_t[frame.info["step"]], rel=1e-12)
        assert frame.info["density_g_cm3"] == pytest.approx(expected_rho[frame.info["step"]], rel=1e-12)
    # the box shrinks 1.2% a step; centres of mass keep their fractional coordinates through each
    # rescale, so they move only by thermal motion (~2e-4 a step here)
    fractional = np.array([centres_fractional(f) for f in result.frames])
    assert np.abs(np.diff(fractional, axis=0)).max() < 2e-3


def test_density_ramp_keeps_molecules_rigid():
    """Rigid N2 (RATTLE) in a wrapped box whose molecules straddle the boundary: every frame's bond
    lengths stay those of the input while the box follows the ramp."""
    box = nitrogen_box()
    box.set_constraint(FixBondLengths([(2 * i, 2 * i + 1) for i in range(8)], tolerance=1e-14))
    box.positions += 2.0
    box.wrap()
    bonds = np.array([box.get_distance(2 * i, 2 * i + 1, mic=True) for i in range(8)])
    assert np.abs(box.positions[0::2] - box.positions[1::2]).max() > 2  # some molecules are split
    s = sampler(density={"start": "0.7 g/cm^3", "end": "1.0 g/cm^3", "amplitude": "0.1 g/cm^3", "oscillations": 1.5},
                n_steps=30, interval=1)
    result = run_md(box, EMT(), s, seed=1, uncertainty=None)
    for frame in result.frames:
        whole = np.linalg.norm(frame.positions[0::2] - frame.positions[1::2], axis=1)  # no minimum image
        assert np.abs(whole - bonds).max() < 1e-10
        assert frame.info["density_g_cm3"] == pytest.approx(frame.info["target_density_g_cm3"], rel=1e-12)
    assert result.frames[-1].get_volume() < 0.75 * box.get_volume()


def test_density_ramp_needs_molecules():
    box = nitrogen_box()
    del box.arrays["mol_id"]
    with pytest.raises(ValueError, match="mol_id"):
        run_md(box, EMT(), sampler(density="0.8 g/cm^3"), seed=0, uncertainty=None)


# --------------------------------------------------------------------------- the uncertainty stop


def test_uncertainty_stop_fires_at_the_first_step_above_the_threshold(tmp_path):
    box = nitrogen_box()
    free = run_md(box, EMT(), sampler(n_steps=60, interval=1, uncertainty_threshold=None), seed=2,
                  uncertainty=displacement_from(box))
    sigma = free.series.uncertainty.values
    assert free.series.uncertainty.attrs["units"] == "eV/Angstrom" and np.all(np.isfinite(sigma))
    threshold = float(np.median(sigma))
    first = int(np.argmax(sigma > threshold))
    assert 10 < first < 60

    stopped = run_md(box, EMT(), sampler(n_steps=60, interval=10, uncertainty_threshold=threshold), seed=2,
                     uncertainty=displacement_from(box))
    assert stopped.stopped_at == first
    assert stopped.stop_reason == f"uncertainty {sigma[first]:.3g} eV/A > {threshold:.3g}"
    steps = [f.info["step"] for f in stopped.frames]
    assert steps == [s for s in range(10, first, 10)] + [first]  # the frame that tripped the stop is kept
    assert stopped.frames[-1].info["uncertainty_eV_A"] == pytest.approx(sigma[first], rel=1e-12)
    assert stopped.series.step.values[-1] == first
    write_dataset(tmp_path / "series.nc", stopped.series)  # every variable has its units
    # the same seed gives the same trajectory whatever the interval
    assert np.array_equal(stopped.frames[0].positions, free.frames[9].positions)

    unstopped = run_md(box, EMT(), sampler(n_steps=60, interval=10, uncertainty_threshold=10 * sigma.max()), seed=2,
                       uncertainty=displacement_from(box))
    assert unstopped.stopped_at is None and unstopped.stop_reason is None
    assert [f.info["step"] for f in unstopped.frames] == [10, 20, 30, 40, 50, 60]


# --------------------------------------------------------------------------- the blow-up guard


class BrokenEMT(EMT):
    """EMT that goes wrong from its ``from_call``-th calculation on: NaN forces, or a 20 eV/A push."""

    def __init__(self, from_call: int, how: str):
        super().__init__()
        self.calls, self.from_call, self.how = 0, from_call, how

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.calls += 1
        if self.calls >= self.from_call:
            self.results["forces"] = self.results["forces"] + (np.nan if self.how == "nan" else 20.0)


@pytest.mark.parametrize("how, reason", [("nan", "exploded: non-finite forces"), ("push", "exploded: temperature")])
def test_blow_up_guard(how, reason):
    calls = []
    result = run_md(nitrogen_box(), BrokenEMT(from_call=13, how=how), sampler(interval=2), seed=0,
                    uncertainty=None, on_frame=lambda frame: calls.append(frame.info["step"]))
    assert result.stop_reason.startswith(reason)
    assert result.stopped_at >= 12  # one calculation a step: call 13 is step 12
    if how == "nan":
        assert result.stopped_at == 12
    assert all(f.info["step"] < result.stopped_at for f in result.frames)
    assert calls == [f.info["step"] for f in result.frames] and calls[-1] >= 10
    assert result.series.step.values[-1] == result.stopped_at


# --------------------------------------------------------------------------- determinism, NPT, optimisation


def test_deterministic_for_a_seed():
    s = sampler(temperature={"start": 300, "end": 400}, density={"start": "0.7 g/cm^3", "end": "0.8 g/cm^3"})
    first, again, other = (run_md(nitrogen_box(), EMT(), s, seed=seed, uncertainty=None) for seed in (5, 5, 6))
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(first.frames, again.frames))
    assert first.series.equals(again.series)
    assert not np.allclose(first.frames[-1].positions, other.frames[-1].positions)


def test_npt_changes_the_volume():
    copper = bulk("Cu", "fcc", a=3.70, cubic=True).repeat(2)  # stretched: EMT copper wants 3.59 A
    s = sampler(ensemble="npt", temperature={"start": 300, "end": 400}, n_steps=40, interval=10, timestep=2.0)
    result = run_md(copper, EMT(), s, seed=0, uncertainty=None)
    assert result.stopped_at is None and len(result.frames) == 4
    assert np.allclose(result.series.target_temperature.values, [300, 325, 350, 375, 400])
    density = result.series.density.values
    assert abs(density[-1] / density[0] - 1) > 1e-3
    for frame in result.frames:  # box lengths change, angles do not
        assert np.count_nonzero(frame.cell.array - np.diag(np.diag(frame.cell.array))) == 0
    assert result.frames[-1].get_volume() != pytest.approx(copper.get_volume(), rel=1e-3)


def test_npt_needs_an_upper_triangular_cell():
    copper = bulk("Cu", "fcc", a=3.6).repeat(2)  # primitive fcc cells: lower entries set
    with pytest.raises(ValueError, match="upper-triangular"):
        run_md(copper, EMT(), sampler(ensemble="npt"), seed=0, uncertainty=None)


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
def test_optimise_returns_every_step(optimizer):
    box = nitrogen_box()
    box.positions[0::2] += 0.1  # stretched bonds
    frames = optimise(box, EMT(), GeometryOptimisation(optimizer=optimizer, fmax=0.05, max_steps=200))
    assert [f.info["step"] for f in frames] == list(range(len(frames))) and len(frames) > 3
    assert np.array_equal(frames[0].positions, box.positions)
    assert frames[-1].info["fmax_eV_A"] < 0.05 < frames[0].info["fmax_eV_A"]
    assert all(f.info["source"] == "geometry_optimisation" and f.calc is None for f in frames)
    capped = optimise(box, EMT(), GeometryOptimisation(optimizer=optimizer, fmax=1e-6, max_steps=3))
    assert len(capped) == 4


def test_optimise_stops_at_non_finite_forces():
    frames = optimise(nitrogen_box(), BrokenEMT(from_call=3, how="nan"), GeometryOptimisation(fmax=1e-6))
    assert [f.info["step"] for f in frames] == [0, 1]


# --------------------------------------------------------------------------- real chemistry


@pytest.mark.slow
def test_md_on_an_ion_pair_with_gfn2():
    """A few steps of GFN2-xTB MD on one BMIM BF4 pair, in a loose box (10.8 A) because tblite's
    periodic GFN2 costs ~0.4 s a step there and ~2.5 s at the liquid's density (6.8 A)."""
    from tblite.ase import TBLite

    from engine.packing import conformer, pack_box

    pair = pack_box([(conformer("CCCCn1cc[n+](C)c1", 0), 1), (conformer("F[B-](F)(F)F", 1), 1)],
                    to_internal("0.3 g/cm^3", "density"), seed=3, tolerance=2.0)
    s = sampler(temperature={"start": 300, "end": 400}, n_steps=4, interval=2, timestep=0.5,
                uncertainty_threshold=None)
    result = run_md(pair, TBLite(method="GFN2-xTB", verbosity=0), s, seed=1, uncertainty=None)
    assert result.stopped_at is None and [f.info["step"] for f in result.frames] == [2, 4]
    assert np.all(np.isfinite(result.series.potential_energy.values))
    assert np.allclose(result.series.target_temperature.values, [300, 350, 400])
    assert all(0 < f.info["temperature_K"] < 1500 and f.info["charge"] == 0 for f in result.frames)
