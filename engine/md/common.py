"""What the MD engines share (ASE's in ``ase``, ours in JAX in ``jax``): the eqn 9 temperature
ramp, box ramps, the blow-up test, frames for the candidate pool, and the observables series."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ilcampaign.campaign.spec import BoxRamp, MDSettings, TemperatureRamp

if TYPE_CHECKING:
    import xarray as xr
    from ase import Atoms

#: one series row: step, target temperature (K), temperature (K), density (amu/A^3), potential
#: energy (eV), force uncertainty (eV/A; NaN where not evaluated)
Row = tuple[float, float, float, float, float, float]


def ramp(r: TemperatureRamp, step: int | np.ndarray, n_steps: int) -> float | np.ndarray:
    """Paper eqn 9 at ``step`` (an int, or an array of steps): Q(t) = Q_start + t/t_end (Q_end - Q_start)
    + Q_amp sin(2 pi t / t_per), with t_end = n_steps and t_per = n_steps / oscillations."""
    end = r.start if r.end is None else r.end
    t = np.asarray(step, dtype=float)
    value = r.start + t / n_steps * (end - r.start)
    if r.oscillations > 0 and r.amplitude > 0:
        t_per = n_steps / r.oscillations
        value = value + r.amplitude * np.sin(2 * np.pi * t / t_per)
    return float(value) if value.ndim == 0 else value


def temperatures(sampler: MDSettings) -> np.ndarray:
    """The thermostat target (K) for the step from s to s + 1, for s = 0 .. n_steps; ValueError
    if the ramp reaches 0 K."""
    values = ramp(sampler.temperature, np.arange(sampler.n_steps + 1), sampler.n_steps)
    if values.min() <= 0:
        raise ValueError(f"the temperature ramp reaches {values.min():.4g} K at step {int(values.argmin())}; "
                         "lower the amplitude or raise start/end")
    return values


def box_cell(box: BoxRamp, cell0: np.ndarray, step: int, n_steps: int) -> np.ndarray:
    """The cell for the step from ``step`` on, as IPSuite's BoxOscillatingRampModifier: with
    f = step / (n_steps - 1), C0 + r(f) (C_end - C0) + amplitude sin(2 pi f oscillations) I."""
    f = step / max(n_steps - 1, 1)
    r = f if box.ramp_oscillations is None else min(f * box.oscillations / box.ramp_oscillations, 1.0)
    end = cell0 if box.end is None else np.eye(3) * box.end
    cell = cell0 + r * (end - cell0) + box.amplitude * np.sin(2 * np.pi * f * box.oscillations) * np.eye(3)
    if np.linalg.det(cell) <= 0:
        raise ValueError(f"the box ramp collapses the cell at step {step}; lower the amplitude")
    return cell


def blow_up(energy: float, forces: np.ndarray, temperature: float, target: float, sigma: float | None,
             max_ratio: float) -> str | None:
    """Why this configuration means the run has exploded, or None (``sigma`` None: not evaluated)."""
    if not np.isfinite(energy):
        return f"non-finite energy {energy}"
    if not np.all(np.isfinite(forces)):
        return "non-finite forces"
    if sigma is not None and not np.isfinite(sigma):
        return f"non-finite uncertainty {sigma}"
    if temperature > max_ratio * target:
        return f"temperature {temperature:.0f} K > {max_ratio:g} x target {target:.0f} K"
    return None


def row(atoms: Atoms, step: int, target: float, sigma: float) -> Row:
    return (step, target, atoms.get_temperature(), density(atoms), atoms.get_potential_energy(), sigma)


def density(atoms: Atoms) -> float:
    return float(atoms.get_masses().sum() / atoms.get_volume())


def snapshot(atoms: Atoms, label: bool) -> Atoms:
    """A copy for the candidate pool: no constraints, of the info only the charge (keys left from
    an earlier step would describe another configuration); with ``label``, the calculator's energy,
    forces and stress (and charges) on a SinglePointCalculator."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = atoms.copy()
    frame.calc = None
    frame.set_constraint()
    frame.info = {key: value for key, value in atoms.info.items() if key == "charge"}
    if label:
        from ilcampaign.engine.labels.method import compute

        frame.calc = SinglePointCalculator(frame, **compute(atoms, atoms.calc))
    return frame


def g_cm3(density: Any) -> Any:
    """Density (a number or an array) from amu/Angstrom^3 to g/cm^3."""
    from ilcampaign.campaign.units import from_internal

    return from_internal(density, "density", "g/cm^3")


def series(rows: list[Row] | np.ndarray, timestep_fs: float) -> xr.Dataset:
    """MD observables over steps, with units."""
    import xarray as xr

    rows = np.asarray(rows, dtype=float).reshape(-1, 6)
    step = rows[:, 0].astype(int)
    return xr.Dataset(
        {
            "target_temperature": ("step", rows[:, 1], {"units": "K", "comment": "for the step that led here"}),
            "temperature": ("step", rows[:, 2], {"units": "K"}),
            "density": ("step", g_cm3(rows[:, 3]), {"units": "g/cm^3"}),
            "potential_energy": ("step", rows[:, 4], {"units": "eV"}),
            "uncertainty": ("step", rows[:, 5], {"units": "eV/Angstrom",
                                                 "comment": "eqn 8, at frame steps; NaN where not evaluated"}),
        },
        coords={"step": ("step", step, {"units": "1"}), "time": ("step", step * timestep_fs, {"units": "fs"})},
    )
