"""``volume_scan``: rigid-molecule volume scans of geometry-optimised structures."""

from __future__ import annotations

from typing import Any, ClassVar

from campaign.spec import GeometryOptimisation, VolumeScan as Settings
from engine.step import Step, StepContext, TaskResult, register
from engine.steps.sampling import candidates, start_frames


@register
class VolumeScan(Step):
    """Optimise the last ``n_structures`` frames of ``start`` with the model, then scale each box
    from ``start`` to ``end`` of its length in ``n_steps`` with every molecule kept rigid."""

    kind: ClassVar[str] = "volume_scan"
    version: ClassVar[int] = 1
    inputs: ClassVar[tuple[str, ...]] = ("model", "start")

    settings: Settings

    def tasks(self, ctx: StepContext) -> list[str]:
        return [] if "scan" in ctx.done_tasks() else ["scan"]

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from engine.apax_model import load_calculator
        from engine.dynamics import optimise
        from engine.structures import volume_scan

        s = self.settings
        calc = load_calculator(ctx.model_dir())
        relax = GeometryOptimisation(fmax=s.fmax)
        frames = []
        for atoms in start_frames(ctx, s.n_structures):
            optimised = optimise(atoms, calc, relax)[-1]
            optimised.calc = None
            frames += volume_scan(optimised, s.start, s.end, s.n_steps)
        return candidates(frames, "volume_scan")

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        return ctx.finish_single("scan")
