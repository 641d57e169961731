"""A whole campaign archive as one HDF5 file (to publish or hand on), and its verification.

Layout of the export::

    /                         attr format
    /campaign/index.json      the archive's index.json, as text
    /campaign/manifest.json   the spec as written and its step graph (campaign.json; absent before a run)
    /campaign/software.json   {package: [versions]} over every record
    /campaign/ro-crate-metadata.json  the Workflow Run RO-Crate of the finished steps (ilcampaign.archive.provenance;
                              with the manifest only); its file ids are the archive paths, as here
    /campaign/split.json      {HDF5 path: {file, sha256}} of trajectories split off to their own files
    /steps/<key>              attrs name, kind: one group per finished step
    /steps/<key>/record.json  the step's record.json, as text
    /steps/<key>/<file>       an H5MD output as an H5MD group (or an external link to its split file),
                              a netCDF output as a netCDF group (xarray: group="steps/<key>/<file>"),
                              any other output as its bytes (uint8)
    /blobs/<sha256>           every blob a record names, as its bytes (uint8)
    /report/<name>            the report files given, as their bytes (uint8)

Every dataset carries an attr ``sha256`` over its values' bytes (read block by block; variable-length
strings length-prefixed), and every group and dataset (the root too) an attr ``attrs_sha256`` over its
other attributes (units, names, H5MD and netCDF attributes: each one's name, type, shape and value, in
name order; references by the path they point to), so ``verify_export`` finds damage anywhere, in values
or in attributes, and names it. Exports of format 1 had no ``attrs_sha256``: they are read, not verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ilcampaign.archive.atomic import atomic_path, sha256_file
from ilcampaign.archive.hdf5 import create
from ilcampaign.archive.store import Archive, ArchiveError

FORMAT = "ilcampaign-export 2"
OLD_FORMATS = ("ilcampaign-export 1",)  # read by archive.open, refused by verify_export (attributes not checksummed)
CHECKSUMS = ("sha256", "attrs_sha256")  # the attrs the export adds: left out of attrs_sha256 and of what is read
BLOCK = 1 << 22  # bytes read at a time when checksumming
CHUNK = 1 << 20  # chunk of opaque (uint8) datasets
SPLIT = "campaign/split.json"


def export(archive_root: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
           report_files: Mapping[str, str | os.PathLike[str]] | None = None,
           split_trajectories: bool = False) -> Path:
    """Write the finished steps, blobs, manifest and ``report_files`` (name -> path) of the archive at
    ``archive_root`` to one file at ``out_path``, atomically; ``split_trajectories``: each
    ``trajectory.h5`` goes to ``<stem>.<key[:12]>.trajectory.h5`` beside it instead, linked. A damaged
    archive is refused (ArchiveError)."""
    archive, out = Archive(archive_root), Path(out_path)
    if not archive.index_path.exists():
        raise ArchiveError(f"no archive at {archive.root} (index.json missing)")
    problems = archive.verify()
    if problems:
        raise ArchiveError("the archive is damaged: " + "; ".join(problems))
    records = {key: archive.record(key) for key in archive.index()["steps"]}
    with atomic_path(out) as tmp, create(tmp) as f:
        f.attrs["format"] = FORMAT
        campaign = f.create_group("campaign")
        for name, path in (("index.json", archive.index_path), ("manifest.json", archive.manifest_path)):
            if path.exists():
                _put_text(campaign, name, path.read_bytes())
        _put_text(campaign, "software.json", _json(_software(records.values())))
        if archive.manifest_path.exists():
            _put_text(campaign, "ro-crate-metadata.json", _crate(archive))
        split = _put_steps(f, archive, records, out if split_trajectories else None)
        if split:
            _put_text(campaign, "split.json", _json(split))
        for digest in sorted({d for record in records.values() for d in record.get("blobs", {}).values()}):
            _put_bytes(f.require_group("blobs"), digest, archive.blob_path(digest))
        for name, path in (report_files or {}).items():
            _put_bytes(f.require_group("report"), name, Path(path))
        _stamp(f)
    return out


def _put_steps(f: h5py.File, archive: Archive, records: dict[str, dict[str, Any]],
               split_beside: Path | None) -> dict[str, dict[str, str]]:
    """A group per step with its record and outputs; with ``split_beside`` (the export's path),
    trajectories go to files of their own: {HDF5 path: {file, sha256}} of those."""
    for key, record in records.items():
        group = f.create_group(f"steps/{key}")
        group.attrs.update(name=record["name"], kind=record["kind"])
        _put_text(group, "record.json", (archive.step_dir(key) / "record.json").read_bytes())
    split = {}
    outputs = [(key, filename) for key, record in records.items() for filename in record["outputs"]]
    for key, filename in sorted(outputs, key=lambda output: not output[1].endswith(".nc")):  # see _put_netcdf
        group, source = f[f"steps/{key}"], archive.output(key, filename)
        if split_beside is not None and filename == "trajectory.h5":
            target = split_beside.with_name(f"{split_beside.stem}.{key[:12]}.{filename}")
            group[filename] = h5py.ExternalLink(target.name, "/")
            split[f"steps/{key}/{filename}"] = {"file": target.name, "sha256": _copy_file(source, target)}
        else:
            _put_output(group, filename, source)
    return split


def verify_export(path: str | os.PathLike[str]) -> list[str]:
    """Recompute every checksum of an export (and of its split files); the problems found, each
    naming the object by its HDF5 path and step (empty: intact). ValueError if it is no export."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return [f"{path}: unreadable ({exc})"]
    with f:
        found = f.attrs.get("format")
        if found in OLD_FORMATS:
            raise ValueError(f"{path} is a campaign export of the older format {found!r}, whose checksums do not cover "
                             f"attributes: export the campaign again to verify it ({FORMAT!r})")
        if found != FORMAT:
            raise ValueError(f"{path} is not a campaign export (no format attribute {FORMAT!r})")
        problems = _check_datasets(f) + _check_attributes(f) + _check_complete(f)
        split = json.loads(f[SPLIT][()]) if SPLIT in f and _intact(f[SPLIT]) else {}
        for where, entry in split.items():
            file = path.with_name(entry["file"])
            if not file.exists():
                problems.append(f"{_label(f, where)}/{where}: split file {entry['file']} missing")
            elif sha256_file(file) != entry["sha256"]:
                problems.append(f"{_label(f, where)}/{where}: split file {entry['file']} checksum mismatch")
    return problems


def dataset_sha256(dataset: h5py.Dataset) -> str:
    """Hex SHA-256 of a dataset's values, read in blocks of about BLOCK bytes along its first axis."""
    digest = hashlib.sha256()
    if dataset.shape is None:  # a null dataspace holds no values
        return digest.hexdigest()
    if dataset.ndim == 0:
        _update(digest, dataset, dataset[()])
        return digest.hexdigest()
    row = max(1, dataset.dtype.itemsize * int(np.prod(dataset.shape[1:])))
    step = max(1, BLOCK // row)
    if dataset.chunks:
        step = max(dataset.chunks[0], step - step % dataset.chunks[0])
    for start in range(0, dataset.shape[0], step):
        _update(digest, dataset, dataset[start:start + step])
    return digest.hexdigest()


def _update(digest: Any, dataset: h5py.Dataset, values: Any) -> None:
    """Feed some values of ``dataset`` to ``digest``: their bytes, variable-length ones each
    prefixed with its length."""
    if dataset.dtype.kind != "O":
        digest.update(np.ascontiguousarray(values, dtype=dataset.dtype).view(np.uint8))
        return
    for value in np.asarray(values, dtype=object).ravel():
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, np.ndarray):
            value = value.tobytes()
        elif not isinstance(value, bytes):
            raise TypeError(f"cannot checksum {dataset.name}: values of type {type(value).__name__}")
        digest.update(_framed(value))


def attrs_sha256(obj: h5py.Group | h5py.Dataset) -> str:
    """Hex SHA-256 of an object's attributes but the CHECKSUMS: each one's name, type, shape and value, by name."""
    digest = hashlib.sha256()
    for name in sorted(set(obj.attrs) - set(CHECKSUMS)):
        attr = obj.attrs.get_id(name)
        digest.update(_framed(name.encode()) + _framed(f"{_type(attr.dtype)} {attr.shape}".encode())
                      + _encode(obj.file, obj.attrs[name]))
    return digest.hexdigest()


def _type(dtype: np.dtype) -> str:
    """A dtype as text, h5py's string, variable-length and reference types spelt out (not numpy's ``object``)."""
    if dtype.names:
        return "{" + ",".join(f"{name}:{_type(dtype.fields[name][0])}" for name in dtype.names) + "}"
    if (string := h5py.check_string_dtype(dtype)) is not None:
        return f"string({string.encoding},{string.length})"
    if (vlen := h5py.check_vlen_dtype(dtype)) is not None:
        return f"vlen({_type(np.dtype(vlen))})"
    if h5py.check_ref_dtype(dtype) is not None:
        return "reference"
    return dtype.str


def _encode(f: h5py.File, value: Any) -> bytes:
    """An attribute value as length-prefixed bytes: numbers as their bytes, text as UTF-8, a reference
    as the path it points to, records and arrays of such values element by element."""
    if isinstance(value, h5py.Reference):
        content = f[value].name.encode() if value else b""
    elif isinstance(value, str):
        content = value.encode()
    elif isinstance(value, bytes):
        content = value
    elif isinstance(value, h5py.Empty):
        content = b""
    elif isinstance(value, np.void) and value.dtype.names:
        content = b"".join(_encode(f, value[name]) for name in value.dtype.names)
    elif isinstance(value, np.ndarray) and value.dtype.hasobject:
        content = b"".join(_encode(f, item) for item in value.ravel())
    else:
        content = np.ascontiguousarray(value).tobytes()
    return _framed(content)


def _framed(content: bytes) -> bytes:
    """``content`` prefixed with its length (8 bytes, little-endian), so that concatenations are unambiguous."""
    return len(content).to_bytes(8, "little") + content


def _stamp(f: h5py.File) -> None:
    """Give every dataset its ``sha256`` attr, then every object its ``attrs_sha256`` (external links are
    not followed)."""
    def visit(_: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            obj.attrs["sha256"] = dataset_sha256(obj)
        if isinstance(obj, (h5py.Group, h5py.Dataset)):
            obj.attrs["attrs_sha256"] = attrs_sha256(obj)

    visit("", f)
    f.visititems(visit)


def _check_datasets(f: h5py.File) -> list[str]:
    """Every dataset whose values no longer match its ``sha256`` (or cannot be read)."""
    problems = []

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        expected = obj.attrs.get("sha256")
        try:
            found = dataset_sha256(obj)
        except (OSError, TypeError) as exc:
            problems.append(f"{_label(f, name)}/{name}: unreadable ({exc})")
            return
        if expected is None:
            problems.append(f"{_label(f, name)}/{name}: no checksum")
        elif found != expected:
            problems.append(f"{_label(f, name)}/{name}: checksum mismatch")

    f.visititems(visit)
    return problems


def _check_attributes(f: h5py.File) -> list[str]:
    """Every group and dataset whose attributes no longer match its ``attrs_sha256`` (or cannot be read)."""
    problems = []

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, (h5py.Group, h5py.Dataset)):
            return
        expected = obj.attrs.get("attrs_sha256")
        try:
            found = attrs_sha256(obj)
        except (OSError, TypeError, ValueError) as exc:
            problems.append(f"{_label(f, name)}/{name}: attributes unreadable ({exc})")
            return
        if expected is None:
            problems.append(f"{_label(f, name)}/{name}: no attributes checksum")
        elif found != expected:
            problems.append(f"{_label(f, name)}/{name}: attributes changed")

    visit("", f)
    f.visititems(visit)
    return problems


def _check_complete(f: h5py.File) -> list[str]:
    """Outputs and blobs that the records name but the export lacks."""
    problems = []
    for group in f["steps"].values():
        if "record.json" not in group:
            problems.append(f"{_label(f, group.name)}{group.name}/record.json: missing")
            continue
        if not _intact(group["record.json"]):
            continue  # named by _check_datasets
        record = json.loads(group["record.json"][()])
        problems += [f"{_label(f, group.name)}{group.name}/{name}: missing"
                     for name in record["outputs"] if name not in group]
        problems += [f"{_label(f, group.name)}/blobs/{digest}: missing"
                     for digest in record.get("blobs", {}).values() if f"blobs/{digest}" not in f]
    return problems


def _intact(dataset: h5py.Dataset) -> bool:
    """Whether a (small) dataset still matches its checksum."""
    return dataset_sha256(dataset) == dataset.attrs.get("sha256")


def _label(f: h5py.File, name: str) -> str:
    """``"<step name> (<key[:12]>): "`` for an object under /steps/<key> (the group too), else ``""``."""
    parts = name.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "steps":
        return ""
    return f"{_step_name(f['steps'][parts[1]])} ({parts[1][:12]}): "


def _step_name(group: h5py.Group) -> str:
    """A step's name: its group's attr while the group's attributes are intact, else its record's while
    that is intact, else ``?``."""
    if attrs_sha256(group) == group.attrs.get("attrs_sha256"):
        return group.attrs.get("name", "?")
    if "record.json" in group and _intact(group["record.json"]):
        return json.loads(group["record.json"][()]).get("name", "?")
    return "?"


def _put_output(group: h5py.Group, filename: str, source: Path) -> None:
    """One output file into ``group``: netCDF through xarray (h5py's copy breaks dimension scales
    across files), other HDF5 by h5py's copy (dataset by dataset, hard links kept), else as bytes."""
    if filename.endswith(".nc"):
        _put_netcdf(group.file, f"{group.name}/{filename}", source)
    elif h5py.is_hdf5(source):
        with h5py.File(source, "r") as f:
            f.copy(f["/"], group, name=filename)
    else:
        _put_bytes(group, filename, source)


def _put_netcdf(f: h5py.File, where: str, source: Path) -> None:
    """A netCDF file as the netCDF group ``where``, its variables and attributes as stored (not
    decoded: no CF round trip). h5netcdf scans the whole file on opening it for writing: cheap while
    the export holds little else."""
    import xarray as xr

    from ilcampaign.archive.arrays import dump

    dump(f, xr.load_dataset(source, engine="h5netcdf", decode_cf=False), mode="a", group=where)


def _put_bytes(group: h5py.Group, name: str, source: Path) -> None:
    """A file's bytes as a uint8 dataset, written CHUNK bytes at a time."""
    size = source.stat().st_size
    dataset = group.create_dataset(name, shape=(size,), dtype=np.uint8, chunks=(min(size, CHUNK),) if size else None)
    with open(source, "rb") as handle:
        for start in range(0, size, CHUNK):
            dataset[start:start + CHUNK] = np.frombuffer(handle.read(CHUNK), dtype=np.uint8)


def _put_text(group: h5py.Group, name: str, text: bytes) -> None:
    """UTF-8 text (JSON) as a fixed-length string dataset: its bytes are the text's."""
    group.create_dataset(name, data=np.bytes_(text), dtype=h5py.string_dtype("utf-8", len(text)))


def _copy_file(source: Path, target: Path) -> str:
    """Copy a file atomically; its SHA-256."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        digest = sha256_file(tmp)
    return digest


def _crate(archive: Archive) -> bytes:
    """The archive's RO-Crate metadata, written to a scratch folder and read back."""
    import tempfile

    from ilcampaign.archive.provenance import ro_crate

    with tempfile.TemporaryDirectory() as scratch:
        return ro_crate(archive.root, scratch).read_bytes()


def _software(records: Any) -> dict[str, list[str]]:
    """Every package version any record names: {package: sorted versions}."""
    versions: dict[str, set[str]] = {}
    for record in records:
        for package, version in record.get("software", {}).items():
            versions.setdefault(package, set()).add(str(version))
    return {package: sorted(found) for package, found in sorted(versions.items())}


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
