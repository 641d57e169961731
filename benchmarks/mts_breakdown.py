"""Where the time of a hybrid JAX MD step with multiple time stepping goes, against the pure MLP,
for D3 at 20 A integrated every k steps, by the D3 list's skin. One run, one single model, one box:

- our JAX MD of the MLP alone, and of MLP + D3(BJ) at 20 A (float32) with D3 every step (k = 1) and
  every k = 4 and 8 steps (the whole term, ``mts_split`` false, and for k = 4 the split), each with
  a D3 skin of 0.5 A (the spec's default), 1 and 2 A;
- per MD step of the timed chunk, the time spent in the jitted loop (MLP steps and the D3 impulses
  taken in it), in rebuilding the D3 list where it went stale (the host's ``allocate_d3``), in the
  closing kicks that waited for a rebuild (``settle``: D3's gradient outside the loop) and in the
  frames' evaluation, with the number of D3 list rebuilds per 100 steps.

A skin changes which pairs beyond the cutoff the list holds, not the energy (pairs beyond the
cutoff add nothing), so it moves time between the list and the gradients only.

    .venv/bin/python benchmarks/mts_breakdown.py [--pairs 8] [--steps 40] [--r-max 5.0] [--nn 512 512]

Steps per second are md_speed's (``jax_rate``: a short and a long chunk after a warm-up, compile
time taken off); the shares come from the long chunk, each call waited for. Results go to
benchmarks/results/mts_breakdown.json with the machine's load.
"""

from __future__ import annotations

import collections
import tempfile
import time
from pathlib import Path

from md_speed import box, jax_rate, model, one_box_parser, zero_frames
from results import load_average, save, start_and_end, table

CUTOFF = 20.0
SKINS = (0.5, 1.0, 2.0)
#: (name, mts_interval, mts_split) of the hybrid columns
SCHEMES = (("k = 1", 1, True), ("k = 4, split", 4, True), ("k = 4, whole", 4, False), ("k = 8, whole", 8, False))
#: _Simulator calls timed: what the host does besides the loop
PARTS = {"block": "loop", "allocate_d3": "D3 list rebuilds", "fitted_d3": "D3 list rebuilds",
         "settle": "closing kicks after a rebuild", "evaluate": "frames"}


class Timer:
    """Wraps ilcampaign.engine.md.jax's run_chunk and _Simulator's calls to add up, per part, the
    seconds spent in the third chunk that ``jax_rate`` runs (its long, timed one)."""

    def __init__(self):
        from ilcampaign.engine.md import jax as jax_md

        self.module, self.seconds, self.calls, self.steps, self.chunk = jax_md, collections.Counter(), \
            collections.Counter(), 0, 0
        self.originals = {"run_chunk": jax_md.run_chunk, "allocate_d3": jax_md._Simulator.allocate_d3,
                          "fitted_d3": jax_md._Simulator.fitted_d3, "settle": jax_md._Simulator.settle,
                          "__init__": jax_md._Simulator.__init__}

    def timed(self, name: str, call):
        import jax

        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            out = jax.block_until_ready(call(*args, **kwargs))
            if self.chunk == 3:
                self.seconds[name] += time.perf_counter() - began
                self.calls[name] += 1
                if name == "block":
                    self.steps += int(out[0])
            return out

        return wrapper

    def __enter__(self):
        simulator, timer, originals = self.module._Simulator, self, self.originals

        def init(self, *args, **kwargs):
            originals["__init__"](self, *args, **kwargs)
            self.block, self.evaluate = timer.timed("block", self.block), timer.timed("evaluate", self.evaluate)

        def run_chunk(*args, **kwargs):
            timer.chunk += 1
            return originals["run_chunk"](*args, **kwargs)

        for name in ("allocate_d3", "fitted_d3", "settle"):
            setattr(simulator, name, self.timed(name, originals[name]))
        simulator.__init__, self.module.run_chunk = init, run_chunk
        self.module._SIMULATORS.clear()  # simulators made before hold unwrapped calls
        return self

    def __exit__(self, *exc):
        for name, original in self.originals.items():
            setattr(self.module if name == "run_chunk" else self.module._Simulator, name, original)
        self.module._SIMULATORS.clear()

    def per_step(self) -> dict[str, float]:
        """ms per MD step of the timed chunk, per part of PARTS."""
        out = collections.Counter()
        for name, seconds in self.seconds.items():
            out[PARTS[name]] += 1000 * seconds / self.steps
        return out


def main() -> None:
    args = one_box_parser(__doc__, 5.0).parse_args()
    loads = [load_average()]
    atoms = box(args.pairs, None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        single = model(Path(tmp), zero_frames(atoms), 1, args.r_max, args.nn)
        columns = [("MLP alone", None, 1, True, None)] + [
            (name, CUTOFF, k, split, skin) for skin in SKINS for name, k, split in SCHEMES]
        mlp = None
        for name, cutoff, k, split, skin in columns:
            with Timer() as timer:
                rate = jax_rate(single, atoms, args.steps, args.r_max, cutoff, mts=k, split=split,
                                d3_skin=skin or 0.5)
            mlp = mlp or 1000 / rate
            parts = timer.per_step()
            rebuilds = 100 * timer.calls["allocate_d3"] / timer.steps
            row = [name, "" if skin is None else f"{skin:g}", f"{1000 / rate:.1f}", f"{mlp * rate / 1000:.2f}",
                   f"{rebuilds:.1f}", *(f"{parts[part]:.1f}" for part in dict.fromkeys(PARTS.values()))]
            print(" | ".join(row), flush=True)
            rows.append(row)
    loads.append(load_average())
    load = start_and_end(loads)
    title = (f"MLP + D3 at {CUTOFF:g} A with D3 every k steps, {args.pairs} ion pairs ({len(atoms)} atoms), "
             f"nn {args.nn}, single model, NVT")
    save("mts_breakdown", "Multiple time stepping: where the time goes",
         "benchmarks/mts_breakdown.py: ms per MD step of our JAX MD of the hybrid with D3 every k steps, by D3 "
         "skin, and how much of a step goes to the loop, the D3 list's rebuilds, the closing kicks that waited "
         "for them and the frames.",
         [table(title, ["run", "D3 skin (A)", "ms per step", "speed / MLP alone", "D3 list rebuilds per 100 steps",
                        *(f"{part} (ms per step)" for part in dict.fromkeys(PARTS.values()))], rows,
                "ms per step from md_speed's jax_rate (compile time taken off); the parts from its long chunk, "
                "each call waited for, so they add up to a little more. Frames every "
                f"{args.steps} steps.")], load=load)


if __name__ == "__main__":
    main()
