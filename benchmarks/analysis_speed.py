"""RDF and MSD throughput (frames/s) and peak memory of ilcampaign.engine.analysis against MDAnalysis (reading
the same H5MD file, and from memory via MemoryReader) and freud if installed, on a 100,000-frame x
300-atom trajectory in the archive's format (10 BMIM BF4-like ion pairs, NPT-like cell per part).
Each measurement runs in its own subprocess so peak RSS values do not mix.

    python benchmarks/analysis_speed.py [--frames 100000] [--prefix 5000] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import load_average, save, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"
N_PAIRS, PART = 10, 2000
R_MAX, BINS = 8.0, 1000


def build(path: Path, n_frames: int) -> None:
    """Random-walk ions (rigid-ish molecules drifting) written in parts of PART frames by
    write_frames and joined by ilcampaign.archive.frames.concatenate."""
    import ase
    from ase.data import atomic_numbers

    from ilcampaign.archive.frames import concatenate, write_frames
    from ilcampaign.engine.structures.guards import template

    numbers, mol_ids = [], []
    for k in range(N_PAIRS):
        for j, smiles in enumerate((BMIM, BF4)):
            symbols = template(smiles).symbols
            numbers += [atomic_numbers[s] for s in symbols]
            mol_ids += [2 * k + j] * len(symbols)
    n_atoms, rng = len(numbers), np.random.default_rng(0)
    centres = rng.uniform(0, 18, (2 * N_PAIRS, 3))
    offsets = rng.normal(0, 1.2, (n_atoms, 3))
    mol = np.array(mol_ids)
    parts = []
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        for p in range(0, n_frames, PART):
            n = min(PART, n_frames - p)
            drift = centres[None] + np.cumsum(rng.normal(0, 0.05, (n, 2 * N_PAIRS, 3)), axis=0)
            centres = drift[-1]
            pos = drift[:, mol] + offsets[None] + rng.normal(0, 0.05, (n, n_atoms, 3))
            length = 18.0 + 0.02 * ((p // PART) % 5)
            frames = []
            for t in range(n):
                atoms = ase.Atoms(numbers=numbers, positions=pos[t], cell=[length] * 3, pbc=True)
                atoms.arrays["mol_id"] = mol
                frames.append(atoms)
            part = Path(tmp) / f"part{p // PART:04d}.h5"
            write_frames(part, frames)
            parts.append(part)
        concatenate(path, parts)


def selections(path: str):
    """Atom indices of the RDF pair (ring N of BMIM, B of BF4) for both codes."""
    from ilcampaign.engine.analysis import Trajectory, element_groups, molecules, of_species
    from ilcampaign.engine.structures.guards import template

    with Trajectory(path) as traj:
        mols = molecules(traj.mol_ids, traj.numbers)
        n = np.concatenate(element_groups(of_species(mols, template(BMIM).symbols), "N"))
        b = np.concatenate(element_groups(of_species(mols, template(BF4).symbols), "B"))
        return n, b, traj.n_atoms


def measure(method: str, path: str, stop: int) -> dict:
    """One timed run in this process; returns frames, seconds and peak RSS."""
    n_idx, b_idx, n_atoms = selections(path)
    start = time.perf_counter()
    if method.startswith("ours"):
        from ilcampaign.engine.analysis import MSD, RDF, Sites, Trajectory

        with Trajectory(path) as traj:
            if method == "ours-rdf":
                RDF(traj, Sites.atoms(n_idx), Sites.atoms(b_idx), r_max=R_MAX, bins=BINS).run(stop=stop)
            elif method == "ours-rdf-all":
                RDF(traj, Sites.atoms(range(n_atoms)), r_max=R_MAX, bins=BINS).run(stop=stop)
            else:
                MSD(traj, Sites.atoms(range(n_atoms)), scratch_dir=os.path.dirname(path)).run(stop=stop)
    elif method.startswith("mda"):
        import warnings

        import MDAnalysis as mda
        from MDAnalysis.analysis.msd import EinsteinMSD
        from MDAnalysis.analysis.rdf import InterRDF

        warnings.filterwarnings("ignore")
        u = mda.Universe.empty(n_atoms, trajectory=False)
        u.load_new(path, format="H5MD")
        if "-mem" in method:
            u.transfer_to_memory(stop=stop)
            start = time.perf_counter()  # time the analysis only, not the load into memory
        if "rdf-all" in method:
            InterRDF(u.atoms, u.atoms, nbins=BINS, range=(0, R_MAX), exclusion_block=(1, 1)).run(stop=stop)
        elif "rdf" in method:
            InterRDF(u.atoms[n_idx], u.atoms[b_idx], nbins=BINS, range=(0, R_MAX)).run(stop=stop)
        else:
            EinsteinMSD(u.atoms, msd_type="xyz", fft=True).run(stop=stop)
    elif method == "freud-rdf":
        import freud

        from ilcampaign.engine.analysis import Trajectory

        rdf = freud.density.RDF(bins=BINS, r_max=R_MAX)
        with Trajectory(path) as traj:
            for _, pos, cells in traj.blocks(stop=stop):
                for p, c in zip(pos, cells):
                    box = freud.box.Box.from_matrix(c.T)
                    rdf.compute((box, box.wrap(p[b_idx])), query_points=box.wrap(p[n_idx]), reset=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"method": method, "frames": stop, "seconds": seconds, "peak_bytes": peak}


def run(method: str, path: Path, stop: int) -> dict | None:
    """``measure`` in a fresh interpreter (its own peak RSS); None if it failed (e.g. not installed)."""
    out = subprocess.run([sys.executable, __file__, "--measure", method, "--file", str(path), "--stop", str(stop)],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        print(f"  {method}: failed ({out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode})")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--prefix", type=int, default=5_000, help="frames MDAnalysis and freud are timed on")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "ilcampaign-bench"))
    parser.add_argument("--measure")
    parser.add_argument("--file")
    parser.add_argument("--stop", type=int)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.file, args.stop)))
        return
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"traj_{args.frames}x{N_PAIRS * 30}.h5"
    if not path.exists():
        t0 = time.perf_counter()
        build(path, args.frames)
        print(f"built {path} in {time.perf_counter() - t0:.0f} s")
    full, prefix = args.frames, min(args.prefix, args.frames)
    print(f"trajectory: {full} frames x {N_PAIRS * 30} atoms ({N_PAIRS} BMIM BF4), {path.stat().st_size / 2**30:.2f} GiB; "
          f"RDF {BINS} bins to {R_MAX} A; MSD by FFT of all atoms over all frames of the run")
    print(f"MDAnalysis {__import__('MDAnalysis').__version__}; its runs (and freud's) cover the first {prefix} frames")
    cases = [("RDF N(BMIM)-B(BF4), 20x10 sites", "rdf", [("ours-rdf", full), ("mda-rdf", prefix), ("mda-mem-rdf", prefix), ("freud-rdf", prefix)]),
             ("RDF all atoms, 300x300 sites", "rdf-all", [("ours-rdf-all", full // 10), ("mda-rdf-all", prefix // 5), ("mda-mem-rdf-all", prefix // 5)]),
             ("MSD all 300 atoms", "msd", [("ours-msd", full), ("mda-msd", prefix * 4), ("mda-mem-msd", prefix * 4)])]
    rows = []
    for title, _, methods in cases:
        print(f"\n{title}")
        results = {}
        for method, stop in methods:
            r = run(method, path, stop)
            if r:
                results[method] = r
                print(f"  {method:18s} {r['frames']:7d} frames {r['seconds']:8.2f} s {r['frames'] / r['seconds']:10.0f} frames/s "
                      f"peak RSS {r['peak_bytes'] / 2**20:7.0f} MiB")
        ours = next((r for m, r in results.items() if m.startswith("ours")), None)
        for m, r in results.items():
            ratio = "1" if ours is r else f"{(ours['frames'] / ours['seconds']) / (r['frames'] / r['seconds']):.1f}x" if ours else ""
            if ours and ours is not r:
                print(f"  ours / {m}: {ratio} throughput")
            rows.append([title, m, r["frames"], f"{r['frames'] / r['seconds']:.0f}", f"{r['peak_bytes'] / 2**20:.0f}", ratio])
    save("analysis_speed", "RDF and MSD against MDAnalysis",
         f"{full} frames x {N_PAIRS * 30} atoms ({N_PAIRS} BMIM BF4-like ion pairs) in the archive's H5MD format; each "
         f"measurement in its own process (peak RSS). MDAnalysis {__import__('MDAnalysis').__version__} is timed on a "
         "prefix of the frames, reading the file and from memory (MemoryReader, load time not counted).",
         [table("Throughput", ["measurement", "method", "frames", "frames/s", "peak RSS MiB", "ours / it"], rows)],
         load=load_average())

if __name__ == "__main__":
    main()
