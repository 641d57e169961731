"""How long `campaign rehearse` takes on this machine, and whether its forecast holds.

``--time``: each spec rehearsed in a fresh work directory (2 workers), its wall time and the
steps, and where the time went per step kind. ``--forecast``: the paper spec rehearsed at 2
ion pairs, its time model per step kind fitted (wall = a x tasks + b x work), then rehearsed at
4 ion pairs with MD, optimiser and training lengths doubled; the first rehearsal's prediction of
the second's time per step kind against what the second measured. Both write
``benchmarks/results/rehearsal*.json``.

    python benchmarks/rehearsal.py --time specs/demo.yaml specs/bmim_bf4.yaml
    python benchmarks/rehearsal.py --forecast specs/bmim_bf4.yaml
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
    for name, seconds in done.measured.items():
        totals[kinds[name]] += seconds
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


def validate_forecast(path: Path) -> None:
    from ilcampaign.campaign.rehearsal.forecast import agreement, forecast

    with tempfile.TemporaryDirectory() as folder:
        _, _, small = rehearse(path, Path(folder) / "a", 2, 1)
        _, _, large = rehearse(path, Path(folder) / "b", 4, 2)
    predicted = forecast(large.miniature.spec, large.nodes, small.lines, measured=large.measured)
    rows = [[row["kind"], f"{row['predicted_s']:.1f}", f"{row['measured_s']:.1f}", f"{row['ratio']:.2f}"]
            for row in agreement(predicted)]
    within = sum(0.7 <= float(row[3]) <= 1.3 for row in rows)
    total_predicted = sum(float(row[1]) for row in rows)
    total_measured = sum(float(row[2]) for row in rows)
    for row in rows:
        print(row)
    save("rehearsal_forecast", "Forecast of a larger rehearsal from a smaller one",
         f"{path.name} rehearsed at 2 ion pairs ({small.wall_s:.0f} s) and at 4 ion pairs with MD, optimiser and "
         f"training lengths doubled ({large.wall_s:.0f} s). Per step kind: the larger rehearsal's steps' wall time "
         "predicted by the time model fitted to the smaller one, and measured. "
         f"{within} of {len(rows)} kinds within +-30 %; all kinds together predicted {total_predicted:.0f} s, "
         f"measured {total_measured:.0f} s.",
         [table("Predicted and measured step time per kind", ["step kind", "predicted s", "measured s",
                                                               "predicted / measured"], rows)],
         load=load_average())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time", nargs="+", type=Path, default=[])
    parser.add_argument("--forecast", type=Path)
    args = parser.parse_args()
    if args.time:
        time_specs([path.resolve() for path in args.time])
    if args.forecast:
        validate_forecast(args.forecast.resolve())


if __name__ == "__main__":
    main()
