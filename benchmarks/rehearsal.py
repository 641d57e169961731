"""How long `campaign rehearse` takes on this machine, and whether its forecast holds.

``--time``: each spec rehearsed in a fresh work directory (2 workers), its wall time and the
steps, and where the time went per step kind. ``--forecast``: the paper spec rehearsed at 2
ion pairs, its time model per step kind fitted (run = a x tasks + b x work done, the run time
being the tasks' time without JAX compilation), then rehearsed at 4 ion pairs with MD, optimiser
and training lengths doubled; the first rehearsal's prediction of the second's run time per step
kind, for the work the second did, against what it measured. ``--keep DIR`` keeps both
rehearsals, and ``--reuse`` reads kept ones back instead of running them. Both write
``benchmarks/results/rehearsal*.json``.

    python benchmarks/rehearsal.py --time specs/demo.yaml specs/bmim_bf4.yaml
    python benchmarks/rehearsal.py --forecast specs/bmim_bf4.yaml [--keep DIR [--reuse]]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from results import load_average, save, table

ROOT = Path(__file__).resolve().parent.parent


def rehearse(spec_path: Path, directory: Path, pairs: int, stretch: int):
    from ilcampaign.campaign.loader import load_spec
    from ilcampaign.campaign.rehearsal.run import rehearse as run
    from ilcampaign.engine.graph import build_graph

    spec = load_spec(spec_path)
    real = build_graph(spec, base=spec_path.parent)
    shutil.rmtree(directory, ignore_errors=True)
    return spec, real, run(spec, spec_path, real, directory, pairs=pairs, stretch=stretch, workers=2)


def by_kind(done) -> dict[str, float]:
    kinds = {node.name: node.step.kind for node in done.nodes}
    totals: dict[str, float] = defaultdict(float)
    for name, measured in done.measured.items():
        totals[kinds[name]] += measured.run_s + measured.compile_s
    return totals


def time_specs(paths: list[Path]) -> None:
    rows, kinds = [], []
    for path in paths:
        with tempfile.TemporaryDirectory() as folder:
            _, real, done = rehearse(path, Path(folder) / "rehearsal", 2, 1)
        finished = sum(step.state == "done" for step in done.steps)
        rows.append([path.name, len(real), finished, f"{done.wall_s:.0f}", f"{done.wall_s / 60:.1f}"])
        top = sorted(by_kind(done).items(), key=lambda kv: -kv[1])[:6]
        kinds += [[path.name, kind, f"{seconds:.0f}"] for kind, seconds in top]
        print(rows[-1])
    save("rehearsal", "campaign rehearse: wall time", "Each spec rehearsed from scratch on 2 formula units with "
         "2 worker processes; the step kinds that took longest (their steps' wall times summed; with two "
         "workers they overlap).", [
             table("Rehearsals", ["spec", "steps", "done", "wall s", "wall min"], rows),
             table("Where the time went", ["spec", "step kind", "step wall s"], kinds)], load=load_average())


def kept(spec_path: Path, directory: Path, pairs: int, stretch: int):
    """A finished rehearsal read back from its work directory: (miniature, nodes, measured steps,
    time model, wall time from its first step's start to its last step's end)."""
    from datetime import datetime

    from ilcampaign.archive.store import Archive
    from ilcampaign.campaign.loader import load_spec
    from ilcampaign.campaign.rehearsal.forecast import fit, measured_steps
    from ilcampaign.campaign.rehearsal.scale import miniature
    from ilcampaign.engine.graph import build_graph

    small = miniature(load_spec(spec_path), pairs, stretch)
    nodes = build_graph(small.spec, base=spec_path.parent)
    archive = Archive(directory / "archive")
    measured = measured_steps(archive, small.spec, nodes)
    records = [archive.record(node.key) for node in nodes if archive.is_done(node.key)]
    span = [datetime.fromisoformat(r[field]).timestamp() for r in records for field in ("started", "finished")]
    return small, nodes, measured, fit(measured), max(span) - min(span)


def validate_forecast(path: Path, keep: Path | None, reuse: bool) -> None:
    from ilcampaign.campaign.rehearsal.forecast import agreement, forecast

    with tempfile.TemporaryDirectory() as folder:
        where = keep or Path(folder)
        for name, pairs, stretch in (("a", 2, 1), ("b", 4, 2)):
            if not reuse:
                rehearse(path, where / name, pairs, stretch)
        small, large = kept(path, where / "a", 2, 1), kept(path, where / "b", 4, 2)
    miniature, nodes, measured, _, large_s = large
    rows = agreement(forecast(miniature.spec, nodes, small[3], measured=measured))
    within = sum(0.7 <= row["ratio"] <= 1.3 for row in rows)
    done, planned, measured_s = (sum(row[key] for row in rows) for key in ("done_s", "planned_s", "measured_s"))
    compiled = {row["kind"]: row["compile_s"] for row in agreement(forecast(small[0].spec, small[1], small[3],
                                                                            measured=small[2]))}
    table_rows = [[row["kind"], f"{row['done_s']:.1f}", f"{row['measured_s']:.1f}", f"{row['ratio']:.2f}",
                   f"{row['planned_s']:.1f}", f"{compiled.get(row['kind'], 0.0):.1f}", f"{row['compile_s']:.1f}"]
                  for row in rows]
    for row in table_rows:
        print(row)
    save("rehearsal_forecast", "Forecast of a larger rehearsal from a smaller one",
         f"{path.name} rehearsed at 2 ion pairs ({small[4]:.0f} s) and at 4 ion pairs with MD, optimiser and "
         f"training lengths doubled ({large_s:.0f} s), wall times from the first step's start to the last step's "
         "end. Per step kind, the time model fitted to the smaller rehearsal's run times (its tasks' time without "
         "JAX compilation) gives the larger one's run time for the work its steps did, against the measured run "
         f"time: {within} of {len(rows)} kinds within +-30 %; all kinds together {done:.0f} s predicted, "
         f"{measured_s:.0f} s measured. For the work planned (MD runs to their full length, optimisations to "
         f"their step limit), the model gives {planned:.0f} s, an upper bound. Compilation, which the model "
         "leaves out, is listed for both rehearsals." + (
             f" The rehearsals were run earlier by --forecast --keep {keep} and read back here with --reuse: the "
             "date, commit and load below are the read-back's; the rehearsals' own are in their records."
             if reuse else ""),
         [table("Predicted and measured run time per kind (4 ion pairs, from 2)",
                ["step kind", "predicted s (work done)", "measured s", "predicted / measured",
                 "predicted s (work planned)", "compile s (2 pairs)", "compile s (4 pairs)"], table_rows)],
         load=load_average())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time", nargs="+", type=Path, default=[])
    parser.add_argument("--forecast", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the forecast's two rehearsals here (a/ and b/)")
    parser.add_argument("--reuse", action="store_true", help="read the rehearsals kept in --keep instead of running")
    args = parser.parse_args()
    if args.reuse and args.keep is None:
        parser.error("--reuse reads the rehearsals kept in --keep DIR")
    if args.time:
        time_specs([path.resolve() for path in args.time])
    if args.forecast:
        validate_forecast(args.forecast.resolve(), args.keep and args.keep.resolve(), args.reuse)


if __name__ == "__main__":
    main()
