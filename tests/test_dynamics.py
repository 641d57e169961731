"""Sampling dynamics (ilcampaign.engine.md.ase): eqn 9 and box ramps, the uncertainty stop, the blow-up guard,
NPT, geometry optimisation, and chunked runs that equal unchunked ones bit for bit.

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

from ilcampaign.archive.arrays import write_dataset
from ilcampaign.campaign.spec import BoxRamp, GeometryOptimisationSettings, MDSettings, TemperatureRamp
from ilcampaign.campaign.units import to_internal
from ilcampaign.engine.md.ase import optimise_chunk, run_md_chunk
from ilcampaign.engine.md.common import box_cell, ramp, series
from ilcampaign.engine.run.chunks import decode_state, encode_state


def eqn9(t, start, end, amplitude, t_end, t_per):
    """The paper's eqn 9, written out."""
    return start + t / t_end * (end - start) + amplitude * math.sin(2 * math.pi * t / t_per)


def ipsuite_box(cell0, end_cell, amplitude, oscillations, ramp_oscillations, step, total_steps):
    """IPSuite's BoxOscillatingRampModifier.modify, written out (its percentage, its minimum)."""
    percentage = step / (total_steps - 1)
    fraction = percentage if ramp_oscillations is None else min(percentage * oscillations / ramp_oscillations, 1)
    return cell0 + fraction * (end_cell - cell0) + np.eye(3) * amplitude * np.sin(2 * np.pi * percentage * oscillations)


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


def sampler(**kwargs) -> MDSettings:
    return MDSettings(**{"timestep": 1.0, "n_steps": 40, "interval": 10, **kwargs})


class Run:
    """A whole run made of chunks of ``every`` steps, a fresh calculator each and the state through its
    file format (as the md step does)."""

    def __init__(self, start, make_calc, s, *, seed, uncertainty=None, every=None):
        self.frames, self.rows, self.chunks, state, first = [], [], 0, None, 0
        while first < s.n_steps:
            last = min(first + (every or s.n_steps), s.n_steps)
            chunk = run_md_chunk(start, make_calc(), s, seed=seed, first=first, last=last, state=state,
                                 uncertainty=uncertainty)
            self.frames += chunk.frames
            self.rows += chunk.rows
            self.chunks += 1
            self.stopped_at, self.stop_reason = chunk.stopped_at, chunk.stop_reason
            if chunk.stopped_at is not None:
                break
            state, first = decode_state(encode_state(chunk.state)), last
        self.series = series(self.rows, s.timestep)


# --------------------------------------------------------------------------- eqn 9 and box ramps


def test_ramp_is_eqn9():
    r = TemperatureRamp(start=230, end=500, amplitude=150, oscillations=10)
    for t in (0, 1, 1250, 2500, 37674, 49999, 50000):
        assert ramp(r, t, 50000) == pytest.approx(eqn9(t, 230, 500, 150, 50000, 50000 / 10), rel=1e-12)
    steps = np.arange(0, 50001, 7)
    assert np.array_equal(ramp(r, steps, 50000), [ramp(r, int(t), 50000) for t in steps])
    assert ramp(TemperatureRamp.model_validate(298.15), 1234, 50000) == 298.15  # a number: constant
    assert ramp(TemperatureRamp(start=300, amplitude=50), 777, 1000) == 300  # amplitude without oscillations
    assert ramp(TemperatureRamp(start=300, oscillations=3), 777, 1000) == 300  # oscillations without amplitude


