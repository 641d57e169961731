"""Where the time of a JAX hybrid MD step goes: D3 at 20 A inside our JAX MD costs more
per step than D3 alone. One run times, for one single model on one box:

- our JAX MD of the MLP alone, and of MLP + D3(BJ) at 20 A (float32, skin 0.5 A) as the md step runs it;
- the same hybrid with the list never rebuilt (``needs_rebuild`` always false: the list goes stale,
  which changes no timing), which isolates what the rebuilds cost;
- the same hybrid with D3 in float64 (no float32 conversions);
- D3 alone, jitted energy + forces on the fixed list: on Cartesian positions, and on fractional
  positions through jax_md's ``space.transform`` as the loop differentiates it.

    .venv/bin/python benchmarks/d3_loop_breakdown.py [--pairs 8] [--steps 40] [--r-max 5.5] [--nn 512 512]

Prints ms per step (per call for D3 alone) and the differences that attribute the in-loop cost.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from md_speed import box, jax_rate, model, one_box_parser, zero_frames

CUTOFF = 20.0
CALLS = 20


def d3_alone(atoms, fractional: bool) -> float:
    """ms per jitted D3 energy + forces call at 20 A (float32, skin 0.5 A) on a list built once."""
    import jax
    from apax.utils.jax_md_reduced import space

    from ilcampaign.engine.dispersion.jax_term import D3Term, d3_energy, d3_inputs
    from ilcampaign.engine.dispersion.neighbours import build

    term = D3Term.from_section("b97-3c", "bj", CUTOFF, CUTOFF, 0.5, "float32", False)
    cell = atoms.cell.array
    inputs = d3_inputs(term, atoms.numbers, cell)
    pairs = build(atoms.positions, cell, inputs.shifts, term.cutoff, term.skin, 1)
    pairs = build(atoms.positions, cell, inputs.shifts, term.cutoff, term.skin, int(1.25 * int(pairs.count)) + 1)
    if fractional:
        box_ = cell.T
        x = atoms.positions @ np.linalg.inv(cell)
        call = jax.jit(jax.value_and_grad(lambda f: d3_energy(space.transform(box_, f), box_.T, inputs, pairs, term)))
    else:
        x = atoms.positions
        call = jax.jit(jax.value_and_grad(lambda r: d3_energy(r, cell, inputs, pairs, term)))
    jax.block_until_ready(call(x))
    start = time.perf_counter()
    for _ in range(CALLS):
        jax.block_until_ready(call(x))
    return 1000 * (time.perf_counter() - start) / CALLS


def without_rebuild(run):
    """``run()`` with ilcampaign.engine.dispersion.neighbours.needs_rebuild always false (fresh simulators before and after)."""
    import jax.numpy as jnp

    from ilcampaign.engine.md import jax as jax_md
    from ilcampaign.engine.dispersion import neighbours as jax_neighbours

    original = jax_neighbours.needs_rebuild
    jax_md._SIMULATORS.clear()
    jax_neighbours.needs_rebuild = lambda *args: jnp.array(False)
    try:
        return run()
    finally:
        jax_neighbours.needs_rebuild = original
        jax_md._SIMULATORS.clear()


def main() -> None:
    args = one_box_parser(__doc__, 5.5).parse_args()

    atoms = box(args.pairs, None)
    with tempfile.TemporaryDirectory() as tmp:
        single = model(Path(tmp), zero_frames(atoms), 1, args.r_max, args.nn)
        ms = {
            "MLP alone (JAX MD)": 1000 / jax_rate(single, atoms, args.steps, args.r_max),
            "MLP + D3 20 A (JAX MD)": 1000 / jax_rate(single, atoms, args.steps, args.r_max, CUTOFF),
            "MLP + D3 20 A, no list rebuild": 1000 / without_rebuild(
                lambda: jax_rate(single, atoms, args.steps, args.r_max, CUTOFF)),
            "MLP + D3 20 A in float64": 1000 / jax_rate(single, atoms, args.steps, args.r_max, CUTOFF,
                                                        d3_dtype="float64"),
            "D3 alone, Cartesian": d3_alone(atoms, fractional=False),
            "D3 alone, fractional (as in the loop)": d3_alone(atoms, fractional=True),
        }
    print(f"{args.pairs} ion pairs ({len(atoms)} atoms), r_max {args.r_max} A, nn {args.nn}, D3 at {CUTOFF} A "
          f"float32 skin 0.5 A; ms per MD step (per call for D3 alone)")
    for name, value in ms.items():
        print(f"  {name:<40} {value:8.1f}")
    mlp, hybrid = ms["MLP alone (JAX MD)"], ms["MLP + D3 20 A (JAX MD)"]
    print(f"  {'D3 inside the loop (hybrid - MLP)':<40} {hybrid - mlp:8.1f}")
    print(f"  {'of it, list rebuilds':<40} {hybrid - ms['MLP + D3 20 A, no list rebuild']:8.1f}")
    print(f"  {'ratio hybrid / MLP speed':<40} {mlp / hybrid:8.2f}")


if __name__ == "__main__":
    main()
