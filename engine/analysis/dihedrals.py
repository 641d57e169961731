"""Dihedral angles of the molecules of one ion: which atom quadruples (a SMARTS on the ion's SMILES,
applied to every molecule of that ion in the box), their angles under minimum image, and angle
distributions over growing time windows."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np

from ilcampaign.engine.analysis.sites import molecules, of_species
from ilcampaign.engine.analysis.trajectory import Trajectory


def template_quads(smarts: str, smiles: str) -> np.ndarray:
    """Matches of ``smarts`` in the ion of ``smiles`` (explicit H, RDKit's atom order) as (n, 4):
    the atoms mapped 1..4 if the pattern maps 4 atoms, else its first 4 atoms."""
    from rdkit import Chem

    pattern = Chem.MolFromSmarts(smarts)
    if pattern is None:
        raise ValueError(f"invalid SMARTS {smarts!r}")
    maps = [a.GetAtomMapNum() for a in pattern.GetAtoms()]
    if sorted(m for m in maps if m) == [1, 2, 3, 4]:
        picks = [maps.index(k) for k in (1, 2, 3, 4)]
    elif len(maps) >= 4:
        picks = [0, 1, 2, 3]
    else:
        raise ValueError(f"SMARTS {smarts!r} has fewer than 4 atoms")
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    matches = mol.GetSubstructMatches(pattern, uniquify=True, maxMatches=100000)
    return np.array([[m[k] for k in picks] for m in matches], dtype=np.int64).reshape(-1, 4)


def dihedral_quads(smarts: str, smiles: str, mol_ids: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Atom indices (n, 4) in the box of every match of ``smarts`` in every molecule of the ion of
    ``smiles`` (molecules whose elements are the ion's template symbols in order)."""
    from ilcampaign.engine.structures.guards import template

    local = template_quads(smarts, smiles)
    mols = of_species(molecules(mol_ids, numbers), template(smiles).symbols)
    if not mols:
        raise ValueError(f"no molecule of {smiles} in the box")
    return np.concatenate([m.atoms[local] for m in mols]).reshape(-1, 4)


def _mic(v: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Bond vectors ``(b, n, 3)`` wrapped to their minimum image (fractional rounding; bonds are
    far shorter than half a cell, where that is exact)."""
    inverse = np.linalg.inv(cells)
    return v - np.matmul(np.rint(np.matmul(v, inverse)), cells)


def dihedral_angles(positions: np.ndarray, cells: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Dihedral angles ``(b, n)`` in degrees, in (-180, 180], of atoms ``quads`` (n, 4) over frames
    ``positions (b, N, 3)``, ``cells (b, 3, 3)``: IUPAC sign (clockwise looking along 2->3 positive),
    atan2(|b2| b1.(b2 x b3), (b1 x b2).(b2 x b3))."""
    p = positions[:, quads]  # (b, n, 4, 3)
    b1, b2, b3 = (_mic(p[:, :, k + 1] - p[:, :, k], cells) for k in range(3))
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * np.einsum("bnk,bnk->bn", b1, n2)
    x = np.einsum("bnk,bnk->bn", n1, n2)
    angle = np.degrees(np.arctan2(y, x))
    return np.where(angle <= -180.0, 180.0, angle)


def dihedral_distributions(traj: Trajectory, quads: np.ndarray, windows: Sequence[float] = (0.1, 0.5, 1.0),
                           bins: int = 72, *, start: int = 0, stop: int | None = None, step: int = 1,
                           block: int | None = None) -> SimpleNamespace:
    """Histograms of the angles of ``quads`` over growing windows: the first ``windows`` fractions of
    the frames ``start:stop:step``. Returns ``edges`` (bins + 1, degrees), ``density`` (windows, bins;
    each integrates to 1 over degrees), ``count`` and ``n_frames`` per window."""
    frames = traj.frame_range(start, stop, step)
    ends = np.array([max(1, round(w * len(frames))) for w in windows])
    edges = np.linspace(-180.0, 180.0, bins + 1)
    count = np.zeros((len(ends), bins))
    done = 0
    for _, positions, cells in traj.blocks(frames.start, frames.stop, frames.step, block):
        angles = dihedral_angles(positions, cells, quads)  # (b, n)
        for w, end in enumerate(ends):
            rows = angles[: max(0, end - done)].ravel()
            count[w] += np.histogram(rows, bins=edges)[0]
        done += len(angles)
    density = count / (count.sum(axis=1, keepdims=True) * np.diff(edges))
    return SimpleNamespace(edges=edges, density=density, count=count, n_frames=ends, windows=tuple(windows))
