"""A periodic half neighbour list built inside JIT, for D3 inside the JAX MD loop.

Pairs (i, j, image shift n) with |x_j + n @ cell - x_i| < cutoff + skin, each unordered pair-image
once: n = 0 with i < j, and the image shifts of one half-space (first non-zero component
positive) with every i, j (i = j included: an atom's own images). The shifts searched are those a
box needs at the reference cell, for boxes much smaller than the cutoff too (many images).

Fixed capacity: the list has room for ``capacity`` pairs and counts how many it found; a count
above the capacity is an overflow, which :func:`build` reports and :class:`NeighbourList` handles
by reallocating (capacity = 1.25 x count) and building again: never a silent truncation.

Rebuild criterion, valid under any cell change (NPT): with F the deformation from the reference cell
to the current one (cell = ref_cell @ F, rows are lattice vectors) and u the non-affine displacement
of each atom (x - ref_x @ F), a pair outside the list stays beyond the cutoff while
2 max|u| <= sigma_min(F) (cutoff + skin) - cutoff, sigma_min the smallest singular value of F.
Without strain that is the usual max|u| <= skin / 2; a 1 % compression of a 20 A list with a
0.5 A skin leaves 0.3 A. Positions must not be wrapped between builds (a wrap counts as a jump
and only causes a rebuild). Distances are computed in the positions' dtype: in float32, a pair
within rounding of the cutoff may be judged otherwise than in float64.

The builds and the rebuild test are jitted functions of arrays of fixed shape, so an MD loop can
call them inside JIT; :class:`NeighbourList` drives them from the host (rebuild, reallocation,
image shifts for a changed cell); ilcampaign.engine.md.jax's loop tests :func:`needs_rebuild` after every step
and stops where the list goes stale, and the host rebuilds it (with more room on overflow).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Pairs(NamedTuple):
    """A half list padded to its capacity, and where it was built."""

    i: jax.Array  # (C,) int32
    j: jax.Array  # (C,) int32
    shift: jax.Array  # (C, 3) integer image shifts, as floats
    valid: jax.Array  # (C,) bool
    count: jax.Array  # () int32: pairs found (> C: overflow)
    ref_positions: jax.Array  # (N, 3)
    ref_cell: jax.Array  # (3, 3)


def image_shifts(cell: np.ndarray, reach: float) -> np.ndarray:
    """The half-space image shifts (plus 0 first) that pairs within ``reach`` of atoms wrapped into
    ``cell`` can need: |n_k| <= ceil(reach / width_k), width_k the cell's k-th perpendicular width."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    reach_k = [int(np.ceil(reach / width)) for width in widths]
    grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in reach_k], indexing="ij"), -1).reshape(-1, 3)
    first = np.array([next((x for x in n if x != 0), 0) for n in grid])
    return np.concatenate([np.zeros((1, 3), int), grid[first > 0]]).astype(float)


@partial(jax.jit, static_argnames=("capacity",))
def _build(positions, cell, shifts, reach, *, capacity: int) -> Pairs:
    """Pairs within ``reach`` over the given image shifts, positions wrapped into the cell first."""
    n = positions.shape[0]
    frac = positions @ jnp.linalg.inv(cell)
    wraps = jnp.floor(frac)
    wrapped = (frac - wraps) @ cell
    upper = jnp.arange(n)[:, None] < jnp.arange(n)[None, :]

    def one_shift(carry, indexed):
        offset, out_i, out_j, out_s = carry
        index, shift = indexed
        d = wrapped[None, :, :] + shift @ cell - wrapped[:, None, :]
        mask = jnp.sum(d * d, axis=-1) < reach * reach
        mask = jnp.where(index == 0, mask & upper, mask).ravel()
        slot = offset + jnp.cumsum(mask, dtype=jnp.int32) - 1
        keep = mask & (slot < capacity)
        target = jnp.where(keep, slot, capacity)  # out of range: dropped by mode="drop"
        ii, jj = jnp.divmod(jnp.arange(n * n), n)
        # the shift applies to the given (unwrapped) positions: x_j + (s - k_j + k_i) @ cell - x_i
        real = shift[None, :] - wraps[jj] + wraps[ii]
        out_i = out_i.at[target].set(ii.astype(jnp.int32), mode="drop")
        out_j = out_j.at[target].set(jj.astype(jnp.int32), mode="drop")
        out_s = out_s.at[target].set(real, mode="drop")
        return (offset + jnp.sum(mask, dtype=jnp.int32), out_i, out_j, out_s), None

    start = (jnp.int32(0), jnp.zeros(capacity, jnp.int32), jnp.zeros(capacity, jnp.int32),
             jnp.zeros((capacity, 3), positions.dtype))
    (count, i, j, s), _ = jax.lax.scan(one_shift, start, (jnp.arange(shifts.shape[0]), shifts))
    valid = jnp.arange(capacity) < count
    return Pairs(i, j, s, valid, count, positions, cell)


