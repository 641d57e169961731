"""``geometry_optimisation``: FIRE/BFGS with the current model on the last frame(s) sampled."""

from __future__ import annotations

from typing import ClassVar

from campaign.spec import GeometryOptimisation as Settings
from engine.step import SingleTaskStep, StepContext, TaskResult, register
from engine.steps.sampling import candidates, start_frames


@register
class GeometryOptimisation(SingleTaskStep):
    """Every optimisation step of the last ``n_structures`` frames of ``start`` is a candidate."""

    kind: ClassVar[str] = "geometry_optimisation"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "optimise"
    inputs: ClassVar[tuple[str, ...]] = ("model", "start")

    settings: Settings

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from engine.apax_model import load_calculator
        from engine.dynamics import optimise

        calc = load_calculator(ctx.model_dir())
        frames = [frame for atoms in start_frames(ctx, self.settings.n_structures)
                  for frame in optimise(atoms, calc, self.settings)]
        return candidates(frames, "geometry_optimisation")
