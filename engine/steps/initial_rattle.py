"""``initial_data: {kind: rattle}``: the first configurations as Gaussian displacements of the packed box."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ilcampaign.campaign.spec import CampaignSpec, InitialRattle
from ilcampaign.engine.step import SingleTaskStep, StepContext, StepFailed, TaskResult, register
from ilcampaign.engine.steps.sampling import GuardedStep, guard_fields

#: draws of one frame before the step gives up: the displacements are too large for the guards
MAX_DRAWS = 1000


@register
class InitialRattleStep(SingleTaskStep, GuardedStep):
    """Copies of the packed box with Gaussian displacements of standard deviation ``stdev``; a frame
    that breaks the contact or bond guard is drawn again, so every frame has its bonds within the
    bounds a liquid visits."""

    kind: ClassVar[str] = "initial_rattle"
    version: ClassVar[int] = 2
    task: ClassVar[str] = "rattle"
    inputs: ClassVar[tuple[str, ...]] = ("structure",)

    settings: InitialRattle
    seed: int

    @classmethod
    def from_spec(cls, spec: CampaignSpec, base: Path) -> InitialRattleStep:
        return cls(settings=spec.initial_data, seed=spec.campaign.seed, **guard_fields(spec))

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        import numpy as np

        box = ctx.input_frames("structure")[0]
        check = self.guard(ctx)
        rng = np.random.default_rng(self.seed)
        frames, redrawn = [], 0
        for index in range(self.settings.n_frames):
            for _ in range(MAX_DRAWS):
                frame = box.copy()
                frame.positions += rng.normal(scale=self.settings.stdev, size=frame.positions.shape)
                violation = check(frame) if check.checks else None
                if violation is None:
                    break
                redrawn += 1
            else:
                raise StepFailed(f"initial_data: {MAX_DRAWS} rattled copies of the box in a row break the "
                                 f"{violation.guard} (the last: {violation}); lower initial_data.stdev "
                                 f"({self.settings.stdev:g} A)")
            frame.info.update(source="initial_rattle", index=index)
            frames.append(frame)
        return TaskResult(frames, {"n_frames": len(frames), "n_redrawn": redrawn})
