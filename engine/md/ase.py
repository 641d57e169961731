"""Sampling through ASE, one chunk at a time: MD (Langevin or Nose-Hoover chain NVT, Nose-Hoover +
Parrinello-Rahman NPT) with eqn 9 temperature ramps, box ramps and the eqn 8 stop, and geometry
optimisation.

A chunk starts from the state the previous chunk left: positions, momenta, cell and every
variable of the integrator or optimiser as plain data (``state_of``: arrays, numbers, a random
stream as its bit generator's state; stored by ilcampaign.engine.run.chunks as npz and JSON, never
pickled); restoring one sets variables only, never a method (``restore_state``). Each chunk gets a
fresh calculator (neighbour lists built at the chunk's start), so a run is the same sequence of
chunks whether it ran through or was killed and resumed between them: bit-identical results.

The calculator is any ASE calculator; the ensemble's force uncertainty comes from a callable, so
this module knows nothing of apax. Every random number comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ilcampaign.campaign.spec import MDSettings, Optimiser, TemperatureGuard
from ilcampaign.engine.md.common import Row, blow_up, box_cell, density, g_cm3, row, snapshot, temperatures

if TYPE_CHECKING:
    from ase import Atoms

#: B in the NPT barostat's pfactor = barostat_time^2 * B (ASE's formula), in eV/Angstrom^3. 1 eV/A^3
#: (160 GPa) is what the paper's workflow used implicitly (pfactor 54.273 = (75 fs)^2); with an
#: ionic liquid's real B of about 2-3 GPa its box responds on ~0.6 ps rather than 75 fs.
PAPER_BULK_MODULUS = 1.0

#: attributes of ASE dynamics and optimisers that are not state (the atoms, files, callbacks)
NOT_STATE = {"atoms", "logfile", "observers", "comm", "_orig_trajectory", "_master", "trajectory", "optimizable",
             "restart", "max_steps"}

@dataclass
class MDChunk:
    """What one chunk of a sampling run gives back.

    ``frames``: a configuration every ``interval`` steps (step 0, the input, excluded) plus, after
    an uncertainty stop, the configuration that triggered it; never one from or after a blow-up.
    ``rows``: series rows (see ``Row``) at step 0 (first chunk), every frame step and the stop.
    ``state``: the continuation as plain data (None once the run has stopped).
    """

    frames: list[Atoms] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    state: dict[str, Any] | None = None
    stopped_at: int | None = None
    stop_reason: str | None = None


def run_md_chunk(
    start: Atoms,
    calculator: Any,
    sampler: MDSettings,
    *,
    seed: int,
    first: int,
    last: int,
    state: dict[str, Any] | None,
    uncertainty: Callable[[Atoms], float] | None,
    label: bool = False,
    bulk_modulus: float = PAPER_BULK_MODULUS,
    guard: TemperatureGuard | None = None,
) -> MDChunk:
    """Steps ``first`` -> ``last`` of the MD run of ``sampler`` from ``start`` (not modified), with
    ``calculator``; ``state`` is what the previous chunk returned (None for the first chunk).

    Velocities of the first chunk are drawn from Maxwell-Boltzmann at the first target temperature.
    Ramps are applied before each step: the thermostat target and, with a box ramp, the cell
    (affine: atoms scaled with it; rigid: molecules moved as wholes), which costs a second force
    evaluation a step because the integrator's own one was for the cell before. Every step is
    checked for a blow-up and against the temperature ``guard`` (default: the spec's defaults); at
    every frame step the uncertainty is checked against the threshold. ``label``: frames carry the calculator's energy, forces and stress (for reference-driven MD).
    """
    targets = temperatures(sampler)
    guard = guard or TemperatureGuard()
    atoms, dyn, hot = _restore(start, calculator, sampler, targets[first], state, seed, bulk_modulus)
    rescale = _Rescaler(start) if sampler.box is not None and sampler.box.scaling == "rigid" else None
    chunk = MDChunk()
    threshold = sampler.uncertainty_threshold
    if first == 0:
        chunk.rows.append(row(atoms, 0, targets[0], float("nan")))
    for step in range(first, last):
        if step > 0 and targets[step] != targets[step - 1]:
            _set_temperature(dyn, targets[step])
        if sampler.box is not None:
            cell = box_cell(sampler.box, start.cell.array, step, sampler.n_steps)
            if rescale is not None:
                rescale(atoms, cell)
            else:
                atoms.set_cell(cell, scale_atoms=True)
            _positions_changed(dyn)
        dyn.step()
        s = step + 1
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        temperature = atoms.get_temperature()
        checked = uncertainty is not None and s % sampler.interval == 0
        sigma = float(uncertainty(atoms)) if checked else float("nan")
        exploded = blow_up(energy, forces, temperature, targets[step], sigma if checked else None, guard.blow_up_ratio)
        hot = hot + 1 if temperature > guard.ratio * targets[step] else 0
        if not exploded and hot >= guard.steps:
            exploded = (f"temperature above {guard.ratio:g} x target for {hot} steps ({temperature:.0f} K, "
                        f"target {targets[step]:.0f} K)")
        if exploded:
            chunk.stopped_at, chunk.stop_reason = s, f"exploded at step {s}: {exploded}"
            chunk.rows.append(row(atoms, s, targets[step], sigma))
            return chunk
        if s % sampler.interval == 0:
            stop = threshold is not None and sigma > threshold
            frame = snapshot(atoms, label)
            frame.info.update(source="md", step=s, time_fs=s * sampler.timestep, target_temperature_K=targets[step],
                              temperature_K=temperature, density_g_cm3=float(g_cm3(density(atoms))))
            if uncertainty is not None:
                frame.info["uncertainty_eV_A"] = sigma
            chunk.frames.append(frame)
            chunk.rows.append(row(atoms, s, targets[step], sigma))
            if stop:
                chunk.stopped_at, chunk.stop_reason = s, f"uncertainty {sigma:.3g} eV/A > {threshold:.3g}"
                return chunk
    chunk.state = _save(atoms, dyn, hot)
    return chunk


def _restore(start: Atoms, calculator: Any, sampler: MDSettings, temperature: float, saved: dict[str, Any] | None,
             seed: int, bulk_modulus: float) -> tuple[Atoms, Any, int]:
    """The atoms at the chunk's start with ``calculator``, their dynamics: new (Maxwell-Boltzmann
    momenta, molecules made whole for rigid box ramps) or restored from ``saved``, and how many
    steps in a row the run has been above the temperature guard's ratio."""
    from ase.constraints import FixCom
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    from ilcampaign.engine.structures.packing import scale_rigid

    atoms = start.copy()
    rigid = sampler.box is not None and sampler.box.scaling == "rigid"
    if rigid and "mol_id" not in atoms.arrays:
        raise ValueError("a rigid box ramp needs the molecules: atoms.arrays['mol_id'] is missing")
    rng = np.random.default_rng(seed)  # a restored Langevin gets its own stream back
    if saved is None:
        if rigid:
            atoms = scale_rigid(atoms, 1.0)  # molecules whole once; the integrators never wrap them again
        thermalize_momenta(atoms, temperature, rng=rng)
        Stationary(atoms)
    else:
        atoms.set_cell(saved["cell"], scale_atoms=False)
        atoms.set_positions(saved["positions"], apply_constraint=False)
        atoms.set_momenta(saved["momenta"], apply_constraint=False)
    if sampler.ensemble == "nvt" and sampler.thermostat == "langevin":
        atoms.set_constraint([*atoms.constraints, FixCom()])  # Langevin's random forces would move the centre of mass
    atoms.calc = calculator
    dyn = _integrator(atoms, sampler, temperature, rng, bulk_modulus)
    if saved is not None:
        restore_state(dyn, saved, DYNAMICS)
    elif sampler.ensemble == "npt":  # ASE's NPT is not self-starting
        dyn.initialize()
    return atoms, dyn, 0 if saved is None else int(saved.get("hot_steps", 0))


