"""apax GMNN ensembles: training config and training, the ASE calculator, the force uncertainty
(paper eqn 8), apax's JAX MD with the uncertainty stop, and batch active learning (apax.bal).

apax and JAX are imported inside the functions: importing apax pulls in TensorFlow (~8 s), and
the CLI must start fast. apax's replacement of the root logger's handlers is undone after each
call, and everything it writes goes under the given work directory.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from campaign.spec import ApaxModel, MDSampler, deep_merge

if TYPE_CHECKING:
    import xarray as xr
    from ase import Atoms

EXPERIMENT = "model"  # apax's model directory is <directory>/<experiment>
PAPER_DTYPES = {"descriptor_dtype": "fp32", "readout_dtype": "fp32", "scale_shift_dtype": "fp32"}
ZBL_LEARNING_RATE = 0.001  # the paper workflow's zbl_lr (initial_model.yaml)
INNER_STEPS = 500  # most JAX MD steps per compiled block (apax acts on a failed check at block ends)

#: units of the quantities in apax's log.csv: energy and stress per structure (apax trains on
#: stress times volume); losses are weighted sums of squared errors, taken as dimensionless
CURVE_UNITS = {"energy": "eV", "forces": "eV/Angstrom", "stress": "eV"}


@dataclass
class TrainResult:
    """A trained ensemble: apax's model directory, validation metrics, per-epoch learning curves."""

    model_dir: Path
    metrics: dict[str, float]
    curves: xr.Dataset


@dataclass
class JaxMDResult:
    """Frames every ``interval`` steps (``info["step"]``), the step where the uncertainty stop fired
    (None: ran to the end), and per-frame step, time, temperatures, energy and uncertainty."""

    frames: list[Atoms]
    stopped_at: int | None
    series: xr.Dataset


@dataclass
class BALResult:
    """Indices into the pool picked by MaxDist, and the last-layer-gradient features it used."""

    indices: list[int]
    features_train: np.ndarray
    features_pool: np.ndarray


# --------------------------------------------------------------------------- training


def apax_config(model: ApaxModel, *, train_path: Path, valid_path: Path, directory: Path, n_train: int,
                n_valid: int) -> dict[str, Any]:
    """apax's training config (current schema) for ``model``, validated by apax's ``Config``.

    The paper's settings (Methods; reference/paper_workflow/initial_model.yaml) where the spec has
    no field; ``model.apax_extra`` is deep-merged last, so it can override anything.
    """
    from apax.config import Config

    nll = model.ensemble.kind == "shallow"  # apax: shallow ensembles need a probabilistic loss
    config = {
        "n_epochs": model.epochs,
        "patience": model.patience,
        "seed": model.seed,
        "data": {
            "directory": str(directory),
            "experiment": EXPERIMENT,
            "train_data_path": str(train_path),
            "val_data_path": str(valid_path),
            "n_train": n_train,
            "n_valid": n_valid,
            "batch_size": model.batch_size,
            "valid_batch_size": model.valid_batch_size,
            "scale_method": "per_element_force_rms_scale",
            "scale_options": {},
            "shift_method": "per_element_regression_shift",
            "shift_options": {"energy_regularisation": 1.0},
        },
        "model": {
            "name": "gmnn",
            "basis": {"name": "gaussian", "n_basis": model.n_basis, "r_min": model.r_min, "r_max": model.r_max},
            "n_radial": model.n_radial,
            "nn": list(model.nn),
            "b_init": "zeros",
            "emb_init": "uniform",
            "ensemble": {"kind": model.ensemble.kind, "n_members": model.ensemble.n_members},
            "empirical_corrections": [{"name": "zbl"}] if model.zbl else [],
            "calc_stress": True,
            **PAPER_DTYPES,
        },
        "loss": [
            {"name": "energy", "weight": model.loss.energy, "loss_type": "nll" if nll else "mse"},
            {"name": "forces", "weight": model.loss.forces, "loss_type": "nll" if nll else "mse"},
            {"name": "stress", "weight": model.loss.stress},
        ],
        "metrics": [{"name": name, "reductions": ["mae"]} for name in ("energy", "forces", "stress")],
        "optimizer": {
            "name": "adam",
            "emb_lr": model.learning_rates.embedding,
            "nn_lr": model.learning_rates.network,
            "scale_lr": model.learning_rates.scale,
            "shift_lr": model.learning_rates.shift,
            "zbl_lr": ZBL_LEARNING_RATE,
        },
        "callbacks": [{"name": "csv"}],
        "progress_bar": {"disable_epoch_pbar": True, "disable_batch_pbar": True},
    }
    config = deep_merge(config, model.apax_extra)
    Config.model_validate(config)
    return config


