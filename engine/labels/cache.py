"""Single reference calculations, content-addressed in the archive's cache.

A calculation is identified by the reference settings and the exact configuration (atomic
numbers, positions bit for bit, cell, pbc, charge). Any step that needs the same calculation
again (a relabel after a policy change, a resumed task) reads it instead of recomputing.
Every calculation starts from a fresh calculator (no wavefunction carried over from the
previous configuration), so a label does not depend on which frames were computed before it:
resumed and uninterrupted runs give the same numbers.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ilcampaign.archive.store import Archive
from ilcampaign.engine.hashing import digest

if TYPE_CHECKING:
    from ase import Atoms

def configuration_digest(reference: Any, atoms: Atoms) -> str:
    """Key of one calculation: reference settings plus the configuration's exact bytes."""
    import numpy as np

    geometry = hashlib.sha256()
    for array in (atoms.numbers.astype(np.int64), atoms.positions.astype(np.float64), atoms.cell.array, atoms.pbc):
        geometry.update(np.ascontiguousarray(array).tobytes())
    return digest({"reference": reference, "geometry": geometry.hexdigest(), "charge": int(atoms.info.get("charge", 0))})


@contextmanager
def fresh_calculator(reference: Any, charge: int, scratch: Path) -> Iterator[Any]:
    """A new calculator for these settings, used with ``reference.threads`` OpenMP threads in this
    process, and closed (CP2K's shell stopped) afterwards."""
    from threadpoolctl import threadpool_limits

    from ilcampaign.engine.labels.method import make_calculator

    calc = make_calculator(reference, charge=charge, workdir=scratch / digest(reference)[:12])
    try:
        with threadpool_limits(limits=reference.threads, user_api="openmp"):
            yield calc
    finally:
        if hasattr(calc, "close"):
            calc.close()


def label(archive: Archive, reference: Any, atoms: Atoms, scratch: Path) -> tuple[Atoms, bool]:
    """A copy of ``atoms`` (its info and arrays kept) with the reference energy/forces/stress
    attached; second item True if computed now. Cached results are read back exactly as stored.

    Raises ``ilcampaign.engine.labels.reference.ReferenceFailure`` when the calculation fails.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    from ilcampaign.archive.frames import read_frames, write_frames
    from ilcampaign.engine.labels.method import compute

    path = archive.cache_file(configuration_digest(reference, atoms))
    computed = not path.exists()
    if computed:
        with fresh_calculator(reference, int(atoms.info.get("charge", 0)), scratch) as calc:
            results = compute(atoms, calc)
        entry = atoms.copy()
        entry.calc = SinglePointCalculator(entry, **results)
        write_frames(path, [entry])
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(labelled, **read_frames(path)[0].calc.results)
    return labelled, computed
