"""``initial_data: {kind: rattle}``: the first configurations as Gaussian displacements of the packed box."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ilcampaign.campaign.spec import CampaignSpec, InitialRattle
from ilcampaign.engine.step import SingleTaskStep, StepContext, TaskResult, register


@register
class InitialRattleStep(SingleTaskStep):
    """Copies of the packed box with Gaussian displacements of standard deviation ``stdev``."""

    kind: ClassVar[str] = "initial_rattle"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "rattle"
    inputs: ClassVar[tuple[str, ...]] = ("structure",)

    settings: InitialRattle
    seed: int

    @classmethod
    def from_spec(cls, spec: CampaignSpec, base: Path) -> InitialRattleStep:
        return cls(settings=spec.initial_data, seed=spec.campaign.seed)

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