def train(model: ApaxModel, train_frames: list[Atoms], valid_frames: list[Atoms], workdir: Path) -> TrainResult:
    """Train the ensemble on ``train_frames`` in-process; metrics of its mean prediction on ``valid_frames``.

    Frames need energy, forces and stress in their (SinglePoint) calculator. apax resumes from
    checkpoints it finds, so a model directory left in ``workdir`` is removed first. Afterwards only
    what inference needs is kept of the checkpoints: the newest ``best`` (no optimiser state).
    """
    import shutil

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    paths = workdir / "train.extxyz", workdir / "valid.extxyz"
    for path, frames in zip(paths, (train_frames, valid_frames)):
        _write_labelled(path, frames)
    config = apax_config(model, train_path=paths[0], valid_path=paths[1], directory=workdir,
                         n_train=len(train_frames), n_valid=len(valid_frames))
    model_dir = workdir / EXPERIMENT
    shutil.rmtree(model_dir, ignore_errors=True)
    with _apax_contained():
        from apax.train.run import run

        run(config)
    shutil.rmtree(model_dir / "latest", ignore_errors=True)
    for older in sorted((model_dir / "best").iterdir(), key=lambda p: int(p.name))[:-1]:
        shutil.rmtree(older)  # apax keeps the last two best checkpoints; the model is the newest
    metrics = validation_metrics(model_dir, valid_frames)
    metrics.update(n_train=len(train_frames), n_valid=len(valid_frames))
    return TrainResult(model_dir, metrics, learning_curves(model_dir / "log.csv"))


def _write_labelled(path: Path, frames: list[Atoms]) -> None:
    """Frames as extxyz with only what apax trains on: structure plus energy, forces, stress."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    clean = []
    for index, frame in enumerate(frames):
        results = frame.calc.results if frame.calc is not None else {}
        missing = [name for name in ("energy", "forces", "stress") if name not in results]
        if missing:
            raise ValueError(f"frame {index} for {path.name} has no {', '.join(missing)} label")
        atoms = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=frame.pbc)
        atoms.calc = SinglePointCalculator(atoms, **{name: results[name] for name in ("energy", "forces", "stress")})
        clean.append(atoms)
    write(path, clean, format="extxyz")


def validation_metrics(model_dir: Path, frames: list[Atoms]) -> dict[str, float]:
    """MAE and RMSE of the ensemble mean against the frames' labels: energy per atom (eV/atom),
    forces per component (eV/Angstrom), stress per component of the full 3x3 tensor (eV/Angstrom^3)."""
    from ase.stress import voigt_6_to_full_3x3_stress

    calc = load_calculator(model_dir)
    errors: dict[str, list[np.ndarray]] = {"energy": [], "forces": [], "stress": []}
    for frame in frames:
        atoms = frame.copy()
        calc.get_property("energy", atoms)  # the calculator sees what changed: no rebuild per frame
        reference = frame.calc.results
        errors["energy"].append(np.atleast_1d((calc.results["energy"] - reference["energy"]) / len(atoms)))
        errors["forces"].append((calc.results["forces"] - reference["forces"]).ravel())
        stress = np.asarray(reference["stress"])
        stress = voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress
        errors["stress"].append((calc.results["stress"] - stress).ravel())
    metrics = {}
    for name, parts in errors.items():
        error = np.concatenate(parts)
        metrics[f"{name}_mae"] = float(np.mean(np.abs(error)))
        metrics[f"{name}_rmse"] = float(np.sqrt(np.mean(error**2)))
    return metrics


def learning_curves(log_csv: Path) -> xr.Dataset:
    """apax's per-epoch ``log.csv`` (train_/val_ metrics, losses, epoch time) as a Dataset over epoch."""
    import pandas as pd
    import xarray as xr

    table = pd.read_csv(log_csv)
    variables = {}
    for column in table.columns.drop("epoch"):
        attrs = {"units": _curve_unit(column)}
        if attrs["units"] == "1" and not column.endswith("loss"):
            attrs["comment"] = "unit not known to ilcampaign"
        variables[column] = ("epoch", table[column].to_numpy(float), attrs)
    return xr.Dataset(variables, coords={"epoch": ("epoch", table["epoch"].to_numpy(int), {"units": "1"})})


