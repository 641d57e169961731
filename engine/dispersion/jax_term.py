"""D3(BJ) on ilcampaign.engine.dispersion.neighbours' half list, as a term of the energy that JAX MD integrates.

The hybrid model of the paper is MLP + D3; ilcampaign.engine.md.jax adds :func:`d3_energy` to apax's energy so
that the whole step (MLP, D3, integrator, both neighbour lists) runs inside one JIT loop. The terms
are those of ilcampaign.engine.dispersion.jax_d3 (torch-dftd's conventions, tested against it) rearranged for MD:

* the list is a half list over pair-images within ``cutoff + skin`` built inside JIT; every listed
  pair-image counts once (torch-dftd sums both directions with a factor 1/2; an atom's own image
  n and -n is listed once, as n) and coordination numbers get each term at both ends;
* C6 is computed once per atom pair per call (an N x N matrix from the upper triangle), never per
  image, and gathered by the pairs;
* the gradient is written out per pair (a custom VJP: one sweep over the pairs, the C6 matrix's
  dependence on the coordination numbers by autodiff over N x N), not traced through every pair op;
* pair terms are computed in ``dtype`` and summed in float64;
* the tail correction (``tail.tail_terms``' energy) uses the same matrix for S6 and S8;
  like the ASE path's, it adds no force. Its pressure is not the volume derivative of this energy,
  so an NPT run with the tail goes through ASE (ilcampaign.engine.dispersion.ase_hybrid), whose stress has the right term.

:func:`near_energy` is the term's short range on another list (jax_md's full list of the MLP),
switched off smoothly at a radius: multiple time stepping (ilcampaign.engine.md.jax_mts) integrates
it every step and the rest of the term, the whole energy less it, every k steps. Most of the D3
force is intramolecular and follows the bond and angle vibrations; beyond 5 A it changes about
ten times more slowly (docs/explanation/mts.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ase.units import Bohr

from ilcampaign.engine.dispersion.jax_d3 import (
    D3_AUTOANG,
    D3_AUTOEV,
    DIST_EPS,
    D3Params,
    c6_coefficient,
    bj_pair,
    cn_damping,
    species_tables,
    load_tables,
)
from ilcampaign.engine.dispersion.neighbours import Pairs, image_shifts

if TYPE_CHECKING:
    from ilcampaign.campaign.spec import DispersionCorrection


#: the short range of :func:`near_energy` is switched off over its last SWITCH_WIDTH A
SWITCH_WIDTH = 1.0


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

    @classmethod
    def from_spec(cls, section: DispersionCorrection, cutoff: float | None = None) -> D3Term:
        """The term of a spec's d3 section (``cutoff`` in A instead of the section's, if given)."""
        return cls.from_section(section.functional, section.damping, section.cutoff if cutoff is None else cutoff,
                                section.cn_cutoff, section.skin, section.dtype, section.tail_correction)

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
    species, tables = species_tables(numbers, load_tables(), jnp.dtype(term.dtype))
    return D3Inputs(species, tables, jnp.asarray(image_shifts(np.asarray(cell, dtype=float), term.reach)))


def d3_energy(positions, cell, inputs: D3Inputs, pairs: Pairs, term: D3Term) -> jax.Array:
    """D3(BJ) energy (eV, float64) of Cartesian ``positions`` (A) in ``cell`` from a half list valid for
    them (pairs beyond ``cutoff`` are masked at the current geometry). Differentiable in positions
    and cell, through the pair vectors (:func:`_pair_dispersion` gives their gradient)."""
    dtype = jnp.dtype(term.dtype)
    positions, cell = positions.astype(dtype), cell.astype(dtype)
    d = positions[pairs.j] + pairs.shift.astype(dtype) @ cell - positions[pairs.i]
    energy, s6, s8 = _pair_dispersion(term, d, pairs.i, pairs.j, pairs.valid, inputs.species, inputs.tables)
    if term.tail_correction:  # S6 and S8 carry no gradient: the tail adds no force
        rc, volume = term.cutoff / D3_AUTOANG, jnp.abs(jnp.linalg.det(cell.astype(jnp.float64))) / D3_AUTOANG**3
        energy = energy - 2 * jnp.pi / volume * (term.params.s6 * s6 / (3 * rc**3) + term.params.s8 * s8 / (5 * rc**5))
    return D3_AUTOEV * energy


def _c6_matrix(cn, species, c6ab):
    """C6 of every atom pair (N x N, symmetric) at coordination numbers ``cn``, from the upper triangle."""
    n = species.shape[0]
    upper_i, upper_j = np.triu_indices(n)
    c6_upper = c6_coefficient(species[upper_i], species[upper_j], cn[upper_i], cn[upper_j], c6ab)
    return jnp.zeros((n, n), cn.dtype).at[upper_i, upper_j].set(c6_upper).at[upper_j, upper_i].set(c6_upper)


def _forward(term: D3Term, d, i, j, valid, species, tables):
    """(pair energy in hartree, S6, S8) of pair vectors ``d`` (A) and what the gradient needs; a
    pair's energy is -C6 h(r) (ilcampaign.engine.dispersion.jax_d3.bj_pair)."""
    c6ab, _, rcov, r2r4 = tables
    d2 = jnp.where(valid, jnp.sum(d * d, axis=-1), 1.0)  # padding: 1 A^2, finite everywhere
    in_cutoff = valid & (d2 <= term.cutoff**2)
    r = jnp.sqrt(d2 / D3_AUTOANG**2 + DIST_EPS)  # bohr
    in_cn = in_cutoff & (r <= term.cn_cutoff / Bohr)  # torch-dftd converts cutoffs with ASE's Bohr
    zi, zj = species[i], species[j]
    damp, ddamp = cn_damping(r, rcov[zi] + rcov[zj])
    damp, ddamp = jnp.where(in_cn, damp, 0.0), jnp.where(in_cn, ddamp, 0.0)
    n = species.shape[0]
    cn = jax.ops.segment_sum(damp, i, num_segments=n) + jax.ops.segment_sum(damp, j, num_segments=n)
    c6_matrix = _c6_matrix(cn, species, c6ab)
    c6 = c6_matrix[i, j]
    h, dh = bj_pair(r, 3 * r2r4[zi] * r2r4[zj], term.params)
    energy = -jnp.sum(jnp.where(in_cutoff, c6 * h, 0.0).astype(jnp.float64))
    c6_64 = c6_matrix.astype(jnp.float64)
    s6, s8 = jnp.sum(c6_64), 3 * jnp.sum(c6_64 * jnp.outer(r2r4[species], r2r4[species]))
    return (energy, s6, s8), (d, r, in_cutoff, h, dh, ddamp, c6, cn, i, j, species, tables)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _pair_dispersion(term: D3Term, d, i, j, valid, species, tables):
    """(pair energy in hartree, S6, S8) of the listed pair vectors ``d``; only the energy has a
    gradient, written out per pair so that the backward pass is one sweep over the pairs:

        dE/dr_p = -C6_p h'(r_p) + (dE/dCN_i + dE/dCN_j) dCN/dr_p,  dE/dCN from the N x N C6 matrix.
    """
    return _forward(term, d, i, j, valid, species, tables)[0]


