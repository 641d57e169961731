"""Sampling with a machine-learned ensemble through ASE: MD with eqn 9 ramps and the eqn 8 stop, and
geometry optimisation.

The calculator is any ASE calculator; the ensemble's force uncertainty comes from a callable, so
this module knows nothing of apax. Every random number comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from campaign.spec import DensityRamp, GeometryOptimisation, MDSampler, TemperatureRamp

if TYPE_CHECKING:
    import xarray as xr
    from ase import Atoms

#: a run whose temperature passes this multiple of the target has blown up
MAX_TEMPERATURE_RATIO = 5.0

#: B in the NPT barostat's pfactor = barostat_time^2 * B (ASE's formula), in eV/Angstrom^3. 1 eV/A^3
#: (160 GPa) is what the paper's workflow used implicitly (pfactor 54.273 = (75 fs)^2); with an
#: ionic liquid's real B of about 2-3 GPa its box responds on ~0.6 ps rather than 75 fs.
PAPER_BULK_MODULUS = 1.0


def ramp(r: TemperatureRamp | DensityRamp, step: int | np.ndarray, n_steps: int) -> float | np.ndarray:
    """Paper eqn 9 at ``step`` (an int, or an array of steps): Q(t) = Q_start + t/t_end (Q_end - Q_start)
    + Q_amp sin(2 pi t / t_per), with t_end = n_steps and t_per = n_steps / oscillations."""
    end = r.start if r.end is None else r.end
    t = np.asarray(step, dtype=float)
    value = r.start + t / n_steps * (end - r.start)
    if r.oscillations > 0 and r.amplitude > 0:
        t_per = n_steps / r.oscillations
        value = value + r.amplitude * np.sin(2 * np.pi * t / t_per)
    return float(value) if value.ndim == 0 else value


@dataclass
class MDResult:
    """What a sampling run gives back.

    ``frames``: a configuration every ``interval`` steps (step 0, the input, excluded) plus, after an
    uncertainty stop, the configuration that triggered it (step 0 too); never one from or after a
    blow-up.
    ``series``: one row at step 0, every ``interval`` steps and at the last step run.
    """

    frames: list[Atoms]
    stopped_at: int | None
    stop_reason: str | None
    series: xr.Dataset


def run_md(
    atoms: Atoms,
    calculator: Any,
    sampler: MDSampler,
    *,
    seed: int,
    uncertainty: Callable[[Atoms], float] | None,
    on_frame: Callable[[Atoms], None] | None = None,
    bulk_modulus: float = PAPER_BULK_MODULUS,
) -> MDResult:
    """MD of ``atoms`` (not modified) with ``calculator`` as ``sampler`` says, stopped at the first step
    where ``uncertainty(atoms)`` exceeds ``sampler.uncertainty_threshold`` or the run blows up.

    The uncertainty is checked every step (an ensemble gives it with the forces, so this costs
    nothing extra, and the stop step is exact). Velocities are drawn from Maxwell-Boltzmann at the
    first target temperature. Ramps are applied between steps: the thermostat target every step and,
    with a density ramp, the box (molecules rigid), which costs a second force evaluation a step
    because the integrator's own one was for the box before. ``on_frame`` is called with each kept
    frame as it is kept.
    """
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    from engine.packing import scale_rigid

    n_steps = sampler.n_steps
    steps = np.arange(n_steps + 1)
    temperatures = _checked_ramp(sampler.temperature, steps, "temperature")
    densities = None if sampler.density is None else _checked_ramp(sampler.density, steps, "density")
    rng = np.random.default_rng(seed)

    atoms = atoms.copy()
    if densities is not None:
        if "mol_id" not in atoms.arrays:
            raise ValueError("a density ramp needs the molecules: atoms.arrays['mol_id'] is missing")
        atoms = scale_rigid(atoms, 1.0)  # molecules whole once; the integrators never wrap them again
    atoms.calc = calculator
    thermalize_momenta(atoms, temperatures[0], rng=rng)
    Stationary(atoms)
    dyn = _integrator(atoms, sampler, temperatures[0], rng, bulk_modulus)
    rescale = None if densities is None else _RigidRescaler(atoms)

    frames: list[Atoms] = []
    rows: list[tuple[float, ...]] = []
    stopped_at = stop_reason = None
    threshold = sampler.uncertainty_threshold
    for _ in dyn.irun(n_steps):
        step = dyn.nsteps
        if rescale is not None:
            rescale(atoms, densities[step])
            _positions_changed(dyn)
        if step > 0 and temperatures[step] != temperatures[step - 1]:
            _set_temperature(dyn, temperatures[step])

        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        temperature = atoms.get_temperature()
        sigma = float(uncertainty(atoms)) if uncertainty is not None else float("nan")
        exploded = _blow_up(energy, forces, temperature, temperatures[step], sigma, uncertainty is not None)
        if exploded:
            stop_reason = f"exploded: {exploded}"
        elif threshold is not None and sigma > threshold:
            stop_reason = f"uncertainty {sigma:.3g} eV/A > {threshold:.3g}"
        if stop_reason:
            stopped_at = step

        density = atoms.get_masses().sum() / atoms.get_volume()
        target_density = np.nan if densities is None else densities[step]
        if step % sampler.interval == 0 or stop_reason or step == n_steps:
            rows.append((step, temperatures[step], temperature, target_density, density, energy, sigma))
        if not exploded and ((step > 0 and step % sampler.interval == 0) or stop_reason):
            frame = _snapshot(atoms)
            frame.info.update(
                source="md", step=step, time_fs=step * sampler.timestep, target_temperature_K=temperatures[step],
                temperature_K=temperature, density_g_cm3=float(_g_cm3(density)),
            )
            if densities is not None:
                frame.info["target_density_g_cm3"] = float(_g_cm3(target_density))
            if uncertainty is not None:
                frame.info["uncertainty_eV_A"] = sigma
            frames.append(frame)
            if on_frame is not None:
                on_frame(frame)
        if stop_reason:
            break
    return MDResult(frames, stopped_at, stop_reason, _series(np.array(rows), sampler.timestep))


def optimise(atoms: Atoms, calculator: Any, settings: GeometryOptimisation) -> list[Atoms]:
    """Optimise ``atoms`` (not modified; fixed cell) with FIRE or BFGS to ``settings.fmax`` or
    ``max_steps``; every configuration visited, the start included, is returned as a candidate.

    The last frame is the optimised structure; a step with non-finite forces ends the run unreturned."""
    from ase.optimize import BFGS, FIRE

    atoms = atoms.copy()
    atoms.calc = calculator
    optimizer = {"FIRE": FIRE, "BFGS": BFGS}[settings.optimizer](atoms, logfile=None)
    frames = []
    for _ in optimizer.irun(fmax=settings.fmax, steps=settings.max_steps):
        forces = atoms.get_forces()
        if not np.all(np.isfinite(forces)):
            break
        frame = _snapshot(atoms)
        frame.info.update(source="geometry_optimisation", step=optimizer.nsteps,
                          fmax_eV_A=float(np.sqrt((forces**2).sum(axis=1).max())))
        frames.append(frame)
    return frames


class _RigidRescaler:
    """Sets the box to a density with every molecule moved rigidly: the cell is scaled and each
    molecule translated so its centre of mass keeps its fractional coordinates.

    Molecules must be whole (unwrapped) and stay so: one O(N) pass a step, no unwrapping. The cell
    is always the initial one scaled, so it does not drift over many steps."""

    def __init__(self, atoms: Atoms):
        _, self.molecule = np.unique(atoms.arrays["mol_id"], return_inverse=True)
        self.masses = atoms.get_masses()
        self.molecule_mass = np.bincount(self.molecule, weights=self.masses)
        self.cell0 = atoms.cell.array.copy()
        self.density0 = self.masses.sum() / atoms.get_volume()

    def __call__(self, atoms: Atoms, density: float) -> None:
        cell = self.cell0 * (self.density0 / density) ** (1 / 3)
        positions = atoms.get_positions()
        weighted = positions * self.masses[:, None]
        centres = np.stack([np.bincount(self.molecule, weights=weighted[:, k]) for k in range(3)], axis=1)
        centres /= self.molecule_mass[:, None]
        shift = centres @ (np.linalg.solve(atoms.cell.array, cell) - np.eye(3))
        atoms.set_cell(cell, scale_atoms=False)
        atoms.set_positions(positions + shift[self.molecule], apply_constraint=False)


def _integrator(atoms: Atoms, sampler: MDSampler, temperature: float, rng: np.random.Generator,
                bulk_modulus: float) -> Any:
    """The ASE dynamics object: Langevin or Nose-Hoover chain (NVT), Nose-Hoover + Parrinello-Rahman (NPT).

    NPT (ASE's NPT, i.e. MelchionnaNPT) scales the box lengths only (diagonal strain, as the paper's
    tetragonal_strain), at pfactor = (barostat_time)^2 * bulk_modulus. The Nose-Hoover chain uses
    ``thermostat_time`` as its damping time."""
    from ase import units

    timestep = sampler.timestep * units.fs
    if sampler.ensemble == "npt":
        from ase.md.melchionna import MelchionnaNPT

        cell = atoms.cell.array
        if cell[1, 0] != 0 or cell[2, 0] != 0 or cell[2, 1] != 0:
            raise ValueError(f"NPT needs an upper-triangular cell, got {cell.tolist()}")
        return MelchionnaNPT(
            atoms, timestep, temperature_K=temperature, externalstress=sampler.pressure,
            ttime=sampler.thermostat_time * units.fs, pfactor=(sampler.barostat_time * units.fs) ** 2 * bulk_modulus,
            mask=np.eye(3),
        )
    if sampler.thermostat == "nose_hoover_chain":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep, temperature_K=temperature, tdamp=sampler.thermostat_time * units.fs)
    from ase.md.langevin import Langevin

    return Langevin(atoms, timestep=timestep, temperature_K=temperature, friction=sampler.friction, fixcm=False, rng=rng)


def _set_temperature(dyn: Any, temperature: float) -> None:
    """Move the thermostat's target. ASE's Nose-Hoover chain has no setter: its kT and chain masses
    (Q proportional to kT, so the damping time stays ``tdamp``) are set directly. ASE's NPT also
    recomputes its barostat constant for the current volume here, keeping pfact * V = 1 / pfactor."""
    from ase import units
    from ase.md.nose_hoover_chain import NoseHooverChainNVT

    if isinstance(dyn, NoseHooverChainNVT):
        thermostat = dyn._thermostat
        kT = units.kB * temperature
        thermostat._Q = thermostat._Q * (kT / thermostat._kT)
        thermostat._kT = kT
    else:
        dyn.set_temperature(temperature_K=temperature)


def _positions_changed(dyn: Any) -> None:
    """Tell an integrator that caches positions (ASE's Nose-Hoover chain) that they were moved."""
    from ase.md.nose_hoover_chain import NoseHooverChainNVT

    if isinstance(dyn, NoseHooverChainNVT):
        dyn._q = dyn.atoms.get_positions()


def _blow_up(energy: float, forces: np.ndarray, temperature: float, target: float, sigma: float,
             has_uncertainty: bool) -> str | None:
    """Why this configuration means the run has exploded, or None."""
    if not np.isfinite(energy):
        return f"non-finite energy {energy}"
    if not np.all(np.isfinite(forces)):
        return "non-finite forces"
    if has_uncertainty and not np.isfinite(sigma):
        return f"non-finite uncertainty {sigma}"
    if temperature > MAX_TEMPERATURE_RATIO * target:
        return f"temperature {temperature:.0f} K > {MAX_TEMPERATURE_RATIO:g} x target {target:.0f} K"
    return None


def _checked_ramp(r: TemperatureRamp | DensityRamp, steps: np.ndarray, what: str) -> np.ndarray:
    """Eqn 9 at every step; ValueError if it goes to zero or below."""
    values = ramp(r, steps, int(steps[-1]))
    if values.min() <= 0:
        raise ValueError(f"the {what} ramp reaches {values.min():.4g} at step {int(values.argmin())}; "
                         "lower the amplitude or raise start/end")
    return values


def _snapshot(atoms: Atoms) -> Atoms:
    """A copy for the candidate pool: no calculator, no constraints, of the info only the charge
    (keys left from an earlier step would describe another configuration)."""
    frame = atoms.copy()
    frame.calc = None
    frame.set_constraint()
    frame.info = {key: value for key, value in atoms.info.items() if key == "charge"}
    return frame


def _g_cm3(density: Any) -> Any:
    """Density (a number or an array) from amu/Angstrom^3 to g/cm^3."""
    from campaign.units import from_internal

    return from_internal(density, "density", "g/cm^3")


def _series(rows: np.ndarray, timestep_fs: float) -> xr.Dataset:
    import xarray as xr

    step = rows[:, 0].astype(int)
    return xr.Dataset(
        {
            "target_temperature": ("step", rows[:, 1], {"units": "K"}),
            "temperature": ("step", rows[:, 2], {"units": "K"}),
            "target_density": ("step", _g_cm3(rows[:, 3]), {"units": "g/cm^3", "comment": "NaN without a density ramp"}),
            "density": ("step", _g_cm3(rows[:, 4]), {"units": "g/cm^3"}),
            "potential_energy": ("step", rows[:, 5], {"units": "eV"}),
            "uncertainty": ("step", rows[:, 6], {"units": "eV/Angstrom", "comment": "eqn 8; NaN without an ensemble"}),
        },
        coords={"step": ("step", step, {"units": "1"}), "time": ("step", step * timestep_fs, {"units": "fs"})},
    )
