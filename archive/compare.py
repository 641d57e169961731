"""Comparing two archives step by step (``campaign verify --against``).

Science outputs (the files a record lists under ``outputs``) and blobs are written byte-stably,
so equal checksums mean the same result. Where bytes differ, HDF5 files (H5MD frames, netCDF
arrays, a model's parameters) are opened and their datasets compared bit for bit: a file whose
datasets are all equal differs in metadata only (attributes, HDF5 layout); otherwise the
differing datasets (netCDF variables) are named. Records are not compared: they hold times and
hosts by design.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ilcampaign.archive.store import Archive

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NUMERIC, METADATA, CONTENT, MISSING = "numeric", "metadata only", "content", "missing"


@dataclass
class Difference:
    """One output file (or blob member) whose bytes differ, how, and where (datasets, attributes)."""

    name: str
    kind: str  # NUMERIC | METADATA | CONTENT | MISSING
    where: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.name}: {self.kind}" + (f" ({', '.join(self.where)})" if self.where else "")


@dataclass
class StepComparison:
    """A step key of either archive: its name, state and the differences of its science files."""

    key: str
    name: str
    state: str  # "identical", "differs", "only in this archive", "only in the other"
    differences: list[Difference] = field(default_factory=list)


def compare_archives(ours: Archive, theirs: Archive) -> list[StepComparison]:
    """Every finished step of both archives, by key, in the order this archive finished them."""
    mine, other = ours.index()["steps"], theirs.index()["steps"]
    keys = sorted(mine, key=lambda k: mine[k]["finished"]) + sorted(set(other) - set(mine),
                                                                   key=lambda k: other[k]["finished"])
    result = []
    for key in keys:
        if key not in other:
            result.append(StepComparison(key, mine[key]["name"], "only in this archive"))
        elif key not in mine:
            result.append(StepComparison(key, other[key]["name"], "only in the other"))
        else:
            differences = compare_step(ours, theirs, key)
            result.append(StepComparison(key, mine[key]["name"], "differs" if differences else "identical",
                                         differences))
    return result


def compare_step(ours: Archive, theirs: Archive, key: str) -> list[Difference]:
    """The differences between one finished step's outputs and blobs in two archives."""
    records = ours.record(key), theirs.record(key)
    differences = []
    outputs = [records[0]["outputs"], records[1]["outputs"]]
    for name in sorted(set(outputs[0]) | set(outputs[1])):
        if name not in outputs[0] or name not in outputs[1]:
            differences.append(_missing(name, name in outputs[0]))
        elif outputs[0][name] != outputs[1][name]:
            with open(ours.output(key, name), "rb") as a, open(theirs.output(key, name), "rb") as b:
                differences.append(_file_difference(name, a, b))
    blobs = [records[0].get("blobs", {}), records[1].get("blobs", {})]
    for name in sorted(set(blobs[0]) | set(blobs[1])):
        if name not in blobs[0] or name not in blobs[1]:
            differences.append(_missing(f"blob {name}", name in blobs[0]))
        elif blobs[0][name] != blobs[1][name]:
            paths = ours.blob_path(blobs[0][name]), theirs.blob_path(blobs[1][name])
            differences.extend(_tar_differences(f"blob {name}", *paths))
    return differences


def _missing(name: str, ours: bool) -> Difference:
    """A file (or blob, or blob member) that only one archive has."""
    return Difference(name, MISSING, ["only in " + ("this archive" if ours else "the other")])


def _tar_differences(label: str, one: Path, two: Path) -> list[Difference]:
    """Member by member; tars whose members are all equal differ in their headers only."""
    with tarfile.open(one) as a, tarfile.open(two) as b:
        members = [{m.name: m for m in tar.getmembers() if m.isfile()} for tar in (a, b)]
        found = []
        for name in sorted(set(members[0]) | set(members[1])):
            if name not in members[0] or name not in members[1]:
                found.append(_missing(f"{label}: {name}", name in members[0]))
                continue
            first, second = a.extractfile(members[0][name]).read(), b.extractfile(members[1][name]).read()
            if first != second:
                found.append(_file_difference(f"{label}: {name}", io.BytesIO(first), io.BytesIO(second)))
    return found or [Difference(label, METADATA, ["tar headers"])]


def _file_difference(name: str, one: IO[bytes], two: IO[bytes]) -> Difference:
    """How two files with different bytes differ: HDF5 datasets compared, other files as bytes."""
    heads = one.read(len(HDF5_MAGIC)), two.read(len(HDF5_MAGIC))
    one.seek(0)
    two.seek(0)
    if heads != (HDF5_MAGIC, HDF5_MAGIC):
        return Difference(name, CONTENT)
    import h5py

    with h5py.File(one, "r") as a, h5py.File(two, "r") as b:
        objects = [_objects(a), _objects(b)]
        numeric = sorted(path for path in set(objects[0]) | set(objects[1])
                         if not _same_object(objects[0].get(path), objects[1].get(path)))
        if numeric:
            return Difference(name, NUMERIC, numeric)
        attributes = [f"attributes of {path}" for path in sorted(objects[0])
                      if not _same_attributes(objects[0][path], objects[1][path])]
    return Difference(name, METADATA, attributes or ["same arrays and attributes, other HDF5 internals"])


def _objects(f: Any) -> dict[str, Any]:
    """Every group and dataset of an open HDF5 file by path (the root as ``/``)."""
    found = {"/": f}

    def visit(path: str, obj: Any) -> None:
        found[path] = obj

    f.visititems(visit)
    return found


def _same_object(one: Any, two: Any) -> bool:
    """Both groups, or both datasets with the same values (see ``_same_values``)."""
    import h5py

    if one is None or two is None or isinstance(one, h5py.Group) != isinstance(two, h5py.Group):
        return False
    return isinstance(one, h5py.Group) or _same_values(one[()], two[()])


def _same_values(one: Any, two: Any) -> bool:
    """Equal shape, dtype and bits (NaN equals the same NaN); strings and other objects by value."""
    import numpy as np

    x, y = np.asarray(one), np.asarray(two)
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    return x.tolist() == y.tolist() if x.dtype.kind == "O" else x.tobytes() == y.tobytes()


def _same_attributes(one: Any, two: Any) -> bool:
    """Equal attribute names and values; object references (netCDF's dimension lists) are
    addresses inside each file and are left out."""
    import h5py
    import numpy as np

    def plain(obj: Any) -> dict[str, Any]:
        values = {}
        for name in obj.attrs:
            base = h5py.check_vlen_dtype(obj.attrs.get_id(name).dtype) or obj.attrs.get_id(name).dtype
            if not isinstance(base, np.dtype) or (h5py.check_ref_dtype(base) is None and base.names is None):
                values[name] = obj.attrs[name]
        return values

    mine, theirs = plain(one), plain(two)
    return mine.keys() == theirs.keys() and all(_same_values(mine[name], theirs[name]) for name in mine)
