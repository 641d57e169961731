"""Single reference calculations, content-addressed in the archive's cache.

A calculation is identified by the reference settings and the exact configuration (atomic
numbers, positions bit for bit, cell, pbc, charge). Any step that needs the same calculation
again (a relabel after a policy change, a resumed task) reads it instead of recomputing.
Calculators are kept per process, so CP2K's shell is started once, not once per frame.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archive.store import Archive
from engine.hashing import digest

if TYPE_CHECKING:
    from ase import Atoms

_CALCULATORS: dict[tuple[str, int], Any] = {}


def configuration_digest(reference: Any, atoms: Atoms) -> str:
    """Key of one calculation: reference settings plus the configuration's exact bytes."""
    import numpy as np

    geometry = hashlib.sha256()
    for array in (atoms.numbers.astype(np.int64), atoms.positions.astype(np.float64), atoms.cell.array, atoms.pbc):
        geometry.update(np.ascontiguousarray(array).tobytes())
    return digest({"reference": reference, "geometry": geometry.hexdigest(), "charge": int(atoms.info.get("charge", 0))})


def calculator(reference: Any, charge: int, scratch: Path) -> Any:
    """A calculator for these settings, created once per process."""
    from engine.reference import make_calculator

    key = (digest(reference), charge)
    if key not in _CALCULATORS:
        _CALCULATORS[key] = make_calculator(reference, charge=charge, workdir=scratch / key[0][:16])
    return _CALCULATORS[key]


def label(archive: Archive, reference: Any, atoms: Atoms, scratch: Path) -> tuple[Atoms, bool]:
    """``atoms`` with reference energy/forces/stress attached; second item True if computed now.

    Raises ``engine.reference.ReferenceFailure`` when the calculation fails.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    from archive.frames import read_frames, write_frames
    from engine.reference import compute

    path = archive.cache_file(configuration_digest(reference, atoms))
    if path.exists():
        return read_frames(path)[0], False
    charge = int(atoms.info.get("charge", 0))
    results = compute(atoms, calculator(reference, charge, scratch))
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(labelled, **results)
    write_frames(path, [labelled])
    return read_frames(path)[0], True
