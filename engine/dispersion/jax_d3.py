"""Grimme D3(BJ) dispersion in JAX, reproducing torch-dftd (``engine/dispersion/torch_dftd.py``'s backend) exactly.

Everything follows torch-dftd 0.5.x (``torch_dftd/functions/dftd3.py``, ``nn/dftd3_module.py``,
``nn/base_dftd_module.py``):

* reference tables (``c6ab``, ``r0ab``, ``rcov``, ``r2r4``) are read at run time from the installed
  package's ``nn/params/dftd3_params.npz`` without importing torch (the package is located with
  ``importlib.util.find_spec``, which does not execute its ``__init__``);
* functional parameters come from torch-dftd's ``dftd3_xc_params`` (a pure-Python module; the
  package ``__init__`` only imports its version, so torch is not imported). B97-3c is ``"b97-3c"``:
  s6 1.0, a1 (``rs6``) 0.37, s8 (``s18``) 1.5, a2 (``rs18``) 4.1;
* units: positions are converted to bohr with Grimme's ``d3_autoang = 0.52917726`` while the
  coordination-number cutoff is converted with ASE's ``Bohr``; energies with ``d3_autoev = 27.21138505``;
* distances are ``sqrt(|d|^2 + 1e-20)`` (bohr); coordination numbers sum, over the listed directed pairs
  within ``cn_cutoff`` (own periodic images included), ``1 / (1 + exp(-16 (rcov_i + rcov_j) / r + 16))``;
  ``cn_cutoff`` larger than ``cutoff`` is lowered to ``cutoff``;
* C6 is interpolated with a softmax of ``-4 ((CN_ref,i - CN_i)^2 + (CN_ref,j - CN_j)^2)`` over the
  references with ``C6_ref > 0``; ``C8 = 3 C6 r2r4_i r2r4_j``; BJ damping ``R0 = a1 sqrt(C8 / C6) + a2``;
  the pair energy ``-1/2 (s6 C6 / (r^6 + R0^6) + s8 C8 / (r^8 + R0^8))`` is summed over *directed*
  pairs (both i->j and j->i, the 1/2 undoing the double counting), including an atom's own images;
* the optional three-body (ATM, torch-dftd ``abc=True``) term uses triangles whose three sides are all
  within ``cn_cutoff``, enumerated and weighted (multiplicity 1, 2 or 3) as torch-dftd's
  ``calc_triplets`` does, zero damping with ``alp + 2 = 16`` and ``r0ab``, ``C9 = sqrt(C6_ij C6_jk C6_ik)``;
* per-pair (and per-triplet) terms are computed in the working dtype and summed in float64.

Forces are ``-jax.grad`` of the energy; the stress is the derivative with respect to a symmetric strain
applied to positions and cell, divided by the volume (ASE's sign convention and Voigt order
xx, yy, zz, yz, xz, xy), which equals torch-dftd's virial expression.

Neighbours: this module's pair and triplet lists are built with numpy outside JIT
(:func:`build_neighbours`, :func:`build_triplets`), optionally with a skin and padded to a fixed capacity;
the jitted energy masks pairs beyond ``cutoff``/``cn_cutoff`` (inclusive) at the current geometry, so a list built
with a skin gives the same result as a fresh one while no atom has moved more than ``skin / 2``
(strain ignored). D3 inside the JAX MD loop uses ilcampaign.engine.dispersion.neighbours' in-JIT half list instead
(ilcampaign.engine.dispersion.jax_term).

float64 needs JAX's x64 mode, which this module switches on at import (as apax does).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list
from ase.units import Bohr

jax.config.update("jax_enable_x64", True)

D3_AUTOANG = 0.52917726  # torch-dftd's (Grimme's) bohr in Angstrom, used for positions
D3_AUTOEV = 27.21138505  # torch-dftd's (Grimme's) hartree in eV
K1, K3 = 16.0, -4.0
DIST_EPS = 1e-20  # torch-dftd's calc_distances: sqrt(d^2 + eps)
TIE_MARGIN = 1e-6  # A: lists include pairs at exactly the cutoff (pymatgen's list in torch-dftd does)
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))  # ASE's order: xx, yy, zz, yz, xz, xy


def _package_dir() -> Path:
    """torch-dftd's installed package folder, found without executing the package."""
    spec = importlib.util.find_spec("torch_dftd")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torch-dftd is not installed: its D3 reference tables are needed")
    return Path(next(iter(spec.submodule_search_locations)))


