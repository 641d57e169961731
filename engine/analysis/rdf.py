"""Radial distribution function between two site sets, streamed over blocks of frames, in any
triclinic cell; normalised as MDAnalysis ``InterRDF`` (norm="rdf") so results compare one to one."""

from __future__ import annotations

from itertools import product
from types import SimpleNamespace

import numpy as np

from ilcampaign.engine.analysis.sites import Sites
from ilcampaign.engine.analysis.trajectory import Trajectory

# the 7 nonzero ways of stepping one cell back along the axes whose fractional offset is nonzero
_STEPS = np.array([s for s in product((0, 1), repeat=3) if any(s)], dtype=np.float64)


def widths(cells: np.ndarray) -> np.ndarray:
    """Perpendicular widths ``(b, 3)`` of cells ``(b, 3, 3)`` (vectors as rows): volume / face area."""
    volume = np.abs(np.linalg.det(cells))
    faces = np.stack([np.cross(cells[:, 1], cells[:, 2]), np.cross(cells[:, 2], cells[:, 0]),
                      np.cross(cells[:, 0], cells[:, 1])], axis=1)
    return volume[:, None] / np.linalg.norm(faces, axis=2)


def minimum_image_sq(dx: np.ndarray, cells: np.ndarray, r_max: float) -> np.ndarray:
    """Squared minimum-image lengths ``(b, P)`` of difference vectors ``dx (b, 3, P)`` (coordinate
    axis first: contiguous per coordinate, faster), exact for every pair whose minimum image is within
    ``r_max`` (<= half the smallest cell width); others come out > ``r_max**2``. Fractional rounding,
    then, for pairs still beyond ``r_max``, the 7 neighbouring images on the side their fractional
    offsets point to (the only candidates within half a cell width). ``dx`` is overwritten."""
    if not np.any(cells[:, ~np.eye(3, dtype=bool)]):
        lengths = np.diagonal(cells, axis1=1, axis2=2)[:, :, None]
        shift = np.multiply(dx, 1 / lengths)
        np.rint(shift, out=shift)
        shift *= lengths
        np.subtract(dx, shift, out=dx)
        dx *= dx
        return dx[:, 0] + dx[:, 1] + dx[:, 2]
    frac = np.matmul(np.linalg.inv(cells).transpose(0, 2, 1), dx)
    shift = np.rint(frac)
    dx -= np.matmul(cells.transpose(0, 2, 1), shift)
    d2 = dx[:, 0] ** 2 + dx[:, 1] ** 2 + dx[:, 2] ** 2
    far = np.nonzero(d2 > r_max**2)
    if far[0].size:
        sign = np.sign(frac[far[0], :, far[1]] - shift[far[0], :, far[1]])  # (m, 3)
        cell = cells[far[0]]  # (m, 3, 3)
        near = dx[far[0], :, far[1]]
        best = d2[far]
        for step in _STEPS:
            image = near - np.einsum("mk,mkl->ml", sign * step, cell)
            best = np.minimum(best, image[:, 0] ** 2 + image[:, 1] ** 2 + image[:, 2] ** 2)
        d2[far] = best
    return d2


def histogram_index(d: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each distance in ``[0, r_max]`` exactly as ``np.histogram`` with uniform ``edges``
    assigns it (half-open bins, the last one closed), so counts agree with MDAnalysis bit for bit."""
    bins = len(edges) - 1
    k = np.minimum((d * (bins / edges[-1])).astype(np.intp), bins - 1)
    k -= d < edges[k]
    k += (d >= edges[k + 1]) & (k != bins - 1)
    return k


class RDF:
    """g(r) of ``sites_b`` around ``sites_a`` (same set when ``sites_b`` is None or equal: self pairs
    excluded, each pair counted both ways, as ``InterRDF(exclusion_block=(1, 1))``). ``bins``
    histogram bins over [0, ``r_max``]; ``run`` fills ``results``: ``edges``, ``bins`` (centres),
    ``count``, ``rdf``, ``cn`` (mean number of B sites within r of an A site), ``volume`` (mean)."""

    def __init__(self, traj: Trajectory, sites_a: Sites, sites_b: Sites | None = None, *,
                 r_max: float, bins: int = 1000):
        self.traj, self.a = traj, sites_a
        self.b = sites_a if sites_b is None else sites_b
        self.same = sites_b is None or sites_b == sites_a
        self.r_max, self.n_bins = float(r_max), int(bins)
        self._pairs = np.triu_indices(self.a.n_sites, k=1) if self.same else None
        self.results = SimpleNamespace()

    def _check(self, frames: np.ndarray, cells: np.ndarray) -> None:
        """Minimum image is only exact up to half the smallest perpendicular width of the cell."""
        w = widths(cells).min(axis=1)
        bad = np.flatnonzero(self.r_max > w / 2 * (1 + 1e-12))
        if bad.size:
            i = bad[0]
            raise ValueError(f"r_max = {self.r_max} A exceeds half the smallest cell width "
                             f"({w[i] / 2:.4f} A) in frame {frames[i]}; minimum image is not valid there")

    def _distances(self, positions: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Pair distances <= r_max in one block (same set: each unordered pair once)."""
        pa = np.ascontiguousarray(self.a(positions).transpose(0, 2, 1))  # (b, 3, n_a)
        if self.same:
            i, j = self._pairs
            dx = np.take(pa, j, axis=2) - np.take(pa, i, axis=2)
        else:
            pb = np.ascontiguousarray(self.b(positions).transpose(0, 2, 1))
            dx = (pb[:, :, None, :] - pa[:, :, :, None]).reshape(len(pa), 3, -1)
        d2 = minimum_image_sq(dx, cells, self.r_max)
        d = np.sqrt(d2[d2 <= self.r_max**2 * (1 + 1e-12)])
        return d[d <= self.r_max]

    def run(self, start: int = 0, stop: int | None = None, step: int = 1, block: int | None = None) -> RDF:
        """Histogram every ``step``-th frame of ``start:stop``, ``block`` frames at a time."""
        edges = np.linspace(0.0, self.r_max, self.n_bins + 1)
        count = np.zeros(self.n_bins)
        volume, n_frames = 0.0, 0
        n_a, n_b = self.a.n_sites, self.b.n_sites
        block = block or max(1, 2**18 // max(1, n_a * n_b))  # pair temporaries of ~6 MB (cache-friendly)
        for frames, positions, cells in self.traj.blocks(start, stop, step, block):
            self._check(frames, cells)
            d = self._distances(positions, cells)
            count += np.bincount(histogram_index(d, edges), minlength=self.n_bins)
            volume += np.abs(np.linalg.det(cells)).sum()
            n_frames += len(frames)
        if n_frames == 0:
            raise ValueError("no frames selected")
        if self.same:
            count *= 2  # both orderings of each pair, as InterRDF counts them
        pairs = n_a * n_b - (n_a if self.same else 0)
        shells = 4 / 3 * np.pi * np.diff(edges**3)
        mean_volume = volume / n_frames
        r = self.results
        r.edges, r.bins, r.count, r.n_frames, r.volume = edges, 0.5 * (edges[:-1] + edges[1:]), count, n_frames, mean_volume
        r.rdf = count / (n_frames * shells * pairs / mean_volume)
        r.cn = np.cumsum(count) / (n_frames * n_a)
        return self