def _save(atoms: Atoms, dynamics: Any, hot_steps: int) -> dict[str, Any]:
    """Everything the next chunk needs: positions, momenta, cell, the integrator's variables and the
    temperature guard's count."""
    return {"positions": atoms.get_positions(), "momenta": atoms.get_momenta(), "cell": atoms.cell.array.copy(),
            "hot_steps": hot_steps, **state_of(dynamics, DYNAMICS)}


#: the prefix of a state's entries that hold the integrator's or optimiser's variables
DYNAMICS = "dynamics/"
#: the entry of a held object's state naming its class
CLASS = "__class__"


def state_of(obj: Any, prefix: str) -> dict[str, Any]:
    """The variables of an ASE integrator or optimiser (but NOT_STATE) as flat plain data, named
    ``<prefix><attribute>``: arrays, numpy scalars, numbers, strings, None; a random generator as its
    bit generator's state; an ASE object it holds (the Nose-Hoover chain's thermostat, BFGS's
    Hessian) attribute by attribute as ``<prefix><attribute>/<its attribute>``, with its class
    under ``<prefix><attribute>/__class__``. TypeError for any other value."""
    state: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if name in NOT_STATE:
            continue
        if isinstance(value, np.random.Generator):
            state[prefix + name] = value.bit_generator.state
        elif value is None or isinstance(value, (np.ndarray, np.generic, bool, int, float, str)):
            state[prefix + name] = value
        elif _qualified(type(value)) in _state_classes():
            state[f"{prefix}{name}/{CLASS}"] = _qualified(type(value))
            state.update(state_of(value, f"{prefix}{name}/"))
        else:
            raise TypeError(f"{type(obj).__name__}.{name} ({type(value).__name__}) cannot be stored as plain data")
    return state


