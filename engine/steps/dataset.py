"""``dataset``: all labelled data so far, each frame assigned to training or validation.

The dataset of iteration i is the dataset of iteration i-1 plus the frames labelled in i, so
its key chains through all earlier data. New frames are split by a seeded random draw (fixed
for a given campaign seed and iteration), optionally after dropping energy outliers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from engine.step import Step, StepContext, TaskResult, register


@register
class Dataset(Step):
    """Append the ``new`` labelled frames to the ``previous`` dataset (if any) with a split."""

    kind: ClassVar[str] = "dataset"
    version: ClassVar[int] = 1
    inputs: ClassVar[tuple[str, ...] | None] = None  # "new", and "previous" except for the first

    seed: int
    validation_fraction: float = Field(gt=0, lt=1)
    fixed_validation: bool = Field(description="true: new frames only ever go to training")
    energy_outlier_sigma: float | None = None

    def tasks(self, ctx: StepContext) -> list[str]:
        return [] if "merge" in ctx.done_tasks() else ["merge"]

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        import numpy as np

        new = ctx.input_frames("new")
        dropped = []
        if self.energy_outlier_sigma is not None and len(new) > 2:
            per_atom = np.array([f.get_potential_energy() / len(f) for f in new])
            keep = np.abs(per_atom - per_atom.mean()) <= self.energy_outlier_sigma * per_atom.std()
            dropped = [int(i) for i in np.flatnonzero(~keep)]
            new = [f for f, k in zip(new, keep) if k]
        previous = ctx.input_frames("previous") if "previous" in ctx.inputs else []
        rng = np.random.default_rng([self.seed, len(previous)])
        if self.fixed_validation and previous:
            splits = ["train"] * len(new)
        else:
            n_valid = max(1, round(self.validation_fraction * len(new))) if len(new) > 1 else 0
            chosen = set(rng.permutation(len(new))[:n_valid].tolist())
            splits = ["valid" if i in chosen else "train" for i in range(len(new))]
        for frame, split in zip(new, splits):
            frame.info["split"] = split
        frames = previous + new
        n_valid = sum(f.info["split"] == "valid" for f in frames)
        summary = {"n_new": len(new), "n_dropped_outliers": len(dropped), "dropped": dropped,
                   "n_frames": len(frames), "n_train": len(frames) - n_valid, "n_valid": n_valid}
        return TaskResult(frames, summary)

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        return ctx.finish_single("merge")