class D3Tables(NamedTuple):
    """torch-dftd's reference data, indexed by atomic number (row 0 unused)."""

    c6ab: np.ndarray  # (95, 95, 5, 5, 3): C6_ref, CN_ref,i, CN_ref,j (bohr, hartree units)
    r0ab: np.ndarray  # (95, 95) bohr
    rcov: np.ndarray  # (95,) bohr, already scaled by k2 = 4/3
    r2r4: np.ndarray  # (95,)


@lru_cache(maxsize=1)
def load_tables() -> D3Tables:
    """torch-dftd's ``dftd3_params.npz`` (float64 numpy arrays)."""
    path = _package_dir() / "nn" / "params" / "dftd3_params.npz"
    with np.load(path) as data:
        return D3Tables(*(np.array(data[key], dtype=np.float64) for key in D3Tables._fields))


@dataclass(frozen=True)
class D3Params:
    """D3(BJ) functional parameters (torch-dftd names: s6, rs6 = a1, s18 = s8, rs18 = a2, alp)."""

    s6: float
    a1: float
    s8: float
    a2: float
    alp: float = 14.0  # only the three-body term uses it (alp + 2)

    @classmethod
    def from_functional(cls, xc: str = "b97-3c") -> D3Params:
        """BJ parameters of any functional torch-dftd knows (e.g. "b97-3c", "pbe", "b3-lyp")."""
        # a pure-Python module; torch_dftd's __init__ only imports its version, so torch stays unimported
        from torch_dftd.dftd3_xc_params import get_dftd3_default_params

        p = get_dftd3_default_params(damping="bj", xc=xc)
        return cls(s6=p["s6"], a1=p["rs6"], s8=p["s18"], a2=p["rs18"], alp=p["alp"])


B97_3C = D3Params(s6=1.0, a1=0.37, s8=1.5, a2=4.1)


class Neighbours(NamedTuple):
    """Directed pairs i -> j + shift @ cell (both directions listed), padded to a fixed size.

    ``pair`` indexes the distinct atom pairs (``pair_i``, ``pair_j``), for which C6 is computed once
    (C6 depends on the atoms' coordination numbers only, not on the image).
    """

    idx_i: np.ndarray  # (P,) int32
    idx_j: np.ndarray  # (P,) int32
    shifts: np.ndarray  # (P, 3) integer cell shifts, float
    valid: np.ndarray  # (P,) bool, False for padding
    pair: np.ndarray  # (P,) int32 index into pair_i/pair_j
    pair_i: np.ndarray  # (U,) int32
    pair_j: np.ndarray  # (U,) int32


class Triplets(NamedTuple):
    """Three-body triangles a (home cell), b + shift_b @ cell, c + shift_c @ cell, padded."""

    a: np.ndarray  # (T,) int32
    b: np.ndarray
    c: np.ndarray
    shift_b: np.ndarray  # (T, 3) float
    shift_c: np.ndarray
    pair_ab: np.ndarray  # (T,) int32 indices into Neighbours.pair_i/pair_j
    pair_ac: np.ndarray
    pair_bc: np.ndarray
    multiplicity: np.ndarray  # (T,) float: 1, 2 or 3 as torch-dftd's calc_triplets
    valid: np.ndarray  # (T,) bool


def _pad(array: np.ndarray, size: int, fill=0) -> np.ndarray:
    out = np.full((size, *array.shape[1:]), fill, dtype=array.dtype)
    out[: len(array)] = array
    return out


def _capacity(n: int, capacity: int | None, what: str) -> int:
    if capacity is None:
        return max(n, 1)
    if n > capacity:
        raise ValueError(f"{n} {what} exceed the capacity {capacity}")
    return capacity


def _vectors(positions, cell, i, j, shifts):
    return positions[j] + shifts @ cell - positions[i]


