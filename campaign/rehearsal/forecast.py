"""The cost of a campaign projected from a rehearsal of it.

Each step says how much it will do at most in its kind's unit (``Step.work``: MD steps x atoms,
reference calls, epochs x frames, optimiser steps x atoms, ...), from its parameters and what the
graph knows before a run: the atoms of the structures it works on (from the packed boxes they come
from) and the frames it labels or trains on (from the schedule's counts). A finished step says how
much it did (``Step.work_done``: an MD run may stop at its uncertainty threshold, an optimisation
when it converges). The rehearsal measured each step's tasks: their run time, and apart from it
the time JAX spent compiling (``engine.run.compilation``), which grows with the number of distinct
programs, not with the work. Per step kind a line through the run times, run = a x tasks + b x
work done (least squares, a and b >= 0: a is what a task costs whatever it does, b what a unit
costs; ``Work.weight``: a reference call is weighed by its box's atoms, a hybrid MD step and a D3
relabel by the D3 cutoff sphere's volume; ``Work.variant``: MD steps get a line per engine, and
hybrids their own), projects the run time of the same kind of step at another size. Where a
line's steps all did the same work per task, the two terms cannot be told apart and the work
carries the whole time, so that a larger campaign is not under-forecast. At the real campaign's
size the machine, the model and the reference differ from the rehearsal's, so the forecast gives
the work itself, and core- and GPU-hours where ``execution.estimates`` says what a reference call,
an MD step and a training epoch cost there; tasks longer than the walltime of the executor they
would run on (a Parsl configuration) are flagged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ilcampaign.campaign.spec import CampaignSpec
from ilcampaign.engine.step import Work, WorkFacts


@dataclass
class Planned:
    """One step's work as the graph plans it."""

    name: str
    kind: str
    unit: str
    work: float
    tasks: int
    effort: float  # what the time model's cost per unit multiplies (``Work.effort``)
    group: str  # the time model's line: the step kind, and its variant (``Work.variant``) if any


@dataclass
class KindForecast:
    """One step kind over a whole campaign."""

    kind: str
    unit: str
    steps: int
    tasks: int
    work: float
    wall_s: float | None = None  # run time at the rehearsal's speed (its machine, tiny models, the stand-in)
    core_hours: float | None = None
    gpu_hours: float | None = None
    measured_s: float | None = None  # where this is a rehearsal: the run time it took,
    done_s: float | None = None  # the run time the time model gives for the work it did,
    compile_s: float | None = None  # and the time it spent compiling
    flags: list[str] = field(default_factory=list)


def atoms_per_step(nodes: list) -> dict[str, int]:
    """Atoms of the structures each step works on: a packed box's, carried along the inputs that
    hold structures (the start, the frames, the dataset); the system box's where none does."""
    by_name = {node.name: node for node in nodes}
    atoms: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in atoms:
            node = by_name[name]
            ions = getattr(node.step, "ions", None)
            if node.step.kind == "pack":
                from ilcampaign.engine.structures.guards import template

                atoms[name] = sum(ion.count * len(template(ion.smiles).symbols) for ion in ions)
            else:
                sources = [node.inputs[slot] for slot in ("start", "structure", "frames", "data", "new", "train")
                           if slot in node.inputs]
                atoms[name] = of(sources[0]) if sources else of("pack")
        return atoms[name]

    for node in nodes:
        if node.name != "molecules":
            of(node.name)
    atoms["molecules"] = 0
    return atoms


def frames_per_step(spec: CampaignSpec) -> dict[str, int]:
    """Frames each label and train step handles, and each ``model_errors`` analysis evaluates (its
    models' frames of its split), from the schedule's counts (where known)."""
    from ilcampaign.campaign.spec.schedule import table

    rows = table(spec)
    frames: dict[str, int] = {}
    initial = rows[0]
    section = spec.initial_data
    if section.kind == "md" and section.driver == "reference":  # it labels its own frames (read from the cache)
        frames["label.initial_data"] = 0
    else:  # rattled or read frames, or MD by another driver: the reference labels each kept frame
        frames["label.initial_data"] = initial.new_labels or 0
    frames["train.initial"] = (initial.train or 0) + (initial.valid or 0)
    last, model_rows = initial, {"initial": initial}  # a model's dataset: its stage's row
    for stage, row in zip(spec.stages(), rows[1:]):
        name = stage.planned.name
        frames[f"{name}.label"] = row.new_labels or 0
        frames[f"{name}.train"] = (row.train or 0) + (row.valid or 0)
        last = model_rows[name] = row
    total = (last.train or 0) + (last.valid or 0) + (last.test or 0)
    for final in spec.final_models:
        frames[f"final.{final.name}.label"] = total
        frames[f"final.{final.name}.d3"] = total
        frames[f"final.{final.name}.train"] = (last.train or 0) + (last.valid or 0)
        model_rows[f"final.{final.name}"] = last
    for name, analysis in spec.analyses.items():
        if analysis.kind == "model_errors":
            frames[f"analysis.{name}"] = sum(getattr(model_rows[model], analysis.split) or 0
                                             for model in spec.resolve_models(analysis.models) if model in model_rows)
    return frames


