"""One-file exports: exact round trips through the read API, checksums of values and of attributes that
name any damaged object, split trajectories, the CLI, and bounded memory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from ilcampaign.archive.arrays import write_dataset
from ilcampaign.archive.atomic import sha256_file
from ilcampaign.archive.export import export, verify_export
from ilcampaign.archive.frames import concatenate, read_frames, write_frames
from ilcampaign.archive.reader import open_campaign
from ilcampaign.archive.store import Archive, ArchiveError
from tests.conftest import ROOT, run_cli

RNG = np.random.default_rng(7)
DEMO = ROOT / "campaigns" / "demo"
SOFTWARE = {"ase": "3.29.0", "h5py": "3.14.0", "python": "3.11.7"}


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def frame(atoms: Atoms, **info) -> Atoms:
    """``atoms`` rattled with velocities, labels, molecule ids and ``info``."""
    atoms = atoms.copy()
    n = len(atoms)
    atoms.positions += RNG.normal(scale=0.1, size=(n, 3))
    atoms.set_velocities(RNG.normal(scale=0.01, size=(n, 3)))
    atoms.arrays["mol_id"] = np.arange(n, dtype=np.int64) // 2
    atoms.calc = SinglePointCalculator(atoms, energy=RNG.normal(), forces=RNG.normal(size=(n, 3)),
                                       stress=RNG.normal(size=6), charges=RNG.normal(size=n))
    atoms.info.update(info)
    return atoms


def configurations() -> list[Atoms]:
    """Frames of 8, 2 and 16 atoms (NaN-padded in H5MD), one triclinic and partly periodic."""
    small = bulk("NaCl", "rocksalt", a=5.64)
    small.pbc = [True, False, True]
    return [frame(bulk("NaCl", "rocksalt", a=5.64, cubic=True), source="md", step=120, accepted=True),
            frame(small, source="rattle", step=3, accepted=False, weight=0.5),
            frame(bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (2, 1, 1), source="md", step=140)]


def commit(archive: Archive, name: str, kind: str, outputs: dict, *, finished: str, blobs: dict | None = None) -> str:
    """Write ``outputs`` ({file: frames list, xarray.Dataset or (frames, parts)}) and commit the step."""
    step = key(name + finished)
    folder = archive.step_dir(step)
    for filename, content in outputs.items():
        if isinstance(content, xr.Dataset):
            write_dataset(folder / filename, content)
        elif isinstance(content, tuple):  # a trajectory joined from parts, chunked along frames
            parts = [folder / f"part{i}.h5" for i in range(len(content))]
            for part, frames in zip(parts, content, strict=True):
                write_frames(part, frames, velocities=True)
            concatenate(folder / filename, parts, frames_per_chunk=2)
            for part in parts:
                part.unlink()
        else:
            write_frames(folder / filename, content, velocities=True)
    record = {"kind": kind, "params": {}, "inputs": {}, "started": finished, "finished": finished, "software": SOFTWARE,
              "blobs": blobs or {}}  # the fields every step's record has
    archive.commit(step, name, record, list(outputs))
    return step


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> tuple[Path, dict]:
    """A work directory whose archive has frames, a trajectory, netCDF results, a blob, a manifest
    and a step from an older spec; and the originals, by step name and file."""
    workdir = tmp_path_factory.mktemp("campaign")
    archive = Archive(workdir / "archive")
    md = [frame(bulk("NaCl", "rocksalt", a=5.64, cubic=True), temperature=300.0 + i) for i in range(5)]
    for atoms in md:  # MD keeps energies only (MDAnalysis refuses eV-based force units)
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy())
    curves = xr.Dataset(
        {"rmse": (("epoch", "model"), RNG.random((4, 2)), {"units": "eV/atom", "comment": "validation"}),
         "n_frames": ("epoch", np.array([10, 20, 40, 80]), {"units": "1"}),
         "loss": ("epoch", [0.3, np.nan, 0.1, 0.05], {"units": "1"})},
        coords={"epoch": ("epoch", [1, 2, 3, 4], {"units": "1"}), "model": ("model", ["initial", "iter01"])},
        attrs={"campaign": "tiny"})
    series = xr.Dataset({"temperature": ("step", 300 + RNG.random(5), {"units": "K"})},
                        coords={"step": ("step", np.arange(5), {"units": "1"}),
                                "time": ("step", np.arange(5) * 0.5, {"units": "fs"})})
    model = workdir / "model.tar"
    model.write_bytes(RNG.bytes(3 * 2**19))  # 1.5 MiB: more than one chunk
    outputs = {
        "initial_data": ("initial_rattle", {"frames.h5": configurations()}),
        "iter01.train": ("train", {"curves.nc": curves}),
        "production.nvt": ("md", {"trajectory.h5": (md[:3], md[3:]), "ends.h5": md[-1:], "series.nc": series}),
    }
    blob = archive.put_blob(model)
    archive.commit(key("old"), "iter01.train", {"kind": "train", "finished": "2026-01-01T00:00:00+00:00"}, [])
    keys = {name: commit(archive, name, kind, files, finished=f"2026-01-02T00:00:0{i}+00:00",
                         blobs={"model": blob} if kind == "train" else None)
            for i, (name, (kind, files)) in enumerate(outputs.items())}
    archive.write_manifest({"format": 1, "name": "tiny", "description": "", "authors": [], "citation": None, "seed": 0,
                            "key": "0" * 64, "spec_file": "spec.yaml", "spec_text": "campaign:\n  name: tiny\n",
                            "spec_sha256": "0" * 64,
                            "steps": [{"name": name, "key": keys[name], "kind": kind, "inputs": {}, "notes": ""}
                                      for name, (kind, _) in outputs.items()]})
    originals = {  # frames as stored (velocities are stored in Angstrom/fs, which costs a rounding)
        name: {filename: content if isinstance(content, xr.Dataset) else read_frames(archive.output(keys[name], filename))
               for filename, content in files.items()}
        for name, (_, files) in outputs.items()}
    return workdir, {"outputs": originals, "keys": keys, "blob": (blob, model.read_bytes())}


def assert_same_frames(got: list[Atoms], want: list[Atoms]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.numbers, w.numbers)
        for read in (Atoms.get_positions, Atoms.get_velocities, Atoms.get_pbc):
            assert np.array_equal(read(g), read(w))
        assert np.array_equal(g.cell.array, w.cell.array)
        assert np.array_equal(g.arrays["mol_id"], w.arrays["mol_id"])
        assert set(g.calc.results) == set(w.calc.results)
        for name, value in w.calc.results.items():
            assert np.array_equal(g.calc.results[name], value), name
        assert g.info == w.info
        assert {k: type(v) for k, v in g.info.items()} == {k: type(v) for k, v in w.info.items()}


@pytest.fixture(params=["workdir", "archive folder", "export", "split export"])
def opened(request, campaign, tmp_path):
    workdir, _ = campaign
    if request.param == "workdir":
        return open_campaign(workdir)
    if request.param == "archive folder":
        return open_campaign(workdir / "archive")
    path = export(workdir / "archive", tmp_path / "tiny.h5", split_trajectories=request.param == "split export")
    assert verify_export(path) == []
    return open_campaign(path, cache_dir=tmp_path / "cache")


def test_every_configuration_frame_and_dataset_reads_back_exactly(opened, campaign):
    _, want = campaign
    assert opened.names == ["initial_data", "iter01.train", "production.nvt"]  # graph order; the old step left out
    assert opened.spec == "campaign:\n  name: tiny\n"
    assert [step["name"] for step in opened.manifest["steps"]] == opened.names
    for name, files in want["outputs"].items():
        step = opened.step(name)
        assert (step.key, step.name, step.record["key"]) == (want["keys"][name], name, want["keys"][name])
        assert step.outputs == sorted(files)
        for filename, original in files.items():
            if filename.endswith(".nc"):
                xr.testing.assert_identical(step.dataset(filename), original)
            else:
                assert_same_frames(step.frames(filename), original)
    assert opened.step("iter01.train").kind == "train"
    assert opened.step(key("old")).record["finished"].startswith("2026-01-01")
    digest, content = want["blob"]
    assert opened.blob(digest) == content


def test_mdanalysis_opens_the_trajectory_path(opened, campaign):
    mda = pytest.importorskip("MDAnalysis")
    _, want = campaign
    frames = want["outputs"]["production.nvt"]["trajectory.h5"]
    path = opened.step("production.nvt").trajectory_path()
    assert path == opened.step("production.nvt").trajectory_path()  # extracted once, then reused
    universe = mda.Universe.empty(len(frames[0]), trajectory=True)
    universe.load_new(str(path), format="H5MD")
    assert universe.trajectory.n_frames == len(frames)
    for ts in universe.trajectory:
        assert np.array_equal(ts.positions, frames[ts.frame].positions.astype(np.float32))  # MDAnalysis: float32
    universe.trajectory.close()


def test_the_export_holds_the_campaign_in_its_layout(campaign, tmp_path):
    workdir, want = campaign
    archive = Archive(workdir / "archive")
    report = tmp_path / "report.html"
    report.write_text("<html>report</html>")
    path = export(archive.root, tmp_path / "tiny.h5", report_files={"report.html": report})
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "ilcampaign-export 2"
        assert json.loads(f["campaign/index.json"][()]) == archive.index()
        assert json.loads(f["campaign/manifest.json"][()]) == archive.manifest()
        assert json.loads(f["campaign/software.json"][()]) == {k: [v] for k, v in SOFTWARE.items()}
        crate = json.loads(f["campaign/ro-crate-metadata.json"][()])  # provenance travels with the data
        actions = [e for e in crate["@graph"] if e.get("@type") == "CreateAction" and e["@id"] != "#campaign-run"]
        assert len(actions) == len(archive.manifest()["steps"])
        assert set(f["steps"]) == set(archive.index()["steps"])  # the old step too
        for step_key, entry in archive.index()["steps"].items():
            group = f[f"steps/{step_key}"]
            assert (group.attrs["name"], group.attrs["kind"]) == (entry["name"], entry["kind"])
            assert group["record.json"].attrs["sha256"] == entry["record_sha256"]  # the record's very bytes
        assert f[f"blobs/{want['blob'][0]}"].attrs["sha256"] == want["blob"][0]
        assert f["report/report.html"][()].tobytes() == report.read_bytes()
        assert xr.load_dataset(path, group=f"steps/{want['keys']['iter01.train']}/curves.nc",
                               engine="h5netcdf").equals(want["outputs"]["iter01.train"]["curves.nc"])
    with pytest.raises(ValueError, match="no campaign export"):
        open_campaign(archive.output(want["keys"]["initial_data"], "frames.h5"))


def flip(dataset: h5py.Dataset) -> object:
    """Flip one bit of a dataset's first value, in place; returns the value it had."""
    where = (0,) * dataset.ndim
    original = dataset[where]
    if dataset.dtype.kind == "O":  # variable-length strings
        text = original if isinstance(original, bytes) else original.encode()
        dataset[where] = bytes([text[0] ^ 1]) + text[1:] if text else b"x"
    else:
        value = np.array(original, dtype=dataset.dtype)
        value.reshape(1).view(np.uint8)[0] ^= 1
        dataset[where] = value
    return original


