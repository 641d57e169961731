"""Training that resumes after ``kill -9``: the ``train`` step run as the engine runs it, in a
subprocess, on the 12 xTB-labelled frames of test_apax_model (8 train, 4 valid).

The model is noisy on purpose (10x the paper's learning rates, batches of one), so its validation
loss goes up and down and early stopping (patience 2) ends training before the 12 epochs. The
run is killed twice, each time just after an epoch beyond its latest checkpoint (every 3 epochs)
was logged: first after an epoch that improved the validation loss (its ``best`` checkpoint,
log row and cached batches lie beyond the checkpoint), then after one that did not (which apax's
own resume would have taken as the new best, with the early-stopping count reset). The finished
run must equal an uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

from ilcampaign.campaign.spec import ApaxModel
from tests.conftest import ROOT
from tests.test_apax_model import R_MAX, box, labelled  # noqa: F401  (module fixtures: the labelled frames)

pytestmark = pytest.mark.slow

EPOCHS, EVERY, PATIENCE = 12, 3, 2
DATA, REFERENCE, KILLED = "d" * 64, "e" * 64, "f" * 64  # step keys in the test archive
TASK = "fit"
WORKER = "import json, sys; from ilcampaign.engine.run.execute import TaskRef, run_task; run_task(TaskRef(**json.loads(sys.argv[1])))"


def tiny_model(**changes) -> ApaxModel:
    """A [16, 16] ensemble with a noisy validation loss: 10x the paper's learning rates, batches of one."""
    rates = {"embedding": 0.1, "network": 0.05, "scale": 0.01, "shift": 0.5}
    return ApaxModel(nn=[16, 16], n_basis=4, n_radial=3, r_max=R_MAX, epochs=EPOCHS, batch_size=1, valid_batch_size=4,
                     learning_rates=rates, patience=PATIENCE, **changes)


@dataclass
class Worker:
    """A train task running in its own Python process, as an engine worker runs it."""

    process: subprocess.Popen
    output: Path

    def finish(self) -> None:
        assert self.process.wait(timeout=900) == 0, self.output.read_text()[-5000:]


def start_task(root: Path, key: str) -> Worker:
    """Start the train task of step ``key`` (the model ``tiny_model``) in a fresh process."""
    from ilcampaign.engine.run.execute import TaskRef
    from ilcampaign.engine.steps.train import TrainStep

    params = TrainStep(model=tiny_model(), checkpoint_every=EVERY).model_dump(mode="json")
    ref = TaskRef(str(root / "archive"), str(root / "scratch"), "train", params, key, {"data": DATA}, TASK)
    output = root / f"{key[0]}-{time.time_ns()}.log"
    with open(output, "w") as sink:
        process = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(asdict(ref))], stdout=sink,
                                   stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return Worker(process, output)


def val_losses(log_csv: Path) -> list[float]:
    """Validation losses of the epochs logged so far (complete lines only)."""
    header, *rows = (log_csv.read_text() if log_csv.exists() else "").splitlines(keepends=True) or [""]
    if not header.endswith("\n"):
        return []
    column = header.rstrip("\n").split(",").index("val_loss")
    return [float(row.split(",")[column]) for row in rows if row.endswith("\n")]


def current_run(events: list[dict]) -> list[dict]:
    """The journal events since the latest task start."""
    starts = [i for i, event in enumerate(events) if event["event"] == "task_start"]
    return events[starts[-1]:] if starts else []


def kill_after_checkpoint(worker: Worker, archive, *, improved: bool) -> int:
    """SIGKILL the worker as soon as the epoch after its latest checkpoint is logged, if that
    epoch did (``improved``) or did not lower the validation loss below all before; returns the
    checkpoint's epoch count. Fails if the run ends first."""
    log_csv = archive.checkpoint_dir(KILLED, TASK) / "model" / "log.csv"
    while worker.process.poll() is None:
        checkpoints = [e["epoch"] for e in current_run(archive.events(KILLED)) if e["event"] == "checkpoint"]
        losses = val_losses(log_csv)
        if checkpoints and len(losses) > checkpoints[-1]:
            done = checkpoints[-1]
            if (losses[done] < min(losses[:done])) == improved:
                worker.process.send_signal(signal.SIGKILL)
                worker.process.wait()
                return done
        time.sleep(0.02)
    pytest.fail(f"training ended before a checkpoint was followed by an epoch with improved={improved}:\n"
                + worker.output.read_text()[-5000:])