def build_neighbours(positions: np.ndarray, cell: np.ndarray | None, pbc, cutoff: float, skin: float = 0.0,
                     capacity: int | None = None) -> Neighbours:
    """All directed pairs (with every periodic image, an atom's own images included) within
    ``cutoff + skin`` Angstrom; ``capacity`` pads to a fixed number of pairs (default: exactly as many)."""
    positions = np.asarray(positions, dtype=np.float64)
    n = len(positions)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    radius = cutoff + skin + TIE_MARGIN
    if pbc.any():
        i, j, s = primitive_neighbor_list("ijS", pbc, np.asarray(cell, dtype=np.float64), positions, radius,
                                          self_interaction=False, use_scaled_positions=False)
        shifts = s.astype(np.float64)
    else:
        d2 = ((positions[None, :, :] - positions[:, None, :]) ** 2).sum(-1)
        i, j = np.nonzero((d2 <= radius**2) & ~np.eye(n, dtype=bool))
        shifts = np.zeros((len(i), 3))
    order = np.lexsort((j, i))
    i, j, shifts = i[order], j[order], shifts[order]
    keys = i.astype(np.int64) * n + j
    unique, pair = np.unique(keys, return_inverse=True)
    size = _capacity(len(i), capacity, "pairs")
    return Neighbours(
        idx_i=_pad(i.astype(np.int32), size), idx_j=_pad(j.astype(np.int32), size), shifts=_pad(shifts, size),
        valid=_pad(np.ones(len(i), bool), size, False), pair=_pad(pair.astype(np.int32).ravel(), size),
        pair_i=(unique // n).astype(np.int32) if len(unique) else np.zeros(1, np.int32),
        pair_j=(unique % n).astype(np.int32) if len(unique) else np.zeros(1, np.int32))


def build_triplets(positions: np.ndarray, cell: np.ndarray | None, neighbours: Neighbours, cn_cutoff: float,
                   skin: float = 0.0, capacity: int | None = None) -> Triplets:
    """Three-body triangles with all sides within ``cn_cutoff + skin``, enumerated as torch-dftd's
    ``calc_triplets``: for each atom a, pairs of listed edges b -> a, c -> a with b, c >= a; b sits at
    ``positions[b] - S_ba @ cell``. ``cn_cutoff`` must not exceed the neighbour list's cutoff."""
    positions = np.asarray(positions, dtype=np.float64)
    n = len(positions)
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    radius2 = (cn_cutoff + skin + TIE_MARGIN) ** 2
    valid = neighbours.valid
    dst, src, s = neighbours.idx_i[valid], neighbours.idx_j[valid], neighbours.shifts[valid]
    d2 = (_vectors(positions, cell, dst, src, s) ** 2).sum(-1)
    keep = (d2 <= radius2) & (dst >= src)
    dst, src, s = dst[keep], src[keep], s[keep]
    order = np.argsort(src, kind="stable")
    dst, src, s = dst[order], src[order], s[order]
    starts = np.searchsorted(src, np.arange(n + 1))
    first, second = [], []
    for atom in range(n):
        lo, hi = starts[atom], starts[atom + 1]
        p, q = np.triu_indices(hi - lo, k=1)
        first.append(p + lo)
        second.append(q + lo)
    p, q = np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64)
    a, b, c, sb, sc = src[p], dst[p], dst[q], -s[p], -s[q]
    rbc = positions[c] + sc @ cell - positions[b] - sb @ cell
    close = (rbc**2).sum(-1) <= radius2
    a, b, c, sb, sc = a[close], b[close], c[close], sb[close], sc[close]
    multiplicity = np.where(b == c, np.where(a == b, 3.0, 1.0), np.where((a == b) | (a == c), 2.0, 1.0))

    keys = neighbours.pair_i.astype(np.int64) * n + neighbours.pair_j

    def pair_index(x, y):
        index = np.searchsorted(keys, x.astype(np.int64) * n + y)
        if len(x) and (index.max() >= len(keys) or (keys[index] != x.astype(np.int64) * n + y).any()):
            raise ValueError("a triplet side is missing from the neighbour list (cn_cutoff > cutoff?)")
        return index.astype(np.int32)

    size = _capacity(len(a), capacity, "triplets")
    return Triplets(
        a=_pad(a.astype(np.int32), size), b=_pad(b.astype(np.int32), size), c=_pad(c.astype(np.int32), size),
        shift_b=_pad(sb, size), shift_c=_pad(sc, size), pair_ab=_pad(pair_index(a, b), size),
        pair_ac=_pad(pair_index(a, c), size), pair_bc=_pad(pair_index(b, c), size),
        multiplicity=_pad(multiplicity, size, 1.0), valid=_pad(np.ones(len(a), bool), size, False))


