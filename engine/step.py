"""The step interface: one class per step kind, whose typed fields are its parameters.

A step's work is split into tasks, each committed to the archive as it finishes, so a killed
step resumes at the first unfinished task. ``tasks()`` is asked again after every round, so a
step may plan work that depends on finished tasks (sequential MD chunks, uniform relabelling).
Tasks exchange data through the archive only, which keeps them picklable for any executor.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ilcampaign.archive.store import Archive, ArchiveError, checked_digest

if TYPE_CHECKING:
    from ase import Atoms

FRAMES = "frames.h5"


TASK_RESOURCES = {"cores": 1, "mpi_ranks": 1, "gpus": 0, "memory_gb": None, "walltime_h": None}
GPU_TASK = {**TASK_RESOURCES, "gpus": 1}  # JAX training and MD: one GPU where the executor has one
#: what the engine adds to each task's summary (engine.run.execute): the step's record keeps them, its outputs do not
TASK_TIMINGS = ("wall_s", "cpu_s", "compile_s")


def without_timings(summary: dict[str, Any]) -> dict[str, Any]:
    """A task's summary as the task made it, without the engine's timings."""
    return {k: v for k, v in summary.items() if k not in TASK_TIMINGS}


@dataclass(frozen=True)
class WorkFacts:
    """What a step's work depends on beyond its own parameters, as the graph knows it before a run:
    the atoms of the structures it works on, the frames it reads (labels, datasets) and, for an
    analysis of production runs, the frames times atoms of the trajectories it reads."""

    atoms: int
    frames: int | None = None
    trajectory: int | None = None


@dataclass(frozen=True)
class Work:
    """How much a step does, in its kind's unit (``campaign rehearse`` projects time from it).
    For the time model: ``weight`` multiplies a unit where its cost grows with something the unit
    does not say (a reference call with its box's atoms, a hybrid MD step with the D3 cutoff's
    volume), and steps of one kind with another ``variant`` (a hybrid MD run) cost per unit apart."""

    unit: str
    amount: float
    weight: float = 1.0
    variant: str = ""

    @property
    def effort(self) -> float:
        """What the time model's cost per unit multiplies."""
        return self.amount * self.weight


class StepFailed(Exception):
    """A step cannot finish as its spec demands (e.g. too many failed reference calculations)."""


@dataclass
class TaskResult:
    """What a task hands back: configurations to store (with their velocities if ``velocities``)
    and a JSON-able summary."""

    frames: list[Atoms] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    velocities: bool = False


