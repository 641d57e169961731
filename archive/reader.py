"""One small read API over a campaign in a work directory, an archive folder or a one-file export
(ilcampaign.archive.export), so analyses read published campaigns as they read local ones.

What is read is data, never code: JSON, HDF5 and netCDF, no pickle. A step key, checksum or file
name taken from an archive or export becomes part of a path only once checked
(ilcampaign.archive.store.checked_digest and checked_name), and a blob is handed out only if its
bytes match its digest, so a crafted export can neither write outside the cache folder nor pass
off other bytes as a blob."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from ilcampaign.archive.atomic import atomic_path
from ilcampaign.archive.store import Archive, ArchiveError, checked_digest, checked_name

if TYPE_CHECKING:
    import ase
    import xarray as xr


def open_campaign(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> Campaign:
    """The campaign at ``path``: a work directory, an archive folder or an export file. ``cache_dir``:
    where trajectories of an (unsplit) export are extracted for MDAnalysis [default: the folder
    ``<export stem>.cache`` next to the export]."""
    path = Path(path)
    if (path / "archive" / "index.json").exists():
        return Campaign(_Folder(path / "archive"))
    if (path / "index.json").exists():
        return Campaign(_Folder(path))
    if path.is_file() and h5py.is_hdf5(path):
        return Campaign(_Export(path, Path(cache_dir) if cache_dir else path.with_name(f"{path.stem}.cache")))
    raise FileNotFoundError(f"no campaign at {path} (a work directory, archive folder or export file)")


class Campaign:
    """A campaign's spec, manifest and finished steps."""

    def __init__(self, source: _Folder | _Export):
        self._source = source
        self.manifest: dict[str, Any] | None = source.manifest()
        self._index: dict[str, Any] = source.index()

    @property
    def spec(self) -> str | None:
        """The spec as written (None for an archive whose run stored no manifest)."""
        return self.manifest["spec_text"] if self.manifest else None

    @property
    def names(self) -> list[str]:
        """Finished step names: in graph order where there is a manifest, else in order finished."""
        steps = self._index["steps"]
        if self.manifest:
            return [step["name"] for step in self.manifest["steps"] if step["key"] in steps]
        return sorted(self._index["names"], key=lambda name: steps[self._index["names"][name]]["finished"])

    def step(self, name: str) -> Step:
        """A finished step by name (the manifest's key for it if finished, else the key last finished
        under that name) or by key."""
        keys = {step["name"]: step["key"] for step in (self.manifest or {}).get("steps", [])}
        key = next((k for k in (keys.get(name), self._index["names"].get(name), name) if k in self._index["steps"]),
                   None)
        if key is None:
            raise KeyError(f"no finished step {name!r}")
        record = self._source.record(key)
        return Step(key, record["name"], record["kind"], record, self._source)

    def blob(self, digest: str) -> bytes:
        """A blob's bytes (e.g. a trained model's tar); ArchiveError unless they match ``digest``."""
        data = self._source.blob(checked_digest(digest, "blob digest"))
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArchiveError(f"the blob {digest[:12]} is damaged: its bytes do not match its SHA-256")
        return data


@dataclass
class Step:
    """One finished step: its record and its outputs."""

    key: str
    name: str
    kind: str
    record: dict[str, Any]
    _source: _Folder | _Export

    @property
    def outputs(self) -> list[str]:
        return list(self.record["outputs"])

    def frames(self, filename: str = "frames.h5") -> list[ase.Atoms]:
        """The frames of an H5MD output (labels on a SinglePointCalculator, info restored)."""
        return self._source.frames(self.key, filename)

    def dataset(self, filename: str) -> xr.Dataset:
        """A netCDF output, loaded."""
        return self._source.dataset(self.key, filename)

    def trajectory_path(self, filename: str = "trajectory.h5") -> Path:
        """A standalone H5MD file of an output, for MDAnalysis or znh5md."""
        return self._source.trajectory_path(self.key, filename)