@pytest.mark.parametrize("ramp_oscillations", [None, 0.5])
def test_box_ramp_is_ipsuites_box_oscillating_ramp(ramp_oscillations):
    cell0 = np.diag([14.2, 14.3, 14.4]) + np.triu(np.full((3, 3), 0.1), 1)
    box = BoxRamp(end=14.58, amplitude=1.0, oscillations=3, ramp_oscillations=ramp_oscillations)
    for step in (0, 1, 4166, 8333, 8334, 25000, 49999):
        expected = ipsuite_box(cell0, np.eye(3) * 14.58, 1.0, 3, ramp_oscillations, step, 50000)
        np.testing.assert_allclose(box_cell(box, cell0, step, 50000), expected, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(box_cell(BoxRamp(amplitude=0.5, oscillations=2), cell0, 0, 100), cell0)  # end: keep
    with pytest.raises(ValueError, match="ramp_oscillations must not exceed"):
        BoxRamp(end=14.0, oscillations=1, ramp_oscillations=2)


def test_ramp_to_non_positive_values_is_refused():
    with pytest.raises(ValueError, match="temperature ramp reaches"):
        Run(nitrogen_box(), EMT, sampler(temperature={"start": 100, "amplitude": 150, "oscillations": 1}), seed=0)


@pytest.mark.parametrize("thermostat", ["langevin", "nose_hoover_chain"])
def test_ramps_in_md_follow_eqn9_and_the_box_ramp_scales_atoms_with_the_cell(thermostat):
    temperature = {"start": 300, "end": 500, "amplitude": 80, "oscillations": 2}
    box = {"end": 7.0, "amplitude": 0.3, "oscillations": 1.5}
    s = sampler(thermostat=thermostat, temperature=temperature, box=box, n_steps=20, interval=1, timestep=0.5)
    start = nitrogen_box()
    run = Run(start, EMT, s, seed=3)
    assert run.stopped_at is None and [f.info["step"] for f in run.frames] == list(range(1, 21))
    assert list(run.series.step.values) == list(range(21))
    expected_t = [eqn9(t, 300, 500, 80, 20, 20 / 2) for t in range(21)]
    assert run.series.target_temperature.attrs["units"] == "K" and run.series.density.attrs["units"] == "g/cm^3"
    # the target for the step that led to a frame is the ramp's value at the step before
    np.testing.assert_allclose(run.series.target_temperature.values[1:], expected_t[:20], rtol=1e-12)
    np.testing.assert_allclose(run.series.time.values, 0.5 * np.arange(21))
    for frame in run.frames:  # the cell of the step that led to the frame
        expected = ipsuite_box(start.cell.array, np.eye(3) * 7.0, 0.3, 1.5, None, frame.info["step"] - 1, 20)
        np.testing.assert_allclose(frame.cell.array, expected, rtol=1e-13)
        assert frame.info["target_temperature_K"] == pytest.approx(expected_t[frame.info["step"] - 1], rel=1e-12)
    # affine: a rescale keeps fractional coordinates, so they move only by thermal motion (~1e-3 a step)
    fractional = np.array([f.get_scaled_positions(wrap=False) for f in run.frames])
    assert np.abs(np.diff(fractional, axis=0)).max() < 5e-3
    assert run.frames[-1].get_volume() < 0.75 * start.get_volume()


def test_rigid_box_ramp_keeps_molecules_rigid():
    """Rigid N2 (RATTLE) in a wrapped box whose molecules straddle the boundary: every frame's bond
    lengths stay those of the input while the cell follows the ramp and centres of mass move with it."""
    start = nitrogen_box()
    start.set_constraint(FixBondLengths([(2 * i, 2 * i + 1) for i in range(8)], tolerance=1e-14))
    start.positions += 2.0
    start.wrap()
    bonds = np.array([start.get_distance(2 * i, 2 * i + 1, mic=True) for i in range(8)])
    assert np.abs(start.positions[0::2] - start.positions[1::2]).max() > 2  # some molecules are split
    s = sampler(box={"end": 7.2, "amplitude": 0.2, "oscillations": 1.5, "scaling": "rigid"}, n_steps=30, interval=1)
    run = Run(start, EMT, s, seed=1)
    for frame in run.frames:
        whole = np.linalg.norm(frame.positions[0::2] - frame.positions[1::2], axis=1)  # no minimum image
        assert np.abs(whole - bonds).max() < 1e-10
    fractional = np.array([centres_fractional(f) for f in run.frames])
    assert np.abs(np.diff(fractional, axis=0)).max() < 2e-3
    assert run.frames[-1].get_volume() < 0.75 * start.get_volume()


def test_rigid_box_ramp_needs_molecules():
    box = nitrogen_box()
    del box.arrays["mol_id"]
    with pytest.raises(ValueError, match="mol_id"):
        Run(box, EMT, sampler(box={"amplitude": 0.1, "oscillations": 1, "scaling": "rigid"}), seed=0)


# --------------------------------------------------------------------------- chunks


CHUNKED = {
    "langevin, T and box ramps": dict(temperature={"start": 300, "end": 450, "amplitude": 40, "oscillations": 2},
                                      box={"end": 7.9, "amplitude": 0.05, "oscillations": 2}),
    "langevin, rigid box": dict(box={"amplitude": 0.2, "oscillations": 1, "scaling": "rigid"}),
    "nose-hoover chain, T ramp": dict(thermostat="nose_hoover_chain", temperature={"start": 300, "end": 500}),
}


@pytest.mark.parametrize("case", CHUNKED)
def test_a_run_in_chunks_equals_one_run_bit_for_bit(case):
    s = sampler(n_steps=60, interval=5, **CHUNKED[case])
    whole = Run(nitrogen_box(), EMT, s, seed=4)
    chunked = Run(nitrogen_box(), EMT, s, seed=4, every=15)
    assert (whole.chunks, chunked.chunks) == (1, 4) and whole.stopped_at is None
    assert len(whole.frames) == len(chunked.frames) == 12
    for a, b in zip(whole.frames, chunked.frames):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.get_momenta(), b.get_momenta())
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
    assert whole.series.equals(chunked.series)


