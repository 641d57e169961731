"""Training apax GMNN models (ensembles or single models), resumable after a kill.

``train`` works in a folder that survives the process. apax checkpoints the whole training state
there every ``checkpoint_every`` epochs, and a rerun with the same config and data resumes from
the latest checkpoint, reaching bit for bit the parameters of an uninterrupted run. apax's ``run``
builds model, datasets and optimiser; its training loop is swapped for ``resumable_fit``, which
fixes what apax 0.14's ``fit`` gets wrong on a resume (see there).

apax, JAX and TensorFlow are imported inside the functions: importing apax pulls in TensorFlow
(~8 s), and the CLI must start fast.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ilcampaign.campaign.spec import ApaxModel, deep_merge
from ilcampaign.engine.models.apax import apax_contained, enable_compilation_cache, load_calculator

if TYPE_CHECKING:
    import xarray as xr
    from ase import Atoms

EXPERIMENT = "model"  # apax's model directory is <directory>/<experiment>
PAPER_DTYPES = {"descriptor_dtype": "fp32", "readout_dtype": "fp32", "scale_shift_dtype": "fp32"}
ZBL_LEARNING_RATE = 0.001  # the paper workflow's zbl_lr (initial_model.yaml)
STATE_FILE = "training.json"  # in the work directory: the fingerprint and whether training finished
LOCATED = ("directory", "train_data_path", "val_data_path")  # config entries that say where files lie

#: apax's functions that ``resumable_fit`` and ``jitted_create_params`` fork: the SHA-256 of their
#: source in apax 0.14.0 (pyproject pins it); tests/test_apax_fork.py fails when apax's differ
FORKED_SOURCES = {
    "apax.train.trainer.fit": "c49daade6f9971089ba39eddfefb4b01fcfc40d098b12d4a0416b850eb420acd",
    "apax.train.checkpoints.create_params": "7c984dc388b3f66aac1d8f448c6a616d20fc646c4fec9fe58f95ae4da4a62182",
}

#: units of the quantities in apax's log.csv: energy and stress per structure (apax trains on
#: stress times volume); losses are weighted sums of squared errors, taken as dimensionless
CURVE_UNITS = {"energy": "eV", "forces": "eV/Angstrom", "stress": "eV"}


@dataclass
class TrainResult:
    """A trained model: apax's model directory, validation metrics, per-epoch learning curves and
    the wall time of each epoch in s (kept apart from the curves: it differs from run to run)."""

    model_dir: Path
    metrics: dict[str, float]
    curves: xr.Dataset
    epoch_times: list[float]


def apax_config(model: ApaxModel, *, train_path: Path, valid_path: Path, directory: Path, n_train: int,
                n_valid: int) -> dict[str, Any]:
    """apax's training config (current schema) for ``model``, validated by apax's ``Config``.

    The paper's settings (Methods; reference/paper_workflow/initial_model.yaml) where the spec has
    no field; ``model.apax_extra`` is deep-merged last, so it can override anything. No ensemble
    (``model.ensemble`` None) trains one model.
    """
    from apax.config import Config

    ensemble = model.ensemble
    nll = ensemble is not None and ensemble.kind == "shallow"  # apax: shallow ensembles need a probabilistic loss
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
            "ensemble": None if ensemble is None else {"kind": ensemble.kind, "n_members": ensemble.n_members},
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


def train(model: ApaxModel, train_frames: list[Atoms], valid_frames: list[Atoms], workdir: Path, *,
          checkpoint_every: int, on_event: Callable[..., None] | None = None,
          cache_dir: Path | None = None) -> TrainResult:
    """Train ``model`` on ``train_frames`` in-process; metrics of its (mean) prediction on ``valid_frames``.

    Frames need energy, forces and stress in their (SinglePoint) calculator. ``workdir`` is kept
    across kills: training checkpoints there every ``checkpoint_every`` epochs and resumes from the
    latest checkpoint if it was made with the same config and data (``_fingerprint``); anything
    else there is discarded. ``on_event(name, **fields)`` hears ``("resumed", epoch=n)`` and
    ``("checkpoint", epoch=n)``, n the epochs done, then ``"fitted"`` and ``"validated"`` (where
    the time goes). Once trained, only what inference needs is kept: the newest ``best``
    checkpoint (no optimiser state). ``cache_dir``: JAX's persistent compilation cache (trainings
    of one model shape reuse their compiled steps; results do not depend on it).
    """
    import shutil

    from ilcampaign.archive.atomic import atomic_write_json

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if cache_dir is not None:
        enable_compilation_cache(cache_dir)
    paths = workdir / "train.extxyz", workdir / "valid.extxyz"
    for path, frames in zip(paths, (train_frames, valid_frames)):
        _write_labelled(path, frames)
    config = apax_config(model, train_path=paths[0], valid_path=paths[1], directory=workdir,
                         n_train=len(train_frames), n_valid=len(valid_frames))
    model_dir = workdir / EXPERIMENT
    state_path = workdir / STATE_FILE
    fingerprint = _fingerprint(config, paths)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("fingerprint") != fingerprint:
        shutil.rmtree(model_dir, ignore_errors=True)  # another training's checkpoints
        state = {"fingerprint": fingerprint, "complete": False}
        atomic_write_json(state_path, state)
    if not state["complete"]:
        _drop_dataset_caches(model_dir)
        with apax_contained(), _fit_replaced(on_event or _ignore):
            from apax.train.run import run

            run({**config, "ckpt_interval": checkpoint_every})
        atomic_write_json(state_path, dict(state, complete=True))  # before pruning: a rerun prunes again
    shutil.rmtree(model_dir / "latest", ignore_errors=True)
    for older in sorted((model_dir / "best").iterdir(), key=lambda p: int(p.name))[:-1]:
        shutil.rmtree(older)  # apax keeps the last two best checkpoints; the model is the newest
    (on_event or _ignore)("fitted")
    metrics = validation_metrics(model_dir, valid_frames)
    (on_event or _ignore)("validated")
    metrics.update(n_train=len(train_frames), n_valid=len(valid_frames))
    return TrainResult(model_dir, metrics, *learning_curves(model_dir / "log.csv"))


def _ignore(event: str, **fields: Any) -> None:
    """The default ``on_event``: nobody listens."""


def _fingerprint(config: dict[str, Any], paths: tuple[Path, ...]) -> str:
    """What a checkpoint must have been made with to be resumed: the apax version, the config
    (less the file locations, so a moved folder still resumes) and the data files' bytes."""
    import hashlib
    from importlib.metadata import version

    data = {key: value for key, value in config["data"].items() if key not in LOCATED}
    digest = hashlib.sha256(json.dumps([version("apax"), {**config, "data": data}], sort_keys=True).encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _drop_dataset_caches(model_dir: Path) -> None:
    """Delete tf.data cache files (``<uuid>.index``, ``<uuid>.data-*``, ``<uuid>*.lockfile``) that
    a killed run left in the model directory: apax removes its own only when training ends, a new
    run caches under a new name, and the leftovers would otherwise end up in the stored model."""
    import re

    cache = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[._]")
    if model_dir.is_dir():
        for path in model_dir.iterdir():
            if path.is_file() and cache.match(path.name):
                path.unlink()


@contextmanager
def _fit_replaced(on_event: Callable[..., None]) -> Iterator[None]:
    """apax's ``run`` with ``resumable_fit`` (reporting to ``on_event``) as its training loop and
    ``jitted_create_params`` as its parameter initialisation."""
    from functools import partial

    import apax.train.run as apax_run

    originals = apax_run.fit, apax_run.create_params
    apax_run.fit = partial(resumable_fit, on_event=on_event)
    apax_run.create_params = jitted_create_params
    try:
        yield
    finally:
        apax_run.fit, apax_run.create_params = originals


def jitted_create_params(model, rng_key, sample_input: tuple, n_models: int):
    """apax 0.14's ``create_params`` with the (vmapped) ``model.init`` compiled as one function:
    apax runs it op by op, which took 23 s for the demo's 2-member ensemble under load (4 s
    compiled); the parameters are bit-identical (``tests/test_apax_training.py``)."""
    import jax
    from flax.core import freeze

    keys = jax.random.split(rng_key, num=n_models + 1)
    if n_models > 1:
        init = jax.jit(jax.vmap(model.init, in_axes=(0, *[None] * len(sample_input))))
        params = init(keys[1:], *sample_input)
    else:
        params = jax.jit(model.init)(keys[1], *sample_input)
    return freeze(params), keys[0]


def resumable_fit(state, train_ds, loss_fn, Metrics, callbacks, n_epochs: int, ckpt_dir: Path,
                  ckpt_interval: int = 1, val_ds=None, patience: int | None = None, patience_min_delta: float = 0.0,
                  disable_pbar: bool = False, disable_batch_pbar: bool = True, is_ensemble: bool = False,
                  data_parallel: bool = True, ema_handler=None, *, on_event: Callable[..., None]) -> None:
    """apax 0.14's ``apax.train.trainer.fit`` (same arguments, same steps, same parameters),
    changed where its resume from ``<ckpt_dir>/latest`` goes wrong:

    - the ``latest`` checkpoint is written after every ``ckpt_interval`` epochs done and holds the
      best validation loss, the early-stopping count and EMA parameters too (apax restarts both
      from scratch, so the first epoch after a resume always became ``best``);
    - best checkpoints and CSV log rows of epochs after the checkpoint are dropped, as those
      epochs are trained again (orbax silently skips saving a step below its newest one, and
      apax appended duplicate rows after any torn line);
    - the batches that the finished epochs used are skipped, so the resumed run sees the same
      shuffled stream (apax's tf.data shuffle restarts with the seed, and so batches repeat);
    - orbax temporaries of interrupted saves are cleaned up, and ``on_event`` hears
      ``("checkpoint", epoch=n)`` only once the checkpoint (and every best one) is on disk.

    ``val_ds`` is needed (apax needs it too); there is no batch progress bar.
    """
    import itertools
    import logging
    import time

    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from apax.train.trainer import make_step_fns
    from jax.experimental import mesh_utils
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P
    from keras.callbacks import CSVLogger
    from tqdm import trange

    log = logging.getLogger("apax.train.trainer")
    options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=1, cleanup_tmp_directories=True)
    train_step, val_step = make_step_fns(loss_fn, Metrics, model=state.apply_fn, is_ensemble=is_ensemble)
    progress = {"model": state, "epoch": -1, "best_loss": np.inf, "stale_epochs": 0}  # epoch: the last one done
    if ema_handler:
        progress["ema_params"] = state.params
    with (
        ocp.CheckpointManager((ckpt_dir / "latest").resolve(), options=options) as latest_manager,
        ocp.CheckpointManager((ckpt_dir / "best").resolve(), options=options) as best_manager,
    ):
        if latest_manager.latest_step() is not None:
            progress = latest_manager.restore(latest_manager.latest_step(), args=ocp.args.StandardRestore(progress))
        start_epoch = int(progress["epoch"]) + 1
        state, best_loss, stale_epochs = progress["model"], float(progress["best_loss"]), int(progress["stale_epochs"])
        if ema_handler:
            ema_handler.ema_params = progress["ema_params"]
        for step in best_manager.all_steps():
            if step >= start_epoch:
                best_manager.delete(step)
        for callback in callbacks.callbacks:
            if isinstance(callback, CSVLogger):  # apax's log.csv
                _drop_log_rows(Path(callback.filename), start_epoch)
        if start_epoch >= n_epochs:
            return
        if start_epoch > 0:
            log.info("Resuming after epoch %d", start_epoch)
            on_event("resumed", epoch=start_epoch)

        callbacks.on_train_begin()
        mesh = None
        if len(jax.devices()) > 1 and data_parallel:
            mesh = Mesh(mesh_utils.create_device_mesh((jax.device_count(),)), axis_names=("data",))
            state = jax.device_put(state, NamedSharding(mesh, P()))
        train_steps, val_steps = train_ds.steps_per_epoch(), val_ds.steps_per_epoch()
        batch_train_ds, batch_val_ds = train_ds.shuffle_and_batch(mesh), val_ds.batch(mesh)
        for stream, steps in ((batch_train_ds, train_steps), (batch_val_ds, val_steps)):
            for _ in itertools.islice(stream, start_epoch * steps):
                pass  # the batches of the epochs done

        epoch_pbar = trange(start_epoch, n_epochs, desc="Epochs", ncols=100, disable=disable_pbar, leave=True)
        for epoch in range(start_epoch, n_epochs):
            epoch_start_time = time.time()
            callbacks.on_epoch_begin(epoch=epoch + 1)
            if ema_handler:
                ema_handler.update(state.params, epoch)

            train_loss, train_metrics = 0.0, Metrics.empty()
            for batch_idx in range(train_steps):
                callbacks.on_train_batch_begin(batch=batch_idx)
                (state, train_metrics), batch_loss = train_step((state, train_metrics), next(batch_train_ds))
                train_loss += jnp.mean(batch_loss)
                callbacks.on_train_batch_end(batch=batch_idx)
            epoch_metrics = {f"train_{key}": float(value) for key, value in train_metrics.compute().items()}

            if ema_handler:
                ema_handler.update(state.params, epoch)
                val_params = ema_handler.ema_params
            else:
                val_params = state.params
            val_loss, val_metrics = 0.0, Metrics.empty()
            for _ in range(val_steps):
                batch_loss, val_metrics = val_step(val_params, next(batch_val_ds), val_metrics)
                val_loss += batch_loss
            epoch_metrics.update({f"val_{key}": float(value) for key, value in val_metrics.compute().items()})
            epoch_metrics.update(train_loss=float(train_loss / train_steps), val_loss=float(val_loss / val_steps))
            epoch_metrics["epoch_time"] = time.time() - epoch_start_time

            if epoch_metrics["val_loss"] < best_loss:
                best_manager.save(epoch, args=ocp.args.StandardSave({"model": state, "epoch": epoch}))
                if abs(epoch_metrics["val_loss"] - best_loss) < patience_min_delta:
                    stale_epochs += 1
                else:
                    stale_epochs = 0
                best_loss = epoch_metrics["val_loss"]
            else:
                stale_epochs += 1
            callbacks.on_epoch_end(epoch=epoch, logs=epoch_metrics)  # logged before the checkpoint that covers it
            epoch_pbar.set_postfix(val_loss=epoch_metrics["val_loss"])
            epoch_pbar.update()

            if (epoch + 1) % ckpt_interval == 0:
                done = {"model": state, "epoch": epoch, "best_loss": best_loss, "stale_epochs": stale_epochs}
                if ema_handler:
                    done["ema_params"] = ema_handler.ema_params
                latest_manager.save(epoch, args=ocp.args.StandardSave(done))
                latest_manager.wait_until_finished()
                best_manager.wait_until_finished()
                on_event("checkpoint", epoch=epoch + 1)
            if patience is not None and stale_epochs >= patience:
                log.info(f"Early stopping patience exceeded. Stopping training after {epoch} epochs.")
                break
        epoch_pbar.close()
    callbacks.on_train_end()
    train_ds.cleanup()
    val_ds.cleanup()


