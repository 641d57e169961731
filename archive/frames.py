"""Atomic configurations as H5MD 1.1 files (https://www.nongnu.org/h5md/h5md.html).

The layout follows what znh5md 0.4 writes wherever H5MD leaves a choice, so that znh5md and
MDAnalysis read our files too: one particles group ``atoms``; per-atom data NaN-padded to the
largest frame (species as float atomic numbers, NaN = no atom); box edges ``(n, 3, 3)`` plus a
per-frame ``box/pbc``; energy as ``observables/atoms/potential_energy``; stress in Voigt order;
``atoms.info`` scalars as observables (NaN or "" = absent in that frame, strings JSON-encoded).
Every element's ``step`` (frame ordinal 1..n) and ``time`` (nominal 1 fs per frame) are hard
links to one shared pair, as H5MD allows; MDAnalysis needs them per frame, not scalar. Files are
byte-stable (see ilcampaign.archive.hdf5): the same frames give the same bytes.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ase
import h5py
import numpy as np
from ase import units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from ilcampaign.archive.atomic import atomic_path
from ilcampaign.archive.hdf5 import create

PARTICLES = "/particles/atoms"
OBSERVABLES = "/observables/atoms"
SPECIES = f"{PARTICLES}/species/value"
CLOCK = f"{PARTICLES}/position"  # holds the step/time datasets every element links to
ORIGIN = "ASE_ENTRY_ORIGIN"  # znh5md's hint where a value belongs in ase: atoms, calc or info
INFO_TYPE = "ilcampaign_type"  # Python type of an info observable: bool, int, float or str
LABELS = {  # ase name: (H5MD element, unit, per atom)
    "energy": (f"{OBSERVABLES}/potential_energy", "eV", False),
    "forces": (f"{PARTICLES}/force", "eV/Angstrom", True),
    "stress": (f"{OBSERVABLES}/stress", "eV/Angstrom^3", False),
    "charges": (f"{PARTICLES}/charge", "e", True),
}
VELOCITY = f"{PARTICLES}/velocity"  # written when asked (MD trajectories), Angstrom/fs
ATOM_IDS = {"mol_id": f"{PARTICLES}/mol_id"}  # per-atom integer arrays kept (which molecule an atom is in)
RESERVED_INFO = {"potential_energy", "stress"}  # observables names taken by labels
MAX_EXACT_INT = 2**53  # info ints are stored as float64 (NaN marks absence): exact up to here


def _creator_version() -> str:
    """This package's version for ``h5md/creator``; "unknown" when run from a source tree."""
    try:
        return importlib.metadata.version("ilcampaign")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _stack(values: Sequence[np.ndarray | None], shape: tuple[int, ...]) -> np.ndarray:
    """Stack per-frame arrays into ``(n, *shape)``, padding short or missing ones with NaN."""
    out = np.full((len(values), *shape), np.nan)
    for i, value in enumerate(values):
        if value is not None:
            out[(i, *(slice(0, s) for s in value.shape))] = value
    return out


def _label(atoms: ase.Atoms, name: str) -> np.ndarray | None:
    """A label from the calculator's results, else from ``atoms.arrays`` or ``atoms.info``."""
    results = atoms.calc.results if atoms.calc is not None else {}
    value = results.get(name, atoms.arrays.get(name) if LABELS[name][2] else atoms.info.get(name))
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float64)
    return full_3x3_to_voigt_6_stress(value) if name == "stress" and value.shape == (3, 3) else value


def _info(atoms: ase.Atoms) -> dict[str, Any]:
    """``atoms.info`` less the entries that ``_label`` takes as labels."""
    results = atoms.calc.results if atoms.calc is not None else {}
    return {k: v for k, v in atoms.info.items() if k not in LABELS or k in results}


