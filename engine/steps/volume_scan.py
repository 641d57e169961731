"""``volume_scan``: rigid-molecule volume scans of (optimised) start structures."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import Optimiser, Start, VolumeScanSettings
from ilcampaign.engine.step import StepContext, TaskResult, register
from ilcampaign.engine.steps.sampling import ENDS, OptimisingStep, tag_candidates


@register
class VolumeScanStep(OptimisingStep):
    """Optimise each start structure with the model (chunked, resumable), then scale its cell from
    ``length_factors[0]`` to ``length_factors[1]`` in ``n_frames`` frames, molecules rigid. The
    scan frames are the candidates; the optimised structures are the ends."""

    kind: ClassVar[str] = "volume_scan"
    version: ClassVar[int] = 3

    settings: VolumeScanSettings

    def optimiser(self) -> Optimiser | None:
        return self.settings.optimise

    def start(self) -> Start:
        return self.settings.start

    def tasks(self, ctx: StepContext) -> list[str]:
        done = ctx.done_tasks()
        scans = [f"{self.prefix(j)}scan" for j in range(self.start().count)
                 if f"{self.prefix(j)}scan" not in done and self.optimised(ctx, j)]
        return self.optimisation_tasks(ctx) + scans

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        if not task_id.endswith(".scan"):
            return self.run_optimisation(ctx, task_id)
        from ilcampaign.engine.structures.candidates import volume_scan

        optimised = self.optimisation_frames(ctx, int(task_id[1:4]))[-1]
        start, end = self.settings.length_factors
        frames = volume_scan(optimised, start, end, self.settings.n_frames)
        return TaskResult(frames, {"n_frames": len(frames)})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        count = self.start().count
        frames = tag_candidates([f for j in range(count) for f in ctx.task_frames(f"{self.prefix(j)}scan")],
                                "volume_scan")
        ends = [self.optimisation_frames(ctx, j)[-1] for j in range(count)]
        for end in ends:
            end.calc = None
        return [ctx.write_frames(frames), ctx.write_frames(ends, ENDS)], {"n_candidates": len(frames),
                                                                          "n_structures": count,
                                                                          "guard_stops": self.guard_stops(ctx)}
