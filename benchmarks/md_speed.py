"""MD speed of the engines a user can pick, in one run: steps per second for BMIM BF4 boxes.

    .venv/bin/python benchmarks/md_speed.py [--pairs 4 8] [--steps 40] [--r-max 5.0] [--nn 512 512] [--mts 2 4 8]
    python benchmarks/md_speed.py --d3-only --device cuda --boxes DIR [--pairs 8 16 32]

Columns: apax's own JAX MD (``apax.md.simulate.run_md``, 2-member ensemble), our JAX MD
(ilcampaign.engine.md.jax: single model, 2-member ensemble), our JAX MD of the hybrid model (D3(BJ) in the
loop, float32, skin 0.5 A: single model and ensemble at 8 A and 20 A, the ensemble at 20 A with
the tail correction), our JAX MD in NPT (MTK integrator with the box held, single model, alone and
with D3 at 20 A), our JAX MD of the hybrid with multiple time stepping (D3 every k = ``--mts``
steps, its short range every step: ilcampaign.engine.md.jax_mts; single model and ensemble, NVT and
NPT, D3 at 8 and 20 A, each with exact integration, k = 1, beside it; at 20 A also with the whole
D3 term every k steps, "whole"),
ASE + apax calculator (ensemble), ASE + apax + torch-dftd D3 at 8 A and 20 A without and with a
0.5 A neighbour-list skin. Ratios are to our JAX MD with the same model: "jax single" for the
single-model columns, "jax ensemble" (the engine the LotF sampling and production use when they
can) for the others; NPT columns of the MTS table to our NPT of the same model alone.
The results are written to benchmarks/results/md_speed.json (``--name`` for another file), with the
machine's load if it was busy.
The model has the paper's architecture (512x512, ZBL off; ``--nn`` for another) trained for one epoch on three rattled
frames labelled with zero energy, forces and stress: it predicts (almost) no forces, so every
engine runs its steps without the blow-up guard stopping a garbage model, and speed does not
depend on the weights. Its cutoff defaults to 5.0 A rather than the paper's 5.5 A
because JAX MD needs a box of at least twice the cutoff and 4 pairs make a 10.75 A box; smaller
boxes print n/a there (the engine routes them to ASE).

``--d3-only`` times the D3 part alone (ASE MD driven by torch-dftd's own calculator, by ours with
skin 0 and 0.5 A on ``--device``, and by our JAX D3 on JAX's default device, skin 0.5 A), with
ratios to torch-dftd's calculator: the skin's speed-up without the MLP, which is what the paper
measured on a GPU. Every run starts from
Maxwell-Boltzmann velocities at 300 K so that the neighbour list really goes stale. ``--boxes``
keeps the packed boxes as extxyz files (packed where RDKit and PACKMOL exist, read elsewhere).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import load_average, save, start_and_end

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"
D3_CUTOFFS = (7.93766, 20.0)
#: JAX MD rates are differences of runs of 1 and JAX_REPEATS x ``--steps`` steps, so that fixed
#: per-chunk costs cancel (compilation is taken off each run as well)
JAX_REPEATS = 11
#: NPT columns time the MTK integrator's cost per step with the box held by a barostat this slow (fs):
#: the benchmark's model predicts no forces, so with D3 there is no liquid to hold a box and it
#: collapses (rebuilding the D3 list at every step); what NPT adds per step is the same either way
NPT_BAROSTAT_FS = 1e6


def box(pairs: int, boxes: Path | None):
    """A packed box of ``pairs`` ion pairs at 1.21 g/cm^3 (read from ``boxes`` if saved there)."""
    from ase.io import read, write

    path = boxes / f"pairs{pairs}.extxyz" if boxes else None
    if path and path.exists():
        return read(path)
    from ilcampaign.campaign.units import to_internal
    from ilcampaign.engine.structures.ions import conformer
    from ilcampaign.engine.structures.packing import pack_box

    ions = [(conformer(BMIM, seed=0), pairs), (conformer(BF4, seed=1), pairs)]
    atoms = pack_box(ions, to_internal("1.21 g/cm^3", "density"), seed=0, tolerance=2.0)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, atoms)
    return atoms


def model(directory: Path, frames, members: int, r_max: float, nn: list[int]) -> Path:
    """A GMNN with hidden layers ``nn`` (``members`` 1: a single model) trained briefly on ``frames``."""
    from apax.train.run import run

    from ilcampaign.campaign.spec import ApaxModel
    from ilcampaign.engine.models import training as apax_training

    ensemble = None if members == 1 else {"n_members": members}
    spec = ApaxModel(epochs=1, batch_size=1, valid_batch_size=1, ensemble=ensemble, r_max=r_max, zbl=False, nn=nn)
    directory.mkdir(parents=True, exist_ok=True)
    for f, name in ((frames[:2], "train"), (frames[2:], "valid")):
        apax_training._write_labelled(directory / f"{name}.extxyz", f)
    config = apax_training.apax_config(spec, train_path=directory / "train.extxyz",
                                       valid_path=directory / "valid.extxyz", directory=directory / f"m{members}",
                                       n_train=2, n_valid=1)
    run(config)
    return directory / f"m{members}" / config["data"]["experiment"]


def one_box_parser(doc: str, r_max: float) -> argparse.ArgumentParser:
    """The command line of a benchmark that times one model on one box: ``--pairs``, ``--steps``
    (frames every that many), ``--r-max`` and ``--nn``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--r-max", type=float, default=r_max)
    parser.add_argument("--nn", type=int, nargs="+", default=[512, 512])
    return parser


