"""ilcampaign.engine.dispersion.neighbours against ASE's brute-force neighbour list: along a trajectory whose cell
shrinks, grows and shears strongly, no pair within the cutoff is ever missing, and an overflow
reallocates instead of truncating."""

from __future__ import annotations

import numpy as np
import pytest
from ase.neighborlist import primitive_neighbor_list

import jax

from ilcampaign.engine.dispersion.neighbours import NeighbourList, image_shifts, pair_vectors

jax.config.update("jax_enable_x64", True)  # distances compared with a float64 brute-force list


def unordered(i, j, shifts) -> set[tuple[int, int, int, int, int]]:
    """Pairs as (lower index, higher index, shift from lower to higher); self-images in both signs."""
    found = set()
    for a, b, s in zip(i, j, np.rint(shifts).astype(int)):
        found.add((a, b, *s) if a < b or (a == b and tuple(s) > (0, 0, 0)) else (b, a, *(-s)))
    return found


def brute_force(positions, cell, cutoff) -> set:
    i, j, s = primitive_neighbor_list("ijS", (True,) * 3, cell, positions, cutoff, self_interaction=False)
    return unordered(i, j, s)


def listed(neighbours: NeighbourList, positions, cell, cutoff) -> set:
    """The listed pairs within ``cutoff`` at this geometry."""
    pairs = neighbours.update(positions, cell)
    d = np.asarray(pair_vectors(pairs, positions, cell))
    inside = np.asarray(pairs.valid) & (np.linalg.norm(d, axis=-1) < cutoff)
    return unordered(np.asarray(pairs.i)[inside], np.asarray(pairs.j)[inside], np.asarray(pairs.shift)[inside])


def trajectory(n_atoms: int, length: float, steps: int, seed: int):
    """Random walkers (0.03 A per step, never wrapped) in a cell that breathes by +-12 % and shears."""
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0, length, (n_atoms, 3))
    for step in range(steps):
        phase = 2 * np.pi * step / steps
        cell = np.eye(3) * length * (1 + 0.12 * np.sin(phase))
        cell[1, 0] = 0.15 * length * np.sin(2 * phase)  # shear
        yield positions.copy(), cell
        positions += rng.normal(0, 0.03, positions.shape)


@pytest.mark.slow
@pytest.mark.parametrize("cutoff, length", [(5.0, 12.0), (8.0, 6.0)])  # the second box is smaller than the cutoff
def test_no_pair_within_the_cutoff_is_ever_missed(cutoff, length):
    neighbours = NeighbourList(cutoff, skin=0.5, capacity=16)
    steps = 0
    for positions, cell in trajectory(40, length, 120, seed=1):
        reference = brute_force(positions, cell, cutoff)
        assert listed(neighbours, positions, cell, cutoff) == reference, f"step {steps}"
        steps += 1
    assert 1 < neighbours.rebuilds < steps  # the skin saved builds, and the strain forced some
    assert neighbours.reallocations >= 1  # 16 pairs could never hold them: it grew instead of truncating


def test_overflow_reallocates_and_redoes_the_build():
    positions, cell = next(trajectory(30, 7.0, 1, seed=2))
    small = NeighbourList(6.0, skin=0.3, capacity=4)
    found = listed(small, positions, cell, 6.0)
    assert small.reallocations >= 1 and small.capacity >= int(small.pairs.count)
    assert found == brute_force(positions, cell, 6.0)


def test_image_shifts_cover_many_images_once():
    shifts = image_shifts(np.eye(3) * 4.0, 9.0)  # 3 images each way
    assert tuple(shifts[0]) == (0, 0, 0)
    assert len(shifts) == (7**3 - 1) // 2 + 1
    as_set = {tuple(s) for s in shifts[1:]}
    assert not any(tuple(-np.array(s)) in as_set for s in as_set)  # one of each +-n pair
