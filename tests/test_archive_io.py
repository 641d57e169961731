"""H5MD frames and netCDF arrays: exact round trips, independent readers, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from ilcampaign.archive import frames as frames_module
from ilcampaign.archive.arrays import read_dataset, write_dataset
from ilcampaign.archive.atomic import sha256_file
from ilcampaign.archive.frames import count_frames, read_frames, write_frames
from tests.conftest import ROOT

RNG = np.random.default_rng(42)


def labelled(atoms: Atoms, **info) -> Atoms:
    """``atoms`` rattled, with random energy, forces, Voigt stress and charges, and ``info``."""
    atoms = atoms.copy()
    atoms.positions += RNG.normal(scale=0.1, size=atoms.positions.shape)
    n = len(atoms)
    atoms.calc = SinglePointCalculator(
        atoms, energy=RNG.normal(), forces=RNG.normal(size=(n, 3)), stress=RNG.normal(size=6), charges=RNG.normal(size=n)
    )
    atoms.info.update(info)
    return atoms


def mixed_sizes() -> list[Atoms]:
    """Periodic frames of 8, 2 and 16 atoms, the middle one triclinic and partly periodic."""
    small = bulk("NaCl", "rocksalt", a=5.64)
    small.pbc = [True, False, True]
    return [
        labelled(bulk("NaCl", "rocksalt", a=5.64, cubic=True), source="md", step=120),
        labelled(small, source="rattle", step=3),
        labelled(bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (2, 1, 1), source="md", step=140),
    ]


def assert_same_structure(got: Atoms, want: Atoms) -> None:
    assert np.array_equal(got.numbers, want.numbers)
    assert np.array_equal(got.positions, want.positions)
    assert np.array_equal(got.cell.array, want.cell.array)
    assert np.array_equal(got.pbc, want.pbc)


def test_labelled_periodic_frames_round_trip_exactly(tmp_path):
    info = {"source": "md", "step": 120, "electronic_temperature": 300.0, "failed": False}
    frames = [labelled(bulk("NaCl", "rocksalt", a=5.64, cubic=True), **info) for _ in range(3)]
    frames[1].info.update(step=7, failed=True, source="dft")
    path = tmp_path / "frames.h5"
    write_frames(path, frames)

    assert count_frames(path) == 3
    for got, want in zip(read_frames(path), frames, strict=True):
        assert_same_structure(got, want)
        assert set(got.calc.results) == {"energy", "forces", "stress", "charges"}
        for key, value in want.calc.results.items():
            assert np.array_equal(got.calc.results[key], value), key
        assert got.info == want.info
        assert {k: type(v) for k, v in got.info.items()} == {k: type(v) for k, v in want.info.items()}


def test_stress_as_3x3_is_stored_in_voigt_order(tmp_path):
    atoms = bulk("Cu")
    voigt = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, stress=np.array([[1, 6, 5], [6, 2, 4], [5, 4, 3]], dtype=float))
    write_frames(tmp_path / "s.h5", [atoms])
    assert np.array_equal(read_frames(tmp_path / "s.h5")[0].get_stress(), voigt)


def test_labels_kept_in_info_and_arrays_come_back_on_the_calculator(tmp_path):
    atoms = molecule("H2O")
    atoms.info["energy"] = -14.5
    atoms.arrays["forces"] = RNG.normal(size=(3, 3))
    write_frames(tmp_path / "f.h5", [atoms])
    (got,) = read_frames(tmp_path / "f.h5")
    assert got.get_potential_energy() == -14.5
    assert np.array_equal(got.get_forces(), atoms.arrays["forces"])
    assert "energy" not in got.info


def test_unlabelled_frames_read_back_without_calculator(tmp_path):
    frames = [molecule("CH4"), labelled(molecule("H2O"), source="dft"), molecule("NH3")]
    frames[0].info["source"] = "packmol"
    path = tmp_path / "frames.h5"
    write_frames(path, frames)

    got = read_frames(path)
    assert got[0].calc is None and got[2].calc is None
    assert got[1].get_potential_energy() == frames[1].get_potential_energy()
    assert [a.info for a in got] == [{"source": "packmol"}, {"source": "dft"}, {}]
    for g, w in zip(got, frames, strict=True):
        assert_same_structure(g, w)


def test_variable_atom_counts_and_index_selection(tmp_path):
    frames = mixed_sizes()
    path = tmp_path / "frames.h5"
    write_frames(path, frames)

    assert count_frames(path) == 3
    assert [len(a) for a in read_frames(path)] == [8, 2, 16]
    picked = read_frames(path, [2, 0, -2, 2])
    assert [len(a) for a in picked] == [16, 8, 2, 16]
    assert picked[0] is not picked[3]
    for got, want in zip(picked, [frames[2], frames[0], frames[1], frames[2]], strict=True):
        assert_same_structure(got, want)
        assert np.array_equal(got.get_forces(), want.get_forces())
    assert read_frames(path, []) == []
    with pytest.raises(IndexError):
        read_frames(path, [3])


def test_info_of_unsupported_type_is_refused_before_writing(tmp_path):
    atoms = molecule("H2O")
    atoms.info["dipole"] = np.zeros(3)
    with pytest.raises(TypeError, match="dipole"):
        write_frames(tmp_path / "f.h5", [atoms])
    assert list(tmp_path.iterdir()) == []


def test_znh5md_reads_our_frames(tmp_path):
    znh5md = pytest.importorskip("znh5md")
    frames = mixed_sizes() + [molecule("CH4")]
    path = tmp_path / "frames.h5"
    write_frames(path, frames)

    got = znh5md.IO(path)[:]
    assert len(got) == len(frames)
    for g, w in zip(got, frames, strict=True):
        assert_same_structure(g, w)
        if w.calc is None:
            assert g.calc is None
            continue
        assert g.get_potential_energy() == w.get_potential_energy()
        assert np.array_equal(g.get_forces(), w.get_forces())
        assert np.array_equal(g.get_stress(), w.get_stress())
        assert np.array_equal(g.get_charges(), w.get_charges())
        assert g.info == w.info  # znh5md returns numbers as float: 120.0 == 120


def test_mdanalysis_reads_positions_with_units(tmp_path):
    h5md = pytest.importorskip("MDAnalysis.coordinates.H5MD")
    frames = [bulk("NaCl", "rocksalt", a=5.64, cubic=True) for _ in range(3)]
    for atoms in frames:
        atoms.rattle(0.1, seed=len(atoms) + int(RNG.integers(1000)))
    path = tmp_path / "frames.h5"
    write_frames(path, frames)

    reader = h5md.H5MDReader(path)  # converts to MDAnalysis units: Angstrom, ps
    assert reader.units == {"time": "fs", "length": "Angstrom", "velocity": None, "force": None}
    assert reader.n_frames == 3
    for ts in reader:
        want = frames[ts.frame]
        assert np.array_equal(ts.positions, want.positions.astype(np.float32))  # MDAnalysis keeps float32
        assert np.allclose(ts.dimensions, want.cell.cellpar())
        assert ts.time == pytest.approx((ts.frame + 1) * 1e-3)  # 1 fs per frame, in ps
    reader.close()


def test_mdanalysis_reads_forces_once_it_knows_the_unit_name(tmp_path):
    # MDAnalysis's H5MD reader knows no eV-based force unit and refuses to open a file whose
    # force unit it cannot translate, even with convert_units=False; teach it the name only.
    h5md = pytest.importorskip("MDAnalysis.coordinates.H5MD")
    base = h5md.H5MDReader._unit_translation

    class EVReader(h5md.H5MDReader):
        _unit_translation = {**base, "force": {**base["force"], "eV/Angstrom": "eV/Angstrom"}}

    frames = [labelled(bulk("NaCl", "rocksalt", a=5.64, cubic=True)) for _ in range(2)]
    path = tmp_path / "frames.h5"
    write_frames(path, frames)

    reader = EVReader(path, convert_units=False)
    assert reader.units["force"] == "eV/Angstrom" and reader.units["length"] == "Angstrom"
    for ts in reader:
        assert np.array_equal(ts.positions, frames[ts.frame].positions.astype(np.float32))
        assert np.array_equal(ts.forces, frames[ts.frame].get_forces().astype(np.float32))
    reader.close()


def test_write_dataset_requires_units(tmp_path):
    ds = xr.Dataset({"rmse": ("step", [0.1, 0.05], {"units": "eV"})}, coords={"step": [0, 1]})
    with pytest.raises(ValueError, match="'step'"):
        write_dataset(tmp_path / "a.nc", ds)
    ds = ds.assign_coords(step=("step", [0, 1], {"units": "1"})).assign(n=("step", [3, 4]))
    with pytest.raises(ValueError, match="'n'"):
        write_dataset(tmp_path / "a.nc", ds)
    assert list(tmp_path.iterdir()) == []


def test_dataset_round_trip_and_file_released(tmp_path):
    ds = xr.Dataset(
        {
            "energy_rmse": ("generation", [0.012, 0.008, 0.005], {"units": "eV/atom"}),
            "n_frames": ("generation", np.array([10, 20, 40]), {"units": "1"}),
            "label": ("generation", ["a", "b", "c"]),
        },
        coords={"generation": ("generation", [0, 1, 2], {"units": "1"})},
        attrs={"campaign": "tiny"},
    )
    path = tmp_path / "curve.nc"
    write_dataset(path, ds)
    got = read_dataset(path)
    xr.testing.assert_identical(got, ds)
    write_dataset(path, ds.isel(generation=[0]))  # replacing the file must not disturb ``got``
    xr.testing.assert_identical(got, ds)
    assert read_dataset(path).sizes["generation"] == 1


def test_failed_write_leaves_previous_frames_intact(tmp_path, monkeypatch):
    path = tmp_path / "frames.h5"
    old = mixed_sizes()
    write_frames(path, old)
    digest = sha256_file(path)

    def fail(*args, **kwargs):
        raise RuntimeError("writer died")

    monkeypatch.setattr(frames_module, "_write_observables", fail)  # particles already written
    with pytest.raises(RuntimeError, match="writer died"):
        write_frames(path, [molecule("CH4")])
    assert sha256_file(path) == digest
    assert [len(a) for a in read_frames(path)] == [8, 2, 16]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.h5"]


def test_failed_write_leaves_previous_dataset_intact(tmp_path, monkeypatch):
    path = tmp_path / "a.nc"
    ds = xr.Dataset({"x": ("i", [1.0, 2.0], {"units": "eV"})})
    write_dataset(path, ds)

    def partial(self, store, **kwargs):  # the new file exists, its variables are not written yet
        raise RuntimeError("writer died")

    monkeypatch.setattr(xr.Dataset, "dump_to_store", partial)
    with pytest.raises(RuntimeError, match="writer died"):
        write_dataset(path, ds * 2)
    xr.testing.assert_identical(read_dataset(path), ds)


def test_killed_writer_leaves_previous_frames_intact(tmp_path):
    path = tmp_path / "frames.h5"
    write_frames(path, mixed_sizes())
    digest = sha256_file(path)
    child = textwrap.dedent(
        f"""
        import os, signal
        from ase.build import molecule
        from ilcampaign.archive import frames

        def die(f, *args):
            f.flush()  # the partial file reaches the disk, then the writer is killed
            os.kill(os.getpid(), signal.SIGKILL)

        frames._write_observables = die
        frames.write_frames({str(path)!r}, [molecule("CH4")] * 5)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert result.returncode == -signal.SIGKILL

    leftovers = [p for p in tmp_path.iterdir() if p.name != "frames.h5"]
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".tmp") and leftovers[0].stat().st_size > 0
    assert sha256_file(path) == digest
    assert [len(a) for a in read_frames(path)] == [8, 2, 16]


