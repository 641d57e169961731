"""A model's errors on held-out labelled frames (the test split): parity data and MAE/RMSE of
energy per atom, force components (also per element) and stress, with units on every variable.

Predictions come from one jitted, batched evaluation of the apax model (frames of any size padded
to the largest, as apax pads its datasets), not the ASE calculator frame by frame, which
recompiles for every new atom count. Nothing is written: apax's own ``batch_eval`` would leave a
tf.data cache in the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr
    from ase import Atoms

VOIGT = ("xx", "yy", "zz", "yz", "xz", "xy")  # ASE's Voigt order
AXES = ("x", "y", "z")


def model_errors(model_dir: Path, frames: list[Atoms], *, cache_dir: Path | None = None,
                 batch_size: int = 16) -> xr.Dataset:
    """The ensemble-mean predictions of the apax model in ``model_dir`` on ``frames`` against their
    labels (energy and forces required, stress optional), as a Dataset (see ``_dataset``).

    Frames without a stress label get NaN reference stress and are left out of the stress errors.
    ``cache_dir``: JAX's persistent compilation cache. ``batch_size`` frames are evaluated at once
    (speed and memory only). ValueError for no frames, a frame without energy or force labels, or
    a mix of periodic and free-space frames (apax pads one kind at a time).
    """
    if not frames:
        raise ValueError("model_errors needs at least one labelled frame")
    references = [_reference(index, atoms) for index, atoms in enumerate(frames)]
    predictions = _predict(Path(model_dir), frames, batch_size=batch_size, cache_dir=cache_dir)
    return _dataset(frames, references, predictions)


def _reference(index: int, atoms: Atoms) -> dict[str, np.ndarray]:
    """A frame's energy, forces and (NaN if unlabelled) Voigt stress from its calculator's results."""
    from ase.stress import full_3x3_to_voigt_6_stress

    results = atoms.calc.results if atoms.calc is not None else {}
    missing = [name for name in ("energy", "forces") if results.get(name) is None]
    if missing:
        raise ValueError(f"frame {index} has no {' or '.join(missing)} label: model errors need labelled frames "
                         "(energy and forces on the frame's calculator, e.g. a dataset step's test split)")
    forces = np.asarray(results["forces"], dtype=float)
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"frame {index} has forces of shape {forces.shape} for {len(atoms)} atoms")
    stress = results.get("stress")
    stress = np.full(6, np.nan) if stress is None else np.asarray(stress, dtype=float)
    if stress.shape == (3, 3):
        stress = full_3x3_to_voigt_6_stress(stress)
    return {"energy": np.float64(results["energy"]), "forces": forces, "stress": stress}


def _predict(model_dir: Path, frames: list[Atoms], *, batch_size: int, cache_dir: Path | None
             ) -> list[dict[str, Any]]:
    """Per frame: ensemble-mean energy (eV), forces (eV/A), Voigt stress (eV/A^3; NaN in free space)
    and eqn 8 force uncertainty (eV/A; NaN for a single model).

    The stress is the strain derivative of the energy with the pairs' cell offsets strained too.
    apax's own stress on this padded-offset path (its training and ``batch_eval`` path) leaves the
    offsets unstrained, which a finite-difference check contradicts; apax's calculator gets it right
    only for boxes wider than 2 r_max (its jax_md neighbour list), the ones it gives the MD."""
    from functools import partial

    import jax
    import jax.numpy as jnp
    from apax.md.ase_calc import make_ensemble
    from apax.train.checkpoints import canonicalize_energy_model_parameters, check_for_ensemble, restore_parameters

    from ilcampaign.engine.models.apax import std_factor, enable_compilation_cache

    if cache_dir is not None:
        enable_compilation_cache(cache_dir)
    if len({_periodic(atoms) for atoms in frames}) > 1:
        raise ValueError("the frames mix periodic and free-space structures; evaluate each kind separately")
    config, params = restore_parameters(model_dir.resolve())
    builder = config.model.get_builder()({**config.model.model_dump(), "calc_stress": False})
    init_box = frames[0].cell.array
    derivatives = builder.build_energy_derivative_model(apply_mask=True, init_box=init_box).apply
    energy = builder.build_energy_model(apply_mask=True, init_box=init_box).apply
    energy_params = canonicalize_energy_model_parameters(params)

    def strain_derivative(params, positions, numbers, idx, box, offsets):
        """(1/V) dE/d(strain), symmetric; positions are fractional, so straining the box strains them."""
        def strained(strain):
            deformation = jnp.eye(3) + strain
            return jnp.mean(energy(params, positions, numbers, idx, deformation @ box, offsets @ deformation.T)[0])

        gradient = jax.grad(strained)(jnp.zeros((3, 3)))
        return (gradient + gradient.T) / (2 * jnp.abs(jnp.linalg.det(box)))

    def predict(positions, numbers, idx, box, offsets):
        if check_for_ensemble(params) > 1:  # a full ensemble: members' parameters stacked
            members = (0, None, None, None, None, None)
            results = make_ensemble(partial(jax.vmap(derivatives, in_axes=members), params))(
                positions, numbers, idx, box, offsets)
            member_stress = jax.vmap(strain_derivative, in_axes=members)(energy_params, positions, numbers, idx, box, offsets)
            results["stress"] = jnp.mean(member_stress, axis=0)
        else:  # a single model, or a shallow ensemble (which gives its own uncertainties)
            results = derivatives(params, positions, numbers, idx, box, offsets)
            results["stress"] = strain_derivative(energy_params, positions, numbers, idx, box, offsets)
        return {key: results[key] for key in ("energy", "forces", "stress", "forces_uncertainty") if key in results}

    batched = jax.jit(jax.vmap(predict))
    inputs = _padded_inputs(frames, config.model.basis.r_max)
    factor = std_factor(config)
    out = []
    for start in range(0, len(frames), batch_size):
        chunk = {key: value[start:start + batch_size] for key, value in inputs.items()}
        n = len(chunk["numbers"])
        chunk = {key: np.concatenate([value, np.repeat(value[-1:], batch_size - n, axis=0)])  # one compiled shape
                 for key, value in chunk.items()}
        results = jax.device_get(batched(chunk["positions"], chunk["numbers"], chunk["idx"], chunk["box"],
                                         chunk["offsets"]))
        for i in range(n):
            n_atoms = len(frames[start + i])
            uncertainty = results.get("forces_uncertainty")
            stress = np.asarray(results["stress"][i], dtype=float)
            out.append({
                "energy": np.float64(results["energy"][i]),
                "forces": np.asarray(results["forces"][i][:n_atoms], dtype=float),
                "stress": stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] if _periodic(frames[0]) else np.full(6, np.nan),
                "uncertainty": np.nan if uncertainty is None else float(np.max(uncertainty[i][:n_atoms])) / factor,
            })
    return out


def _padded_inputs(frames: list[Atoms], r_max: float) -> dict[str, np.ndarray]:
    """apax's model inputs for every frame, padded to the largest frame and neighbour list: positions
    (fractional for periodic frames, unwrapped as the ASE calculator passes them), atomic numbers (0: padding), neighbour pairs, box (apax's
    transposed cell; zeros in free space) and the pairs' Cartesian cell offsets."""
    from apax.data.preprocessing import compute_nl

    entries = []
    for atoms in frames:
        box = np.asarray(atoms.cell.array, dtype=np.float64).T
        positions = atoms.cell.scaled_positions(atoms.positions) if _periodic(atoms) else atoms.positions
        idx, offsets = compute_nl(np.asarray(positions, dtype=np.float64), box, r_max)
        entries.append((positions, atoms.numbers, idx, box, offsets))
    max_atoms = max(len(atoms) for atoms in frames)
    max_pairs = max(entry[2].shape[1] for entry in entries)
    n = len(frames)
    inputs = {"positions": np.zeros((n, max_atoms, 3)), "numbers": np.zeros((n, max_atoms), np.int32),
              "idx": np.zeros((n, 2, max_pairs), np.int32), "box": np.zeros((n, 3, 3)),
              "offsets": np.zeros((n, max_pairs, 3))}
    for i, (positions, numbers, idx, box, offsets) in enumerate(entries):
        inputs["positions"][i, :len(numbers)] = positions
        inputs["numbers"][i, :len(numbers)] = numbers
        inputs["idx"][i, :, :idx.shape[1]] = idx
        inputs["box"][i] = box
        inputs["offsets"][i, :len(offsets)] = offsets
    return inputs


