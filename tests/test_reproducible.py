"""Same spec, same seed: a byte-identical archive, wherever the campaign ran and however often it
was killed, with no machine paths inside; ``campaign verify --against`` says so, and tells a
changed number (file and variable named) from a difference in metadata only.

The campaign: 1 BMIM BF4 pair, 8 rattled frames labelled by GFN2-xTB, a [8, 8] ensemble trained
20 epochs, one LotF iteration (20 steps of ASE MD in two chunks, BAL selection, labels, training).
It runs in two work directories at once: one uninterrupted, the other killed with SIGKILL during
the first training and again during the MD, and resumed each time.
"""

from __future__ import annotations

import shutil
import signal
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ilcampaign.archive.atomic import sha256_file
from ilcampaign.archive.store import Archive
from tests.conftest import run_cli, tiny_spec
from tests.test_run import events, node_keys, start, wait_for

CAMPAIGN = """
model:
  r_max: 3.5 A
  n_basis: 4
  n_radial: 2
  nn: [8, 8]
  epochs: 20
  batch_size: 2
  valid_batch_size: 4
initial_split: {n_test: 1, n_valid: 2, n_train: 5}
sampling:
  - samplers:
      md: {temperature: 300 K, n_steps: 20, interval: 5, uncertainty_threshold: null, engine: ase}
    selection: {kind: bal, n: 2}
checkpoints:
  md_steps: 10
  training_epochs: 1
"""