def test_npt_in_chunks_equals_one_run_bit_for_bit():
    copper = bulk("Cu", "fcc", a=3.70, cubic=True).repeat(2)
    s = sampler(ensemble="npt", temperature={"start": 300, "end": 400, "amplitude": 30, "oscillations": 1},
                n_steps=40, interval=5, timestep=2.0)
    whole, chunked = Run(copper, EMT, s, seed=0), Run(copper, EMT, s, seed=0, every=15)
    assert chunked.chunks == 3
    for a, b in zip(whole.frames, chunked.frames, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)


# --------------------------------------------------------------------------- the uncertainty stop


def test_uncertainty_stop_fires_at_the_first_frame_above_the_threshold(tmp_path):
    box = nitrogen_box()
    free = Run(box, EMT, sampler(n_steps=60, interval=1, uncertainty_threshold=None), seed=2,
               uncertainty=displacement_from(box))
    sigma = free.series.uncertainty.values
    assert free.series.uncertainty.attrs["units"] == "eV/Angstrom" and np.all(np.isfinite(sigma[1:]))
    threshold = float(np.median(sigma[1:]))
    first = next(step for step in range(10, 61, 10) if sigma[step] > threshold)  # checked at frames only
    assert 10 <= first < 60

    stopped = Run(box, EMT, sampler(n_steps=60, interval=10, uncertainty_threshold=threshold), seed=2,
                  uncertainty=displacement_from(box), every=25)
    assert stopped.stopped_at == first
    assert stopped.stop_reason == f"uncertainty {sigma[first]:.3g} eV/A > {threshold:.3g}"
    assert [f.info["step"] for f in stopped.frames] == list(range(10, first + 1, 10))  # the tripping frame is kept
    assert stopped.frames[-1].info["uncertainty_eV_A"] == pytest.approx(sigma[first], rel=1e-12)
    assert stopped.series.step.values[-1] == first
    write_dataset(tmp_path / "series.nc", stopped.series)  # every variable has its units
    # the same seed gives the same trajectory whatever the interval
    assert np.array_equal(stopped.frames[0].positions, free.frames[9].positions)

    unstopped = Run(box, EMT, sampler(n_steps=60, interval=10, uncertainty_threshold=10 * np.nanmax(sigma)), seed=2,
                    uncertainty=displacement_from(box))
    assert unstopped.stopped_at is None and unstopped.stop_reason is None
    assert [f.info["step"] for f in unstopped.frames] == [10, 20, 30, 40, 50, 60]