def test_a_flipped_byte_in_any_dataset_is_named(campaign, tmp_path):
    workdir, _ = campaign
    path = export(workdir / "archive", tmp_path / "tiny.h5", report_files={"notes.txt": workdir / "model.tar"})
    names = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) and obj.size else None)
        steps = {k: group.attrs["name"] for k, group in f["steps"].items()}
    for kind in ("blobs/", "report/", "campaign/index.json", "/record.json", "/curves.nc/model",  # a string coordinate
                 "/frames.h5/observables/atoms/source/value",  # variable-length strings
                 "/trajectory.h5/particles/atoms/position/value"):
        assert any(kind in name for name in names), kind
    for name in names:
        with h5py.File(path, "r+") as f:
            original = flip(f[name])
        parts = name.split("/")
        label = f"{steps[parts[1]]} ({parts[1][:12]}): " if parts[0] == "steps" else ""
        assert verify_export(path) == [f"{label}/{name}: checksum mismatch"], name
        with h5py.File(path, "r+") as f:
            f[name][(0,) * f[name].ndim] = original
    assert verify_export(path) == []


def test_a_changed_attribute_is_named(campaign, tmp_path):
    workdir, want = campaign
    path = export(workdir / "archive", tmp_path / "tiny.h5")
    assert verify_export(path) == []
    train, md = want["keys"]["iter01.train"], want["keys"]["production.nvt"]
    changes = [  # (object, attribute, new value, the step's name as verify gives it)
        (f"steps/{train}/curves.nc/rmse", "units", "meV/atom", "iter01.train"),  # a netCDF variable's units
        (f"steps/{train}/curves.nc", "campaign", "other", "iter01.train"),  # a netCDF group's attribute
        (f"steps/{md}", "name", "production.npt", "production.nvt"),  # the step group's name: read from its record
        (f"steps/{md}/trajectory.h5/particles/atoms/position", "unit", "nm", "production.nvt"),  # an H5MD unit
        (f"steps/{md}/trajectory.h5/particles/atoms/position/value", "unit", "nm", "production.nvt"),
        (f"steps/{train}/curves.nc/rmse", "DIMENSION_LIST", None, "iter01.train"),  # a reference, pointed elsewhere
        ("campaign", "extra", "added", None),  # an attribute added
    ]
    for name, attribute, value, step in changes:
        with h5py.File(path, "r+") as f:
            attrs = f[name].attrs
            original = attrs.get(attribute)
            if attribute == "DIMENSION_LIST":  # rmse's dimensions (epoch, model) swapped
                attrs.modify(attribute, original[::-1].copy())
            else:
                attrs[attribute] = value
        label = f"{step} ({name.split('/')[1][:12]}): " if step else ""
        assert verify_export(path) == [f"{label}/{name}: attributes changed"], name
        with h5py.File(path, "r+") as f:
            if original is None:
                del f[name].attrs[attribute]
            else:
                f[name].attrs.modify(attribute, original)
        assert verify_export(path) == [], name
    with h5py.File(path, "r+") as f:
        f.attrs["format"] = "ilcampaign-export 1"  # an export written before attributes were checksummed
    with pytest.raises(ValueError, match="older format 'ilcampaign-export 1'.*export the campaign again"):
        verify_export(path)
    assert open_campaign(path, cache_dir=tmp_path / "cache").names == ["initial_data", "iter01.train", "production.nvt"]


