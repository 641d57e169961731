"""Streaming reader of one H5MD trajectory in ``ilcampaign.archive.frames``' layout: frames come in blocks
read straight from h5py, so memory is set by the block size, never by the trajectory's length."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Self

import h5py
import numpy as np

from ilcampaign.archive.frames import CLOCK, PARTICLES, SPECIES

BLOCK_BYTES = 64 * 2**20  # default memory of one block of positions


class Trajectory:
    """One H5MD file opened for reading. ``timestep_fs`` is the time between stored frames when the
    file's own times are nominal (``write_frames`` stores 1 fs per frame); None uses the file's."""

    def __init__(self, path: str | os.PathLike[str], *, timestep_fs: float | None = None):
        self.path = os.fspath(path)
        self._file = h5py.File(self.path, "r")
        species = self._file[SPECIES]
        first = species[0]
        self.n_frames = species.shape[0]
        self.n_atoms = int(np.count_nonzero(~np.isnan(first)))
        self.numbers = first[: self.n_atoms].astype(np.int64)
        ids = f"{PARTICLES}/mol_id/value"
        self.mol_ids = self._file[ids][0, : self.n_atoms].astype(np.int64) if ids in self._file else None
        self._positions = self._file[f"{PARTICLES}/position/value"]
        self._cells = self._file[f"{PARTICLES}/box/edges/value"]
        self._timestep = timestep_fs

    @property
    def masses(self) -> np.ndarray:
        """Atomic masses (u) of the atoms, from ``ase.data.atomic_masses``."""
        from ase.data import atomic_masses

        return atomic_masses[self.numbers]

    @property
    def symbols(self) -> tuple[str, ...]:
        """Element symbols of the atoms."""
        from ase.data import chemical_symbols

        return tuple(chemical_symbols[z] for z in self.numbers)

    @property
    def times(self) -> np.ndarray:
        """Time of every frame in fs: ``i * timestep_fs`` if given, else the file's times."""
        if self._timestep is not None:
            return np.arange(self.n_frames) * float(self._timestep)
        return self._file[f"{CLOCK}/time"][()].astype(np.float64)

    @property
    def timestep(self) -> float:
        """Time between consecutive stored frames (fs)."""
        if self._timestep is not None:
            return float(self._timestep)
        t = self._file[f"{CLOCK}/time"][:2]
        return float(t[1] - t[0]) if len(t) == 2 else 0.0

    def frame_range(self, start: int = 0, stop: int | None = None, step: int = 1) -> range:
        """The frame indices ``start:stop:step`` selects (Python slice rules)."""
        return range(*slice(start, stop, step).indices(self.n_frames))

    def default_block(self) -> int:
        """Frames per block so that a block of positions takes about ``BLOCK_BYTES``."""
        return max(1, BLOCK_BYTES // max(1, self.n_atoms * 24))

    def blocks(self, start: int = 0, stop: int | None = None, step: int = 1,
               size: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(frame indices, positions (b, N, 3), cells (b, 3, 3))`` in float64, ``size`` frames
        at a time (default ``default_block()``), over the frames ``start:stop:step``."""
        if step < 1:
            raise ValueError(f"step must be a positive integer, not {step}")
        frames = self.frame_range(start, stop, step)
        size = size or self.default_block()
        for k in range(0, len(frames), size):
            part = frames[k: k + size]
            rows = slice(part.start, part.stop, part.step)
            positions = self._positions[rows, : self.n_atoms].astype(np.float64, copy=False)
            yield np.asarray(part), positions, self._cells[rows].astype(np.float64, copy=False)

    def close(self) -> None:
        """Release the file."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