# --------------------------------------------------------------------------- the blow-up guard


class BrokenEMT(EMT):
    """EMT that goes wrong from its ``from_call``-th calculation on: NaN forces, or a 20 eV/A push
    pulling every molecule apart (a uniform push would only move the centre of mass, which is fixed)."""

    def __init__(self, from_call: int, how: str):
        super().__init__()
        self.calls, self.from_call, self.how = 0, from_call, how

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.calls += 1
        if self.calls >= self.from_call:
            apart = np.where(np.arange(len(self.results["forces"])) % 2, 20.0, -20.0)[:, None]
            self.results["forces"] = self.results["forces"] + (np.nan if self.how == "nan" else apart)


@pytest.mark.parametrize("how, reason", [("nan", "non-finite forces"), ("push", "temperature")])
def test_blow_up_guard(how, reason):
    run = Run(nitrogen_box(), lambda: BrokenEMT(from_call=13, how=how), sampler(interval=2), seed=0)
    assert run.stop_reason.startswith(f"exploded at step {run.stopped_at}: {reason}")
    assert run.stopped_at >= 12  # one calculation a step: call 13 is step 12
    if how == "nan":
        assert run.stopped_at == 12
    assert all(f.info["step"] < run.stopped_at for f in run.frames) and run.frames[-1].info["step"] >= 10
    assert run.series.step.values[-1] == run.stopped_at


# --------------------------------------------------------------------------- determinism, NPT, optimisation


def test_deterministic_for_a_seed():
    s = sampler(temperature={"start": 300, "end": 400}, box={"end": 7.6})
    first, again, other = (Run(nitrogen_box(), EMT, s, seed=seed) for seed in (5, 5, 6))
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(first.frames, again.frames))
    assert first.series.equals(again.series)
    assert not np.allclose(first.frames[-1].positions, other.frames[-1].positions)


@pytest.mark.parametrize("lattice, direction", [(3.70, "contracts"), (3.48, "expands")])
def test_npt_moves_the_volume_towards_equilibrium(lattice, direction):
    """EMT copper is at rest at a = 3.59 A: a stretched box must shrink, a squeezed one grow, at 1 atm."""
    copper = bulk("Cu", "fcc", a=lattice, cubic=True).repeat(2)
    s = sampler(ensemble="npt", temperature={"start": 300, "end": 400}, n_steps=40, interval=10, timestep=2.0,
                barostat_time=30)
    run = Run(copper, EMT, s, seed=0)
    assert run.stopped_at is None and len(run.frames) == 4
    np.testing.assert_allclose(run.series.target_temperature.values, [300, 322.5, 347.5, 372.5, 397.5])
    volumes = [copper.get_volume()] + [f.get_volume() for f in run.frames]
    change = volumes[-1] / volumes[0] - 1
    assert (change < -0.01) if direction == "contracts" else (change > 0.01)
    for frame in run.frames:  # box lengths change, angles do not
        assert np.count_nonzero(frame.cell.array - np.diag(np.diag(frame.cell.array))) == 0


def test_npt_needs_an_upper_triangular_cell():
    copper = bulk("Cu", "fcc", a=3.6).repeat(2)  # primitive fcc cells: lower entries set
    with pytest.raises(ValueError, match="upper-triangular"):
        Run(copper, EMT, sampler(ensemble="npt"), seed=0)