def _curve_unit(column: str) -> str:
    """Unit of a log.csv column such as ``val_forces_mae``, ``train_loss`` or ``epoch_time``."""
    if column == "epoch_time":
        return "s"
    quantity, _, reduction = column.split("_", 1)[-1].rpartition("_")
    unit = CURVE_UNITS.get(quantity)
    if unit is None or reduction not in ("mae", "rmse", "mse"):
        return "1"
    return f"({unit})^2" if reduction == "mse" else unit


@contextmanager
def _apax_contained() -> Iterator[None]:
    """Restore the root logger after apax, which replaces its handlers with its own log file
    (train.log, md.log in its directory) and a stderr handler."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


# --------------------------------------------------------------------------- inference


def load_calculator(model_dir: Path, *, dr_threshold: float = 0.5) -> Any:
    """apax's ASE calculator for the ensemble in ``model_dir``: energy, forces and stress are the
    ensemble mean; ``results`` also hold ``forces_ensemble`` (n_atoms, 3, n_members) and
    ``forces_uncertainty`` (std over members per atom and component, see ``_apax_std_factor``).

    apax 0.14 bug: its ``stress_ensemble`` is a copy of ``forces_ensemble``; do not use it.
    """
    from apax.md.ase_calc import ASECalculator

    return ASECalculator(Path(model_dir), dr_threshold=dr_threshold)


def force_uncertainty(results: dict[str, Any]) -> float:
    """Paper eqn 8 from the members' forces (``forces_ensemble``): max over atoms and components
    of their population standard deviation (1/N_ens), in eV/Angstrom."""
    if "forces_ensemble" not in results:
        raise KeyError("no forces_ensemble in the results: the model is not an ensemble")
    return float(np.max(np.std(results["forces_ensemble"], axis=-1)))


def _apax_std_factor(model_config: Any) -> float:
    """apax's ``forces_uncertainty`` over eqn 8's value: 1 for full ensembles (``jnp.std``),
    sqrt(N/(N-1)) for shallow ones (apax divides their variance by N - 1); 1 for a single model."""
    ensemble = model_config.model.ensemble
    if ensemble is None or ensemble.kind == "full":
        return 1.0
    return float(np.sqrt(ensemble.n_members / (ensemble.n_members - 1)))


def jax_md_valid(atoms: Atoms, r_max: float) -> bool:
    """Whether apax's JAX MD computes correct neighbours for this box: every perpendicular width of
    the (fully periodic) cell must exceed 2 r_max (apax uses one minimum image per pair). The
    neighbour-list skin does not enter: pairs are found by minimum image, whatever their distance."""
    if not atoms.pbc.any() and not atoms.cell.any():
        return True  # free space: apax runs it without a box
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        return False
    widths = 1.0 / np.linalg.norm(atoms.cell.reciprocal(), axis=1)
    return bool(np.all(widths > 2 * r_max))


# --------------------------------------------------------------------------- JAX MD


def _jax_md_unsupported(sampler: MDSampler) -> str | None:
    """Why apax's JAX MD cannot run this sampler (it has Nose-Hoover chain NVT at a fixed box only)."""
    if sampler.ensemble != "nvt":
        return "JAX MD runs NVT only here; use ASE for NPT"
    if sampler.thermostat != "nose_hoover_chain":
        return f"apax's JAX MD has a Nose-Hoover chain thermostat only, not {sampler.thermostat}"
    if sampler.density is not None:
        return "apax's JAX MD cannot ramp the density"
    if sampler.hybrid_d3:
        return "apax's JAX MD cannot add D3"
    return None


def temperature_schedule(sampler: MDSampler) -> Any:
    """apax's schedule for the sampler's temperature: constant, or ``oscillating_ramp``, which is
    eqn 9: T(t) = T0 + t/n_steps (Tend - T0) + amplitude sin(2 pi t oscillations / n_steps).

    apax's config demands amplitude > 0 and a whole number of oscillations; its schedule computes
    eqn 9 for any values, so a plain ramp or a fractional oscillation count is built unvalidated."""
    from apax.config.md_config import ConstantTempSchedule, OscillatingRampTempSchedule

    ramp = sampler.temperature
    if ramp.end is None and (ramp.amplitude == 0 or ramp.oscillations == 0):
        return ConstantTempSchedule(T0=ramp.start)
    return OscillatingRampTempSchedule.model_construct(
        name="oscillating_ramp", T0=ramp.start, Tend=ramp.start if ramp.end is None else ramp.end,
        amplitude=ramp.amplitude, num_oscillations=ramp.oscillations, total_steps=sampler.n_steps,
    )


