"""``geometry_optimisation``: FIRE/BFGS with the current model from the start structure(s)."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import GeometryOptimisationSettings, Optimiser, Start
from ilcampaign.engine.step import StepContext, TaskResult, register
from ilcampaign.engine.steps.sampling import ENDS, OptimisingStep, tag_candidates


@register
class GeometryOptimisationStep(OptimisingStep):
    """Every step of every optimisation is a candidate; the optimised structures are the ends."""

    kind: ClassVar[str] = "geometry_optimisation"
    version: ClassVar[int] = 3

    settings: GeometryOptimisationSettings

    def optimiser(self) -> Optimiser:
        return self.settings

    def start(self) -> Start:
        return self.settings.start

    def tasks(self, ctx: StepContext) -> list[str]:
        return self.optimisation_tasks(ctx)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        return self.run_optimisation(ctx, task_id)

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        runs = [self.optimisation_frames(ctx, j) for j in range(self.start().count)]
        frames = tag_candidates([frame for run in runs for frame in run], "geometry_optimisation")
        ends = [run[-1] for run in runs]
        steps = [int(end.info.get("step", 0)) for end in ends]
        fmax = [float(end.info.get("fmax_eV_A", "nan")) for end in ends]
        return [ctx.write_frames(frames), ctx.write_frames(ends, ENDS)], {
            "n_candidates": len(frames), "optimiser_steps": steps, "final_fmax_eV_A": fmax,
            "converged": [f < self.settings.fmax for f in fmax], "guard_stops": self.guard_stops(ctx)}
