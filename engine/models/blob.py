"""A trained apax model as a canonical blob: the same model gives the same bytes, wherever and
whenever it was trained.

The tar holds two files. ``model/config.yaml`` is apax's config with sorted keys, the data
locations relative to the training folder (``directory: .``, ``train_data_path: train.extxyz``:
no machine paths) and the checkpoint interval left out (how training was checkpointed does not
define the model). ``model/params.h5`` holds the parameters of the newest ``best`` checkpoint,
one dataset per leaf of the parameter tree, in sorted order, dtypes as trained, little-endian,
in a byte-stable HDF5 file (ilcampaign.archive.hdf5).
Entries have fixed order, mtime, owner and mode. apax's orbax checkpoints are not stored: their
file names are random and they hold timestamps and absolute paths. ``unpack`` writes one from the
parameters, which apax's loaders (its ASE calculator, BAL, our JAX MD) read as the original.

apax, JAX and orbax are imported inside the functions (the CLI must start fast).
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from ilcampaign.engine.models.training import EXPERIMENT, LOCATED

CONFIG, PARAMS = "config.yaml", "params.h5"


def pack(model_dir: Path, target: Path) -> None:
    """Store apax's trained model folder ``model_dir`` canonically as the tar file ``target``."""
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        _write_params(model_dir, Path(scratch) / PARAMS)
        files = {CONFIG: _config(model_dir), PARAMS: (Path(scratch) / PARAMS).read_bytes()}
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{EXPERIMENT}/{name}")  # mtime 0, mode 644, owner 0 and unnamed
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def unpack(blob: Path, folder: Path) -> Path:
    """Unpack a model blob into ``folder``; returns apax's model folder ``folder/model``, with the
    parameters also as an orbax checkpoint in ``best/<epoch>``, where apax looks for them."""
    import orbax.checkpoint as ocp

    with tarfile.open(blob) as tar:
        tar.extractall(folder, filter="data")
    model_dir = folder / EXPERIMENT
    params, epoch = _read_params(model_dir / PARAMS)
    with ocp.CheckpointManager((model_dir / "best").resolve()) as manager:
        manager.save(epoch, args=ocp.args.StandardSave({"model": {"params": params}, "epoch": epoch}))
        manager.wait_until_finished()
    return model_dir


def _read_params(path: Path) -> tuple[dict[str, Any], int]:
    """The parameter tree (nested dicts of numpy arrays) in a ``params.h5`` and its epoch."""
    import h5py
    from flax.traverse_util import unflatten_dict

    leaves = {}

    def collect(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            leaves[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(collect)
        epoch = int(f.attrs["epoch"])
    return unflatten_dict(leaves, sep="/"), epoch


def _config(model_dir: Path) -> bytes:
    """apax's config of the model, free of machine paths and checkpoint settings, as YAML."""
    import yaml

    config = yaml.safe_load((model_dir / CONFIG).read_text())
    config.pop("ckpt_interval", None)
    data = config["data"]
    data.update({key: os.path.relpath(data[key], data["directory"]) for key in LOCATED if data.get(key)})
    return yaml.safe_dump(config, sort_keys=True).encode()


def _write_params(model_dir: Path, path: Path) -> None:
    """The newest best checkpoint's parameters as a byte-stable HDF5 file at ``path``."""
    import numpy as np
    from apax.train.checkpoints import load_params
    from flax.core import unfreeze
    from flax.traverse_util import flatten_dict

    from ilcampaign.archive.hdf5 import create

    epoch = max(int(step.name) for step in (model_dir / "best").iterdir() if step.name.isdigit())
    leaves = flatten_dict(unfreeze(load_params(model_dir)), sep="/")  # load_params reads the newest
    with create(path) as f:
        f.attrs["epoch"] = epoch
        for name in sorted(leaves):
            value = np.asarray(leaves[name])
            f.create_dataset(name, data=value.astype(value.dtype.newbyteorder("<")))
