"""Cost of an MD step with a model versus system size, per engine path: our JAX MD (ilcampaign.engine.md.jax),
that with D3 in the loop (ilcampaign.engine.dispersion.jax_term) at given cutoffs, apax's ASE calculator with ASE MD,
and that plus torch-dftd D3 at given cutoffs. It tells which path, box size and D3 cutoff a
campaign can afford.

Every path runs NVT at TEMPERATURE_K with a 0.5 fs step and a Nose-Hoover chain of damping time
THERMOSTAT_TIME_FS, as the md step runs it: jax_md's ``nvt_nose_hoover`` (chain of 5) for ``jax`` and ``jax+d3``,
ASE's ``NoseHooverChainNVT`` (chain of 3) for ``ase`` and ``ase+d3``. Steps are timed in chunks as
the md step runs them (ilcampaign.engine.md.jax.run_chunk, ilcampaign.engine.md.ase.run_md_chunk): one frame per
chunk, no uncertainty stop, each chunk's fixed costs (state hand-over, neighbour list) included.
JAX's tracing and compilation within a timed chunk (ilcampaign.engine.md.jax recompiles when a chunk's pairs
outgrow its list or the D3 image shifts change, apax's calculator when its list overflows) are
taken off its time and reported apart.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    import xarray as xr
    from ase import Atoms

    from ilcampaign.campaign.spec import DispersionCorrection

PATHS = ("jax", "jax+d3", "ase", "ase+d3")
D3_PATHS = ("jax+d3", "ase+d3")
TIMESTEP_FS = 0.5
THERMOSTAT_TIME_FS = 25.0
TEMPERATURE_K = 300.0
SEED = 0  # Maxwell-Boltzmann momenta, drawn alike by both engines


def inference_cost(model_dir: Path, box: Atoms, *, repeats: Sequence[int | tuple[int, int, int]],
                   paths: Sequence[str], d3: DispersionCorrection | None, d3_cutoffs: Sequence[float], n_steps: int,
                   warmup: int, n_timings: int = 3, cache_dir: Path | None = None) -> xr.Dataset:
    """Seconds per MD step of the apax model in ``model_dir`` on ``box`` replicated k x k x k (an int)
    or a x b x c (a triple) for each of ``repeats``, through each of ``paths`` (``PATHS``).

    ``d3``: the spec's d3 section (None: its defaults) with ``cutoff`` replaced by each of ``d3_cutoffs``
    (A), one ``jax+d3`` run (ilcampaign.engine.dispersion.jax_term.D3Term) and one ``ase+d3`` run (ilcampaign.engine.dispersion.torch_dftd) each. Each (path, size) first runs at least ``warmup`` steps (compilation,
    neighbour lists, thermostat settling) in chunks of ``n_steps`` steps, then ``n_timings`` chunks
    are timed one by one; the median and the spread are reported. The time JAX spends compiling
    within a timed chunk is taken off (and reported). ``jax`` (and ``jax+d3``) is NaN, with the reason, where the box is not periodic or
    not wider than twice the model's cutoff (ilcampaign.engine.models.apax.jax_md_valid); any path is NaN, with
    the reason, where the MD stopped early (blow-up or temperature guard). See ``_dataset``.
    """
    from ilcampaign.campaign.spec import DispersionCorrection
    from ilcampaign.engine.models.apax import model_config

    d3 = d3 or DispersionCorrection()
    unknown = sorted(set(paths) - set(PATHS))
    if unknown or not paths or len(set(paths)) != len(paths):
        raise ValueError(f"paths must be distinct entries of {PATHS}, got {list(paths)}")
    if bool(set(D3_PATHS) & set(paths)) != bool(d3_cutoffs):
        raise ValueError("give D3 cutoffs exactly when a D3 path (jax+d3, ase+d3) is timed")
    if min(n_steps, warmup, n_timings) < 1:
        raise ValueError(f"n_steps, warmup and n_timings must be at least 1, got {n_steps}, {warmup}, {n_timings}")
    if not repeats:
        raise ValueError("give at least one replication of the box")
    replications = sorted((_replication(r) for r in repeats), key=lambda r: len(box) * math.prod(r))
    model_dir = Path(model_dir)
    r_max = model_config(model_dir).model.basis.r_max
    runs = timed_runs(paths, d3_cutoffs)
    warmup_steps = -(-warmup // n_steps) * n_steps
    samples = np.full((len(runs), len(replications), n_timings), np.nan)
    compile_times = np.full_like(samples, np.nan)
    reasons = np.full((len(runs), len(replications)), "", dtype=object)
    for j, replication in enumerate(replications):
        atoms = box.repeat(replication)
        for i, (path, cutoff) in enumerate(runs):
            reason = _jax_invalid(atoms, r_max) if path.startswith("jax") else ""
            if not reason:
                timer = (_jax_timer(model_dir, cutoff, d3, cache_dir) if path.startswith("jax")
                         else _ase_timer(model_dir, cutoff, d3, cache_dir))
                times, compiling, reason = timer(atoms, n_steps, warmup_steps, n_timings)
                samples[i, j, :len(times)] = times
                compile_times[i, j, :len(times)] = compiling
            reasons[i, j] = reason
    settings = {"n_steps": n_steps, "warmup_steps": warmup_steps, "n_timings": n_timings, "r_max": r_max,
                "torch_device": "cpu"}
    return _dataset(runs, [len(box) * math.prod(r) for r in replications], replications, samples, compile_times,
                    reasons, settings)


def timed_runs(paths: Sequence[str], d3_cutoffs: Sequence[float]) -> list[tuple[str, float]]:
    """The (path, D3 cutoff) runs timed at each size: each path without D3 once (cutoff NaN), each D3
    path at each cutoff."""
    runs = [(path, math.nan) for path in paths if path not in D3_PATHS]
    return runs + [(path, float(cutoff)) for path in D3_PATHS if path in paths for cutoff in d3_cutoffs]


def _replication(repeat: int | Sequence[int]) -> tuple[int, int, int]:
    """(a, b, c) for an int k (k, k, k) or a triple; ValueError for anything else or a factor below 1."""
    replication = (repeat,) * 3 if isinstance(repeat, (int, np.integer)) else tuple(repeat)
    if len(replication) != 3 or min(replication) < 1:
        raise ValueError(f"a replication is k or (a, b, c) with factors >= 1, got {repeat!r}")
    return tuple(int(k) for k in replication)


def _jax_invalid(atoms: Atoms, r_max: float) -> str:
    """Why our JAX MD cannot run ``atoms`` ("" if it can)."""
    from ilcampaign.engine.models.apax import jax_md_valid

    if not atoms.pbc.all():
        return "JAX MD runs periodic boxes only"
    if not jax_md_valid(atoms, r_max):
        width = float(np.min(1.0 / np.linalg.norm(atoms.cell.reciprocal(), axis=1)))
        return (f"box too small for JAX MD: a perpendicular width {width:.4g} A is not above 2 r_max = "
                f"{2 * r_max:g} A (jax_md's minimum image would miss neighbours)")
    return ""


Timer = Callable[["Atoms", int, int, int], tuple[list[float], list[float], str]]


@contextmanager
def compile_spans() -> Iterator[list[tuple[float, float]]]:
    """The (start, end) times of JAX's tracing, lowering and compilation (persistent cache reads
    included) while in the block; nested ones (a jit traced within another) overlap."""
    import jax.monitoring

    spans: list[tuple[float, float]] = []

    def listener(event: str, start_time: float, end_time: float, **kwargs: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            spans.append((start_time, end_time))

    jax.monitoring.register_event_time_span_listener(listener)
    try:
        yield spans
    finally:
        jax.monitoring.unregister_event_time_span_listener(listener)


def covered_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of the spans."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


def _chunked(run: Callable[[Atoms, int, int, Any, int], tuple[Any, str | None]]) -> Timer:
    """A timer from ``run(atoms, first, last, state, interval) -> (state, stop reason or None)``: chunks
    of ``n_steps`` steps (a frame at each chunk's end), the first ``warmup_steps`` untimed; for each
    timed chunk, the seconds per step less JAX's compilation, and that compilation time (s); no
    times, and the reason, if the MD stops early."""
    def timer(atoms: Atoms, n_steps: int, warmup_steps: int, n_timings: int) -> tuple[list[float], list[float], str]:
        state, stop = None, None
        times: list[float] = []
        compiling: list[float] = []
        for first in range(0, warmup_steps + n_timings * n_steps, n_steps):
            with compile_spans() as spans:
                start = time.perf_counter()
                state, stop = run(atoms, first, first + n_steps, state, n_steps)
                elapsed = time.perf_counter() - start
            if stop:
                return [], [], f"MD stopped early, no timing kept: {stop}"
            if first >= warmup_steps:
                compiling.append(covered_seconds(spans))
                times.append((elapsed - compiling[-1]) / n_steps)
        return times, compiling, ""

    return timer


def _jax_timer(model_dir: Path, d3_cutoff: float, d3: DispersionCorrection, cache_dir: Path | None) -> Timer:
    """Chunks of ilcampaign.engine.md.jax.run_chunk (no uncertainty stop), with the D3 term of ``d3`` at
    ``d3_cutoff`` in the loop unless NaN."""
    from ilcampaign.engine.dispersion.jax_term import D3Term
    from ilcampaign.engine.md.jax import JaxMDParameters, run_chunk

    term = None if math.isnan(d3_cutoff) else D3Term.from_spec(d3, d3_cutoff)

    def run(atoms: Atoms, first: int, last: int, state: Any, interval: int) -> tuple[Any, str | None]:
        settings = JaxMDParameters(timestep=TIMESTEP_FS, thermostat_time=THERMOSTAT_TIME_FS, interval=interval,
                              threshold=None, d3=term)
        chunk = run_chunk(model_dir, atoms, np.full(last + 1, TEMPERATURE_K), settings, seed=SEED, first=first,
                          last=last, state=state, cache_dir=cache_dir)
        return chunk.state, chunk.stop_reason

    return _chunked(run)


def _ase_timer(model_dir: Path, d3_cutoff: float, d3: DispersionCorrection, cache_dir: Path | None) -> Timer:
    """Chunks of ilcampaign.engine.md.ase.run_md_chunk with apax's calculator (plus D3 at ``d3_cutoff`` unless
    NaN), one calculator for all chunks of a size so that only the warm-up compiles."""
    from ilcampaign.campaign.spec import MDSettings
    from ilcampaign.engine.models.apax import load_calculator
    from ilcampaign.engine.md.ase import run_md_chunk

    calc = load_calculator(model_dir, cache_dir=cache_dir)
    if not math.isnan(d3_cutoff):
        from ilcampaign.engine.dispersion.ase_hybrid import calculator_options, hybrid_calculator

        calc = hybrid_calculator(calc, **calculator_options(d3, d3_cutoff))

    def run(atoms: Atoms, first: int, last: int, state: Any, interval: int) -> tuple[Any, str | None]:
        sampler = MDSettings(ensemble="nvt", thermostat="nose_hoover_chain", temperature=TEMPERATURE_K,
                            thermostat_time=THERMOSTAT_TIME_FS, timestep=TIMESTEP_FS, n_steps=last,
                            interval=interval, uncertainty_threshold=None, engine="ase")
        chunk = run_md_chunk(atoms, calc, sampler, seed=SEED, first=first, last=last, state=state, uncertainty=None)
        return chunk.state, chunk.stop_reason

    return _chunked(run)


def _dataset(runs: list[tuple[str, float]], n_atoms: list[int], replications: list[tuple[int, int, int]],
             samples: np.ndarray, compile_times: np.ndarray, reasons: np.ndarray, settings: dict[str, Any]
             ) -> xr.Dataset:
    """Over ``run`` (a path, and a D3 cutoff for jax+d3 and ase+d3) and ``size`` (increasing n_atoms): the median,
    min and max seconds per step of the timed chunks, each chunk's time and JAX compilation time
    (``timing``), steps per second (from the median) and why a cell is NaN; the devices and thread
    counts as attributes."""
    import jax
    import torch
    import xarray as xr

    labels = [path if math.isnan(cutoff) else f"{path} (cutoff {cutoff:g} A)" for path, cutoff in runs]
    per_step = {"units": "s", "comment": "wall time per MD step less JAX compilation, a chunk's fixed costs "
                                         "included"}
    with warnings.catch_warnings():  # all-NaN cells stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        median, low, high = np.median(samples, axis=-1), np.min(samples, axis=-1), np.max(samples, axis=-1)
    attrs = {
        "description": "MD cost per step versus system size per engine path (performance is measured, not asserted)",
        "integrator": f"NVT, timestep {TIMESTEP_FS:g} fs, Nose-Hoover chain of damping time {THERMOSTAT_TIME_FS:g} fs "
                      f"at {TEMPERATURE_K:g} K; jax and jax+d3: jax_md nvt_nose_hoover (chain length 5), ase and ase+d3: ASE "
                      "NoseHooverChainNVT (chain length 3)",
        "timing": "per (path, size): chunks of n_steps steps, one frame each, no uncertainty check; the first "
                  "warmup_steps steps untimed (compilation), then n_timings chunks timed one by one; JAX "
                  "compilation within a timed chunk is taken off its time",
        "jax_platform": jax.devices()[0].platform,
        "jax_device": str(jax.devices()[0]),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "timestep_fs": TIMESTEP_FS,
        "thermostat_time_fs": THERMOSTAT_TIME_FS,
        "temperature_K": TEMPERATURE_K,
        **settings,
    }
    return xr.Dataset(
        {
            "time_per_step": (("run", "size"), median, {**per_step, "comment": per_step["comment"] + "; median over "
                                                        "the timed chunks; NaN where not run (see not_run_reason)"}),
            "time_per_step_min": (("run", "size"), low, per_step),
            "time_per_step_max": (("run", "size"), high, per_step),
            "time_per_step_samples": (("run", "size", "timing"), samples, {**per_step, "comment": "one per timed chunk"}),
            "compile_time_samples": (("run", "size", "timing"), compile_times, {
                "units": "s", "comment": "JAX tracing, lowering and compilation within each timed chunk (taken "
                                         "off time_per_step_samples x n_steps)"}),
            "steps_per_second": (("run", "size"), 1.0 / median, {"units": "1/s", "comment": "1 / time_per_step"}),
            "not_run_reason": (("run", "size"), reasons.astype(str), {"comment": "empty where timed"}),
        },
        coords={
            "run": ("run", labels),
            "path": ("run", [path for path, _ in runs]),
            "d3_cutoff": ("run", [cutoff for _, cutoff in runs], {"units": "Angstrom", "comment": "NaN: no D3"}),
            "n_atoms": ("size", n_atoms, {"units": "1"}),
            "replication": (("size", "cell_vector"), np.array(replications), {"units": "1"}),
        },
        attrs=attrs,
    )
