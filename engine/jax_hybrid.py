"""D3(BJ) on engine.jax_neighbours' half list, as a term of the energy that JAX MD integrates (issue 12).

The hybrid model of the paper is MLP + D3; engine.jax_md adds :func:`d3_energy` to apax's energy so
that the whole step (MLP, D3, integrator, both neighbour lists) runs inside one JIT loop. The terms
are those of engine.jax_d3 (torch-dftd's conventions, tested against it) rearranged for MD:

* the list is a half list over pair-images within ``cutoff + skin`` built inside JIT; every listed
  pair-image counts once (torch-dftd sums both directions with a factor 1/2; an atom's own image
  n and -n is listed once, as n) and coordination numbers get each term at both ends;
* C6 is computed once per atom pair per call (an N x N matrix from the upper triangle), never per
  image, and gathered by the pairs;
* pair terms are computed in ``dtype`` and summed in float64;
* the tail correction (:func:`engine.jax_d3.tail_terms`' energy) uses the same matrix for S6 and S8;
  like the ASE path's, it adds no force. Its pressure is not the volume derivative of this energy,
  so an NPT run with the tail goes through ASE (engine.d3), whose stress has the right term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ase.units import Bohr

from engine.jax_d3 import (
    D3_AUTOANG,
    D3_AUTOEV,
    DIST_EPS,
    K1,
    D3Params,
    _c6,
    _species,
    load_tables,
)
from engine.jax_neighbours import Pairs, image_shifts

#: capacity of a new D3 list over the pair-images found (jax_md's multiplier for its lists)
CAPACITY_MULTIPLIER = 1.25


@dataclass(frozen=True)
class D3Term:
    """The D3(BJ) term of a hybrid model: functional parameters, pair and coordination-number
    cutoffs and list skin (Angstrom), working dtype and tail correction (the spec's d3 section)."""

    params: D3Params
    cutoff: float
    cn_cutoff: float
    skin: float = 0.5
    dtype: str = "float32"
    tail_correction: bool = False

    @classmethod
    def from_section(cls, functional: str, damping: str, cutoff: float, cn_cutoff: float, skin: float,
                     dtype: str, tail_correction: bool) -> D3Term:
        """The term of a spec's d3 section; ValueError for zero damping (only BJ runs in JAX)."""
        if damping != "bj":
            raise ValueError(f"D3 in JAX MD implements BJ damping only, not {damping!r}")
        return cls(D3Params.from_functional(functional), float(cutoff), float(min(cn_cutoff, cutoff)),
                   float(skin), dtype, bool(tail_correction))

    @property
    def reach(self) -> float:
        return self.cutoff + self.skin


class D3Inputs(NamedTuple):
    """Arrays the jitted D3 energy takes as arguments (so one compiled loop serves any box of the same
    atom count and shift count): species indices, the tables reduced to them, and the image shifts."""

    species: jax.Array  # (N,) int32
    tables: tuple  # c6ab, r0ab, rcov, r2r4 over the species present
    shifts: jax.Array  # (S, 3) the half-space image shifts the list searches


def d3_inputs(term: D3Term, numbers: np.ndarray, cell: np.ndarray) -> D3Inputs:
    """The inputs for atoms ``numbers`` in ``cell`` (rows are lattice vectors, Angstrom)."""
    species, tables = _species(numbers, load_tables(), jnp.dtype(term.dtype))
    return D3Inputs(species, tables, jnp.asarray(image_shifts(np.asarray(cell, dtype=float), term.reach)))


def d3_energy(positions, cell, inputs: D3Inputs, pairs: Pairs, term: D3Term) -> jax.Array:
    """D3(BJ) energy (eV, float64) of Cartesian ``positions`` (A) in ``cell`` from a half list valid for
    them (pairs beyond ``cutoff`` are masked at the current geometry). Differentiable in positions."""
    dtype = jnp.dtype(term.dtype)
    c6ab, _, rcov, r2r4 = inputs.tables
    species, n = inputs.species, positions.shape[0]
    positions, cell = positions.astype(dtype), cell.astype(dtype)
    i, j = pairs.i, pairs.j
    d = positions[j] + pairs.shift.astype(dtype) @ cell - positions[i]
    d2 = jnp.where(pairs.valid, jnp.sum(d * d, axis=-1), 1.0)  # padding: 1 A^2, finite gradients
    in_cutoff = pairs.valid & (d2 <= term.cutoff**2)
    r = jnp.sqrt(d2 / D3_AUTOANG**2 + DIST_EPS)  # bohr
    in_cn = in_cutoff & (r <= term.cn_cutoff / Bohr)  # torch-dftd converts cutoffs with ASE's Bohr
    zi, zj = species[i], species[j]
    damp = jnp.where(in_cn, 1.0 / (1.0 + jnp.exp(-K1 * ((rcov[zi] + rcov[zj]) / r - 1.0))), 0.0)
    cn = jax.ops.segment_sum(damp, i, num_segments=n) + jax.ops.segment_sum(damp, j, num_segments=n)

    upper_i, upper_j = np.triu_indices(n)
    c6_upper = _c6(species[upper_i], species[upper_j], cn[upper_i], cn[upper_j], c6ab)
    c6_matrix = jnp.zeros((n, n), dtype).at[upper_i, upper_j].set(c6_upper).at[upper_j, upper_i].set(c6_upper)
    c6 = c6_matrix[i, j]
    c8 = 3 * c6 * r2r4[zi] * r2r4[zj]
    radius = term.params.a1 * jnp.sqrt(c8 / c6) + term.params.a2
    r6, radius6 = r**6, radius**6
    pair = term.params.s6 * c6 / (r6 + radius6) + term.params.s8 * c8 / (r6 * r**2 + radius6 * radius**2)
    energy = -jnp.sum(jnp.where(in_cutoff, pair, 0.0).astype(jnp.float64))
    if term.tail_correction:
        s6 = jax.lax.stop_gradient(jnp.sum(c6_matrix.astype(jnp.float64)))
        s8 = jax.lax.stop_gradient(3 * jnp.sum(c6_matrix.astype(jnp.float64) * jnp.outer(r2r4[species], r2r4[species])))
        rc, volume = term.cutoff / D3_AUTOANG, jnp.abs(jnp.linalg.det(cell.astype(jnp.float64))) / D3_AUTOANG**3
        energy = energy - 2 * jnp.pi / volume * (term.params.s6 * s6 / (3 * rc**3) + term.params.s8 * s8 / (5 * rc**5))
    return D3_AUTOEV * energy