def run_jax_md(model_dir: Path, atoms: Atoms, sampler: MDSampler, *, workdir: Path, seed: int) -> JaxMDResult:
    """NVT MD of ``atoms`` with apax's JAX MD (Nose-Hoover chain) and ``sampler``'s temperature
    schedule, stopped by apax's ``forces_uncertainty`` check at ``sampler.uncertainty_threshold``.

    apax evaluates the model (and the check) every ``interval`` steps, after steps 1, 1 + interval,
    ...; these are the frames (``info["step"]`` = steps done). It acts on a failed check only at the
    end of a compiled block, so frames after the one that failed are dropped here; ``stopped_at``
    is that frame's step. Momenta are drawn from Maxwell-Boltzmann at T(0) with ``seed`` (as the
    ASE engine does; ``atoms``' own are not used). ValueError if the temperature ramp reaches 0 K,
    the box is too small for JAX MD, or the sampler needs what JAX MD lacks (NPT, Langevin, density
    ramps, D3): run those through ASE.
    """
    import shutil

    from ase.io import write

    reason = _jax_md_unsupported(sampler)
    if reason is not None:
        raise ValueError(reason)
    if np.min(temperature_schedule(sampler).get_schedule()(np.arange(sampler.n_steps))) <= 0:
        raise ValueError("the temperature ramp reaches 0 K (apax clips it there); lower the amplitude")
    model_config = _model_config(model_dir)
    r_max = model_config.model.basis.r_max
    if not jax_md_valid(atoms, r_max):
        raise ValueError(f"the box is too small for JAX MD: a perpendicular width is below 2 r_max = {2 * r_max:g} A")

    sim_dir = Path(workdir).resolve() / "apax_md"
    shutil.rmtree(sim_dir, ignore_errors=True)  # apax appends to and restarts from what it finds
    sim_dir.mkdir(parents=True)
    write(sim_dir / "start.extxyz", atoms, format="extxyz")
    factor = _apax_std_factor(model_config)
    threshold = None if sampler.uncertainty_threshold is None else sampler.uncertainty_threshold * factor
    ensemble = model_config.model.ensemble is not None
    if threshold is not None and not ensemble:
        raise ValueError("a single model has no force uncertainty: set uncertainty_threshold to null")
    md_config = _md_config(sampler, sim_dir, seed, threshold, ensemble)
    with _apax_contained():
        from apax.md.simulate import run_md

        try:
            run_md(model_config, md_config, log_level="warning")
        except TypeError as exc:
            if "neighbor list overflowed" not in (sim_dir / "md.log").read_text():
                raise
            raise RuntimeError(
                "apax JAX MD: the neighbour list overflowed, and apax 0.14 cannot go on after reallocating it "
                "(its model evaluation keeps the old list size); run this sampler with engine: ase"
            ) from exc
    return _read_trajectory(sim_dir / "md.h5", atoms, sampler, threshold, factor)


def _model_config(model_dir: Path) -> Any:
    """The model's apax config, pointed at ``model_dir`` wherever it was trained."""
    import yaml
    from apax.config import Config

    model_dir = Path(model_dir).resolve()
    raw = yaml.safe_load((model_dir / "config.yaml").read_text())
    raw["data"].update(directory=str(model_dir.parent), experiment=model_dir.name)
    return Config.model_validate(raw)


