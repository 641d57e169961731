"""Building periodic ionic-liquid boxes: RDKit conformers packed with PACKMOL, rigid rescaling.

Every random choice takes an explicit seed, so the same inputs give the same box bit for bit.
Boxes carry ``arrays["mol_id"]`` (one id per molecule) and ``info["charge"]`` (net charge).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms


def pack_box(
    ions: list[tuple[Atoms, int]], density_amu_per_A3: float, seed: int, tolerance: float, *, periodic: bool = True,
    timeout: float = 600.0,
) -> Atoms:
    """A cubic box holding ``count`` copies of each molecule at the given mass density, packed by
    PACKMOL with minimum intermolecular distance ``tolerance``: periodic (PACKMOL's ``pbc``) or, with
    ``periodic=False``, a cluster inside the cube (no cell). A structure that has ``mol_id`` (a
    cluster of several molecules) keeps its molecules apart in the box's ``mol_id``."""
    from packmol.cli import get_binary_path

    mass = sum(atoms.get_masses().sum() * count for atoms, count in ions)
    side = float((mass / density_amu_per_A3) ** (1 / 3))
    lines = [f"tolerance {float(tolerance)!r}", f"seed {seed}", "filetype xyz", "output box.xyz"]
    if periodic:
        lines.append(f"pbc 0. 0. 0. {side!r} {side!r} {side!r}")
    with tempfile.TemporaryDirectory(prefix="packmol-") as tmp:
        for index, (atoms, count) in enumerate(ions):
            _write_xyz(Path(tmp) / f"ion{index}.xyz", atoms)
            inside = [] if periodic else [f"  inside cube 0. 0. 0. {side!r}"]
            lines += [f"structure ion{index}.xyz", f"  number {count}", *inside, "end structure"]
        (Path(tmp) / "pack.inp").write_text("\n".join(lines) + "\n")
        try:
            with open(Path(tmp) / "pack.inp") as stdin:  # PACKMOL rewinds its input: a file, not a pipe
                run = subprocess.run([str(get_binary_path())], stdin=stdin, cwd=tmp, capture_output=True,
                                     text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"PACKMOL did not finish within {timeout} s:\n{_tail(exc.stdout)}") from exc
        output = Path(tmp) / "box.xyz"
        if run.returncode != 0 or not output.exists():
            raise RuntimeError(
                f"PACKMOL failed (exit code {run.returncode}) packing at {side:.3f} A with tolerance "
                f"{tolerance} A:\n{_tail(run.stdout + run.stderr)}"
            )
        positions = np.loadtxt(output, skiprows=2, usecols=(1, 2, 3), ndmin=2)
    symbols = [symbol for atoms, count in ions for _ in range(count) for symbol in atoms.get_chemical_symbols()]
    box = Atoms(symbols=symbols, positions=positions, cell=[side] * 3 if periodic else None, pbc=periodic)
    local = [np.unique(atoms.arrays["mol_id"], return_inverse=True)[1] if "mol_id" in atoms.arrays
             else np.zeros(len(atoms), int) for atoms, count in ions for _ in range(count)]
    offsets = np.cumsum([0] + [ids.max() + 1 for ids in local[:-1]])
    box.arrays["mol_id"] = np.concatenate([ids + offset for ids, offset in zip(local, offsets)])
    box.info["charge"] = int(sum(atoms.info.get("charge", 0) * count for atoms, count in ions))
    return box


def scale_rigid(atoms: Atoms, factor: float) -> Atoms:
    """A copy with the cell scaled by ``factor`` (a length ratio) and each molecule (``mol_id``)
    moved rigidly: molecules are made whole, their centres of mass wrapped into the cell and scaled."""
    scaled = atoms.copy()
    scaled.set_cell(atoms.cell * factor, scale_atoms=False)
    masses = atoms.get_masses()
    for mol in np.unique(atoms.arrays["mol_id"]):
        index = np.flatnonzero(atoms.arrays["mol_id"] == mol)
        whole = _whole(atoms, index)
        com = masses[index] @ whole / masses[index].sum()
        fractional = atoms.cell.scaled_positions(com[None])[0] % 1.0
        scaled.positions[index] = whole - com + scaled.cell.cartesian_positions(fractional[None])[0]
    return scaled


def _whole(atoms: Atoms, index: np.ndarray) -> np.ndarray:
    """Positions of the atoms ``index`` (one molecule) made whole across periodic boundaries.

    Atoms are joined along the minimum spanning tree of minimum-image distances (Prim), so
    bonds, the shortest intramolecular distances, are followed even in boxes smaller than the
    molecule."""
    from ase.geometry import get_distances

    positions = atoms.positions[index]
    vectors, distances = get_distances(positions, cell=atoms.cell, pbc=atoms.pbc)
    whole = positions.copy()
    placed = np.zeros(len(index), bool)
    placed[0] = True
    best, parent = distances[0].copy(), np.zeros(len(index), int)
    for _ in range(len(index) - 1):
        atom = int(np.argmin(np.where(placed, np.inf, best)))
        whole[atom] = whole[parent[atom]] + vectors[parent[atom], atom]
        placed[atom] = True
        closer = distances[atom] < best
        best[closer], parent[closer] = distances[atom][closer], atom
    return whole


def _write_xyz(path: Path, atoms: Atoms) -> None:
    rows = [f"{s} {x:.10f} {y:.10f} {z:.10f}" for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions)]
    path.write_text(f"{len(atoms)}\nmolecule\n" + "\n".join(rows) + "\n")


def _tail(text: str | bytes | None, lines: int = 30) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])