def kill_when(predicate, process) -> None:
    """SIGKILL the run as soon as ``predicate()`` holds."""
    wait_for(predicate, process, timeout=900)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the folder holding everything, the uninterrupted work directory, the killed one)."""
    root = tmp_path_factory.mktemp("reproducible")
    spec = tiny_spec(root / "spec.yaml", initial_data="  kind: rattle\n  n_frames: 8\n  stdev: 0.05 A\n")
    spec.write_text(spec.read_text() + CAMPAIGN)
    first, second = root / "first", root / "elsewhere" / "second"
    keys = node_keys(spec)
    train, md = keys["train.initial"], keys["iter01.md"]
    reference = start(spec, first)
    try:
        kill_when(lambda: events(second, train, "checkpoint"), start(spec, second))
        kill_when(lambda: events(second, md, "task_done"), start(spec, second))
        assert not Archive(second / "archive").is_done(md)
        resumed = start(spec, second)
        assert resumed.wait(timeout=900) == 0, resumed.stderr.read()
    finally:
        assert reference.wait(timeout=900) == 0, reference.stderr.read()
    assert next(e["epoch"] for e in events(second, train, "resumed")) >= 1  # killed mid-training
    chunk_starts = Counter(e["task"] for e in events(second, md, "task_start"))
    assert chunk_starts["steps000000000-000000010"] == 1  # the MD resumed after its first chunk
    return root, first, second


def finished(workdir: Path) -> dict[str, str]:
    """{step name: key} of the finished steps."""
    return Archive(workdir / "archive").index()["names"]


@pytest.mark.slow
def test_killed_and_uninterrupted_runs_give_byte_identical_outputs_and_blobs(campaigns):
    _, first, second = campaigns
    names = finished(first)
    assert finished(second) == names and len(names) == 11  # the same steps under the same keys
    one, two = Archive(first / "archive"), Archive(second / "archive")
    for name, key in names.items():
        records = one.record(key), two.record(key)
        assert records[0]["outputs"] == records[1]["outputs"], name  # the checksums
        assert records[0]["blobs"] == records[1]["blobs"], name
        for output in records[0]["outputs"]:
            assert sha256_file(one.output(key, output)) == sha256_file(two.output(key, output)), (name, output)
        for digest in records[0]["blobs"].values():
            assert sha256_file(one.blob_path(digest)) == sha256_file(two.blob_path(digest)) == digest
    models = {one.record(names[name])["blobs"]["model"] for name in ("train.initial", "iter01.train")}
    assert len(models) == 2
    assert sorted(p.name for p in (first / "archive" / "blobs").rglob("*") if p.is_file()) == sorted(models)
    assert one.verify() == two.verify() == []


@pytest.mark.slow
def test_no_archive_file_holds_a_work_directory_path(campaigns):
    """Every file under either archive (records, journals, task summaries, outputs, cache, blobs
    and the files inside the blobs' tars) is free of both work directories' paths."""
    _, first, second = campaigns
    paths = {str(p).encode() for p in (first, second, first.resolve(), second.resolve())}
    checked = 0
    for workdir in (first, second):
        for path in (workdir / "archive").rglob("*"):
            if not path.is_file():
                continue
            contents = {path.name: path.read_bytes()}
            if "blobs" in path.parts:
                with tarfile.open(path) as tar:
                    contents.update({m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()})
            for name, data in contents.items():
                assert not [p for p in paths if p in data], f"{path} ({name}) holds a work directory's path"
                checked += 1
    assert checked > 100


@pytest.mark.slow
def test_verify_against_reports_identical(campaigns):
    _, first, second = campaigns
    result = run_cli("verify", first, "--against", second)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("identical ")]
    assert len(lines) == 11, result.stdout
    assert "identical: all 11 step(s), every output and blob byte for byte" in result.stdout


def copy_with(workdir: Path, target: Path, changes: dict[tuple[str, str], Callable[[Path], None]]) -> Path:
    """A copy of ``workdir``'s archive in ``target`` where ``change(path)`` rewrote the output
    ``(step name, file name)`` of each entry; the steps are committed again (new checksums), so
    the copy is intact on its own."""
    shutil.copytree(workdir / "archive", target / "archive")
    archive = Archive(target / "archive")
    for (step, filename), change in changes.items():
        key = archive.key_for_name(step)
        change(archive.output(key, filename))
        record = archive.record(key)
        archive.commit(key, step, record, list(record["outputs"]))
    assert run_cli("verify", target).returncode == 0
    return target


@pytest.mark.slow
def test_verify_against_names_a_changed_number(campaigns, tmp_path):
    import h5py

    _, first, second = campaigns

    def perturb(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            f["val_loss"][1] = np.nextafter(f["val_loss"][1], np.inf)  # one number, by one ulp

    copy = copy_with(second, tmp_path / "perturbed", {("train.initial", "curves.nc"): perturb})
    result = run_cli("verify", first, "--against", copy)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    differs = [i for i, line in enumerate(lines) if line.startswith("differs ")]
    assert len(differs) == 1 and "train.initial" in lines[differs[0]], result.stdout
    assert lines[differs[0] + 1].strip() == "curves.nc: numeric (val_loss)", result.stdout
    assert sum(line.startswith("identical ") for line in lines) == 10
    assert "1 of 11 step(s) differ" in result.stdout


@pytest.mark.slow
def test_verify_against_says_metadata_only(campaigns, tmp_path):
    """The MD's series.nc written again by xarray's own writer (other HDF5 internals: object
    times), the training's metrics.nc given one more attribute: same arrays, other bytes."""
    import h5py

    from ilcampaign.archive.arrays import read_dataset

    _, first, second = campaigns

    def rewrite(path: Path) -> None:
        read_dataset(path).to_netcdf(path, engine="h5netcdf")

    def annotate(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            f.attrs["comment"] = "annotated by hand"

    copy = copy_with(second, tmp_path / "metadata", {("iter01.md", "series.nc"): rewrite,
                                                     ("train.initial", "metrics.nc"): annotate})
    result = run_cli("verify", first, "--against", copy)
    assert result.returncode == 1
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert sum(line.startswith("differs ") for line in lines) == 2, result.stdout
    assert "series.nc: metadata only (same arrays and attributes, other HDF5 internals)" in lines, result.stdout
    assert "metrics.nc: metadata only (attributes of /)" in lines, result.stdout
    assert "numeric" not in result.stdout


def test_compare_looks_inside_model_blobs(tmp_path):
    """Without science: a blob whose parameter file differs in one value is named down to the
    dataset, one whose tar differs in its headers only is metadata only, and a step that only
    one archive finished is listed as such."""
    from ilcampaign.archive.compare import METADATA, NUMERIC, Difference, compare_archives
    from ilcampaign.archive.hdf5 import create

    def blob(archive: Archive, weights: list[float], mtime: int = 0) -> str:
        folder = tmp_path / f"blob{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        with create(folder / "params.h5") as f:
            f["params/dense_0/kernel"] = np.asarray(weights, dtype=np.float32)
        with tarfile.open(folder / "model.tar", "w") as tar:
            info = tar.gettarinfo(folder / "params.h5", "model/params.h5")
            info.mtime = mtime
            with open(folder / "params.h5", "rb") as handle:
                tar.addfile(info, handle)
        return archive.put_blob(folder / "model.tar")

    ours, theirs = Archive(tmp_path / "ours"), Archive(tmp_path / "theirs")
    steps = {"changed": ([1.0, 2.0], [1.0, 2.5], 0), "retouched": ([1.0], [1.0], 60), "same": ([3.0], [3.0], 0)}
    for number, (name, (mine, other, mtime)) in enumerate(steps.items()):
        key = str(number) * 64
        for archive, weights, stamp in ((ours, mine, 0), (theirs, other, mtime)):
            record = {"kind": "train", "finished": str(number), "blobs": {"model": blob(archive, weights, stamp)}}
            archive.commit(key, name, record, [])
    ours.commit("9" * 64, "only", {"kind": "pack", "finished": "9"}, [])
    found = {step.name: step for step in compare_archives(ours, theirs)}
    assert found["changed"].differences == [Difference("blob model: model/params.h5", NUMERIC,
                                                       ["params/dense_0/kernel"])]
    assert found["retouched"].differences == [Difference("blob model", METADATA, ["tar headers"])]
    assert (found["same"].state, found["only"].state) == ("identical", "only in this archive")