class _Folder:
    """Reading an archive folder."""

    def __init__(self, root: Path):
        self.archive = Archive(root)

    def index(self) -> dict[str, Any]:
        return self.archive.index()

    def manifest(self) -> dict[str, Any] | None:
        return self.archive.manifest()

    def record(self, key: str) -> dict[str, Any]:
        return self.archive.record(key)

    def frames(self, key: str, filename: str) -> list[ase.Atoms]:
        from ilcampaign.archive.frames import read_frames

        return read_frames(self.archive.output(key, filename))

    def dataset(self, key: str, filename: str) -> xr.Dataset:
        from ilcampaign.archive.arrays import read_dataset

        return read_dataset(self.archive.output(key, filename))

    def trajectory_path(self, key: str, filename: str) -> Path:
        return self.archive.output(key, filename)

    def blob(self, digest: str) -> bytes:
        return self.archive.blob_path(digest).read_bytes()


class _Export:
    """Reading an export file (opened per call, so it is never held open)."""

    def __init__(self, path: Path, cache_dir: Path):
        from ilcampaign.archive.export import FORMAT, OLD_FORMATS

        self.path, self.cache_dir = path, cache_dir
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") not in (FORMAT, *OLD_FORMATS):
                raise ValueError(f"{path} is an HDF5 file but no campaign export")

    def index(self) -> dict[str, Any]:
        return self._json("campaign/index.json")

    def manifest(self) -> dict[str, Any] | None:
        return self._json("campaign/manifest.json")

    def record(self, key: str) -> dict[str, Any]:
        return self._json(f"steps/{checked_digest(key, 'step key')}/record.json")

    def _json(self, name: str) -> Any:
        """A JSON text dataset, parsed; None if absent."""
        with h5py.File(self.path, "r") as f:
            return json.loads(f[name][()]) if name in f else None

    def frames(self, key: str, filename: str) -> list[ase.Atoms]:
        from ilcampaign.archive.frames import read_frames

        with h5py.File(self.path, "r") as f:
            return read_frames(f[_output(f, key, filename)])

    def dataset(self, key: str, filename: str) -> xr.Dataset:
        """The netCDF group, less the export's checksum attrs."""
        import xarray as xr

        from ilcampaign.archive.export import CHECKSUMS

        with h5py.File(self.path, "r") as f:
            group = _output(f, key, filename)
        ds = xr.load_dataset(self.path, group=group, engine="h5netcdf")
        for attrs in (ds.attrs, *(variable.attrs for variable in ds.variables.values())):
            for name in CHECKSUMS:
                attrs.pop(name, None)
        return ds

    def trajectory_path(self, key: str, filename: str) -> Path:
        """The split file if the export has one, else the H5MD group extracted once to the cache folder
        (as ``<output sha256[:16]>.<filename>``, named by the original file's checksum). ArchiveError
        for a checksum, file name or link that the export's record or links would turn into a path
        outside the export's folder or the cache."""
        sha256 = checked_digest(self.record(key)["outputs"][checked_name(filename)], f"checksum of {filename}")
        with h5py.File(self.path, "r") as f:
            where = _output(f, key, filename)
            link = f[f"steps/{key}"].get(filename, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                return self.path.with_name(link.filename)
            target = self.cache_dir / f"{sha256[:16]}.{filename}"
            if not target.exists():
                _extract(f[where], target)
        return target

    def blob(self, digest: str) -> bytes:
        with h5py.File(self.path, "r") as f:
            return f[f"blobs/{digest}"][()].tobytes()


def _output(f: h5py.File, key: str, filename: str) -> str:
    """The HDF5 path of a step's output in an export; ArchiveError for a key or name that is no plain
    digest or file name, or an external link to anything but a file name (a split file beside it)."""
    where = f"steps/{checked_digest(key, 'step key')}/{checked_name(filename)}"
    link = f[f"steps/{key}"].get(filename, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        checked_name(link.filename, "split file name")
    return where


def _extract(group: h5py.Group, target: Path) -> None:
    """An H5MD group as a file of its own, atomically: one copy keeps the hard links that H5MD
    elements share, then its members move up to the root."""
    from ilcampaign.archive.hdf5 import create

    with atomic_path(target) as tmp, create(tmp) as out:
        group.file.copy(group, out, name="copy")
        for name in group:
            out.move(f"copy/{name}", name)
        out.attrs.update(group.attrs)
        del out["copy"]