def _info_type(key: str, values: list[Any]) -> str:
    """The one Python type of an info entry over all frames (int widens to float if mixed)."""
    if not isinstance(key, str) or "/" in key or key in RESERVED_INFO:
        raise ValueError(f"info key {key!r} cannot be stored (reserved, or not a plain name)")
    kinds = set()
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            kinds.add("bool")
        elif isinstance(v, (int, np.integer)):
            if abs(int(v)) > MAX_EXACT_INT:
                raise ValueError(f"info[{key!r}] = {v} is too large to store exactly")
            kinds.add("int")
        elif isinstance(v, (float, np.floating)):
            kinds.add("float")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            raise TypeError(f"info[{key!r}] is a {type(v).__name__}; only str, int, float, bool are stored")
    if kinds == {"int", "float"}:
        return "float"
    if len(kinds) != 1:
        raise TypeError(f"info[{key!r}] mixes types {sorted(kinds)} across frames")
    return kinds.pop()


def _info_column(values: list[Any], kind: str) -> np.ndarray:
    """Info values as float64 (NaN = absent) or as JSON strings ("" = absent), like znh5md."""
    if kind == "str":
        return np.array(["" if v is None else json.dumps(v) for v in values], dtype=h5py.string_dtype())
    return np.array([np.nan if v is None else float(v) for v in values])


def _element(f: h5py.File, path: str, value: np.ndarray, *, origin: str, unit: str | None = None) -> None:
    """An H5MD time-dependent element: ``value`` plus hard links to the shared step and time."""
    group = f.require_group(path)
    group.attrs[ORIGIN] = origin
    dataset = group.create_dataset("value", data=value, compression="gzip" if value.size else None)
    if unit is not None:
        dataset.attrs["unit"] = unit
    if path != CLOCK:
        group["step"] = f[f"{CLOCK}/step"]
        group["time"] = f[f"{CLOCK}/time"]


def _write_header(f: h5py.File, author: str) -> None:
    """The ``h5md`` group H5MD requires: version, author, creator."""
    f.create_group("h5md").attrs["version"] = np.array([1, 1])
    f.create_group("h5md/author").attrs["name"] = author
    creator = f.create_group("h5md/creator")
    creator.attrs["name"] = "ilcampaign"
    creator.attrs["version"] = _creator_version()


def _write_particles(f: h5py.File, frames: list[ase.Atoms], velocities: bool) -> None:
    """Species, positions, box, velocities if asked and the per-atom labels (forces, charges)."""
    width = max((len(a) for a in frames), default=0)
    clock = f.create_group(CLOCK)
    clock["step"] = np.arange(1, len(frames) + 1, dtype=np.int64)
    clock["time"] = np.arange(1, len(frames) + 1, dtype=np.float64)
    clock["time"].attrs["unit"] = "fs"
    _element(f, CLOCK, _stack([a.positions for a in frames], (width, 3)), origin="atoms", unit="Angstrom")
    _element(f, f"{PARTICLES}/species", _stack([a.numbers for a in frames], (width,)), origin="atoms")
    box = f.create_group(f"{PARTICLES}/box")
    box.attrs["dimension"] = 3  # H5MD's boundary is one per file: the first frame's; box/pbc has each
    box.attrs["boundary"] = ["periodic" if p else "none" for p in (frames[0].pbc if frames else [False] * 3)]
    _element(f, f"{PARTICLES}/box/edges", _stack([a.cell.array for a in frames], (3, 3)), origin="atoms", unit="Angstrom")
    _element(f, f"{PARTICLES}/box/pbc", _stack([a.pbc for a in frames], (3,)), origin="atoms")
    if velocities:
        _element(f, VELOCITY, _stack([a.get_velocities() * units.fs for a in frames], (width, 3)), origin="atoms",
                 unit="Angstrom fs-1")
    _write_labels(f, frames, ("forces", "charges"))
    for name, path in ATOM_IDS.items():
        if any(name in a.arrays for a in frames):
            _element(f, path, _stack([a.arrays.get(name) for a in frames], (width,)), origin="atoms")


