"""MD speed of the engines a user can pick, in one run: steps per second for BMIM BF4 boxes.

    .venv/bin/python benchmarks/md_speed.py [--pairs 4 8] [--steps 40] [--members 2]

Columns: apax JAX MD (single model, 2-member ensemble), ASE + apax calculator (ensemble),
ASE + apax + torch-dftd D3 at 8 A and 20 A without and with a 0.5 A neighbour-list skin.
Ratios are to apax JAX MD with the ensemble (the engine the LotF sampling uses when it can).
The model has the paper's architecture (r_max 5.5 A, 512x512) trained for one epoch on three
GFN2-xTB frames: speed does not depend on the weights. JAX MD needs a box of at least twice the
cutoff; smaller boxes print n/a there (the engine routes them to ASE).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from campaign.spec import ApaxModel, MDSampler
from campaign.units import to_internal
from engine import apax_model
from engine.labelling import fresh_calculator
from engine.packing import conformer, pack_box

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"


def box(pairs: int):
    ions = [(conformer(BMIM, seed=0), pairs), (conformer(BF4, seed=1), pairs)]
    return pack_box(ions, to_internal("1.21 g/cm^3", "density"), seed=0, tolerance=2.0)


def model(directory: Path, frames, members: int) -> Path:
    """A paper-sized GMNN (``members`` 1: a single model) trained briefly on ``frames``."""
    from apax.train.run import run

    spec = ApaxModel(epochs=1, batch_size=1, valid_batch_size=1, ensemble={"n_members": max(members, 2)})
    for f, name in ((frames[:2], "train"), (frames[2:], "valid")):
        apax_model._write_labelled(directory / f"{name}.extxyz", f)
    config = apax_model.apax_config(spec, train_path=directory / "train.extxyz", valid_path=directory / "valid.extxyz",
                                    directory=directory / f"m{members}", n_train=2, n_valid=1)
    if members == 1:
        config["model"].pop("ensemble", None)
    run(config)
    return directory / f"m{members}" / config["data"]["experiment"]


def ase_rate(atoms, calc, steps: int) -> float:
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(2)  # compile / first neighbour lists
    start = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - start)


def jax_rate(model_dir: Path, atoms, steps: int, workdir: Path) -> float | None:
    """Steps/s of apax JAX MD, compile time excluded (difference of a short and a long run)."""
    if not apax_model.jax_md_valid(atoms, 5.5):
        return None
    timings = []
    for n in (steps, 3 * steps):
        sampler = MDSampler(thermostat="nose_hoover_chain", n_steps=n, interval=steps, uncertainty_threshold=None)
        start = time.perf_counter()
        apax_model.run_jax_md(model_dir, atoms, sampler, workdir=workdir / f"jax{n}", seed=0)
        timings.append(time.perf_counter() - start)
    return 2 * steps / (timings[1] - timings[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    import torch

    from campaign.spec import XTB
    from engine.d3 import hybrid_calculator

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for pairs in args.pairs:
            atoms = box(pairs)
            rng = np.random.default_rng(0)
            frames = []
            for _ in range(3):
                frame = atoms.copy()
                frame.positions += rng.normal(scale=0.05, size=frame.positions.shape)
                with fresh_calculator(XTB(threads=2), 0, tmp) as calc:
                    frame.calc = calc
                    frame.get_stress()
                frames.append(frame)
            single, ensemble = model(tmp / f"p{pairs}", frames, 1), model(tmp / f"p{pairs}", frames, 2)
            rates = {
                "jax single": jax_rate(single, atoms, args.steps, tmp / f"p{pairs}"),
                "jax ensemble": jax_rate(ensemble, atoms, args.steps, tmp / f"p{pairs}"),
                "ase+apax": ase_rate(atoms, apax_model.load_calculator(ensemble), args.steps),
            }
            for cutoff in (7.93766, 20.0):
                for skin in (0.0, 0.5):
                    calc = hybrid_calculator(apax_model.load_calculator(ensemble), cutoff=cutoff, cn_cutoff=cutoff,
                                             skin=skin, dtype=torch.float32)
                    rates[f"+D3 {cutoff:.0f}A skin {skin}"] = ase_rate(atoms, calc, args.steps)
            rows.append((pairs, len(atoms), rates))

    names = list(rows[0][2])
    print(f"{'pairs':>5} {'atoms':>5} " + " ".join(f"{n:>18}" for n in names))
    for pairs, n_atoms, rates in rows:
        print(f"{pairs:>5} {n_atoms:>5} " + " ".join(f"{r:>12.1f} st/s " if r else f"{'n/a':>18}" for r in rates.values()))
    print("\nratio to apax JAX MD (ensemble); > 1 is faster")
    for pairs, n_atoms, rates in rows:
        base = rates["jax ensemble"]
        print(f"{pairs:>5} {n_atoms:>5} " + " ".join(
            f"{r / base:>18.3f}" if r and base else f"{'n/a':>18}" for r in rates.values()))


if __name__ == "__main__":
    main()