def trajectory_per_step(nodes: list, atoms: dict[str, int]) -> dict[str, int]:
    """Frames x atoms of the production trajectories each analysis reads (its ``run000``, ... inputs:
    MD steps, a frame every ``interval`` of their ``n_steps``)."""
    by_name = {node.name: node for node in nodes}
    read = {}
    for node in nodes:
        runs = [name for slot, name in node.inputs.items() if slot.startswith("run")]
        if runs:
            read[node.name] = sum((by_name[run].step.sampler.n_steps // by_name[run].step.sampler.interval + 1)
                                  * atoms[run] for run in runs)
    return read


def facts(spec: CampaignSpec, nodes: list) -> dict[str, WorkFacts]:
    """What each step's work depends on, as the graph knows it before a run."""
    atoms, frames = atoms_per_step(nodes), frames_per_step(spec)
    read = trajectory_per_step(nodes, atoms)
    return {node.name: WorkFacts(atoms=atoms[node.name], frames=frames.get(node.name), trajectory=read.get(node.name))
            for node in nodes}


def plan(spec: CampaignSpec, nodes: list) -> list[Planned]:
    """Every step's planned work and tasks."""
    known = facts(spec, nodes)
    planned = []
    for node in nodes:
        work = node.step.work(known[node.name])
        tasks = node.step.expected_tasks() or (int(work.amount) if work.unit == "reference calls" else 1)
        planned.append(Planned(node.name, node.step.kind, work.unit, float(work.amount), max(tasks, 1),
                               float(work.effort), group(node.step.kind, work)))
    return planned


@dataclass
class Measured:
    """A finished step: its tasks, the work they did (as ``Work.effort``), their run time without
    JAX compilation, the compilation, and its time model's line."""

    tasks: int
    effort: float
    run_s: float
    compile_s: float
    group: str


def group(kind: str, work: Work) -> str:
    """The time model's line of a step: its kind, and its variant if any (``Work.variant``)."""
    return f"{kind} ({work.variant})" if work.variant else kind


def measured_steps(archive: Any, spec: CampaignSpec, nodes: list) -> dict[str, Measured]:
    """Step name -> what its run in ``archive`` did and took (finished steps only)."""
    known = facts(spec, nodes)
    measured = {}
    for node in nodes:
        if not archive.is_done(node.key):
            continue
        record = archive.record(node.key)
        done = node.step.work_done(known[node.name], record["summary"], archive.done_tasks(node.key))
        compiled = record.get("task_compile_s", 0.0)
        measured[node.name] = Measured(record["n_tasks"], float(done.effort), record["task_wall_s"] - compiled,
                                       compiled, group(node.step.kind, done))
    return measured


def fit(measured: dict[str, Measured]) -> dict[str, tuple[float, float]]:
    """Per step kind and variant (a, b) of run = a x tasks + b x work done, over the steps that finished."""
    lines = {}
    for line in sorted({m.group for m in measured.values()}):
        rows = [(m.tasks, m.effort, m.run_s) for m in measured.values() if m.group == line]
        x, y = np.array([[t, w] for t, w, _ in rows], dtype=float), np.array([s for _, _, s in rows])
        lines[line] = _nonnegative_least_squares(x, y)
    return lines


def _nonnegative_least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) >= 0 minimising |x @ (a, b) - y|. Where every step did the same work per task the two
    cannot be told apart, and the work carries the whole time: a larger campaign does more work
    per task, and a forecast had better err long."""
    from scipy.optimize import nnls

    if np.ptp(x[:, 1] / np.maximum(x[:, 0], 1)) == 0 and x[:, 1].sum() > 0:
        return 0.0, float(y.sum() / x[:, 1].sum())
    scale = np.maximum(np.abs(x).max(axis=0), 1e-300)
    (a, b), _ = nnls(x / scale, y)
    return float(a / scale[0]), float(b / scale[1])


def _seconds(line: tuple[float, float], tasks: int, effort: float) -> float:
    """Run time on the line (a, b): a x tasks + b x work."""
    a, b = line
    return a * tasks + b * effort


def forecast(spec: CampaignSpec, nodes: list, lines: dict[str, tuple[float, float]],
             measured: dict[str, Measured] | None = None, parsl: Path | None = None) -> list[KindForecast]:
    """Per step kind: the work of ``spec``'s graph, its run time at the rehearsal's speed, the hours
    ``execution.estimates`` give, measured times where given (a rehearsal of ``spec``: what it
    took, and what the time model gives for the work it did), and walltime flags."""
    estimates = spec.execution.estimates
    walltimes = _walltimes(parsl) if parsl is not None else {}
    kinds: dict[str, KindForecast] = {}
    for step in plan(spec, nodes):
        entry = kinds.setdefault(step.kind, KindForecast(step.kind, step.unit, 0, 0, 0.0))
        entry.steps += 1
        entry.tasks += step.tasks
        entry.work += step.work
        if step.group in lines:
            entry.wall_s = (entry.wall_s or 0.0) + _seconds(lines[step.group], step.tasks, step.effort)
        if measured is not None and step.name in measured:
            done = measured[step.name]
            entry.measured_s = (entry.measured_s or 0.0) + done.run_s
            entry.compile_s = (entry.compile_s or 0.0) + done.compile_s
            if done.group in lines:
                entry.done_s = (entry.done_s or 0.0) + _seconds(lines[done.group], done.tasks, done.effort)
        hours = _task_hours(step, estimates)
        if hours is not None and step.kind in walltimes and hours > walltimes[step.kind][1]:
            label, limit, retries = walltimes[step.kind]
            restarts = math.ceil(hours / limit) - 1
            entry.flags.append(f"{step.name}: a task takes {hours:.1f} h, over the {label} executor's walltime of "
                               f"{limit:g} h: it resumes from its checkpoint after {restarts} job end(s), "
                               + ("as Parsl's retries allow" if restarts <= retries else
                                  f"more than Parsl's retries ({retries}) allow: raise retries or the walltime"))
    for entry in kinds.values():
        if entry.unit == "reference calls" and estimates.reference_call_core_hours is not None:
            entry.core_hours = entry.work * estimates.reference_call_core_hours
        elif entry.unit == "MD steps x atoms" and estimates.md_atom_steps_per_gpu_second is not None:
            entry.gpu_hours = entry.work / estimates.md_atom_steps_per_gpu_second / 3600
        elif entry.unit == "epochs x frames" and estimates.epoch_frames_per_gpu_second is not None:
            entry.gpu_hours = entry.work / estimates.epoch_frames_per_gpu_second / 3600
    return sorted(kinds.values(), key=lambda k: -(k.wall_s or 0.0))


def _task_hours(step: Planned, estimates: Any) -> float | None:
    """Hours one task of a step takes on the real machine, from ``execution.estimates``."""
    per_task = step.work / step.tasks
    if step.unit == "reference calls" and estimates.reference_call_core_hours is not None:
        return None  # a call's wall time depends on its cores: core-hours are given, not hours
    if step.unit == "MD steps x atoms" and estimates.md_atom_steps_per_gpu_second is not None:
        return per_task / estimates.md_atom_steps_per_gpu_second / 3600
    if step.unit == "epochs x frames" and estimates.epoch_frames_per_gpu_second is not None:
        return per_task / estimates.epoch_frames_per_gpu_second / 3600
    return None


def _walltimes(path: Path) -> dict[str, tuple[str, float, int]]:
    """Step kind -> (executor label, walltime in hours, retries) of a Parsl configuration (YAML)."""
    import ilcampaign.engine.steps  # noqa: F401  (fills the step registry)
    from ilcampaign.engine.run.parsl_executor import load_config
    from ilcampaign.engine.step import REGISTRY

    config = load_config(path)
    first = next(iter(config.executors))
    routes = config.routes()

    hours = {}
    for kind in REGISTRY:
        label = routes.get(kind, first)
        hours[kind] = (label, _hours(config.executors[label].walltime), config.retries)
    return hours


def _hours(walltime: str) -> float:
    """A Slurm time limit ('1-12:00:00', '12:00:00', '90') in hours."""
    days, _, clock = walltime.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    seconds = {1: lambda p: p[0] * 60, 2: lambda p: p[0] * 60 + p[1], 3: lambda p: p[0] * 3600 + p[1] * 60 + p[2]}
    return (int(days or 0) * 86400 + seconds[len(parts)](parts)) / 3600


def markdown(rows: list[dict[str, Any]] | list[KindForecast], title: str = "Forecast of the real campaign") -> str:
    """The forecast as a table."""
    rows = [row if isinstance(row, dict) else asdict(row) for row in rows]
    lines = [f"## {title}", "", "| step kind | steps | tasks | work | unit | run time at the rehearsal's speed | "
             "core-hours | GPU-hours |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['kind']} | {row['steps']} | {row['tasks']} | {row['work']:.4g} | {row['unit']} | "
                     f"{_duration(row['wall_s'])} | {_number(row['core_hours'])} | {_number(row['gpu_hours'])} |")
    lines += ["", "Run times leave out JAX compilation: it grows with the number of distinct programs (models, "
              "box sizes), not with the work, and takes seconds to minutes per program."]
    flags = [flag for row in rows for flag in row["flags"]]
    if flags:
        lines += ["", "Tasks longer than their executor's walltime:", ""] + [f"- {flag}" for flag in flags]
    return "\n".join(lines) + "\n"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} d"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def agreement(predicted: list[KindForecast]) -> list[dict[str, Any]]:
    """Per kind: the run time predicted for the work done and for the work planned, the measured
    run time, their ratios, and the compile time (where a time model and a measured time exist)."""
    rows = []
    for entry in predicted:
        if entry.wall_s is not None and entry.done_s is not None and entry.measured_s:
            rows.append({"kind": entry.kind, "done_s": entry.done_s, "planned_s": entry.wall_s,
                         "measured_s": entry.measured_s, "ratio": entry.done_s / entry.measured_s,
                         "planned_ratio": entry.wall_s / entry.measured_s, "compile_s": entry.compile_s})
    return rows
