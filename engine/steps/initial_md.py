"""``initial_data: {kind: md}``: the first configurations from Langevin MD, in chunks of
``checkpoint_every`` steps (one task each, resumable and bit-identical when resumed:
ilcampaign.engine.md.ase). The ``driver`` integrates it. Driven by the reference, the reference's
energies, forces and stress of the kept frames are their labels: they are stored with the frames
and in the calculation cache, so labelling the initial data computes nothing again. Driven by
GFN-FF or GFN-xTB (ilcampaign.engine.md.drivers), the kept frames carry no labels: the reference
labels them, and only them, in ``label.initial_data``, as the paper labelled its classical frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ilcampaign.campaign.spec import CampaignSpec, InitialMD, MDSettings, Reference, TemperatureGuard, not_hashed
from ilcampaign.engine.run.chunks import chunk_range, chunks, next_chunk, read_state, write_state
from ilcampaign.engine.step import StepContext, StepFailed, TaskResult, Work, WorkFacts, register
from ilcampaign.engine.steps.sampling import GuardedStep, guard_fields


@register
class InitialMDStep(GuardedStep):
    """Langevin NVT MD with the driver's calculator (a driver other than the reference relaxes the
    packed box first), keeping a frame every ``interval`` steps (labelled where the reference drives); the step fails, naming the driver, the step and the cause, when the
    run trips the temperature guard or a frame breaks the contact or bond guard (a broken ion
    geometry or box, or a driver that left the physical region: not something to learn from)."""

    kind: ClassVar[str] = "initial_md"
    version: ClassVar[int] = 3
    inputs: ClassVar[tuple[str, ...]] = ("structure",)

    settings: InitialMD
    reference: Reference
    seed: int
    temperature_guard: TemperatureGuard = Field(default_factory=TemperatureGuard)
    checkpoint_every: int = not_hashed(default=1000, ge=1, description="MD steps per chunk")

    @classmethod
    def from_spec(cls, spec: CampaignSpec, base: Path) -> InitialMDStep:
        return cls(settings=spec.initial_data, reference=spec.reference, seed=spec.campaign.seed,
                   checkpoint_every=spec.checkpoints.md_steps, temperature_guard=spec.guards.temperature,
                   **guard_fields(spec))

    @property
    def driven_by_reference(self) -> bool:
        return self.settings.driver == "reference"

    def driver_name(self) -> str:
        """What integrates the MD, in words."""
        from ilcampaign.engine.md.drivers import name

        return "the reference" if self.driven_by_reference else name(self.settings.driver)

    @property
    def sampler(self) -> MDSettings:
        """The run as an MD sampler: Langevin at a constant temperature, no uncertainty stop."""
        md = self.settings
        return MDSettings(thermostat="langevin", temperature=md.temperature, timestep=md.timestep,
                         n_steps=md.n_steps, interval=md.interval, friction=md.friction, uncertainty_threshold=None,
                         engine="ase")

    def expected_tasks(self) -> int:
        return -(-self.settings.n_steps // self.checkpoint_every)

    def work(self, facts: WorkFacts) -> Work:
        """One reference call per MD step where the reference drives; else MD steps of the driver (the
        reference calls, one per kept frame, are ``label.initial_data``'s)."""
        if self.driven_by_reference:
            return Work("reference calls", self.settings.n_steps, weight=facts.atoms)
        return Work(f"MD steps ({self.driver_name()})", self.settings.n_steps, weight=facts.atoms)

    def tasks(self, ctx: StepContext) -> list[str]:
        return next_chunk(ctx.done_tasks(), self.settings.n_steps, self.checkpoint_every)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ase.calculators.calculator import CalculationFailed

        from ilcampaign.archive.frames import write_frames
        from ilcampaign.engine.labels.cache import configuration_digest, fresh_calculator
        from ilcampaign.engine.labels.method import ReferenceFailure
        from ilcampaign.engine.md import drivers
        from ilcampaign.engine.md.ase import run_md_chunk

        first, last = chunk_range(task_id)
        atoms = ctx.input_frames("structure")[0]
        atoms.calc = None
        what = f"initial-data MD (driven by {self.driver_name()})"
        # a fresh calculator per chunk: a resumed trajectory is bit-identical to an uninterrupted one
        if self.driven_by_reference:
            calculator = fresh_calculator(self.reference, int(atoms.info.get("charge", 0)), ctx.scratch)
        else:
            calculator = drivers.calculator(self.settings.driver, atoms, self.smiles, ctx.scratch)
        try:
            with calculator as calc:
                if first == 0 and not self.driven_by_reference:
                    atoms.calc = calc
                    drivers.relax(atoms)
                    atoms.calc = None
                chunk = run_md_chunk(atoms, calc, self.sampler, seed=self.seed, first=first, last=last,
                                     state=read_state(ctx, task_id), uncertainty=None, label=self.driven_by_reference,
                                     guard=self.temperature_guard)
        except (ReferenceFailure, drivers.DriverFailure, CalculationFailed) as exc:
            raise StepFailed(f"{what}: the calculation failed between steps {first} and {last}: {exc}") from exc
        if chunk.stop_reason is not None:
            raise StepFailed(f"{what} {chunk.stop_reason}: the driver left the physical region")
        collapse = self.first_collapse(ctx, chunk.frames)
        if collapse is not None:
            index, violation = collapse
            raise StepFailed(f"{what}: the frame at step {chunk.frames[index].info['step']} breaks the "
                             f"{violation.guard}: {violation}")
        for frame in chunk.frames:
            frame.info["source"] = "initial_md"
            if self.driven_by_reference:
                cached = ctx.archive.cache_file(configuration_digest(self.reference, frame))
                if not cached.exists():
                    write_frames(cached, [frame])
        write_state(ctx, task_id, chunk.state)
        return TaskResult(chunk.frames, {"rows": [list(map(float, row)) for row in chunk.rows]})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        import numpy as np

        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.engine.labels.method import reference_programs
        from ilcampaign.engine.md.common import series
        from ilcampaign.engine.md.drivers import program

        done = ctx.done_tasks()
        ran = chunks(done)
        frames = [frame for task in ran for frame in ctx.task_frames(task)]
        rows = [row for task in ran for row in done[task]["rows"]]
        write_dataset(ctx.out_dir / "series.nc", series(rows, self.settings.timestep))
        temperature = np.array([row[2] for row in rows if row[0] > 0])
        summary = {"n_frames": len(frames), "n_steps": self.settings.n_steps,
                   "mean_temperature_K": float(temperature.mean()), "max_temperature_K": float(temperature.max())}
        if self.driven_by_reference:  # for the record: what computed the labels
            summary["programs"] = reference_programs([self.reference])
        else:  # what integrated the MD (the labels come from label.initial_data)
            summary["driver"] = program(self.settings.driver)
        return [ctx.write_frames(frames), "series.nc"], summary
