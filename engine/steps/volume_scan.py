"""``volume_scan``: rigid-molecule volume scans of geometry-optimised structures."""

from __future__ import annotations

from typing import ClassVar

from campaign.spec import GeometryOptimisation, VolumeScan as Settings
from engine.step import SingleTaskStep, StepContext, TaskResult, register
from engine.steps.sampling import candidates, start_frames


@register
class VolumeScan(SingleTaskStep):
    """Optimise the last ``n_structures`` frames of ``start`` with the model, then scale each box
    from ``start`` to ``end`` of its length in ``n_steps`` with every molecule kept rigid."""

    kind: ClassVar[str] = "volume_scan"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "scan"
    inputs: ClassVar[tuple[str, ...]] = ("model", "start")

    settings: Settings

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