def _distance(d, valid):
    """torch-dftd's sqrt(|d|^2 + 1e-20); padding gets 1 bohr so that masked terms keep finite gradients."""
    d2 = jnp.where(valid, jnp.sum(d**2, axis=-1), 1.0)
    return jnp.sqrt(d2 + DIST_EPS)


def c6_coefficient(zi, zj, nci, ncj, c6ab):
    """torch-dftd's _getc6_impl: softmax-weighted reference C6 (c6ab already reduced to species)."""
    ref = c6ab[zi, zj]  # (U, 25, 3)
    cn0, cn1, cn2 = ref[..., 0], ref[..., 1], ref[..., 2]
    r = (cn1 - nci[:, None]) ** 2 + (cn2 - ncj[:, None]) ** 2
    k3_rnc = jnp.where(cn0 > 0.0, K3 * r, -1.0e20)
    return jnp.sum(jax.nn.softmax(k3_rnc, axis=1) * cn0, axis=1)


def cn_damping(r, rco):
    """The coordination-number count of a pair at ``r`` (bohr), rco the summed covalent radii, and its
    derivative in r: 1 / (1 + exp(-K1 (rco / r - 1)))."""
    ex = jnp.exp(-K1 * (rco / r - 1.0))
    return 1.0 / (1.0 + ex), -K1 * rco * ex / (r * (1.0 + ex)) ** 2


def bj_pair(r, q, params: D3Params):
    """The BJ-damped pair function h(r) and dh/dr of a pair at ``r`` (bohr) with q = C8 / C6 =
    3 r2r4_i r2r4_j: the pair's energy is -C6 h(r), h = s6 / (r^6 + R0^6) + s8 q / (r^8 + R0^8),
    R0 = a1 sqrt(q) + a2 (independent of C6, so the C6 matrix can be computed apart)."""
    radius = params.a1 * jnp.sqrt(q) + params.a2
    r2 = r * r
    r6, radius6 = r2 * r2 * r2, radius**6
    r8, radius8 = r6 * r2, radius6 * radius**2
    h = params.s6 / (r6 + radius6) + params.s8 * q / (r8 + radius8)
    dh = -6 * params.s6 * r6 / (r * (r6 + radius6) ** 2) - 8 * params.s8 * q * r8 / (r * (r8 + radius8) ** 2)
    return h, dh


def _pairs_and_cn(positions, cell, species, neighbours, rcov, cutoff, cn_cutoff):
    """(pair distances in bohr, pairs within ``cutoff``, coordination numbers) as torch-dftd has them."""
    dtype = positions.dtype
    cnthr_bohr = min(cn_cutoff, cutoff) / Bohr  # torch-dftd converts cutoffs with ASE's Bohr
    i, j, valid = neighbours.idx_i, neighbours.idx_j, neighbours.valid
    shift = neighbours.shifts.astype(dtype) @ (cell / D3_AUTOANG)
    r = _distance(positions[i] / D3_AUTOANG - (positions[j] / D3_AUTOANG + shift), valid)
    d_ang = positions[i] - (positions[j] + neighbours.shifts.astype(dtype) @ cell)
    in_cutoff = valid & (jnp.sum(d_ang**2, axis=-1) <= cutoff**2)  # the pair list torch-dftd would build
    in_cn = in_cutoff & (r <= cnthr_bohr)
    damp, _ = cn_damping(r, rcov[species[i]] + rcov[species[j]])
    cn = jax.ops.segment_sum(jnp.where(in_cn, damp, 0.0), i, num_segments=positions.shape[0])
    return r, in_cutoff, cn