def build(positions, cell, shifts, cutoff: float, skin: float, capacity: int) -> Pairs:
    """A list of the pairs within ``cutoff + skin`` (may overflow: check ``count > capacity``)."""
    return _build(jnp.asarray(positions), jnp.asarray(cell), jnp.asarray(shifts), cutoff + skin, capacity=capacity)


@jax.jit
def needs_rebuild(pairs: Pairs, positions, cell, cutoff, skin) -> jax.Array:
    """Whether a pair outside ``pairs`` may have come within ``cutoff`` (see the module docstring)."""
    deformation = jnp.linalg.solve(pairs.ref_cell, cell)
    moved = positions - pairs.ref_positions @ deformation
    budget = jnp.linalg.svd(deformation, compute_uv=False)[-1] * (cutoff + skin) - cutoff
    return 2 * jnp.max(jnp.linalg.norm(moved, axis=-1)) > budget


@jax.jit
def pair_vectors(pairs: Pairs, positions, cell) -> jax.Array:
    """x_j + shift @ cell - x_i for every listed pair (padding included: mask with ``valid``)."""
    return positions[pairs.j] + pairs.shift @ cell - positions[pairs.i]


class NeighbourList:
    """A half list that keeps itself valid along a trajectory: ``update(positions, cell)`` rebuilds
    when :func:`needs_rebuild` says so or when the cell no longer fits the image shifts, and
    reallocates on overflow. ``rebuilds`` and ``reallocations`` count what happened."""

    def __init__(self, cutoff: float, skin: float, capacity: int = 1024):
        self.cutoff, self.skin, self.capacity = cutoff, skin, capacity
        self.pairs: Pairs | None = None
        self.shifts: np.ndarray | None = None
        self.rebuilds = self.reallocations = 0

    def update(self, positions, cell) -> Pairs:
        """The list for this geometry (the same object while it stays valid)."""
        if self.pairs is None or self._cell_outgrown(cell) or bool(
                needs_rebuild(self.pairs, positions, cell, self.cutoff, self.skin)):
            self._rebuild(positions, cell)
        return self.pairs

    def _cell_outgrown(self, cell) -> bool:
        """Whether the current cell needs image shifts the list did not search."""
        needed = image_shifts(np.asarray(cell), self.cutoff + self.skin)
        return len(needed) > len(self.shifts) or not np.all(np.abs(needed).max(0) <= np.abs(self.shifts).max(0))

    def _rebuild(self, positions, cell) -> None:
        self.shifts = image_shifts(np.asarray(cell), self.cutoff + self.skin)
        pairs = build(positions, cell, self.shifts, self.cutoff, self.skin, self.capacity)
        while int(pairs.count) > self.capacity:  # overflow: more room, and the same build again
            self.capacity = int(1.25 * int(pairs.count)) + 1
            self.reallocations += 1
            pairs = build(positions, cell, self.shifts, self.cutoff, self.skin, self.capacity)
        self.pairs = pairs
        self.rebuilds += 1