@dataclass
class StepContext:
    """Where a step reads its inputs and writes its results."""

    archive: Archive
    key: str
    inputs: dict[str, str]  # input slot -> key of the producing step
    scratch: Path

    @property
    def out_dir(self) -> Path:
        return self.archive.step_dir(self.key)

    def input_frames(self, slot: str) -> list[Atoms]:
        from ilcampaign.archive.frames import read_frames

        return read_frames(self.archive.output(self.inputs[slot], FRAMES))

    def input_record(self, slot: str) -> dict[str, Any]:
        return self.archive.record(self.inputs[slot])

    def model_dir(self, slot: str = "model") -> Path:
        """The trained model of input ``slot``, unpacked once per work directory from its blob (whose
        bytes are checked against its digest first) as a folder apax loads (ilcampaign.engine.models.blob)."""
        import shutil
        import tempfile

        from ilcampaign.engine.models.blob import unpack

        digest = self.input_record(slot)["blobs"]["model"]
        try:
            target = self.scratch.parent / "models" / checked_digest(digest, "model digest")[:16]
            blob = None if target.exists() else self.archive.checked_blob(digest)
        except ArchiveError as exc:
            raise StepFailed(f"the model of input {slot!r} is not unpacked: {exc}") from None
        if blob is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            unpacked = Path(tempfile.mkdtemp(dir=target.parent))
            unpack(blob, unpacked)
            try:
                unpacked.rename(target)
            except OSError:  # another worker unpacked it first
                shutil.rmtree(unpacked)
        return target / "model"

    def done_tasks(self) -> dict[str, dict[str, Any]]:
        return self.archive.done_tasks(self.key)

    @property
    def jax_cache(self) -> Path:
        """JAX's persistent compilation cache of the work directory (safe to delete, like scratch)."""
        return self.scratch.parent / "jax_cache"

    def checkpoint_dir(self, task_id: str) -> Path:
        """A folder that survives a killed run, for a long task's own checkpoints (e.g. apax's)."""
        path = self.archive.checkpoint_dir(self.key, task_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def journal(self, event: str, **fields: Any) -> None:
        """Append an event (``checkpoint``, ``resumed``, ...) to the step's journal."""
        import time

        self.archive.journal(self.key, {"event": event, **fields, "time": time.time()})

    def task_frames(self, task_id: str) -> list[Atoms]:
        from ilcampaign.archive.frames import read_frames

        path = self.archive.task_file(self.key, task_id, ".h5")
        return read_frames(path) if path.exists() else []

    def finish_single(self, task_id: str, extra: tuple[str, ...] = ()) -> tuple[list[str], dict[str, Any]]:
        """Outputs of a one-task step: the task's frames, extra task files ``<task>.<name>`` copied
        to ``<name>``, and the task's summary (without its timings, which the record has)."""
        from ilcampaign.archive.atomic import atomic_copy

        summary = without_timings(self.done_tasks()[task_id])
        outputs = [self.write_frames(self.task_frames(task_id))]
        for name in extra:
            atomic_copy(self.archive.task_file(self.key, task_id, f".{name}"), self.out_dir / name)
            outputs.append(name)
        return outputs, summary

    def write_frames(self, frames: list[Atoms], filename: str = FRAMES) -> str:
        from ilcampaign.archive.frames import write_frames

        write_frames(self.out_dir / filename, frames)
        return filename


class Step(BaseModel):
    """Base class of step kinds. Subclasses set ``kind``, ``version`` and ``inputs`` and define
    ``tasks``, ``run_task`` and ``finish``. Bump ``version`` whenever results would change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]
    version: ClassVar[int] = 1
    inputs: ClassVar[tuple[str, ...] | None] = ()  # None: any number of input slots
    exclusive: ClassVar[bool] = False  # True: runs alone (e.g. it measures time), never beside other steps

    def input_slots(self) -> tuple[str, ...] | None:
        """The input slots the step's graph node wires: ``inputs``, and any its fields ask for."""
        return self.inputs

    def tasks(self, ctx: StepContext) -> list[str]:
        """Ids of the tasks still to run, given the finished ones; empty when all are done."""
        raise NotImplementedError

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        """Do one task's work (in any process); the engine stores the result."""
        raise NotImplementedError

    def task_resources(self) -> dict[str, Any]:
        """What one task needs by default (keys as ``ilcampaign.campaign.spec.execution.Resources``); the
        spec's ``execution.resources`` override it per step kind."""
        return dict(TASK_RESOURCES)

    def expected_tasks(self) -> int:
        """How many tasks the step will have if it runs to the end (for progress bars; 0: unknown)."""
        return 0

    def work(self, facts: WorkFacts) -> Work:
        """How much the step will do at most (MD steps x atoms, reference calls, epochs x frames,
        ...); by default the step itself is the unit."""
        return Work("steps", 1)

    def work_done(self, facts: WorkFacts, summary: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> Work:
        """How much the finished step did, from its summary and its tasks' summaries: less than
        ``work`` where it may stop early (an MD run at a threshold, a converged optimisation)."""
        return self.work(facts)

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        """Assemble the finished tasks into outputs in ``ctx.out_dir``: (output files, summary)."""
        raise NotImplementedError


class SingleTaskStep(Step):
    """A step whose work is one task, named ``task``; its outputs are that task's frames, the
    task files listed in ``extra_outputs``, and its summary (see ``StepContext.finish_single``)."""

    task: ClassVar[str]
    extra_outputs: ClassVar[tuple[str, ...]] = ()

    def tasks(self, ctx: StepContext) -> list[str]:
        return [] if self.task in ctx.done_tasks() else [self.task]

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        return ctx.finish_single(self.task, self.extra_outputs)


REGISTRY: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator adding a step kind to the registry (name -> class)."""
    REGISTRY[cls.kind] = cls
    return cls


def versions() -> dict[str, str]:
    """Versions of the software a step's results depend on (recorded, never hashed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("ilcampaign", "ase", "numpy", "tblite", "gfnff", "rdkit", "packmol", "h5py", "apax", "torch-dftd"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