def optimise(start, make_calc, settings, every):
    """A whole optimisation in chunks of ``every`` steps, the state through its file format."""
    frames, state, ended = [], None, False
    while not ended:
        more, state, ended = optimise_chunk(start, make_calc(), settings, steps=every, state=state)
        state = decode_state(encode_state(state))
        frames += more
    return frames


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
def test_optimisation_returns_every_step_and_chunks_change_nothing(optimizer):
    box = nitrogen_box()
    box.positions[0::2] += 0.1  # stretched bonds
    settings = GeometryOptimisationSettings(optimizer=optimizer, fmax=0.05, max_steps=200)
    frames = optimise(box, EMT, settings, every=1000)
    assert [f.info["step"] for f in frames] == list(range(len(frames))) and len(frames) > 3
    assert np.array_equal(frames[0].positions, box.positions)
    assert frames[-1].info["fmax_eV_A"] < 0.05 < frames[0].info["fmax_eV_A"]
    assert all(f.info["source"] == "geometry_optimisation" and f.calc is None for f in frames)
    chunked = optimise(box, EMT, settings, every=3)
    assert [f.info["step"] for f in chunked] == [f.info["step"] for f in frames]
    for a, b in zip(frames, chunked):
        np.testing.assert_array_equal(a.positions, b.positions)
    capped = optimise(box, EMT, GeometryOptimisationSettings(optimizer=optimizer, fmax=1e-6, max_steps=3), every=2)
    assert [f.info["step"] for f in capped] == [0, 1, 2, 3]


def test_optimisation_stops_at_non_finite_forces():
    frames = optimise(nitrogen_box(), lambda: BrokenEMT(from_call=3, how="nan"), GeometryOptimisationSettings(fmax=1e-6),
                      every=100)
    assert [f.info["step"] for f in frames] == [0, 1]


# --------------------------------------------------------------------------- real chemistry


@pytest.mark.slow
def test_md_on_an_ion_pair_with_gfn2_labels_its_frames():
    """A few steps of GFN2-xTB MD on one BMIM BF4 pair, in a loose box (10.8 A) because tblite's
    periodic GFN2 costs ~0.4 s a step there and ~2.5 s at the liquid's density (6.8 A). The kept
    frames carry the MD's own energies, forces and stress (initial data are labelled this way):
    a fresh single point agrees to the SCF's convergence (the MD's SCF starts from the previous
    step's solution), 1e-6 eV in energy and ~3e-4 eV/A in forces."""
    from tblite.ase import TBLite

    from ilcampaign.engine.structures.ions import conformer

    from ilcampaign.engine.structures.packing import pack_box
    from ilcampaign.engine.labels.method import compute

    pair = pack_box([(conformer("CCCCn1cc[n+](C)c1", 0), 1), (conformer("F[B-](F)(F)F", 1), 1)],
                    to_internal("0.3 g/cm^3", "density"), seed=3, tolerance=2.0)
    s = sampler(temperature={"start": 300, "end": 400}, n_steps=4, interval=2, timestep=0.5,
                uncertainty_threshold=None)
    chunk = run_md_chunk(pair, TBLite(method="GFN2-xTB", verbosity=0), s, seed=1, first=0, last=4, state=None,
                         uncertainty=None, label=True)
    assert chunk.stopped_at is None and [f.info["step"] for f in chunk.frames] == [2, 4]
    assert np.allclose([row[1] for row in chunk.rows], [300, 325, 375])
    for frame in chunk.frames:
        assert 0 < frame.info["temperature_K"] < 1500 and frame.info["charge"] == 0
        fresh = compute(frame.copy(), TBLite(method="GFN2-xTB", verbosity=0))
        assert frame.get_potential_energy() == pytest.approx(fresh["energy"], abs=1e-6)
        np.testing.assert_allclose(frame.get_forces(), fresh["forces"], atol=1e-3)
        np.testing.assert_allclose(frame.get_stress(), fresh["stress"], atol=1e-5)
