"""``production``: one production MD run with a trained model (a grid point of a ``production``
run in the spec), chunked and resumable like ``md`` (the same engines, guards and checkpoints),
kept whole: an H5MD trajectory with velocities and cells, and the temperature/density/energy
series. A run stopped by a guard fails the step, naming the step and why; its chunks stay
recorded in the archive."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.engine.run.chunks import chunk_range, chunks
from ilcampaign.engine.step import StepContext, StepFailed, TaskResult, register
from ilcampaign.engine.steps.md import MDStep
from ilcampaign.engine.steps.sampling import ENDS

TRAJECTORY = "trajectory.h5"


@register
class ProductionStep(MDStep):
    """A production run: the MD step's run, no uncertainty stop, every frame kept with velocities."""

    kind: ClassVar[str] = "production"
    version: ClassVar[int] = 1

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        result = super().run_task(ctx, task_id)
        for frame in result.frames:
            frame.info.pop("source", None)
        result.velocities = True
        return result

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        import numpy as np

        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.archive.frames import concatenate, count_frames, read_frames
        from ilcampaign.engine.md.common import series

        done = ctx.done_tasks()
        ran = chunks(done)
        last = done[ran[-1]]
        if last["stopped_at"] is not None:
            raise StepFailed(f"the production run stopped at step {last['stopped_at']}: {last['stop_reason']}; "
                             "the model is not stable here (train on more data, or lower the temperature)")
        parts = [ctx.archive.task_file(ctx.key, task, ".h5") for task in ran]
        concatenate(ctx.out_dir / TRAJECTORY, parts)
        rows = np.array([row for task in ran for row in done[task]["rows"]], dtype=float)
        observables = series(rows, self.sampler.timestep)
        write_dataset(ctx.out_dir / "series.nc", observables)
        ends = ctx.write_frames(read_frames(parts[-1], [-1]), ENDS)
        observed = observables.sel(step=slice(1, None))  # the frames, not the start
        return [TRAJECTORY, "series.nc", ends], {
            "n_frames": count_frames(ctx.out_dir / TRAJECTORY), "engine": last["engine"],
            "engine_reason": last["engine_reason"], "n_steps": self.sampler.n_steps,
            "steps_run": chunk_range(ran[-1])[1], "n_chunks": len(ran),
            "frame_interval_fs": self.sampler.interval * self.sampler.timestep,
            "mean_temperature_K": float(observed["temperature"].mean()),
            "mean_density_g_cm3": float(observed["density"].mean()),
        }