@partial(jax.jit, static_argnames=("params", "cutoff", "cn_cutoff"))
def _energy(positions, cell, species, neighbours, triplets, tables, params, cutoff, cn_cutoff):
    c6ab, r0ab, rcov, r2r4 = tables
    dtype = positions.dtype
    cnthr_bohr = min(cn_cutoff, cutoff) / Bohr
    cell_b = cell / D3_AUTOANG
    pos = positions / D3_AUTOANG
    i, j = neighbours.idx_i, neighbours.idx_j
    r, in_cutoff, cn = _pairs_and_cn(positions, cell, species, neighbours, rcov, cutoff, cn_cutoff)
    zi, zj = species[i], species[j]

    pi, pj = neighbours.pair_i, neighbours.pair_j
    c6_pairs = c6_coefficient(species[pi], species[pj], cn[pi], cn[pj], c6ab)
    h, _ = bj_pair(r, 3 * r2r4[zi] * r2r4[zj], params)
    energy = jnp.sum(jnp.where(in_cutoff, -0.5 * c6_pairs[neighbours.pair] * h, 0.0).astype(jnp.float64))

    if triplets is not None:
        a, b, c = triplets.a, triplets.b, triplets.c
        tv = triplets.valid
        pa = pos[a]
        pb = pos[b] + triplets.shift_b.astype(dtype) @ cell_b
        pc = pos[c] + triplets.shift_c.astype(dtype) @ cell_b
        r_ij, r_ik, r_jk = _distance(pa - pb, tv), _distance(pa - pc, tv), _distance(pb - pc, tv)
        inside = tv & (r_ij <= cnthr_bohr) & (r_ik <= cnthr_bohr) & (r_jk <= cnthr_bohr)
        za, zb, zc = species[a], species[b], species[c]
        rrjk, rrij, rrik = r0ab[zc, zb] / r_jk, r0ab[zb, za] / r_ij, r0ab[za, zc] / r_ik
        third = 1.0 / 3.0
        rr3_jk, rr3_ij, rr3_ik = (1.0 / rrjk) ** third, (1.0 / rrij) ** third, (1.0 / rrik) ** third
        rav = (4.0 / 3.0) / (rr3_jk * rr3_ij * rr3_ik)
        damp3 = 1.0 / (1.0 + 6.0 * rav ** (params.alp + 2.0))
        c9 = jnp.sqrt(c6_pairs[triplets.pair_bc] * c6_pairs[triplets.pair_ab] * c6_pairs[triplets.pair_ac])
        r2ik, r2jk, r2ij = r_ik**2, r_jk**2, r_ij**2
        t1 = r2jk + r2ij - r2ik
        t2 = r2ij + r2ik - r2jk
        t3 = r2ik + r2jk - r2ij
        tmp2 = r2ik * r2jk * r2ij
        ang = (0.375 * t1 * t2 * t3 / tmp2 + 1.0) / (tmp2**1.5)
        e3 = damp3 * c9 * ang / triplets.multiplicity.astype(dtype)
        energy = energy + jnp.sum(jnp.where(inside, e3, 0.0).astype(jnp.float64))
    return D3_AUTOEV * energy


@partial(jax.jit, static_argnames=("cutoff", "cn_cutoff"))
def _coefficient_sums(positions, cell, species, neighbours, tables, cutoff, cn_cutoff):
    """(S6, S8): C6_ij and C8_ij summed over all ordered atom pairs i, j (i = j included) at the
    current coordination numbers (hartree bohr^6, hartree bohr^8); one row of pairs at a time."""
    c6ab, _, rcov, r2r4 = tables
    _, _, cn = _pairs_and_cn(positions, cell, species, neighbours, rcov, cutoff, cn_cutoff)

    def row(i):
        c6 = c6_coefficient(jnp.full_like(species, species[i]), species, jnp.full_like(cn, cn[i]), cn, c6ab)
        return jnp.sum(c6), jnp.sum(3 * c6 * r2r4[species[i]] * r2r4[species])

    s6, s8 = jax.lax.map(row, jnp.arange(positions.shape[0]))
    return jnp.sum(s6.astype(jnp.float64)), jnp.sum(s8.astype(jnp.float64))


def tail_sums(atoms: Atoms, cn_cutoff: float) -> tuple[float, float]:
    """(S6, S8) of ``tail.tail_terms`` for ``atoms``: C6_ij and C8_ij (hartree bohr^6, ^8) summed over all
    ordered atom pairs, i = j included, at the coordination numbers a D3 run with ``cn_cutoff`` finds."""
    if not np.all(atoms.pbc):
        raise ValueError("a tail correction needs a box periodic in all three directions")
    cell, positions = np.asarray(atoms.cell), atoms.get_positions()
    neighbours = build_neighbours(positions, cell, atoms.pbc, cn_cutoff)
    species, tables = species_tables(atoms.numbers, load_tables(), jnp.float64)
    s6, s8 = _coefficient_sums(jnp.asarray(positions), jnp.asarray(cell), species, _device(neighbours, jnp.float64),
                               tables, float(cn_cutoff), float(cn_cutoff))
    return float(s6), float(s8)