def restore_state(obj: Any, saved: dict[str, Any], prefix: str) -> None:
    """Set the variables named ``<prefix>...`` in ``saved`` (as ``state_of`` names them) on ``obj`` and
    the ASE objects it holds; a random generator gets its bit generator's state back, and a held
    object the fresh ``obj`` lacks (BFGS makes its Hessian on its first step) is made from one of
    the few classes ``_state_classes`` lists, never from a name the state gives. Entries may add
    instance variables (Langevin makes some on its first step) but never replace a method or
    anything else of a class: ValueError for those, and for any other entry that does not fit."""
    classes = _state_classes()
    for key, value in saved.items():
        if not key.startswith(prefix):
            continue
        *path, name = key[len(prefix):].split("/")
        target = obj
        for depth, part in enumerate(path):
            held = vars(target).get(part)
            wanted = saved.get(f"{prefix}{'/'.join(path[:depth + 1])}/{CLASS}")
            if held is None and wanted in classes and part not in NOT_STATE and not hasattr(type(target), part):
                held = classes[wanted].__new__(classes[wanted])
                setattr(target, part, held)
            if held is None or _qualified(type(held)) != wanted:
                raise ValueError(f"the chunk state entry {key} names no object of {type(obj).__name__}")
            target = held
        if name == CLASS:
            continue
        own = vars(target)
        if (not name.isidentifier() or name.startswith("__") or name in NOT_STATE
                or (name not in own and hasattr(type(target), name))):
            raise ValueError(f"the chunk state entry {key} is no variable of {type(target).__name__}")
        if isinstance(own.get(name), np.random.Generator):
            own[name].bit_generator.state = value
        else:
            setattr(target, name, value)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _state_classes() -> dict[str, type]:
    """The ASE objects an integrator or optimiser used here holds, by qualified class name."""
    from ase.md.nose_hoover_chain import NoseHooverChainThermostat
    from ase.optimize.bfgs import BFGSMethod

    return {_qualified(cls): cls for cls in (NoseHooverChainThermostat, BFGSMethod)}