def _write_labels(f: h5py.File, frames: list[ase.Atoms], names: Sequence[str]) -> None:
    """The labels ``names`` that any frame has; frames without one get NaN."""
    width = f[SPECIES].shape[1]
    for name in names:
        path, unit, per_atom = LABELS[name]
        values = [_label(a, name) for a in frames]
        present = next((v for v in values if v is not None), None)
        if present is not None:
            shape = (width, *present.shape[1:]) if per_atom else present.shape
            _element(f, path, _stack(values, shape), origin="calc", unit=unit)


def _write_observables(f: h5py.File, frames: list[ase.Atoms], infos: list[dict[str, Any]], kinds: dict[str, str]) -> None:
    """Energy and stress, then one observable per ``atoms.info`` key."""
    _write_labels(f, frames, ("energy", "stress"))
    for key, kind in kinds.items():
        _element(f, f"{OBSERVABLES}/{key}", _info_column([info.get(key) for info in infos], kind), origin="info")
        f[f"{OBSERVABLES}/{key}"].attrs[INFO_TYPE] = kind


def write_frames(path: str | os.PathLike[str], frames: Sequence[ase.Atoms], *, author: str = "ilcampaign",
                 velocities: bool = False) -> None:
    """Write ``frames`` to an H5MD file at ``path`` atomically (old file or new one, never half);
    ``velocities``: store each frame's velocities too (MD trajectories)."""
    frames = list(frames)
    infos = [_info(a) for a in frames]
    keys = dict.fromkeys(k for info in infos for k in info)
    kinds = {k: _info_type(k, [info[k] for info in infos if k in info]) for k in keys}  # fail before writing
    with atomic_path(path) as tmp, create(tmp) as f:
        _write_header(f, author)
        _write_particles(f, frames, velocities)
        _write_observables(f, frames, infos, kinds)


@contextmanager
def _opened(source: str | os.PathLike[str] | h5py.Group) -> Iterator[h5py.Group]:
    """An H5MD file's root: the group given (e.g. inside a campaign export), or the file opened."""
    if isinstance(source, h5py.Group):
        yield source
    else:
        with h5py.File(source, "r") as f:
            yield f


def count_frames(source: str | os.PathLike[str] | h5py.Group) -> int:
    """Number of frames, from the species dataset's shape (no data read); ``source``: a path or an
    H5MD group."""
    with _opened(source) as f:
        return f[SPECIES[1:]].shape[0]


def _info_value(value: Any, kind: str | None) -> Any:
    """One stored info value back as its Python type; None where the frame had none."""
    if isinstance(value, str):
        return json.loads(value) if value else None
    if np.isnan(value):
        return None
    return {"bool": bool, "int": int}.get(kind, float)(value)


def read_frames(source: str | os.PathLike[str] | h5py.Group, indices: Sequence[int] | None = None) -> list[ase.Atoms]:
    """Frames (all, or those at ``indices``) with labels on a SinglePointCalculator and info restored;
    ``source``: a path or an H5MD group (its element paths are taken relative to it)."""
    with _opened(source) as f:
        n = f[SPECIES[1:]].shape[0]
        wanted = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        wanted = np.where(wanted < 0, wanted + n, wanted)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= n):
            raise IndexError(f"frame index out of range for {n} frames: {indices}")
        rows, order = np.unique(wanted, return_inverse=True)

        def column(name: str) -> np.ndarray:
            dataset = f[name[1:]]
            dataset = dataset.asstr() if h5py.check_string_dtype(dataset.dtype) else dataset
            return dataset[()] if len(rows) == n else dataset[rows]

        species = column(SPECIES)
        positions, cells, pbcs = (column(f"{PARTICLES}/{p}/value") for p in ("position", "box/edges", "box/pbc"))
        labels = {name: column(f"{p}/value") for name, (p, _, _) in LABELS.items() if p[1:] in f}
        ids = {name: column(f"{p}/value") for name, p in ATOM_IDS.items() if p[1:] in f}
        velocity = column(f"{VELOCITY}/value") if VELOCITY[1:] in f else None
        infos = {}
        for key, group in f[OBSERVABLES[1:]].items() if OBSERVABLES[1:] in f else ():
            if group.attrs.get(ORIGIN) == "info":
                infos[key] = (column(f"{OBSERVABLES}/{key}/value"), group.attrs.get(INFO_TYPE))

    frames = []
    for row in order:
        count = int(np.count_nonzero(~np.isnan(species[row])))
        atoms = ase.Atoms(
            numbers=species[row, :count].astype(int),
            positions=positions[row, :count],
            cell=cells[row],
            pbc=pbcs[row].astype(bool),
        )
        results = {}
        for name, values in labels.items():
            value = values[row, :count] if LABELS[name][2] else values[row]
            if not np.isnan(value).all():
                results[name] = float(value) if name == "energy" else value
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        if velocity is not None:
            atoms.set_velocities(velocity[row, :count] / units.fs)
        for name, values in ids.items():
            if not np.isnan(values[row, :count]).any():
                atoms.arrays[name] = values[row, :count].astype(np.int64)
        for key, (values, kind) in infos.items():
            value = _info_value(values[row], kind)
            if value is not None:
                atoms.info[key] = value
        frames.append(atoms)
    return frames