def species_tables(numbers, tables: D3Tables, dtype):
    """Atom species indices and the tables reduced to the elements present (smaller gathers)."""
    numbers = np.asarray(numbers)
    elements, species = np.unique(numbers, return_inverse=True)
    if elements.min() < 1 or elements.max() >= len(tables.rcov):
        raise ValueError(f"D3 has no parameters for atomic numbers {elements}")
    grid = np.ix_(elements, elements)
    c6ab = tables.c6ab[grid].reshape(len(elements), len(elements), 25, 3)
    reduced = (c6ab, tables.r0ab[grid], tables.rcov[elements], tables.r2r4[elements])
    return jnp.asarray(species.astype(np.int32)), tuple(jnp.asarray(t, dtype=dtype) for t in reduced)


def _device(structure, dtype):
    if structure is None:
        return None
    return type(structure)(*(jnp.asarray(x, dtype=dtype) if np.issubdtype(x.dtype, np.floating) else jnp.asarray(x)
                             for x in structure))


def d3_energy(positions, cell, numbers, pairs: Neighbours, params: D3Params, *, cutoff: float,
              cn_cutoff: float | None = None, triplets: Triplets | None = None, dtype=jnp.float64):
    """D3(BJ) energy (eV) of ``positions`` (Angstrom) in ``cell`` (rows are lattice vectors; zeros or
    None when not periodic) from a :func:`build_neighbours` list (and :func:`build_triplets` for the
    three-body term). Differentiable in ``positions`` and ``cell``; ``cutoff``/``cn_cutoff`` in Angstrom.
    """
    cn_cutoff = cutoff if cn_cutoff is None else cn_cutoff
    species, tables = species_tables(numbers, load_tables(), dtype)
    positions = jnp.asarray(positions, dtype=dtype)
    cell = jnp.zeros((3, 3), dtype) if cell is None else jnp.asarray(cell, dtype=dtype)
    return _energy(positions, cell, species, _device(pairs, dtype), _device(triplets, dtype), tables, params,
                   float(cutoff), float(cn_cutoff))


@partial(jax.jit, static_argnames=("params", "cutoff", "cn_cutoff"))
def _energy_forces_virial(positions, cell, species, neighbours, triplets, tables, params, cutoff, cn_cutoff):
    def strained(pos, strain):
        deformation = jnp.eye(3, dtype=pos.dtype) + 0.5 * (strain + strain.T)
        return _energy(pos @ deformation.T, cell @ deformation.T, species, neighbours, triplets, tables, params,
                       cutoff, cn_cutoff)

    strain = jnp.zeros((3, 3), positions.dtype)
    energy, (grad_pos, grad_strain) = jax.value_and_grad(strained, argnums=(0, 1))(positions, strain)
    return energy, -grad_pos, grad_strain


def d3_energy_forces_stress(atoms: Atoms, params: D3Params | str = B97_3C, cutoff: float = 20.0,
                            cn_cutoff: float | None = None, abc: bool = False, dtype=jnp.float64):
    """(energy eV, forces eV/A, stress eV/A^3 in ASE's Voigt order and sign, or None if not periodic)
    of ``atoms`` with a fresh neighbour list; ``params`` may name a torch-dftd functional."""
    if isinstance(params, str):
        params = D3Params.from_functional(params)
    cn_cutoff = cutoff if cn_cutoff is None else min(cn_cutoff, cutoff)
    periodic = bool(np.any(atoms.pbc))
    cell = np.asarray(atoms.cell) if periodic else None
    positions = atoms.get_positions()
    neighbours = build_neighbours(positions, cell, atoms.pbc, cutoff)
    triplets = build_triplets(positions, cell, neighbours, cn_cutoff) if abc else None
    species, tables = species_tables(atoms.numbers, load_tables(), dtype)
    energy, forces, virial = _energy_forces_virial(
        jnp.asarray(positions, dtype), jnp.zeros((3, 3), dtype) if cell is None else jnp.asarray(cell, dtype),
        species, _device(neighbours, dtype), _device(triplets, dtype), tables, params, float(cutoff),
        float(cn_cutoff))
    stress = None
    if periodic:
        virial = np.asarray(virial, dtype=np.float64) / abs(np.linalg.det(cell))
        stress = np.array([virial[a, b] for a, b in VOIGT])
    return float(energy), np.asarray(forces, dtype=np.float64), stress
