"""``initial_data: {kind: md}``: the first configurations from Langevin MD driven by the reference
method, in chunks of ``checkpoint_every`` steps (one task each, resumable and bit-identical when
resumed: ilcampaign.engine.md.ase). The reference's energies, forces and stress of the kept frames
are their labels: they are stored with the frames and in the calculation cache, so labelling the
initial data computes nothing again."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ilcampaign.campaign.spec import CampaignSpec, InitialMD, MDSettings, Reference, TemperatureGuard, not_hashed
from ilcampaign.engine.run.chunks import chunk_range, chunks, next_chunk, read_state, write_state
from ilcampaign.engine.step import StepContext, StepFailed, TaskResult, Work, WorkFacts, register
from ilcampaign.engine.steps.sampling import GuardedStep


@register
class InitialMDStep(GuardedStep):
    """Langevin NVT MD with the reference calculator, keeping a labelled frame every ``interval`` steps;
    the step fails, naming the step and the cause, when the run trips the temperature guard or a
    frame breaks the contact guard (a broken ion geometry or box, not something to learn from)."""

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
                   contacts=spec.guards.contacts, smiles=[ion.smiles for ion in spec.system.ions])

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
        return Work("reference calls", self.settings.n_steps)  # one per MD step

    def tasks(self, ctx: StepContext) -> list[str]:
        return next_chunk(ctx.done_tasks(), self.settings.n_steps, self.checkpoint_every)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.archive.frames import write_frames
        from ilcampaign.engine.md.ase import run_md_chunk
        from ilcampaign.engine.labels.cache import configuration_digest, fresh_calculator
        from ilcampaign.engine.labels.method import ReferenceFailure

        first, last = chunk_range(task_id)
        atoms = ctx.input_frames("structure")[0]
        atoms.calc = None
        # a fresh calculator per chunk: a resumed trajectory is bit-identical to an uninterrupted one
        with fresh_calculator(self.reference, int(atoms.info.get("charge", 0)), ctx.scratch) as calc:
            try:
                chunk = run_md_chunk(atoms, calc, self.sampler, seed=self.seed, first=first, last=last,
                                     state=read_state(ctx, task_id), uncertainty=None, label=True,
                                     guard=self.temperature_guard)
            except ReferenceFailure as exc:
                raise StepFailed(f"initial-data MD: the reference calculation failed between steps {first} and "
                                 f"{last}: {exc}") from exc
        if chunk.stop_reason is not None:
            raise StepFailed(f"initial-data MD {chunk.stop_reason}")
        collapse = self.first_collapse(chunk.frames)
        if collapse is not None:
            index, violation = collapse
            raise StepFailed(f"initial-data MD: the frame at step {chunk.frames[index].info['step']} breaks the "
                             f"contact guard: {violation}")
        for frame in chunk.frames:
            frame.info["source"] = "initial_md"
            cached = ctx.archive.cache_file(configuration_digest(self.reference, frame))
            if not cached.exists():
                write_frames(cached, [frame])
        write_state(ctx, task_id, chunk.state)
        return TaskResult(chunk.frames, {"rows": [list(map(float, row)) for row in chunk.rows]})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        import numpy as np

        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.engine.md.common import series
        from ilcampaign.engine.labels.method import reference_programs

        done = ctx.done_tasks()
        ran = chunks(done)
        frames = [frame for task in ran for frame in ctx.task_frames(task)]
        rows = [row for task in ran for row in done[task]["rows"]]
        write_dataset(ctx.out_dir / "series.nc", series(rows, self.settings.timestep))
        temperature = np.array([row[2] for row in rows if row[0] > 0])
        summary = {"n_frames": len(frames), "n_steps": self.settings.n_steps,
                   "mean_temperature_K": float(temperature.mean()), "max_temperature_K": float(temperature.max()),
                   "programs": reference_programs([self.reference])}  # for the record: what computed the labels
        return [ctx.write_frames(frames), "series.nc"], summary
