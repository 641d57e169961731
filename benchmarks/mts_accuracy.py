"""Accuracy of multiple time stepping in our JAX MD: the hybrid MLP + D3(BJ) with D3
integrated every k steps (r-RESPA, ilcampaign.engine.md.jax_mts) against every step (k = 1).

    .venv/bin/python benchmarks/mts_accuracy.py --workdir DIR [--models demo paper] [--epochs 300]
        [--relax-ps 2 0] [--relax-first-with demo] [--nve-ps 2 1]
        [--nve-cutoffs demo:7.93766 demo:20 paper:7.93766 paper:20] [--npt-ps 50]

Models, trained here (kept in ``--workdir``, as is every run, so a rerun goes on where it stopped):
GFN2-xTB (tblite, 300 K electronic temperature) energies, forces and stress of 260 boxes of two
BMIM BF4 ion pairs (60 atoms): 100 rattled packings (50 PACKMOL packings of RDKit conformers at
1.1-1.3 g/cm^3, each displaced by Gaussian noise of 0.04 and 0.08 A) and 160 thermal frames
(GFN-FF Langevin MD at 400 K of 10 more packings at 1.21 g/cm^3, 16 frames each; a model of
rattled packings alone left their thermal configurations and exploded within 0.2 ps at 298 K),
15 to validate and the rest to train, single models
with ZBL: ``demo``, the demo spec's architecture (r_max 5 A, 5 basis functions, 3 radial, 32x32),
and ``paper``, the paper's (r_max 5.5 A, 7 and 5, 512x512). Boxes: BMIM BF4 packed at
1.21 g/cm^3 (md_speed's), 4 ion pairs (120 atoms, 10.7 A) for the demo model, 8 (240 atoms,
13.5 A) for the paper's (JAX MD needs twice r_max), relaxed by NVT at 298 K (k = 1);
``--relax-first-with demo`` relaxes the paper model's box with the demo model's hybrid first, and
``--relax-ps 2 0`` with that one only (the paper model, at 120 and at 300 epochs, exploded in its
own 298 K relaxation, from the packed box and from the demo model's relaxed one).

1. NVE: from the relaxed box with fresh 298 K momenta (seed 2), a thermostat too slow to act
   (1e12 fs), 0.5 fs steps, frames every 40: the drift of the total energy per atom (slope of a line fitted
   over the run) and its standard deviation, for k = 1, 2, 4, 8, with the short range of D3 every
   step (the split, the default) and, for comparison, the whole D3 term every k steps.
2. The fastest motion: the H velocity spectrum of 1 ps of NVE (k = 1, frames every 2 steps), its
   C-H stretch peak and period T; impulse MTS resonates where k dt reaches T / 2 (linear
   instability) and degrades from about T / 3 (nonlinear resonance; Ma, Izaguirre and Skeel, SIAM
   J. Sci. Comput. 24, 1951 (2003)).
3. NPT (jax_md's MTK barostat, 1 bar, 298 K, thermostat 25 fs, barostat 75 fs, D3 at 8 A) of the
   demo model: a k = 1 equilibration, then production from its end with k = 1, with k = 4 and with
   k = 4 integrating the whole D3 term every 4 steps (no split), each from fresh 298 K momenta:
   the mean density with its standard error (where block averaging levels off, and from 5 block
   means), and the N(BMIM)-B and B-F RDFs (0.05 A bins to 5 A) with per-bin standard errors of 5
   block means; the k = 4 minus k = 1 differences in units of their combined standard error.
   ``--npt-runs`` runs some of the three only (no tables), for processes side by side; a last call
   with all three reads them back.

The tables go to benchmarks/results/mts_accuracy.json with the machine's load.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from results import load_average, save, start_and_end, table

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"
ARCHITECTURES = {"demo": dict(r_max=5.0, n_basis=5, n_radial=3, nn=[32, 32]),
                 "paper": dict(r_max=5.5, n_basis=7, n_radial=5, nn=[512, 512])}
PAIRS = {"demo": 4, "paper": 8}
EPOCHS = 300
D3_CUTOFF = 7.93766  # the paper's "8 A"
INTERVALS = (1, 2, 4, 8)
FRAME_EVERY = 40  # steps: a multiple of every k
TEMPERATURE = 298.0
RDF_BINS = np.linspace(0.0, 5.0, 101)
BLOCKS = 5


def xtb_frames(path: Path) -> list:
    """The training data (see the module docstring), labelled once and kept at ``path``."""
    from ase.io import read, write

    if path.exists():
        return read(path, ":")
    from ase.calculators.singlepoint import SinglePointCalculator
    from tblite.ase import TBLite

    from ilcampaign.campaign.units import to_internal
    from ilcampaign.engine.structures.ions import conformer
    from ilcampaign.engine.structures.packing import pack_box

    rng = np.random.default_rng(11)
    frames = []
    for seed in range(10, 60):
        ions = [(conformer(BMIM, seed), 2), (conformer(BF4, seed), 2)]
        packed = pack_box(ions, to_internal(f"{rng.uniform(1.1, 1.3)} g/cm^3", "density"), seed=seed, tolerance=2.0)
        for stdev in (0.04, 0.08):
            atoms = packed.copy()
            atoms.positions += rng.normal(0.0, stdev, atoms.positions.shape)
            atoms.calc = TBLite(method="GFN2-xTB", charge=0, verbosity=0, electronic_temperature=300.0)
            frame = atoms.copy()
            frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                               stress=atoms.get_stress())
            frames.append(frame)
    write(path, frames)
    return frames


def thermal_frames(path: Path) -> list:
    """Frames of GFN-FF MD at 400 K labelled with GFN2-xTB (see the module docstring), kept at ``path``."""
    from ase.io import read, write

    if path.exists():
        return read(path, ":")
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tblite.ase import TBLite

    from ilcampaign.campaign.spec import GFNFF
    from ilcampaign.campaign.units import to_internal
    from ilcampaign.engine.md.drivers import calculator, relax
    from ilcampaign.engine.structures.ions import conformer
    from ilcampaign.engine.structures.packing import pack_box

    frames = []
    for seed in range(60, 70):
        atoms = pack_box([(conformer(BMIM, seed), 2), (conformer(BF4, seed), 2)],
                         to_internal("1.21 g/cm^3", "density"), seed=seed, tolerance=2.0)
        with calculator(GFNFF(kind="gfnff"), atoms, [BMIM, BF4], path.parent) as calc:
            atoms.calc = calc
            relax(atoms)
            MaxwellBoltzmannDistribution(atoms, temperature_K=400.0, rng=np.random.default_rng(seed))
            dynamics = Langevin(atoms, 0.5 * units.fs, temperature_K=400.0, friction=0.01, rng=np.random.default_rng(seed))
            for _ in range(16):
                dynamics.run(60)  # 30 fs apart, the first after 30 fs
                frame = atoms.copy()
                frame.calc = TBLite(method="GFN2-xTB", charge=0, verbosity=0, electronic_temperature=300.0)
                labels = {"energy": frame.get_potential_energy(), "forces": frame.get_forces(),
                          "stress": frame.get_stress()}
                frame.calc = SinglePointCalculator(frame, **labels)
                frames.append(frame)
    write(path, frames)
    return frames


def trained(workdir: Path, name: str, epochs: int) -> Path:
    """The model ``name`` of ARCHITECTURES, trained for ``epochs`` on :func:`xtb_frames` and
    :func:`thermal_frames` (resumes an interrupted training)."""
    from ilcampaign.campaign.spec import ApaxModel
    from ilcampaign.engine.models.training import train

    frames = xtb_frames(workdir / "xtb_frames.extxyz") + thermal_frames(workdir / "thermal_frames.extxyz")
    order = np.random.default_rng(0).permutation(len(frames))
    spec = ApaxModel(**ARCHITECTURES[name], ensemble=None, epochs=epochs, batch_size=4, valid_batch_size=15)
    result = train(spec, [frames[i] for i in order[15:]], [frames[i] for i in order[:15]], workdir / name,
                   checkpoint_every=25)
    print(f"# model {name}: validation {result.metrics}", file=sys.stderr)
    return result.model_dir


def settings(k: int = 1, split: bool = True, npt: bool = False, cutoff: float = D3_CUTOFF, interval: int = FRAME_EVERY):
    from ase import units

    from ilcampaign.engine.dispersion.jax_term import D3Term
    from ilcampaign.engine.md.jax import JaxMDParameters

    d3 = D3Term.from_section("b97-3c", "bj", cutoff, cutoff, 0.5, "float32", False)
    return JaxMDParameters(timestep=0.5, thermostat_time=25.0, interval=interval, threshold=None, d3=d3,
                           pressure=units.bar if npt else None, barostat_time=75.0, mts_interval=k, mts_split=split)


def run(model_dir: Path, start, parameters, steps: int, path: Path, seed: int = 1, chunk: int = 20_000) -> dict:
    """A run of ``steps`` from ``start`` (fresh 298 K momenta from ``seed``), in chunks, kept at ``path``
    (.npz): per frame step, temperature, potential and kinetic energy, density (g/cm^3), cell,
    positions and velocities, and the wall time."""
    from ilcampaign.engine.md.jax import run_chunk

    if path.exists():
        return dict(np.load(path))
    temperatures, state, frames, rows, began = np.full(steps + 1, TEMPERATURE), None, [], [], time.perf_counter()
    for first in range(0, steps, chunk):
        result = run_chunk(model_dir, start, temperatures, parameters, seed=seed, first=first,
                           last=min(first + chunk, steps), state=state)
        if result.stopped_at is not None:
            raise RuntimeError(f"{path.name}: {result.stop_reason}")
        state, frames, rows = result.state, frames + result.frames, rows + [result.rows]
    rows = np.concatenate(rows)
    data = {"step": rows[:, 0], "temperature": rows[:, 2], "potential": rows[:, 3],
            "kinetic": np.array([frame.get_kinetic_energy() for frame in frames]),
            "density": np.array([frame.info["density_g_cm3"] for frame in frames]),
            "cells": np.array([frame.cell.array for frame in frames]),
            "positions": np.array([frame.positions for frame in frames]),
            "velocities": np.array([frame.get_velocities() for frame in frames], dtype=np.float32),
            "seconds": np.array(time.perf_counter() - began)}
    np.savez(path, **data)
    return data


def start_tag(ps: float, before: tuple[str, Path, float] | None) -> str:
    """What names the files of runs from a box relaxed by another model first ("" otherwise)."""
    return f"_{ps:g}ps_after_{before[0]}" if before else ""


def relaxation(ps: float, before: tuple[str, Path, float] | None) -> str:
    """How :func:`relaxed` relaxed the box, for the tables."""
    if not before:
        return f"relaxed by {ps:g} ps of NVT at 298 K with this model's hybrid"
    return (f"relaxed by {before[2]:g} ps of NVT at 298 K with the {before[0]} model's hybrid"
            + (f", then {ps:g} ps with this one's" if ps > 0 else ""))


def relaxed(workdir: Path, name: str, model_dir: Path, ps: float, before: tuple[str, Path, float] | None = None):
    """The box of ``name``'s size relaxed by ``ps`` of NVT at 298 K with the hybrid (k = 1); with
    ``before`` (another model's name, directory and ps), relaxed with that model's hybrid first
    (``ps`` 0: with that one only)."""
    from ase.io import read, write

    tag = start_tag(ps, before)
    path = workdir / f"{name}_relaxed{tag}.extxyz"
    if path.exists():
        return read(path)
    from md_speed import box

    atoms = box(PAIRS[name], None)
    if before:
        data = run(before[1], atoms, settings(), round(before[2] * 2000), workdir / f"{name}_relax_by_{before[0]}.npz")
        atoms.positions = data["positions"][-1]
    if ps > 0:
        data = run(model_dir, atoms, settings(), round(ps * 2000), workdir / f"{name}_relax{tag}.npz")
        atoms.positions = data["positions"][-1]
    write(path, atoms)
    return atoms


def drift(data: dict, n_atoms: int) -> tuple[float, float]:
    """(slope of the total energy in meV/atom/ps, its standard deviation about the line in meV/atom)."""
    t = data["step"] * 0.5e-3
    total = (data["potential"] + data["kinetic"]) / n_atoms * 1000
    slope, offset = np.polyfit(t, total, 1)
    return float(slope), float(np.std(total - (slope * t + offset)))


def nve_table(workdir: Path, name: str, model_dir: Path, start, ps: float, cutoff: float, epochs: int,
              relaxation: str, tag: str = "") -> dict:
    steps = round(ps * 2000)
    rows = []
    for split in (True, False):
        for k in INTERVALS:
            if k == 1 and not split:
                continue
            parameters = replace(settings(k, split, cutoff=cutoff), thermostat_time=1e12)
            path = workdir / f"{name}{tag}_nve_{ps:g}ps_{cutoff:.0f}A_k{k}{'' if split else '_whole'}.npz"
            try:
                data = run(model_dir, start, parameters, steps, path, seed=2)
            except RuntimeError as error:
                rows.append([k, "short range every step" if split else "whole D3", "stopped", str(error)])
                continue
            slope, spread = drift(data, len(start))
            rows.append([k, "short range every step" if split else "whole D3", f"{slope:+.3f}", f"{spread:.3f}"])
    return table(f"NVE, {name} model ({epochs} epochs), {len(start)} atoms, D3 at {cutoff:g} A: total energy over "
                 f"{ps:g} ps", ["k", "D3 every k steps", "drift (meV/atom/ps)", "std about the drift (meV/atom)"], rows,
                 f"From the box {relaxation}. k = 1 integrates D3 every step (the engine's default path). Slope of a "
                 "line fitted to the total energy over the run. Speed is md_speed's to measure: these runs shared "
                 "the machine.")


def stretch_period(workdir: Path, name: str, model_dir: Path, start) -> tuple[float, float]:
    """(C-H stretch wavenumber in cm^-1, period in fs): the largest peak above 2500 cm^-1 of the H
    velocity power spectrum of 1 ps of NVE (k = 1, frames every 2 steps)."""
    parameters = replace(settings(interval=2), thermostat_time=1e12)
    data = run(model_dir, start, parameters, 2000, workdir / f"{name}_spectrum.npz", seed=3)
    hydrogens = start.numbers == 1
    v = data["velocities"][:, hydrogens].astype(float)
    power = np.sum(np.abs(np.fft.rfft(v - v.mean(0), axis=0)) ** 2, axis=(1, 2))
    dt_fs = 1.0  # frames every 2 steps of 0.5 fs
    wavenumber = np.fft.rfftfreq(len(v), dt_fs * 1e-15) / 2.99792458e10  # cm^-1
    band = wavenumber > 2500
    peak = float(wavenumber[band][np.argmax(power[band])])
    return peak, 1e15 / (peak * 2.99792458e10)


def rdf(data: dict, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """g(r) of sites ``first`` and ``second`` per frame (frames x bins), minimum image, RDF_BINS."""
    from ilcampaign.engine.analysis.rdf import minimum_image_sq

    a, b = np.flatnonzero(first), np.flatnonzero(second)
    shells = 4 / 3 * np.pi * np.diff(RDF_BINS**3)
    out = []
    for positions, cell in zip(data["positions"], data["cells"]):
        dx = (positions[b][None, :, :] - positions[a][:, None, :]).reshape(-1, 3).T[None]
        d = np.sqrt(minimum_image_sq(dx.copy(), cell[None], RDF_BINS[-1]))[0]
        d = d[d > 1e-8]
        counts, _ = np.histogram(d, RDF_BINS)
        out.append(counts / (len(a) * len(b) / abs(np.linalg.det(cell)) * shells))
    return np.array(out)


def blocks_of(series: np.ndarray) -> np.ndarray:
    """The means of BLOCKS consecutive blocks (along the first axis)."""
    return np.array([part.mean(0) for part in np.array_split(series, BLOCKS)])


def block_means(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of BLOCKS consecutive block means (along the first axis)."""
    blocks = blocks_of(series)
    return blocks.mean(0), blocks.std(0, ddof=1) / np.sqrt(BLOCKS)


NPT_VARIANTS = ("1", "4", "4 whole")


def npt_tables(workdir: Path, model_dir: Path, start, equilibrate_ps: float, ps: float,
               names: tuple[str, ...] = NPT_VARIANTS) -> list[dict]:
    """The NPT tables; with only some ``names`` of NPT_VARIANTS, their runs and no tables (processes
    side by side run one each, and a last call with all of them reads the runs back)."""
    from ase.io import read, write

    from ilcampaign.engine.analysis.stats import block_average

    path = workdir / f"demo_npt_start_{equilibrate_ps:g}ps.extxyz"
    if not path.exists():
        data = run(model_dir, start, settings(npt=True), round(equilibrate_ps * 2000),
                   workdir / f"demo_npt_equil_{equilibrate_ps:g}ps.npz")
        atoms = start.copy()
        atoms.set_cell(data["cells"][-1], scale_atoms=False)
        atoms.positions = data["positions"][-1]
        write(path, atoms)
    equilibrated = read(path)
    steps = round(ps * 2000)
    symbols = np.array(equilibrated.get_chemical_symbols())
    boron, fluorine = symbols == "B", symbols == "F"
    nitrogen = symbols == "N"
    variants = {"1": settings(1, npt=True), "4": settings(4, npt=True), "4 whole": settings(4, False, npt=True)}
    runs = {name: run(model_dir, equilibrated, variants[name], steps,
                      workdir / f"demo_npt_{equilibrate_ps:g}+{ps:g}ps_k{name.replace(' ', '_')}.npz", seed=4)
            for name in names}
    if set(runs) != set(NPT_VARIANTS):
        return []
    density_rows, rdfs, errors = [], {}, {}
    for name, data in runs.items():
        means, errors[name] = block_means(data["density"])
        try:
            plateau = f"{block_average(data['density']).sem:.4f}"
        except ValueError:  # the blocked error grows with the block length to the end
            plateau = "no plateau"
        blocks = " / ".join(f"{mean:.3f}" for mean in blocks_of(data["density"]))
        density_rows.append([name, f"{means:.4f}", plateau, f"{errors[name]:.4f}", blocks,
                             f"{data['temperature'].mean():.1f}"])
        every = max(1, len(data["step"]) // 500)  # RDFs from at most 500 frames
        sub = {key: value[::every] for key, value in data.items() if np.ndim(value)}
        rdfs[name] = {"N-B": block_means(rdf(sub, nitrogen, boron)), "B-F": block_means(rdf(sub, boron, fluorine))}
    for name in ("4", "4 whole"):
        difference = runs[name]["density"].mean() - runs["1"]["density"].mean()
        combined = np.hypot(errors["1"], errors[name])
        density_rows.append([f"{name} - 1", f"{difference:+.4f}", "", f"{combined:.4f}", "",
                             f"{difference / combined:+.2f} standard errors"])
    rdf_rows = []
    centres = (RDF_BINS[1:] + RDF_BINS[:-1]) / 2
    for name in ("4", "4 whole"):
        for pair in ("N-B", "B-F"):
            (g1, e1), (g4, e4) = rdfs["1"][pair], rdfs[name][pair]
            sigma = np.hypot(e1, e4)
            z = np.where(sigma > 0, np.abs(g4 - g1) / np.where(sigma > 0, sigma, 1), 0.0)
            worst = int(np.argmax(z))
            peak1, peak4 = int(np.argmax(g1)), int(np.argmax(g4))
            rdf_rows.append([f"k = {name}", pair, f"{centres[peak1]:.3f} / {centres[peak4]:.3f}",
                             f"{g1[peak1]:.2f} +- {e1[peak1]:.2f} / {g4[peak4]:.2f} +- {e4[peak4]:.2f}",
                             f"{np.max(np.abs(g4 - g1)):.3f}", f"{z[worst]:.2f} at {centres[worst]:.2f} A",
                             f"{np.sum(z > 2)} of {np.sum(sigma > 0)}"])
    n = len(equilibrated)
    return [
        table(f"NPT density, demo model, {n} atoms, D3 at {D3_CUTOFF:g} A, {ps:g} ps per run after "
              f"{equilibrate_ps:g} ps of equilibration",
              ["k", "density (g/cm^3)", "standard error, blocking plateau", f"standard error, {BLOCKS} blocks",
               f"means of the {BLOCKS} blocks", "mean T (K)"], density_rows,
              "Standard errors of the mean density: where the blocked error (Flyvbjerg-Petersen) levels off, "
              f"and from {BLOCKS} consecutive block means; \"4 whole\": the whole D3 term every 4 steps (no "
              f"split). The last rows are the differences to k = 1 with their combined standard error "
              f"({BLOCKS} blocks each)."),
        table(f"RDFs of the same runs (0.05 A bins to 5 A, {BLOCKS} blocks)",
              ["against k = 1", "pair", "first peak (A), k = 1 / 4", "its height, k = 1 / 4", "largest |g4 - g1|",
               "largest |g4 - g1| / combined standard error", "bins with |g4 - g1| > 2 standard errors"], rdf_rows,
              "N: both nitrogens of BMIM; B and F of BF4. Standard errors of the mean of block means per bin; "
              f"with {BLOCKS} blocks a bin's ratio follows Student's t with about {2 * (BLOCKS - 1)} degrees of "
              "freedom where both runs sample one distribution, so about 8 % of the bins exceed 2 by chance, "
              "and the largest of many bins exceeds 3 often."),
    ]


def per_model(models: list[str], values: list) -> dict:
    """One value for every model, or one per model in order."""
    if len(values) not in (1, len(models)):
        raise SystemExit(f"give one value or one per model ({len(models)}), not {len(values)}")
    return dict(zip(models, values * len(models) if len(values) == 1 else values))


def cutoffs_of(model: str, tokens: list[str]) -> list[float]:
    """The cutoffs in ``tokens`` (C or MODEL:C) that apply to ``model``."""
    return [float(token.rpartition(":")[2]) for token in tokens if token.rpartition(":")[0] in ("", model)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="keeps data, models and runs")
    parser.add_argument("--models", nargs="+", default=["demo", "paper"], choices=list(ARCHITECTURES))
    parser.add_argument("--epochs", nargs="+", type=int, default=[EPOCHS],
                        help="training epochs, one for all models or one per model")
    parser.add_argument("--relax-ps", type=float, nargs="+", default=[5.0],
                        help="one for all models or one per model; 0 with --relax-first-with: that model's only")
    parser.add_argument("--relax-first-with", choices=list(ARCHITECTURES),
                        help="relax the other models' boxes with this model's hybrid first (listed before them)")
    parser.add_argument("--nve-ps", type=float, nargs="+", default=[5.0], help="one for all models or one per model")
    parser.add_argument("--nve-cutoffs", nargs="+", default=[str(D3_CUTOFF), "20"],
                        help="D3 cutoffs (A) of the NVE runs: C for every model, MODEL:C for one")
    parser.add_argument("--npt-equilibrate-ps", type=float, default=20.0)
    parser.add_argument("--npt-ps", type=float, default=50.0, help="0: no NPT runs")
    parser.add_argument("--npt-runs", nargs="+", default=list(NPT_VARIANTS), choices=NPT_VARIANTS,
                        help="only these NPT runs, and no tables: for processes side by side")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    loads = [load_average()]
    tables = []
    epochs, nve_ps, relax_ps = (per_model(args.models, values) for values in (args.epochs, args.nve_ps, args.relax_ps))
    first = args.relax_first_with
    if first and first not in args.models[:-1]:
        raise SystemExit("--relax-first-with names a model of --models that comes before another")
    for name in args.models:
        if relax_ps[name] <= 0 and (not first or args.models.index(first) >= args.models.index(name)):
            raise SystemExit(f"{name}: a relaxation of 0 ps needs another model's first (--relax-first-with)")
    model_dirs = {}
    for name in args.models:
        model_dir = model_dirs[name] = trained(args.workdir, name, epochs[name])
        before = (first, model_dirs[first], relax_ps[first]) if first in model_dirs and first != name else None
        try:
            start = relaxed(args.workdir, name, model_dir, relax_ps[name], before)
        except RuntimeError as error:  # a model that cannot hold the liquid together has no drift to measure
            tables.append(table(f"NVE, {name} model ({epochs[name]} epochs)", ["relaxation at 298 K"], [[str(error)]],
                                "No NVE runs: the model's relaxation stopped."))
            continue
        if name == "demo":
            wavenumber, period = stretch_period(args.workdir, name, model_dir, start)
            tables.append(table(f"Fastest motion, {name} model", ["C-H stretch (cm^-1)", "period T (fs)",
                                                                  "T / 2 in 0.5 fs steps", "T / 3 in 0.5 fs steps"],
                                [[f"{wavenumber:.0f}", f"{period:.2f}", f"{period / 2 / 0.5:.1f}",
                                  f"{period / 3 / 0.5:.1f}"]],
                                "Impulse MTS is linearly unstable where k dt = T / 2 and loses accuracy from about "
                                "T / 3 (nonlinear resonance)."))
        for cutoff in cutoffs_of(name, args.nve_cutoffs):
            tables.append(nve_table(args.workdir, name, model_dir, start, nve_ps[name], cutoff, epochs[name],
                                    relaxation(relax_ps[name], before), start_tag(relax_ps[name], before)))
        if name == "demo" and args.npt_ps > 0:
            tables += npt_tables(args.workdir, model_dir, start, args.npt_equilibrate_ps, args.npt_ps,
                                 tuple(args.npt_runs))
    if set(args.npt_runs) != set(NPT_VARIANTS):
        return
    loads.append(load_average())
    load = start_and_end(loads)
    save("mts_accuracy", "Multiple time stepping: accuracy against exact integration",
         "benchmarks/mts_accuracy.py: NVE energy drift for k = 1, 2, 4, 8, the C-H stretch that limits k, and NPT "
         "density and RDFs with D3 every 4 steps against every step (models, boxes and runs in the script's "
         "docstring).", tables, load=load)


if __name__ == "__main__":
    main()