def optimise_chunk(start: Atoms, calculator: Any, settings: Optimiser, *, steps: int,
                   state: dict[str, Any] | None) -> tuple[list[Atoms], dict[str, Any], bool]:
    """Up to ``steps`` more optimiser steps of ``start`` (fixed cell) with FIRE or BFGS towards
    ``settings.fmax``, continuing from ``state`` (None: from ``start`` itself, which is then the
    first frame). Returns the frames visited in this chunk, the state, and whether the optimisation
    has ended (converged, ``max_steps`` reached, or non-finite forces, whose step is not returned)."""
    from ase.optimize import BFGS, FIRE

    atoms = start.copy()
    if state is not None:
        atoms.set_positions(state["positions"], apply_constraint=False)
    atoms.calc = calculator
    optimizer = {"FIRE": FIRE, "BFGS": BFGS}[settings.optimizer](atoms, logfile=None)
    if state is not None:
        restore_state(optimizer, state, DYNAMICS)
    frames, ended = [], False
    runs = optimizer.irun(fmax=settings.fmax, steps=min(steps, settings.max_steps - optimizer.nsteps))
    for index, converged in enumerate(runs):
        forces = atoms.get_forces()
        if not np.all(np.isfinite(forces)):
            ended = True
            break
        ended = bool(converged)
        if index == 0 and state is not None:
            continue  # the previous chunk's last frame
        frame = snapshot(atoms, label=False)
        frame.info.update(source="geometry_optimisation", step=optimizer.nsteps,
                          fmax_eV_A=float(np.sqrt((forces**2).sum(axis=1).max())))
        frames.append(frame)
    ended = ended or optimizer.nsteps >= settings.max_steps
    return frames, {"positions": atoms.get_positions(), **state_of(optimizer, DYNAMICS)}, ended


class _Rescaler:
    """Sets the cell with every molecule moved rigidly: each molecule is translated so its centre of
    mass keeps its fractional coordinates. Molecules must be whole (unwrapped) and stay so: one O(N)
    pass a step, no unwrapping."""

    def __init__(self, atoms: Atoms):
        _, self.molecule = np.unique(atoms.arrays["mol_id"], return_inverse=True)
        self.masses = atoms.get_masses()
        self.molecule_mass = np.bincount(self.molecule, weights=self.masses)

    def __call__(self, atoms: Atoms, cell: np.ndarray) -> None:
        positions = atoms.get_positions()
        weighted = positions * self.masses[:, None]
        centres = np.stack([np.bincount(self.molecule, weights=weighted[:, k]) for k in range(3)], axis=1)
        centres /= self.molecule_mass[:, None]
        shift = centres @ (np.linalg.solve(atoms.cell.array, cell) - np.eye(3))
        atoms.set_cell(cell, scale_atoms=False)
        atoms.set_positions(positions + shift[self.molecule], apply_constraint=False)


def _integrator(atoms: Atoms, sampler: MDSettings, temperature: float, rng: np.random.Generator,
                bulk_modulus: float) -> Any:
    """The ASE dynamics object: Langevin or Nose-Hoover chain (NVT), Nose-Hoover + Parrinello-Rahman (NPT).

    NPT (ASE's NPT, i.e. MelchionnaNPT) scales the box lengths only (diagonal strain, as the paper's
    tetragonal_strain), at pfactor = (barostat_time)^2 * bulk_modulus. The Nose-Hoover chain uses
    ``thermostat_time`` as its damping time. A restored Langevin gets its random stream back with
    the rest of its state."""
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

    return Langevin(atoms, timestep=timestep, temperature_K=temperature, friction=sampler.friction, fixcm=False,
                    rng=rng)


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


