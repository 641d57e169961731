"""What resuming costs, in one run: MD split into checkpointed chunks against one uninterrupted
chunk (what a user would run without checkpoints), for both engines, and training with
checkpoints every N epochs against checkpoints at the end only.

    .venv/bin/python benchmarks/resume_cost.py [--pairs 4] [--steps 2000] [--chunks 1000 500 200]

MD: BMIM BF4 at 1.21 g/cm^3, a 2-member [32, 32] GMNN (r_max 5.0 A) trained briefly on zero
labels (so a garbage model does not trip the blow-up guard; speed does not depend on the
weights), Langevin NVT through ASE and Nose-Hoover NVT through our JAX MD, 0.5 fs, frames every
10 steps. Every chunk starts as a resumed run would: a fresh calculator (ASE) or a fresh
neighbour list (JAX), with JAX's persistent compilation cache warm, as in a campaign. Training:
the same model for 40 epochs on 16 rattled frames. Wall times include everything a step does
but the model's first compilation, which a campaign pays once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from results import load_average, save, table

import numpy as np

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"


def zero_labelled(atoms, n: int, seed: int) -> list:
    """``n`` rattled copies of ``atoms`` labelled with zero energy, forces and stress."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        frame = atoms.copy()
        frame.positions += rng.normal(scale=0.05, size=frame.positions.shape)
        frame.calc = SinglePointCalculator(frame, energy=0.0, forces=np.zeros((len(frame), 3)), stress=np.zeros(6))
        frames.append(frame)
    return frames


def spec_model(epochs: int):
    from ilcampaign.campaign.spec import ApaxModel

    return ApaxModel(nn=[32, 32], r_max=5.0, epochs=epochs, batch_size=2, valid_batch_size=4, zbl=False)


def md_time(engine: str, model_dir: Path, atoms, steps: int, every: int, cache: Path) -> float:
    """Wall time of ``steps`` MD steps run in chunks of ``every``, each started as a resumed chunk."""
    from ilcampaign.campaign.spec import MDSettings
    from ilcampaign.engine.models import apax as apax_model
    from ilcampaign.engine.md.ase import run_md_chunk
    from ilcampaign.engine.md.common import temperatures
    from ilcampaign.engine.md.jax import JaxMDParameters, run_chunk

    thermostat = "langevin" if engine == "ase" else "nose_hoover_chain"
    sampler = MDSettings(thermostat=thermostat, temperature=300, n_steps=steps, interval=10, uncertainty_threshold=None)
    targets = temperatures(sampler)
    state, first = None, 0
    start = time.perf_counter()
    while first < steps:
        last = min(first + every, steps)
        if engine == "ase":
            calc = apax_model.load_calculator(model_dir, cache_dir=cache)
            state = run_md_chunk(atoms, calc, sampler, seed=0, first=first, last=last, state=state,
                                 uncertainty=lambda a: apax_model.force_uncertainty(calc.results)).state
        else:
            settings = JaxMDParameters(timestep=0.5, thermostat_time=25.0, interval=10, threshold=None)
            state = run_chunk(model_dir, atoms, targets, settings, seed=0, first=first, last=last, state=state,
                              cache_dir=cache).state
        first = last
    return time.perf_counter() - start


def train_time(frames: list, workdir: Path, every: int, epochs: int) -> float:
    from ilcampaign.engine.models.training import train

    start = time.perf_counter()
    train(spec_model(epochs), frames[:12], frames[12:], workdir, checkpoint_every=every)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1000, 500, 200])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--every", type=int, nargs="+", default=[10, 1])
    args = parser.parse_args()

    from ilcampaign.campaign.units import to_internal
    from ilcampaign.engine.models.training import train
    from ilcampaign.engine.structures.ions import conformer
    from ilcampaign.engine.structures.packing import pack_box

    atoms = pack_box([(conformer(BMIM, seed=0), args.pairs), (conformer(BF4, seed=1), args.pairs)],
                     to_internal("1.21 g/cm^3", "density"), seed=0, tolerance=2.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = zero_labelled(atoms, 16, seed=0)
        model_dir = train(spec_model(2), frames[:12], frames[12:], tmp / "model", checkpoint_every=10).model_dir
        print(f"MD, {args.pairs} pairs ({len(atoms)} atoms), {args.steps} steps; baseline: one chunk")
        md_rows = []
        for engine in ("ase", "jax"):
            md_time(engine, model_dir, atoms, 20, 20, tmp / "jax_cache")  # first compilation, paid once a campaign
            base = md_time(engine, model_dir, atoms, args.steps, args.steps, tmp / "jax_cache")
            md_rows.append([engine, f"{args.steps} (one run)", f"{base:.1f}", "1.00"])
            for every in args.chunks:
                wall = md_time(engine, model_dir, atoms, args.steps, every, tmp / "jax_cache")
                md_rows.append([engine, every, f"{wall:.1f}", f"{wall / base:.2f}"])
            for row in md_rows[-1 - len(args.chunks):]:
                print(*row)
        train_rows = []
        base = train_time(frames, tmp / "t0", args.epochs, args.epochs)
        train_rows.append([f"{args.epochs} (end only)", f"{base:.1f}", "1.00"])
        for every in args.every:
            wall = train_time(frames, tmp / f"t{every}", every, args.epochs)
            train_rows.append([every, f"{wall:.1f}", f"{wall / base:.2f}"])
        for row in train_rows:
            print(*row)
    save("resume_cost", "What resumable chunks cost",
         f"{args.steps} MD steps of {args.pairs} BMIM BF4 pairs ({len(atoms)} atoms, 2-member [32, 32] GMNN, r_max 5 A) "
         f"in chunks against one uninterrupted run, and {args.epochs} epochs of training with checkpoints every N "
         "epochs against one at the end only. Each chunk starts a fresh calculator or neighbour list: that is what "
         "makes a resumed chunk identical to an uninterrupted one.",
         [table("MD in chunks", ["engine", "chunk (MD steps)", "wall s", "ratio"], md_rows),
          table("Training checkpoints", ["checkpoint every (epochs)", "wall s", "ratio"], train_rows)],
         load=load_average())

if __name__ == "__main__":
    main()
