"""What step-level concurrency saves, in one run: the demo's production runs and analyses (the
part of `specs/demo.yaml` with independent steps) run step after step, as the runner did before
(each step's tasks spread over the workers), against the scheduler running independent steps at
the same time. Each starts a fresh process pool, as ``campaign run`` does, with the JAX compilation
cache on disk that an untimed first pass filled (copied to both), as a rerun of a campaign has it.

    .venv/bin/python benchmarks/step_concurrency.py [--spec specs/demo.yaml] [--workdir campaigns/demo]
        [--workers 2] [--from production]

Needs a finished run of the spec (`make demo`): its archive is copied twice with the steps of the
groups from ``--from`` on dropped from the index, and each copy runs them again. Step outputs of
both copies are compared byte for byte (the order steps run in must not change results), except
those of steps that measure time (``exclusive`` kinds: their numbers are timings).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from results import load_average, save, table


def trimmed_copy(source: Path, target: Path, drop: set[str]) -> None:
    """A copy of the work directory at ``source`` whose index forgets the steps with keys in ``drop``."""
    shutil.copytree(source / "archive", target / "archive")
    index_path = target / "archive" / "index.json"
    index = json.loads(index_path.read_text())
    index["steps"] = {key: entry for key, entry in index["steps"].items() if key not in drop}
    index["names"] = {name: key for name, key in index["names"].items() if key not in drop}
    index_path.write_text(json.dumps(index))
    for key in drop:
        shutil.rmtree(target / "archive" / "steps" / key, ignore_errors=True)


def outputs(workdir: Path, keys: list[str]) -> dict[str, str]:
    """{key/output: sha256} of the named steps' outputs, from their records."""
    found = {}
    for key in keys:
        record = json.loads((workdir / "archive" / "steps" / key / "record.json").read_text())
        found.update({f"{key[:12]}/{name}": digest for name, digest in record["outputs"].items()})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=Path("specs/demo.yaml"))
    parser.add_argument("--workdir", type=Path, default=Path("campaigns/demo"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--from", dest="first_group", default="production")
    args = parser.parse_args()

    import ilcampaign.engine.steps  # noqa: F401
    from ilcampaign.campaign.loader import load_spec
    from ilcampaign.engine.run.execute import make_executor
    from ilcampaign.engine.graph import build_graph
    from ilcampaign.engine.run.runner import run_graph

    nodes = build_graph(load_spec(args.spec), base=args.spec.resolve().parent)
    groups = list(dict.fromkeys(node.group for node in nodes))
    rerun = [node for node in nodes
             if groups.index(node.group) >= min(i for i, g in enumerate(groups) if g.startswith(args.first_group))]
    keys = [node.key for node in rerun]
    quiet = lambda *a: None  # noqa: E731
    times, walls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # the first pass (not timed) compiles: the timed ones start with its JAX cache on disk
        for mode in ("warm-up", "one step at a time", "independent steps at once"):
            workdir = Path(tmp) / mode.replace(" ", "_")
            trimmed_copy(args.workdir.resolve(), workdir, set(keys))
            if mode != "warm-up":
                shutil.copytree(Path(tmp) / "warm-up" / "scratch" / "jax_cache", workdir / "scratch" / "jax_cache")
            start = time.perf_counter()
            with make_executor(args.workers) as pool:
                if mode == "one step at a time":
                    for node in rerun:
                        run_graph([node], workdir, args.workers, quiet, executor=pool)
                else:
                    run_graph(rerun, workdir, args.workers, quiet, executor=pool)
            times[mode] = time.perf_counter() - start
            walls[mode] = {node.name: json.loads((workdir / "archive" / "steps" / node.key / "record.json").read_text())
                           ["wall_s"] for node in rerun}
        timed = {node.key for node in rerun if type(node.step).exclusive}
        compared = [key for key in keys if key not in timed]
        first, second = (outputs(Path(tmp) / name, compared) for name in ("one_step_at_a_time", "independent_steps_at_once"))
        different = sorted(name for name in first if first[name] != second.get(name))
    print(f"{len(rerun)} steps of {args.spec} (groups from {args.first_group!r}), {args.workers} workers")
    times.pop("warm-up"), walls.pop("warm-up")
    for mode, seconds in times.items():
        print(f"  {mode:<28} {seconds:7.1f} s   (steps' own wall times: "
              + ", ".join(f"{name} {wall:.0f} s" for name, wall in walls[mode].items()) + ")")
    print(f"  ratio (one at a time / at once): {times['one step at a time'] / times['independent steps at once']:.2f}x")
    print(f"  outputs of {len(compared)} steps (not the {len(timed)} timing steps) identical: {not different}"
          + "".join(f"\n    differs: {name}" for name in different))
    ratio = times["one step at a time"] / times["independent steps at once"]
    save("step_concurrency", "Independent steps at once",
         f"{len(rerun)} steps of {args.spec} (from the {args.first_group!r} groups of a finished run), {args.workers} "
         "workers, each mode with a fresh process pool and the JAX compilation cache an untimed first pass filled. "
         f"Outputs of the {len(compared)} steps that do not measure time identical between the modes: {not different}.",
         [table("Wall time", ["mode", "wall s", "ratio to one at a time"],
                [[mode, f"{seconds:.1f}", f"{times['one step at a time'] / seconds:.2f}"]
                 for mode, seconds in times.items()])], load=load_average())
    print(f"  speed-up {ratio:.2f}x")


if __name__ == "__main__":
    main()