def test_molecule_ids_round_trip(tmp_path):
    """Which molecule each atom belongs to survives the archive (rigid scans and analyses need it)."""
    water, methane = molecule("H2O"), molecule("CH4")
    box = water + methane
    box.arrays["mol_id"] = np.array([0] * 3 + [1] * 5)
    plain = water.copy()
    write_frames(tmp_path / "ids.h5", [box, plain])
    back, bare = read_frames(tmp_path / "ids.h5")
    np.testing.assert_array_equal(back.arrays["mol_id"], box.arrays["mol_id"])
    assert back.arrays["mol_id"].dtype.kind == "i"
    assert "mol_id" not in bare.arrays


def test_same_content_gives_the_same_bytes_and_no_timestamps(tmp_path):
    """H5MD and netCDF files written twice, in other folders and seconds apart, are byte-identical,
    and no HDF5 object in them carries a time (xarray's own writer stamps the root group)."""
    import time

    import h5py

    ds = xr.Dataset({"loss": ("epoch", [0.5, 0.25, np.nan], {"units": "1", "comment": "weighted"}),
                     "n": ("epoch", np.array([1, 2, 3]), {"units": "1"})},
                    coords={"epoch": ("epoch", [0, 1, 2], {"units": "1"})}, attrs={"campaign": "tiny"})
    frames = mixed_sizes()
    for folder in ("a", "deeper/b"):
        write_frames(tmp_path / folder / "frames.h5", frames)
        write_dataset(tmp_path / folder / "curves.nc", ds)
        time.sleep(1.1)  # HDF5 stamps whole seconds
    for name in ("frames.h5", "curves.nc"):
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "deeper/b" / name), name
        with h5py.File(tmp_path / "a" / name, "r") as f:
            names = ["/"]
            f.visit(names.append)
            for obj in map(f.get, names):
                info = h5py.h5o.get_info(obj.id)
                assert (info.atime, info.mtime, info.ctime, info.btime) == (0, 0, 0, 0), (name, obj.name)
    xr.testing.assert_identical(read_dataset(tmp_path / "a" / "curves.nc"), ds)
