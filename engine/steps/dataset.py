"""``dataset``: all labelled data so far, each frame assigned to training, validation or test.

The dataset of iteration i is the dataset of iteration i-1 plus the frames labelled in i, so
its key chains through all earlier data. New frames are split by a seeded random draw (fixed
for a given campaign seed and iteration), optionally after dropping energy outliers; a frame
whose selection rule forced a split keeps it. The first dataset may hold frames out for
testing and leave some unused: their indices are recorded for an ``initial_pool`` sampler.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ilcampaign.engine.step import SingleTaskStep, StepContext, StepFailed, TaskResult, register

SPLITS = ("train", "valid")


@register
class DatasetStep(SingleTaskStep):
    """Append the ``new`` labelled frames to the ``previous`` dataset (if any) with a split."""

    kind: ClassVar[str] = "dataset"
    version: ClassVar[int] = 2
    task: ClassVar[str] = "merge"
    inputs: ClassVar[tuple[str, ...] | None] = None  # "new", and "previous" except for the first

    seed: int
    validation_fraction: float = Field(gt=0, lt=1)
    fixed_validation: bool = Field(description="true: new frames only ever go to training")
    energy_outlier_sigma: float | None = None
    n_test: int = Field(default=0, ge=0, description="first dataset only: frames held out for testing")
    n_valid: int | None = Field(default=None, ge=1, description="first dataset only: null uses the fraction")
    n_train: int | None = Field(default=None, ge=1, description="first dataset only: null uses all the rest")

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        import numpy as np

        new = ctx.input_frames("new")
        kept = list(range(len(new)))  # indices into the ``new`` input
        if self.energy_outlier_sigma is not None and len(new) > 2:
            per_atom = np.array([f.get_potential_energy() / len(f) for f in new])
            keep = np.abs(per_atom - per_atom.mean()) <= self.energy_outlier_sigma * per_atom.std()
            kept = [int(i) for i in np.flatnonzero(keep)]
        dropped = sorted(set(range(len(new))) - set(kept))
        previous = ctx.input_frames("previous") if "previous" in ctx.inputs else []
        rng = np.random.default_rng([self.seed, len(previous)])
        splits = self._splits([new[i] for i in kept], bool(previous), rng)
        for index, split in zip(kept, splits):
            new[index].info["split"] = split
        added = [new[i] for i, split in zip(kept, splits) if split != "unused"]
        frames = previous + added
        counts = {f"n_{split}": sum(f.info["split"] == split for f in frames) for split in ("train", "valid", "test")}
        summary = {"n_new": len(added), "n_dropped_outliers": len(dropped), "dropped": dropped,
                   "unused": [i for i, split in zip(kept, splits) if split == "unused"],
                   "n_frames": len(frames), **counts}
        return TaskResult(frames, summary)

    def _splits(self, frames: list, has_previous: bool, rng: Any) -> list[str]:
        """Split per frame: a forced one kept; else test / valid / train / unused by the counts."""
        splits = [f.info["split"] if f.info.get("split") in SPLITS else None for f in frames]
        free = [i for i, split in enumerate(splits) if split is None]
        order = [free[i] for i in rng.permutation(len(free))]
        asked = self.n_test + (self.n_valid or 0) + (self.n_train or 0)
        if asked > len(order):
            raise StepFailed(f"the first dataset asks for {asked} frames (test {self.n_test}, valid {self.n_valid}, "
                             f"train {self.n_train}) but only {len(order)} labelled frames are left after filtering")
        test, order = order[: self.n_test], order[self.n_test :]
        used = order if self.n_train is None else order[: self.n_train + (self.n_valid or 0)]
        if self.fixed_validation and has_previous:
            n_valid = 0
        elif self.n_valid is not None:
            n_valid = self.n_valid
        else:
            n_valid = max(1, round(self.validation_fraction * len(used))) if len(used) > 1 else 0
        for i in test:
            splits[i] = "test"
        for position, i in enumerate(used):
            splits[i] = "valid" if position < n_valid else "train"
        return [split or "unused" for split in splits]