def test_split_trajectories_go_to_their_own_files(campaign, tmp_path):
    workdir, want = campaign
    step = want["keys"]["production.nvt"]
    path = export(workdir / "archive", tmp_path / "tiny.h5", split_trajectories=True)
    split = tmp_path / f"tiny.{step[:12]}.trajectory.h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tiny.h5", split.name])
    assert sha256_file(split) == Archive(workdir / "archive").record(step)["outputs"]["trajectory.h5"]  # a plain copy
    with h5py.File(path, "r") as f:
        link = f[f"steps/{step}"].get("trajectory.h5", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and (link.filename, link.path) == (split.name, "/")
        assert f[f"steps/{step}/trajectory.h5/particles/atoms/position/value"].shape[0] == 5
    assert verify_export(path) == []

    where = f"production.nvt ({step[:12]}): /steps/{step}/trajectory.h5: split file {split.name}"
    with h5py.File(split, "r+") as f:
        flip(f["particles/atoms/position/value"])
    assert verify_export(path) == [f"{where} checksum mismatch"]
    split.unlink()
    assert verify_export(path) == [f"{where} missing"]


def test_a_damaged_archive_is_not_exported(campaign, tmp_path):
    workdir, want = campaign
    shutil.copytree(workdir / "archive", tmp_path / "archive")
    with h5py.File(Archive(tmp_path / "archive").output(want["keys"]["initial_data"], "frames.h5"), "r+") as f:
        flip(f["particles/atoms/position/value"])
    with pytest.raises(ArchiveError, match=r"initial_data .*frames.h5 checksum mismatch"):
        export(tmp_path / "archive", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_cli_export_and_verify(campaign, tmp_path):
    workdir = tmp_path / "wd"
    shutil.copytree(campaign[0] / "archive", workdir / "archive")
    (workdir / "report.html").write_text("<html>report</html>")
    for name, stamp in (("old", 1), ("new", 2)):
        figure = workdir / "report_cache" / name / "fig1_parity" / "figure.pdf"
        figure.parent.mkdir(parents=True)
        figure.write_text(f"%PDF {name}")
        os.utime(figure, (1_700_000_000 + stamp,) * 2)
    out = tmp_path / "tiny.h5"

    result = run_cli("export", workdir, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "exported 4 step(s)" in result.stdout
    with h5py.File(out, "r") as f:
        assert f["report/report.html"][()].tobytes() == b"<html>report</html>"
        assert f["report/figures/fig1_parity.pdf"][()].tobytes() == b"%PDF new"
    result = run_cli("verify", out)
    assert result.returncode == 0 and result.stdout.startswith("ok:"), result.stderr

    name = f"steps/{campaign[1]['keys']['iter01.train']}/curves.nc/rmse"
    with h5py.File(out, "r+") as f:
        flip(f[name])
    result = run_cli("verify", out)
    assert result.returncode == 1 and "iter01.train" in result.stderr and f"/{name}: checksum mismatch" in result.stderr
    with h5py.File(out, "r+") as f:
        flip(f[name])
        f[name].attrs["units"] = "meV/atom"
    result = run_cli("verify", out)
    assert result.returncode == 1 and f"/{name}: attributes changed" in result.stderr

    assert run_cli("export", tmp_path / "nowhere", "--out", tmp_path / "x.h5").returncode == 2
    assert run_cli("verify", workdir / "archive" / "steps" / campaign[1]["keys"]["initial_data"] / "frames.h5").returncode == 2


def test_import_archive_stays_light():
    code = "import archive, sys; assert callable(archive.open); print(sorted({'h5py', 'numpy', 'xarray'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def big_trajectory(path: Path, mib: int) -> None:
    """An H5MD-like file whose positions take ``mib`` MiB, written in chunks of frames."""
    n_atoms, per_frame = 1000, 1000 * 3 * 8
    n_frames = mib * 2**20 // per_frame
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        value = f.create_dataset("particles/atoms/position/value", shape=(n_frames, n_atoms, 3), dtype=np.float64,
                                 chunks=(32, n_atoms, 3))
        for start in range(0, n_frames, 32):
            value[start:start + 32] = RNG.random((min(32, n_frames - start), n_atoms, 3))


def test_memory_does_not_grow_with_trajectory_size(tmp_path):
    archive = Archive(tmp_path / "archive")
    step = key("big")
    big_trajectory(archive.output(step, "trajectory.h5"), 96)
    archive.commit(step, "production", {"kind": "md", "finished": "2026-01-01T00:00:00+00:00"}, ["trajectory.h5"])
    tracemalloc.start()
    try:
        path = export(archive.root, tmp_path / "big.h5")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 * 2**20, f"{peak / 2**20:.0f} MiB of Python allocations for a 96 MiB trajectory"
    assert verify_export(path) == []


@pytest.mark.skipif(not (DEMO / "archive" / "index.json").exists(), reason="no demo campaign (make demo)")
def test_the_demo_campaign_exports_and_verifies(tmp_path):
    import h5netcdf  # noqa: F401  imported before measuring: modules are not what we measure
    import xarray.backends  # noqa: F401

    report = DEMO / "report.html"
    tracemalloc.start()
    try:
        path = export(DEMO / "archive", tmp_path / "demo.h5",
                      report_files={"report.html": report} if report.exists() else {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20
    assert verify_export(path) == []
    exported, folder = open_campaign(path), open_campaign(DEMO)
    assert exported.names == folder.names
    for name in exported.names:
        step = exported.step(name)
        for filename in step.outputs:
            if filename.endswith(".nc"):
                xr.testing.assert_identical(step.dataset(filename), folder.step(name).dataset(filename))