def _drop_log_rows(path: Path, start_epoch: int) -> None:
    """Keep only the rows of epochs before ``start_epoch`` (and the header) in a CSV log whose
    first column is the epoch; a torn last line goes too. No rows left: the file goes."""
    from ilcampaign.archive.atomic import atomic_path

    if not path.exists():
        return
    header, *rows = path.read_text().splitlines(keepends=True) or [""]
    kept = [row for row in rows if row.endswith("\n") and int(row.split(",", 1)[0]) < start_epoch]
    if not kept:
        path.unlink()
    elif len(kept) < len(rows):
        with atomic_path(path) as tmp:
            tmp.write_text(header + "".join(kept))


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
    """MAE and RMSE of the model's (ensemble mean) prediction against the frames' labels: energy
    per atom (eV/atom), forces per component (eV/Angstrom), stress per component of the full 3x3
    tensor (eV/Angstrom^3)."""
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


def learning_curves(log_csv: Path) -> tuple[xr.Dataset, list[float]]:
    """apax's per-epoch ``log.csv`` as (a Dataset over epoch of the train_/val_ metrics and losses,
    the epoch wall times in s): the times go apart, so that equal training gives equal curves."""
    import pandas as pd
    import xarray as xr

    table = pd.read_csv(log_csv)
    variables = {}
    for column in table.columns.drop(["epoch", "epoch_time"]):
        attrs = {"units": _curve_unit(column)}
        if attrs["units"] == "1" and not column.endswith("loss"):
            attrs["comment"] = "unit not known to ilcampaign"
        variables[column] = ("epoch", table[column].to_numpy(float), attrs)
    curves = xr.Dataset(variables, coords={"epoch": ("epoch", table["epoch"].to_numpy(int), {"units": "1"})})
    return curves, table["epoch_time"].astype(float).tolist()


def _curve_unit(column: str) -> str:
    """Unit of a log.csv column such as ``val_forces_mae`` or ``train_loss``."""
    quantity, _, reduction = column.split("_", 1)[-1].rpartition("_")
    unit = CURVE_UNITS.get(quantity)
    if unit is None or reduction not in ("mae", "rmse", "mse"):
        return "1"
    return f"({unit})^2" if reduction == "mse" else unit
