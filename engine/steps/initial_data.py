"""``initial_data``: the first configurations, before any model exists.

``md``: Langevin MD driven by the reference method, run in checkpointed chunks (one task each,
each continuing from the last one's positions and momenta, with its own seeded random stream),
so a killed run resumes mid-trajectory with the same numbers. ``rattle``: Gaussian displacements
of the packed box.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pathlib import Path

from campaign.spec import InitialFile, InitialMD, InitialRattle, Reference, not_hashed
from engine.step import SingleTaskStep, Step, StepContext, StepFailed, TaskResult, register


def initial_data_step(section: InitialMD | InitialRattle | InitialFile, reference: Any, seed: int, base: Path) -> Step:
    """The step for the spec's ``initial_data`` section (file paths relative to ``base``)."""
    if isinstance(section, InitialMD):
        return ReferenceMD(settings=section, reference=reference, seed=seed)
    if isinstance(section, InitialFile):
        return FileFrames.from_section(section, base)
    return Rattle(settings=section, seed=seed)


def _chunk(index: int) -> str:
    return f"chunk{index:05d}"


@register
class ReferenceMD(Step):
    """Langevin NVT MD with the reference calculator, keeping a frame every ``interval`` steps."""

    kind: ClassVar[str] = "initial_md"
    version: ClassVar[int] = 1
    inputs: ClassVar[tuple[str, ...]] = ("structure",)

    settings: InitialMD
    reference: Reference
    seed: int

    @property
    def n_chunks(self) -> int:
        return -(-self.settings.n_steps // self.settings.chunk)

    def tasks(self, ctx: StepContext) -> list[str]:
        done = ctx.done_tasks()
        for index in range(self.n_chunks):
            if _chunk(index) not in done:
                return [_chunk(index)]  # chunks run one after another
        return []

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        import numpy as np
        from ase import units
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        from engine.labelling import fresh_calculator

        index = int(task_id.removeprefix("chunk"))
        md = self.settings
        rng = np.random.default_rng([self.seed, index])
        if index == 0:
            atoms = ctx.input_frames("structure")[0]
            MaxwellBoltzmannDistribution(atoms, temperature_K=md.temperature, rng=rng)
        else:
            previous = ctx.done_tasks()[_chunk(index - 1)]["state"]
            atoms = ctx.input_frames("structure")[0]
            atoms.positions = np.array(previous["positions"])
            atoms.set_momenta(np.array(previous["momenta"]))
        atoms.set_constraint(FixCom())
        dyn = Langevin(
            atoms, timestep=md.timestep * units.fs, temperature_K=md.temperature, friction=md.friction,
            fixcm=False, rng=rng,
        )
        first = index * md.chunk
        n_steps = min(md.chunk, md.n_steps - first)
        frames, thermo = [], []

        def keep() -> None:
            step = first + dyn.nsteps
            energy = atoms.get_potential_energy()
            if not np.isfinite(energy) or not np.all(np.isfinite(atoms.get_forces())):
                raise StepFailed(f"initial-data MD exploded at step {step}: non-finite energy or forces")
            if dyn.nsteps > 0:
                thermo.append([step, energy, atoms.get_kinetic_energy(), atoms.get_temperature()])
            if dyn.nsteps > 0 and step % md.interval == 0:  # step 0 of a chunk was kept by the one before
                frame = atoms.copy()
                frame.calc = None
                frame.set_constraint()
                frame.info.update(source="initial_md", step=step, time_fs=step * md.timestep,
                                  temperature_K=float(atoms.get_temperature()))
                frames.append(frame)

        dyn.attach(keep, interval=1)
        # a fresh calculator per chunk: a resumed trajectory is bit-identical to an uninterrupted one
        with fresh_calculator(self.reference, int(atoms.info.get("charge", 0)), ctx.scratch) as calc:
            atoms.calc = calc
            try:
                dyn.run(n_steps)
            except StepFailed:
                raise
            except Exception as exc:  # the reference calculator failing mid-trajectory
                raise StepFailed(f"initial-data MD: the reference calculation failed near step "
                                 f"{first + dyn.nsteps}: {exc}") from exc
        state = {"positions": atoms.positions.tolist(), "momenta": atoms.get_momenta().tolist()}
        summary = {"state": state, "n_frames": len(frames), "steps": [first, first + n_steps], "thermo": thermo}
        return TaskResult(frames, summary)

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        import numpy as np
        import xarray as xr

        from archive.arrays import write_dataset

        done = ctx.done_tasks()
        frames = [frame for index in range(self.n_chunks) for frame in ctx.task_frames(_chunk(index))]
        rows = np.array([row for index in range(self.n_chunks) for row in done[_chunk(index)]["thermo"]])
        step = rows[:, 0].astype(int)
        thermo = xr.Dataset(
            {
                "potential_energy": ("step", rows[:, 1], {"units": "eV"}),
                "kinetic_energy": ("step", rows[:, 2], {"units": "eV"}),
                "temperature": ("step", rows[:, 3], {"units": "K"}),
            },
            coords={"step": ("step", step, {"units": "1"}), "time": ("step", step * self.settings.timestep, {"units": "fs"})},
        )
        write_dataset(ctx.out_dir / "thermo.nc", thermo)
        summary = {"n_frames": len(frames), "n_steps": self.settings.n_steps, "mean_temperature_K": float(rows[:, 3].mean())}
        return [ctx.write_frames(frames), "thermo.nc"], summary


@register
class Rattle(SingleTaskStep):
    """Copies of the packed box with Gaussian displacements of standard deviation ``stdev``."""

    kind: ClassVar[str] = "initial_rattle"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "rattle"
    inputs: ClassVar[tuple[str, ...]] = ("structure",)

    settings: InitialRattle
    seed: int

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        import numpy as np

        box = ctx.input_frames("structure")[0]
        rng = np.random.default_rng(self.seed)
        frames = []
        for index in range(self.settings.n_frames):
            frame = box.copy()
            frame.positions += rng.normal(scale=self.settings.stdev, size=frame.positions.shape)
            frame.info.update(source="initial_rattle", index=index)
            frames.append(frame)
        return TaskResult(frames, {"n_frames": len(frames)})


@register
class FileFrames(SingleTaskStep):
    """Frames read from a trajectory file; the key follows the file's content, not its path."""

    kind: ClassVar[str] = "initial_file"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "read"

    path: str = not_hashed()
    sha256: str
    format: str | None
    every: int
    max_frames: int | None

    @classmethod
    def from_section(cls, section: InitialFile, base: Path) -> FileFrames:
        from archive.atomic import sha256_file

        path = (base / section.path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"initial_data.path: no file {path}")
        return cls(path=str(path), sha256=sha256_file(path), format=section.format, every=section.every,
                   max_frames=section.max_frames)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ase.io import read

        from archive.atomic import sha256_file

        if sha256_file(self.path) != self.sha256:
            raise StepFailed(f"{self.path} changed since the campaign was planned; run again")
        frames = read(self.path, index=f"::{self.every}", format=self.format)[: self.max_frames]
        for index, frame in enumerate(frames):
            frame.calc = None
            frame.info.update(source="initial_file", index=index)
        return TaskResult(frames, {"n_frames": len(frames)})