def _pair_dispersion_fwd(term, d, i, j, valid, species, tables):
    return _forward(term, d, i, j, valid, species, tables)


def _pair_dispersion_bwd(term, residuals, cotangents):
    d, r, in_cutoff, h, dh, ddamp, c6, cn, i, j, species, tables = residuals
    g = cotangents[0]  # S6 and S8 are constants to the gradient
    n, dtype = species.shape[0], d.dtype
    weight = jnp.zeros((n, n), dtype).at[i, j].add(jnp.where(in_cutoff, -h, 0.0))  # dE / dC6_ij per image
    _, c6_vjp = jax.vjp(lambda x: _c6_matrix(x, species, tables[0]), cn)
    (dcn,) = c6_vjp(weight)
    de_dr = jnp.where(in_cutoff, -c6 * dh, 0.0) + (dcn[i] + dcn[j]) * ddamp
    dd = (g * (de_dr / (r * D3_AUTOANG**2)))[:, None].astype(dtype) * d
    return dd, None, None, None, None, None


_pair_dispersion.defvjp(_pair_dispersion_fwd, _pair_dispersion_bwd)


def switch(r, reach: float, width: float = SWITCH_WIDTH):
    """1 up to ``reach - width``, 0 from ``reach`` on, and the quintic smoothstep between (continuous
    to its second derivative)."""
    x = jnp.clip((reach - r) / width, 0.0, 1.0)
    return x * x * x * (10.0 + x * (6.0 * x - 15.0))


def near_energy(d, i, j, valid, inputs: D3Inputs, term: D3Term, reach: float) -> jax.Array:
    """The short-range part of the D3 energy (eV, float64) on a full list (each pair in both
    directions, as jax_md lists them): pair vectors ``d`` (A) of the listed pairs (i, j), each
    pair's term and its coordination-number count weighted by :func:`switch` at ``reach`` (so the
    coordination numbers are those of the short range), C6 per listed pair. Smooth in the
    positions, so a split E_D3 = near + (E_D3 - near) is exact; gradients by autodiff (few pairs)."""
    c6ab, _, rcov, r2r4 = inputs.tables
    dtype = jnp.dtype(term.dtype)
    d = d.astype(dtype)
    d2 = jnp.where(valid, jnp.sum(d * d, axis=-1), 1.0)
    weight = jnp.where(valid & (d2 <= term.cutoff**2), switch(jnp.sqrt(d2), reach), 0.0)
    r = jnp.sqrt(d2 / D3_AUTOANG**2 + DIST_EPS)  # bohr
    zi, zj = inputs.species[i], inputs.species[j]
    damp, _ = cn_damping(r, rcov[zi] + rcov[zj])
    counted = jnp.where(r <= term.cn_cutoff / Bohr, weight * damp, 0.0)
    cn = jax.ops.segment_sum(counted, i, num_segments=inputs.species.shape[0])
    h, _ = bj_pair(r, 3 * r2r4[zi] * r2r4[zj], term.params)
    c6 = c6_coefficient(zi, zj, cn[i], cn[j], c6ab)
    return D3_AUTOEV * -0.5 * jnp.sum((weight * c6 * h).astype(jnp.float64))