def parameters(model_dir: Path) -> dict[str, np.ndarray]:
    """The flattened parameter tree of apax's newest best checkpoint in ``model_dir``."""
    import jax
    from apax.train.checkpoints import load_params

    leaves = jax.tree_util.tree_flatten_with_path(load_params(model_dir))[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def unpack_model(archive, key: str, into: Path) -> Path:
    """The model directory of a finished train task, unpacked from its blob as the steps load it."""
    from ilcampaign.engine.models.blob import unpack

    return unpack(archive.blob_path(archive.done_tasks(key)[TASK]["model"]), into)


def assert_same_parameters(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


@pytest.fixture(scope="module")
def runs(labelled, tmp_path_factory):  # noqa: F811
    """An archive with the frames as a finished data step; the train task run uninterrupted (key
    REFERENCE) and, alongside, killed twice and rerun to the end (key KILLED); a copy of the
    killed run's checkpoint folder after the first kill; the epochs each kill resumed from."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from ilcampaign.archive.frames import write_frames
    from ilcampaign.archive.store import Archive
    from ilcampaign.engine.step import FRAMES

    root = tmp_path_factory.mktemp("campaign")
    archive = Archive(root / "archive")
    frames = []
    for index, original in enumerate(labelled):
        frame = original.copy()
        frame.calc = SinglePointCalculator(frame, **original.calc.results)
        frame.info["split"] = "train" if index < 8 else "valid"
        frames.append(frame)
    write_frames(archive.output(DATA, FRAMES), frames)

    workers = [start_task(root, REFERENCE), start_task(root, KILLED)]
    try:
        kills = [kill_after_checkpoint(workers[-1], archive, improved=True)]
        stale = root / "stale"
        shutil.copytree(archive.checkpoint_dir(KILLED, TASK), stale)
        workers.append(start_task(root, KILLED))
        kills.append(kill_after_checkpoint(workers[-1], archive, improved=False))
        workers.append(start_task(root, KILLED))
        workers[-1].finish()
        workers[0].finish()
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
    return archive, stale, kills


def test_killed_training_resumes_to_the_uninterrupted_parameters(runs, tmp_path):
    """Same parameters, and the same model blob and learning curves byte for byte, although the
    two trainings ran in different folders (their task folders) and one was killed twice."""
    from ilcampaign.archive.arrays import read_dataset
    from ilcampaign.archive.atomic import sha256_file

    archive, _, kills = runs
    events = archive.events(KILLED)
    starts = [i for i, event in enumerate(events) if event["event"] == "task_start"] + [len(events)]
    attempts = [events[begin:end] for begin, end in zip(starts, starts[1:])]
    assert len(attempts) == 3 and 0 < kills[0] < kills[1]
    for attempt, resumed_from in zip(attempts[1:], kills):
        assert [e["epoch"] for e in attempt if e["event"] == "resumed"] == [resumed_from]
        checkpoints = [e["epoch"] for e in attempt if e["event"] == "checkpoint"]
        assert all(epoch > resumed_from for epoch in checkpoints)  # the epochs done were not trained again

    model_dir = unpack_model(archive, KILLED, tmp_path / "killed")
    assert_same_parameters(parameters(model_dir), parameters(unpack_model(archive, REFERENCE, tmp_path / "reference")))
    curves = read_dataset(archive.task_file(KILLED, TASK, ".curves.nc"))
    expected = read_dataset(archive.task_file(REFERENCE, TASK, ".curves.nc"))
    n_epochs = len(expected["epoch"])
    assert kills[1] < n_epochs < EPOCHS  # early stopping ended both runs, after the last resume
    assert curves["epoch"].values.tolist() == list(range(n_epochs))  # each epoch logged once
    for name in expected.data_vars:
        np.testing.assert_array_equal(curves[name].values, expected[name].values, err_msg=name)
    summaries = archive.done_tasks(KILLED)[TASK], archive.done_tasks(REFERENCE)[TASK]
    assert summaries[0]["model"] == summaries[1]["model"]  # the same blob: nothing of where or when
    assert len(summaries[0]["epoch_s"]) == n_epochs  # the epoch times went to the summary instead
    assert sha256_file(archive.task_file(KILLED, TASK, ".curves.nc")) == sha256_file(
        archive.task_file(REFERENCE, TASK, ".curves.nc"))
    with tarfile.open(archive.blob_path(summaries[0]["model"])) as tar:
        assert tar.getnames() == ["model/config.yaml", "model/params.h5"]
    trained = archive.checkpoint_dir(KILLED, TASK) / "model"
    assert set(os.listdir(trained)) == {"config.yaml", "log.csv", "train.log", "best"}  # no tf.data caches
    best = os.listdir(trained / "best")
    assert len(best) == 1 and best[0].isdigit()  # no orbax temporaries of an interrupted save


def test_resumable_fit_matches_apax_fit(runs, tmp_path):
    """apax's own training loop, uninterrupted, on the same config and data gives the same model
    (also the same as unpacked from our canonical blob, which apax's loader reads)."""
    from apax.train.run import run

    from ilcampaign.archive.arrays import read_dataset
    from ilcampaign.engine.models.apax import apax_contained
    from ilcampaign.engine.models.training import apax_config, learning_curves

    archive, _, _ = runs
    workdir = archive.checkpoint_dir(REFERENCE, TASK)
    config = apax_config(tiny_model(), train_path=workdir / "train.extxyz", valid_path=workdir / "valid.extxyz",
                         directory=tmp_path, n_train=8, n_valid=4)
    with apax_contained():
        run(config)
    ours = unpack_model(archive, REFERENCE, tmp_path / "ours")
    assert_same_parameters(parameters(tmp_path / "model"), parameters(ours))
    np.testing.assert_array_equal(learning_curves(tmp_path / "model" / "log.csv")[0]["val_loss"],
                                  read_dataset(archive.task_file(REFERENCE, TASK, ".curves.nc"))["val_loss"])


def test_a_stale_checkpoint_of_other_data_is_not_resumed(runs, labelled):  # noqa: F811
    """The folder as the first kill left it (a checkpoint after 3 epochs), trained on relabelled data."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from ilcampaign.engine.models.training import train

    _, stale, kills = runs
    assert (stale / "model" / "latest" / str(kills[0] - 1)).is_dir()  # orbax's step: the last epoch done (0-based)
    changed = [frame.copy() for frame in labelled[:8]]
    for frame, original in zip(changed, labelled):
        frame.calc = SinglePointCalculator(frame, **original.calc.results)
    changed[0].calc.results["energy"] += 1.0
    events = []
    result = train(tiny_model(), changed, labelled[8:], stale, checkpoint_every=EVERY,
                   on_event=lambda name, **fields: events.append((name, fields.get("epoch"))))
    assert events[-2:] == [("fitted", None), ("validated", None)]
    events = events[:-2]
    assert events and all(name == "checkpoint" for name, _ in events)
    assert events[0] == ("checkpoint", EVERY)  # trained from the start
    assert result.curves["epoch"].values.tolist() == list(range(len(result.curves["epoch"])))


def test_fingerprint_follows_config_and_data_not_location(tmp_path):
    """What decides whether a checkpoint is resumed: the config (seed here) and the data bytes;
    not where the folder lies."""
    from ilcampaign.engine.models.training import _fingerprint, apax_config

    def fingerprint(folder: Path, model: ApaxModel, data: str = "frames") -> str:
        folder.mkdir(exist_ok=True)
        paths = folder / "train.extxyz", folder / "valid.extxyz"
        for path in paths:
            path.write_text(data)
        config = apax_config(model, train_path=paths[0], valid_path=paths[1], directory=folder, n_train=8, n_valid=4)
        return _fingerprint(config, paths)

    original = fingerprint(tmp_path / "a", tiny_model())
    assert fingerprint(tmp_path / "b", tiny_model()) == original
    assert fingerprint(tmp_path / "a", tiny_model(seed=2)) != original
    assert fingerprint(tmp_path / "a", tiny_model(), data="other frames") != original


def test_a_single_model_trains_and_validates(labelled, tmp_path):  # noqa: F811
    """``ensemble: null``: apax trains one model; its calculator has no ensemble forces."""
    from ilcampaign.engine.models.apax import model_config, load_calculator
    from ilcampaign.engine.models.training import train

    result = train(tiny_model(ensemble=None), labelled[:8], labelled[8:], tmp_path, checkpoint_every=EVERY)
    assert model_config(result.model_dir).model.ensemble is None
    for name in ("energy", "forces", "stress"):
        assert np.isfinite(result.metrics[f"{name}_mae"]) and result.metrics[f"{name}_rmse"] > 0
    assert 0 < len(result.curves["epoch"]) <= EPOCHS
    atoms = labelled[9].copy()
    atoms.calc = load_calculator(result.model_dir)
    assert atoms.get_forces().shape == (len(atoms), 3)
    assert "forces_ensemble" not in atoms.calc.results