def _md_config(sampler: MDSampler, sim_dir: Path, seed: int, threshold: float | None, ensemble: bool) -> Any:
    """apax's MD config: NVT with the sampler's schedule, the force-uncertainty check at
    ``threshold`` (in apax's normalisation; None: no check), no restart; an ``ensemble`` also
    records its force uncertainty."""
    from apax.config.md_config import MDConfig, NVTOptions

    checks = [] if threshold is None else [{"name": "forces_uncertainty", "threshold": threshold}]
    blocks = -(-sampler.n_steps // INNER_STEPS)  # apax runs whole blocks: split n_steps evenly
    ensemble = NVTOptions(name="nvt", dt=sampler.timestep, temperature_schedule=temperature_schedule(sampler))
    return MDConfig(
        seed=seed, ensemble=ensemble,
        duration=(sampler.n_steps - 0.5) * sampler.timestep,  # apax runs ceil(duration / dt) steps: n_steps
        n_inner=-(-sampler.n_steps // blocks), sampling_rate=sampler.interval, dr_threshold=0.5,
        dynamics_checks=checks, properties=["energy", "forces"] + (["forces_uncertainty"] if ensemble else []),
        initial_structure=str(sim_dir / "start.extxyz"), sim_dir=str(sim_dir),
        traj_name="md.h5", restart=False, disable_pbar=True,
    )


def _read_trajectory(path: Path, start: Atoms, sampler: MDSampler, threshold: float | None,
                     factor: float) -> JaxMDResult:
    """Frames of apax's trajectory up to ``n_steps`` and the first failed uncertainty check at
    ``threshold`` (its frame kept); non-finite frames are dropped. Frames are copies of ``start``
    (its info and per-atom arrays such as ``mol_id`` kept) with apax's positions and momenta;
    apax's ``forces_uncertainty`` divided by ``factor`` is eqn 8 (NaN for a single model)."""
    import znh5md
    from ase import units

    kT = temperature_schedule(sampler).get_schedule()
    frames, rows, stopped_at = [], [], None
    for index, raw in enumerate(znh5md.IO(path)[:]):
        step = 1 + index * sampler.interval  # apax saves (and checks) after steps 1, 1 + interval, ...
        if step > sampler.n_steps:
            break
        results = raw.calc.results
        uncertainty = results.get("forces_uncertainty")
        sigma = np.nan if uncertainty is None else float(np.max(uncertainty)) / factor
        # apax's check passes when all(uncertainty < threshold), in float32; NaN fails it
        failed = threshold is not None and not np.all(uncertainty < np.float32(threshold))
        finite = np.isfinite(results["energy"]) and (uncertainty is None or np.isfinite(sigma))
        if finite and np.all(np.isfinite(raw.positions)):
            target = float(kT(step - 1)) / units.kB  # the target of the step that led here
            temperature = float(raw.get_temperature())
            frame = start.copy()
            frame.calc = None
            frame.set_positions(raw.positions, apply_constraint=False)
            frame.set_momenta(raw.get_momenta(), apply_constraint=False)
            frame.info.update(source="md", step=step, time_fs=step * sampler.timestep, target_temperature_K=target,
                              temperature_K=temperature, uncertainty_eV_A=sigma)
            frames.append(frame)
            rows.append((step, target, temperature, results["energy"], sigma))
        if failed:
            stopped_at = step
            break
    return JaxMDResult(frames, stopped_at, _series(np.array(rows, dtype=float).reshape(-1, 5), sampler.timestep))


def _series(rows: np.ndarray, timestep: float) -> xr.Dataset:
    """Per-frame MD observables with units."""
    import xarray as xr

    step = rows[:, 0].astype(int)
    return xr.Dataset(
        {
            "target_temperature": ("step", rows[:, 1], {"units": "K"}),
            "temperature": ("step", rows[:, 2], {"units": "K"}),
            "potential_energy": ("step", rows[:, 3], {"units": "eV"}),
            "uncertainty": ("step", rows[:, 4], {"units": "eV/Angstrom", "comment": "eqn 8"}),
        },
        coords={"step": ("step", step, {"units": "1"}), "time": ("step", step * timestep, {"units": "fs"})},
    )


# --------------------------------------------------------------------------- selection


def bal_select(model_dir: Path, train_frames: list[Atoms], pool_frames: list[Atoms], n: int, *,
               batch_size: int = 32) -> BALResult:
    """Pick ``n`` pool frames with apax.bal: last-layer-gradient features of the ensemble (the
    output layer, ``dense_2`` for two hidden layers as in the paper) and MaxDist.

    apax 0.14's MaxDist starts from the feature norms and excludes the training frames from the
    pick, but does not measure distances to them: the pick is spread within the pool only.
    """
    from apax.bal.api import kernel_selection

    if not 1 <= n <= len(pool_frames):
        raise ValueError(f"cannot pick {n} of {len(pool_frames)} pool frames")
    layer = f"dense_{len(_model_config(model_dir).model.nn)}"
    indices, _, features_train, features_pool = kernel_selection(
        Path(model_dir).resolve(), list(train_frames), list(pool_frames),
        base_fm_options={"name": "ll_grad", "layer_name": layer}, selection_method="max_dist",
        selection_batch_size=n, processing_batch_size=batch_size,
    )
    return BALResult([int(i) for i in indices], np.asarray(features_train), np.asarray(features_pool))