def concatenate(path: str | os.PathLike[str], sources: Sequence[str | os.PathLike[str]], *,
                frames_per_chunk: int = 64) -> None:
    """Stream the frames of ``sources`` (files of ``write_frames`` with the same atoms and entries)
    into one file at ``path``, atomically, holding one source in memory at a time. Time series are
    chunked along frames and uncompressed (analyses read them in blocks of frames); the frame
    ordinals and times run on over the joined files, and every element links to them as in
    ``write_frames``."""
    if not sources:
        raise ValueError("nothing to concatenate")
    with h5py.File(sources[0], "r") as first:
        layout = _layout(first)
    total = 0
    with atomic_path(path) as tmp, create(tmp) as out:
        for source in sources:
            with h5py.File(source, "r") as f:
                if _layout(f) != layout:
                    raise ValueError(f"{source} holds other entries or atoms than {sources[0]}")
                n = f[SPECIES].shape[0]
                if total == 0:
                    _copy_skeleton(f, out, frames_per_chunk)
                for name in layout:
                    if name.rsplit("/", 1)[-1] in ("step", "time"):
                        continue
                    target = out[name]
                    target.resize(total + n, axis=0)
                    target[total:] = f[name][()]
                total += n
        clock = out[CLOCK]
        clock["step"].resize((total,))
        clock["step"][:] = np.arange(1, total + 1, dtype=np.int64)
        clock["time"].resize((total,))
        clock["time"][:] = np.arange(1, total + 1, dtype=np.float64)


def _layout(f: h5py.File) -> dict[str, tuple]:
    """Every time-series dataset of a frames file: path -> (dtype, shape of one frame)."""
    found: dict[str, tuple] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and name.startswith(("particles", "observables")):
            found[name] = (str(obj.dtype), obj.shape[1:])

    f.visititems(visit)
    return found


def _copy_skeleton(f: h5py.File, out: h5py.File, frames_per_chunk: int) -> None:
    """The groups, attributes and empty resizable datasets of ``f`` in ``out``, step/time links included."""
    out.create_group("h5md")
    for name, obj in f["h5md"].items():
        out.create_group(f"h5md/{name}")
        out[f"h5md/{name}"].attrs.update(obj.attrs)
    out["h5md"].attrs.update(f["h5md"].attrs)
    clock = out.create_group(CLOCK)
    clock.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,))
    clock.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(4096,))
    clock["time"].attrs["unit"] = "fs"

    def visit(name: str, obj: Any) -> None:
        if not name.startswith(("particles", "observables")):
            return
        if isinstance(obj, h5py.Group):
            group = out.require_group(name)
            group.attrs.update(obj.attrs)
            if "value" in obj and name != CLOCK.lstrip("/"):
                group["step"], group["time"] = clock["step"], clock["time"]
        elif name.endswith("/value"):
            shape = obj.shape[1:]
            dataset = out.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=obj.dtype,
                                         chunks=(frames_per_chunk, *shape) if all(shape) else None)
            dataset.attrs.update(obj.attrs)

    f.visititems(visit)