def ase_rate(atoms, calc, steps: int) -> float:
    """Steps/s of velocity Verlet at 0.5 fs from 300 K velocities, two warm-up steps excluded."""
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(2)  # compile / first neighbour lists
    start = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - start)


def jax_rate(model_dir: Path, atoms, steps: int, r_max: float, d3_cutoff: float | None = None,
             tail: bool = False, d3_dtype: str = "float32", npt: bool = False, mts: int = 1,
             split: bool = True, d3_skin: float = 0.5) -> float | None:
    """Steps/s of our JAX MD (Nose-Hoover chain, frames every ``steps``; with ``d3_cutoff`` the hybrid
    model, D3(BJ) B97-3c in float32 with a list skin of ``d3_skin`` A, integrated every ``mts`` steps,
    its short range every step unless ``split`` is False; ``npt``: the MTK integrator with
    the box held, see NPT_BAROSTAT_FS), start-up and compile time excluded: after a warm-up chunk, the difference of a short and a long
    chunk (JAX_REPEATS), each less the time JAX spent tracing and compiling in it (a list that
    outgrows its capacity recompiles the loop once)."""
    from ase import units

    from ilcampaign.engine.models import apax as apax_model
    from ilcampaign.engine.analysis.inference_cost import compile_spans, covered_seconds
    from ilcampaign.engine.dispersion.jax_term import D3Term
    from ilcampaign.engine.md.jax import JaxMDParameters, run_chunk

    if not apax_model.jax_md_valid(atoms, r_max):
        return None
    d3 = None if d3_cutoff is None else D3Term.from_section("b97-3c", "bj", d3_cutoff, d3_cutoff, d3_skin, d3_dtype, tail)
    settings = JaxMDParameters(timestep=0.5, thermostat_time=25.0, interval=steps, threshold=None, d3=d3,
                               pressure=units.bar if npt else None, barostat_time=NPT_BAROSTAT_FS, mts_interval=mts,
                               mts_split=split)
    temperatures = np.full(JAX_REPEATS * steps + 2 * steps + 1, 300.0)
    state, timings, compiled = None, [], []
    for first, last in ((0, steps), (steps, 2 * steps), (2 * steps, (JAX_REPEATS + 2) * steps)):
        with compile_spans() as spans:
            start = time.perf_counter()
            state = run_chunk(model_dir, atoms, temperatures, settings, seed=0, first=first, last=last,
                              state=state).state
            elapsed = time.perf_counter() - start
        compiled.append(covered_seconds(spans))
        timings.append(elapsed - compiled[-1])
    print(f"# jax_rate {model_dir.parent.name}, D3 {d3_cutoff}, tail {tail}, NPT {npt}, k {mts}, split {split}: compilation taken off the "
          f"timed chunks {compiled[1]:.2f} s and {compiled[2]:.2f} s", file=sys.stderr)
    return (JAX_REPEATS - 1) * steps / (timings[2] - timings[1])