def _periodic(atoms: Atoms) -> bool:
    """Whether apax treats the frame as periodic: any cell entry (apax's test is on the box)."""
    return not np.all(atoms.cell.array < 1e-6)


def _dataset(frames: list[Atoms], references: list[dict], predictions: list[dict]) -> xr.Dataset:
    """Per frame (``frame``): reference/predicted energy (eV), energy error per atom (eV/atom), atom
    count, reference/predicted Voigt stress (``voigt``; eV/A^3) and eqn 8 force uncertainty (eV/A).
    Per force component (``force_component``, frame-major): reference/predicted force (eV/A) with
    the frame, atom, axis and element. Summaries: MAE/RMSE of energy per atom, force components
    (also per ``element``) and stress components of the frames with stress labels."""
    import xarray as xr
    from ase.data import atomic_numbers

    n_atoms = np.array([len(atoms) for atoms in frames])
    e_ref = np.array([r["energy"] for r in references])
    e_pred = np.array([p["energy"] for p in predictions])
    e_error = (e_pred - e_ref) / n_atoms
    f_ref = np.concatenate([r["forces"].ravel() for r in references])
    f_pred = np.concatenate([p["forces"].ravel() for p in predictions])
    f_error = f_pred - f_ref
    symbols = np.concatenate([np.repeat(atoms.get_chemical_symbols(), 3) for atoms in frames])
    s_ref = np.stack([r["stress"] for r in references])
    s_pred = np.stack([p["stress"] for p in predictions])
    labelled = ~np.isnan(s_ref).any(axis=1)
    s_error = (s_pred - s_ref)[labelled].ravel()
    elements = sorted(set(symbols.tolist()), key=lambda symbol: atomic_numbers[symbol])
    per_element = [f_error[symbols == element] for element in elements]
    uncertainty = np.array([p["uncertainty"] for p in predictions])

    def mae(error: np.ndarray) -> float:
        return float(np.mean(np.abs(error))) if error.size else np.nan

    def rmse(error: np.ndarray) -> float:
        return float(np.sqrt(np.mean(error**2))) if error.size else np.nan

    force = {"units": "eV/Angstrom"}
    stress = {"units": "eV/Angstrom^3", "comment": "Voigt order xx yy zz yz xz xy; reference NaN where the frame "
                                                   "has no stress label (left out of stress_mae/rmse)"}
    frame_of = np.repeat(np.arange(len(frames)), 3 * n_atoms)
    atom_of = np.concatenate([np.repeat(np.arange(n), 3) for n in n_atoms])
    return xr.Dataset(
        {
            "n_atoms": ("frame", n_atoms, {"units": "1"}),
            "energy_reference": ("frame", e_ref, {"units": "eV"}),
            "energy_predicted": ("frame", e_pred, {"units": "eV", "comment": "ensemble mean"}),
            "energy_error_per_atom": ("frame", e_error, {"units": "eV/atom", "comment": "(predicted - reference) / n_atoms"}),
            "force_reference": ("force_component", f_ref, force),
            "force_predicted": ("force_component", f_pred, {**force, "comment": "ensemble mean"}),
            "stress_reference": (("frame", "voigt"), s_ref, stress),
            "stress_predicted": (("frame", "voigt"), s_pred, {**stress, "comment": "ensemble mean, (1/V) dE/d(strain); "
                                                                                   "NaN in free space"}),
            "force_uncertainty": ("frame", uncertainty, {**force, "comment": "paper eqn 8: max over atoms and components "
                                                         "of the ensemble's population std; NaN for a single model"}),
            "energy_mae_per_atom": ((), mae(e_error), {"units": "eV/atom"}),
            "energy_rmse_per_atom": ((), rmse(e_error), {"units": "eV/atom"}),
            "force_mae": ((), mae(f_error), {**force, "comment": "over all force components"}),
            "force_rmse": ((), rmse(f_error), {**force, "comment": "over all force components"}),
            "stress_mae": ((), mae(s_error), {"units": "eV/Angstrom^3", "comment": "over the Voigt components of "
                                              "frames with stress labels; NaN if none has one"}),
            "stress_rmse": ((), rmse(s_error), {"units": "eV/Angstrom^3", "comment": "as stress_mae"}),
            "force_mae_per_element": ("element", [mae(e) for e in per_element], force),
            "force_rmse_per_element": ("element", [rmse(e) for e in per_element], force),
            "n_force_components_per_element": ("element", [e.size for e in per_element], {"units": "1"}),
            "n_frames": ((), len(frames), {"units": "1"}),
            "n_frames_with_stress": ((), int(labelled.sum()), {"units": "1"}),
        },
        coords={
            "voigt": ("voigt", list(VOIGT)),
            "element": ("element", elements),
            "atomic_number": ("element", [atomic_numbers[e] for e in elements], {"units": "1"}),
            "force_frame": ("force_component", frame_of, {"units": "1", "comment": "index into frame"}),
            "force_atom": ("force_component", atom_of, {"units": "1", "comment": "atom index within its frame"}),
            "force_axis": ("force_component", np.tile(list(AXES), int(n_atoms.sum()))),
            "force_element": ("force_component", symbols),
        },
        attrs={"description": "model errors on held-out labelled frames; predictions are ensemble means"},
    )