def apax_jax_rate(model_dir: Path, atoms, steps: int, workdir: Path, r_max: float) -> float | None:
    """Steps/s of apax's own JAX MD (``apax.md.simulate.run_md``, Nose-Hoover chain NVT, frames
    every ``steps``): what a user would run without this tool. Same difference method."""
    from apax.config import MDConfig
    from apax.md.simulate import run_md
    from ase.io import write

    from ilcampaign.engine.models import apax as apax_model

    if not apax_model.jax_md_valid(atoms, r_max):
        return None
    config = apax_model.model_config(model_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    write(workdir / "start.extxyz", atoms)
    timings = []
    for index, n in enumerate((steps, steps, JAX_REPEATS * steps)):
        md = MDConfig(ensemble={"name": "nvt", "dt": 0.5, "temperature_schedule": {"name": "constant", "T0": 300}},
                      duration=n * 0.5, n_inner=steps, sampling_rate=steps, initial_structure=str(workdir / "start.extxyz"),
                      sim_dir=str(workdir / f"apax{index}"), restart=False, disable_pbar=True)
        start = time.perf_counter()
        with apax_model.apax_contained():
            run_md(config, md, log_level="error")
        timings.append(time.perf_counter() - start)
    return (JAX_REPEATS - 1) * steps / (timings[2] - timings[1])


def zero_frames(atoms) -> list:
    """Three rattled copies of ``atoms`` labelled with zero energy, forces and stress (the model's data)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3):
        frame = atoms.copy()
        frame.positions += rng.normal(scale=0.05, size=frame.positions.shape)
        frame.calc = SinglePointCalculator(frame, energy=0.0, forces=np.zeros((len(frame), 3)), stress=np.zeros(6))
        frames.append(frame)
    return frames


def mlp_rates(atoms, pairs: int, args, tmp: Path) -> dict[str, float | None]:
    """The full table's row: JAX MD, ASE + apax, ASE + apax + D3 (8/20 A, skin 0/0.5 A)."""
    import torch

    from ilcampaign.engine.models import apax as apax_model
    from ilcampaign.engine.dispersion.ase_hybrid import hybrid_calculator

    frames = zero_frames(atoms)
    single, ensemble = (model(tmp / f"p{pairs}", frames, members, args.r_max, args.nn) for members in (1, 2))
    rates = {
        "apax jax ensemble": apax_jax_rate(ensemble, atoms, args.steps, tmp / f"p{pairs}", args.r_max),
        "jax single": jax_rate(single, atoms, args.steps, args.r_max),
        "jax ensemble": jax_rate(ensemble, atoms, args.steps, args.r_max),
    }
    for cutoff in D3_CUTOFFS:
        rates[f"jax single+D3 {cutoff:.0f}A"] = jax_rate(single, atoms, args.steps, args.r_max, cutoff)
        rates[f"jax ens.+D3 {cutoff:.0f}A"] = jax_rate(ensemble, atoms, args.steps, args.r_max, cutoff)
    rates["jax ens.+D3 20A+tail"] = jax_rate(ensemble, atoms, args.steps, args.r_max, D3_CUTOFFS[1], tail=True)
    rates["jax single NPT"] = jax_rate(single, atoms, args.steps, args.r_max, npt=True)
    rates["jax single+D3 20A NPT"] = jax_rate(single, atoms, args.steps, args.r_max, D3_CUTOFFS[1], npt=True)
    if args.mts:
        rates |= mts_rates(single, ensemble, atoms, args)
    if args.skip_ase:
        return rates
    rates["ase+apax"] = ase_rate(atoms, apax_model.load_calculator(ensemble), args.steps)
    for cutoff in D3_CUTOFFS:
        for skin in (0.0, 0.5):
            calc = hybrid_calculator(apax_model.load_calculator(ensemble), cutoff=cutoff, cn_cutoff=cutoff,
                                     skin=skin, dtype=torch.float32)
            rates[f"+D3 {cutoff:.0f}A skin {skin}"] = ase_rate(atoms, calc, args.steps)
    return rates


def mts_rates(single: Path, ensemble: Path, atoms, args) -> dict[str, float | None]:
    """The multiple time stepping columns: per model (single, ensemble) and ensemble (NVT, NPT), the MLP
    alone (NPT only; NVT's is in the main table), then per D3 cutoff the hybrid with D3 every step
    (k = 1) and every k of ``--mts`` steps (its short range every step), and at 20 A with the whole
    D3 term every k steps ("whole": no split)."""
    rates = {}
    for label, model_dir in (("single", single), ("ens.", ensemble)):
        for npt in (False, True):
            where = " NPT" if npt else ""
            if npt and f"jax {label}{where}" not in rates:
                rates[f"jax {label}{where}"] = jax_rate(model_dir, atoms, args.steps, args.r_max, npt=True)
            for cutoff in D3_CUTOFFS:
                for k in (1, *args.mts):
                    rates[f"jax {label}+D3 {cutoff:.0f}A{where} k={k}"] = jax_rate(
                        model_dir, atoms, args.steps, args.r_max, cutoff, npt=npt, mts=k)
            for k in args.mts:
                rates[f"jax {label}+D3 {D3_CUTOFFS[1]:.0f}A{where} k={k} whole"] = jax_rate(
                    model_dir, atoms, args.steps, args.r_max, D3_CUTOFFS[1], npt=npt, mts=k, split=False)
    return rates


def baseline(name: str, rates: dict[str, float | None]) -> float | None:
    """The rate a column is compared with: our JAX MD of the same model (NPT columns with k: NPT's)."""
    model = "jax single" if "single" in name else "jax ensemble"
    if " k=" in name and "NPT" in name:
        return rates.get(f"jax {'single' if 'single' in name else 'ens.'} NPT")
    return rates[model]


def jax_d3_calculator(cutoff: float):
    """D3(BJ) B97-3c alone as an ASE calculator on our JAX path: ilcampaign.engine.dispersion.jax_term's energy (float32)
    and its jitted gradient on ilcampaign.engine.dispersion.neighbours' list, kept by NeighbourList (skin 0.5 A)."""
    import jax
    from ase.calculators.calculator import Calculator, all_changes

    from ilcampaign.engine.dispersion.jax_term import D3Term, d3_energy
    from ilcampaign.engine.dispersion.neighbours import NeighbourList

    term = D3Term.from_section("b97-3c", "bj", cutoff, cutoff, 0.5, "float32", False)
    call = jax.jit(jax.value_and_grad(lambda positions, cell, inputs, pairs: d3_energy(positions, cell, inputs,
                                                                                        pairs, term)))

    class JaxD3(Calculator):
        implemented_properties = ["energy", "forces"]

        def __init__(self):
            super().__init__()
            self.neighbours, self.inputs = NeighbourList(term.cutoff, term.skin), None

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            from ilcampaign.engine.dispersion.jax_term import d3_inputs

            super().calculate(atoms, properties, system_changes)
            cell = self.atoms.cell.array
            if self.inputs is None:
                self.inputs = d3_inputs(term, self.atoms.numbers, cell)
            pairs = self.neighbours.update(self.atoms.positions, cell)
            energy, gradient = call(self.atoms.positions, cell, self.inputs, pairs)
            self.results = {"energy": float(energy), "forces": -np.asarray(gradient)}

    return JaxD3()


def d3_rates(atoms, args) -> dict[str, float | None]:
    """The D3-only row: torch-dftd's calculator, ours with skin 0 and 0.5 A, and our JAX D3 (CPU), per cutoff."""
    import torch
    from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

    from ilcampaign.engine.dispersion.torch_dftd import SkinD3Calculator

    rates = {}
    for cutoff in D3_CUTOFFS:
        common = dict(xc="b97-3c", damping="bj", cutoff=cutoff, dtype=torch.float32, device=args.device)
        rates[f"{cutoff:.0f}A torch-dftd"] = ase_rate(atoms, TorchDFTD3Calculator(cnthr=cutoff, **common), args.steps)
        for skin in (0.0, 0.5):
            calc = SkinD3Calculator(cn_cutoff=cutoff, skin=skin, **common)
            rates[f"{cutoff:.0f}A skin {skin}"] = ase_rate(atoms, calc, args.steps)
        rates[f"{cutoff:.0f}A jax skin 0.5"] = ase_rate(atoms, jax_d3_calculator(cutoff), args.steps)
    return rates


def table(rows, base) -> list[dict]:
    """Print the rates and ratios; return them as results tables (one per box)."""
    from results import table as result_table

    names = list(rows[0][2])
    print(f"{'pairs':>5} {'atoms':>5} " + " ".join(f"{n:>18}" for n in names))
    for pairs, n_atoms, rates in rows:
        print(f"{pairs:>5} {n_atoms:>5} " + " ".join(f"{r:>12.1f} st/s " if r else f"{'n/a':>18}" for r in rates.values()))
    print("\nratio to the baseline; > 1 is faster")
    tables = []
    for pairs, n_atoms, rates in rows:
        ratios = {name: r / base(name, rates) if r and base(name, rates) else None for name, r in rates.items()}
        print(f"{pairs:>5} {n_atoms:>5} " + " ".join(f"{x:>18.3f}" if x else f"{'n/a':>18}" for x in ratios.values()))
        tables.append(result_table(f"{pairs} ion pairs ({n_atoms} atoms)", ["engine", "steps/s", "ratio"], [
            [name, f"{r:.1f}" if r else "n/a", f"{ratios[name]:.3f}" if ratios[name] else "n/a"]
            for name, r in rates.items()]))
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--nn", type=int, nargs="+", default=[512, 512], help="hidden layers of the model")
    parser.add_argument("--d3-only", action="store_true", help="time D3 alone (no apax needed)")
    parser.add_argument("--skip-ase", action="store_true", help="time the JAX columns only")
    parser.add_argument("--device", default="cpu", help="torch device of the D3 calculators")
    parser.add_argument("--boxes", type=Path, default=None, help="folder keeping the packed boxes")
    parser.add_argument("--mts", type=int, nargs="*", default=[2, 4, 8],
                        help="D3 intervals of the multiple time stepping columns (none: no such columns)")
    parser.add_argument("--name", default="md_speed", help="results file benchmarks/results/NAME.json")
    args = parser.parse_args()
    loads = [load_average()]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pairs in args.pairs:
            atoms = box(pairs, args.boxes)
            rates = d3_rates(atoms, args) if args.d3_only else mlp_rates(atoms, pairs, args, Path(tmp))
            rows.append((pairs, len(atoms), rates))
    loads.append(load_average())
    load = start_and_end(loads)
    if args.d3_only:
        title = f"D3 alone, device {args.device}, {args.steps} steps; baseline: torch-dftd's calculator at the same cutoff"
        print(title)
        tables = table(rows, lambda name, rates: rates[f"{name.split()[0]} torch-dftd"])  # columns start with the cutoff
    else:
        title = (f"MD speed, {args.steps} steps, r_max {args.r_max} A, nn {args.nn}; baseline: our JAX MD with the same "
                 "model (single or 2-member ensemble; NPT columns with k: our NPT of it)")
        print(title)
        tables = table(rows, baseline)
    save(args.name, title, __doc__.split("\n\n")[0].replace("\n", " "), tables, load=load)


if __name__ == "__main__":
    main()
